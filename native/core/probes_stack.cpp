#include "core/probes_stack.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>

#include "core/error.h"
#include "core/probes_device_batch.h"
#include "core/probes_eval.h"
#include "core/probes_random.h"
#include "core/probes_step.h"

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

void checkCancelled(const Options& opt) {
  if (opt.cancelled && opt.cancelled()) throw Error(code::kAborted, "probe training was cancelled");
}

// Trains one stack (same architecture, probes sorted by steps per epoch, descending) for all epochs, then
// fills in each probe's curves, kept weights' test probabilities, and selection candidates (probes_eval).
class Stack {
 public:
  Stack(Shared& sh, const Arch& arch, std::vector<ProbeSpec> ps)
      : sh_(sh),
        arch_(arch),
        head_(*arch.head),
        ps_(std::move(ps)),
        P_(static_cast<int64_t>(ps_.size())),
        B_(sh.opt.batchSize),
        S_(arch.rowsPerClip(sh.segments)),
        R_(B_ * S_),
        bf16_(sh.opt.matmulPrecision == MatmulPrecision::kBf16) {
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
      ensureEvalData(sh_, t, !head_.readsSegments());
    }
    std::vector<int64_t> slotSteps(slotTask.size());
    for (size_t s = 0; s < slotTask.size(); ++s) slotSteps[s] = ps_[0].stepsPerEpoch;
    for (int64_t p = 0; p < P_; ++p) slotSteps[slotOf[p]] = ps_[p].stepsPerEpoch;
    int64_t maxSteps = ps_[0].stepsPerEpoch;

    std::vector<float> bestLoss(P_, std::numeric_limits<float>::infinity());
    std::vector<int64_t> steps(P_, 0);
    std::vector<std::vector<int64_t>> batchRows(slotTask.size());
    std::vector<torch::Tensor> batchValid(slotTask.size());
    if (tracer_) opt.trace(tracer_->snapshot(0, false));
    for (int64_t epoch = 0; epoch < opt.epochs; ++epoch) {
      for (int64_t s = 0; s < maxSteps; ++s) {
        checkCancelled(opt);
        int64_t pa = 0;
        while (pa < P_ && ps_[pa].stepsPerEpoch > s) ++pa;  // sorted: the active probes are a prefix
        for (size_t k = 0; k < slotTask.size(); ++k) {
          if (slotSteps[k] <= s) continue;
          batchRows[k].clear();
          samplers[k].next(B_ / 2, batchRows[k]);
          if (head_.readsSegments() && sh_.padded) batchValid[k] = validOfBatch(batchRows[k]);
        }
        for (int64_t p = 0; p < pa; ++p) ++steps[p];
        step(pa, slotOf, batchRows, batchValid, steps);
        if (tracer_) opt.trace(tracer_->snapshot(steps[0], true));
      }
      evaluateEpoch(sh_, arch_, ps_, prm_, res, epoch, bestLoss);
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
    finishStack(sh_, arch_, ps_, prm_, res);
    probesDone += P_;
  }

 private:
  // Every probe's parameters from its own init streams: layer l's from stream l, the head's weights from the streams
  // after the layers' (each drawn as a PyTorch Linear, weight then bias; the bias is not kept).
  void allocate() {
    auto f = torch::TensorOptions().dtype(torch::kFloat);
    const size_t L = dims_.size() - 1;
    for (size_t l = 0; l < L; ++l) {
      int64_t in = dims_[l], out = dims_[l + 1];
      auto w = torch::empty({P_, in, out}, f);
      auto b = torch::empty({P_, 1, out}, f);
      for (int64_t p = 0; p < P_; ++p) {
        initLayer(w[p].data_ptr<float>(), b[p].data_ptr<float>(), in, out, ps_[p].key, l);
      }
      prm_.W.push_back(makeParam(w.to(sh_.device), !fusedGradAdam(in)));
      prm_.B.push_back(makeParam(b.to(sh_.device), true));
    }
    const int64_t in = dims_[L - 1];  // the head reads what the score layer reads
    const auto outs = head_.weightOuts();
    for (size_t k = 0; k < outs.size(); ++k) {
      auto w = torch::empty({P_, in, outs[k]}, f);
      auto dropped = torch::empty({P_, 1, outs[k]}, f);
      for (int64_t p = 0; p < P_; ++p) {
        initLayer(w[p].data_ptr<float>(), dropped[p].data_ptr<float>(), in, outs[k], ps_[p].key, L + k);
      }
      prm_.head.push_back(makeParam(w.to(sh_.device), !fusedGradAdam(in)));
    }
    if (sh_.opt.trace) tracer_ = std::make_unique<Tracer>(prm_.all());
    if (bf16_) {
      for (auto& w : prm_.W) w.half = w.value.to(torch::kBFloat16);
      for (auto& w : prm_.head) w.half = w.value.to(torch::kBFloat16);
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

  // On the CPU each probe steps on its own (CpuProbeStep); elsewhere, or on request, the stack steps at once.
  bool perProbeCpu() const { return sh_.device.is_cpu() && !sh_.opt.batchedStep; }
  // Weights of the per-probe CPU step with at least kGradRows input rows never hold a whole gradient (gradAdamProbe).
  bool fusedGradAdam(int64_t rows) const { return perProbeCpu() && rows >= kGradRows; }

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

  // One training step of the first `pa` probes (trainStep), under the policy of the device and precision. On the
  // CPU each probe's whole step (its batch, masks, forward, backward, Adam) runs on one thread while its weights,
  // moments and gradients are still in cache, the stack's probes spread over the threads; ATen's CPU bmm would loop
  // over the same per-probe GEMMs, but layer by layer, streaming the whole stack through memory several times a step
  // and joining the threads after every probe's product.
  void step(int64_t pa, const std::vector<int>& slotOf, const std::vector<std::vector<int64_t>>& batchRows,
            const std::vector<torch::Tensor>& batchValid, const std::vector<int64_t>& steps) {
    if (perProbeCpu()) {
      forEachProbe(pa, [&](int64_t p) {
        fillProbeBatch(p, slotOf, batchRows, steps);
        CpuProbeStep ops(p, bf16_, inputs_, masks_, y_, batchValid[slotOf[p]], ps_[p], steps[p], sh_.opt.lr,
                         tracer_.get());
        trainStep(ops, head_, prm_, B_, S_);
      });
      return;
    }
    batchOnDevice(pa, slotOf, batchRows, batchValid, steps);
    BatchedStep ops(pa, bf16_, inputsDev_, masksDev_, y_, batchValid_, ps_, steps, sh_.opt.lr, tracer_.get());
    trainStep(ops, head_, prm_, B_, S_);
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
    if (head_.readsSegments() && sh_.padded) {
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

  Shared& sh_;
  Arch arch_;
  const Head& head_;
  std::vector<ProbeSpec> ps_;
  int64_t P_, B_;
  int64_t S_, R_;  // rows per clip (S for a head that reads segments, else 1) and rows per step (B * S)
  bool bf16_;      // MatmulPrecision::kBf16: the step's products read bf16 operands
  std::vector<int64_t> dims_;
  StackParams prm_;
  std::unique_ptr<Tracer> tracer_;  // Options::trace (a one-probe grid)
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

void trainStack(Shared& sh, const Arch& arch, std::vector<ProbeSpec> ps, Result& res, int64_t stackIndex,
                int64_t stacks, int64_t& probesDone) {
  Stack stack(sh, arch, std::move(ps));
  stack.run(res, stackIndex, stacks, probesDone);
}

}  // namespace calmkit::probes
