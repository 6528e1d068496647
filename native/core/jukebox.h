// calmkit's own Jukebox model (docs/jukebox-spec.md): level-2 VQ-VAE encoder and codebook, the conditioned token
// embedding, the factorised-attention prior with layer taps, and the geometry that ties samples to tokens.
// Extraction (windows, pooling) is core/extract.h; random-weight checkpoints are core/random_model.h.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/checkpoint.h"
#include "core/jukebox_attention.h"

namespace calmkit::jukebox {

enum class Precision { Fp32, Fp16, Bf16 };
Precision parsePrecision(const std::string& s);
const char* precisionName(Precision p);
// The fastest precision `device` runs natively: bf16 on a CPU whose bf16 products run on bf16 instructions
// (AVX512_BF16 or AMX, as oneDNN reports: runtime::cpuBf16) and on CUDA devices of compute capability 8.0 or
// later; fp32 elsewhere (bf16 emulated on the CPU is 3-100x slower than fp32).
Precision autoPrecision(torch::Device device);
// "fp32", "fp16", "bf16", or "auto" (autoPrecision) on `device`.
Precision resolvePrecision(const std::string& spec, torch::Device device);

struct TimingBins {
  int64_t total = 0;              // total-length bin (n_time 1)
  std::vector<int64_t> absolute;  // [n_ctx]
  std::vector<int64_t> relative;  // [n_ctx]
};
// Bins of jukebox's RangeEmbeddings for the label in the hyperparameters, with jukebox's float32 op order.
TimingBins timingBins(const Hparams& hp);

// ---- geometry: samples <-> tokens -------------------------------------------------------------------------

// The encoder's receptive field in samples.
int64_t encoderReceptiveField(const Hparams& hp);
// The receptive field rounded up to whole tokens: audio kept on each side of a window so that its tokens equal
// those of encoding the whole signal (jukemir encodes 25 s to use 23.78 s).
int64_t encoderMarginSamples(const Hparams& hp);
// Samples the first window needs: the window plus the margin after it. The front-end crops to this for
// windows 'first', and extraction encodes no more.
int64_t firstWindowSamples(const Hparams& hp);
// Tokens the level-2 encoder makes of n samples: only the strided convs change the length.
int64_t encodedLength(const Hparams& hp, int64_t n);

class Model {
 public:
  // Loads, validates and moves to the device. fp32 keeps the stored fp16 weights and upcasts per layer;
  // fp16/bf16 convert the prior's blocks once to that dtype.
  static std::shared_ptr<Model> load(const std::string& path, const std::string& device, Precision precision,
                                     const LoadOptions& options = {});
  // The same with the precision by name, "auto" included (resolvePrecision on the resolved device).
  static std::shared_ptr<Model> load(const std::string& path, const std::string& device, const std::string& precision,
                                     const LoadOptions& options = {});
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

  // How the blocks' matrix products run: "aten" (LibTorch's addmm; fp32 upcasts the stored fp16 weights per
  // layer) or "onednn-packed" (CPU bf16: weights packed once for oneDNN, bias, quick-GELU and residual adds fused
  // into the products, rows in chunks).
  const char* blockKernels() const { return packed_.empty() ? "aten" : "onednn-packed"; }

  using Tap = std::function<void(int layer, const torch::Tensor& h)>;
  // One pass over tokens [B, L]: calls tap(layer, stream) for each requested 1-based layer (ascending, unique),
  // stopping after the deepest. `between` runs before each block (cancellation, progress).
  void forward(const torch::Tensor& tokens, const std::vector<int>& layers, const Tap& tap,
               const std::function<void(int blocksDone)>& between) const;

 private:
  Model() = default;
  torch::Tensor param(const std::string& key) const;
  torch::Tensor conv1d(const torch::Tensor& x, const std::string& prefix, int64_t stride, int64_t padding,
                       int64_t dilation) const;
  torch::Tensor encoderLevel(torch::Tensor x, int64_t b) const;
  // Buffers one forward pass reuses from layer to layer, by name.
  struct Workspace {
    std::map<std::string, torch::Tensor> buffers;
    torch::Tensor& get(const std::string& name, c10::IntArrayRef sizes, const torch::TensorOptions& opts);
  };
  torch::Tensor block(int64_t index, const torch::Tensor& x, Workspace& ws) const;
  torch::Tensor computeType(const torch::Tensor& w, Workspace& ws, const std::string& role) const;
  void packBlocksForOnednn();
  torch::Tensor blockPacked(int64_t index, const torch::Tensor& x) const;

  // CPU bf16 through oneDNN (core/onednn_linear.h): the four projections of each block, packed.
  struct PackedLinear {
    torch::Tensor weight;  // oneDNN layout of the [out, in] weight
    torch::Tensor bias;
  };
  struct PackedBlock {
    PackedLinear qkv, proj, fc, mlpProj;
  };
  std::vector<PackedBlock> packed_;
  Hparams hp_;
  Summary summary_;
  int64_t fileBytes_ = 0;
  std::map<std::string, torch::Tensor> t_;
  torch::Tensor cond_;   // [n_ctx, width] timing conditioning, float32
  torch::Tensor start_;  // [width] start vector (genre + artist), float32
  torch::Device device_ = torch::kCPU;
  Precision precision_ = Precision::Fp32;
  c10::ScalarType stream_ = torch::kFloat32;
  double scale2_ = 1.0;
};

}  // namespace calmkit::jukebox
