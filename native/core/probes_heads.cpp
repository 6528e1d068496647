#include "core/probes_heads.h"

#include <limits>

#include "core/error.h"

namespace calmkit::probes {
namespace {

// The paper's probe: one vector per clip, and the output layer's score is the clip's logit.
class MlpHead final : public Head {
 public:
  const char* name() const override { return kMlpHead; }
  bool readsSegments() const override { return false; }

  torch::Tensor gradient(StepOps& ops, const torch::Tensor& z, const torch::Tensor& h, const std::vector<Param*>& own,
                         int64_t B, int64_t S, std::vector<torch::Tensor>& kept) const override {
    return torch::sigmoid(z).sub_(ops.targets()).div_(static_cast<double>(B));
  }

  torch::Tensor logits(const torch::Tensor& z, const torch::Tensor& h, const std::vector<torch::Tensor>& own, int64_t S,
                       const torch::Tensor& valid, torch::Tensor* weights) const override {
    return z;
  }
};

// Attention pooling over a clip's segments: per segment row the score z_s and an attention logit a_s = h_s . wa (its
// own weight [in, 1]), weights softmax(a) over the clip's real segments, and the clip's logit sum_s w_s z_s. The
// attention logit has no bias: softmax is invariant to a shift shared by a clip's segments, so a bias's gradient is
// identically zero and Adam would only turn rounding noise into a random walk (different in every implementation).
// For B clips x S segments (leading dims of a batched step allowed), mean-BCE gradients:
//   dL/dz_s = w_s g,  dL/da_s = w_s (z_s - logit) g,  with g = dL/dlogit = (sigmoid(logit) - y) / B.
// With S = 1 the weight is exactly 1, the logit is z, dL/dz is g and dL/da is exactly 0: the MLP's step.
class AttentionHead final : public Head {
 public:
  const char* name() const override { return "attention"; }
  bool readsSegments() const override { return true; }
  std::vector<int64_t> weightOuts() const override { return {1}; }
  int64_t activationsPerRow() const override { return 4; }  // attention logits, weights and their gradients

  torch::Tensor gradient(StepOps& ops, const torch::Tensor& z, const torch::Tensor& h, const std::vector<Param*>& own,
                         int64_t B, int64_t S, std::vector<torch::Tensor>& kept) const override {
    auto a = ops.product(h, *own[0]);
    auto lead = z.sizes().vec();
    lead.pop_back();
    lead.pop_back();  // [..., B * S, 1] -> leading dims
    auto shape = lead;
    shape.push_back(B);
    shape.push_back(S);
    auto av = a.view(shape);
    const torch::Tensor valid = ops.valid();
    if (valid.defined()) av = av.masked_fill(valid.logical_not(), -std::numeric_limits<float>::infinity());
    auto w = torch::softmax(av, -1);
    auto zv = z.view(shape);
    auto logit = w.mul(zv).sum(-1, true);  // [..., B, 1]
    auto g = torch::sigmoid(logit).sub_(ops.targets()).div_(static_cast<double>(B));
    auto dz = w.mul(g);
    auto da = zv.sub(logit).mul_(dz);
    auto flat = lead;
    flat.push_back(B * S);
    flat.push_back(1);
    kept = {da.view(flat)};
    return dz.view(flat);
  }

  void backward(StepOps& ops, torch::Tensor& da, const torch::Tensor& h, const std::vector<Param*>& own,
                const std::vector<torch::Tensor>& kept) const override {
    const torch::Tensor d = ops.operand(kept[0]);
    if (da.defined()) ops.addBack(da, d, *own[0]);
    ops.weightGrad(*own[0], h, d);
  }

  torch::Tensor logits(const torch::Tensor& z, const torch::Tensor& h, const std::vector<torch::Tensor>& own, int64_t S,
                       const torch::Tensor& valid, torch::Tensor* weights) const override {
    const int64_t clips = z.size(0) / S;
    torch::Tensor a = torch::mm(h, own[0]).view({clips, S});
    if (valid.defined()) a = a.masked_fill(valid.logical_not(), -std::numeric_limits<float>::infinity());
    torch::Tensor w = torch::softmax(a, 1);
    if (weights) *weights = w;
    return w.mul(z.view({clips, S})).sum(1, true);
  }
};

const MlpHead kMlp;
const AttentionHead kAttention;
// The registry: one line per head.
const Head* const kHeads[] = {&kMlp, &kAttention};

}  // namespace

const Head& headNamed(const std::string& name) {
  for (const Head* h : kHeads) {
    if (name == h->name()) return *h;
  }
  std::string known;
  for (const Head* h : kHeads) known += (known.empty() ? "" : ", ") + std::string(h->name());
  throw Error(code::kInvalidArgument, "unknown probe head '" + name + "' (the heads are " + known + ")");
}

torch::Tensor netLogits(const Head& head, const NetTensors& net, const torch::Tensor& x, int64_t S,
                        const torch::Tensor& valid, torch::Tensor* weights) {
  const size_t L = net.w.size();
  torch::Tensor h = x;
  for (size_t l = 0; l + 1 < L; ++l) h = torch::addmm(net.b[l], h, net.w[l]).relu_();
  torch::Tensor scores = torch::addmm(net.b[L - 1], h, net.w[L - 1]);
  return head.logits(scores, h, net.head, S, valid, weights);
}

}  // namespace calmkit::probes
