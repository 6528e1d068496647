#include "core/probes.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <unistd.h>
#include <algorithm>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/device.h"
#include "core/error.h"
#include "core/probes_heads.h"
#include "core/probes_kernels.h"
#include "core/probes_random.h"
#include "core/probes_shared.h"
#include "core/probes_stack.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace calmkit::probes {
namespace {

std::string describeSplit(const Task& t, const char* which) { return "instrument '" + t.instrument + "' " + which; }

void validateSplit(const Task& t, const Split& s, const char* which, int64_t n) {
  if (s.rows.size() != s.targets.size()) {
    throw Error(code::kDataMismatch, describeSplit(t, which) + ": " + std::to_string(s.rows.size()) + " rows but " +
                                         std::to_string(s.targets.size()) + " targets");
  }
  if (s.rows.empty()) throw Error(code::kDataMismatch, describeSplit(t, which) + " is empty");
  for (size_t i = 0; i < s.rows.size(); ++i) {
    if (s.rows[i] < 0 || s.rows[i] >= n) {
      throw Error(code::kDataMismatch, describeSplit(t, which) + ": row " + std::to_string(s.rows[i]) +
                                           " is outside the feature matrix (" + std::to_string(n) + " rows)");
    }
    if (s.targets[i] > 1) {
      throw Error(code::kDataMismatch,
                  describeSplit(t, which) + ": targets must be 0 or 1; got " + std::to_string(s.targets[i]));
    }
  }
}

// Intra-op threads for one stack. Small stacks finish each operation in microseconds, where waking and joining
// worker threads costs more than the work (and far more when the cores are oversubscribed and OpenMP workers
// spin): below ~50 MFLOP a step, stay on one thread.
int threadsFor(const Options& opt, int64_t dim, const Arch& arch, int64_t probes, int available) {
  if (opt.threads > 0) return opt.threads;
  double macs = 0;
  int64_t in = dim;
  for (auto h : arch.hidden) {
    macs += static_cast<double>(in) * h;
    in = h;
  }
  macs += in;  // the score layer
  for (auto out : arch.head->weightOuts()) macs += in * static_cast<double>(out);
  const double rows = static_cast<double>(opt.batchSize) * static_cast<double>(arch.rowsPerClip(opt.segments));
  double flopsPerStep = 6.0 * macs * rows * static_cast<double>(probes);
  return flopsPerStep < 5e7 ? 1 : available;
}

// Sets this thread's intra-op threads only. at::set_num_threads would also change the default that other threads
// pick up on their first parallel call.
void setThreadsHere(int n) {
  initThreadsHere();  // else the thread's first parallel loop would reset n to the process count
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  at::set_num_threads(n);
#endif
}

std::vector<float> toCpuVector(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// Segment features go with attention probes, one vector per clip with the paper's probes; a clip's real segments
// are 1..S.
void validateSegments(int64_t n, const std::vector<Config>& configs, const Options& opt) {
  if (opt.segments < 0) throw Error(code::kInvalidArgument, "segments must be 0 (one vector per clip) or positive");
  for (const auto& c : configs) {
    const Head& head = headNamed(c.head);
    if (head.readsSegments() && opt.segments == 0) {
      throw Error(code::kInvalidArgument, std::string(head.name()) +
                                              " probes need segment features (segments >= 1: each row holds S segment "
                                              "vectors)");
    }
    if (!head.readsSegments() && opt.segments > 0) {
      const std::string label = head.name() == std::string(kMlpHead) ? "MLP" : head.name();
      throw Error(code::kInvalidArgument, "the grid mixes segment features with " + label +
                                              " probes, which take one vector per clip: pool the segments first, or "
                                              "use probes that read segments (attention)");
    }
  }
  if (opt.validSegments.empty()) return;
  if (opt.segments == 0) throw Error(code::kInvalidArgument, "validSegments needs segment features (segments >= 1)");
  if (static_cast<int64_t>(opt.validSegments.size()) != n) {
    throw Error(code::kDataMismatch, "validSegments has " + std::to_string(opt.validSegments.size()) + " entries for " +
                                         std::to_string(n) + " clips");
  }
  for (size_t i = 0; i < opt.validSegments.size(); ++i) {
    if (opt.validSegments[i] < 1 || opt.validSegments[i] > opt.segments) {
      throw Error(code::kDataMismatch, "clip " + std::to_string(i) + " has " + std::to_string(opt.validSegments[i]) +
                                           " real segments; it must have 1.." + std::to_string(opt.segments));
    }
  }
}

std::string gigabytes(double b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g GB", b / 1e9);
  return buf;
}

// Sizes that cannot be allocated are refused here, before any allocation, with what they would need: one probe's
// training state in a stack (stackBytesPerProbe: weights, Adam's two moments, the kept-best copy, gradients, a
// batch's activations) and every probe's curves. Counted in double, so absurd sizes cannot overflow.
void checkMemory(int64_t dim, size_t tasks, const std::vector<Config>& configs, const Options& opt) {
  const double physical = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
  const double limit = physical > 0 ? physical : 1e18;
  for (const auto& c : configs) {
    const Arch arch{c.hidden, &headNamed(c.head)};
    const double bytes = stackBytesPerProbe(dim, arch, opt.batchSize,
                                            arch.rowsPerClip(std::max<int64_t>(1, opt.segments)), opt.matmulPrecision);
    if (bytes > limit) {
      std::string h;
      for (auto x : c.hidden) h += (h.empty() ? "" : ", ") + std::to_string(x);
      throw Error(code::kInvalidArgument, "a probe with hidden sizes [" + h + "] on " + std::to_string(dim) +
                                              " features (batch " + std::to_string(opt.batchSize) + ") needs about " +
                                              gigabytes(bytes) + " to train, more than this machine's memory (" +
                                              gigabytes(physical) + ")");
    }
  }
  // Validation loss and accuracy per epoch for every probe.
  const double curves =
      8.0 * static_cast<double>(opt.epochs) * static_cast<double>(tasks) * static_cast<double>(configs.size());
  if (curves > limit) {
    throw Error(code::kInvalidArgument, std::to_string(opt.epochs) + " epochs for " +
                                            std::to_string(tasks * configs.size()) + " probes need about " +
                                            gigabytes(curves) + " of curves, more than this machine's memory (" +
                                            gigabytes(physical) + ")");
  }
}

// A net predict() can run: its head known, and the head's weights what the head owns (their count and widths),
// each reading what the score layer reads.
void checkNet(const Net& net, size_t k) {
  const std::string which = "probe " + std::to_string(k);
  std::vector<int64_t> outs;
  try {
    outs = headNamed(net.head).weightOuts();
  } catch (const Error& e) {
    throw Error(code::kProbe, which + ": " + e.what());
  }
  if (net.layers.empty() || outs.size() != net.headLayers.size()) {
    throw Error(code::kProbe, which + ": its " + net.head + " head needs " + std::to_string(outs.size()) +
                                  " weight(s), it has " + std::to_string(net.headLayers.size()));
  }
  for (size_t i = 0; i < outs.size(); ++i) {
    const Layer& l = net.headLayers[i];
    if (l.in != net.layers.back().in || l.out != outs[i] || l.weight.size() != static_cast<size_t>(l.in * l.out)) {
      throw Error(code::kProbe,
                  which + ": the weight " + std::to_string(i) + " of its " + net.head + " head has the wrong size");
    }
  }
}

}  // namespace

MatmulPrecision parseMatmulPrecision(const std::string& name) {
  if (name == "fp32") return MatmulPrecision::kFp32;
  if (name == "bf16") return MatmulPrecision::kBf16;
  throw Error(code::kInvalidArgument, "matmulPrecision must be 'fp32' or 'bf16'; got '" + name + "'");
}

const char* matmulPrecisionName(MatmulPrecision p) { return p == MatmulPrecision::kBf16 ? "bf16" : "fp32"; }

uint64_t probeKey(uint64_t seed, const std::string& instrument, const Config& config) {
  uint64_t k = mix64(seed ^ hashString(instrument));
  for (auto h : config.hidden) k = mix64(k + static_cast<uint64_t>(h));
  k = mix64(k ^ 0x5bd1e995ULL);  // separates [] from other shapes that hash alike
  k = mix64(k + hashDouble(config.dropout));
  return mix64(k + hashDouble(config.l2));
}

void validate(const float* features, int64_t n, int64_t dim, const std::vector<Task>& tasks,
              const std::vector<Config>& configs, const Options& opt) {
  if (n <= 0 || dim <= 0) throw Error(code::kDataMismatch, "the feature matrix is empty");
  if (tasks.empty()) throw Error(code::kInvalidArgument, "no instruments to train");
  if (configs.empty()) throw Error(code::kInvalidArgument, "the grid has no configs");
  if (opt.epochs < 1) throw Error(code::kInvalidArgument, "epochs must be at least 1");
  if (opt.threads < 0 || opt.threads > 65536) {
    throw Error(code::kInvalidArgument,
                "threads must be 0 (by stack size) or 1..65536; got " + std::to_string(opt.threads));
  }
  if (opt.maxStackBytes < 0 || opt.maxProbesPerStack < 0) {
    throw Error(code::kInvalidArgument, "maxStackBytes and maxProbesPerStack must be 0 (no limit) or positive");
  }
  if (opt.batchSize < 2 || opt.batchSize % 2) {
    throw Error(code::kInvalidArgument, "batchSize must be an even number >= 2 (half positives, half negatives)");
  }
  if (!(opt.lr > 0) || !std::isfinite(opt.lr)) throw Error(code::kInvalidArgument, "lr must be a positive number");
  validateSegments(n, configs, opt);
  if (opt.trace && (tasks.size() != 1 || configs.size() != 1)) {
    throw Error(code::kInvalidArgument, "a traced training needs exactly one instrument and one config");
  }
  for (const auto& c : configs) {
    if (!(c.dropout >= 0 && c.dropout < 1)) throw Error(code::kInvalidArgument, "dropout must be in [0, 1)");
    if (!(c.l2 >= 0) || !std::isfinite(c.l2)) throw Error(code::kInvalidArgument, "l2 must be a non-negative number");
    for (auto h : c.hidden) {
      if (h < 1) throw Error(code::kInvalidArgument, "hidden layer sizes must be positive");
    }
  }
  checkMemory(dim, tasks.size(), configs, opt);
  std::vector<std::string> seen;
  for (const auto& t : tasks) {
    if (std::find(seen.begin(), seen.end(), t.instrument) != seen.end()) {
      throw Error(code::kInvalidArgument, "instrument '" + t.instrument + "' appears twice");
    }
    seen.push_back(t.instrument);
    validateSplit(t, t.train, "train", n);
    validateSplit(t, t.val, "validation", n);
    validateSplit(t, t.test, "test", n);
    auto pos = std::count(t.train.targets.begin(), t.train.targets.end(), 1);
    if (pos == 0 || pos == static_cast<long>(t.train.targets.size())) {
      throw Error(code::kDataSingleClass, describeSplit(t, "train") + " has no " + (pos ? "negatives" : "positives") +
                                              ": balanced batches need both classes");
    }
    // Only what a split uses is checked: its clips' rows, and of segmented clips only the real segments.
    const int64_t S = std::max<int64_t>(1, opt.segments);
    for (const Split* s : {&t.train, &t.val, &t.test}) {
      for (int32_t r : s->rows) {
        const int64_t real = opt.validSegments.empty() ? S : opt.validSegments[r];
        const float* x = features + static_cast<int64_t>(r) * S * dim;
        for (int64_t k = 0; k < real * dim; ++k) {
          if (!std::isfinite(x[k])) {
            throw Error(code::kDataNotFinite,
                        "feature row " + std::to_string(r) + " (used by instrument '" + t.instrument +
                            "') has a non-finite value at " +
                            (opt.segments > 0 ? "segment " + std::to_string(k / dim) + ", column " : "column ") +
                            std::to_string(k % dim));
          }
        }
      }
    }
  }
}

Result trainGrid(const float* features, int64_t n, int64_t dim, const std::vector<Task>& tasks,
                 const std::vector<Config>& configs, const Options& opt) {
  c10::InferenceMode inference;  // hand-written backward: autograd has nothing to record
  auto started = std::chrono::steady_clock::now();
  validate(features, n, dim, tasks, configs, opt);
  const int64_t S = std::max<int64_t>(1, opt.segments);
  Shared sh{features,
            n,
            dim,
            S,
            opt.validSegments,
            torch::from_blob(const_cast<float*>(features), {n * S, dim}, torch::kFloat),
            tasks,
            configs,
            opt,
            device::resolve(opt.device),
            {},
            {},
            {},
            {},
            {},
            {}};
  for (int32_t v : opt.validSegments) sh.padded = sh.padded || v < S;
  const int T = static_cast<int>(tasks.size()), C = static_cast<int>(configs.size());
  for (const auto& t : tasks) {
    if (!opt.standardize) {
      sh.scalers.push_back(Scaler{});
      continue;
    }
    if (opt.segments == 0) {
      sh.scalers.push_back(fitScaler(sh.X, t.train));
      continue;
    }
    // Segment features: the statistics of every real segment of the instrument's train clips.
    std::vector<int64_t> rows;
    for (int32_t r : t.train.rows) {
      for (int64_t k = 0; k < sh.validOf(r); ++k) rows.push_back(static_cast<int64_t>(r) * S + k);
    }
    sh.scalers.push_back(fitScaler(sh.X, rows));
  }
  for (auto* v : {&sh.valX, &sh.valY, &sh.testX, &sh.valValid, &sh.testValid}) v->resize(T);

  Result res;
  res.device = sh.device.str();
  res.probes.resize(static_cast<size_t>(T) * C);
  res.tasks.resize(T);
  for (int t = 0; t < T; ++t) {
    for (int c = 0; c < C; ++c) {
      res.probes[t * C + c].task = t;
      res.probes[t * C + c].config = c;
    }
  }

  // Group by architecture; inside a group, instruments with more steps per epoch first (so the probes still
  // stepping are always a prefix of the stack), then cut into stacks that fit the memory limits.
  std::vector<Arch> archs;
  for (const auto& c : configs) {
    Arch a{c.hidden, &headNamed(c.head)};
    if (std::find(archs.begin(), archs.end(), a) == archs.end()) archs.push_back(a);
  }
  std::vector<std::pair<Arch, std::vector<ProbeSpec>>> stacks;
  for (const auto& arch : archs) {
    std::vector<ProbeSpec> group;
    for (int t = 0; t < T; ++t) {
      int64_t spe = (static_cast<int64_t>(tasks[t].train.rows.size()) + opt.batchSize - 1) / opt.batchSize;
      for (int c = 0; c < C; ++c) {
        if (!(Arch{configs[c].hidden, &headNamed(configs[c].head)} == arch)) continue;
        group.push_back({t * C + c, t, c, configs[c].dropout, configs[c].l2,
                         probeKey(opt.seed, tasks[t].instrument, configs[c]), spe});
      }
    }
    std::stable_sort(group.begin(), group.end(),
                     [](const ProbeSpec& a, const ProbeSpec& b) { return a.stepsPerEpoch > b.stepsPerEpoch; });
    int64_t cap = static_cast<int64_t>(group.size());
    if (opt.maxProbesPerStack > 0) cap = std::min(cap, opt.maxProbesPerStack);
    if (opt.maxStackBytes > 0) {
      const auto per =
          static_cast<int64_t>(stackBytesPerProbe(dim, arch, opt.batchSize, arch.rowsPerClip(S), opt.matmulPrecision));
      cap = std::min(cap, std::max<int64_t>(1, opt.maxStackBytes / per));
    }
    for (size_t i = 0; i < group.size(); i += cap) {
      size_t j = std::min(group.size(), i + static_cast<size_t>(cap));
      stacks.emplace_back(arch, std::vector<ProbeSpec>(group.begin() + i, group.begin() + j));
    }
  }
  res.stacks = static_cast<int64_t>(stacks.size());
  int64_t done = 0;
  const int threadsBefore = at::get_num_threads();
  try {
    for (size_t s = 0; s < stacks.size(); ++s) {
      setThreadsHere(
          threadsFor(opt, dim, stacks[s].first, static_cast<int64_t>(stacks[s].second.size()), threadsBefore));
      // Every product of the stack's training, evaluation and test probabilities on oneMKL's one-thread kernel,
      // whatever the thread counts of the process and of the stack (predict does the same, so it reproduces the
      // test probabilities). Set after setThreadsHere, which may set oneMKL's threads too (at::set_num_threads).
      SerialBlas serial;
      trainStack(sh, stacks[s].first, std::move(stacks[s].second), res, static_cast<int64_t>(s), res.stacks, done);
    }
  } catch (...) {
    setThreadsHere(threadsBefore);
    throw;
  }
  setThreadsHere(threadsBefore);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return res;
}

namespace {

// A trained net's weights as tensors on `device`, for netLogits: layers [in, out] with their biases, and the head's
// own weights, which have no bias (the attention logit's would shift every segment of a clip alike).
NetTensors tensorsOf(const Net& net, const torch::Device& device) {
  auto on = [&](const std::vector<float>& v, std::vector<int64_t> shape) {
    return torch::from_blob(const_cast<float*>(v.data()), shape, torch::kFloat).to(device);
  };
  NetTensors t;
  for (const Layer& L : net.layers) {
    t.w.push_back(on(L.weight, {L.in, L.out}));
    t.b.push_back(on(L.bias, {L.out}));
  }
  for (const Layer& L : net.headLayers) t.head.push_back(on(L.weight, {L.in, L.out}));
  return t;
}

}  // namespace

std::vector<float> predict(const float* features, int64_t n, int64_t dim, const std::vector<Net>& nets,
                           const std::string& deviceName) {
  c10::InferenceMode inference;
  SerialBlas serial;  // the trainer's products (trainGrid)
  auto device = device::resolve(deviceName);
  for (size_t k = 0; k < nets.size(); ++k) {
    checkNet(nets[k], k);
    if (headNamed(nets[k].head).readsSegments()) {
      throw Error(code::kProbe,
                  "probe " + std::to_string(k) + " is an " + nets[k].head + " probe: it reads segment features");
    }
    if (nets[k].layers.empty() || nets[k].layers[0].in != dim) {
      throw Error(code::kDataMismatch, "features have " + std::to_string(dim) + " columns but probe " +
                                           std::to_string(k) + " expects " +
                                           std::to_string(nets[k].layers.empty() ? 0 : nets[k].layers[0].in));
    }
  }
  for (int64_t i = 0; i < n * dim; ++i) {
    if (!std::isfinite(features[i])) {
      throw Error(code::kDataNotFinite, "feature row " + std::to_string(i / dim) +
                                            " has a non-finite value at column " + std::to_string(i % dim));
    }
  }
  auto X = torch::from_blob(const_cast<float*>(features), {n, dim}, torch::kFloat).to(device);
  auto out = torch::empty({n, static_cast<int64_t>(nets.size())}, torch::kFloat);
  for (size_t k = 0; k < nets.size(); ++k) {
    const Net& net = nets[k];
    torch::Tensor h = X;
    if (!net.mean.empty()) {
      auto mu = torch::tensor(net.mean).to(device), sd = torch::tensor(net.std).to(device);
      h = (X - mu) / sd;
    }
    const Head& head = headNamed(net.head);
    const NetTensors tensors = tensorsOf(net, device);
    h = forwardRows(h, [&](const torch::Tensor& x) { return netLogits(head, tensors, x, 1, {}); });
    out.select(1, static_cast<int64_t>(k)).copy_(torch::sigmoid(h).view(-1).to(torch::kCPU));
  }
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
}

SegmentPrediction predictSegments(const float* features, int64_t n, int64_t segments, int64_t dim,
                                  const std::vector<int32_t>& valid, const std::vector<Net>& nets,
                                  const std::string& deviceName, bool withWeights) {
  c10::InferenceMode inference;
  SerialBlas serial;  // the trainer's products (trainGrid)
  auto device = device::resolve(deviceName);
  if (n < 1 || segments < 1)
    throw Error(code::kDataMismatch, "predict needs at least one clip of at least one segment");
  if (!valid.empty() && static_cast<int64_t>(valid.size()) != n) {
    throw Error(code::kDataMismatch,
                "validSegments has " + std::to_string(valid.size()) + " entries for " + std::to_string(n) + " clips");
  }
  auto realOf = [&](int64_t i) -> int64_t { return valid.empty() ? segments : valid[i]; };
  for (int64_t i = 0; i < n; ++i) {
    if (realOf(i) < 1 || realOf(i) > segments) {
      throw Error(code::kDataMismatch, "clip " + std::to_string(i) + " has " + std::to_string(realOf(i)) +
                                           " real segments; it must have 1.." + std::to_string(segments));
    }
  }
  for (size_t k = 0; k < nets.size(); ++k) {
    checkNet(nets[k], k);
    if (!headNamed(nets[k].head).readsSegments()) {
      throw Error(code::kProbe,
                  "probe " + std::to_string(k) + " is an " + nets[k].head + " probe: it reads one vector per clip");
    }
    if (nets[k].layers.empty() || nets[k].layers[0].in != dim) {
      throw Error(code::kDataMismatch, "features have " + std::to_string(dim) + " columns but probe " +
                                           std::to_string(k) + " expects " +
                                           std::to_string(nets[k].layers.empty() ? 0 : nets[k].layers[0].in));
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* x = features + i * segments * dim;
    for (int64_t k = 0; k < realOf(i) * dim; ++k) {
      if (!std::isfinite(x[k])) {
        throw Error(code::kDataNotFinite, "clip " + std::to_string(i) + " has a non-finite value at segment " +
                                              std::to_string(k / dim) + ", column " + std::to_string(k % dim));
      }
    }
  }
  torch::Tensor validMask;
  bool padded = false;
  for (int64_t i = 0; i < n; ++i) padded = padded || realOf(i) < segments;
  if (padded) {
    validMask = torch::zeros({n, segments}, torch::kBool);
    for (int64_t i = 0; i < n; ++i) validMask[i].narrow(0, 0, realOf(i)).fill_(true);
  }
  auto X = torch::from_blob(const_cast<float*>(features), {n * segments, dim}, torch::kFloat).to(device);
  auto validDev = validMask.defined() ? validMask.to(device) : validMask;
  SegmentPrediction out;
  out.probabilities.resize(static_cast<size_t>(n) * nets.size());
  if (withWeights) out.weights.resize(static_cast<size_t>(n) * nets.size() * segments);
  for (size_t k = 0; k < nets.size(); ++k) {
    const Net& net = nets[k];
    // Standardised exactly as the trainer does (subtract, divide), padding zeroed.
    torch::Tensor h = X;
    if (!net.mean.empty()) h = (X - torch::tensor(net.mean).to(device)) / torch::tensor(net.std).to(device);
    if (validDev.defined()) h = h.masked_fill(validDev.logical_not().view({-1, 1}), 0.0f);
    const Head& head = headNamed(net.head);
    const NetTensors tensors = tensorsOf(net, device);
    std::vector<torch::Tensor> weightBlocks;
    auto logits = forwardClips(h, segments, validDev, [&](const torch::Tensor& x, const torch::Tensor& v) {
      torch::Tensor w;
      auto z = netLogits(head, tensors, x, segments, v, withWeights ? &w : nullptr);
      if (w.defined()) weightBlocks.push_back(w);
      return z;
    });
    auto p = toCpuVector(torch::sigmoid(logits).view(-1));
    for (int64_t i = 0; i < n; ++i) out.probabilities[i * nets.size() + k] = p[i];
    if (withWeights && !weightBlocks.empty()) {
      auto w = toCpuVector(torch::cat(weightBlocks, 0).narrow(0, 0, n));
      for (int64_t i = 0; i < n; ++i) {
        std::copy_n(w.begin() + i * segments, segments, out.weights.begin() + (i * nets.size() + k) * segments);
      }
    }
  }
  return out;
}

}  // namespace calmkit::probes
