// probe-grid: the probe grid on an OpenMIC-sized synthetic problem, without Node (GPU hosts, C++ checks).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/bench.h"
#include "core/probes.h"
#include "core/probes_kernels.h"
#include "core/probes_random.h"
#include "core/runtime.h"
#include "tools/commands.h"

namespace calmkit_tools {
namespace {

namespace pr = calmkit::probes;

struct Args {
  int instruments = 20;
  int64_t dim = 4800, clips = 20000;
  int64_t epochs = 1;
  double scale = 1.0;  // multiplies every count, for quick runs
  bool oneAtATime = false;
  bool batched = false;
  std::string matmulPrecision = "fp32";
  int64_t segments = 0;  // > 0: attention probes on that many segments per clip
  bool padded = false;   // with segments: clip c has 1 + c % S real segments (the rest padding)
  int64_t maxStackBytes = 2LL << 30;
  std::string device = "cpu";
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 0; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("missing value after " + k);
      return argv[++i];
    };
    if (k == "--instruments")
      a.instruments = std::stoi(next());
    else if (k == "--dim")
      a.dim = std::stoll(next());
    else if (k == "--clips")
      a.clips = std::stoll(next());
    else if (k == "--epochs")
      a.epochs = std::stoll(next());
    else if (k == "--scale")
      a.scale = std::stod(next());
    else if (k == "--one-at-a-time")
      a.oneAtATime = true;
    else if (k == "--batched")
      a.batched = true;
    else if (k == "--matmul-precision")
      a.matmulPrecision = next();
    else if (k == "--segments")
      a.segments = std::stoll(next());
    else if (k == "--padded")
      a.padded = true;
    else if (k == "--max-stack-bytes")
      a.maxStackBytes = std::stoll(next());
    else if (k == "--device")
      a.device = next();
    else
      throw std::runtime_error("unknown option " + k);
  }
  a.instruments = std::clamp(a.instruments, 1, 20);
  return a;
}

// FNV-1a over the bytes of everything a run returns (every probe's curves, test probabilities and attention weights,
// every selected net): equal fingerprints mean the same results bit for bit (refactors must keep it).
uint64_t fingerprint(const pr::Result& r) {
  uint64_t h = pr::hashBytes(nullptr, 0);
  auto bytes = [&h](const void* data, size_t n) { h = pr::hashBytes(data, n, h); };
  auto floats = [&](const std::vector<float>& v) { bytes(v.data(), v.size() * sizeof(float)); };
  auto net = [&](const pr::Net& n) {
    floats(n.mean);
    floats(n.std);
    for (const auto& l : n.layers) {
      floats(l.weight);
      floats(l.bias);
    }
    for (const auto& l : n.headLayers) floats(l.weight);
  };
  for (const auto& p : r.probes) {
    floats(p.valLoss);
    floats(p.valAcc);
    floats(p.testProb);
    floats(p.testWeights);
    bytes(&p.bestEpoch, sizeof p.bestEpoch);
  }
  for (const auto& t : r.tasks) {
    bytes(&t.selected, sizeof t.selected);
    net(t.selectedNet);
    bytes(&t.linear, sizeof t.linear);
    if (t.linear >= 0) net(t.linearNet);
  }
  return h;
}

Register probeGrid(
    "probe-grid",
    "[--instruments 20] [--epochs 1] [--dim 4800] [--clips 20000] [--scale 1] [--one-at-a-time] [--batched] [--device "
    "cpu] "
    "[--matmul-precision fp32|bf16] "
    "[--segments S [--padded]]: train the 27-config probe grid (with --segments: the 18-config attention grid on S "
    "segments per "
    "clip) on synthetic OpenMIC-sized data, print JSON",
    [](int argc, char** argv) {
      Args a = parse(argc, argv);
      // The benchmark engine's synthetic problem (core/bench.h), so this and `bench probes` train the same grid.
      auto problem = calmkit::bench::probeProblem(a.instruments, a.dim, a.clips, a.scale);
      std::vector<float>& X = problem.features;
      std::vector<pr::Task>& tasks = problem.tasks;
      auto configs = a.segments > 0 ? calmkit::bench::attentionGrid() : calmkit::bench::paperGrid();
      if (a.segments > 0) X = calmkit::bench::toSegments(X, a.clips, a.dim, a.segments);
      pr::Options opt;
      opt.segments = a.segments;
      if (a.segments > 0 && a.padded) {
        for (int64_t c = 0; c < a.clips; ++c) opt.validSegments.push_back(static_cast<int32_t>(1 + c % a.segments));
      }
      opt.epochs = a.epochs;
      opt.device = a.device;
      opt.maxStackBytes = a.maxStackBytes;
      if (a.oneAtATime) opt.maxProbesPerStack = 1;
      opt.batchedStep = a.batched;
      opt.matmulPrecision = pr::parseMatmulPrecision(a.matmulPrecision);
      auto r = pr::trainGrid(X.data(), a.clips, a.dim, tasks, configs, opt);
      double meanAcc = 0;
      for (size_t t = 0; t < r.tasks.size(); ++t) {
        meanAcc += r.probes[t * configs.size() + r.tasks[t].selected].bestValAcc / r.tasks.size();
      }
      // Every probe's test probabilities, summed in double: a fingerprint of the whole run for comparing builds.
      double probSum = 0;
      for (auto& pr : r.probes) {
        for (float v : pr.testProb) probSum += v;
      }
      auto info = calmkit::runtime::collect();
      std::printf(
          "{\"mode\":\"%s\",\"device\":\"%s\",\"instruments\":%d,\"probes\":%zu,\"stacks\":%lld,\"epochs\":%lld,"
          "\"dim\":%lld,\"segments\":%lld,\"seconds\":%.3f,\"probesPerSecond\":%.4f,\"meanSelectedValAcc\":%.4f,"
          "\"threads\":%d,"
          "\"torch\":\"%s\",\"dropoutKernel\":\"%s\",\"matmulPrecision\":\"%s\",\"bf16Gemm\":\"%s\","
          "\"testProbabilitySum\":%.17g,\"fingerprint\":\"%016llx\"}\n",
          a.oneAtATime ? "one-at-a-time"
          : a.batched  ? "vectorised-batched"
                       : "vectorised",
          r.device.c_str(), a.instruments, r.probes.size(), static_cast<long long>(r.stacks),
          static_cast<long long>(a.epochs), static_cast<long long>(a.dim), static_cast<long long>(a.segments),
          r.seconds, r.probes.size() / r.seconds, meanAcc, info.threads, info.torchVersion.c_str(), pr::dropoutKernel(),
          pr::matmulPrecisionName(opt.matmulPrecision), pr::bf16GemmKernel(), probSum,
          static_cast<unsigned long long>(fingerprint(r)));
      return 0;
    });

}  // namespace
}  // namespace calmkit_tools
