// doctor and audio: the foundation's subcommands.
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "core/audio.h"
#include "core/runtime.h"
#include "tools/commands.h"

namespace calmkit_tools {

std::map<std::string, Command>& commands() {
  static std::map<std::string, Command> m;
  return m;
}

namespace {

Register doctor("doctor", "LibTorch, BLAS, threads and CUDA devices", [](int, char**) {
  auto r = calmkit::runtime::collect();
  std::cout << "libtorch: " << r.torchVersion << " (" << r.torchDir << ")\n"
            << "built with CUDA: " << (r.builtWithCuda ? "yes" : "no")
            << (r.cudaVersion.empty() ? "" : " " + r.cudaVersion) << "\n"
            << "BLAS: " << r.blas.name << " " << r.blas.detail << "\n"
            << "threads: " << r.threads << " (" << r.threadsSource << ")\n"
            << "cpu bf16: " << (r.bf16.native ? "native" : "not native") << " (avx512_bf16 "
            << (r.bf16.avx512Bf16 ? "yes" : "no") << ", amx_bf16 " << (r.bf16.amxBf16 ? "yes" : "no")
            << (r.bf16.isaLimit.empty() ? "" : ", ONEDNN_MAX_CPU_ISA=" + r.bf16.isaLimit)
            << "); bf16 matmul: " << r.bf16.matmulKernel
            << "; fused linear: " << (r.bf16.linearKernel.empty() ? "not available" : r.bf16.linearKernel)
            << (r.bf16.onednnIsa.empty() ? "" : "; oneDNN ISA: " + r.bf16.onednnIsa) << "\n";
  for (auto& d : r.cudaDevices) {
    std::cout << "cuda:" << d.index << " " << d.name << " " << d.totalMemory / (1 << 20) << " MiB total, "
              << d.freeMemory / (1 << 20) << " MiB free, sm " << d.major << d.minor << "\n";
  }
  if (r.cudaDevices.empty()) std::cout << "CUDA: none: " << r.cudaUnavailableReason << "\n";
  if (r.blas.isReference) std::cerr << "WARNING: the reference BLAS is in use; install libopenblas0-openmp\n";
  return 0;
});

Register gemm("gemm", "[M N K [dtype [device]]]: measured matrix-product GFLOP/s", [](int argc, char** argv) {
  int64_t m = argc > 0 ? std::atoll(argv[0]) : 1024, n = argc > 1 ? std::atoll(argv[1]) : 4800,
          k = argc > 2 ? std::atoll(argv[2]) : 1200;
  std::string dtype = argc > 3 ? argv[3] : "float32", device = argc > 4 ? argv[4] : "cpu";
  double g = calmkit::runtime::measureGemmGflops(m, n, k, dtype, device, 5);
  std::printf("{\"m\":%lld,\"n\":%lld,\"k\":%lld,\"dtype\":\"%s\",\"device\":\"%s\",\"gflops\":%.2f}\n", (long long)m,
              (long long)n, (long long)k, dtype.c_str(), device.c_str(), g);
  return 0;
});

Register audio("audio", "FILE: decode and print channels, rate, frames, peak", [](int argc, char** argv) {
  if (argc < 1) {
    std::cerr << "usage: calmkit-core audio FILE\n";
    return 2;
  }
  auto d = calmkit::audio::decodeFile(argv[0]);
  float peak = 0;
  for (float v : d.interleaved) peak = std::max(peak, std::abs(v));
  std::printf("%s: %d channels, %d Hz, %lld frames, %s, peak %.6f\n", argv[0], d.channels, d.sampleRate,
              static_cast<long long>(d.frames), d.format.c_str(), peak);
  return 0;
});

}  // namespace
}  // namespace calmkit_tools
