// The benchmark engine's shared parts: the machine's facts, FLOP counts, the test signal, GEMM peaks and the
// synthetic probe problem (core/bench.h).
#include <ATen/CPUGeneratorImpl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "core/bench.h"
#include "core/buffer_cache.h"
#include "core/device.h"
#include "core/error.h"
#include "core/json.h"
#include "core/onednn_linear.h"
#include "core/runtime.h"

namespace calmkit::bench {
namespace {

// The CPU flags a reader of a benchmark needs to place its numbers: vector width, FMA, bf16/fp16 arithmetic, AMX.
const std::set<std::string> kReportedFlags{"avx",      "avx2",     "fma",         "f16c",        "avx512f",
                                           "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                                           "amx_tile", "amx_bf16", "amx_int8",    "asimd",       "sve"};

std::string cpuInfoField(const std::string& name) {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(name, 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    return v;
  }
  return "";
}

int usableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
}

void sync(torch::Device d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

c10::ScalarType scalarType(const std::string& dtype) {
  if (dtype == "float32") return torch::kFloat32;
  if (dtype == "bfloat16") return torch::kBFloat16;
  if (dtype == "float16") return torch::kFloat16;
  throw Error(code::kInvalidArgument, "dtype must be float32, bfloat16 or float16; got '" + dtype + "'");
}

}  // namespace

json::Object reportHead(const char* kind, const Origin& origin) {
  json::Object doc;
  doc.str("schema", kSchema).integer("schemaVersion", kSchemaVersion).str("kind", kind);
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  doc.str("createdAt", buf);
  doc.str("calmkitVersion", origin.calmkitVersion).str("host", origin.host).str("command", origin.command);
  doc.raw("machine", machineJson());
  return doc;
}

json::Array peaksJson(const std::map<std::string, Peak>& peaks, const std::string& device) {
  json::Array out;
  for (const auto& [dtype, p] : peaks) {
    json::Object po;
    po.str("dtype", dtype)
        .str("device", device)
        .str("kernel", p.kernel)
        .integer("size", p.size)
        .num("gflopPerSecond", p.gflopPerSecond);
    out.obj(po);
  }
  return out;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

// The largest difference relative to the largest magnitude of `ref`.
double maxRel(const std::vector<float>& a, const std::vector<float>& ref) {
  double d = 0, s = 0;
  for (size_t i = 0; i < a.size() && i < ref.size(); ++i) {
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - ref[i]));
    s = std::max(s, std::fabs(static_cast<double>(ref[i])));
  }
  return s > 0 ? d / s : d;
}

std::string machineJson() {
  const runtime::Info info = runtime::collect();
  json::Object m;
  std::string model = cpuInfoField("model name");
  if (model.empty()) model = cpuInfoField("Model");  // some ARM kernels
  m.str("cpuModel", model.empty() ? "unknown" : model);
  json::Array flags;
  {
    std::stringstream ss(cpuInfoField("flags").empty() ? cpuInfoField("Features") : cpuInfoField("flags"));
    std::set<std::string> seen;
    for (std::string f; ss >> f;) {
      if (kReportedFlags.count(f) && seen.insert(f).second) flags.str(f);
    }
  }
  m.arr("cpuFlags", flags);
  m.integer("logicalCpus", sysconf(_SC_NPROCESSORS_ONLN)).integer("usableCpus", usableCpus());
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  m.integer("memoryBytes", pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : 0);
  struct utsname u {};
  if (uname(&u) == 0) m.str("os", std::string(u.sysname) + " " + u.release + " " + u.machine);
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) == 3) m.arr("loadAverage", json::numbers({load[0], load[1], load[2]}));
  m.str("libtorchVersion", info.torchVersion);
  if (info.builtWithCuda)
    m.str("libtorchCuda", info.cudaVersion);
  else
    m.null("libtorchCuda");
  m.str("blas", info.blas.name).str("blasDetail", info.blas.detail);
  m.integer("threads", info.threads)
      .str("threadsSource", info.threadsSource)
      .integer("interopThreads", info.interopThreads);
  json::Object bf16;
  bf16.boolean("native", info.bf16.native)
      .boolean("avx512Bf16", info.bf16.avx512Bf16)
      .boolean("amxBf16", info.bf16.amxBf16)
      .str("matmulKernel", info.bf16.matmulKernel)
      .str("onednnIsa", info.bf16.onednnIsa)
      .str("isaLimit", info.bf16.isaLimit);
  m.obj("cpuBf16", bf16);
  m.boolean("cpuBufferCache", memory::cacheEnabled());
  json::Array gpus;
  for (const auto& d : info.cudaDevices) {
    json::Object g;
    g.integer("index", d.index)
        .str("name", d.name)
        .integer("memoryBytes", static_cast<int64_t>(d.totalMemory))
        .str("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor))
        .str("driverCuda", d.driverVersion);
    gpus.obj(g);
  }
  m.arr("gpus", gpus);
  if (info.cudaDevices.empty())
    m.str("cudaUnavailableReason", info.cudaUnavailableReason);
  else
    m.null("cudaUnavailableReason");
  return m.dump();
}

double priorFlops(const jukebox::Hparams& hp, int64_t layers, int64_t tokens) {
  const double macs = static_cast<double>(hp.width) * 3 * hp.nState() + static_cast<double>(hp.nState()) * hp.width +
                      2.0 * hp.width * hp.hidden();
  const int64_t bc = hp.blockCtx(), nb = (tokens + bc - 1) / bc;
  double attention = 0;
  for (int64_t d = 0; d < layers; ++d)
    attention += 4.0 * static_cast<double>(tokens) * (d % 3 == 1 ? nb : bc) * hp.nState();
  return 2.0 * macs * static_cast<double>(layers) * tokens + attention;
}

double encoderFlops(const jukebox::Hparams& hp, int64_t samples) {
  // 2 x out x in x kernel per output position of every convolution (core/jukebox.cpp's encoderLevel), then the
  // VQ distances: 2 x emb x bins per frame.
  double flops = 0;
  int64_t n = samples;
  for (int64_t b = 0; b < hp.vqLevels; ++b) {
    const int64_t s = hp.vqStridesT[b];
    for (int64_t i = 0; i < hp.vqDownsT[b]; ++i) {
      const int64_t cin = i > 0 ? hp.vqWidth : (b == 0 ? 1 : hp.vqEmbWidth);
      const int64_t num = n + 2 * (s / 2) - 2 * s;
      n = num < 0 ? 0 : num / s + 1;
      flops += 2.0 * hp.vqWidth * cin * (2 * s) * n;
      flops += hp.vqDepth * (2.0 * hp.vqState() * hp.vqWidth * 3 * n + 2.0 * hp.vqWidth * hp.vqState() * n);
    }
    flops += 2.0 * hp.vqEmbWidth * hp.vqWidth * 3 * n;
  }
  return flops + 2.0 * hp.vqEmbWidth * hp.vqLBins * n;
}

std::vector<float> testAudio(int64_t n, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  torch::Tensor t = torch::arange(n, torch::kFloat64).div(44100.0);
  const double f0 = 110.0 * (1.0 + 0.37 * static_cast<double>(seed % 17));
  torch::Tensor phase = 2 * M_PI * (f0 * t + 20.0 * t * t);
  torch::Tensor x = phase.sin() + 0.5 * (3 * phase).sin() * (2 * M_PI * 1.5 * t).sin() +
                    torch::empty({n}, torch::kFloat64).uniform_(-0.1, 0.1, gen);
  x = (x / x.abs().max()).to(torch::kFloat32).contiguous();
  return std::vector<float>(x.data_ptr<float>(), x.data_ptr<float>() + n);
}

Peak measurePeak(const std::string& dtype, const std::string& deviceSpec) {
  runtime::configureThreads();
  const torch::Device device = device::resolve(deviceSpec);
  const c10::ScalarType st = scalarType(dtype);
  c10::InferenceMode guard;
  if (device.is_cuda() && st == torch::kFloat32) at::globalContext().setAllowTF32CuBLAS(false);
  const std::vector<int64_t> sizes = device.is_cuda() ? std::vector<int64_t>{2048, 4096, 8192, 16384}
                                                      : std::vector<int64_t>{256, 512, 1024, 2048, 4096};
  // Past ~0.3 s a product is as efficient as it gets; bigger ones only cost time (and an emulated dtype can
  // be 1000x slower than fp32).
  constexpr double kLongEnough = 0.3;
  Peak best{dtype, "torch.mm", 0, 0.0};
  auto timeBest = [&](const std::function<void()>& product, int64_t n) {
    product();  // warm-up: thread pools, kernel choice, packing caches
    sync(device);
    // The best of several: on a shared machine most repetitions lose time to the neighbours, and the peak is
    // what the hardware does when it gets the cores (up to 10 repetitions or ~1 s per size).
    double fastest = 1e30, spent = 0;
    for (int r = 0; r < 10 && spent < 1.0; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      product();
      sync(device);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fastest = std::min(fastest, s);
      spent += s;
      if (fastest > kLongEnough) break;
    }
    return std::make_pair(2.0 * n * n * n / fastest / 1e9, fastest);
  };
  const bool packed = device.is_cpu() && st != torch::kFloat32 && onednn::available(st);
  for (int64_t n : sizes) {
    auto opts = torch::TensorOptions().dtype(st).device(device);
    torch::Tensor a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts), c = torch::empty({n, n}, opts);
    auto [gflops, seconds] = timeBest([&] { torch::mm_out(c, a, b); }, n);
    if (gflops > best.gflopPerSecond) best = Peak{dtype, "torch.mm", n, gflops};
    if (packed) {
      // The bf16 blocks' own kernel: the weight reordered once for oneDNN, as core/jukebox.cpp packs it.
      torch::Tensor w = onednn::packWeight(b.t().contiguous(), n);
      torch::Tensor bias = torch::zeros({n}, opts);
      auto [g2, s2] = timeBest([&] { (void)onednn::linear(a, w, bias, "none"); }, n);
      if (g2 > best.gflopPerSecond) best = Peak{dtype, "oneDNN packed linear", n, g2};
      seconds = std::max(seconds, s2);
    }
    if (seconds > kLongEnough) break;
  }
  return best;
}

// ---- the synthetic probe problem -------------------------------------------------------------------------------

namespace {

// OpenMIC-2018 per-class labeled counts, positive = relevance >= 0.5 (docs/openmic.md, section 1.5).
struct Counts {
  const char* name;
  int trainPos, trainNeg, testPos, testNeg;
};
const Counts kOpenMic[20] = {{"accordion", 374, 1159, 115, 423},  {"banjo", 592, 1148, 140, 338},
                             {"bass", 415, 1010, 134, 329},       {"cello", 598, 866, 226, 259},
                             {"clarinet", 396, 1349, 137, 503},   {"cymbals", 814, 485, 297, 139},
                             {"drums", 828, 495, 278, 146},       {"flute", 472, 1050, 175, 387},
                             {"guitar", 852, 362, 286, 150},      {"mallet_percussion", 522, 802, 211, 267},
                             {"mandolin", 652, 1185, 193, 434},   {"organ", 482, 977, 121, 310},
                             {"piano", 885, 420, 285, 130},       {"saxophone", 830, 906, 305, 324},
                             {"synthesizer", 823, 399, 268, 112}, {"trombone", 635, 1405, 228, 492},
                             {"trumpet", 828, 1303, 318, 467},    {"ukulele", 556, 1279, 182, 408},
                             {"violin", 779, 623, 394, 237},      {"voice", 764, 426, 224, 150}};

}  // namespace

ProbeProblem probeProblem(int instruments, int64_t dim, int64_t clips, double scale) {
  if (instruments < 1 || instruments > 20) throw Error(code::kInvalidArgument, "instruments must be in 1..20");
  if (dim < 1 || clips < 1 || !(scale > 0))
    throw Error(code::kInvalidArgument, "dim, clips and scale must be positive");
  ProbeProblem out;
  std::mt19937_64 rng(12345);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<double> uniform;
  out.features.resize(static_cast<size_t>(clips * dim));
  for (auto& v : out.features) v = normal(rng);
  for (int t = 0; t < instruments; ++t) {
    const Counts& c = kOpenMic[t];
    auto scaled = [&](int k) { return std::max(4, static_cast<int>(std::lround(k * scale))); };
    const int trPos = scaled(c.trainPos), trNeg = scaled(c.trainNeg), tePos = scaled(c.testPos),
              teNeg = scaled(c.testNeg);
    if (trPos + trNeg + tePos + teNeg > clips) {
      throw Error(code::kInvalidArgument, std::string(c.name) + " needs " +
                                              std::to_string(trPos + trNeg + tePos + teNeg) + " clips, more than the " +
                                              std::to_string(clips) + " given (raise clips or lower scale)");
    }
    std::vector<float> w(static_cast<size_t>(dim));
    for (auto& v : w) v = normal(rng) / std::sqrt(static_cast<float>(dim));
    std::vector<int32_t> pool(static_cast<size_t>(clips));
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), rng);
    auto label = [&](int from, int pos, int neg, probes::Split& split) {
      std::vector<std::pair<float, int32_t>> scored;
      for (int i = from; i < from + pos + neg; ++i) {
        const float* x = &out.features[static_cast<size_t>(pool[i]) * dim];
        float s = 0;
        for (int64_t k = 0; k < dim; ++k) s += x[k] * w[k];
        scored.push_back({s + 0.5f * normal(rng), pool[i]});
      }
      std::sort(scored.begin(), scored.end(), [](auto& l, auto& r) { return l.first > r.first; });
      for (int i = 0; i < pos + neg; ++i) {
        split.rows.push_back(scored[i].second);
        split.targets.push_back(i < pos ? 1 : 0);
      }
    };
    probes::Task task;
    task.instrument = c.name;
    probes::Split train;
    label(0, trPos, trNeg, train);
    label(trPos + trNeg, tePos, teNeg, task.test);
    // A stratified 15 % of train for validation, like the data layer's default partition.
    for (size_t i = 0; i < train.rows.size(); ++i) {
      probes::Split& dst = (uniform(rng) < 0.15) ? task.val : task.train;
      dst.rows.push_back(train.rows[i]);
      dst.targets.push_back(train.targets[i]);
    }
    out.tasks.push_back(std::move(task));
  }
  return out;
}

std::vector<probes::Config> paperGrid() {
  std::vector<probes::Config> g;
  for (auto hidden : std::vector<std::vector<int64_t>>{{}, {512}, {512, 256}}) {
    for (double dropout : {0.25, 0.5, 0.75}) {
      for (double l2 : {0.0, 1e-4, 1e-3}) g.push_back({hidden, dropout, l2});
    }
  }
  return g;
}

std::vector<probes::Config> attentionGrid() {
  std::vector<probes::Config> g;
  for (auto hidden : std::vector<std::vector<int64_t>>{{128}, {512}}) {
    for (double dropout : {0.25, 0.5, 0.75}) {
      for (double l2 : {0.0, 1e-4, 1e-3}) g.push_back({hidden, dropout, l2, "attention"});
    }
  }
  return g;
}

std::vector<float> toSegments(const std::vector<float>& x, int64_t clips, int64_t dim, int64_t segments) {
  // Segment s of a clip is its vector plus fresh noise, so every segment carries the label's signal.
  std::mt19937_64 rng(777);
  std::normal_distribution<float> normal;
  std::vector<float> out(static_cast<size_t>(clips * segments * dim));
  for (int64_t c = 0; c < clips; ++c) {
    for (int64_t s = 0; s < segments; ++s) {
      for (int64_t k = 0; k < dim; ++k) out[(c * segments + s) * dim + k] = x[c * dim + k] + normal(rng);
    }
  }
  return out;
}

}  // namespace calmkit::bench
