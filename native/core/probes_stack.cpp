#include "core/probes_stack.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/probes_random.h"

namespace calmkit::probes {
namespace {

// Endless balanced batches for one instrument: positives and negatives each come from their own reshuffled
// cycle, so the minority class is revisited more often and every batch holds B/2 of each.
class Sampler {
 public:
  Sampler(const Split& train, uint64_t key) : key_(key) {
    for (size_t i = 0; i < train.rows.size(); ++i) (train.targets[i] ? pos_ : neg_).push_back(train.rows[i]);
    posAt_ = pos_.size();
    negAt_ = neg_.size();
  }
  // Appends B/2 positive rows, then B/2 negative rows.
  void next(int64_t half, std::vector<int64_t>& out) {
    take(pos_, posAt_, posRound_, 0, half, out);
    take(neg_, negAt_, negRound_, 1, half, out);
  }

 private:
  void take(std::vector<int32_t>& v, size_t& at, uint64_t& round, uint64_t cls, int64_t k, std::vector<int64_t>& out) {
    for (int64_t j = 0; j < k; ++j) {
      if (at == v.size()) {
        shuffle(v, subKey(key_, kSampler, cls, round++));
        at = 0;
      }
      out.push_back(v[at++]);
    }
  }
  static void shuffle(std::vector<int32_t>& v, uint64_t key) {  // Fisher-Yates on our own stream
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[draw(key, i) % i]);
  }
  uint64_t key_;
  std::vector<int32_t> pos_, neg_;
  size_t posAt_, negAt_;
  uint64_t posRound_ = 0, negRound_ = 0;
};

}  // namespace

Scaler fitScaler(const torch::Tensor& X, const Split& train) {
  auto rows = torch::tensor(std::vector<int64_t>(train.rows.begin(), train.rows.end()), torch::kLong);
  auto x = X.index_select(0, rows).to(torch::kDouble);
  auto mean = x.mean(0);
  auto sd = x.sub(mean).pow_(2).mean(0).sqrt_();
  sd.masked_fill_(sd == 0, 1.0);
  return {mean.to(torch::kFloat), sd.to(torch::kFloat)};
}

torch::Tensor forwardRows(const torch::Tensor& x, const std::function<torch::Tensor(const torch::Tensor&)>& net) {
  const int64_t n = x.size(0);
  std::vector<torch::Tensor> out;
  for (int64_t at = 0; at < n; at += kForwardRows) {
    const int64_t rows = std::min(kForwardRows, n - at);
    torch::Tensor block = x.narrow(0, at, rows);
    if (rows < kForwardRows) block = torch::constant_pad_nd(block, {0, 0, 0, kForwardRows - rows});
    out.push_back(net(block).narrow(0, 0, rows));
  }
  return out.size() == 1 ? out[0] : torch::cat(out, 0);
}

torch::Tensor standardized(const torch::Tensor& X, const Split& s, const Scaler& sc) {
  auto rows = torch::tensor(std::vector<int64_t>(s.rows.begin(), s.rows.end()), torch::kLong);
  auto x = X.index_select(0, rows);
  if (sc.mean.defined()) x = x.sub_(sc.mean).div_(sc.std);
  return x;
}

torch::Tensor targetsOf(const Split& s) {
  std::vector<float> y(s.targets.begin(), s.targets.end());
  return torch::tensor(y, torch::kFloat).view({-1, 1});
}

namespace {

void ensureEvalData(Shared& sh, int t) {
  if (sh.valX[t].defined()) return;
  const Task& task = sh.tasks[t];
  sh.valX[t] = standardized(sh.X, task.val, sh.scalers[t]).to(sh.device);
  sh.valY[t] = targetsOf(task.val).to(sh.device);
  sh.testX[t] = standardized(sh.X, task.test, sh.scalers[t]).to(sh.device);
}

// Rows per parallel task: small enough stacks run on the calling thread, where a parallel region would cost more
// than the work (and spins badly on a shared, oversubscribed machine).
int64_t rowsPerTask(int64_t cols) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, cols)); }

// Fills a dropout mask, already scaled by 1/keep as torch's Dropout does, for rows*cols units of each probe.
// Probes [p0, p1) of the stack.
void fillMasks(float* out, const std::vector<ProbeSpec>& ps, int64_t p0, int64_t p1, int64_t rows, int64_t cols,
               uint64_t layer, const std::vector<int64_t>& steps) {
  int64_t per = rows * cols;
  at::parallel_for(p0 * rows, p1 * rows, rowsPerTask(cols), [&](int64_t b0, int64_t b1) {
    for (int64_t r = b0; r < b1; ++r) {
      int64_t p = r / rows, row = r % rows;
      float keep = static_cast<float>(1.0 - ps[p].dropout);
      uint64_t key = subKey(ps[p].key, kMask, layer, static_cast<uint64_t>(steps[p]));
      dropoutRow(out + p * per + row * cols, nullptr, nullptr, nullptr, cols, key, row * cols, keep, 1.0f / keep);
    }
  });
}

// The dropped-out, standardised input batch of every active probe, in one pass over the features:
// out[p, b, :] = mask * (x[row(task(p), b)] - mean) / std, for probes [p0, p1).
void fillInputs(float* out, const Shared& sh, const std::vector<ProbeSpec>& ps, int64_t p0, int64_t p1, int64_t B,
                const std::vector<int>& slotOf, const std::vector<std::vector<int64_t>>& batchRows,
                const std::vector<int64_t>& steps) {
  const int64_t d = sh.dim;
  at::parallel_for(p0 * B, p1 * B, rowsPerTask(d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t p = r / B, b = r % B;
      const Scaler& sc = sh.scalers[ps[p].task];
      const float* x = sh.features + batchRows[slotOf[p]][b] * d;
      const float* mu = sc.mean.defined() ? sc.mean.data_ptr<float>() : nullptr;
      const float* sd = sc.mean.defined() ? sc.std.data_ptr<float>() : nullptr;
      float keep = static_cast<float>(1.0 - ps[p].dropout);
      uint64_t key = subKey(ps[p].key, kMask, 0, static_cast<uint64_t>(steps[p]));
      dropoutRow(out + r * d, x, mu, sd, d, key, b * d, keep, 1.0f / keep);
    }
  });
}

// PyTorch's default Linear init, U(-1/sqrt(in), 1/sqrt(in)) for weight and bias, from the probe's stream.
void initLayer(float* w, float* b, int64_t in, int64_t out, uint64_t key, uint64_t layer) {
  float bound = 1.0f / std::sqrt(static_cast<float>(in));
  uint64_t k = subKey(key, kInit, layer);
  for (int64_t i = 0; i < in * out; ++i) w[i] = (2.0f * uniform01(k, i) - 1.0f) * bound;
  for (int64_t j = 0; j < out; ++j) b[j] = (2.0f * uniform01(k, in * out + j) - 1.0f) * bound;
}

// Runs fn(p) for the first `pa` probes. With several probes each thread takes whole probe steps, pulling the
// next probe from a shared counter (probes finish at different times), so a step of the stack is one parallel
// region instead of several joins per probe, which on a shared machine cost more than the work they split.
// A single probe (one-at-a-time training) gets the threads inside its own operations. Measured on 2 cores
// after the fused gradient + Adam pass: as fast as splitting each probe's operations, and steadier under load
// (the unfused step, which streamed every gradient through memory, was slower with two probes in flight).
template <typename Fn>
void forEachProbe(int64_t pa, const Fn& fn) {
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), pa);
  if (threads > 1) {
    std::atomic<int64_t> next{0};
    at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
      c10::InferenceMode inference;  // thread-local: the pool's threads do not inherit the caller's
      for (int64_t p = next++; p < pa; p = next++) fn(p);
    });
  } else {
    for (int64_t p = 0; p < pa; ++p) fn(p);
  }
}

// Logits of probe p (its current or kept weights) for standardised rows x [V, dim].
torch::Tensor forwardOne(const std::vector<Param>& W, const std::vector<Param>& Bs, int64_t p, const torch::Tensor& x,
                         bool best) {
  torch::Tensor h = x;
  for (size_t l = 0; l < W.size(); ++l) {
    const auto& w = best ? W[l].best : W[l].value;
    const auto& b = best ? Bs[l].best : Bs[l].value;
    h = torch::addmm(b[p], h, w[p]);
    if (l + 1 < W.size()) h = h.relu_();
  }
  return h;
}

Net extractNet(const std::vector<Param>& W, const std::vector<Param>& Bs, int64_t p, const Scaler& sc) {
  Net net;
  if (sc.mean.defined()) {
    net.mean.assign(sc.mean.data_ptr<float>(), sc.mean.data_ptr<float>() + sc.mean.numel());
    net.std.assign(sc.std.data_ptr<float>(), sc.std.data_ptr<float>() + sc.std.numel());
  }
  for (size_t l = 0; l < W.size(); ++l) {
    auto w = W[l].best[p].to(torch::kCPU).contiguous();
    auto b = Bs[l].best[p].to(torch::kCPU).contiguous().view(-1);
    Layer layer;
    layer.in = w.size(0);
    layer.out = w.size(1);
    layer.weight.assign(w.data_ptr<float>(), w.data_ptr<float>() + w.numel());
    layer.bias.assign(b.data_ptr<float>(), b.data_ptr<float>() + b.numel());
    net.layers.push_back(std::move(layer));
  }
  return net;
}

std::vector<float> toVector(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

void checkCancelled(const Options& opt) {
  if (opt.cancelled && opt.cancelled()) throw Error(code::kAborted, "probe training was cancelled");
}

// Trains one stack (same hidden sizes, probes sorted by steps per epoch, descending) for all epochs, then
// fills in each probe's curves, kept weights' test probabilities, and selection candidates.
class Stack {
 public:
  Stack(Shared& sh, const std::vector<int64_t>& hidden, std::vector<ProbeSpec> ps)
      : sh_(sh), ps_(std::move(ps)), P_(static_cast<int64_t>(ps_.size())), B_(sh.opt.batchSize) {
    dims_.push_back(sh.dim);
    for (auto h : hidden) dims_.push_back(h);
    dims_.push_back(1);
    allocate();
  }

  void run(Result& res, int64_t stackIndex, int64_t stacks, int64_t& probesDone) {
    const Options& opt = sh_.opt;
    // One sampler per instrument in the stack: all configs of an instrument see the same batches, as
    // they would if each were trained alone.
    std::vector<int> slotOf(P_);
    std::vector<int> slotTask;
    for (int64_t p = 0; p < P_; ++p) {
      auto it = std::find(slotTask.begin(), slotTask.end(), ps_[p].task);
      if (it == slotTask.end()) {
        slotTask.push_back(ps_[p].task);
        slotOf[p] = static_cast<int>(slotTask.size() - 1);
      } else {
        slotOf[p] = static_cast<int>(it - slotTask.begin());
      }
    }
    std::vector<Sampler> samplers;
    for (int t : slotTask) {
      const Task& task = sh_.tasks[t];
      samplers.emplace_back(task.train, subKey(mix64(opt.seed ^ hashString(task.instrument)), kSampler));
      ensureEvalData(sh_, t);
    }
    std::vector<int64_t> slotSteps(slotTask.size());
    for (size_t s = 0; s < slotTask.size(); ++s) slotSteps[s] = ps_[0].stepsPerEpoch;
    for (int64_t p = 0; p < P_; ++p) slotSteps[slotOf[p]] = ps_[p].stepsPerEpoch;
    int64_t maxSteps = ps_[0].stepsPerEpoch;

    std::vector<float> bestLoss(P_, std::numeric_limits<float>::infinity());
    std::vector<int64_t> steps(P_, 0);
    std::vector<std::vector<int64_t>> batchRows(slotTask.size());
    for (int64_t epoch = 0; epoch < opt.epochs; ++epoch) {
      for (int64_t s = 0; s < maxSteps; ++s) {
        checkCancelled(opt);
        int64_t pa = 0;
        while (pa < P_ && ps_[pa].stepsPerEpoch > s) ++pa;  // sorted: the active probes are a prefix
        for (size_t k = 0; k < slotTask.size(); ++k) {
          if (slotSteps[k] <= s) continue;
          batchRows[k].clear();
          samplers[k].next(B_ / 2, batchRows[k]);
        }
        for (int64_t p = 0; p < pa; ++p) ++steps[p];
        step(pa, slotOf, batchRows, steps);
      }
      evaluate(res, epoch, bestLoss);
      if (opt.progress) {
        Progress pr;
        pr.epoch = epoch + 1;
        pr.epochs = opt.epochs;
        pr.stack = stackIndex;
        pr.stacks = stacks;
        pr.probes = P_;
        pr.probesDone = probesDone;
        pr.probesTotal = static_cast<int64_t>(res.probes.size());
        opt.progress(pr);
      }
    }
    finish(res);
    probesDone += P_;
  }

  static int64_t bytesPerProbe(int64_t dim, const std::vector<int64_t>& hidden, int64_t B) {
    int64_t params = 0, acts = dim;
    int64_t in = dim;
    for (auto h : hidden) {
      params += in * h + h;
      acts += 3 * h;
      in = h;
    }
    params += in + 1;
    return 4 * (5 * params + B * acts * 2);
  }

 private:
  void allocate() {
    auto f = torch::TensorOptions().dtype(torch::kFloat);
    for (size_t l = 0; l + 1 < dims_.size(); ++l) {
      int64_t in = dims_[l], out = dims_[l + 1];
      auto w = torch::empty({P_, in, out}, f);
      auto b = torch::empty({P_, 1, out}, f);
      for (int64_t p = 0; p < P_; ++p) {
        initLayer(w[p].data_ptr<float>(), b[p].data_ptr<float>(), in, out, ps_[p].key, l);
      }
      W_.push_back(makeParam(w.to(sh_.device), !fusedGradAdam(l)));
      Bs_.push_back(makeParam(b.to(sh_.device), true));
    }
    std::vector<float> y(B_);
    for (int64_t b = 0; b < B_; ++b) y[b] = b < B_ / 2 ? 1.0f : 0.0f;
    y_ = torch::tensor(y).view({1, B_, 1}).to(sh_.device);
    inputs_ = torch::empty({P_, B_, sh_.dim}, f);
    for (size_t l = 1; l + 1 < dims_.size(); ++l) masks_.push_back(torch::empty({P_, B_, dims_[l]}, f));
  }

  // On the CPU each probe steps on its own (stepProbeCpu); elsewhere, or on request, the stack steps at once.
  bool perProbeCpu() const { return sh_.device.is_cpu() && !sh_.opt.batchedStep; }
  // Layers of the per-probe CPU step wide enough for gradAdamProbe never hold a whole gradient.
  bool fusedGradAdam(size_t l) const { return perProbeCpu() && dims_[l] >= kGradRows; }

  static Param makeParam(torch::Tensor v, bool withGrad) {
    Param p;
    p.value = v;
    if (withGrad) p.grad = torch::zeros_like(v);
    p.m = torch::zeros_like(v);
    p.v = torch::zeros_like(v);
    p.best = v.clone();
    return p;
  }

  // One training step of the first `pa` probes: forward, hand-written backward, Adam.
  void step(int64_t pa, const std::vector<int>& slotOf, const std::vector<std::vector<int64_t>>& batchRows,
            const std::vector<int64_t>& steps) {
    if (perProbeCpu()) {
      forEachProbe(pa, [&](int64_t p) { stepProbeCpu(p, slotOf, batchRows, steps); });
      return;
    }
    fillInputs(inputs_.data_ptr<float>(), sh_, ps_, 0, pa, B_, slotOf, batchRows, steps);
    for (size_t l = 0; l < masks_.size(); ++l) {
      fillMasks(masks_[l].data_ptr<float>(), ps_, 0, pa, B_, masks_[l].size(2), l + 1, steps);
    }
    stepBatched(pa, steps);
  }

  torch::Tensor mask(size_t l, int64_t pa) const { return masks_[l].narrow(0, 0, pa).to(sh_.device); }

  // CPU: each probe's whole step (its batch, masks, forward, backward, Adam) runs on one thread while its
  // weights, moments and gradients are still in cache; the stack's probes are spread over the threads. ATen's
  // CPU bmm would loop over the same per-probe GEMMs, but layer by layer, streaming the whole stack through
  // memory several times a step and joining the threads after every probe's product.
  void stepProbeCpu(int64_t p, const std::vector<int>& slotOf, const std::vector<std::vector<int64_t>>& batchRows,
                    const std::vector<int64_t>& steps) {
    fillInputs(inputs_.data_ptr<float>(), sh_, ps_, p, p + 1, B_, slotOf, batchRows, steps);
    for (size_t l = 0; l < masks_.size(); ++l) {
      fillMasks(masks_[l].data_ptr<float>(), ps_, p, p + 1, B_, masks_[l].size(2), l + 1, steps);
    }
    const size_t L = W_.size();
    std::vector<torch::Tensor> acts{inputs_[p]}, pre;
    for (size_t l = 0; l < L; ++l) {
      auto z = torch::addmm(Bs_[l].value[p], acts.back(), W_[l].value[p]);
      if (l + 1 == L) {
        acts.push_back(z);
        break;
      }
      pre.push_back(z);
      acts.push_back(z.relu().mul_(masks_[l][p]));
    }
    auto dz = torch::sigmoid(acts.back()).sub_(y_[0]).div_(static_cast<double>(B_));
    for (size_t l = L; l-- > 0;) {
      auto gb = Bs_[l].grad[p];
      at::sum_out(gb, dz, {0}, true);
      torch::Tensor da;
      if (l > 0) da = torch::mm(dz, W_[l].value[p].t());  // through the weights before they move
      if (fusedGradAdam(l)) {
        gradAdamProbe(W_[l], ps_[p], p, steps[p], sh_.opt.lr, acts[l], dz);
      } else {
        auto gw = W_[l].grad[p];
        at::mm_out(gw, acts[l].t(), dz);
        adamProbe(W_[l], ps_[p], p, steps[p], sh_.opt.lr);
      }
      adamProbe(Bs_[l], ps_[p], p, steps[p], sh_.opt.lr);
      if (l > 0) dz = da.mul_(masks_[l - 1][p]).mul_(pre[l - 1].gt(0));
    }
  }

  // Other devices: batched products over the stack (bmm/baddbmm), then Adam in tensor operations.
  void stepBatched(int64_t pa, const std::vector<int64_t>& steps) {
    const size_t L = W_.size();
    std::vector<torch::Tensor> acts{inputs_.narrow(0, 0, pa).to(sh_.device)}, pre;
    for (size_t l = 0; l < L; ++l) {
      auto z = torch::baddbmm(Bs_[l].value.narrow(0, 0, pa), acts.back(), W_[l].value.narrow(0, 0, pa));
      if (l + 1 == L) {
        acts.push_back(z);
        break;
      }
      pre.push_back(z);
      acts.push_back(z.relu().mul_(mask(l, pa)));
    }
    // d(mean BCE)/d(logit) per probe.
    auto dz = torch::sigmoid(acts.back()).sub_(y_).div_(static_cast<double>(B_));
    for (size_t l = L; l-- > 0;) {
      auto gw = W_[l].grad.narrow(0, 0, pa);
      torch::bmm_out(gw, acts[l].transpose(1, 2), dz);
      Bs_[l].grad.narrow(0, 0, pa).copy_(dz.sum(1, true));
      if (l == 0) break;
      auto da = torch::bmm(dz, W_[l].value.narrow(0, 0, pa).transpose(1, 2));
      dz = da.mul_(mask(l - 1, pa)).mul_(pre[l - 1].gt(0));
    }
    for (size_t l = 0; l < L; ++l) {
      adamTensor(W_[l], ps_, pa, steps, sh_.opt.lr);
      adamTensor(Bs_[l], ps_, pa, steps, sh_.opt.lr);
    }
  }

  // Validation loss and accuracy of every probe (no dropout); keeps the weights of a new best loss.
  void evaluate(Result& res, int64_t epoch, std::vector<float>& bestLoss) {
    for (int64_t p = 0; p < P_; ++p) {
      int t = ps_[p].task;
      auto logits = forwardOne(W_, Bs_, p, sh_.valX[t], false);
      const auto& y = sh_.valY[t];
      float loss = torch::binary_cross_entropy_with_logits(logits, y).item<float>();
      float acc = logits.gt(0).to(torch::kFloat).eq(y).to(torch::kFloat).mean().item<float>();
      ProbeResult& r = res.probes[ps_[p].index];
      r.valLoss.push_back(loss);
      r.valAcc.push_back(acc);
      if (loss < bestLoss[p]) {  // NaN never improves
        bestLoss[p] = loss;
        r.bestEpoch = epoch;
        r.bestValLoss = loss;
        r.bestValAcc = acc;
        for (size_t l = 0; l < W_.size(); ++l) {
          W_[l].best[p].copy_(W_[l].value[p]);
          Bs_[l].best[p].copy_(Bs_[l].value[p]);
        }
      }
    }
  }

  void finish(Result& res) {
    const bool linear = dims_.size() == 2;
    for (int64_t p = 0; p < P_; ++p) {
      int t = ps_[p].task;
      ProbeResult& r = res.probes[ps_[p].index];
      if (r.bestEpoch < 0) {
        r.bestValLoss = std::numeric_limits<double>::quiet_NaN();
        r.bestValAcc = std::numeric_limits<double>::quiet_NaN();
      }
      auto logits = forwardRows(sh_.testX[t], [&](const torch::Tensor& x) { return forwardOne(W_, Bs_, p, x, true); });
      r.testProb = toVector(torch::sigmoid(logits).view(-1));
      if (sh_.opt.keepAllWeights) {
        r.net = extractNet(W_, Bs_, p, sh_.scalers[t]);
        r.hasNet = true;
      }
      TaskResult& tr = res.tasks[t];
      if (better(res, ps_[p].index, probeIndex(t, tr.selected))) {
        tr.selected = ps_[p].config;
        tr.selectedNet = extractNet(W_, Bs_, p, sh_.scalers[t]);
      }
      if (linear && better(res, ps_[p].index, probeIndex(t, tr.linear))) {
        tr.linear = ps_[p].config;
        tr.linearNet = extractNet(W_, Bs_, p, sh_.scalers[t]);
      }
    }
  }

  // Index into Result::probes of task t's config c (results are task-major); -1 for none.
  int probeIndex(int t, int c) const { return c < 0 ? -1 : t * static_cast<int>(sh_.configs.size()) + c; }

  // Lower kept validation loss wins; ties (and NaN against NaN) go to the earlier config of the grid.
  static bool better(const Result& res, int cand, int incumbent) {
    if (incumbent < 0) return true;
    double a = res.probes[cand].bestValLoss, b = res.probes[incumbent].bestValLoss;
    if (std::isnan(b) && !std::isnan(a)) return true;
    if (std::isnan(a)) return false;
    if (a != b) return a < b;
    return res.probes[cand].config < res.probes[incumbent].config;
  }

  Shared& sh_;
  std::vector<ProbeSpec> ps_;
  int64_t P_, B_;
  std::vector<int64_t> dims_;
  std::vector<Param> W_, Bs_;
  torch::Tensor y_, inputs_;
  std::vector<torch::Tensor> masks_;
};

}  // namespace

int64_t stackBytesPerProbe(int64_t dim, const std::vector<int64_t>& hidden, int64_t batchSize) {
  return Stack::bytesPerProbe(dim, hidden, batchSize);
}

void trainStack(Shared& sh, const std::vector<int64_t>& hidden, std::vector<ProbeSpec> ps, Result& res,
                int64_t stackIndex, int64_t stacks, int64_t& probesDone) {
  Stack stack(sh, hidden, std::move(ps));
  stack.run(res, stackIndex, stacks, probesDone);
}

}  // namespace calmkit::probes
