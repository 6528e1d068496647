// Process-wide runtime facts and settings: threads, BLAS, LibTorch build, devices.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace calmkit::runtime {

struct CudaDevice {
  int index = 0;
  std::string name;
  uint64_t totalMemory = 0;
  uint64_t freeMemory = 0;
  int major = 0, minor = 0;
  std::string driverVersion;  // the CUDA version the driver supports ("13.0"), "" when unknown
};

struct BlasInfo {
  std::string name;    // "OpenBLAS (openmp)", "OpenBLAS (pthread)", "reference BLAS (netlib)", "MKL", "unknown"
  std::string detail;  // library path or openblas_get_config()
  bool isReference = false;
};

// bf16 arithmetic on this CPU and what LibTorch runs a bf16 matrix product with. The CPU flags come from CPUID
// (ATen's cpuinfo); the kernels from oneDNN's own log of two tiny bf16 products (LibTorch's matmul and the fused
// linear of core/onednn_linear.h), captured once per process. A product that leaves no oneDNN line ran on
// ATen's portable loop (oneDNN has no bf16 kernel below AVX-512: about 100x slower than fp32).
struct CpuBf16 {
  bool avx512Bf16 = false;   // CPUID: AVX512_BF16 (vdpbf16ps)
  bool amxBf16 = false;      // CPUID: AMX-BF16 tiles
  std::string isaLimit;      // ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) when set: caps what oneDNN may use
  std::string onednnIsa;     // oneDNN's description of the instruction set it dispatches to ("" if unseen)
  std::string matmulKernel;  // LibTorch's bf16 matmul: "oneDNN <implementation>" or "ATen portable loop"
  std::string linearKernel;  // the fused linear's: "oneDNN <implementation>", or "" when it does not run
  bool native = false;       // bf16 products run on bf16 instructions (AVX512_BF16 or AMX) here
  std::string basis;         // how `native` was decided
};
const CpuBf16& cpuBf16();

// The compute capability of CUDA device `index` as major * 10 + minor, 0 when unknown.
int cudaComputeCapability(int index);

struct Info {
  std::string torchVersion;
  std::string torchDir;  // the folder libtorch_cpu was loaded from (asked of the dynamic loader)
  bool builtWithCuda = false;
  std::string cudaVersion;  // runtime CUDA version LibTorch was built with, "" without CUDA
  int threads = 1;
  std::string threadsSource;  // "CALMKIT_THREADS", "OMP_NUM_THREADS", "cores"
  int interopThreads = 1;
  BlasInfo blas;
  bool mkldnn = false;
  CpuBf16 bf16;
  std::vector<CudaDevice> cudaDevices;
  std::string cudaUnavailableReason;  // why no device, when none
};

// Sets torch's thread count once per process from CALMKIT_THREADS, else OMP_NUM_THREADS, else the usable
// cores (small VMs otherwise default to 1). Idempotent; returns the count in force.
int configureThreads();

// Large buffers (4 MiB and up: decoded and fitted clips, activations) are mmapped by glibc and so go back to the
// system when freed. glibc's default raises its mmap threshold to the size of any mmapped block freed (up to
// 32 MiB), after which 11 MB clip buffers come from its arenas and stay resident there: measured over 300
// loadAudio calls of a 62 s clip, the resident floor sat about 50 MB (10 %) higher. A MALLOC_MMAP_THRESHOLD_ the
// user set is left alone. It also installs the cache of large CPU buffers that forward passes reuse
// (core/buffer_cache.h). Called once by the addon and the C++ tool.
void configureMemory();

BlasInfo detectBlas();

// The machine's matrix-product peak as measured now: the best of `repeats` timings of an (m x k) @ (k x n)
// product in `dtype` ("float32", "bfloat16", "float16") on `device` ("cpu", "cuda"); GFLOP/s.
double measureGemmGflops(int64_t m, int64_t n, int64_t k, const std::string& dtype, const std::string& device,
                         int repeats);
Info collect();
// Why CUDA cannot be used here, in words ("no NVIDIA driver: ...", "this build's LibTorch has no CUDA ...").
std::string cudaUnavailableReason();

}  // namespace calmkit::runtime
