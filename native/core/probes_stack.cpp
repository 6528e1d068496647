#include "core/probes_stack.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/probes_device_batch.h"
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
  return fitScaler(X, std::vector<int64_t>(train.rows.begin(), train.rows.end()));
}

Scaler fitScaler(const torch::Tensor& X, const std::vector<int64_t>& rowList) {
  auto rows = torch::tensor(rowList, torch::kLong);
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

torch::Tensor forwardClips(const torch::Tensor& x, int64_t S, const torch::Tensor& valid,
                           const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& net) {
  const int64_t n = x.size(0) / S;
  std::vector<torch::Tensor> out;
  for (int64_t at = 0; at < n; at += kForwardRows) {
    const int64_t clips = std::min(kForwardRows, n - at);
    torch::Tensor block = x.narrow(0, at * S, clips * S);
    torch::Tensor v = valid.defined() ? valid.narrow(0, at, clips) : valid;
    if (clips < kForwardRows) {
      block = torch::constant_pad_nd(block, {0, 0, 0, (kForwardRows - clips) * S});
      if (v.defined()) v = torch::constant_pad_nd(v.to(torch::kInt), {0, 0, 0, kForwardRows - clips}, 1).to(torch::kBool);
    }
    out.push_back(net(block, v).narrow(0, 0, clips));
  }
  return out.size() == 1 ? out[0] : torch::cat(out, 0);
}

torch::Tensor netLogits(const NetTensors& net, const torch::Tensor& x, int64_t S, const torch::Tensor& valid,
                        torch::Tensor* weights) {
  const size_t L = net.w.size();
  torch::Tensor h = x;
  for (size_t l = 0; l + 1 < L; ++l) h = torch::addmm(net.b[l], h, net.w[l]).relu_();
  torch::Tensor scores = torch::addmm(net.b[L - 1], h, net.w[L - 1]);
  if (!net.wa.defined()) return scores;
  // Attention: softmax over each clip's real segments, then the weighted sum of the segment scores.
  const int64_t clips = x.size(0) / S;
  torch::Tensor a = torch::mm(h, net.wa).view({clips, S});
  if (valid.defined()) a = a.masked_fill(valid.logical_not(), -std::numeric_limits<float>::infinity());
  torch::Tensor w = torch::softmax(a, 1);
  if (weights) *weights = w;
  return w.mul(scores.view({clips, S})).sum(1, true);
}

namespace {

// The feature rows of a split's clips: clip r's S rows are r * S .. r * S + S - 1.
std::vector<int64_t> rowsOf(const Split& s, int64_t S) {
  std::vector<int64_t> rows;
  rows.reserve(s.rows.size() * static_cast<size_t>(S));
  for (int32_t r : s.rows) {
    for (int64_t k = 0; k < S; ++k) rows.push_back(static_cast<int64_t>(r) * S + k);
  }
  return rows;
}

// [clips, S] bool of the split's real segments, or undefined when none of its clips has padding.
torch::Tensor validMaskOf(const Shared& sh, const Split& s) {
  if (!sh.padded) return {};
  const int64_t S = sh.segments;
  auto m = torch::zeros({static_cast<int64_t>(s.rows.size()), S}, torch::kBool);
  auto* d = m.data_ptr<bool>();
  for (size_t i = 0; i < s.rows.size(); ++i) {
    for (int64_t k = 0; k < sh.validOf(s.rows[i]); ++k) d[i * S + k] = true;
  }
  return m;
}

// The split's rows (S per clip), standardised; padding segments are zeroed so that nothing in them (not even a
// NaN) reaches a product.
torch::Tensor standardized(const Shared& sh, const Split& s, const Scaler& sc, const torch::Tensor& valid) {
  auto rows = torch::tensor(rowsOf(s, sh.segments), torch::kLong);
  auto x = sh.X.index_select(0, rows);
  if (sc.mean.defined()) x = x.sub_(sc.mean).div_(sc.std);
  if (valid.defined()) x.masked_fill_(valid.logical_not().view({-1, 1}), 0.0f);
  return x;
}

torch::Tensor targetsOf(const Split& s) {
  std::vector<float> y(s.targets.begin(), s.targets.end());
  return torch::tensor(y, torch::kFloat).view({-1, 1});
}

// A split's evaluation rows, standardised, on the device, with the mask of real segments when clips are padded.
struct EvalRows {
  torch::Tensor x, valid;
};
EvalRows evalRows(const Shared& sh, const Split& s, int t) {
  auto valid = validMaskOf(sh, s);
  auto x = standardized(sh, s, sh.scalers[t], valid).to(sh.device);
  return {x, valid.defined() ? valid.to(sh.device) : valid};
}

// The validation targets of task t and, with `rows`, its standardised validation and test rows, kept on the device
// for every later stack. MLP stacks keep the rows (one vector per clip: small); attention stacks build them per
// evaluation (evalRows) instead: [clips * S, dim] copies of every instrument's validation and test clips would
// come close to a second copy of the whole feature matrix.
void ensureEvalData(Shared& sh, int t, bool rows) {
  const Task& task = sh.tasks[t];
  if (!sh.valY[t].defined()) sh.valY[t] = targetsOf(task.val).to(sh.device);
  if (!rows || sh.valX[t].defined()) return;
  auto val = evalRows(sh, task.val, t), test = evalRows(sh, task.test, t);
  sh.valX[t] = val.x;
  sh.valValid[t] = val.valid;
  sh.testX[t] = test.x;
  sh.testValid[t] = test.valid;
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
// out[p, b * S + k, :] = mask * (x[clip(task(p), b), segment k] - mean) / std, for probes [p0, p1); the mask of
// row i = b * S + k is draws i * dim .. of the probe's layer-0 stream, so with S = 1 it is the MLP probe's.
// Padding segments are zero rows.
void fillInputs(float* out, const Shared& sh, const std::vector<ProbeSpec>& ps, int64_t p0, int64_t p1, int64_t B,
                int64_t S, const std::vector<int>& slotOf, const std::vector<std::vector<int64_t>>& batchRows,
                const std::vector<int64_t>& steps) {
  const int64_t d = sh.dim, R = B * S;
  at::parallel_for(p0 * R, p1 * R, rowsPerTask(d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t p = r / R, i = r % R, b = i / S, k = i % S;
      const int64_t clip = batchRows[slotOf[p]][b];
      if (k >= sh.validOf(clip)) {
        std::fill_n(out + r * d, d, 0.0f);
        continue;
      }
      const Scaler& sc = sh.scalers[ps[p].task];
      const float* x = sh.features + (clip * S + k) * d;
      const float* mu = sc.mean.defined() ? sc.mean.data_ptr<float>() : nullptr;
      const float* sd = sc.mean.defined() ? sc.std.data_ptr<float>() : nullptr;
      float keep = static_cast<float>(1.0 - ps[p].dropout);
      uint64_t key = subKey(ps[p].key, kMask, 0, static_cast<uint64_t>(steps[p]));
      dropoutRow(out + r * d, x, mu, sd, d, key, i * d, keep, 1.0f / keep);
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
      SerialBlas serial;             // as a lone probe's below (oneMKL's one-thread kernel inside the region anyway)
      for (int64_t p = next++; p < pa; p = next++) fn(p);
    });
  } else {
    // Inside the parallel loop above every product is oneMKL's one-thread kernel; a lone probe's must be too, or
    // it would train to other bits than in a stack (the threads still split its gradient blocks, rows and Adam).
    SerialBlas serial;
    for (int64_t p = 0; p < pa; ++p) fn(p);
  }
}

// Logits of MLP probe p (its current or kept weights) for standardised rows x [V, dim].
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

Layer layerOf(const Param& w, const Param& b, int64_t p) {
  auto wt = w.best[p].to(torch::kCPU).contiguous();
  auto bt = b.best[p].to(torch::kCPU).contiguous().view(-1);
  Layer layer;
  layer.in = wt.size(0);
  layer.out = wt.size(1);
  layer.weight.assign(wt.data_ptr<float>(), wt.data_ptr<float>() + wt.numel());
  layer.bias.assign(bt.data_ptr<float>(), bt.data_ptr<float>() + bt.numel());
  return layer;
}

Net extractNet(const std::vector<Param>& W, const std::vector<Param>& Bs, const Param* Wa, int64_t p, const Scaler& sc) {
  Net net;
  if (sc.mean.defined()) {
    net.mean.assign(sc.mean.data_ptr<float>(), sc.mean.data_ptr<float>() + sc.mean.numel());
    net.std.assign(sc.std.data_ptr<float>(), sc.std.data_ptr<float>() + sc.std.numel());
  }
  for (size_t l = 0; l < W.size(); ++l) net.layers.push_back(layerOf(W[l], Bs[l], p));
  if (Wa) {
    // The attention layer as a Layer with a zero bias (it has none; see attentionHead).
    auto w = Wa->best[p].to(torch::kCPU).contiguous();
    net.attention = true;
    net.attentionLayer.in = w.size(0);
    net.attentionLayer.out = 1;
    net.attentionLayer.weight.assign(w.data_ptr<float>(), w.data_ptr<float>() + w.numel());
    net.attentionLayer.bias.assign(1, 0.0f);
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

// The attention head of one step, per probe: softmax weights over each clip's real segments, the clips' logits,
// and the two output gradients. The attention logit has no bias: softmax is invariant to a shift shared by a
// clip's segments, so a bias's gradient is identically zero and Adam would only turn rounding noise into a random
// walk (different in every implementation). For scores z [rows, 1] and attention logits a [rows, 1] of B clips x S segments
// (rows = B * S; leading dims of a batched step allowed), mean-BCE gradients:
//   dL/dz_s = w_s g,  dL/da_s = w_s (z_s - logit) g,  with g = dL/dlogit = (sigmoid(logit) - y) / B.
// With S = 1 the weight is exactly 1, the logit is z, dL/dz is g and dL/da is exactly 0: the MLP's step.
struct HeadGrads {
  torch::Tensor dz, da;
};
HeadGrads attentionHead(const torch::Tensor& z, const torch::Tensor& a, const torch::Tensor& valid,
                        const torch::Tensor& y, int64_t B, int64_t S) {
  auto lead = z.sizes().vec();
  lead.pop_back();
  lead.pop_back();  // [..., B * S, 1] -> leading dims
  auto shape = lead;
  shape.push_back(B);
  shape.push_back(S);
  auto av = a.view(shape);
  if (valid.defined()) av = av.masked_fill(valid.logical_not(), -std::numeric_limits<float>::infinity());
  auto w = torch::softmax(av, -1);
  auto zv = z.view(shape);
  auto logit = w.mul(zv).sum(-1, true);  // [..., B, 1]
  auto g = torch::sigmoid(logit).sub_(y).div_(static_cast<double>(B));
  auto dz = w.mul(g);
  auto da = zv.sub(logit).mul_(dz);
  auto flat = lead;
  flat.push_back(B * S);
  flat.push_back(1);
  return {dz.view(flat), da.view(flat)};
}

// Trains one stack (same architecture, probes sorted by steps per epoch, descending) for all epochs, then
// fills in each probe's curves, kept weights' test probabilities, and selection candidates.
class Stack {
 public:
  Stack(Shared& sh, const Arch& arch, std::vector<ProbeSpec> ps)
      : sh_(sh),
        ps_(std::move(ps)),
        P_(static_cast<int64_t>(ps_.size())),
        B_(sh.opt.batchSize),
        attention_(arch.attention),
        S_(arch.attention ? sh.segments : 1),
        R_(B_ * S_),
        bf16_(sh.opt.matmulPrecision == MatmulPrecision::kBf16),
        tracing_(static_cast<bool>(sh.opt.trace)) {
    dims_.push_back(sh.dim);
    for (auto h : arch.hidden) dims_.push_back(h);
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
      ensureEvalData(sh_, t, !attention_);
    }
    std::vector<int64_t> slotSteps(slotTask.size());
    for (size_t s = 0; s < slotTask.size(); ++s) slotSteps[s] = ps_[0].stepsPerEpoch;
    for (int64_t p = 0; p < P_; ++p) slotSteps[slotOf[p]] = ps_[p].stepsPerEpoch;
    int64_t maxSteps = ps_[0].stepsPerEpoch;

    std::vector<float> bestLoss(P_, std::numeric_limits<float>::infinity());
    std::vector<int64_t> steps(P_, 0);
    std::vector<std::vector<int64_t>> batchRows(slotTask.size());
    std::vector<torch::Tensor> batchValid(slotTask.size());
    if (tracing_) emitTrace(0, false);
    for (int64_t epoch = 0; epoch < opt.epochs; ++epoch) {
      for (int64_t s = 0; s < maxSteps; ++s) {
        checkCancelled(opt);
        int64_t pa = 0;
        while (pa < P_ && ps_[pa].stepsPerEpoch > s) ++pa;  // sorted: the active probes are a prefix
        for (size_t k = 0; k < slotTask.size(); ++k) {
          if (slotSteps[k] <= s) continue;
          batchRows[k].clear();
          samplers[k].next(B_ / 2, batchRows[k]);
          if (attention_ && sh_.padded) batchValid[k] = validOfBatch(batchRows[k]);
        }
        for (int64_t p = 0; p < pa; ++p) ++steps[p];
        step(pa, slotOf, batchRows, batchValid, steps);
        if (tracing_) emitTrace(steps[0], true);
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

  static int64_t bytesPerProbe(int64_t dim, const Arch& arch, int64_t B, int64_t rowsPerClip, MatmulPrecision precision) {
    int64_t params = 0, acts = dim;
    int64_t in = dim;
    for (auto h : arch.hidden) {
      params += in * h + h;
      acts += 3 * h;
      in = h;
    }
    params += in + 1;
    if (arch.attention) {
      params += in;
      acts += 4;  // scores, attention logits and their gradients
    }
    const int64_t half = precision == MatmulPrecision::kBf16 ? 2 * params : 0;
    return 4 * (5 * params + B * rowsPerClip * acts * 2) + half;
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
    if (attention_) {
      // The attention layer reads what the score layer reads; its init stream is the one after the last layer's.
      const size_t last = dims_.size() - 2;
      // Its bias is drawn with it (the stream's layout is PyTorch's Linear) and dropped: see attentionHead.
      auto w = torch::empty({P_, dims_[last], 1}, f);
      auto b = torch::empty({P_, 1, 1}, f);
      for (int64_t p = 0; p < P_; ++p) {
        initLayer(w[p].data_ptr<float>(), b[p].data_ptr<float>(), dims_[last], 1, ps_[p].key, last + 1);
      }
      Wa_ = makeParam(w.to(sh_.device), !fusedGradAdam(last));
    }
    if (tracing_) {
      for (size_t l = 0; l < W_.size(); ++l) {
        traceGrads_.push_back(torch::zeros_like(W_[l].value[0]).cpu());
        traceGrads_.push_back(torch::zeros_like(Bs_[l].value[0]).cpu());
      }
      if (attention_) traceGrads_.push_back(torch::zeros_like(Wa_.value[0]).cpu());
    }
    if (bf16_) {
      for (auto& w : W_) w.half = w.value.to(torch::kBFloat16);
      if (attention_) Wa_.half = Wa_.value.to(torch::kBFloat16);
    }
    std::vector<float> y(B_);
    for (int64_t b = 0; b < B_; ++b) y[b] = b < B_ / 2 ? 1.0f : 0.0f;
    y_ = torch::tensor(y).view({1, B_, 1}).to(sh_.device);
    if (perProbeCpu()) {
      inputs_ = torch::empty({P_, R_, sh_.dim}, f);
      for (size_t l = 1; l + 1 < dims_.size(); ++l) masks_.push_back(torch::empty({P_, R_, dims_[l]}, f));
      return;
    }
    // The batched step builds its inputs on the device (batchOnDevice) from these per-probe constants.
    auto dev = torch::TensorOptions().device(sh_.device);
    std::vector<float> keep(P_), scale(P_);
    for (int64_t p = 0; p < P_; ++p) {
      keep[p] = static_cast<float>(1.0 - ps_[p].dropout);
      scale[p] = 1.0f / keep[p];
    }
    keep_ = torch::tensor(keep).to(sh_.device);
    scale_ = torch::tensor(scale).to(sh_.device);
    if (sh_.scalers[ps_[0].task].mean.defined()) {
      std::vector<torch::Tensor> mean, sd;
      for (int64_t p = 0; p < P_; ++p) {
        mean.push_back(sh_.scalers[ps_[p].task].mean);
        sd.push_back(sh_.scalers[ps_[p].task].std);
      }
      mean_ = torch::stack(mean).view({P_, 1, sh_.dim}).to(dev);
      std_ = torch::stack(sd).view({P_, 1, sh_.dim}).to(dev);
    }
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

  // [B, S] bool of the real segments of a batch's clips.
  torch::Tensor validOfBatch(const std::vector<int64_t>& rows) const {
    auto m = torch::zeros({B_, S_}, torch::kBool);
    auto* d = m.data_ptr<bool>();
    for (int64_t b = 0; b < B_; ++b) {
      for (int64_t k = 0; k < sh_.validOf(rows[b]); ++k) d[b * S_ + k] = true;
    }
    return m;
  }

  // Options::trace: the slot of a parameter in TraceStep's order (W0, b0, W1, b1, ..., the attention layer).
  size_t traceSlot(const Param& prm) const {
    for (size_t l = 0; l < W_.size(); ++l) {
      if (&prm == &W_[l]) return 2 * l;
      if (&prm == &Bs_[l]) return 2 * l + 1;
    }
    return 2 * W_.size();  // Wa_
  }
  // Where a fused gradient + Adam pass copies the gradient it forms (nullptr when not tracing).
  float* traceGradOut(const Param& prm) {
    return tracing_ ? traceGrads_[traceSlot(prm)].data_ptr<float>() : nullptr;
  }
  // Keeps probe 0's gradient of `prm` (a one-probe grid: Options::trace) as the step formed it.
  void traceGrad(const Param& prm, const torch::Tensor& g) {
    if (tracing_) traceGrads_[traceSlot(prm)].copy_(g.reshape(traceGrads_[traceSlot(prm)].sizes()));
  }
  void emitTrace(int64_t step, bool withGrads) {
    TraceStep t;
    t.step = step;
    auto add = [](std::vector<std::vector<float>>& to, const torch::Tensor& x) {
      auto c = x.to(torch::kCPU).contiguous();
      to.emplace_back(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
    };
    for (size_t l = 0; l < W_.size(); ++l) {
      add(t.weights, W_[l].value[0]);
      add(t.weights, Bs_[l].value[0]);
    }
    if (attention_) add(t.weights, Wa_.value[0]);
    if (withGrads) {
      for (const auto& g : traceGrads_) add(t.grads, g);
    }
    sh_.opt.trace(t);
  }

  // One training step of the first `pa` probes: forward, hand-written backward, Adam.
  void step(int64_t pa, const std::vector<int>& slotOf, const std::vector<std::vector<int64_t>>& batchRows,
            const std::vector<torch::Tensor>& batchValid, const std::vector<int64_t>& steps) {
    if (perProbeCpu()) {
      forEachProbe(pa, [&](int64_t p) {
        if (bf16_) {
          stepProbeCpuBf16(p, slotOf, batchRows, batchValid[slotOf[p]], steps);
        } else {
          stepProbeCpu(p, slotOf, batchRows, batchValid[slotOf[p]], steps);
        }
      });
      return;
    }
    batchOnDevice(pa, slotOf, batchRows, batchValid, steps);
    stepBatched(pa, steps);
  }

  // The stream key of probe p's dropout at `layer` (0: the input) in its current step, as int64 bits.
  int64_t maskKey(int64_t p, uint64_t layer, const std::vector<int64_t>& steps) const {
    return static_cast<int64_t>(subKey(ps_[p].key, kMask, layer, static_cast<uint64_t>(steps[p])));
  }

  // The batched step's dropped-out, standardised inputs [pa, R, dim], hidden-layer masks [pa, R, h] and (attention
  // probes on padded clips) the [pa, B, S] real segments, all on the device: fillInputs and fillMasks' values,
  // bit for bit. Only each instrument's batch rows cross from the host (a [P, R, dim] host tensor per step was
  // 221 MB for 180 probes of 4800-d); the expansion to probes, the scaling and the draws run on the device.
  void batchOnDevice(int64_t pa, const std::vector<int>& slotOf, const std::vector<std::vector<int64_t>>& batchRows,
                     const std::vector<torch::Tensor>& batchValid, const std::vector<int64_t>& steps) {
    const int64_t d = sh_.dim;
    std::vector<int64_t> compact(batchRows.size(), -1), slots, slotIndex(pa);
    for (int64_t p = 0; p < pa; ++p) {
      int s = slotOf[p];
      if (compact[s] < 0) {
        compact[s] = static_cast<int64_t>(slots.size());
        slots.push_back(s);
      }
      slotIndex[p] = compact[s];
    }
    auto host = torch::TensorOptions().dtype(torch::kFloat).pinned_memory(sh_.device.is_cuda());
    auto rows = torch::zeros({static_cast<int64_t>(slots.size()), R_, d}, host);
    float* out = rows.data_ptr<float>();
    for (size_t j = 0; j < slots.size(); ++j) {
      const auto& clips = batchRows[slots[j]];
      for (int64_t b = 0; b < B_; ++b) {
        const int64_t real = std::min<int64_t>(S_, sh_.validOf(clips[b]));
        std::copy_n(sh_.features + clips[b] * S_ * d, real * d, out + (static_cast<int64_t>(j) * R_ + b * S_) * d);
      }
    }
    auto idx = torch::tensor(slotIndex, torch::kLong).to(sh_.device);
    auto x = rows.to(sh_.device, /*non_blocking=*/true).index_select(0, idx);
    if (mean_.defined()) x.sub_(mean_.narrow(0, 0, pa)).div_(std_.narrow(0, 0, pa));
    std::vector<int64_t> keys(pa);
    for (int64_t p = 0; p < pa; ++p) keys[p] = maskKey(p, 0, steps);
    auto keysDev = torch::tensor(keys, torch::kLong).to(sh_.device);
    auto keep = keep_.narrow(0, 0, pa), scale = scale_.narrow(0, 0, pa).view({pa, 1, 1});
    x.mul_(scale).masked_fill_(keepDraws(keysDev, R_ * d, keep).view({pa, R_, d}).logical_not(), 0.0f);
    batchValid_ = torch::Tensor();
    if (attention_ && sh_.padded) {
      std::vector<torch::Tensor> v;
      for (int64_t slot : slots) v.push_back(batchValid[slot]);
      batchValid_ = torch::stack(v).to(sh_.device).index_select(0, idx);  // [pa, B, S]
      // Padding segments are zero rows, whatever standardisation made of them.
      x.masked_fill_(batchValid_.view({pa, R_, 1}).logical_not(), 0.0f);
    }
    inputsDev_ = x;
    masksDev_.clear();
    for (size_t l = 1; l + 1 < dims_.size(); ++l) {
      for (int64_t p = 0; p < pa; ++p) keys[p] = maskKey(p, l, steps);
      keysDev = torch::tensor(keys, torch::kLong).to(sh_.device);
      auto m = keepDraws(keysDev, R_ * dims_[l], keep).view({pa, R_, dims_[l]}).to(torch::kFloat).mul_(scale);
      masksDev_.push_back(m);
    }
  }

  // Probe p's slice of the host buffers: its dropped-out, standardised batch and its hidden layers' masks.
  void fillProbeBatch(int64_t p, const std::vector<int>& slotOf, const std::vector<std::vector<int64_t>>& batchRows,
                      const std::vector<int64_t>& steps) {
    fillInputs(inputs_.data_ptr<float>(), sh_, ps_, p, p + 1, B_, S_, slotOf, batchRows, steps);
    for (size_t l = 0; l < masks_.size(); ++l) {
      fillMasks(masks_[l].data_ptr<float>(), ps_, p, p + 1, R_, masks_[l].size(2), l + 1, steps);
    }
  }

  // CPU: each probe's whole step (its batch, masks, forward, backward, Adam) runs on one thread while its
  // weights, moments and gradients are still in cache; the stack's probes are spread over the threads. ATen's
  // CPU bmm would loop over the same per-probe GEMMs, but layer by layer, streaming the whole stack through
  // memory several times a step and joining the threads after every probe's product.
  void stepProbeCpu(int64_t p, const std::vector<int>& slotOf, const std::vector<std::vector<int64_t>>& batchRows,
                    const torch::Tensor& valid, const std::vector<int64_t>& steps) {
    fillProbeBatch(p, slotOf, batchRows, steps);
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
    torch::Tensor dz, dAtt;
    if (!attention_) {
      dz = torch::sigmoid(acts.back()).sub_(y_[0]).div_(static_cast<double>(B_));
    } else {
      auto a = torch::mm(acts[L - 1], Wa_.value[p]);
      auto head = attentionHead(acts.back(), a, valid, y_[0], B_, S_);
      dz = head.dz;
      dAtt = head.da;
    }
    for (size_t l = L; l-- > 0;) {
      auto gb = Bs_[l].grad[p];
      at::sum_out(gb, dz, {0}, true);
      traceGrad(Bs_[l], gb);
      torch::Tensor da;
      if (l > 0) da = torch::mm(dz, W_[l].value[p].t());  // through the weights before they move
      if (attention_ && l + 1 == L) {
        // The attention layer reads the same activations as the score layer; its gradient joins da before it moves.
        if (l > 0) da.addmm_(dAtt, Wa_.value[p].t());
        updateWeight(Wa_, p, l, steps, acts[l], dAtt);
      }
      updateWeight(W_[l], p, l, steps, acts[l], dz);
      adamProbe(Bs_[l], ps_[p], p, steps[p], sh_.opt.lr);
      if (l > 0) dz = da.mul_(masks_[l - 1][p]).mul_(pre[l - 1].gt(0));
    }
  }

  // stepProbeCpu with MatmulPrecision::kBf16: the same step, but every product reads bf16 operands (the layers'
  // inputs and the output gradients rounded here, the weights' bf16 copy kept by Adam) and sums in fp32. Biases,
  // masks, ReLU, the loss's gradient, the bias gradients and Adam stay fp32.
  void stepProbeCpuBf16(int64_t p, const std::vector<int>& slotOf, const std::vector<std::vector<int64_t>>& batchRows,
                        const torch::Tensor& valid, const std::vector<int64_t>& steps) {
    fillProbeBatch(p, slotOf, batchRows, steps);
    const size_t L = W_.size();
    std::vector<torch::Tensor> in{inputs_[p].to(torch::kBFloat16)}, pre;  // each layer's input, in bf16
    torch::Tensor logits;
    for (size_t l = 0; l < L; ++l) {
      auto z = mmBf16(in.back(), W_[l].half[p]).add_(Bs_[l].value[p]);
      if (l + 1 == L) {
        logits = z;
        break;
      }
      pre.push_back(z);
      in.push_back(z.relu().mul_(masks_[l][p]).to(torch::kBFloat16));
    }
    torch::Tensor dz, dAtt;
    if (!attention_) {
      dz = torch::sigmoid(logits).sub_(y_[0]).div_(static_cast<double>(B_));
    } else {
      auto a = mmBf16(in[L - 1], Wa_.half[p]);
      auto head = attentionHead(logits, a, valid, y_[0], B_, S_);
      dz = head.dz;
      dAtt = head.da;
    }
    for (size_t l = L; l-- > 0;) {
      auto gb = Bs_[l].grad[p];
      at::sum_out(gb, dz, {0}, true);
      traceGrad(Bs_[l], gb);
      const auto dzHalf = dz.to(torch::kBFloat16);
      torch::Tensor da;
      if (l > 0) da = mmBf16(dzHalf, W_[l].half[p].t());  // through the weights before they move
      if (attention_ && l + 1 == L) {
        const auto dAttHalf = dAtt.to(torch::kBFloat16);
        if (l > 0) da.add_(mmBf16(dAttHalf, Wa_.half[p].t()));
        updateWeight(Wa_, p, l, steps, in[l], dAttHalf);
      }
      updateWeight(W_[l], p, l, steps, in[l], dzHalf);
      adamProbe(Bs_[l], ps_[p], p, steps[p], sh_.opt.lr);
      if (l > 0) dz = da.mul_(masks_[l - 1][p]).mul_(pre[l - 1].gt(0));
    }
  }

  // Weight gradient A^T dz of probe p's weight (fed by layer l's input A) and its Adam update; in the bf16 step A
  // and dz are bf16 and Adam also refreshes the weight's bf16 copy.
  void updateWeight(Param& w, int64_t p, size_t l, const std::vector<int64_t>& steps, const torch::Tensor& A,
                    const torch::Tensor& dz) {
    if (fusedGradAdam(l)) {
      if (bf16_) {
        gradAdamProbeBf16(w, ps_[p], p, steps[p], sh_.opt.lr, A, dz, traceGradOut(w));
      } else {
        gradAdamProbe(w, ps_[p], p, steps[p], sh_.opt.lr, A, dz, traceGradOut(w));
      }
    } else {
      auto gw = w.grad[p];
      if (bf16_) {
        mmBf16Out(gw, A.t(), dz);
      } else {
        at::mm_out(gw, A.t(), dz);
      }
      traceGrad(w, gw);
      adamProbe(w, ps_[p], p, steps[p], sh_.opt.lr);
    }
  }

  // A batched product of the bf16 step: bf16 operands (the weights' bf16 copy where b is a weight), and the
  // output, which ATen gives in bf16 (summed in fp32 inside the kernel), widened to fp32, as under torch.autocast.
  static torch::Tensor bmmBf16(const torch::Tensor& a, const torch::Tensor& b) {
    return torch::bmm(a.to(torch::kBFloat16), b.to(torch::kBFloat16)).to(torch::kFloat);
  }

  // Other devices: batched products over the stack (bmm/baddbmm), then Adam in tensor operations.
  void stepBatched(int64_t pa, const std::vector<int64_t>& steps) {
    const size_t L = W_.size();
    const torch::Tensor valid = batchValid_;
    std::vector<torch::Tensor> acts{inputsDev_}, pre;
    for (size_t l = 0; l < L; ++l) {
      auto z = bf16_ ? bmmBf16(acts.back(), W_[l].half.narrow(0, 0, pa)).add_(Bs_[l].value.narrow(0, 0, pa))
                     : torch::baddbmm(Bs_[l].value.narrow(0, 0, pa), acts.back(), W_[l].value.narrow(0, 0, pa));
      if (l + 1 == L) {
        acts.push_back(z);
        break;
      }
      pre.push_back(z);
      acts.push_back(z.relu().mul_(masksDev_[l]));
    }
    // d(mean BCE)/d(logit) per probe (through the attention head for attention probes).
    torch::Tensor dz, dAtt;
    if (!attention_) {
      dz = torch::sigmoid(acts.back()).sub_(y_).div_(static_cast<double>(B_));
    } else {
      auto a = bf16_ ? bmmBf16(acts[L - 1], Wa_.half.narrow(0, 0, pa)) : torch::bmm(acts[L - 1], Wa_.value.narrow(0, 0, pa));
      auto head = attentionHead(acts.back(), a, valid, y_, B_, S_);
      dz = head.dz;
      dAtt = head.da;
    }
    for (size_t l = L; l-- > 0;) {
      auto gw = W_[l].grad.narrow(0, 0, pa);
      if (bf16_) {
        gw.copy_(bmmBf16(acts[l].transpose(1, 2), dz));
      } else {
        torch::bmm_out(gw, acts[l].transpose(1, 2), dz);
      }
      Bs_[l].grad.narrow(0, 0, pa).copy_(dz.sum(1, true));
      traceGrad(W_[l], gw[0]);
      traceGrad(Bs_[l], Bs_[l].grad[0]);
      if (attention_ && l + 1 == L) {
        auto ga = Wa_.grad.narrow(0, 0, pa);
        if (bf16_) {
          ga.copy_(bmmBf16(acts[l].transpose(1, 2), dAtt));
        } else {
          torch::bmm_out(ga, acts[l].transpose(1, 2), dAtt);
        }
        traceGrad(Wa_, ga[0]);
      }
      if (l == 0) break;
      auto da = bf16_ ? bmmBf16(dz, W_[l].half.narrow(0, 0, pa).transpose(1, 2))
                      : torch::bmm(dz, W_[l].value.narrow(0, 0, pa).transpose(1, 2));
      if (attention_ && l + 1 == L) {
        if (bf16_) {
          da.add_(bmmBf16(dAtt, Wa_.half.narrow(0, 0, pa).transpose(1, 2)));
        } else {
          da.baddbmm_(dAtt, Wa_.value.narrow(0, 0, pa).transpose(1, 2));
        }
      }
      dz = da.mul_(masksDev_[l - 1]).mul_(pre[l - 1].gt(0));
    }
    for (size_t l = 0; l < L; ++l) {
      adamTensor(W_[l], ps_, pa, steps, sh_.opt.lr);
      adamTensor(Bs_[l], ps_, pa, steps, sh_.opt.lr);
    }
    if (attention_) adamTensor(Wa_, ps_, pa, steps, sh_.opt.lr);
  }

  // Probe p's current or kept weights as a net of tensors.
  NetTensors tensorsOf(int64_t p, bool best) const {
    NetTensors net;
    for (size_t l = 0; l < W_.size(); ++l) {
      net.w.push_back((best ? W_[l].best : W_[l].value)[p]);
      net.b.push_back((best ? Bs_[l].best : Bs_[l].value)[p]);
    }
    if (attention_) net.wa = (best ? Wa_.best : Wa_.value)[p];
    return net;
  }

  // Logits of probe p for a split's standardised rows (an attention probe: per clip, over its S rows).
  torch::Tensor logitsOf(int64_t p, const torch::Tensor& x, const torch::Tensor& valid, bool best) const {
    if (!attention_) return forwardOne(W_, Bs_, p, x, best);
    return netLogits(tensorsOf(p, best), x, S_, valid);
  }

  // Runs fn(p, x, valid) for every probe with its task's rows of `split` (0 validation, 1 test): the cached rows
  // for MLP probes; for attention probes the rows of one task at a time, built once for all its probes.
  template <typename Fn>
  void withEvalRows(int split, const Fn& fn) {
    if (!attention_) {
      for (int64_t p = 0; p < P_; ++p) {
        int t = ps_[p].task;
        fn(p, split == 0 ? sh_.valX[t] : sh_.testX[t], split == 0 ? sh_.valValid[t] : sh_.testValid[t]);
      }
      return;
    }
    std::vector<bool> done(P_, false);
    for (int64_t q = 0; q < P_; ++q) {
      if (done[q]) continue;
      const int t = ps_[q].task;
      const EvalRows e = evalRows(sh_, split == 0 ? sh_.tasks[t].val : sh_.tasks[t].test, t);
      for (int64_t p = q; p < P_; ++p) {
        if (ps_[p].task != t) continue;
        fn(p, e.x, e.valid);
        done[p] = true;
      }
    }
  }

  // Validation loss and accuracy of every probe (no dropout); keeps the weights of a new best loss.
  void evaluate(Result& res, int64_t epoch, std::vector<float>& bestLoss) {
    withEvalRows(0, [&](int64_t p, const torch::Tensor& x, const torch::Tensor& valid) {
      int t = ps_[p].task;
      auto logits = logitsOf(p, x, valid, false);
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
        if (attention_) Wa_.best[p].copy_(Wa_.value[p]);
      }
    });
  }

  Net netOf(int64_t p, int t) const {
    return extractNet(W_, Bs_, attention_ ? &Wa_ : nullptr, p, sh_.scalers[t]);
  }

  void finish(Result& res) {
    const bool linear = dims_.size() == 2 && !attention_;
    withEvalRows(1, [&](int64_t p, const torch::Tensor& testX, const torch::Tensor& testValid) {
      int t = ps_[p].task;
      ProbeResult& r = res.probes[ps_[p].index];
      if (r.bestEpoch < 0) {
        r.bestValLoss = std::numeric_limits<double>::quiet_NaN();
        r.bestValAcc = std::numeric_limits<double>::quiet_NaN();
      }
      torch::Tensor logits;
      if (!attention_) {
        logits = forwardRows(testX, [&](const torch::Tensor& x) { return forwardOne(W_, Bs_, p, x, true); });
      } else {
        const NetTensors net = tensorsOf(p, true);
        std::vector<torch::Tensor> weights;
        logits = forwardClips(testX, S_, testValid, [&](const torch::Tensor& x, const torch::Tensor& v) {
          torch::Tensor w;
          auto z = netLogits(net, x, S_, v, &w);
          weights.push_back(w);
          return z;
        });
        r.testWeights = toVector(torch::cat(weights, 0).narrow(0, 0, logits.size(0)));
      }
      r.testProb = toVector(torch::sigmoid(logits).view(-1));
      if (sh_.opt.keepAllWeights) {
        r.net = netOf(p, t);
        r.hasNet = true;
      }
      TaskResult& tr = res.tasks[t];
      if (better(res, ps_[p].index, probeIndex(t, tr.selected))) {
        tr.selected = ps_[p].config;
        tr.selectedNet = netOf(p, t);
      }
      if (linear && better(res, ps_[p].index, probeIndex(t, tr.linear))) {
        tr.linear = ps_[p].config;
        tr.linearNet = netOf(p, t);
      }
    });
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
  bool attention_;
  int64_t S_, R_;  // segments per clip (1 for MLP probes) and rows per step (B * S)
  bool bf16_;      // MatmulPrecision::kBf16: the step's products read bf16 operands
  bool tracing_;   // Options::trace: a one-probe grid reports every step
  std::vector<torch::Tensor> traceGrads_;  // probe 0's gradients of the current step, in TraceStep's order
  std::vector<int64_t> dims_;
  std::vector<Param> W_, Bs_;
  Param Wa_;  // attention probes: the attention layer [P, last hidden, 1] (no bias)
  // The per-probe CPU step's host buffers (one probe's slice filled at a time).
  torch::Tensor y_, inputs_;
  std::vector<torch::Tensor> masks_;
  // The batched step's per-probe dropout keep and 1/keep [P], standardisation [P, 1, dim] (undefined without it),
  // and its current step's inputs, masks and real segments on the device (batchOnDevice).
  torch::Tensor keep_, scale_, mean_, std_;
  torch::Tensor inputsDev_, batchValid_;
  std::vector<torch::Tensor> masksDev_;
};

}  // namespace

int64_t stackBytesPerProbe(int64_t dim, const Arch& arch, int64_t batchSize, int64_t rowsPerClip,
                           MatmulPrecision precision) {
  return Stack::bytesPerProbe(dim, arch, batchSize, rowsPerClip, precision);
}

void trainStack(Shared& sh, const Arch& arch, std::vector<ProbeSpec> ps, Result& res, int64_t stackIndex,
                int64_t stacks, int64_t& probesDone) {
  Stack stack(sh, arch, std::move(ps));
  stack.run(res, stackIndex, stacks, probesDone);
}

}  // namespace calmkit::probes
