// Extraction over a loaded Model: clips of a batch, window after window, the taps of the requested layers
// pooled on the device (mean, segment means, or raw rows streamed to a Sink). The "pooling" room of the core.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/jukebox.h"

namespace calmkit::jukebox {

enum class Pooling { Mean, Segments, None };
Pooling parsePooling(const std::string& s);
// "first" (jukemir: the first window only) -> false, "all" -> true; ERR_INVALID_ARGUMENT otherwise.
bool parseWindows(const std::string& s);

struct ExtractOptions {
  std::vector<int> layers;  // 1-based; sorted and de-duplicated by validateLayers
  Pooling pooling = Pooling::Mean;
  int64_t segmentTokens = 0;  // segments: tokens per segment (or from segmentSeconds)
  double segmentSeconds = 0.0;
  bool allWindows = false;  // false: the first window only (jukemir)
};

// Sorted unique layers in 1..depth, else ERR_INVALID_ARGUMENT naming the bad ones.
std::vector<int> validateLayers(const std::vector<int>& layers, const Hparams& hp);
// Tokens per segment for the options (>= 1), or ERR_INVALID_ARGUMENT.
int64_t segmentTokensFor(const ExtractOptions& o, const Hparams& hp);

// An input clip: samples at the model rate, or tokens given directly (skips the encoder).
struct ClipInput {
  std::vector<float> samples;
  std::vector<int64_t> tokens;
  bool isTokens = false;
  std::string label;
};

struct LayerFeatures {
  int layer = 0;
  std::vector<float> data;
  std::vector<int64_t> shape;
};

struct ClipFeatures {
  std::vector<int64_t> tokens;  // the tokens the prior saw, window after window
  std::vector<LayerFeatures> layers;
  int64_t windows = 0;
};

struct Progress {
  int64_t clipsDone = 0, clipsTotal = 0;
  int64_t windowsDone = 0, windowsTotal = 0;  // over all clips of the call
  int64_t blocksDone = 0, blocksTotal = 0;    // within the current window
};

// Receives work as it happens. Called on the extraction thread.
class Sink {
 public:
  virtual ~Sink() = default;
  // Pooling none: rows [start, start + rows) of clip `clip`'s layer output, [rows, width] float32 on the CPU.
  virtual void chunk(size_t clip, int layer, int64_t window, int64_t start, torch::Tensor rows) {}
  virtual void progress(const Progress& p) {}
  // Polled between blocks and windows; true aborts with ERR_ABORTED.
  virtual bool cancelled() { return false; }
};

struct ExtractResult {
  std::vector<ClipFeatures> clips;
  int64_t segmentTokens = 0;
};

// Batch-invariant: every clip of a call runs through the encoder and the prior on its own ([1, ...] tensors), so
// its features are the same bytes alone or beside any other clips (docs/contracts.md, "Batch invariance"). Clips
// of one call may differ in length and kind (audio or tokens); every clip is checked before any runs. With
// pooling none, features arrive through sink.chunk and `clips[i].layers` stays empty unless `collectNone`.
ExtractResult extract(const Model& model, const std::vector<ClipInput>& clips, const ExtractOptions& opts, Sink& sink,
                      bool collectNone);

}  // namespace calmkit::jukebox
