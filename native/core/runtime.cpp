#include "core/runtime.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <cstdlib>

#include <ATen/Version.h>
#include <ATen/cpu/Utils.h>
#include <ATen/native/verbose_wrapper.h>
#include <dlfcn.h>
#include <link.h>
#include <sched.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "core/buffer_cache.h"
#include "core/onednn_linear.h"

#if CALMKIT_WITH_CUDA
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CachingDeviceAllocator.h>
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

// The folder libtorch_cpu was loaded from: where the dynamic loader found it, not where the build looked (the
// prebuilt addon runs beside another machine's torch). at::get_num_threads is defined in libtorch_cpu.
std::string loadedTorchDir() {
  Dl_info where{};
  if (dladdr(reinterpret_cast<void*>(&at::get_num_threads), &where) == 0 || !where.dli_fname) return "unknown";
  char resolved[PATH_MAX];
  std::string file = realpath(where.dli_fname, resolved) ? resolved : where.dli_fname;
  const auto slash = file.rfind('/');
  return slash == std::string::npos ? file : file.substr(0, slash);
}

// Why CUDA is out of reach when the LibTorch in the process has no CUDA part (libtorch_cuda was not loaded).
[[maybe_unused]] std::string noCudaPart() {
  return "the LibTorch loaded (" + loadedTorchDir() +
         ") has no CUDA part (no libtorch_cuda.so beside it: a CPU-only torch)";
}

int findLibrary(struct dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (info->dlpi_name && std::strstr(info->dlpi_name, "libblas.so")) *out = info->dlpi_name;
  return 0;
}

// The CUDA driver API, loaded by name (libcuda.so.1) so that no CUDA header or toolkit is needed to build: the
// reason a CUDA LibTorch sees no device, and each device's name, memory and compute capability.
class CudaDriver {
 public:
  CudaDriver() {
    lib_ = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib_) return;
    init_ = reinterpret_cast<int (*)(unsigned)>(dlsym(lib_, "cuInit"));
    version_ = reinterpret_cast<int (*)(int*)>(dlsym(lib_, "cuDriverGetVersion"));
    count_ = reinterpret_cast<int (*)(int*)>(dlsym(lib_, "cuDeviceGetCount"));
    get_ = reinterpret_cast<int (*)(int*, int)>(dlsym(lib_, "cuDeviceGet"));
    name_ = reinterpret_cast<int (*)(char*, int, int)>(dlsym(lib_, "cuDeviceGetName"));
    attr_ = reinterpret_cast<int (*)(int*, int, int)>(dlsym(lib_, "cuDeviceGetAttribute"));
    total_ = reinterpret_cast<int (*)(size_t*, int)>(dlsym(lib_, "cuDeviceTotalMem_v2"));
  }
  ~CudaDriver() {
    if (lib_) dlclose(lib_);
  }
  CudaDriver(const CudaDriver&) = delete;
  CudaDriver& operator=(const CudaDriver&) = delete;

  bool usable() const { return lib_ && init_ && version_ && count_ && get_ && name_ && attr_ && total_; }

  std::string whyNoDevice() {
    if (!lib_) return "no NVIDIA driver: libcuda.so.1 is not installed on this machine";
    if (!usable()) return "the NVIDIA driver's libcuda.so.1 lacks the CUDA driver API";
    int version = 0;
    version_(&version);
    const std::string driver =
        "the NVIDIA driver (CUDA " + std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10) + ")";
    std::string reason;
    const int rc = init_(0);
    int count = 0;
    if (rc == 100 || (rc == 0 && (count_(&count) != 0 || count == 0))) {  // 100: CUDA_ERROR_NO_DEVICE
      reason = driver + " finds no device";
    } else if (rc != 0) {
      reason = driver + " did not initialise (CUresult " + std::to_string(rc) + ")";
    } else {
      reason = driver + " sees " + std::to_string(count) +
               " device(s) that this LibTorch cannot use (a driver older than its CUDA?)";
    }
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    if (visible) reason += std::string(" (CUDA_VISIBLE_DEVICES='") + visible + "')";
    return reason;
  }

  // Name, total memory and compute capability of device `index` (runtime and driver share the ordering).
  bool describe(int index, CudaDevice& d) {
    if (!usable() || init_(0) != 0) return false;
    int dev = 0;
    if (get_(&dev, index) != 0) return false;
    char name[256] = {0};
    if (name_(name, sizeof(name) - 1, dev) == 0) d.name = name;
    size_t total = 0;
    if (total_(&total, dev) == 0) d.totalMemory = total;
    attr_(&d.major, 75, dev);  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    attr_(&d.minor, 76, dev);  // ..._MINOR
    int version = 0;
    if (version_(&version) == 0 && version > 0) {
      d.driverVersion = std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
    }
    return true;
  }

 private:
  void* lib_ = nullptr;
  int (*init_)(unsigned) = nullptr;
  int (*version_)(int*) = nullptr;
  int (*count_)(int*) = nullptr;
  int (*get_)(int*, int) = nullptr;
  int (*name_)(char*, int, int) = nullptr;
  int (*attr_)(int*, int, int) = nullptr;
  int (*total_)(size_t*, int) = nullptr;
};

// What `f` writes to this process's standard output (oneDNN prints its log there and nowhere else), with fd 1
// pointed at a temporary file meanwhile; nullopt if the redirection cannot be set up (then f runs uncaptured).
std::optional<std::string> captureStdout(const std::function<void()>& f) {
  std::fflush(stdout);
  FILE* tmp = std::tmpfile();
  const int saved = tmp ? dup(1) : -1;
  if (saved < 0 || dup2(fileno(tmp), 1) < 0) {
    if (saved >= 0) close(saved);
    if (tmp) std::fclose(tmp);
    f();
    return std::nullopt;
  }
  auto restore = [&] {
    std::fflush(stdout);
    dup2(saved, 1);
    close(saved);
  };
  try {
    f();
  } catch (...) {
    restore();
    std::fclose(tmp);
    throw;
  }
  restore();
  std::string out;
  std::rewind(tmp);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), tmp)) > 0) out.append(buf, n);
  std::fclose(tmp);
  return out;
}

// Fields of oneDNN's verbose lines: "onednn_verbose,v1,primitive,exec,cpu,matmul,<impl>,...,<problem>,<ms>" (the
// fused linear is an inner_product) and "onednn_verbose,v1,info,cpu,isa:<words>".
struct OnednnLog {
  std::string isa;
  std::map<std::string, std::string> kernelByProblem;  // "32x48:48x40" -> "brg_matmul:avx10_1_512_amx"
};

OnednnLog parseOnednnLog(const std::string& log) {
  OnednnLog out;
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    std::vector<std::string> f;
    std::istringstream fields(line);
    std::string field;
    while (std::getline(fields, field, ',')) f.push_back(field);
    if (f.size() < 5 || f[0].find("verbose") == std::string::npos) continue;
    const size_t isa = line.find(",isa:");
    if (isa != std::string::npos && out.isa.empty()) out.isa = line.substr(isa + 5);  // the words hold commas
    if (f.size() >= 10 && f[2] == "primitive" && f[3] == "exec" && (f[5] == "matmul" || f[5] == "inner_product")) {
      out.kernelByProblem[f[f.size() - 2]] = f[6];
    }
  }
  return out;
}

std::string envOr(const char* a, const char* b) {
  const char* v = std::getenv(a);
  if (!v || !*v) v = std::getenv(b);
  return v ? v : "";
}

CpuBf16 probeCpuBf16() {
  CpuBf16 r;
  const auto caps = at::cpu::get_cpu_capabilities();
  auto flag = [&](const char* k) {
    auto it = caps.find(k);
    return it != caps.end() && it->second.isBool() && it->second.toBool();
  };
  r.avx512Bf16 = flag("avx512_bf16");
  r.amxBf16 = flag("amx_bf16");
  r.isaLimit = envOr("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA");
  bool fusedRuns = false;
  // Distinct shapes tell the two products apart in the log; LibTorch hands a product to oneDNN only from 16^3
  // multiply-adds on, and oneDNN picks its kernels by size, so these are small but not tiny.
  const std::optional<std::string> log = captureStdout([&] {
    c10::InferenceMode guard;
    torch::verbose::_mkldnn_set_verbose(1);
    try {
      auto bf = torch::TensorOptions().dtype(torch::kBFloat16);
      (void)torch::mm(torch::ones({32, 48}, bf), torch::ones({48, 40}, bf));
      fusedRuns = onednn::available(torch::kBFloat16);
      if (fusedRuns) {
        torch::Tensor packed = onednn::packWeight(torch::ones({80, 96}, bf), 64);
        (void)onednn::linear(torch::ones({64, 96}, bf), packed, torch::zeros({80}, bf), "none");
      }
    } catch (const std::exception&) {
      // A product that throws leaves its line out; the answer below says so.
    }
    torch::verbose::_mkldnn_set_verbose(0);
  });
  const OnednnLog parsed = parseOnednnLog(log.value_or(""));
  r.onednnIsa = parsed.isa;
  auto kernel = [&](const char* problem) -> std::string {
    auto it = parsed.kernelByProblem.find(problem);
    return it == parsed.kernelByProblem.end() ? "" : "oneDNN " + it->second;
  };
  r.matmulKernel = kernel("32x48:48x40");
  r.linearKernel = fusedRuns ? kernel("mb64ic96oc80") : "";
  // Empty means "does not run" (the model's bf16 path follows the same check), never "ran but went unlogged".
  if (fusedRuns && r.linearKernel.empty()) r.linearKernel = "oneDNN (kernel not named in its log)";
  if (log) {
    // No oneDNN line for LibTorch's product: it ran on ATen's own kernel (oneDNN has no bf16 kernel here).
    const bool onednn = !r.matmulKernel.empty();
    if (!onednn) r.matmulKernel = "ATen built-in gemm (no oneDNN bf16 kernel for this CPU)";
    const bool bf16Isa =
        r.onednnIsa.find("bfloat16") != std::string::npos || r.onednnIsa.find("AMX") != std::string::npos;
    r.native = onednn && bf16Isa;
    r.basis = onednn ? "oneDNN's log: the bf16 matmul ran on oneDNN with ISA \"" + r.onednnIsa + "\""
                     : "oneDNN's log: no oneDNN kernel ran the bf16 matmul";
  } else {
    r.matmulKernel = "unknown (oneDNN's log could not be captured)";
    // No log: the CPU's flags, unless oneDNN was capped below its bf16 instructions.
    r.native = (r.avx512Bf16 || r.amxBf16) && r.isaLimit.empty();
    r.basis = "CPUID flags (oneDNN's log could not be captured)";
  }
  return r;
}

}  // namespace

void configureMemory() {
#if defined(__GLIBC__)
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, 4 << 20);
#endif
  // Large tensors of a forward pass reuse their buffers instead of a fresh mapping each (core/buffer_cache.h).
  memory::installBufferCache();
}

const CpuBf16& cpuBf16() {
  static const CpuBf16 facts = probeCpuBf16();
  return facts;
}

int cudaComputeCapability(int index) {
#if CALMKIT_WITH_CUDA
  CudaDriver driver;
  CudaDevice d;
  if (driver.describe(index, d)) return d.major * 10 + d.minor;
#endif
  return 0;
}

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
    // at::show_config() names the MKL build and the CPU kernels ATen dispatches to on this machine.
    const std::string cfg = at::show_config();
    for (const char* key : {"Math Kernel Library Version", "CPU capability usage:"}) {
      const size_t at = cfg.find(key);
      if (at == std::string::npos) continue;
      const size_t lineStart = cfg.rfind('\n', at) + 1, lineEnd = cfg.find('\n', at);
      std::string line = cfg.substr(lineStart, lineEnd - lineStart);
      line.erase(0, line.find_first_not_of(" -"));
      info.detail += "; " + line;
    }
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
  info.torchDir = loadedTorchDir();
  info.builtWithCuda = CALMKIT_WITH_CUDA;
  info.threads = configureThreads();
  info.threadsSource = threadsSourceInForce;
  info.interopThreads = at::get_num_interop_threads();
  info.blas = detectBlas();
  info.mkldnn = at::hasMKLDNN();
  info.bf16 = cpuBf16();
#if CALMKIT_WITH_CUDA
  try {
    const long rt = at::detail::getCUDAHooks().versionCUDART();
    info.cudaVersion = std::to_string(rt / 1000) + "." + std::to_string((rt % 1000) / 10);
  } catch (const std::exception&) {
    info.cudaVersion = "unknown (libtorch_cuda not loaded)";
  }
  CudaDriver driver;
  if (!at::detail::getCUDAHooks().isBuilt()) {
    // Compiled with CUDA, loaded beside a torch without its CUDA part (PyPI's CPU wheel): the prebuilt addon's case.
    info.cudaVersion = "";
    info.cudaUnavailableReason = noCudaPart();
  } else if (torch::cuda::is_available()) {
    const int n = static_cast<int>(torch::cuda::device_count());
    for (int i = 0; i < n; ++i) {
      CudaDevice d;
      d.index = i;
      if (!driver.describe(i, d)) d.name = "CUDA device " + std::to_string(i);
      try {
        d.freeMemory =
            c10::getDeviceAllocator(c10::DeviceType::CUDA)->getMemoryInfo(static_cast<c10::DeviceIndex>(i)).first;
      } catch (const std::exception&) {
        // Free memory is a nicety; the device list stands without it.
      }
      info.cudaDevices.push_back(d);
    }
  } else {
    info.cudaUnavailableReason = driver.whyNoDevice();
  }
#else
  info.cudaUnavailableReason = cudaUnavailableReason();
#endif
  return info;
}

std::string cudaUnavailableReason() {
#if CALMKIT_WITH_CUDA
  if (!at::detail::getCUDAHooks().isBuilt()) return noCudaPart();
  if (torch::cuda::is_available()) return "";
  CudaDriver driver;
  return driver.whyNoDevice();
#else
  return "this build's LibTorch has no CUDA (build against a CUDA LibTorch, e.g. PyPI's torch, with CALMKIT_TORCH_DIR)";
#endif
}

}  // namespace calmkit::runtime
