#include "core/probes.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace calmkit::probes {
namespace {

constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;  // torch.optim.Adam's defaults

// ---- counter-based random streams -------------------------------------------------------------------

uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t hashString(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

uint64_t hashDouble(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return mix64(bits);
}

// The i-th draw of the stream `key`: independent of how many draws were taken before, so any slice of a
// mask can be computed on any thread.
inline uint64_t draw(uint64_t key, uint64_t i) { return mix64(key + (i + 1) * 0x9e3779b97f4a7c15ULL); }
inline float uniform01(uint64_t key, uint64_t i) { return static_cast<float>(draw(key, i) >> 40) * 0x1.0p-24f; }

// Tags keep the streams of one probe apart.
enum Stream : uint64_t { kInit = 1, kMask = 2, kSampler = 3 };
uint64_t subKey(uint64_t key, uint64_t tag, uint64_t a = 0, uint64_t b = 0) {
  return mix64(mix64(mix64(key ^ (tag * 0xd6e8feb86659fd93ULL)) + a) + b);
}

// ---- dropout kernels --------------------------------------------------------------------------------

// One row of a dropout mask (x == nullptr: the mask itself, already scaled by 1/keep as torch's Dropout does) or
// of a dropped-out, optionally standardised input: o[k] = keep(k) ? (x[k] - mu[k]) / sd[k] / keep : 0, where
// keep(k) is draw base + k of the stream `key`. These dominate a probe step when written for the x86-64
// baseline, which has no 64-bit vector multiply for the hash; the AVX-512 build of the same loop (vpmullq) runs
// ~19x faster and gives the same bits, so it is compiled twice and chosen at run time.
#define CALMKIT_DROPOUT_ROW(name, attrs)                                                                          \
  attrs void name(float* __restrict o, const float* __restrict x, const float* __restrict mu,                    \
                  const float* __restrict sd, int64_t n, uint64_t key, int64_t base, float keep, float scale) {  \
    if (!x) {                                                                                                      \
      for (int64_t k = 0; k < n; ++k) o[k] = uniform01(key, base + k) < keep ? scale : 0.0f;                      \
    } else if (mu) {                                                                                               \
      for (int64_t k = 0; k < n; ++k) {                                                                            \
        float v = (x[k] - mu[k]) / sd[k];                                                                          \
        o[k] = uniform01(key, base + k) < keep ? v * scale : 0.0f;                                                 \
      }                                                                                                            \
    } else {                                                                                                       \
      for (int64_t k = 0; k < n; ++k) o[k] = uniform01(key, base + k) < keep ? x[k] * scale : 0.0f;               \
    }                                                                                                              \
  }

using DropoutRow = void (*)(float*, const float*, const float*, const float*, int64_t, uint64_t, int64_t, float, float);
CALMKIT_DROPOUT_ROW(dropoutRowBaseline, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
CALMKIT_DROPOUT_ROW(dropoutRowAvx512, __attribute__((target("avx512f,avx512dq,avx512vl"))))
#endif
#undef CALMKIT_DROPOUT_ROW

// CALMKIT_CPU_BASELINE=1 keeps the baseline loop on any CPU: for tests of that loop on AVX-512 machines.
DropoutRow pickDropoutRow() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  const char* baseline = std::getenv("CALMKIT_CPU_BASELINE");
  if (baseline && std::string(baseline) == "1") return dropoutRowBaseline;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    return dropoutRowAvx512;
  }
#endif
  return dropoutRowBaseline;
}
const DropoutRow dropoutRow = pickDropoutRow();
}  // namespace

const char* dropoutKernel() { return dropoutRow == dropoutRowBaseline ? "x86-64 baseline" : "avx512"; }

namespace {

// ---- data ------------------------------------------------------------------------------------------

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

struct Scaler {
  torch::Tensor mean, std;  // [dim] float32 on CPU; undefined without standardisation
};

// StandardScaler semantics: population std, and a constant feature keeps scale 1.
Scaler fitScaler(const torch::Tensor& X, const Split& train) {
  auto rows = torch::tensor(std::vector<int64_t>(train.rows.begin(), train.rows.end()), torch::kLong);
  auto x = X.index_select(0, rows).to(torch::kDouble);
  auto mean = x.mean(0);
  auto sd = x.sub(mean).pow_(2).mean(0).sqrt_();
  sd.masked_fill_(sd == 0, 1.0);
  return {mean.to(torch::kFloat), sd.to(torch::kFloat)};
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

torch::Device resolveDevice(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  bool have = torch::cuda::is_available();
  if (name == "auto") return have ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (name == "cuda") {
    if (!have) throw Error(code::kDevice, "device 'cuda' requested, but LibTorch sees no CUDA device");
    return torch::kCUDA;
  }
  throw Error(code::kInvalidArgument, "device must be 'cpu', 'cuda' or 'auto'; got '" + name + "'");
}

// ---- one stack of probes of the same architecture ---------------------------------------------------

struct ProbeSpec {
  int index;  // into Result::probes
  int task, config;
  double dropout, l2;
  uint64_t key;
  int64_t stepsPerEpoch;
};

struct Shared {
  const float* features;
  int64_t n, dim;
  torch::Tensor X;  // CPU view of the features
  const std::vector<Task>& tasks;
  const std::vector<Config>& configs;
  const Options& opt;
  torch::Device device;
  std::vector<Scaler> scalers;
  std::vector<torch::Tensor> valX, valY, testX;  // per task, on device, filled on first use
};

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

struct Param {
  torch::Tensor value, grad, m, v, best;  // [P, ...]
};

// torch.optim.Adam's constants for one probe at one step.
struct AdamStep {
  float wd, stepSize, bc2Sqrt, b1, b2, c1, c2, eps;
  AdamStep(const ProbeSpec& spec, int64_t step, double lr) {
    double t = static_cast<double>(step);
    wd = static_cast<float>(spec.l2);
    stepSize = static_cast<float>(lr / (1 - std::pow(kBeta1, t)));
    bc2Sqrt = static_cast<float>(std::sqrt(1 - std::pow(kBeta2, t)));
    b1 = static_cast<float>(kBeta1);
    b2 = static_cast<float>(kBeta2);
    c1 = static_cast<float>(1 - kBeta1);
    c2 = static_cast<float>(1 - kBeta2);
    eps = static_cast<float>(kEps);
  }
  // torch.optim.Adam with coupled L2 (grad += wd * w), elements [0, n), in one pass. Built with
  // -fno-math-errno so the square root vectorises.
  void apply(float* __restrict w, const float* __restrict g, float* __restrict m, float* __restrict v,
             int64_t n) const {
    for (int64_t i = 0; i < n; ++i) {
      float gi = g[i] + wd * w[i];
      float mi = m[i] * b1 + c1 * gi;
      float vi = v[i] * b2 + c2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      w[i] -= stepSize * (mi / (std::sqrt(vi) / bc2Sqrt + eps));
    }
  }
};

// Adam for one probe's slice of a stacked parameter whose gradient is already in prm.grad. Inside a parallel
// loop over probes it runs on the calling thread; alone it splits the slice.
void adamProbe(Param& prm, const ProbeSpec& spec, int64_t p, int64_t step, double lr) {
  int64_t per = prm.value.numel() / prm.value.size(0);
  float* w = prm.value.data_ptr<float>() + p * per;
  float* g = prm.grad.data_ptr<float>() + p * per;
  float* m = prm.m.data_ptr<float>() + p * per;
  float* v = prm.v.data_ptr<float>() + p * per;
  AdamStep adam(spec, step, lr);
  at::parallel_for(0, per, 32768, [&](int64_t i0, int64_t i1) { adam.apply(w + i0, g + i0, m + i0, v + i0, i1 - i0); });
}

// Rows of a weight matrix whose gradient is formed and consumed at once by gradAdamProbe: 64 rows of a
// 512-wide layer are 128 KiB, which stays in L2 between the product and the update.
constexpr int64_t kGradRows = 64;

// Weight gradient A^T dz and Adam for probe p's weight [in, out], a block of rows at a time: the gradient of a
// block is written to a small buffer and consumed while still in cache instead of going through memory as a
// whole [in, out] tensor, and the update is split over the threads with the products. The same arithmetic as
// mm_out + adamProbe, up to the summation order inside BLAS.
void gradAdamProbe(Param& prm, const ProbeSpec& spec, int64_t p, int64_t step, double lr, const torch::Tensor& A,
                   const torch::Tensor& dz) {
  const int64_t in = prm.value.size(1), out = prm.value.size(2);
  float* w = prm.value.data_ptr<float>() + p * in * out;
  float* m = prm.m.data_ptr<float>() + p * in * out;
  float* v = prm.v.data_ptr<float>() + p * in * out;
  AdamStep adam(spec, step, lr);
  const int64_t blocks = (in + kGradRows - 1) / kGradRows;
  at::parallel_for(0, blocks, 1, [&](int64_t k0, int64_t k1) {
    // Kept per thread: a fresh buffer of this size would be mmapped and page-faulted in on every call.
    thread_local std::vector<float> storage;
    storage.resize(static_cast<size_t>(kGradRows * out));
    for (int64_t k = k0; k < k1; ++k) {
      int64_t r0 = k * kGradRows, r = std::min(kGradRows, in - r0);
      auto g = torch::from_blob(storage.data(), {r, out}, torch::kFloat);
      at::mm_out(g, A.narrow(1, r0, r).t(), dz);
      adam.apply(w + r0 * out, storage.data(), m + r0 * out, v + r0 * out, r * out);
    }
  });
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

// The same update in tensor operations, for devices other than the CPU.
void adamTensor(Param& prm, const std::vector<ProbeSpec>& ps, int64_t pa, const std::vector<int64_t>& steps, double lr) {
  std::vector<float> wd(pa), stepSize(pa), bc2Sqrt(pa);
  for (int64_t p = 0; p < pa; ++p) {
    double t = static_cast<double>(steps[p]);
    wd[p] = static_cast<float>(ps[p].l2);
    stepSize[p] = static_cast<float>(lr / (1 - std::pow(kBeta1, t)));
    bc2Sqrt[p] = static_cast<float>(std::sqrt(1 - std::pow(kBeta2, t)));
  }
  auto dev = prm.value.device();
  auto shape = [&](std::vector<float>& x) { return torch::tensor(x).to(dev).view({pa, 1, 1}); };
  auto w = prm.value.narrow(0, 0, pa), g = prm.grad.narrow(0, 0, pa);
  auto m = prm.m.narrow(0, 0, pa), v = prm.v.narrow(0, 0, pa);
  g.addcmul_(w, shape(wd));
  m.mul_(kBeta1).add_(g, 1 - kBeta1);
  v.mul_(kBeta2).addcmul_(g, g, 1 - kBeta2);
  auto denom = v.sqrt().div_(shape(bc2Sqrt)).add_(kEps);
  w.sub_(m.div(denom).mul_(shape(stepSize)));
}

struct EvalOut {
  torch::Tensor logits;
};

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
      r.testProb = toVector(torch::sigmoid(forwardOne(W_, Bs_, p, sh_.testX[t], true)).view(-1));
      if (sh_.opt.keepAllWeights) {
        r.net = extractNet(W_, Bs_, p, sh_.scalers[t]);
        r.hasNet = true;
      }
      TaskResult& tr = res.tasks[t];
      if (better(res, ps_[p].index, tr.selected)) {
        tr.selected = ps_[p].index;
        tr.selectedNet = extractNet(W_, Bs_, p, sh_.scalers[t]);
      }
      if (linear && better(res, ps_[p].index, tr.linear)) {
        tr.linear = ps_[p].index;
        tr.linearNet = extractNet(W_, Bs_, p, sh_.scalers[t]);
      }
    }
  }

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

std::string describeSplit(const Task& t, const char* which) { return "instrument '" + t.instrument + "' " + which; }

void validateSplit(const Task& t, const Split& s, const char* which, int64_t n) {
  if (s.rows.size() != s.targets.size()) {
    throw Error(code::kDataMismatch, describeSplit(t, which) + ": " + std::to_string(s.rows.size()) + " rows but " +
                                         std::to_string(s.targets.size()) + " targets");
  }
  if (s.rows.empty()) throw Error(code::kDataMismatch, describeSplit(t, which) + " is empty");
  for (size_t i = 0; i < s.rows.size(); ++i) {
    if (s.rows[i] < 0 || s.rows[i] >= n) {
      throw Error(code::kDataMismatch, describeSplit(t, which) + ": row " + std::to_string(s.rows[i]) +
                                           " is outside the feature matrix (" + std::to_string(n) + " rows)");
    }
    if (s.targets[i] > 1) {
      throw Error(code::kDataMismatch, describeSplit(t, which) + ": targets must be 0 or 1; got " +
                                           std::to_string(s.targets[i]));
    }
  }
}

// Intra-op threads for one stack. Small stacks finish each operation in microseconds, where waking and joining
// worker threads costs more than the work (and far more when the cores are oversubscribed and OpenMP workers
// spin): below ~50 MFLOP a step, stay on one thread.
int threadsFor(const Options& opt, int64_t dim, const std::vector<int64_t>& hidden, int64_t probes, int available) {
  if (opt.threads > 0) return opt.threads;
  double macs = 0;
  int64_t in = dim;
  for (auto h : hidden) {
    macs += static_cast<double>(in) * h;
    in = h;
  }
  macs += in;
  double flopsPerStep = 6.0 * macs * static_cast<double>(opt.batchSize) * static_cast<double>(probes);
  return flopsPerStep < 5e7 ? 1 : available;
}

// Sets this thread's intra-op threads only. at::set_num_threads would also change the default that other threads
// pick up on their first parallel call.
void setThreadsHere(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  at::set_num_threads(n);
#endif
}

}  // namespace

uint64_t probeKey(uint64_t seed, const std::string& instrument, const Config& config) {
  uint64_t k = mix64(seed ^ hashString(instrument));
  for (auto h : config.hidden) k = mix64(k + static_cast<uint64_t>(h));
  k = mix64(k ^ 0x5bd1e995ULL);  // separates [] from other shapes that hash alike
  k = mix64(k + hashDouble(config.dropout));
  return mix64(k + hashDouble(config.l2));
}

void validate(const float* features, int64_t n, int64_t dim, const std::vector<Task>& tasks,
              const std::vector<Config>& configs, const Options& opt) {
  if (n <= 0 || dim <= 0) throw Error(code::kDataMismatch, "the feature matrix is empty");
  if (tasks.empty()) throw Error(code::kInvalidArgument, "no instruments to train");
  if (configs.empty()) throw Error(code::kInvalidArgument, "the grid has no configs");
  if (opt.epochs < 1) throw Error(code::kInvalidArgument, "epochs must be at least 1");
  if (opt.batchSize < 2 || opt.batchSize % 2) {
    throw Error(code::kInvalidArgument, "batchSize must be an even number >= 2 (half positives, half negatives)");
  }
  if (!(opt.lr > 0) || !std::isfinite(opt.lr)) throw Error(code::kInvalidArgument, "lr must be a positive number");
  for (const auto& c : configs) {
    if (!(c.dropout >= 0 && c.dropout < 1)) throw Error(code::kInvalidArgument, "dropout must be in [0, 1)");
    if (!(c.l2 >= 0) || !std::isfinite(c.l2)) throw Error(code::kInvalidArgument, "l2 must be a non-negative number");
    for (auto h : c.hidden) {
      if (h < 1) throw Error(code::kInvalidArgument, "hidden layer sizes must be positive");
    }
  }
  std::vector<std::string> seen;
  for (const auto& t : tasks) {
    if (std::find(seen.begin(), seen.end(), t.instrument) != seen.end()) {
      throw Error(code::kInvalidArgument, "instrument '" + t.instrument + "' appears twice");
    }
    seen.push_back(t.instrument);
    validateSplit(t, t.train, "train", n);
    validateSplit(t, t.val, "validation", n);
    validateSplit(t, t.test, "test", n);
    auto pos = std::count(t.train.targets.begin(), t.train.targets.end(), 1);
    if (pos == 0 || pos == static_cast<long>(t.train.targets.size())) {
      throw Error(code::kDataSingleClass, describeSplit(t, "train") + " has no " + (pos ? "negatives" : "positives") +
                                              ": balanced batches need both classes");
    }
    for (const Split* s : {&t.train, &t.val, &t.test}) {
      for (int32_t r : s->rows) {
        const float* x = features + static_cast<int64_t>(r) * dim;
        for (int64_t k = 0; k < dim; ++k) {
          if (!std::isfinite(x[k])) {
            throw Error(code::kDataNotFinite, "feature row " + std::to_string(r) + " (used by instrument '" +
                                                  t.instrument + "') has a non-finite value at column " +
                                                  std::to_string(k));
          }
        }
      }
    }
  }
}

Result trainGrid(const float* features, int64_t n, int64_t dim, const std::vector<Task>& tasks,
                 const std::vector<Config>& configs, const Options& opt) {
  c10::InferenceMode inference;  // hand-written backward: autograd has nothing to record
  auto started = std::chrono::steady_clock::now();
  validate(features, n, dim, tasks, configs, opt);
  Shared sh{features, n, dim, torch::from_blob(const_cast<float*>(features), {n, dim}, torch::kFloat),
            tasks, configs, opt, resolveDevice(opt.device), {}, {}, {}, {}};
  const int T = static_cast<int>(tasks.size()), C = static_cast<int>(configs.size());
  for (const auto& t : tasks) sh.scalers.push_back(opt.standardize ? fitScaler(sh.X, t.train) : Scaler{});
  sh.valX.resize(T);
  sh.valY.resize(T);
  sh.testX.resize(T);

  Result res;
  res.device = sh.device.str();
  res.probes.resize(static_cast<size_t>(T) * C);
  res.tasks.resize(T);
  for (int t = 0; t < T; ++t) {
    for (int c = 0; c < C; ++c) {
      res.probes[t * C + c].task = t;
      res.probes[t * C + c].config = c;
    }
  }

  // Group by architecture; inside a group, instruments with more steps per epoch first (so the probes still
  // stepping are always a prefix of the stack), then cut into stacks that fit the memory limits.
  std::vector<std::vector<int64_t>> archs;
  for (const auto& c : configs) {
    if (std::find(archs.begin(), archs.end(), c.hidden) == archs.end()) archs.push_back(c.hidden);
  }
  std::vector<std::pair<std::vector<int64_t>, std::vector<ProbeSpec>>> stacks;
  for (const auto& arch : archs) {
    std::vector<ProbeSpec> group;
    for (int t = 0; t < T; ++t) {
      int64_t spe = (static_cast<int64_t>(tasks[t].train.rows.size()) + opt.batchSize - 1) / opt.batchSize;
      for (int c = 0; c < C; ++c) {
        if (configs[c].hidden != arch) continue;
        group.push_back({t * C + c, t, c, configs[c].dropout, configs[c].l2,
                         probeKey(opt.seed, tasks[t].instrument, configs[c]), spe});
      }
    }
    std::stable_sort(group.begin(), group.end(),
                     [](const ProbeSpec& a, const ProbeSpec& b) { return a.stepsPerEpoch > b.stepsPerEpoch; });
    int64_t cap = static_cast<int64_t>(group.size());
    if (opt.maxProbesPerStack > 0) cap = std::min(cap, opt.maxProbesPerStack);
    if (opt.maxStackBytes > 0) {
      cap = std::min(cap, std::max<int64_t>(1, opt.maxStackBytes / Stack::bytesPerProbe(dim, arch, opt.batchSize)));
    }
    for (size_t i = 0; i < group.size(); i += cap) {
      size_t j = std::min(group.size(), i + static_cast<size_t>(cap));
      stacks.emplace_back(arch, std::vector<ProbeSpec>(group.begin() + i, group.begin() + j));
    }
  }
  res.stacks = static_cast<int64_t>(stacks.size());
  int64_t done = 0;
  const int threadsBefore = at::get_num_threads();
  try {
    for (size_t s = 0; s < stacks.size(); ++s) {
      setThreadsHere(threadsFor(opt, dim, stacks[s].first, static_cast<int64_t>(stacks[s].second.size()), threadsBefore));
      Stack stack(sh, stacks[s].first, std::move(stacks[s].second));
      stack.run(res, static_cast<int64_t>(s), res.stacks, done);
    }
  } catch (...) {
    setThreadsHere(threadsBefore);
    throw;
  }
  setThreadsHere(threadsBefore);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return res;
}

std::vector<float> predict(const float* features, int64_t n, int64_t dim, const std::vector<Net>& nets,
                           const std::string& deviceName) {
  c10::InferenceMode inference;
  auto device = resolveDevice(deviceName);
  for (size_t k = 0; k < nets.size(); ++k) {
    if (nets[k].layers.empty() || nets[k].layers[0].in != dim) {
      throw Error(code::kDataMismatch, "features have " + std::to_string(dim) + " columns but probe " +
                                           std::to_string(k) + " expects " +
                                           std::to_string(nets[k].layers.empty() ? 0 : nets[k].layers[0].in));
    }
  }
  for (int64_t i = 0; i < n * dim; ++i) {
    if (!std::isfinite(features[i])) {
      throw Error(code::kDataNotFinite, "feature row " + std::to_string(i / dim) + " has a non-finite value at column " +
                                            std::to_string(i % dim));
    }
  }
  auto X = torch::from_blob(const_cast<float*>(features), {n, dim}, torch::kFloat).to(device);
  auto out = torch::empty({n, static_cast<int64_t>(nets.size())}, torch::kFloat);
  for (size_t k = 0; k < nets.size(); ++k) {
    const Net& net = nets[k];
    torch::Tensor h = X;
    if (!net.mean.empty()) {
      auto mu = torch::tensor(net.mean).to(device), sd = torch::tensor(net.std).to(device);
      h = (X - mu) / sd;
    }
    for (size_t l = 0; l < net.layers.size(); ++l) {
      const Layer& L = net.layers[l];
      auto w = torch::from_blob(const_cast<float*>(L.weight.data()), {L.in, L.out}, torch::kFloat).to(device);
      auto b = torch::from_blob(const_cast<float*>(L.bias.data()), {L.out}, torch::kFloat).to(device);
      h = torch::addmm(b, h, w);
      if (l + 1 < net.layers.size()) h = h.relu_();
    }
    out.select(1, static_cast<int64_t>(k)).copy_(torch::sigmoid(h).view(-1).to(torch::kCPU));
  }
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
}

}  // namespace calmkit::probes
