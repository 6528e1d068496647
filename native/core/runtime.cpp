#include "core/runtime.h"

#include <dlfcn.h>
#include <link.h>
#include <sched.h>
#include <torch/torch.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#if CALMKIT_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#endif

namespace calmkit::runtime {
namespace {

int usableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

int positiveEnv(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n <= 0 || n > 4096) return 0;
  return static_cast<int>(n);
}

std::once_flag threadsOnce;
int threadsInForce = 1;
std::string threadsSourceInForce = "cores";

int findLibrary(struct dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (info->dlpi_name && std::strstr(info->dlpi_name, "libblas.so")) *out = info->dlpi_name;
  return 0;
}

}  // namespace

int configureThreads() {
  std::call_once(threadsOnce, [] {
    int n = positiveEnv("CALMKIT_THREADS");
    if (n) {
      threadsSourceInForce = "CALMKIT_THREADS";
    } else if ((n = positiveEnv("OMP_NUM_THREADS"))) {
      threadsSourceInForce = "OMP_NUM_THREADS";
    } else {
      n = usableCores();
      threadsSourceInForce = "cores";
    }
    at::set_num_threads(n);
    threadsInForce = n;
  });
  return threadsInForce;
}

BlasInfo detectBlas() {
  BlasInfo info;
  // OpenBLAS exports its build configuration; the reference BLAS has no such symbol.
  using ConfigFn = char* (*)();
  auto openblasConfig = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  std::string libPath;
  dl_iterate_phdr(findLibrary, &libPath);
  char resolved[PATH_MAX];
  if (!libPath.empty() && realpath(libPath.c_str(), resolved)) libPath = resolved;
  if (openblasConfig) {
    std::string cfg = openblasConfig();
    bool openmp = cfg.find("USE_OPENMP") != std::string::npos || libPath.find("openmp") != std::string::npos;
    info.name = openmp ? "OpenBLAS (openmp)" : "OpenBLAS (pthread)";
    info.detail = cfg + (libPath.empty() ? "" : " at " + libPath);
  } else if (at::hasMKL()) {
    info.name = "MKL";
    info.detail = "bundled with LibTorch";
  } else if (!libPath.empty()) {
    info.name = "reference BLAS (netlib)";
    info.detail = libPath;
    info.isReference = true;
  } else {
    info.name = "unknown";
  }
  return info;
}

double measureGemmGflops(int64_t m, int64_t n, int64_t k, const std::string& dtype, const std::string& device,
                         int repeats) {
  configureThreads();
  c10::InferenceMode guard;
  auto st = dtype == "bfloat16" ? torch::kBFloat16 : dtype == "float16" ? torch::kFloat16 : torch::kFloat32;
  torch::Device dev(device == "cuda" ? torch::kCUDA : torch::kCPU);
  auto a = torch::randn({m, k}, torch::TensorOptions().dtype(st).device(dev));
  auto b = torch::randn({k, n}, torch::TensorOptions().dtype(st).device(dev));
  auto c = torch::empty({m, n}, a.options());
  auto sync = [&] {
#if CALMKIT_WITH_CUDA
    if (dev.is_cuda()) torch::cuda::synchronize();
#endif
  };
  torch::mm_out(c, a, b);  // warm-up: thread pools, kernel selection
  sync();
  double best = 1e30;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    auto t0 = std::chrono::steady_clock::now();
    torch::mm_out(c, a, b);
    sync();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * m * n * k / best / 1e9;
}

Info collect() {
  Info info;
  info.torchVersion = CALMKIT_TORCH_VERSION;
  info.torchDir = CALMKIT_TORCH_DIR;
  info.builtWithCuda = CALMKIT_WITH_CUDA;
  info.threads = configureThreads();
  info.threadsSource = threadsSourceInForce;
  info.interopThreads = at::get_num_interop_threads();
  info.blas = detectBlas();
  info.mkldnn = at::hasMKLDNN();
#if CALMKIT_WITH_CUDA
  int rt = 0;
  if (cudaRuntimeGetVersion(&rt) == cudaSuccess) {
    info.cudaVersion = std::to_string(rt / 1000) + "." + std::to_string((rt % 1000) / 10);
  }
  if (torch::cuda::is_available()) {
    int n = static_cast<int>(torch::cuda::device_count());
    for (int i = 0; i < n; ++i) {
      const cudaDeviceProp* p = at::cuda::getDeviceProperties(i);
      CudaDevice d;
      d.index = i;
      d.name = p->name;
      d.totalMemory = p->totalGlobalMem;
      d.major = p->major;
      d.minor = p->minor;
      size_t freeB = 0, totalB = 0;
      int prev = 0;
      cudaGetDevice(&prev);
      if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&freeB, &totalB) == cudaSuccess) d.freeMemory = freeB;
      cudaSetDevice(prev);
      info.cudaDevices.push_back(d);
    }
  } else {
    info.cudaUnavailableReason = "LibTorch has CUDA but no CUDA device is visible (driver missing or CUDA_VISIBLE_DEVICES empty)";
  }
#else
  info.cudaUnavailableReason = "this build's LibTorch has no CUDA (build against a CUDA LibTorch with CALMKIT_TORCH_DIR)";
#endif
  return info;
}

}  // namespace calmkit::runtime
