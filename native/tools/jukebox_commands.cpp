// Jukebox subcommands of calmkit-core: init, info, extract, bench-load (throughput: `bench extract`). They drive the
// same core as the addon, for hosts without Node (the GPU machines) and for cross-checks against the Python reference.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include <torch/script.h>

#include "core/checkpoint.h"
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

std::string humanBytes(int64_t b) {
  char buf[64];
  if (b >= (int64_t(1) << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(int64_t(1) << 30));
  else if (b >= (1 << 20))
    std::snprintf(buf, sizeof buf, "%.2f MiB", b / double(1 << 20));
  else
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  return buf;
}

void printHparams(const jb::Hparams& h) {
  auto ints = [](const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  };
  std::cout << "preset: " << h.preset << "\nsource: " << h.source << "\n"
            << "vq-vae: levels " << h.vqLevels << ", downs_t " << ints(h.vqDownsT) << ", strides_t "
            << ints(h.vqStridesT) << ", width " << h.vqWidth << ", depth " << h.vqDepth << ", codebook " << h.vqLBins
            << " x " << h.vqEmbWidth << ", hop " << h.hop() << " samples\n"
            << "prior: width " << h.width << ", layers " << h.depth << " of " << h.fullDepth << ", heads " << h.heads
            << ", n_state " << h.nState() << ", mlp " << h.hidden() << ", n_ctx " << h.nCtx << ", blocks " << h.blocks
            << " (block_ctx " << h.blockCtx() << "), attn_order " << h.attnOrder << "\n"
            << "window: " << h.windowSamples() << " samples (" << double(h.windowSamples()) / h.sampleRate << " s at "
            << h.sampleRate << " Hz), encoder margin " << jb::encoderMarginSamples(h) << " samples\n"
            << "label: total_length " << h.condTotalLength << ", offset " << h.condOffset << ", artist " << h.condArtist
            << ", genre " << h.condGenre << ", durations [" << h.minDuration << ", " << h.maxDuration << ") s, t_bins "
            << h.tBins << "\n";
}

Register init("init", "--preset tiny|demo|small|5b [--layers N] [--seed S] --out FILE: random-weight checkpoint",
              [](int argc, char** argv) {
                Args a = parseArgs(argc, argv);
                const std::string out = a.get("out", "");
                if (out.empty()) throw Error(code::kInvalidArgument, "init needs --out FILE");
                jb::Hparams hp = jb::presetHparams(a.get("preset", "tiny"));
                if (a.options.count("layers")) {
                  hp.depth = toInt(a.get("layers", ""), "--layers");
                  hp.fullDepth = std::max(hp.fullDepth, hp.depth);
                }
                const uint64_t seed = static_cast<uint64_t>(toInt(a.get("seed", "0"), "--seed"));
                hp.source = "random init, seed " + std::to_string(seed);
                auto t0 = std::chrono::steady_clock::now();
                jb::writeRandomModel(hp, seed, out);
                double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                std::printf("wrote %s (%s, %lld layers) in %.2f s\n", out.c_str(), hp.preset.c_str(),
                            static_cast<long long>(hp.depth), s);
                return 0;
              });

Register info("info", "FILE [--no-verify-weights]: hyperparameters, layers, dtypes, bytes of a checkpoint",
              [](int argc, char** argv) {
                Args a = parseArgs(argc, argv);
                if (a.positional.size() != 1)
                  throw Error(code::kInvalidArgument, "usage: calmkit-core info FILE [--no-verify-weights]");
                jb::LoadOptions load;
                load.verifyWeights = !a.has("no-verify-weights");
                jb::Checkpoint ck = jb::loadCheckpoint(a.positional[0], load);
                printHparams(ck.hp);
                jb::Summary s = jb::summarise(ck);
                std::cout << "tensors: " << ck.tensors.size() << ", " << s.parameters << " values, "
                          << humanBytes(s.bytes) << " (file " << humanBytes(ck.fileBytes) << ", one block "
                          << humanBytes(s.blockBytes) << ")\n";
                for (const auto& d : s.byDtype) {
                  std::cout << "  " << d.dtype << ": " << d.tensors << " tensors, " << d.elements << " values, "
                            << humanBytes(d.bytes) << "\n";
                }
                return 0;
              });

Register extract("extract",
                 "MODEL RAW.f32 --out DIR [--layers 1,2] [--pooling mean|segments:K|none] [--windows first|all] "
                 "[--device cpu] [--precision fp32]: tokens.npy and layer{L}.npy",
                 [](int argc, char** argv) {
                   Args a = parseArgs(argc, argv);
                   if (a.positional.size() != 2 || a.get("out", "").empty()) {
                     throw Error(code::kInvalidArgument, "usage: calmkit-core extract MODEL RAW.f32 --out DIR ...");
                   }
                   auto model = jb::Model::load(a.positional[0], a.get("device", "cpu"),
                                                jb::parsePrecision(a.get("precision", "fp32")));
                   std::ifstream f(a.positional[1], std::ios::binary | std::ios::ate);
                   if (!f) throw Error(code::kAudioNotFound, a.positional[1] + ": cannot be read");
                   jb::ClipInput clip;
                   clip.label = a.positional[1];
                   clip.samples.resize(static_cast<size_t>(f.tellg()) / sizeof(float));
                   f.seekg(0);
                   f.read(reinterpret_cast<char*>(clip.samples.data()),
                          static_cast<std::streamsize>(clip.samples.size() * sizeof(float)));
                   jb::ExtractOptions o;
                   o.layers = parseLayers(a.get("layers", std::to_string(model->hparams().depth)));
                   const std::string pooling = a.get("pooling", "mean");
                   if (pooling.rfind("segments:", 0) == 0) {
                     o.pooling = jb::Pooling::Segments;
                     o.segmentTokens = toInt(pooling.substr(9), "segment tokens");
                   } else {
                     o.pooling = jb::parsePooling(pooling);
                   }
                   o.allWindows = jb::parseWindows(a.get("windows", "first"));
                   jb::Sink sink;
                   c10::InferenceMode guard;
                   auto t0 = std::chrono::steady_clock::now();
                   auto r = jb::extract(*model, {clip}, o, sink, /*collectNone=*/true);
                   double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                   const std::string dir = a.get("out", "");
                   const auto& c = r.clips[0];
                   writeNpy(dir + "/tokens.npy", c.tokens.data(), c.tokens.size() * sizeof(int64_t), "<i8",
                            {static_cast<int64_t>(c.tokens.size())});
                   for (const auto& l : c.layers) {
                     writeNpy(dir + "/layer" + std::to_string(l.layer) + ".npy", l.data.data(),
                              l.data.size() * sizeof(float), "<f4", l.shape);
                   }
                   std::printf("%zu tokens, %zu layers, %lld window(s) in %.3f s\n", c.tokens.size(), c.layers.size(),
                               static_cast<long long>(c.windows), s);
                   return 0;
                 });

// What proving a checkpoint sound costs: LibTorch's own load of the file, calmkit's load without the weight checks
// (directory walk, record sizes, hyperparameters) and with them (CRC-32 of every record, every weight finite),
// alternated so that the page cache treats them alike.
Register benchLoad(
    "bench-load",
    "MODEL [--repeat 3]: seconds to load a checkpoint: plain torch::jit::load, checked, checked + verified weights",
    [](int argc, char** argv) {
      Args a = parseArgs(argc, argv);
      if (a.positional.size() != 1)
        throw Error(code::kInvalidArgument, "usage: calmkit-core bench-load MODEL [--repeat 3]");
      const std::string path = a.positional[0];
      const int64_t repeat = toInt(a.get("repeat", "3"), "--repeat");
      auto time = [](const std::function<void()>& f) {
        auto t0 = std::chrono::steady_clock::now();
        f();
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      };
      double plain = 1e30, structure = 1e30, full = 1e30;
      int64_t bytes = 0;
      c10::InferenceMode guard;
      for (int64_t r = 0; r < repeat; ++r) {
        plain = std::min(plain, time([&] { torch::jit::load(path, torch::kCPU, false); }));
        jb::LoadOptions off;
        off.verifyWeights = false;
        structure = std::min(structure, time([&] { bytes = jb::loadCheckpoint(path, off).fileBytes; }));
        full = std::min(full, time([&] { jb::loadCheckpoint(path); }));
      }
      JsonObject o;
      o.integer("fileBytes", bytes)
          .num("torchLoadSeconds", plain)
          .num("checkedSeconds", structure)
          .num("verifiedSeconds", full);
      o.num("verifyCostOfLoad", (full - structure) / structure).num("totalCostOverTorch", (full - plain) / plain);
      std::cout << o.dump() << "\n";
      return 0;
    });

}  // namespace
}  // namespace calmkit_tools
