// Device checks of calmkit-core, driven by scripts/gpu-check.py on a GPU host (no Node there) and, with tiny
// shapes, on the CPU in the test suite: correctness of a device against the CPU, and throughput at any shapes
// (the real 5B ones by default) with random weights drawn on the device. Each prints one JSON object.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <sstream>

#if CALMKIT_WITH_CUDA
#include <c10/core/CachingDeviceAllocator.h>
#endif

#include "core/checkpoint.h"
#include "core/error.h"
#include "core/device.h"
#include "core/extract.h"
#include "core/random_model.h"
#include "core/step_timer.h"
#include "tools/args.h"
#include "tools/commands.h"

namespace calmkit_tools {
namespace {

namespace jb = calmkit::jukebox;
using calmkit::Error;
namespace code = calmkit::code;

// Harmonics with a sweep and a little noise, peak 1: varied enough that a random encoder spreads its codes.
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

jb::ClipInput audioClip(int64_t n, uint64_t seed, const std::string& label) {
  jb::ClipInput c;
  c.samples = testAudio(n, seed);
  c.label = label;
  return c;
}

struct Pooled {
  std::vector<int64_t> tokens;
  std::vector<std::vector<float>> layers;  // per requested layer, the pooled row
};

std::vector<Pooled> run(const jb::Model& model, const std::vector<jb::ClipInput>& clips, const std::vector<int>& layers) {
  jb::ExtractOptions o;
  o.layers = layers;
  jb::Sink sink;
  c10::InferenceMode guard;
  auto r = jb::extract(model, clips, o, sink, false);
  std::vector<Pooled> out;
  for (auto& c : r.clips) {
    Pooled p;
    p.tokens = c.tokens;
    for (auto& l : c.layers) p.layers.push_back(std::move(l.data));
    out.push_back(std::move(p));
  }
  return out;
}

double maxRel(const std::vector<float>& a, const std::vector<float>& ref) {
  double d = 0, s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - ref[i]));
    s = std::max(s, std::fabs(static_cast<double>(ref[i])));
  }
  return s > 0 ? d / s : d;
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

bool sameBytes(const Pooled& a, const Pooled& b) {
  if (a.tokens != b.tokens || a.layers.size() != b.layers.size()) return false;
  for (size_t i = 0; i < a.layers.size(); ++i) {
    if (a.layers[i].size() != b.layers[i].size() ||
        std::memcmp(a.layers[i].data(), b.layers[i].data(), a.layers[i].size() * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

void sync(torch::Device d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

// Peak memory since the last reset: the CUDA caching allocator's peak reserved bytes, or the process's peak RSS.
struct Memory {
  torch::Device device;
  void reset() {
#if CALMKIT_WITH_CUDA
    if (device.is_cuda()) c10::getDeviceAllocator(c10::DeviceType::CUDA)->resetPeakStats(device.index());
#endif
  }
  int64_t peak() const {
#if CALMKIT_WITH_CUDA
    if (device.is_cuda()) {
      auto stats = c10::getDeviceAllocator(c10::DeviceType::CUDA)->getDeviceStats(device.index());
      return stats.reserved_bytes[static_cast<size_t>(c10::CachingDeviceAllocator::StatType::AGGREGATE)].peak;
    }
#endif
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return static_cast<int64_t>(u.ru_maxrss) * 1024;
  }
};

jb::Hparams hparamsFrom(const Args& a, const std::string& defaultPreset) {
  jb::Hparams hp = jb::presetHparams(a.get("preset", defaultPreset));
  if (a.has("width")) hp.width = toInt(a.get("width", ""), "--width");
  if (a.has("heads")) hp.heads = toInt(a.get("heads", ""), "--heads");
  if (a.has("n-ctx")) hp.nCtx = toInt(a.get("n-ctx", ""), "--n-ctx");
  if (a.has("blocks")) hp.blocks = toInt(a.get("blocks", ""), "--blocks");
  if (a.has("layers")) {
    hp.depth = toInt(a.get("layers", ""), "--layers");
    hp.fullDepth = std::max(hp.fullDepth, hp.depth);
  }
  jb::checkHparams(hp, "device check");
  return hp;
}

Register checkDevice(
    "check-device",
    "[--device cuda] [--preset tiny|small] [--layers N] [--seed S]: a device against the CPU on a random model "
    "(fp32 pooled features and tokens, fp16/bf16 cosines, batch invariance); JSON",
    [](int argc, char** argv) {
      Args a = parseArgs(argc, argv);
      const std::string device = a.get("device", "cuda");
      jb::Hparams hp = hparamsFrom(a, "small");
      const uint64_t seed = static_cast<uint64_t>(toInt(a.get("seed", "0"), "--seed"));
      hp.source = "check-device, seed " + std::to_string(seed);
      const std::string file = (std::filesystem::temp_directory_path() /
                                ("calmkit-check-device-" + std::to_string(::getpid()) + ".pt")).string();
      jb::writeRandomModel(hp, seed, file);
      auto cpu = jb::Model::load(file, "cpu", jb::Precision::Fp32);
      auto fp32 = jb::Model::load(file, device, jb::Precision::Fp32);
      auto fp16 = jb::Model::load(file, device, jb::Precision::Fp16);
      auto bf16 = jb::Model::load(file, device, jb::Precision::Bf16);
      std::filesystem::remove(file);

      // A full first window (with the encoder's margin), a short clip, and one between: lengths differ.
      const int64_t margin = jb::encoderMarginSamples(hp);
      std::vector<jb::ClipInput> clips{audioClip(hp.windowSamples() + margin, seed + 1, "full"),
                                       audioClip(hp.windowSamples() * 2 / 5, seed + 2, "short"),
                                       audioClip(hp.windowSamples() * 4 / 5 + 77, seed + 3, "mid")};
      const std::vector<int> layers{static_cast<int>((hp.depth + 1) / 2), static_cast<int>(hp.depth)};
      std::vector<Pooled> onCpu, alone, half, bfloat;
      for (const auto& c : clips) {
        onCpu.push_back(run(*cpu, {c}, layers)[0]);
        alone.push_back(run(*fp32, {c}, layers)[0]);
        half.push_back(run(*fp16, {c}, layers)[0]);
        bfloat.push_back(run(*bf16, {c}, layers)[0]);
      }
      auto batch = run(*fp32, clips, layers);
      std::vector<jb::ClipInput> reversed(clips.rbegin(), clips.rend());
      auto batchReversed = run(*fp32, reversed, layers);

      bool tokensIdentical = true, batchInvariant = true, lowTokens = true;
      double fp32Rel = 0, fp16Cos = 1, bf16Cos = 1;
      for (size_t i = 0; i < clips.size(); ++i) {
        tokensIdentical = tokensIdentical && onCpu[i].tokens == alone[i].tokens;
        lowTokens = lowTokens && half[i].tokens == alone[i].tokens && bfloat[i].tokens == alone[i].tokens;
        batchInvariant = batchInvariant && sameBytes(batch[i], alone[i]) && sameBytes(batchReversed[clips.size() - 1 - i], alone[i]);
        for (size_t l = 0; l < layers.size(); ++l) {
          fp32Rel = std::max(fp32Rel, maxRel(alone[i].layers[l], onCpu[i].layers[l]));
          fp16Cos = std::min(fp16Cos, cosine(half[i].layers[l], alone[i].layers[l]));
          bf16Cos = std::min(bf16Cos, cosine(bfloat[i].layers[l], alone[i].layers[l]));
        }
      }
      JsonObject j;
      j.str("check", "check-device").str("device", fp32->device().str()).str("preset", hp.preset)
          .integer("width", hp.width).integer("layers", hp.depth).integer("clips", static_cast<int64_t>(clips.size()))
          .boolean("tokensIdenticalToCpu", tokensIdentical).num("fp32MaxRelToCpu", fp32Rel)
          .boolean("fp32Within1e5", fp32Rel <= 1e-5 && tokensIdentical)
          .boolean("halfPrecisionTokensIdentical", lowTokens).num("fp16CosineToFp32", fp16Cos)
          .num("bf16CosineToFp32", bf16Cos).boolean("halfPrecisionCosineAtLeast0999", fp16Cos >= 0.999 && bf16Cos >= 0.999)
          .boolean("batchInvariant", batchInvariant);
      std::printf("%s\n", j.dump().c_str());
      return 0;
    });

// FLOPs of one clip's prior pass over layers 1..L on T tokens (spec 7.2): the Conv1D products plus the attention
// products as computed (whole blocks, masked entries included).
double priorFlops(const jb::Hparams& hp, int64_t layers, int64_t tokens) {
  const double macs = static_cast<double>(hp.width) * 3 * hp.nState() + static_cast<double>(hp.nState()) * hp.width +
                      2.0 * hp.width * hp.hidden();
  const int64_t bc = hp.blockCtx(), nb = (tokens + bc - 1) / bc;
  double attention = 0;
  for (int64_t d = 0; d < layers; ++d) attention += 4.0 * static_cast<double>(tokens) * (d % 3 == 1 ? nb : bc) * hp.nState();
  return 2.0 * macs * static_cast<double>(layers) * tokens + attention;
}

// Per step of the model: wall seconds, CPU seconds and calls, each per clip.
std::string profileJson(const calmkit::profile::StepTimes& steps, double clips) {
  JsonObject all;
  for (const auto& [name, seconds] : steps.seconds) {
    JsonObject one;
    one.num("seconds", seconds / clips).num("cpuSeconds", steps.cpuSeconds.at(name) / clips)
        .num("calls", static_cast<double>(steps.calls.at(name)) / clips);
    all.raw(name, one.dump());
  }
  return all.dump();
}

std::vector<int64_t> intList(const std::string& s, const std::string& what) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(toInt(item, what));
  if (out.empty()) throw Error(code::kInvalidArgument, what + " needs at least one value");
  return out;
}

Register benchShapes(
    "bench-shapes",
    "[--device cuda] [--precision bf16[,fp16,fp32]] [--preset 5b] [--width W --heads H --n-ctx N --blocks B "
    "--layers L] [--tokens n_ctx[,3445]] [--batch 1[,4]] [--repeat 3] [--compare fp32] [--seed 0] [--profile]: "
    "extraction throughput with random weights drawn on the device (no file), one JSON line per precision x tokens x "
    "batch; --profile adds the time of each step of the model (wall and CPU seconds per clip)",
    [](int argc, char** argv) {
      Args a = parseArgs(argc, argv, {"profile"});
      jb::Hparams hp = hparamsFrom(a, "5b");
      const torch::Device device = calmkit::device::resolve(a.get("device", "cuda"));
      std::vector<jb::Precision> precisions;
      {
        std::stringstream ss(a.get("precision", "bf16"));
        std::string item;
        while (std::getline(ss, item, ',')) precisions.push_back(jb::parsePrecision(item));
      }
      const auto tokenCounts = intList(a.get("tokens", std::to_string(hp.nCtx)), "--tokens");
      const auto batches = intList(a.get("batch", "1"), "--batch");
      const int64_t repeat = toInt(a.get("repeat", "3"), "--repeat");
      const bool profiling = a.has("profile");
      for (int64_t t : tokenCounts) {
        if (t < 1 || t > hp.nCtx) throw Error(code::kInvalidArgument, "--tokens must be in 1..n_ctx");
      }
      for (int64_t b : batches) {
        if (b < 1) throw Error(code::kInvalidArgument, "--batch must be positive");
      }
      if (repeat < 1) throw Error(code::kInvalidArgument, "--repeat must be positive");
      Memory memory{device};
      auto t0 = std::chrono::steady_clock::now();
      torch::manual_seed(static_cast<uint64_t>(toInt(a.get("seed", "0"), "--seed")));
      std::map<std::string, torch::Tensor> tensors;
      {
        c10::InferenceMode guard;
        tensors = jb::randomTensorsOn(hp, device);
      }
      sync(device);
      const double drawS = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto build = [&](jb::Precision p) {
        jb::Checkpoint ck;
        ck.hp = hp;
        ck.tensors = tensors;  // shares storage: fp32 keeps the stored fp16 weights, bf16/fp16 convert the blocks
        return jb::Model::fromCheckpoint(std::move(ck), device, p);
      };
      const std::string compare = a.get("compare", "");
      std::shared_ptr<jb::Model> reference = compare.empty() ? nullptr : build(jb::parsePrecision(compare));
      const int64_t margin = jb::encoderMarginSamples(hp);
      const std::vector<int> layers{static_cast<int>(hp.depth)};

      for (jb::Precision precision : precisions) {
        auto model = build(precision);
        for (int64_t tokens : tokenCounts) {
          // A clip of exactly `tokens` tokens: a full window gets its encoder margin, as extraction crops it; a
          // shorter one (the untiled 10 s clip) is all there is.
          const int64_t samples = tokens * hp.hop() + (tokens == hp.nCtx ? margin : 0);
          for (int64_t batch : batches) {
            std::vector<jb::ClipInput> clips;
            for (int64_t i = 0; i < batch; ++i) clips.push_back(audioClip(samples, 100 + static_cast<uint64_t>(i), "clip"));
            c10::InferenceMode guard;
            run(*model, clips, layers);  // warm-up: kernels, cuBLAS handles, allocator pools
            sync(device);
            memory.reset();
            std::vector<double> times;
            calmkit::profile::StepTimes steps;
            steps.device = device;
            const double cpu0 = calmkit::profile::processCpuSeconds();
            for (int64_t r = 0; r < repeat; ++r) {
              sync(device);
              std::optional<calmkit::profile::Recording> recording;
              if (profiling) recording.emplace(&steps);
              auto s0 = std::chrono::steady_clock::now();
              run(*model, clips, layers);
              sync(device);
              times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count());
            }
            const double cpuPerClip = (calmkit::profile::processCpuSeconds() - cpu0) / static_cast<double>(repeat * batch);
            std::sort(times.begin(), times.end());
            const double median = times[times.size() / 2];
            const int64_t peak = memory.peak();
            // The encoder alone, for the split between it and the prior.
            torch::Tensor audio = torch::from_blob(clips[0].samples.data(), {1, samples}, torch::kFloat32).clone();
            model->encode(audio);
            sync(device);
            auto e0 = std::chrono::steady_clock::now();
            for (int64_t r = 0; r < repeat; ++r) model->encode(audio);
            sync(device);
            const double encodeS = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count() / repeat;
            const double perClip = median / batch;
            const double flops = priorFlops(hp, hp.depth, tokens);
            JsonObject j;
            j.str("check", "bench-shapes").str("device", device.str()).str("precision", jb::precisionName(precision))
                .str("blockKernels", model->blockKernels())
                .integer("width", hp.width).integer("heads", hp.heads).integer("nCtx", hp.nCtx)
                .integer("blockCtx", hp.blockCtx()).integer("layers", hp.depth).integer("tokens", tokens)
                .integer("batch", batch).integer("repeat", repeat).num("drawSeconds", drawS)
                .num("medianSeconds", median).num("secondsPerClip", perClip).num("clipsPerSecond", 1.0 / perClip)
                .num("encodeSecondsPerClip", encodeS).num("priorFlopsPerClip", flops)
                // null when timing noise puts the encoder's own time above the clip's (tiny shapes on a busy CPU)
                .num("priorTflops", perClip > encodeS ? flops / (perClip - encodeS) / 1e12 : NAN)
                .num("tflops", flops / perClip / 1e12)
                .num("cpuSecondsPerClip", cpuPerClip)
                .integer("peakMemoryBytes", peak)
                .str("peakMemoryKind", device.is_cuda() ? "cuda caching allocator, reserved" : "process peak RSS");
            if (profiling) j.raw("profile", profileJson(steps, static_cast<double>(repeat * batch)));
            if (reference && batch == batches.front()) {
              // Pooled features of the deepest layer on the first clip, against the reference precision.
              auto mine = run(*model, {clips[0]}, layers)[0];
              auto ref = run(*reference, {clips[0]}, layers)[0];
              j.str("comparedTo", compare).boolean("tokensIdentical", mine.tokens == ref.tokens)
                  .num("cosine", cosine(mine.layers[0], ref.layers[0])).num("maxRel", maxRel(mine.layers[0], ref.layers[0]));
            }
            std::printf("%s\n", j.dump().c_str());
            std::fflush(stdout);
          }
        }
      }
      return 0;
    });

}  // namespace
}  // namespace calmkit_tools
