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
};

struct BlasInfo {
  std::string name;     // "OpenBLAS (openmp)", "OpenBLAS (pthread)", "reference BLAS (netlib)", "MKL", "unknown"
  std::string detail;   // library path or openblas_get_config()
  bool isReference = false;
};

struct Info {
  std::string torchVersion;
  std::string torchDir;
  bool builtWithCuda = false;
  std::string cudaVersion;     // runtime CUDA version LibTorch was built with, "" without CUDA
  int threads = 1;
  std::string threadsSource;   // "CALMKIT_THREADS", "OMP_NUM_THREADS", "cores"
  int interopThreads = 1;
  BlasInfo blas;
  bool mkldnn = false;
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
// user set is left alone. Called once by the addon and the C++ tool.
void configureMemory();

BlasInfo detectBlas();

// The machine's matrix-product peak as measured now: the best of `repeats` timings of an (m x k) @ (k x n)
// product in `dtype` ("float32", "bfloat16", "float16") on `device` ("cpu", "cuda"); GFLOP/s.
double measureGemmGflops(int64_t m, int64_t n, int64_t k, const std::string& dtype, const std::string& device, int repeats);
Info collect();
// Why CUDA cannot be used here, in words ("no NVIDIA driver: ...", "this build's LibTorch has no CUDA ...").
std::string cudaUnavailableReason();

}  // namespace calmkit::runtime
