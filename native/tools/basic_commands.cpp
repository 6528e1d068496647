// doctor and audio: the foundation's subcommands.
#include <cstdio>
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
            << "built with CUDA: " << (r.builtWithCuda ? "yes" : "no") << (r.cudaVersion.empty() ? "" : " " + r.cudaVersion) << "\n"
            << "BLAS: " << r.blas.name << " " << r.blas.detail << "\n"
            << "threads: " << r.threads << " (" << r.threadsSource << ")\n";
  for (auto& d : r.cudaDevices) {
    std::cout << "cuda:" << d.index << " " << d.name << " " << d.totalMemory / (1 << 20) << " MiB total, "
              << d.freeMemory / (1 << 20) << " MiB free, sm " << d.major << d.minor << "\n";
  }
  if (r.cudaDevices.empty()) std::cout << "CUDA: none: " << r.cudaUnavailableReason << "\n";
  if (r.blas.isReference) std::cerr << "WARNING: the reference BLAS is in use; install libopenblas0-openmp\n";
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
