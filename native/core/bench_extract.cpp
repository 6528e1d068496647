// The extraction benchmark (core/bench.h): models built once per precision from one set of weights, every row
// (precision x tokens x batch) run through core::extract with its stages timed, the rows and the reference's
// interleaved round after round, then GEMM peaks, FLOPs and memory into one report.
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#if CALMKIT_WITH_CUDA
#include <c10/core/CachingDeviceAllocator.h>
#endif

#include "core/bench.h"
#include "core/buffer_cache.h"
#include "core/device.h"
#include "core/error.h"
#include "core/extract.h"
#include "core/json.h"
#include "core/jukebox.h"
#include "core/jukebox_attention.h"
#include "core/random_model.h"
#include "core/reference_process.h"
#include "core/runtime.h"
#include "core/step_timer.h"

namespace calmkit::bench {
namespace {

namespace jb = calmkit::jukebox;

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void sync(torch::Device d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

// Peak resident memory since the last reset. Linux resets VmHWM when "5" is written to clear_refs; where that
// is refused the peak is the process's since it started, and the report says so.
bool resetPeakRss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

int64_t statusBytes(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(f, line)) {
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(key.size())) * 1024;
  }
  return 0;
}

struct DeviceMemory {
  torch::Device device;
  void reset() const {
#if CALMKIT_WITH_CUDA
    if (device.is_cuda()) c10::getDeviceAllocator(c10::DeviceType::CUDA)->resetPeakStats(device.index());
#endif
  }
  // The caching allocator's peak reserved bytes since reset; -1 on the CPU (no device memory).
  int64_t peak() const {
#if CALMKIT_WITH_CUDA
    if (device.is_cuda()) {
      auto stats = c10::getDeviceAllocator(c10::DeviceType::CUDA)->getDeviceStats(device.index());
      return stats.reserved_bytes[static_cast<size_t>(c10::CachingDeviceAllocator::StatType::AGGREGATE)].peak;
    }
#endif
    return -1;
  }
};

// Median, min, max and every sample, in the unit of the field that holds it.
json::Object stat(std::vector<double> v) {
  json::Object o;
  if (v.empty()) return o.null("median").null("min").null("max").arr("samples", json::Array());
  json::Array samples = json::numbers(v);
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return o.num("median", median).num("min", v.front()).num("max", v.back()).arr("samples", samples);
}

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

const char* dtypeOf(jb::Precision p) {
  switch (p) {
    case jb::Precision::Fp32:
      return "float32";
    case jb::Precision::Bf16:
      return "bfloat16";
    case jb::Precision::Fp16:
      return "float16";
  }
  return "float32";
}

class CancelSink : public jb::Sink {
 public:
  explicit CancelSink(const Events& ev) : ev_(ev) {}
  bool cancelled() override { return ev_.cancelled && ev_.cancelled(); }

 private:
  const Events& ev_;
};

struct Pooled {
  std::vector<int64_t> tokens;
  std::vector<float> last;  // the deepest layer's pooled row
};

double agreement(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  if (n == 0) return 0;
  size_t same = 0;
  for (size_t i = 0; i < n; ++i) same += a[i] == b[i];
  return static_cast<double>(same) / static_cast<double>(std::max(a.size(), b.size()));
}

template <typename T>
void writeRaw(const std::string& path, const std::vector<T>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
  if (!f) throw Error(code::kInternal, path + ": cannot be written");
}

std::vector<float> readRawFloats(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error(code::kInternal, path + ": the reference wrote no features");
  std::vector<float> v(static_cast<size_t>(f.tellg()) / sizeof(float));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  return v;
}

std::vector<int64_t> readRawInt64(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error(code::kInternal, path + ": the reference wrote no tokens");
  std::vector<int64_t> v(static_cast<size_t>(f.tellg()) / sizeof(int64_t));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(int64_t)));
  return v;
}

// One row's samples over the timed rounds, each per clip.
struct Samples {
  std::vector<double> clip, encode, embed, blocks, perLayer, pool, clipExtrapolated, blocksExtrapolated, cpu;
  std::vector<double> encodeCpu, perLayerCpu, cpuExtrapolated;  // CPU seconds (all threads) per clip
  std::vector<std::vector<double>> layers;                      // per block index
  profile::StepTimes steps;                                     // with ExtractOptions::profile
  int64_t timedClips = 0;
  int64_t peakRss = 0, peakDevice = -1, rssBefore = 0;
};

struct Row {
  jb::Precision precision;
  int64_t tokens = 0, batch = 1;
  bool bufferCache = true;
  Samples s;
};

struct RefRow {
  std::string mode;  // same-work | jukemirlib
  jb::Precision precision;
  int64_t tokens = 0;
  std::vector<double> clip, encode, prior;
  std::vector<double> encodeCpu, priorCpu;  // the reference process's CPU seconds (all threads)
};

}  // namespace

std::string runExtract(const ExtractOptions& o, const Events& ev) {
  auto log = [&](const std::string& s) {
    if (ev.log) ev.log(s);
  };
  auto checkCancel = [&] {
    if (ev.cancelled && ev.cancelled()) throw Error(code::kAborted, "the benchmark was aborted");
  };
  if (o.rounds < 1) throw Error(code::kInvalidArgument, "rounds must be at least 1");
  if (o.warmup < 0) throw Error(code::kInvalidArgument, "warmup must be 0 or more");
  if (o.layers < 0 || o.sampleLayers < 0)
    throw Error(code::kInvalidArgument, "layers and sampleLayers must be positive");
  if (o.batches.empty() || o.precisions.empty())
    throw Error(code::kInvalidArgument, "give at least one batch size and one precision");
  for (int64_t b : o.batches) {
    if (b < 1 || b > 256)
      throw Error(code::kInvalidArgument, "batch sizes must be in 1..256; got " + std::to_string(b));
  }
  runtime::configureThreads();
  const torch::Device device = device::resolve(o.device);
  c10::InferenceMode inference;

  // Precisions, auto resolved on this device; fp32 is the baseline every other precision is compared with.
  std::vector<jb::Precision> precisions;
  std::vector<std::string> notes;
  for (const auto& spec : o.precisions) {
    const jb::Precision p = jb::resolvePrecision(spec, device);
    if (spec == "auto")
      notes.push_back(std::string("precision auto resolved to ") + jb::precisionName(p) + " on " + device.str());
    if (p != jb::Precision::Fp32) {
      device::checkMatmulDtype(device, p == jb::Precision::Fp16 ? torch::kFloat16 : torch::kBFloat16,
                               std::string("precision ") + jb::precisionName(p), "use fp32");
    }
    if (std::find(precisions.begin(), precisions.end(), p) == precisions.end()) precisions.push_back(p);
  }

  // Token counts: a full window (n_ctx) unless given; checked before any weight is drawn.
  std::vector<int64_t> tokenCounts;
  auto checkTokens = [&](const jb::Hparams& h) {
    tokenCounts = o.tokens.empty() ? std::vector<int64_t>{h.nCtx} : o.tokens;
    for (int64_t t : tokenCounts) {
      if (t < 1 || t > h.nCtx) {
        throw Error(code::kInvalidArgument,
                    "tokens must be in 1.." + std::to_string(h.nCtx) + " (n_ctx); got " + std::to_string(t));
      }
    }
  };

  // The weights: drawn in memory at the preset's shapes, or a checkpoint read once.
  jb::Hparams hp;
  std::map<std::string, torch::Tensor> tensors;
  int64_t depthReported = 0, depthRun = 0;
  double drawSeconds = 0, readSeconds = 0;
  std::string weights;
  if (!o.modelPath.empty()) {
    jb::LoadOptions load;
    load.verifyWeights = o.verifyWeights;
    auto t0 = Clock::now();
    jb::Checkpoint ck = jb::loadCheckpoint(o.modelPath, load);
    readSeconds = since(t0);
    hp = ck.hp;
    checkTokens(hp);
    depthReported = o.layers ? o.layers : hp.depth;
    if (depthReported > hp.depth) {
      throw Error(code::kInvalidArgument, "layers " + std::to_string(depthReported) + ": " + o.modelPath +
                                              " has layers 1.." + std::to_string(hp.depth) +
                                              " (use sampleLayers to extrapolate past them)");
    }
    depthRun = o.sampleLayers ? std::min(o.sampleLayers, depthReported) : depthReported;
    hp.depth = depthRun;
    tensors = std::move(ck.tensors);
    weights = "checkpoint " + o.modelPath;
  } else {
    hp = jb::presetHparams(o.preset);
    depthReported = o.layers ? o.layers : hp.depth;
    depthRun = o.sampleLayers ? std::min(o.sampleLayers, depthReported) : depthReported;
    hp.depth = depthRun;
    hp.fullDepth = std::max(hp.fullDepth, depthReported);
    hp.source = "calmkit bench, random weights, seed " + std::to_string(o.seed);
    jb::checkHparams(hp, "benchmark");
    checkTokens(hp);
    log("drawing random weights at the " + o.preset + " shapes (" + std::to_string(depthRun) + " blocks) on " +
        device.str());
    auto t0 = Clock::now();
    torch::manual_seed(o.seed);
    tensors = jb::randomTensorsOn(hp, device);
    sync(device);
    drawSeconds = since(t0);
    weights =
        "random, jukebox's init scales, drawn in memory on " + device.str() + " with seed " + std::to_string(o.seed);
  }
  const bool sampled = depthRun < depthReported;

  // One model per precision from the same weights (fp32 keeps the stored fp16 weights, the others convert).
  const bool peakResettable = resetPeakRss();
  struct Built {
    std::shared_ptr<jb::Model> model;
    double loadSeconds = 0;
    int64_t rssGrowth = 0;
  };
  std::map<jb::Precision, Built> models;
  auto build = [&](jb::Precision p) {
    checkCancel();
    const int64_t rss0 = statusBytes("VmRSS");
    auto t0 = Clock::now();
    jb::Checkpoint ck;
    ck.hp = hp;
    ck.tensors = tensors;  // shares storage
    Built b;
    b.model = jb::Model::fromCheckpoint(std::move(ck), device, p);
    sync(device);
    b.loadSeconds = readSeconds + since(t0);
    b.rssGrowth = statusBytes("VmRSS") - rss0;
    models[p] = b;
  };
  for (jb::Precision p : precisions) build(p);
  if (!models.count(jb::Precision::Fp32)) build(jb::Precision::Fp32);  // the cosine's baseline, not timed

  // Inputs: a clip of exactly `tokens` tokens; a full window gets its encoder margin, as extraction crops it.
  const int64_t margin = jb::encoderMarginSamples(hp);
  const int64_t maxBatch = *std::max_element(o.batches.begin(), o.batches.end());
  std::map<int64_t, std::vector<jb::ClipInput>> inputs;
  std::map<int64_t, int64_t> samplesFor;
  for (int64_t t : tokenCounts) {
    const int64_t n = t * hp.hop() + (t == hp.nCtx ? margin : 0);
    samplesFor[t] = n;
    for (int64_t i = 0; i < maxBatch; ++i) {
      jb::ClipInput c;
      c.samples = testAudio(n, 100 + static_cast<uint64_t>(i));
      c.label = "bench clip " + std::to_string(i) + " (" + std::to_string(t) + " tokens)";
      inputs[t].push_back(std::move(c));
    }
  }
  jb::ExtractOptions extractOpts;
  extractOpts.layers = {static_cast<int>(depthRun)};
  CancelSink sink(ev);
  auto pooled = [&](jb::Precision p, int64_t t) {
    auto r = jb::extract(*models.at(p).model, {inputs.at(t)[0]}, extractOpts, sink, false);
    return Pooled{r.clips[0].tokens, r.clips[0].layers[0].data};
  };

  // Each precision against fp32 on the first clip, and fp32's tokens for the reference (also these models'
  // first pass); with fp32 alone and no reference there is nothing to compare, and --warmup warms up.
  std::map<std::pair<jb::Precision, int64_t>, json::Object> vsFp32;
  std::map<int64_t, Pooled> fp32Out;
  const bool comparing =
      precisions.size() > 1 || precisions.front() != jb::Precision::Fp32 || !o.referencePython.empty();
  for (int64_t t : comparing ? tokenCounts : std::vector<int64_t>{}) {
    fp32Out[t] = pooled(jb::Precision::Fp32, t);
    for (jb::Precision p : precisions) {
      if (p == jb::Precision::Fp32) continue;
      const Pooled mine = pooled(p, t);
      json::Object c;
      c.integer("layer", depthRun)
          .num("cosine", cosine(mine.last, fp32Out[t].last))
          .num("maxRelDifference", maxRel(mine.last, fp32Out[t].last))
          .boolean("tokensIdentical", mine.tokens == fp32Out[t].tokens);
      vsFp32[{p, t}] = std::move(c);
      checkCancel();
    }
  }

  // The eager reference, started and checked against calmkit fp32 before any timing.
  std::unique_ptr<ReferenceProcess> ref;
  std::vector<RefRow> refRows;
  json::Object refReport;
  std::string refStatus =
      o.referencePython.empty()
          ? "not run: " + (o.referenceAbsent.empty() ? std::string("not asked for") : o.referenceAbsent)
          : "";
  if (!o.referencePython.empty()) {
    try {
      if (o.workDir.empty()) throw Error(code::kInvalidArgument, "the reference needs a work folder");
      std::string archive = o.modelPath;
      if (archive.empty()) {
        // The same weights for the reference: the drawn tensors written as a calmkit archive of the blocks run.
        archive = o.workDir + "/reference-model.pt";
        std::map<std::string, torch::Tensor> onHost;
        for (const auto& [k, v] : tensors) onHost.emplace(k, v.to(torch::kCPU));
        log("writing the reference's copy of the weights (" + std::to_string(depthRun) + " blocks)");
        jb::saveCheckpoint(hp, onHost, archive);
      }
      log("starting the eager reference: " + o.referencePython + " " + o.referenceScript);
      ref = std::make_unique<ReferenceProcess>(o.referencePython, o.referenceScript, o.workDir + "/reference.log");
      json::Array dtypes;
      for (jb::Precision p : precisions) dtypes.str(jb::precisionName(p));
      json::Object loadMsg;
      loadMsg.str("cmd", "load")
          .str("model", archive)
          .integer("threads", runtime::collect().threads)
          .str("device", device.is_cuda() ? device.str() : "cpu")
          .arr("dtypes", dtypes);
      const json::Flat loaded = ref->call(loadMsg.dump());
      for (int64_t t : tokenCounts) {
        writeRaw(o.workDir + "/audio-" + std::to_string(t) + ".f32", inputs.at(t)[0].samples);
        std::vector<int32_t> tok(fp32Out[t].tokens.begin(), fp32Out[t].tokens.end());
        writeRaw(o.workDir + "/tokens-" + std::to_string(t) + ".i32", tok);
      }
      // Cross-check on the first token count: the prior on calmkit's tokens (exact comparison of the blocks even
      // where the VQ argmin has near-ties), and the reference's own tokens from the same audio.
      const int64_t t0 = tokenCounts.front();
      const std::string outDir = o.workDir;
      // One fp32 pass of the reference on the clip of t0 tokens, encoding it itself or given calmkit's tokens.
      auto crossCheckRun = [&](bool givenTokens) {
        json::Object msg;
        msg.str("cmd", "run")
            .str("audio", o.workDir + "/audio-" + std::to_string(t0) + ".f32")
            .arr("layers", json::Array().integer(depthRun))
            .str("out", outDir)
            .boolean("raw", true)
            .str("mode", "minimal")
            .integer("crop", samplesFor[t0])
            .str("dtype", "fp32");
        if (givenTokens) msg.str("tokens", o.workDir + "/tokens-" + std::to_string(t0) + ".i32");
        ref->call(msg.dump());
      };
      crossCheckRun(false);
      const std::vector<int64_t> refTokens = readRawInt64(outDir + "/tokens.i64");
      crossCheckRun(true);
      const std::vector<float> refLast = readRawFloats(outDir + "/layer" + std::to_string(depthRun) + ".f32");
      const double rel = maxRel(fp32Out[t0].last, refLast);
      json::Object cross;
      cross.integer("tokens", t0)
          .integer("layer", depthRun)
          .num("tokenAgreement", agreement(fp32Out[t0].tokens, refTokens))
          .num("maxRelDifference", rel)
          .num("cosine", cosine(fp32Out[t0].last, refLast))
          .boolean("agrees", rel <= 1e-4);
      refReport.obj("crossCheck", cross)
          .num("loadSeconds", loaded.number("load_seconds").value_or(NAN))
          .str("torch", loaded.string("torch").value_or("unknown"))
          .str("python", o.referencePython)
          .str("script", o.referenceScript);
      if (rel > 1e-4) {
        notes.push_back("the reference's fp32 features differ from calmkit's by " + json::number(rel) +
                        " of the largest value (more than 1e-4): its ratios compare different computations");
      }
      for (jb::Precision p : precisions) {
        for (int64_t t : tokenCounts) refRows.push_back({"same-work", p, t, {}, {}, {}, {}, {}});
      }
      if (o.referenceJukemirlib) {
        for (int64_t t : tokenCounts) refRows.push_back({"jukemirlib", jb::Precision::Fp32, t, {}, {}, {}, {}, {}});
      }
      refStatus = "ran";
    } catch (const Error& e) {
      if (std::string(e.code()) == code::kAborted) throw;
      refStatus = std::string("failed: ") + e.what();
      ref.reset();
      refRows.clear();
    }
  }

  // The rounds: every row once per round, then every reference row; the first `warmup` rounds are not kept.
  std::vector<Row> rows;
  const bool cacheConfigured = memory::cacheEnabled();
  const std::vector<bool> cacheModes = o.bufferCache.empty() ? std::vector<bool>{cacheConfigured} : o.bufferCache;
  for (jb::Precision p : precisions) {
    for (int64_t t : tokenCounts) {
      for (int64_t b : o.batches) {
        for (bool cache : cacheModes) rows.push_back({p, t, b, cache, {}});
      }
    }
  }
  const DeviceMemory devMem{device};
  auto kindOf = [](int64_t d) { return static_cast<int>(jb::attnKindForBlock(d)); };
  for (int64_t r = 0; r < o.warmup + o.rounds; ++r) {
    const bool timed = r >= o.warmup;
    const std::string roundName = timed ? "round " + std::to_string(r - o.warmup + 1) + "/" + std::to_string(o.rounds)
                                        : "warm-up " + std::to_string(r + 1) + "/" + std::to_string(o.warmup);
    for (Row& row : rows) {
      checkCancel();
      const std::vector<jb::ClipInput> clips(inputs.at(row.tokens).begin(), inputs.at(row.tokens).begin() + row.batch);
      profile::StageTimes st;
      st.device = device;
      memory::setCacheEnabled(row.bufferCache);
      if (peakResettable) resetPeakRss();
      const int64_t rss0 = statusBytes("VmRSS");
      devMem.reset();
      sync(device);
      const double cpu0 = profile::processCpuSeconds();
      auto t0 = Clock::now();
      {
        profile::StageRecording recording(&st);
        std::optional<profile::Recording> steps;
        if (o.profile && timed) {
          row.s.steps.device = device;
          steps.emplace(&row.s.steps);
        }
        jb::extract(*models.at(row.precision).model, clips, extractOpts, sink, false);
        sync(device);
      }
      const double wall = since(t0);
      const double cpu = profile::processCpuSeconds() - cpu0;
      const double per = 1.0 / static_cast<double>(row.batch);
      if (timed) {
        Samples& s = row.s;
        double blocks = 0, blocksCpu = 0;
        for (double v : st.blocksCpu) blocksCpu += v * per;
        std::vector<double> kindSum(3, 0.0), kindCount(3, 0.0);
        if (s.layers.size() < st.blocks.size()) s.layers.resize(st.blocks.size());
        for (size_t d = 0; d < st.blocks.size(); ++d) {
          const double v = st.blocks[d] * per;
          blocks += v;
          s.layers[d].push_back(v);
          kindSum[kindOf(static_cast<int64_t>(d))] += v;
          kindCount[kindOf(static_cast<int64_t>(d))] += 1;
        }
        // To the reported depth: each block not run costs the mean of the blocks of its attention kind that ran.
        double blocksAll = blocks;
        if (sampled) {
          const double mean = blocks / static_cast<double>(std::max<size_t>(1, st.blocks.size()));
          for (int64_t d = depthRun; d < depthReported; ++d) {
            const int k = kindOf(d);
            blocksAll += kindCount[k] > 0 ? kindSum[k] / kindCount[k] : mean;
          }
        }
        s.clip.push_back(wall * per);
        s.encode.push_back(st.encode * per);
        s.embed.push_back(st.embed * per);
        s.pool.push_back(st.pool * per);
        s.blocks.push_back(blocks);
        s.perLayer.push_back(blocks / static_cast<double>(depthRun));
        s.blocksExtrapolated.push_back(blocksAll);
        s.clipExtrapolated.push_back(wall * per - blocks + blocksAll);
        s.cpu.push_back(cpu * per);
        s.encodeCpu.push_back(st.encodeCpu * per);
        s.perLayerCpu.push_back(blocksCpu / static_cast<double>(depthRun));
        // The clip's CPU time to the reported depth: the blocks not run at the mean CPU time of those that ran.
        s.cpuExtrapolated.push_back(cpu * per + blocksCpu / static_cast<double>(depthRun) *
                                                    static_cast<double>(depthReported - depthRun));
        s.timedClips += row.batch;
        s.peakRss = std::max(s.peakRss, statusBytes("VmHWM"));
        s.rssBefore = std::max(s.rssBefore, rss0);
        s.peakDevice = std::max(s.peakDevice, devMem.peak());
      }
      char line[256];
      std::snprintf(line, sizeof line, "%s: %s, %lld tokens, batch %lld%s: %.3f s per clip (%.3f s per layer)",
                    roundName.c_str(), jb::precisionName(row.precision), static_cast<long long>(row.tokens),
                    static_cast<long long>(row.batch), row.bufferCache ? "" : ", no buffer cache", wall * per, [&] {
                      double b = 0;
                      for (double v : st.blocks) b += v;
                      return b * per / static_cast<double>(depthRun);
                    }());
      log(line);
    }
    for (RefRow& rr : refRows) {
      if (!ref) break;
      checkCancel();
      try {
        json::Object msg;
        msg.str("cmd", "run")
            .str("audio", o.workDir + "/audio-" + std::to_string(rr.tokens) + ".f32")
            .arr("layers", json::Array().integer(depthRun))
            .str("mode", rr.mode == "same-work" ? "minimal" : "jukemirlib")
            .str("dtype", jb::precisionName(rr.precision));
        if (rr.mode == "same-work") msg.integer("crop", samplesFor[rr.tokens]);
        const json::Flat reply = ref->call(msg.dump());
        const double secs = reply.number("seconds").value_or(NAN);
        if (timed) {
          rr.clip.push_back(secs);
          rr.encode.push_back(reply.number("encode_seconds").value_or(NAN));
          rr.prior.push_back(reply.number("prior_seconds").value_or(NAN));
          rr.encodeCpu.push_back(reply.number("encode_cpu_seconds").value_or(NAN));
          rr.priorCpu.push_back(reply.number("prior_cpu_seconds").value_or(NAN));
        }
        char line[256];
        std::snprintf(line, sizeof line, "%s: reference (%s, %s), %lld tokens: %.3f s per clip", roundName.c_str(),
                      rr.mode.c_str(), jb::precisionName(rr.precision), static_cast<long long>(rr.tokens), secs);
        log(line);
      } catch (const Error& e) {
        refStatus = std::string("failed during the rounds: ") + e.what();
        ref.reset();
      }
    }
  }
  memory::setCacheEnabled(cacheConfigured);
  if (ref) refReport.integer("peakRssBytes", ref->peakRssBytes());
  ref.reset();

  // Peaks of every dtype timed (and fp32's, the reference line of all), on the same device, now.
  std::map<std::string, Peak> peaks;
  std::set<std::string> dtypes{"float32"};
  for (jb::Precision p : precisions) dtypes.insert(dtypeOf(p));
  for (const auto& d : dtypes) {
    checkCancel();
    log("measuring the " + d + " GEMM peak on " + device.str());
    peaks[d] = measurePeak(d, device.str());
  }

  // ---- the report ----
  json::Object doc = reportHead("extract", o.origin);
  json::Object config;
  config.str("device", device.str()).str("weights", weights);
  if (o.modelPath.empty())
    config.str("preset", o.preset).null("model");
  else
    config.str("preset", hp.preset).str("model", o.modelPath);
  config.integer("width", hp.width)
      .integer("heads", hp.heads)
      .integer("nCtx", hp.nCtx)
      .integer("blockCtx", hp.blockCtx())
      .integer("hop", hp.hop())
      .integer("layers", depthReported)
      .integer("layersRun", depthRun)
      .boolean("extrapolated", sampled);
  json::Array precisionNames;
  for (jb::Precision p : precisions) precisionNames.str(jb::precisionName(p));
  config.arr("precisions", precisionNames);
  json::Array tokenArr, batchArr;
  for (int64_t t : tokenCounts) tokenArr.integer(t);
  for (int64_t b : o.batches) batchArr.integer(b);
  config.arr("tokens", tokenArr)
      .arr("batches", batchArr)
      .integer("rounds", o.rounds)
      .integer("warmup", o.warmup)
      .integer("seed", static_cast<int64_t>(o.seed))
      .num("drawSeconds", drawSeconds)
      .str("pooling", "mean")
      .str("peakRssKind", peakResettable ? "per row (VmHWM reset before each pass)" : "process peak since start");
  doc.obj("config", config);
  doc.arr("peaks", peaksJson(peaks, device.str()));

  json::Array rowArr;
  for (const Row& row : rows) {
    const Samples& s = row.s;
    const double clipMedian = median(s.clipExtrapolated), blocksMedian = median(s.blocksExtrapolated);
    const double prior = priorFlops(hp, depthReported, row.tokens);
    const double encoder = encoderFlops(hp, samplesFor[row.tokens]);
    const Peak& peak = peaks.at(dtypeOf(row.precision));
    const double blocksGflops = prior / blocksMedian / 1e9;
    json::Object ro;
    char label[96];
    std::snprintf(label, sizeof label, "%s, %lld tokens, batch %lld%s", jb::precisionName(row.precision),
                  static_cast<long long>(row.tokens), static_cast<long long>(row.batch),
                  row.bufferCache ? "" : ", no buffer cache");
    ro.str("label", label)
        .str("precision", jb::precisionName(row.precision))
        .integer("tokens", row.tokens)
        .integer("batch", row.batch)
        .boolean("cpuBufferCache", row.bufferCache)
        .str("blockKernels", models.at(row.precision).model->blockKernels())
        .num("loadSeconds", models.at(row.precision).loadSeconds)
        .integer("loadRssGrowthBytes", models.at(row.precision).rssGrowth)
        .obj("clipSeconds", stat(s.clipExtrapolated))
        .obj("encodeSeconds", stat(s.encode))
        .obj("embedSeconds", stat(s.embed))
        .obj("layerSeconds", stat(s.perLayer))
        .obj("blocksSeconds", stat(s.blocksExtrapolated))
        .obj("poolSeconds", stat(s.pool));
    if (sampled) ro.obj("clipSecondsMeasured", stat(s.clip)).obj("blocksSecondsMeasured", stat(s.blocks));
    json::Object byKind;
    {
      std::vector<std::vector<double>> kinds(3);
      for (size_t d = 0; d < s.layers.size(); ++d) {
        for (double v : s.layers[d]) kinds[kindOf(static_cast<int64_t>(d))].push_back(v);
      }
      for (int k = 0; k < 3; ++k) {
        const char* name = jb::attnKindName(static_cast<jb::AttnKind>(k));
        if (kinds[k].empty())
          byKind.null(name);
        else
          byKind.num(name, median(kinds[k]));
      }
    }
    ro.obj("layerSecondsByKind", byKind);
    json::Array each;
    for (const auto& l : s.layers) each.num(median(l));
    ro.arr("layerSecondsEach", each);
    if (o.profile) {
      // Wall seconds per clip of each step inside the passes (every step synchronises on CUDA).
      // And the process's CPU seconds in each: on a shared machine, the work itself rather than the wait.
      json::Object prof, profCpu;
      const double clips = static_cast<double>(std::max<int64_t>(1, s.timedClips));
      for (const auto& [name, secs] : s.steps.seconds) prof.num(name, secs / clips);
      for (const auto& [name, secs] : s.steps.cpuSeconds) profCpu.num(name, secs / clips);
      ro.obj("profileSeconds", prof).obj("profileCpuSeconds", profCpu);
    }
    ro.num("clipsPerSecond", 1.0 / clipMedian)
        .num("tokensPerSecond", static_cast<double>(row.tokens) / clipMedian)
        .num("priorFlopsPerClip", prior)
        .num("encoderFlopsPerClip", encoder)
        .num("blocksGflopPerSecond", blocksGflops)
        .num("clipGflopPerSecond", (prior + encoder) / clipMedian / 1e9)
        .str("peakDtype", peak.dtype)
        .num("peakGflopPerSecond", peak.gflopPerSecond)
        .num("peakFraction", blocksGflops / peak.gflopPerSecond)
        .num("cpuSecondsPerClip", median(s.cpuExtrapolated))
        .num("coresUsed", median(s.cpu) / median(s.clip))
        .obj("encodeCpuSeconds", stat(s.encodeCpu))
        .obj("layerCpuSeconds", stat(s.perLayerCpu))
        .integer("rssBeforeBytes", s.rssBefore)
        .integer("peakRssBytes", s.peakRss);
    if (s.peakDevice >= 0)
      ro.integer("peakDeviceBytes", s.peakDevice);
    else
      ro.null("peakDeviceBytes");
    auto vs = vsFp32.find({row.precision, row.tokens});
    if (vs != vsFp32.end())
      ro.obj("vsFp32", vs->second);
    else
      ro.null("vsFp32");
    // The same-work reference at this precision and token count, per clip (it runs one clip at a time).
    const RefRow* match = nullptr;
    for (const auto& rr : refRows) {
      if (rr.mode == "same-work" && rr.precision == row.precision && rr.tokens == row.tokens && !rr.clip.empty())
        match = &rr;
    }
    if (match) {
      const double perLayer = median(match->prior) / static_cast<double>(depthRun);
      const double refClip = median(match->encode) + perLayer * static_cast<double>(depthReported);
      // CPU seconds too: on a shared machine both sides' wall times stretch with the neighbours' load, their
      // CPU times much less.
      const double perLayerCpu = median(match->priorCpu) / static_cast<double>(depthRun);
      const double refCpu = median(match->encodeCpu) + perLayerCpu * static_cast<double>(depthReported);
      json::Object rj;
      rj.str("mode", "same-work")
          .obj("clipSecondsMeasured", stat(match->clip))
          .num("encodeSeconds", median(match->encode))
          .num("layerSeconds", perLayer)
          .num("clipSeconds", refClip)
          .num("speedup", refClip / clipMedian)
          .num("layerSpeedup", perLayer / median(s.perLayer))
          .num("encodeCpuSeconds", median(match->encodeCpu))
          .num("layerCpuSeconds", perLayerCpu)
          .num("cpuSecondsPerClip", refCpu)
          .num("cpuSpeedup", refCpu / median(s.cpuExtrapolated))
          .num("layerCpuSpeedup", perLayerCpu / median(s.perLayerCpu));
      ro.obj("reference", rj);
    } else {
      ro.null("reference");
    }
    rowArr.obj(ro);
  }
  doc.arr("rows", rowArr);

  refReport.str("status", refStatus);
  json::Array refRowArr;
  for (const auto& rr : refRows) {
    if (rr.clip.empty()) continue;
    const double perLayer = median(rr.prior) / static_cast<double>(depthRun);
    json::Object rj;
    rj.str("mode", rr.mode)
        .str("precision", jb::precisionName(rr.precision))
        .integer("tokens", rr.tokens)
        .obj("clipSecondsMeasured", stat(rr.clip))
        .num("encodeSeconds", median(rr.encode))
        .num("layerSeconds", perLayer)
        .num("clipSeconds", median(rr.encode) + perLayer * static_cast<double>(depthReported));
    refRowArr.obj(rj);
  }
  refReport.arr("rows", refRowArr);
  doc.obj("reference", refReport);

  if (sampled) {
    notes.push_back("blocks 1-" + std::to_string(depthRun) + " ran; the clip to layer " +
                    std::to_string(depthReported) +
                    " is extrapolated: in each pass, each block not run costs the mean of that pass's blocks of its " +
                    "attention kind (row, column, previous block) (clipSeconds, blocksSeconds; the measured ones are "
                    "clipSecondsMeasured, blocksSecondsMeasured)");
  }
  notes.push_back("peakRssBytes is the whole process's: every model of the run and the weights they were made from");
  json::Array noteArr;
  for (const auto& n : notes) noteArr.str(n);
  doc.arr("notes", noteArr);
  return doc.dump();
}

}  // namespace calmkit::bench
