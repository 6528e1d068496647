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

#include "core/probes.h"
#include "core/probes_kernels.h"
#include "core/runtime.h"
#include "tools/commands.h"

namespace calmkit_tools {
namespace {

namespace pr = calmkit::probes;

// OpenMIC-2018 per-class labeled counts, positive = relevance >= 0.5 (docs/openmic.md, section 1.5).
struct Counts {
  const char* name;
  int trainPos, trainNeg, testPos, testNeg;
};
const Counts kOpenMic[20] = {
    {"accordion", 374, 1159, 115, 423},  {"banjo", 592, 1148, 140, 338},      {"bass", 415, 1010, 134, 329},
    {"cello", 598, 866, 226, 259},       {"clarinet", 396, 1349, 137, 503},   {"cymbals", 814, 485, 297, 139},
    {"drums", 828, 495, 278, 146},       {"flute", 472, 1050, 175, 387},      {"guitar", 852, 362, 286, 150},
    {"mallet_percussion", 522, 802, 211, 267}, {"mandolin", 652, 1185, 193, 434}, {"organ", 482, 977, 121, 310},
    {"piano", 885, 420, 285, 130},       {"saxophone", 830, 906, 305, 324},   {"synthesizer", 823, 399, 268, 112},
    {"trombone", 635, 1405, 228, 492},   {"trumpet", 828, 1303, 318, 467},    {"ukulele", 556, 1279, 182, 408},
    {"violin", 779, 623, 394, 237},      {"voice", 764, 426, 224, 150}};

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
    if (k == "--instruments") a.instruments = std::stoi(next());
    else if (k == "--dim") a.dim = std::stoll(next());
    else if (k == "--clips") a.clips = std::stoll(next());
    else if (k == "--epochs") a.epochs = std::stoll(next());
    else if (k == "--scale") a.scale = std::stod(next());
    else if (k == "--one-at-a-time") a.oneAtATime = true;
    else if (k == "--batched") a.batched = true;
    else if (k == "--matmul-precision") a.matmulPrecision = next();
    else if (k == "--segments") a.segments = std::stoll(next());
    else if (k == "--padded") a.padded = true;
    else if (k == "--max-stack-bytes") a.maxStackBytes = std::stoll(next());
    else if (k == "--device") a.device = next();
    else throw std::runtime_error("unknown option " + k);
  }
  a.instruments = std::clamp(a.instruments, 1, 20);
  return a;
}

// Standard-normal clips; each instrument labels its clips by a noisy linear rule, with OpenMIC's class counts.
void synthesize(const Args& a, std::vector<float>& X, std::vector<pr::Task>& tasks) {
  std::mt19937_64 rng(12345);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<double> uniform;
  X.resize(static_cast<size_t>(a.clips * a.dim));
  for (auto& v : X) v = normal(rng);
  for (int t = 0; t < a.instruments; ++t) {
    const Counts& c = kOpenMic[t];
    auto scaled = [&](int k) { return std::max(4, static_cast<int>(std::lround(k * a.scale))); };
    int trPos = scaled(c.trainPos), trNeg = scaled(c.trainNeg), tePos = scaled(c.testPos), teNeg = scaled(c.testNeg);
    if (trPos + trNeg + tePos + teNeg > a.clips) {
      throw std::runtime_error(std::string(c.name) + " needs more clips than --clips " + std::to_string(a.clips));
    }
    std::vector<float> w(a.dim);
    for (auto& v : w) v = normal(rng) / std::sqrt(static_cast<float>(a.dim));
    std::vector<int32_t> pool(a.clips);
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), rng);
    auto label = [&](int from, int pos, int neg, pr::Split& out) {
      std::vector<std::pair<float, int32_t>> scored;
      for (int i = from; i < from + pos + neg; ++i) {
        const float* x = &X[static_cast<size_t>(pool[i]) * a.dim];
        float s = 0;
        for (int64_t k = 0; k < a.dim; ++k) s += x[k] * w[k];
        scored.push_back({s + 0.5f * normal(rng), pool[i]});
      }
      std::sort(scored.begin(), scored.end(), [](auto& l, auto& r) { return l.first > r.first; });
      for (int i = 0; i < pos + neg; ++i) {
        out.rows.push_back(scored[i].second);
        out.targets.push_back(i < pos ? 1 : 0);
      }
    };
    pr::Task task;
    task.instrument = c.name;
    pr::Split train;
    label(0, trPos, trNeg, train);
    label(trPos + trNeg, tePos, teNeg, task.test);
    // A stratified 15 % of train for validation, like the data layer's default partition.
    for (size_t i = 0; i < train.rows.size(); ++i) {
      pr::Split& dst = (uniform(rng) < 0.15) ? task.val : task.train;
      dst.rows.push_back(train.rows[i]);
      dst.targets.push_back(train.targets[i]);
    }
    tasks.push_back(std::move(task));
  }
}

std::vector<pr::Config> paperGrid() {
  std::vector<pr::Config> g;
  for (auto hidden : std::vector<std::vector<int64_t>>{{}, {512}, {512, 256}}) {
    for (double dropout : {0.25, 0.5, 0.75}) {
      for (double l2 : {0.0, 1e-4, 1e-3}) g.push_back({hidden, dropout, l2});
    }
  }
  return g;
}

// The attention grid (lib/probes/grid.ts ATTENTION_GRID): [128], [512] x the paper's dropouts and L2s.
std::vector<pr::Config> attentionGrid() {
  std::vector<pr::Config> g;
  for (auto hidden : std::vector<std::vector<int64_t>>{{128}, {512}}) {
    for (double dropout : {0.25, 0.5, 0.75}) {
      for (double l2 : {0.0, 1e-4, 1e-3}) g.push_back({hidden, dropout, l2, "attention"});
    }
  }
  return g;
}

// Segment features from clip vectors: segment s of a clip is its vector plus fresh noise, so every segment
// carries the label's signal (the planted short-run problem lives in test/helpers/planted.ts).
std::vector<float> toSegments(const std::vector<float>& X, int64_t clips, int64_t dim, int64_t S) {
  std::mt19937_64 rng(777);
  std::normal_distribution<float> normal;
  std::vector<float> out(static_cast<size_t>(clips * S * dim));
  for (int64_t c = 0; c < clips; ++c) {
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t k = 0; k < dim; ++k) out[(c * S + s) * dim + k] = X[c * dim + k] + normal(rng);
    }
  }
  return out;
}

// FNV-1a over the bytes of everything a run returns (every probe's curves, test probabilities and attention weights,
// every selected net): equal fingerprints mean the same results bit for bit (refactors must keep it).
uint64_t fingerprint(const pr::Result& r) {
  uint64_t h = 0xcbf29ce484222325ULL;
  auto bytes = [&h](const void* data, size_t n) {
    const auto* c = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 0x100000001b3ULL;
  };
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
    "[--instruments 20] [--epochs 1] [--dim 4800] [--clips 20000] [--scale 1] [--one-at-a-time] [--batched] [--device cpu] "
    "[--matmul-precision fp32|bf16] "
    "[--segments S [--padded]]: train the 27-config probe grid (with --segments: the 18-config attention grid on S segments per "
    "clip) on synthetic OpenMIC-sized data, print JSON",
    [](int argc, char** argv) {
      Args a = parse(argc, argv);
      std::vector<float> X;
      std::vector<pr::Task> tasks;
      synthesize(a, X, tasks);
      auto configs = a.segments > 0 ? attentionGrid() : paperGrid();
      if (a.segments > 0) X = toSegments(X, a.clips, a.dim, a.segments);
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
          "\"dim\":%lld,\"segments\":%lld,\"seconds\":%.3f,\"probesPerSecond\":%.4f,\"meanSelectedValAcc\":%.4f,\"threads\":%d,"
          "\"torch\":\"%s\",\"dropoutKernel\":\"%s\",\"matmulPrecision\":\"%s\",\"bf16Gemm\":\"%s\","
          "\"testProbabilitySum\":%.17g,\"fingerprint\":\"%016llx\"}\n",
          a.oneAtATime ? "one-at-a-time" : a.batched ? "vectorised-batched" : "vectorised", r.device.c_str(), a.instruments, r.probes.size(),
          static_cast<long long>(r.stacks), static_cast<long long>(a.epochs), static_cast<long long>(a.dim),
          static_cast<long long>(a.segments), r.seconds,
          r.probes.size() / r.seconds, meanAcc, info.threads, info.torchVersion.c_str(), pr::dropoutKernel(),
          pr::matmulPrecisionName(opt.matmulPrecision), pr::bf16GemmKernel(), probSum,
          static_cast<unsigned long long>(fingerprint(r)));
      return 0;
    });

}  // namespace
}  // namespace calmkit_tools
