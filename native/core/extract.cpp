#include "core/extract.h"

#include <algorithm>
#include <cmath>

#include "core/buffer_cache.h"
#include "core/error.h"
#include "core/step_timer.h"

namespace calmkit::jukebox {
namespace {

void checkFinite(const std::vector<float>& x, const std::string& label) {
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) {
      throw Error(code::kAudioNotFinite, label + ": sample " + std::to_string(i) + " is not finite (NaN or infinity)");
    }
  }
}

}  // namespace

Pooling parsePooling(const std::string& s) {
  if (s == "mean") return Pooling::Mean;
  if (s == "segments") return Pooling::Segments;
  if (s == "none") return Pooling::None;
  throw Error(code::kInvalidArgument, "pooling must be mean, segments or none; got '" + s + "'");
}

bool parseWindows(const std::string& s) {
  if (s == "first") return false;
  if (s == "all") return true;
  throw Error(code::kInvalidArgument, "windows must be first or all; got '" + s + "'");
}

std::vector<int> validateLayers(const std::vector<int>& layers, const Hparams& hp) {
  if (layers.empty()) throw Error(code::kInvalidArgument, "layers must name at least one layer");
  std::vector<std::string> bad;
  for (int l : layers) {
    if (l < 1 || l > hp.depth) bad.push_back(std::to_string(l));
  }
  if (!bad.empty()) {
    std::string list;
    for (size_t i = 0; i < bad.size(); ++i) list += (i ? ", " : "") + bad[i];
    throw Error(code::kInvalidArgument, "layers out of range: " + list + " (this checkpoint has layers 1.." +
                                            std::to_string(hp.depth) + "; layers are 1-based)");
  }
  std::vector<int> out(layers);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int64_t segmentTokensFor(const ExtractOptions& o, const Hparams& hp) {
  if (o.segmentTokens > 0 && o.segmentSeconds > 0) {
    throw Error(code::kInvalidArgument, "give segment length in tokens or in seconds, not both");
  }
  if (o.segmentTokens > 0) return o.segmentTokens;
  if (o.segmentSeconds > 0 && std::isfinite(o.segmentSeconds)) {
    const double tokens = o.segmentSeconds * static_cast<double>(hp.sampleRate) / static_cast<double>(hp.hop());
    return std::max<int64_t>(1, static_cast<int64_t>(std::llround(tokens)));
  }
  throw Error(code::kInvalidArgument, "segments pooling needs a positive segment length (tokens or seconds)");
}

namespace {

// [B, L, W] -> [B, S, W]: means over consecutive runs of k positions, the last one possibly shorter.
torch::Tensor segmentMeans(const torch::Tensor& h, int64_t k) {
  const int64_t B = h.size(0), L = h.size(1), W = h.size(2), full = L / k;
  std::vector<torch::Tensor> parts;
  if (full > 0) parts.push_back(h.narrow(1, 0, full * k).reshape({B, full, k, W}).mean(2));
  if (L % k) parts.push_back(h.narrow(1, full * k, L - full * k).mean(1, true));
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 1);
}

struct Plan {
  int64_t tokensTotal = 0;  // tokens available in the clip
  int64_t windows = 0;
  int64_t samples = 0;
};

// Checks one clip and says how many tokens and windows it makes.
Plan planClip(const Hparams& hp, const ClipInput& c, bool allWindows) {
  Plan p;
  if (c.isTokens) {
    if (c.tokens.empty()) throw Error(code::kInvalidArgument, c.label + ": no tokens");
    for (int64_t t : c.tokens) {
      if (t < 0 || t >= hp.bins) {
        throw Error(code::kInvalidArgument,
                    c.label + ": token " + std::to_string(t) + " outside 0.." + std::to_string(hp.bins - 1));
      }
    }
    p.tokensTotal = static_cast<int64_t>(c.tokens.size());
  } else {
    if (c.samples.empty()) throw Error(code::kAudioEmpty, c.label + ": no audio samples");
    checkFinite(c.samples, c.label);
    p.samples = static_cast<int64_t>(c.samples.size());
    p.tokensTotal = encodedLength(hp, p.samples);
    if (p.tokensTotal < 1) {
      throw Error(code::kAudioEmpty, c.label + ": " + std::to_string(p.samples) +
                                         " samples is shorter than one token (" + std::to_string(hp.hop()) +
                                         " samples)");
    }
  }
  p.windows = allWindows ? (p.tokensTotal + hp.nCtx - 1) / hp.nCtx : 1;
  return p;
}

// Tokens [1, Lw] of window w: encoded from the window's audio plus a margin of at least the encoder's receptive
// field on each side, so they equal the codes of the whole signal (jukemir encodes 25 s to use 23.78 s).
torch::Tensor windowTokens(const Model& model, const ClipInput& clip, const Plan& p, int64_t w) {
  const Hparams& hp = model.hparams();
  const int64_t first = w * hp.nCtx, count = std::min(hp.nCtx, p.tokensTotal - first);
  if (clip.isTokens) {
    torch::Tensor t = torch::empty({1, count}, torch::kInt64);
    std::copy_n(clip.tokens.begin() + first, count, t.data_ptr<int64_t>());
    return t.to(model.device());
  }
  const int64_t hop = hp.hop(), margin = encoderMarginSamples(hp);
  const int64_t a = std::max<int64_t>(0, first * hop - margin);
  const int64_t b = std::min(p.samples, (first + count) * hop + margin);
  torch::Tensor audio = torch::empty({1, b - a}, torch::kFloat32);
  std::copy_n(clip.samples.begin() + a, b - a, audio.data_ptr<float>());
  torch::Tensor codes = model.encode(audio);
  return codes.narrow(1, (first * hop - a) / hop, count);
}

}  // namespace

ExtractResult extract(const Model& model, const std::vector<ClipInput>& clips, const ExtractOptions& opts, Sink& sink,
                      bool collectNone) {
  const Hparams& hp = model.hparams();
  const std::vector<int> layers = validateLayers(opts.layers, hp);
  // The whole call reuses its large CPU buffers from clip to clip and block to block.
  memory::Scope reuse;
  const int64_t segTokens = opts.pooling == Pooling::Segments ? segmentTokensFor(opts, hp) : 0;
  if (clips.empty()) throw Error(code::kInvalidArgument, "no input clips");
  std::vector<Plan> plans;
  plans.reserve(clips.size());
  for (const auto& c : clips) plans.push_back(planClip(hp, c, opts.allWindows));

  ExtractResult result;
  result.segmentTokens = segTokens;
  result.clips.resize(clips.size());
  Progress progress;
  progress.clipsTotal = static_cast<int64_t>(clips.size());
  for (const auto& p : plans) progress.windowsTotal += p.windows;
  progress.blocksTotal = layers.back();
  auto checkCancel = [&] {
    if (sink.cancelled()) throw Error(code::kAborted, "extraction aborted");
  };

  // One clip at a time, one window at a time: the shapes of every product depend on that clip alone, so the
  // algorithms BLAS, oneDNN or cuBLAS pick for them (and their summation orders) do too.
  for (size_t i = 0; i < clips.size(); ++i) {
    const Plan& plan = plans[i];
    ClipFeatures& out = result.clips[i];
    out.windows = plan.windows;
    std::vector<std::vector<float>> data(layers.size());
    std::vector<int64_t> rows(layers.size(), 0);
    for (int64_t w = 0; w < plan.windows; ++w) {
      checkCancel();
      torch::Tensor tokens;
      {
        profile::Stage stage(profile::StageKind::Encode);
        tokens = windowTokens(model, clips[i], plan, w);
      }
      progress.blocksDone = 0;
      // Pooled rows stay on the device until the window's pass is over: nothing inside the layer loop waits for
      // the host (on CUDA the pass is queued without a synchronisation); raw rows stream out as they come.
      std::vector<std::pair<size_t, torch::Tensor>> pooledRows;
      auto keep = [&](size_t li, const torch::Tensor& cpuRows) {
        data[li].insert(data[li].end(), cpuRows.data_ptr<float>(), cpuRows.data_ptr<float>() + cpuRows.numel());
        rows[li] += cpuRows.size(0);
      };
      auto tap = [&](int layer, const torch::Tensor& h) {
        profile::Stage stage(profile::StageKind::Pool);
        const size_t li = static_cast<size_t>(std::find(layers.begin(), layers.end(), layer) - layers.begin());
        // Pool on the device in float32; only the pooled rows cross to the host.
        torch::Tensor hf = h.to(torch::kFloat32);
        if (opts.pooling == Pooling::None) {
          torch::Tensor rowsCpu = hf[0].to(torch::kCPU).contiguous();
          sink.chunk(i, layer, w, w * hp.nCtx, rowsCpu);
          if (collectNone) keep(li, rowsCpu);
          return;
        }
        pooledRows.emplace_back(li,
                                (opts.pooling == Pooling::Mean ? hf.mean(1, true) : segmentMeans(hf, segTokens))[0]);
      };
      auto between = [&](int blocksDone) {
        checkCancel();
        if (blocksDone > 0) {
          progress.blocksDone = blocksDone;
          sink.progress(progress);
        }
      };
      model.forward(tokens, layers, tap, between);
      {
        profile::Stage stage(profile::StageKind::Pool);
        torch::Tensor tokensCpu = tokens.to(torch::kCPU).contiguous();
        out.tokens.insert(out.tokens.end(), tokensCpu.data_ptr<int64_t>(),
                          tokensCpu.data_ptr<int64_t>() + tokensCpu.numel());
        for (auto& [li, t] : pooledRows) keep(li, t.to(torch::kCPU).contiguous());
      }
      progress.blocksDone = layers.back();
      progress.windowsDone += 1;
      if (w + 1 == plan.windows) progress.clipsDone = static_cast<int64_t>(i) + 1;
      sink.progress(progress);
    }
    if (opts.pooling == Pooling::None && !collectNone) continue;
    const bool singleMean = opts.pooling == Pooling::Mean && !opts.allWindows;
    for (size_t li = 0; li < layers.size(); ++li) {
      LayerFeatures f;
      f.layer = layers[li];
      f.data = std::move(data[li]);
      f.shape = singleMean ? std::vector<int64_t>{hp.width} : std::vector<int64_t>{rows[li], hp.width};
      out.layers.push_back(std::move(f));
    }
  }
  return result;
}

}  // namespace calmkit::jukebox
