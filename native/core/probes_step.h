// One training step of a stack's probes, written once: the forward through the shared layers, the head, the
// hand-written backward and the updates (trainStep), over a product policy (StepOps, probes_ops.h). The policies:
// the per-probe CPU step in fp32 or bf16 (each probe's whole step on one thread while its weights are in cache; the
// weight gradient of wide layers fused into Adam) and the batched step over the stack (bmm/baddbmm, Adam in tensor
// operations after the backward: the CUDA step, also run on the CPU on request).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/probes_heads.h"
#include "core/probes_kernels.h"
#include "core/probes_ops.h"
#include "core/probes_types.h"

namespace calmkit::probes {

// The stacked parameters of one stack's probes, each [P, ...] with its gradient (where one is kept), Adam's moments
// and the kept-best copy: the shared layers' weights W[l] [P, in, out] and biases B[l] [P, 1, out], and the head's
// own weights [P, in, out].
struct StackParams {
  std::vector<Param> W, B, head;
  // Every parameter in TraceStep's order: W0, b0, W1, b1, ..., then the head's.
  std::vector<Param*> all();
  std::vector<Param*> headWeights();
};

// Options::trace's bookkeeping for a one-probe stack: the gradients a step forms, by parameter, as it forms them.
class Tracer {
 public:
  explicit Tracer(std::vector<Param*> params);
  // Where a fused gradient + Adam pass copies the gradient of `prm` it forms.
  float* out(const Param& prm);
  // Keeps probe 0's gradient g of `prm`.
  void record(const Param& prm, const torch::Tensor& g);
  // Step `step` as TraceStep: the parameters' current values and, with `withGrads`, this step's gradients.
  TraceStep snapshot(int64_t step, bool withGrads) const;

 private:
  size_t slot(const Param& prm) const;
  std::vector<Param*> params_;
  std::vector<torch::Tensor> grads_;
};

// The per-probe CPU step of probe p: its slices of the host batch (inputs [P, R, dim], hidden masks [P, R, h]), the
// targets [1, B, 1], its batch's real segments [B, S] (undefined: all real). bf16: every product reads bf16 operands
// (the activations and output gradients converted here, the weights' bf16 copies kept by Adam) and sums in fp32.
class CpuProbeStep final : public StepOps {
 public:
  CpuProbeStep(int64_t p, bool bf16, const torch::Tensor& inputs, const std::vector<torch::Tensor>& masks,
               const torch::Tensor& y, torch::Tensor valid, const ProbeSpec& spec, int64_t step, double lr,
               Tracer* tracer)
      : p_(p),
        bf16_(bf16),
        inputs_(inputs),
        masks_(masks),
        y_(y),
        valid_(std::move(valid)),
        spec_(spec),
        step_(step),
        lr_(lr),
        tracer_(tracer) {}
  torch::Tensor input() const override { return inputs_[p_]; }
  torch::Tensor mask(size_t l) const override { return masks_[l][p_]; }
  torch::Tensor targets() const override { return y_[0]; }
  torch::Tensor valid() const override { return valid_; }
  torch::Tensor operand(const torch::Tensor& x) const override;
  torch::Tensor layer(const torch::Tensor& x, const Param& w, const Param& b) const override;
  torch::Tensor product(const torch::Tensor& x, const Param& w) const override;
  torch::Tensor back(const torch::Tensor& d, const Param& w) const override;
  void addBack(torch::Tensor& da, const torch::Tensor& d, const Param& w) const override;
  void weightGrad(Param& w, const torch::Tensor& x, const torch::Tensor& d) override;
  void biasGrad(Param& b, const torch::Tensor& d) override;
  void biasDone(Param& b) override;

 private:
  int64_t p_;
  bool bf16_;
  const torch::Tensor& inputs_;
  const std::vector<torch::Tensor>& masks_;
  const torch::Tensor& y_;
  torch::Tensor valid_;
  const ProbeSpec& spec_;
  int64_t step_;
  double lr_;
  Tracer* tracer_;
};

// The batched step of the first `pa` probes of a stack, on its device: inputs [pa, R, dim], hidden masks [pa, R, h],
// targets [1, B, 1], real segments [pa, B, S] (undefined: all real). bf16: the products' operands rounded to bf16
// (ATen's bf16 bmm, its output widened to fp32, as under torch.autocast).
class BatchedStep final : public StepOps {
 public:
  BatchedStep(int64_t pa, bool bf16, torch::Tensor inputs, const std::vector<torch::Tensor>& masks,
              const torch::Tensor& y, torch::Tensor valid, const std::vector<ProbeSpec>& ps,
              const std::vector<int64_t>& steps, double lr, Tracer* tracer)
      : pa_(pa),
        bf16_(bf16),
        inputs_(std::move(inputs)),
        masks_(masks),
        y_(y),
        valid_(std::move(valid)),
        ps_(ps),
        steps_(steps),
        lr_(lr),
        tracer_(tracer) {}
  torch::Tensor input() const override { return inputs_; }
  torch::Tensor mask(size_t l) const override { return masks_[l]; }
  torch::Tensor targets() const override { return y_; }
  torch::Tensor valid() const override { return valid_; }
  torch::Tensor operand(const torch::Tensor& x) const override { return x; }
  torch::Tensor layer(const torch::Tensor& x, const Param& w, const Param& b) const override;
  torch::Tensor product(const torch::Tensor& x, const Param& w) const override;
  torch::Tensor back(const torch::Tensor& d, const Param& w) const override;
  void addBack(torch::Tensor& da, const torch::Tensor& d, const Param& w) const override;
  void weightGrad(Param& w, const torch::Tensor& x, const torch::Tensor& d) override;
  void biasGrad(Param& b, const torch::Tensor& d) override;
  void biasDone(Param& b) override {}
  void done(const std::vector<Param*>& params) override;

 private:
  torch::Tensor active(const torch::Tensor& stacked) const { return stacked.narrow(0, 0, pa_); }
  int64_t pa_;
  bool bf16_;
  torch::Tensor inputs_;
  const std::vector<torch::Tensor>& masks_;
  const torch::Tensor& y_;
  torch::Tensor valid_;
  const std::vector<ProbeSpec>& ps_;
  const std::vector<int64_t>& steps_;
  double lr_;
  Tracer* tracer_;
};

// One training step of the probes `ops` steps, with B clips of S rows each: forward, head, backward, updates.
void trainStep(StepOps& ops, const Head& head, StackParams& prm, int64_t B, int64_t S);

}  // namespace calmkit::probes
