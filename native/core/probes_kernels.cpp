#include "core/probes_kernels.h"

#include <ATen/Parallel.h>

#if defined(__linux__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

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
#define CALMKIT_DROPOUT_ROW(name, attrs)                                                                        \
  attrs void name(float* __restrict o, const float* __restrict x, const float* __restrict mu,                   \
                  const float* __restrict sd, int64_t n, uint64_t key, int64_t base, float keep, float scale) { \
    if (!x) {                                                                                                   \
      for (int64_t k = 0; k < n; ++k) o[k] = uniform01(key, base + k) < keep ? scale : 0.0f;                    \
    } else if (mu) {                                                                                            \
      for (int64_t k = 0; k < n; ++k) {                                                                         \
        float v = (x[k] - mu[k]) / sd[k];                                                                       \
        o[k] = uniform01(key, base + k) < keep ? v * scale : 0.0f;                                              \
      }                                                                                                         \
    } else {                                                                                                    \
      for (int64_t k = 0; k < n; ++k) o[k] = uniform01(key, base + k) < keep ? x[k] * scale : 0.0f;             \
    }                                                                                                           \
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

// ---- bf16 products ----------------------------------------------------------------------------------

// oneMKL's cblas_gemm_bf16bf16f32: bf16 operands, fp32 accumulation and output (AMX or AVX512-BF16 where the CPU
// has them, converting kernels elsewhere). ATen offers bf16 products only with bf16 outputs, which would round
// every weight gradient before Adam. PyPI's LibTorch links oneMKL into libtorch_cpu and exports its CBLAS entry
// points; the function is looked up there at run time, so a LibTorch without it (OpenBLAS builds, other
// architectures) still loads and takes the emulated products (mmBf16Out).
using GemmBf16 = void (*)(int layout, int transa, int transb, int m, int n, int k, float alpha, const uint16_t* a,
                          int lda, const uint16_t* b, int ldb, float beta, float* c, int ldc);
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;  // CBLAS's enum values

// A symbol of the library that holds ATen's own functions (libtorch_cpu, with oneMKL linked in where LibTorch has
// it), or nullptr: looked up at run time so that a LibTorch without it still loads.
void* torchCpuSymbol(const char* name) {
#if defined(__linux__) || defined(__APPLE__)
  // Already loaded: RTLD_NOLOAD only takes a handle.
  Dl_info info;
  if (!dladdr(reinterpret_cast<void*>(&at::get_num_threads), &info) || !info.dli_fname) return nullptr;
  void* lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (!lib) return nullptr;
  void* fn = dlsym(lib, name);
  dlclose(lib);  // drops the handle's reference only: the library is a load-time dependency and stays
  return fn;
#else
  return nullptr;
#endif
}

GemmBf16 findMklGemmBf16() {
  const char* baseline = std::getenv("CALMKIT_CPU_BASELINE");
  if (baseline && std::string(baseline) == "1") return nullptr;
  return reinterpret_cast<GemmBf16>(torchCpuSymbol("cblas_gemm_bf16bf16f32"));
}

const GemmBf16 mklGemmBf16 = findMklGemmBf16();

// oneMKL's per-thread thread count (returns the previous one; 0 = the process setting), looked up like the bf16
// GEMM so that a LibTorch without oneMKL still loads. The C entry point is MKL_Set_Num_Threads_Local (mkl.h maps
// mkl_set_num_threads_local to it); the lower-case symbol is the Fortran one, which takes a pointer.
using SetThreadsLocal = int (*)(int);

SetThreadsLocal findMklSetThreadsLocal() {
  return reinterpret_cast<SetThreadsLocal>(torchCpuSymbol("MKL_Set_Num_Threads_Local"));
}

const SetThreadsLocal mklSetThreadsLocal = findMklSetThreadsLocal();

// One operand of a bf16 product as CBLAS reads it: row-major, or transposed row-major; any other layout is copied.
struct Bf16Operand {
  const uint16_t* data;
  int trans, ld;
  torch::Tensor keep;  // the contiguous copy, when one was needed
};

Bf16Operand operandOf(const torch::Tensor& t) {
  const int64_t rows = t.size(0), cols = t.size(1);
  auto ptr = [](const torch::Tensor& x) { return reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>()); };
  if (t.stride(1) == 1 && t.stride(0) >= std::max<int64_t>(1, cols)) {
    return {ptr(t), kNoTrans, static_cast<int>(t.stride(0)), {}};
  }
  if (t.stride(0) == 1 && t.stride(1) >= std::max<int64_t>(1, rows)) {
    return {ptr(t), kTrans, static_cast<int>(t.stride(1)), {}};
  }
  auto c = t.contiguous();
  return {ptr(c), kNoTrans, static_cast<int>(std::max<int64_t>(1, cols)), c};
}

bool fitsInt(int64_t x) { return x <= INT_MAX; }

// float -> bfloat16 bits, round to nearest even, NaN kept NaN: torch's .to(kBFloat16) rounding, written out so
// that the Adam loop that produces the bf16 weights vectorises.
inline uint16_t roundBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return (u & 0x7fffffffu) > 0x7f800000u ? static_cast<uint16_t>((u >> 16) | 0x40u) : static_cast<uint16_t>(rounded);
}

uint16_t* halfOf(Param& prm, int64_t offset) {
  return prm.half.defined() ? reinterpret_cast<uint16_t*>(prm.half.data_ptr<at::BFloat16>()) + offset : nullptr;
}

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
  // torch.optim.Adam with coupled L2; with `half` (the bf16 step), the new weights' bf16 copy is written in the
  // same pass.
  void apply(float* __restrict w, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
             uint16_t* __restrict half = nullptr) const;
};

// Adam for the bf16 step: the same update, with the new weights' bf16 copy written in the same pass. The bf16
// store needs wide integer vectors to keep up with the memory traffic (the x86-64 baseline build of this loop
// ran 40% slower than the fp32 one), so like the dropout rows it is compiled twice and chosen at run time. The
// file is built with -ffp-contract=off (CMakeLists.txt): no FMA is formed, so both builds round exactly as the
// fp32 loop does.
#define CALMKIT_ADAM_HALF(name, attrs)                                                                    \
  attrs void name(const AdamStep& a, float* __restrict w, const float* __restrict g, float* __restrict m, \
                  float* __restrict v, int64_t n, uint16_t* __restrict half) {                            \
    for (int64_t i = 0; i < n; ++i) {                                                                     \
      float gi = g[i] + a.wd * w[i];                                                                      \
      float mi = m[i] * a.b1 + a.c1 * gi;                                                                 \
      float vi = v[i] * a.b2 + a.c2 * gi * gi;                                                            \
      m[i] = mi;                                                                                          \
      v[i] = vi;                                                                                          \
      w[i] -= a.stepSize * (mi / (std::sqrt(vi) / a.bc2Sqrt + a.eps));                                    \
      half[i] = roundBf16(w[i]);                                                                          \
    }                                                                                                     \
  }

CALMKIT_ADAM_HALF(adamHalfBaseline, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
CALMKIT_ADAM_HALF(adamHalfAvx512, __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))))
#endif
#undef CALMKIT_ADAM_HALF

using AdamHalf = void (*)(const AdamStep&, float*, const float*, float*, float*, int64_t, uint16_t*);

AdamHalf pickAdamHalf() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  const char* baseline = std::getenv("CALMKIT_CPU_BASELINE");
  if (baseline && std::string(baseline) == "1") return adamHalfBaseline;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    return adamHalfAvx512;
  }
#endif
  return adamHalfBaseline;
}

const AdamHalf adamHalf = pickAdamHalf();

// torch.optim.Adam with coupled L2 (grad += wd * w), elements [0, n), in one pass. Built with -fno-math-errno so
// the square root vectorises.
void AdamStep::apply(float* __restrict w, const float* __restrict g, float* __restrict m, float* __restrict v,
                     int64_t n, uint16_t* __restrict half) const {
  if (half) {
    adamHalf(*this, w, g, m, v, n, half);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i] + wd * w[i];
    float mi = m[i] * b1 + c1 * gi;
    float vi = v[i] * b2 + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] -= stepSize * (mi / (std::sqrt(vi) / bc2Sqrt + eps));
  }
}

}  // namespace

SerialBlas::SerialBlas() : previous_((initThreadsHere(), mklSetThreadsLocal ? mklSetThreadsLocal(1) : 0)) {}

SerialBlas::~SerialBlas() {
  if (mklSetThreadsLocal) mklSetThreadsLocal(previous_);
}

void initThreadsHere() {
  at::get_num_threads();                  // LibTorch's own copy of the once-per-thread flag
  at::internal::lazy_init_num_threads();  // this library's copy (the function is inline)
}

const char* bf16GemmKernel() { return mklGemmBf16 ? "mkl gemm_bf16bf16f32" : "fp32 gemm on bf16-rounded operands"; }

void adamProbe(Param& prm, const ProbeSpec& spec, int64_t p, int64_t step, double lr) {
  int64_t per = prm.value.numel() / prm.value.size(0);
  float* w = prm.value.data_ptr<float>() + p * per;
  float* g = prm.grad.data_ptr<float>() + p * per;
  float* m = prm.m.data_ptr<float>() + p * per;
  float* v = prm.v.data_ptr<float>() + p * per;
  uint16_t* half = halfOf(prm, p * per);
  AdamStep adam(spec, step, lr);
  at::parallel_for(0, per, 32768, [&](int64_t i0, int64_t i1) {
    adam.apply(w + i0, g + i0, m + i0, v + i0, i1 - i0, half ? half + i0 : nullptr);
  });
}

// Weight gradient A^T dz and Adam for probe p's weight [in, out], a block of rows at a time: the gradient of a
// block is written to a small buffer and consumed while still in cache instead of going through memory as a
// whole [in, out] tensor, and the update is split over the threads with the products. The same arithmetic as
// mm_out + adamProbe, up to the summation order inside BLAS.
void gradAdamProbe(Param& prm, const ProbeSpec& spec, int64_t p, int64_t step, double lr, const torch::Tensor& A,
                   const torch::Tensor& dz, float* gradOut) {
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
      if (gradOut) std::copy_n(storage.data(), r * out, gradOut + r0 * out);
      adam.apply(w + r0 * out, storage.data(), m + r0 * out, v + r0 * out, r * out);
    }
  });
}

// Rows of a gradient block in the bf16 step. oneMKL copies both operands into AMX's layout on every call, dz
// included, so fewer, taller blocks pay that less often: 256 rows of a 512-wide layer (512 KiB of fp32 gradient,
// still in L2) ran the gradient products at 595 GFLOP/s on one Sapphire Rapids core against 420 with 64 rows.
constexpr int64_t kGradRowsBf16 = 256;

void gradAdamProbeBf16(Param& prm, const ProbeSpec& spec, int64_t p, int64_t step, double lr, const torch::Tensor& A,
                       const torch::Tensor& dz, float* gradOut) {
  const int64_t in = prm.value.size(1), out = prm.value.size(2), rows = A.size(0);
  float* w = prm.value.data_ptr<float>() + p * in * out;
  float* m = prm.m.data_ptr<float>() + p * in * out;
  float* v = prm.v.data_ptr<float>() + p * in * out;
  uint16_t* half = halfOf(prm, p * in * out);
  AdamStep adam(spec, step, lr);
  const bool mkl = mklGemmBf16 && fitsInt(in) && fitsInt(out) && fitsInt(rows);
  // Without oneMKL: fp32 GEMMs of the operands widened to fp32 (exact), i.e. the same products and fp32 sums.
  torch::Tensor Af, dzf;
  if (!mkl) {
    Af = A.to(torch::kFloat);
    dzf = dz.to(torch::kFloat);
  }
  const auto* a = reinterpret_cast<const uint16_t*>(A.data_ptr<at::BFloat16>());
  const auto* d = reinterpret_cast<const uint16_t*>(dz.data_ptr<at::BFloat16>());
  const int64_t blocks = (in + kGradRowsBf16 - 1) / kGradRowsBf16;
  at::parallel_for(0, blocks, 1, [&](int64_t k0, int64_t k1) {
    thread_local std::vector<float> storage;  // as in gradAdamProbe
    storage.resize(static_cast<size_t>(kGradRowsBf16 * out));
    for (int64_t k = k0; k < k1; ++k) {
      int64_t r0 = k * kGradRowsBf16, r = std::min(kGradRowsBf16, in - r0);
      if (mkl) {
        mklGemmBf16(kRowMajor, kTrans, kNoTrans, static_cast<int>(r), static_cast<int>(out), static_cast<int>(rows),
                    1.0f, a + r0, static_cast<int>(in), d, static_cast<int>(out), 0.0f, storage.data(),
                    static_cast<int>(out));
      } else {
        auto g = torch::from_blob(storage.data(), {r, out}, torch::kFloat);
        at::mm_out(g, Af.narrow(1, r0, r).t(), dzf);
      }
      if (gradOut) std::copy_n(storage.data(), r * out, gradOut + r0 * out);
      adam.apply(w + r0 * out, storage.data(), m + r0 * out, v + r0 * out, r * out, half + r0 * out);
    }
  });
}

void mmBf16Out(torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b) {
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  const bool mkl = mklGemmBf16 && m > 0 && n > 0 && k > 0 && fitsInt(m) && fitsInt(n) && fitsInt(k) &&
                   out.is_contiguous() && fitsInt(a.stride(0)) && fitsInt(a.stride(1)) && fitsInt(b.stride(0)) &&
                   fitsInt(b.stride(1));
  if (!mkl) {
    at::mm_out(out, a.to(torch::kFloat), b.to(torch::kFloat));
    return;
  }
  const Bf16Operand A = operandOf(a), B = operandOf(b);
  mklGemmBf16(kRowMajor, A.trans, B.trans, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0f, A.data,
              A.ld, B.data, B.ld, 0.0f, out.data_ptr<float>(), static_cast<int>(n));
}

torch::Tensor mmBf16(const torch::Tensor& a, const torch::Tensor& b) {
  auto out = torch::empty({a.size(0), b.size(1)}, torch::TensorOptions().dtype(torch::kFloat));
  mmBf16Out(out, a, b);
  return out;
}

void adamTensor(Param& prm, const std::vector<ProbeSpec>& ps, int64_t pa, const std::vector<int64_t>& steps,
                double lr) {
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
  if (prm.half.defined()) prm.half.narrow(0, 0, pa).copy_(w);
}

}  // namespace calmkit::probes
