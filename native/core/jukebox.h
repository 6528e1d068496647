// calmkit's own Jukebox forward pass (docs/jukebox-spec.md): level-2 VQ-VAE encoder and codebook, the
// conditioned token embedding, the factorised-attention prior with layer taps, and extraction with pooling.
#pragma once
#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/checkpoint.h"
#include "core/jukebox_attention.h"

namespace calmkit::jukebox {

enum class Precision { Fp32, Fp16, Bf16 };
Precision parsePrecision(const std::string& s);
const char* precisionName(Precision p);

// "cpu", "cuda", "cuda:N" or "auto" (cuda when available). Throws ERR_DEVICE when unavailable.
torch::Device resolveDevice(const std::string& spec);

struct TimingBins {
  int64_t total = 0;               // total-length bin (n_time 1)
  std::vector<int64_t> absolute;   // [n_ctx]
  std::vector<int64_t> relative;   // [n_ctx]
};
// Bins of jukebox's RangeEmbeddings for the label in the hyperparameters, with jukebox's float32 op order.
TimingBins timingBins(const Hparams& hp);

// Layers reachable in a receptive-field sense: the encoder's extent in samples, used as the margin that makes a
// window's tokens equal those of encoding the whole signal.
int64_t encoderReceptiveField(const Hparams& hp);

class Model {
 public:
  // Loads, validates and moves to the device. fp32 keeps the stored fp16 weights and upcasts per layer;
  // fp16/bf16 convert the prior's blocks once to that dtype.
  static std::shared_ptr<Model> load(const std::string& path, const std::string& device, Precision precision);
  // The same from validated tensors (consumed: each host tensor is released once on the device).
  static std::shared_ptr<Model> fromCheckpoint(Checkpoint&& ck, torch::Device device, Precision precision);

  const Hparams& hparams() const { return hp_; }
  const Summary& summary() const { return summary_; }
  int64_t fileBytes() const { return fileBytes_; }
  torch::Device device() const { return device_; }
  Precision precision() const { return precision_; }

  // audio [B, N] float32 (any device) -> encoder output [B, emb_width, T] before quantisation.
  torch::Tensor encodeFeatures(const torch::Tensor& audio) const;
  // audio [B, N] float32 (any device) -> codes [B, floor-ish(N / hop)] int64 on the model's device.
  torch::Tensor encode(const torch::Tensor& audio) const;

  // The stream entering block 0 for tokens [B, L], L <= n_ctx: start vector, shifted embeddings, position and
  // timing conditioning. float32.
  torch::Tensor embed(const torch::Tensor& tokens) const;

  // Block `index` (0-based) on the stream [B, L, width]; L need not be a multiple of block_ctx (spec 3.5).
  torch::Tensor block(int64_t index, const torch::Tensor& x) const;

  using Tap = std::function<void(int layer, const torch::Tensor& h)>;
  // One pass over tokens [B, L]: calls tap(layer, stream) for each requested 1-based layer (ascending, unique),
  // stopping after the deepest. `between` runs before each block (cancellation, progress).
  void forward(const torch::Tensor& tokens, const std::vector<int>& layers, const Tap& tap,
               const std::function<void(int blocksDone)>& between) const;

 private:
  Model() = default;
  torch::Tensor param(const std::string& key) const;
  torch::Tensor conv1d(const torch::Tensor& x, const std::string& prefix, int64_t stride, int64_t padding, int64_t dilation) const;
  torch::Tensor encoderLevel(torch::Tensor x, int64_t b) const;
  torch::Tensor computeType(const torch::Tensor& w) const;

  Hparams hp_;
  Summary summary_;
  int64_t fileBytes_ = 0;
  std::map<std::string, torch::Tensor> t_;
  torch::Tensor cond_;       // [n_ctx, width] timing conditioning, float32
  torch::Tensor start_;      // [width] start vector (genre + artist), float32
  torch::Device device_ = torch::kCPU;
  Precision precision_ = Precision::Fp32;
  c10::ScalarType stream_ = torch::kFloat32;
  double scale2_ = 1.0;
};

// A random-weight checkpoint (`model init`). Like jukebox's codebook init, the codebook is a random sample of
// the (random) encoder's outputs, here on a fixed synthetic signal, so random models still use many codes.
void writeRandomModel(const Hparams& hp, uint64_t seed, const std::string& path);

// ---- extraction --------------------------------------------------------------------------------------------

enum class Pooling { Mean, Segments, None };
Pooling parsePooling(const std::string& s);

struct ExtractOptions {
  std::vector<int> layers;        // 1-based; sorted and de-duplicated by validateLayers
  Pooling pooling = Pooling::Mean;
  int64_t segmentTokens = 0;      // segments: tokens per segment (or from segmentSeconds)
  double segmentSeconds = 0.0;
  bool allWindows = false;        // false: the first window only (jukemir)
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
  std::vector<int64_t> tokens;   // the tokens the prior saw, window after window
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
