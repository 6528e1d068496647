#include "core/probes_kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "core/probes.h"
#include "core/probes_random.h"

namespace calmkit::probes {
namespace {

constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;  // torch.optim.Adam's defaults

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
}  // namespace

const DropoutRow dropoutRow = pickDropoutRow();

const char* dropoutKernel() { return dropoutRow == dropoutRowBaseline ? "x86-64 baseline" : "avx512"; }

namespace {

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

}  // namespace

void adamProbe(Param& prm, const ProbeSpec& spec, int64_t p, int64_t step, double lr) {
  int64_t per = prm.value.numel() / prm.value.size(0);
  float* w = prm.value.data_ptr<float>() + p * per;
  float* g = prm.grad.data_ptr<float>() + p * per;
  float* m = prm.m.data_ptr<float>() + p * per;
  float* v = prm.v.data_ptr<float>() + p * per;
  AdamStep adam(spec, step, lr);
  at::parallel_for(0, per, 32768, [&](int64_t i0, int64_t i1) { adam.apply(w + i0, g + i0, m + i0, v + i0, i1 - i0); });
}

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

}  // namespace calmkit::probes
