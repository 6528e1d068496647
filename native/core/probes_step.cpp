#include "core/probes_step.h"

#include <utility>

namespace calmkit::probes {

std::vector<Param*> StackParams::all() {
  std::vector<Param*> out;
  for (size_t l = 0; l < W.size(); ++l) {
    out.push_back(&W[l]);
    out.push_back(&B[l]);
  }
  for (auto& h : head) out.push_back(&h);
  return out;
}

std::vector<Param*> StackParams::headWeights() {
  std::vector<Param*> out;
  for (auto& h : head) out.push_back(&h);
  return out;
}

// ---- Options::trace ---------------------------------------------------------------------------------------

Tracer::Tracer(std::vector<Param*> params) : params_(std::move(params)) {
  for (const Param* p : params_) grads_.push_back(torch::zeros_like(p->value[0]).cpu());
}

size_t Tracer::slot(const Param& prm) const {
  for (size_t k = 0; k < params_.size(); ++k) {
    if (params_[k] == &prm) return k;
  }
  return params_.size();  // not a parameter of this stack: never happens
}

float* Tracer::out(const Param& prm) { return grads_[slot(prm)].data_ptr<float>(); }

void Tracer::record(const Param& prm, const torch::Tensor& g) {
  auto& to = grads_[slot(prm)];
  to.copy_(g.reshape(to.sizes()));
}

TraceStep Tracer::snapshot(int64_t step, bool withGrads) const {
  TraceStep t;
  t.step = step;
  auto add = [](std::vector<std::vector<float>>& to, const torch::Tensor& x) {
    auto c = x.to(torch::kCPU).contiguous();
    to.emplace_back(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  };
  for (const Param* p : params_) add(t.weights, p->value[0]);
  if (withGrads) {
    for (const auto& g : grads_) add(t.grads, g);
  }
  return t;
}

// ---- the per-probe CPU step ------------------------------------------------------------------------------

torch::Tensor CpuProbeStep::operand(const torch::Tensor& x) const { return bf16_ ? x.to(torch::kBFloat16) : x; }

torch::Tensor CpuProbeStep::layer(const torch::Tensor& x, const Param& w, const Param& b) const {
  if (bf16_) return mmBf16(x, w.half[p_]).add_(b.value[p_]);
  return torch::addmm(b.value[p_], x, w.value[p_]);
}

torch::Tensor CpuProbeStep::product(const torch::Tensor& x, const Param& w) const {
  return bf16_ ? mmBf16(x, w.half[p_]) : torch::mm(x, w.value[p_]);
}

torch::Tensor CpuProbeStep::back(const torch::Tensor& d, const Param& w) const {
  return bf16_ ? mmBf16(d, w.half[p_].t()) : torch::mm(d, w.value[p_].t());
}

void CpuProbeStep::addBack(torch::Tensor& da, const torch::Tensor& d, const Param& w) const {
  if (bf16_) {
    da.add_(mmBf16(d, w.half[p_].t()));
  } else {
    da.addmm_(d, w.value[p_].t());
  }
}

// A weight without a stored gradient is wide enough for the fused pass (Stack::allocate): its gradient is formed a
// block of rows at a time and consumed by Adam while in cache. The others: the whole gradient, then Adam.
void CpuProbeStep::weightGrad(Param& w, const torch::Tensor& x, const torch::Tensor& d) {
  float* traced = tracer_ ? tracer_->out(w) : nullptr;
  if (!w.grad.defined()) {
    if (bf16_) {
      gradAdamProbeBf16(w, spec_, p_, step_, lr_, x, d, traced);
    } else {
      gradAdamProbe(w, spec_, p_, step_, lr_, x, d, traced);
    }
    return;
  }
  auto gw = w.grad[p_];
  if (bf16_) {
    mmBf16Out(gw, x.t(), d);
  } else {
    at::mm_out(gw, x.t(), d);
  }
  if (tracer_) tracer_->record(w, gw);
  adamProbe(w, spec_, p_, step_, lr_);
}

void CpuProbeStep::biasGrad(Param& b, const torch::Tensor& d) {
  auto gb = b.grad[p_];
  at::sum_out(gb, d, {0}, true);
  if (tracer_) tracer_->record(b, gb);
}

void CpuProbeStep::biasDone(Param& b) { adamProbe(b, spec_, p_, step_, lr_); }

// ---- the batched step ------------------------------------------------------------------------------------

namespace {
// A batched product of the bf16 step: bf16 operands (the weights' bf16 copy where b is a weight), and the output,
// which ATen gives in bf16 (summed in fp32 inside the kernel), widened to fp32, as under torch.autocast.
torch::Tensor bmmBf16(const torch::Tensor& a, const torch::Tensor& b) {
  return torch::bmm(a.to(torch::kBFloat16), b.to(torch::kBFloat16)).to(torch::kFloat);
}
}  // namespace

torch::Tensor BatchedStep::layer(const torch::Tensor& x, const Param& w, const Param& b) const {
  if (bf16_) return bmmBf16(x, active(w.half)).add_(active(b.value));
  return torch::baddbmm(active(b.value), x, active(w.value));
}

torch::Tensor BatchedStep::product(const torch::Tensor& x, const Param& w) const {
  return bf16_ ? bmmBf16(x, active(w.half)) : torch::bmm(x, active(w.value));
}

torch::Tensor BatchedStep::back(const torch::Tensor& d, const Param& w) const {
  return bf16_ ? bmmBf16(d, active(w.half).transpose(1, 2)) : torch::bmm(d, active(w.value).transpose(1, 2));
}

void BatchedStep::addBack(torch::Tensor& da, const torch::Tensor& d, const Param& w) const {
  if (bf16_) {
    da.add_(bmmBf16(d, active(w.half).transpose(1, 2)));
  } else {
    da.baddbmm_(d, active(w.value).transpose(1, 2));
  }
}

void BatchedStep::weightGrad(Param& w, const torch::Tensor& x, const torch::Tensor& d) {
  auto gw = active(w.grad);
  if (bf16_) {
    gw.copy_(bmmBf16(x.transpose(1, 2), d));
  } else {
    torch::bmm_out(gw, x.transpose(1, 2), d);
  }
  if (tracer_) tracer_->record(w, gw[0]);
}

void BatchedStep::biasGrad(Param& b, const torch::Tensor& d) {
  active(b.grad).copy_(d.sum(1, true));
  if (tracer_) tracer_->record(b, b.grad[0]);
}

void BatchedStep::done(const std::vector<Param*>& params) {
  for (Param* p : params) adamTensor(*p, ps_, pa_, steps_, lr_);
}

// ---- the step ------------------------------------------------------------------------------------------

void trainStep(StepOps& ops, const Head& head, StackParams& prm, int64_t B, int64_t S) {
  const size_t L = prm.W.size();
  std::vector<torch::Tensor> acts{ops.operand(ops.input())}, pre;  // each layer's input, as the products read it
  torch::Tensor scores;
  for (size_t l = 0; l < L; ++l) {
    auto z = ops.layer(acts.back(), prm.W[l], prm.B[l]);
    if (l + 1 == L) {
      scores = z;
      break;
    }
    pre.push_back(z);
    acts.push_back(ops.operand(z.relu().mul_(ops.mask(l))));
  }
  const std::vector<Param*> own = prm.headWeights();
  std::vector<torch::Tensor> kept;
  torch::Tensor dz = head.gradient(ops, scores, acts[L - 1], own, B, S, kept);  // d(mean BCE)/d(score), per row
  for (size_t l = L; l-- > 0;) {
    ops.biasGrad(prm.B[l], dz);
    const torch::Tensor d = ops.operand(dz);
    torch::Tensor da;
    if (l > 0) da = ops.back(d, prm.W[l]);  // through the weights before they move
    if (l + 1 == L) head.backward(ops, da, acts[l], own, kept);
    ops.weightGrad(prm.W[l], acts[l], d);
    ops.biasDone(prm.B[l]);
    if (l > 0) dz = da.mul_(ops.mask(l - 1)).mul_(pre[l - 1].gt(0));
  }
  ops.done(prm.all());
}

}  // namespace calmkit::probes
