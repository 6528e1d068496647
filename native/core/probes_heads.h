// Probe heads: what turns a probe's shared layers into a clip's logit, and its gradient. Every probe has the same
// shared layers (dropout on the input, Linear -> ReLU -> dropout per hidden size, and an output Linear that gives one
// score per row); the head reads the scores z and the last hidden activations h of a clip's rows (one row per clip,
// or S segment rows), owns any weights of its own, and gives dL/dz of the mean BCE. The step (probes_step) runs the
// head under every product policy (fp32, bf16, batched), the evaluation and predict() run its forward.
//
// A new head is one class here and one line in the registry (probes_heads.cpp), plus its PyTorch reference in
// test/reference/probe_ref.py; its name is what Config::head and the glue's `head` option carry.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/probes_ops.h"
#include "core/probes_types.h"

namespace calmkit::probes {

// One probe's parameters as tensors, for a forward pass (a stack's slice, or a loaded Net's): the shared layers'
// weights w[l] [in, out] and biases b[l] ([1, out] or [out]), and the head's own weights in its order.
struct NetTensors {
  std::vector<torch::Tensor> w, b, head;
};

class Head {
 public:
  virtual ~Head() = default;
  virtual const char* name() const = 0;
  // Whether it reads S segment rows per clip (Options::segments >= 1); else one vector per clip.
  virtual bool readsSegments() const = 0;
  // Its own weights, each [in, out] with `in` = the score layer's input width; the output widths, in order. They are
  // initialised from the probe's init streams after the layers' (PyTorch's Linear init; the bias drawn with each is
  // not kept: a head's weights have none).
  virtual std::vector<int64_t> weightOuts() const { return {}; }
  // Floats per row that a training step keeps for the head (the memory estimate of a stack).
  virtual int64_t activationsPerRow() const { return 0; }

  // Training, on the step's batch (ops): from the scores z [.., R, 1] and the last activations h (as ops.operand gave
  // them) and its weights, dL/dz; what backward() needs goes into `kept`.
  virtual torch::Tensor gradient(StepOps& ops, const torch::Tensor& z, const torch::Tensor& h,
                                 const std::vector<Param*>& own, int64_t B, int64_t S,
                                 std::vector<torch::Tensor>& kept) const = 0;
  // At the score layer, after dL/dz went through its weights into da (undefined when h is the input itself): the
  // head's share of dL/dh added into da, then its own weights' gradients handed to ops. Read before anything moves.
  virtual void backward(StepOps& ops, torch::Tensor& da, const torch::Tensor& h, const std::vector<Param*>& own,
                        const std::vector<torch::Tensor>& kept) const {}

  // Evaluation and prediction: the clips' logits [clips, 1] from the scores z [clips * S, 1] and the last activations
  // h [clips * S, in] of standardised rows; `valid` [clips, S] marks real segments (undefined: all are). A head that
  // weighs segments puts the weights [clips, S] in *weights when asked.
  virtual torch::Tensor logits(const torch::Tensor& z, const torch::Tensor& h, const std::vector<torch::Tensor>& own,
                               int64_t S, const torch::Tensor& valid, torch::Tensor* weights) const = 0;
};

// The registry: the head of that name, or kInvalidArgument naming the heads there are.
const Head& headNamed(const std::string& name);

// A probe's logits [clips, 1] for standardised rows x (S per clip; [clips * S, in]): the shared layers, then the head.
torch::Tensor netLogits(const Head& head, const NetTensors& net, const torch::Tensor& x, int64_t S,
                        const torch::Tensor& valid, torch::Tensor* weights = nullptr);

}  // namespace calmkit::probes
