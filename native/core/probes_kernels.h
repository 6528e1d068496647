// The probe trainer's inner loops: dropout masks and dropped-out inputs from the counter-based streams (an
// AVX-512 build where the CPU has it, same bits as the baseline), and Adam three ways (per probe, fused with
// the weight gradient, and in tensor operations for other devices). Built with -fno-math-errno (CMakeLists.txt)
// so Adam's square root vectorises.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace calmkit::probes {

// One probe's place in a stack and what makes it its own.
struct ProbeSpec {
  int index;  // into Result::probes
  int task, config;
  double dropout, l2;
  uint64_t key;
  int64_t stepsPerEpoch;
};

// A stacked parameter of a stack's probes, with its gradient, Adam moments and the weights kept at the best
// validation loss.
struct Param {
  torch::Tensor value, grad, m, v, best;  // [P, ...]
  // MatmulPrecision::kBf16: value rounded to bfloat16, what the step's products read; every Adam update refreshes
  // it. Undefined otherwise.
  torch::Tensor half;
};

// One row of a dropout mask (x == nullptr: the mask itself, already scaled by 1/keep as torch's Dropout does) or
// of a dropped-out, optionally standardised input: o[k] = keep(k) ? (x[k] - mu[k]) / sd[k] / keep : 0, where
// keep(k) is draw base + k of the stream `key`.
using DropoutRow = void (*)(float*, const float*, const float*, const float*, int64_t, uint64_t, int64_t, float, float);
// The build of the row kernel this process runs (chosen once, at load; see dropoutKernel()).
extern const DropoutRow dropoutRow;

// Which build of the dropout kernels this process runs: "avx512" or "x86-64 baseline" (CALMKIT_CPU_BASELINE=1).
const char* dropoutKernel();

// What runs the bf16 products of a CPU step: "mkl gemm_bf16bf16f32" (oneMKL's bf16 GEMM with fp32 accumulation
// and output, when the LibTorch in use carries it) or "fp32 gemm on bf16-rounded operands" (the same products,
// exact in fp32, summed in fp32; also forced by CALMKIT_CPU_BASELINE=1).
const char* bf16GemmKernel();

// Rows of a weight matrix whose gradient is formed and consumed at once by gradAdamProbe: 64 rows of a
// 512-wide layer are 128 KiB, which stays in L2 between the product and the update.
constexpr int64_t kGradRows = 64;

// Adam for one probe's slice of a stacked parameter whose gradient is already in prm.grad. Inside a parallel
// loop over probes it runs on the calling thread; alone it splits the slice.
void adamProbe(Param& prm, const ProbeSpec& spec, int64_t p, int64_t step, double lr);

// Weight gradient A^T dz and Adam for probe p's weight [in, out], kGradRows rows at a time (the same arithmetic
// as mm_out + adamProbe, up to the summation order inside BLAS). gradOut, when given, receives the whole gradient
// [in, out] as it was formed (Options::trace).
void gradAdamProbe(Param& prm, const ProbeSpec& spec, int64_t p, int64_t step, double lr, const torch::Tensor& A,
                   const torch::Tensor& dz, float* gradOut = nullptr);

// The bf16 step's weight gradient: A^T dz from bf16 operands, accumulated and kept in fp32, then Adam as
// gradAdamProbe (which also refreshes prm.half). A [rows, in] and dz [rows, out] are contiguous bf16.
void gradAdamProbeBf16(Param& prm, const ProbeSpec& spec, int64_t p, int64_t step, double lr, const torch::Tensor& A,
                       const torch::Tensor& dz, float* gradOut = nullptr);

// out [m, n] (fp32, contiguous) = a [m, k] b [k, n] for bf16 a and b (any 2-D strides, transposed views included),
// products of bf16 values summed in fp32. CPU tensors.
void mmBf16Out(torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor mmBf16(const torch::Tensor& a, const torch::Tensor& b);

// ATen sets a thread's intra-op threads (OpenMP's and oneMKL's) to the process count the first time that thread
// starts a parallel loop: once per thread for LibTorch's code and once more for ours, since the flag lives in an
// inline function (at::internal::lazy_init_num_threads) that each library compiles its own copy of. A thread count
// set before that first loop is silently undone by it, so only on a thread's first use: call this before setting
// one. (This reset made a one-thread stack train on two threads the first time a libuv worker ran the trainer, and
// the same run give other bits on a reused worker.)
void initThreadsHere();

// Keeps oneMKL's products on the calling thread while it lives (a no-op where LibTorch has no oneMKL). MKL takes
// its thread count from its own per-thread or process setting, not from OpenMP's, so a product outside a
// parallel region runs on as many threads as that setting says, whatever the stack's `threads`; and a product
// split over threads may cut its sums (K) between them, which gives other bits than the one-thread kernel that
// every product inside the stack's parallel loop runs. A probe step is therefore always one-thread products.
class SerialBlas {
 public:
  SerialBlas();
  ~SerialBlas();
  SerialBlas(const SerialBlas&) = delete;
  SerialBlas& operator=(const SerialBlas&) = delete;

 private:
  int previous_;
};

// The same update in tensor operations over the first `pa` probes, for devices other than the CPU.
void adamTensor(Param& prm, const std::vector<ProbeSpec>& ps, int64_t pa, const std::vector<int64_t>& steps, double lr);

}  // namespace calmkit::probes
