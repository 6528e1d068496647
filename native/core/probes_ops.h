// The product policy of a probe training step, as the step (probes_step) and the heads (probes_heads) see it: how
// the step's matrix products run and how each parameter's gradient is consumed, plus the step's batch (inputs,
// dropout masks, targets, real segments). The policies are probes_step.cpp's: the per-probe CPU step in fp32 or in
// bf16, and the batched step over a stack (the CUDA one). A head written against this interface trains under all of
// them, with the same arithmetic as the shared layers.
#pragma once
#include <torch/torch.h>

#include <cstddef>
#include <vector>

#include "core/probes_kernels.h"

namespace calmkit::probes {

class StepOps {
 public:
  virtual ~StepOps() = default;

  // The step's batch: the dropped-out, standardised input rows (B * S of them, per probe), hidden layer l's
  // dropout mask (scaled by 1/keep), the targets [.., B, 1] (B/2 ones then B/2 zeros) and the [.., B, S] mask of real
  // segments (undefined when every segment is real).
  virtual torch::Tensor input() const = 0;
  virtual torch::Tensor mask(size_t hiddenLayer) const = 0;
  virtual torch::Tensor targets() const = 0;
  virtual torch::Tensor valid() const = 0;

  // An activation or output gradient as the products read it: the bf16 CPU step keeps bf16 copies, the others the
  // fp32 tensor itself.
  virtual torch::Tensor operand(const torch::Tensor& x) const = 0;
  // x W + b: a shared layer's forward.
  virtual torch::Tensor layer(const torch::Tensor& x, const Param& w, const Param& b) const = 0;
  // x W, for a head's own weight.
  virtual torch::Tensor product(const torch::Tensor& x, const Param& w) const = 0;
  // d W^T, the gradient through a weight; read before the weight moves.
  virtual torch::Tensor back(const torch::Tensor& d, const Param& w) const = 0;
  // da += d W^T.
  virtual void addBack(torch::Tensor& da, const torch::Tensor& d, const Param& w) const = 0;
  // The weight's gradient x^T d (x and d as operand() gave them), consumed: by Adam at once in the per-probe step,
  // after the backward in the batched one.
  virtual void weightGrad(Param& w, const torch::Tensor& x, const torch::Tensor& d) = 0;
  // The bias's gradient, the sum of d over the rows; then, once its layer's backward no longer needs it, biasDone.
  virtual void biasGrad(Param& b, const torch::Tensor& d) = 0;
  virtual void biasDone(Param& b) = 0;
  // After the backward, with every parameter of the step (the batched step runs Adam over them here).
  virtual void done(const std::vector<Param*>& params) {}
};

}  // namespace calmkit::probes
