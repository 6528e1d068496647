#include "core/random_model.h"

#include <optional>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

#include "core/jukebox.h"

namespace calmkit::jukebox {
namespace {

enum class Init { Normal, Zeros, Ones, ConvUniform };

// jukebox's init (spec 5.7) for the prior; PyTorch's default Conv1d init for the VQ-VAE (which jukebox keeps);
// the codebook is filled later from encoder outputs.
std::pair<Init, double> initFor(const TensorSpec& s) {
  const std::string& k = s.key;
  auto endsWith = [&](const char* suffix) {
    std::string suf(suffix);
    return k.size() >= suf.size() && k.compare(k.size() - suf.size(), suf.size(), suf) == 0;
  };
  constexpr double initScale = 0.1;
  if (k.rfind("encoders.", 0) == 0) {
    int64_t fanIn = s.shape.size() == 3 ? s.shape[1] * s.shape[2] : 0;
    // A bias's bound is its weight's, which expectedTensors lists just before it (scale 0: reuse it).
    if (endsWith(".bias")) return {Init::ConvUniform, 0.0};
    return {Init::ConvUniform, 1.0 / std::sqrt(static_cast<double>(fanIn))};
  }
  if (k == "bottleneck.level_blocks.2.k") return {Init::Zeros, 0.0};
  if (k == "prior.x_emb.weight") return {Init::Normal, 0.02 * initScale};
  if (k == "prior.pos_emb.pos_emb") return {Init::Normal, 0.01 * initScale};
  if (k.rfind("y_emb.", 0) == 0) return {Init::Normal, 0.01 * initScale};
  if (endsWith(".w")) return {Init::Normal, 0.02 * initScale};
  if (endsWith(".b")) return {Init::Zeros, 0.0};
  if (k.find(".ln_") != std::string::npos) return {endsWith(".weight") ? Init::Ones : Init::Zeros, 0.0};
  return {Init::Zeros, 0.0};
}

// Chirps, harmonics and noise bursts: enough variety that a random encoder's frames spread out.
torch::Tensor syntheticAudio(int64_t clips, int64_t n, at::Generator& gen) {
  torch::Tensor t = torch::arange(n, torch::kFloat64).div(44100.0).unsqueeze(0);
  torch::Tensor f0 = torch::empty({clips, 1}, torch::kFloat64).uniform_(50.0, 2000.0, gen);
  torch::Tensor sweep = torch::empty({clips, 1}, torch::kFloat64).uniform_(-400.0, 400.0, gen);
  torch::Tensor phase = 2 * M_PI * (f0 * t + 0.5 * sweep * t * t);
  torch::Tensor x = phase.sin() + 0.5 * (2 * phase).sin() + 0.25 * (3 * phase).sin();
  torch::Tensor envelope =
      (t * torch::empty({clips, 1}, torch::kFloat64).uniform_(1.0, 8.0, gen) * 2 * M_PI).sin().abs();
  x = x * envelope + torch::empty({clips, n}, torch::kFloat64).normal_(0.0, 0.3, gen) * (1 - envelope);
  return (x / x.abs().amax(1, true)).to(torch::kFloat32);
}

}  // namespace

namespace {

std::map<std::string, torch::Tensor> drawTensors(const Hparams& hp, std::optional<at::Generator> gen,
                                                 torch::Device device) {
  checkHparams(hp, "model init");
  std::map<std::string, torch::Tensor> out;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  double lastFanBound = 0.0;
  for (const auto& s : expectedTensors(hp)) {
    auto [init, scale] = initFor(s);
    torch::Tensor t;
    switch (init) {
      case Init::Normal:
        t = torch::empty(s.shape, f32).normal_(0.0, scale, gen);
        break;
      case Init::Zeros:
        t = torch::zeros(s.shape, f32);
        break;
      case Init::Ones:
        t = torch::ones(s.shape, f32);
        break;
      case Init::ConvUniform: {
        const double bound = scale > 0 ? scale : lastFanBound;
        lastFanBound = bound;
        t = torch::empty(s.shape, f32).uniform_(-bound, bound, gen);
        break;
      }
    }
    // Cast after drawing so fp16 weights are the rounded values of an fp32 draw, as jukebox's fp16_params.
    out.emplace(s.key, t.to(s.dtype));
  }
  return out;
}

}  // namespace

std::map<std::string, torch::Tensor> randomTensors(const Hparams& hp, at::Generator& gen) {
  return drawTensors(hp, gen, torch::kCPU);
}

std::map<std::string, torch::Tensor> randomTensorsOn(const Hparams& hp, torch::Device device) {
  auto out = drawTensors(hp, std::nullopt, device);
  out["bottleneck.level_blocks.2.k"].normal_(0.0, 1.0);
  return out;
}

void writeRandomModel(const Hparams& hp, uint64_t seed, const std::string& path) {
  c10::InferenceMode guard;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  Checkpoint ck;
  ck.hp = hp;
  ck.tensors = randomTensors(hp, gen);
  const std::string codebook = "bottleneck.level_blocks.2.k";
  {
    Checkpoint encoderOnly;
    encoderOnly.hp = hp;
    encoderOnly.tensors = ck.tensors;  // shares storage; nothing is copied
    auto model = Model::fromCheckpoint(std::move(encoderOnly), torch::kCPU, Precision::Fp32);
    const int64_t frames = hp.vqLBins * 2, clips = 8;
    const int64_t n = (frames / clips + 1) * hp.hop();
    torch::Tensor feats = model->encodeFeatures(syntheticAudio(clips, n, gen));
    torch::Tensor flat = feats.permute({0, 2, 1}).reshape({-1, hp.vqEmbWidth});
    // A random encoder's frames crowd around one point (|x|^2 ~ 2 with neighbours 1e-6 apart), so the fp32
    // argmin becomes a coin toss that two correct implementations toss differently. Standardising the output
    // conv per channel spreads them out; a trained encoder would not need it.
    torch::Tensor mu = flat.mean(0), sigma = flat.std(0).clamp_min(1e-6);
    const std::string out = "encoders.2.level_blocks." + std::to_string(hp.vqLevels - 1) + ".model." +
                            std::to_string(hp.vqDownsT[hp.vqLevels - 1]) + ".";
    ck.tensors[out + "weight"] = ck.tensors[out + "weight"].div(sigma.view({-1, 1, 1})).contiguous();
    ck.tensors[out + "bias"] = ck.tensors[out + "bias"].sub(mu).div(sigma).contiguous();
    flat = flat.sub(mu).div(sigma);
    torch::Tensor pick =
        torch::randperm(flat.size(0), gen, torch::kInt64).narrow(0, 0, std::min(flat.size(0), hp.vqLBins));
    if (pick.size(0) < hp.vqLBins) pick = torch::randint(0, flat.size(0), {hp.vqLBins}, gen, torch::kInt64);
    torch::Tensor k = flat.index_select(0, pick);
    // A little noise breaks exact duplicates between entries, which would make ties.
    k = k + torch::empty_like(k).normal_(0.0, 1e-3, gen) * k.std();
    ck.tensors[codebook] = k.contiguous();
  }
  saveCheckpoint(hp, ck.tensors, path);
}

}  // namespace calmkit::jukebox
