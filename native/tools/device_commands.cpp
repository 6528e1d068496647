// The device check of calmkit-core, driven by scripts/gpu-check.py on a GPU host (no Node there) and, with tiny
// shapes, on the CPU in the test suite: correctness of a device against the CPU on a random model, as one JSON
// object. Throughput is the benchmark engine's (`calmkit-core bench extract`, tools/bench_commands.cpp).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/bench.h"
#include "core/checkpoint.h"
#include "core/device.h"
#include "core/error.h"
#include "core/extract.h"
#include "core/random_model.h"
#include "tools/args.h"
#include "tools/commands.h"

namespace calmkit_tools {
namespace {

namespace jb = calmkit::jukebox;
using calmkit::Error;
namespace code = calmkit::code;
using calmkit::bench::cosine;
using calmkit::bench::maxRel;

jb::ClipInput audioClip(int64_t n, uint64_t seed, const std::string& label) {
  jb::ClipInput c;
  c.samples = calmkit::bench::testAudio(n, seed);
  c.label = label;
  return c;
}

struct Pooled {
  std::vector<int64_t> tokens;
  std::vector<std::vector<float>> layers;  // per requested layer, the pooled row
};

std::vector<Pooled> run(const jb::Model& model, const std::vector<jb::ClipInput>& clips,
                        const std::vector<int>& layers) {
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
      const std::string file =
          (std::filesystem::temp_directory_path() / ("calmkit-check-device-" + std::to_string(::getpid()) + ".pt"))
              .string();
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
        batchInvariant =
            batchInvariant && sameBytes(batch[i], alone[i]) && sameBytes(batchReversed[clips.size() - 1 - i], alone[i]);
        for (size_t l = 0; l < layers.size(); ++l) {
          fp32Rel = std::max(fp32Rel, maxRel(alone[i].layers[l], onCpu[i].layers[l]));
          fp16Cos = std::min(fp16Cos, cosine(half[i].layers[l], alone[i].layers[l]));
          bf16Cos = std::min(bf16Cos, cosine(bfloat[i].layers[l], alone[i].layers[l]));
        }
      }
      JsonObject j;
      j.str("check", "check-device")
          .str("device", fp32->device().str())
          .str("preset", hp.preset)
          .integer("width", hp.width)
          .integer("layers", hp.depth)
          .integer("clips", static_cast<int64_t>(clips.size()))
          .boolean("tokensIdenticalToCpu", tokensIdentical)
          .num("fp32MaxRelToCpu", fp32Rel)
          .boolean("fp32Within1e5", fp32Rel <= 1e-5 && tokensIdentical)
          .boolean("halfPrecisionTokensIdentical", lowTokens)
          .num("fp16CosineToFp32", fp16Cos)
          .num("bf16CosineToFp32", bf16Cos)
          .boolean("halfPrecisionCosineAtLeast0999", fp16Cos >= 0.999 && bf16Cos >= 0.999)
          .boolean("batchInvariant", batchInvariant);
      std::printf("%s\n", j.dump().c_str());
      return 0;
    });

}  // namespace
}  // namespace calmkit_tools
