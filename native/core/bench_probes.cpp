// The probe grid's benchmark (core/bench.h): the grid trained on the synthetic OpenMIC-sized problem at two or
// more epoch counts, a line through the median times giving the setup and the cost of one epoch, extrapolated to
// the paper's 800; the floor is the time the grid's matrix products alone take at the measured GEMM peak.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/bench.h"
#include "core/device.h"
#include "core/error.h"
#include "core/json.h"
#include "core/probes_heads.h"

namespace calmkit::bench {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? NAN : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Products of one probe, per row of its input (a clip, or a segment of one): sum of in x out over its layers, the
// same without the first layer (no input gradient is formed for the features), and the attention logit's layer.
struct ProbeShape {
  double macs = 0, macsAfterFirst = 0;
};

ProbeShape shapeOf(const probes::Config& c, int64_t dim) {
  ProbeShape s;
  int64_t in = dim;
  std::vector<int64_t> outs = c.hidden;
  outs.push_back(1);
  for (size_t l = 0; l < outs.size(); ++l) {
    const double m = static_cast<double>(in) * static_cast<double>(outs[l]);
    s.macs += m;
    if (l > 0) s.macsAfterFirst += m;
    in = outs[l];
  }
  // The head's own weights, each [last hidden width, out] over every row (attention: its score vector).
  const double last = static_cast<double>(c.hidden.empty() ? dim : c.hidden.back());
  for (int64_t out : probes::headNamed(c.head).weightOuts()) {
    s.macs += last * static_cast<double>(out);
    s.macsAfterFirst += last * static_cast<double>(out);
  }
  return s;
}

}  // namespace

std::string runProbes(const ProbeOptions& o, const Events& ev) {
  auto log = [&](const std::string& s) {
    if (ev.log) ev.log(s);
  };
  std::vector<int64_t> epochs = o.epochs;
  std::sort(epochs.begin(), epochs.end());
  epochs.erase(std::unique(epochs.begin(), epochs.end()), epochs.end());
  if (epochs.size() < 2 || epochs.front() < 1) {
    throw Error(code::kInvalidArgument,
                "epochs needs two or more different counts >= 1 (a line through them gives the cost of an epoch)");
  }
  if (o.rounds < 1) throw Error(code::kInvalidArgument, "rounds must be at least 1");
  if (o.mode != "vectorised" && o.mode != "one-at-a-time" && o.mode != "batched") {
    throw Error(code::kInvalidArgument, "mode must be vectorised, one-at-a-time or batched; got '" + o.mode + "'");
  }
  if (o.segments < 0 || o.targetEpochs < 1)
    throw Error(code::kInvalidArgument, "segments must be >= 0 and targetEpochs >= 1");
  std::vector<probes::MatmulPrecision> precisions;
  for (const auto& p : o.matmulPrecisions) precisions.push_back(probes::parseMatmulPrecision(p));
  if (precisions.empty()) throw Error(code::kInvalidArgument, "give at least one matmul precision");
  const torch::Device device = device::resolve(o.device);

  log("making the synthetic problem: " + std::to_string(o.instruments) + " instruments, " + std::to_string(o.clips) +
      " clips of " + std::to_string(o.dim) + " values");
  ProbeProblem problem = probeProblem(o.instruments, o.dim, o.clips, o.scale);
  const std::vector<probes::Config> configs = o.segments > 0 ? attentionGrid() : paperGrid();
  if (o.segments > 0) problem.features = toSegments(problem.features, o.clips, o.dim, o.segments);

  probes::Options base;
  base.device = device.str();
  base.segments = o.segments;
  if (o.mode == "one-at-a-time") base.maxProbesPerStack = 1;
  base.batchedStep = o.mode == "batched";
  base.maxStackBytes = int64_t(2) << 30;
  base.cancelled = [&] { return ev.cancelled && ev.cancelled(); };

  // Work per epoch: steps of every probe (balanced batches of batchSize over its training rows) and their products.
  const int64_t B = base.batchSize, S = std::max<int64_t>(1, o.segments);
  int64_t stepsPerEpoch = 0;
  double trainFlops = 0, evalFlops = 0, testFlops = 0;
  for (const auto& task : problem.tasks) {
    const int64_t steps = (static_cast<int64_t>(task.train.rows.size()) + B - 1) / B;
    for (const auto& c : configs) {
      const ProbeShape sh = shapeOf(c, o.dim);
      stepsPerEpoch += steps;
      // Forward, weight gradients, input gradients below the first layer; 2 FLOPs per multiply-add.
      trainFlops += static_cast<double>(steps) * 2.0 * static_cast<double>(B * S) * (2 * sh.macs + sh.macsAfterFirst);
      evalFlops += 2.0 * static_cast<double>(task.val.rows.size() * S) * sh.macs;
      testFlops += 2.0 * static_cast<double>(task.test.rows.size() * S) * sh.macs;
    }
  }

  struct Samples {
    std::map<int64_t, std::vector<double>> seconds;  // by epochs
    int64_t stacks = 0, probes = 0;
    std::string device;
    double meanSelectedValAcc = 0;
  };
  std::map<probes::MatmulPrecision, Samples> samples;
  for (int64_t r = 0; r < o.rounds; ++r) {
    for (int64_t e : epochs) {
      for (probes::MatmulPrecision p : precisions) {
        if (ev.cancelled && ev.cancelled()) throw Error(code::kAborted, "the benchmark was aborted");
        probes::Options opt = base;
        opt.epochs = e;
        opt.matmulPrecision = p;
        auto res = probes::trainGrid(problem.features.data(), o.clips, o.dim, problem.tasks, configs, opt);
        Samples& s = samples[p];
        s.seconds[e].push_back(res.seconds);
        s.stacks = res.stacks;
        s.probes = static_cast<int64_t>(res.probes.size());
        s.device = res.device;
        double acc = 0;
        for (size_t t = 0; t < res.tasks.size(); ++t)
          acc += res.probes[t * configs.size() + res.tasks[t].selected].bestValAcc;
        s.meanSelectedValAcc = acc / static_cast<double>(res.tasks.size());
        char line[200];
        std::snprintf(line, sizeof line, "round %lld/%lld: %s products, %lld epochs: %.2f s",
                      static_cast<long long>(r + 1), static_cast<long long>(o.rounds), probes::matmulPrecisionName(p),
                      static_cast<long long>(e), res.seconds);
        log(line);
      }
    }
  }

  std::map<std::string, Peak> peaks;
  std::set<std::string> dtypes{"float32"};
  for (probes::MatmulPrecision p : precisions)
    dtypes.insert(p == probes::MatmulPrecision::kBf16 ? "bfloat16" : "float32");
  for (const auto& d : dtypes) {
    log("measuring the " + d + " GEMM peak on " + device.str());
    peaks[d] = measurePeak(d, device.str());
  }

  json::Object doc = reportHead("probes", o.origin);
  json::Array epochArr;
  for (int64_t e : epochs) epochArr.integer(e);
  json::Object config;
  config.str("device", device.str())
      .str("mode", o.mode)
      .integer("instruments", o.instruments)
      .integer("dim", o.dim)
      .integer("clips", o.clips)
      .num("scale", o.scale)
      .integer("segments", o.segments)
      .integer("configs", static_cast<int64_t>(configs.size()))
      .integer("batchSize", B)
      .arr("epochs", epochArr)
      .integer("targetEpochs", o.targetEpochs)
      .integer("rounds", o.rounds)
      .str("problem",
           "synthetic: standard-normal clips, OpenMIC-2018's per-class counts, a noisy linear rule per instrument");
  doc.obj("config", config);
  doc.arr("peaks", peaksJson(peaks, device.str()));

  json::Array rows;
  for (probes::MatmulPrecision p : precisions) {
    const Samples& s = samples.at(p);
    // Least squares through (epochs, median seconds): seconds = setup + epochs x perEpoch.
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    json::Object atEpochs;
    for (const auto& [e, v] : s.seconds) {
      const double y = median(v);
      n += 1;
      sx += static_cast<double>(e);
      sy += y;
      sxx += static_cast<double>(e) * static_cast<double>(e);
      sxy += static_cast<double>(e) * y;
      atEpochs.num(std::to_string(e), y);
    }
    const double perEpoch = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    const double setup = (sy - perEpoch * sx) / n;
    const std::string dtype = p == probes::MatmulPrecision::kBf16 ? "bfloat16" : "float32";
    // Training products at the step's precision; validation and test always fp32.
    const double floorPerEpoch =
        trainFlops / (peaks.at(dtype).gflopPerSecond * 1e9) + evalFlops / (peaks.at("float32").gflopPerSecond * 1e9);
    json::Object ro;
    char label[96];
    std::snprintf(label, sizeof label, "%s products, %s, %lld probes", probes::matmulPrecisionName(p), o.mode.c_str(),
                  static_cast<long long>(s.probes));
    ro.str("label", label)
        .str("matmulPrecision", probes::matmulPrecisionName(p))
        .str("mode", o.mode)
        .str("device", s.device)
        .integer("dim", o.dim)
        .integer("probes", s.probes)
        .integer("stacks", s.stacks)
        .obj("secondsAtEpochs", atEpochs)
        .num("secondsPerEpoch", perEpoch)
        .num("setupSeconds", setup)
        .integer("targetEpochs", o.targetEpochs)
        .num("targetSeconds", setup + perEpoch * static_cast<double>(o.targetEpochs))
        .integer("stepsPerEpoch", stepsPerEpoch)
        .num("stepsPerSecond", static_cast<double>(stepsPerEpoch) / perEpoch)
        .num("flopsPerEpoch", trainFlops + evalFlops)
        .num("testFlops", testFlops)
        .num("gflopPerSecond", (trainFlops + evalFlops) / perEpoch / 1e9)
        .str("peakDtype", dtype)
        .num("peakGflopPerSecond", peaks.at(dtype).gflopPerSecond)
        .num("floorSecondsPerEpoch", floorPerEpoch)
        .num("floorFraction", floorPerEpoch / perEpoch)
        .num("meanSelectedValAccuracy", s.meanSelectedValAcc);
    rows.obj(ro);
  }
  doc.arr("rows", rows);
  json::Array notes;
  notes.str(
      "the FLOPs count the products: forward, weight gradients and input gradients below the first layer for " +
      std::string("every step, validation every epoch (test once, not in flopsPerEpoch); the floor is their time at ") +
      "the measured GEMM peak, the rest (Adam, masks, sampling) is not in it");
  doc.arr("notes", notes);
  return doc.dump();
}

}  // namespace calmkit::bench
