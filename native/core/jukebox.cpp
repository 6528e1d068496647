#include "core/jukebox.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/buffer_cache.h"
#include "core/device.h"
#include "core/error.h"
#include "core/onednn_linear.h"
#include "core/runtime.h"
#include "core/step_timer.h"

namespace calmkit::jukebox {
namespace {

std::string blockPrefix(int64_t i) { return "prior.transformer._attn_mods." + std::to_string(i) + "."; }

int64_t roundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// RangeEmbedding's binning with jukebox's float32 ops: normalise into [0, 1) and scale to the bins.
torch::Tensor rangeBins(const torch::Tensor& position, double lo, double hi, int64_t bins) {
  torch::Tensor normalised = (position - lo) / (hi - lo);
  return (normalised * bins).floor().to(torch::kInt64);
}

// Positions interpolated over the window like RangeEmbedding with n_time > 1: start + (end - start) * t / n.
torch::Tensor interpolate(const torch::Tensor& start, const torch::Tensor& end, int64_t nTime) {
  torch::Tensor t = torch::arange(0, nTime, torch::kFloat32).view({1, nTime}) / nTime;
  return start + (end - start) * t;
}

void checkBins(const torch::Tensor& bins, int64_t tBins, const char* what) {
  int64_t lo = bins.min().item<int64_t>(), hi = bins.max().item<int64_t>();
  if (lo < 0 || hi >= tBins) {
    throw Error(code::kModelFormat, std::string("the conditioning label puts the ") + what + " timing bins in [" +
                                        std::to_string(lo) + ", " + std::to_string(hi) +
                                        "], outside [0, t_bins=" + std::to_string(tBins) +
                                        "): check cond_total_length, cond_offset, min/max_duration");
  }
}
}  // namespace

Precision parsePrecision(const std::string& s) {
  if (s == "fp32") return Precision::Fp32;
  if (s == "fp16") return Precision::Fp16;
  if (s == "bf16") return Precision::Bf16;
  throw Error(code::kInvalidArgument, "precision must be fp32, fp16 or bf16; got '" + s + "'");
}

const char* precisionName(Precision p) {
  switch (p) {
    case Precision::Fp32:
      return "fp32";
    case Precision::Fp16:
      return "fp16";
    case Precision::Bf16:
      return "bf16";
  }
  return "?";
}

Precision autoPrecision(torch::Device device) {
  if (device.is_cuda()) return runtime::cudaComputeCapability(device.index()) >= 80 ? Precision::Bf16 : Precision::Fp32;
  return runtime::cpuBf16().native ? Precision::Bf16 : Precision::Fp32;
}

Precision resolvePrecision(const std::string& spec, torch::Device device) {
  if (spec == "auto") return autoPrecision(device);
  if (spec == "fp32" || spec == "fp16" || spec == "bf16") return parsePrecision(spec);
  throw Error(code::kInvalidArgument, "precision must be fp32, fp16, bf16 or auto; got '" + spec + "'");
}

TimingBins timingBins(const Hparams& hp) {
  c10::InferenceMode guard;
  const double sr = static_cast<double>(hp.sampleRate);
  torch::Tensor total = torch::tensor({hp.condTotalLength}, torch::kInt64).view({1, 1});
  torch::Tensor offset = torch::tensor({hp.condOffset}, torch::kInt64).view({1, 1});
  torch::Tensor length = torch::tensor({hp.windowSamples()}, torch::kInt64).view({1, 1});
  torch::Tensor start = offset.to(torch::kFloat32);
  torch::Tensor end = (offset + length).to(torch::kFloat32);
  torch::Tensor totalF = total.to(torch::kFloat32);

  TimingBins out;
  torch::Tensor tl = rangeBins(totalF, hp.minDuration * sr, hp.maxDuration * sr, hp.tBins);
  torch::Tensor ab = rangeBins(interpolate(start, end, hp.nCtx), 0.0, hp.maxDuration * sr, hp.tBins);
  // The relative embedding clamps its end into [0, 1]: a window may run past the labelled song length.
  torch::Tensor relStart = start / totalF;
  torch::Tensor relEnd = (end / totalF).clamp(0.0, 1.0);
  torch::Tensor re = rangeBins(interpolate(relStart, relEnd, hp.nCtx), 0.0, 1.0, hp.tBins);
  out.total = tl.item<int64_t>();
  auto toVec = [](const torch::Tensor& t) {
    auto c = t.reshape(-1).contiguous();
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
  };
  out.absolute = toVec(ab);
  out.relative = toVec(re);
  return out;
}

int64_t encoderReceptiveField(const Hparams& hp) {
  int64_t rf = 1, jump = 1;
  for (int64_t b = 0; b < hp.vqLevels; ++b) {
    const int64_t s = hp.vqStridesT[b];
    for (int64_t i = 0; i < hp.vqDownsT[b]; ++i) {
      rf += (2 * s - 1) * jump;
      jump *= s;
      int64_t dil = 1;
      for (int64_t j = 0; j < hp.vqDepth; ++j) {
        rf += 2 * dil * jump;
        dil *= hp.vqDilationGrowthRate;
      }
    }
    rf += 2 * jump;  // output conv, kernel 3
  }
  return rf;
}

int64_t encoderMarginSamples(const Hparams& hp) { return roundUp(encoderReceptiveField(hp), hp.hop()); }

int64_t firstWindowSamples(const Hparams& hp) { return hp.windowSamples() + encoderMarginSamples(hp); }

int64_t encodedLength(const Hparams& hp, int64_t n) {
  for (int64_t b = 0; b < hp.vqLevels; ++b) {
    const int64_t s = hp.vqStridesT[b];
    for (int64_t i = 0; i < hp.vqDownsT[b]; ++i) {
      const int64_t num = n + 2 * (s / 2) - 2 * s;
      n = num < 0 ? 0 : num / s + 1;
    }
  }
  return n;
}

// ---- Model -------------------------------------------------------------------------------------------------

std::shared_ptr<Model> Model::load(const std::string& path, const std::string& deviceSpec, Precision precision,
                                   const LoadOptions& options) {
  const torch::Device device = device::resolve(deviceSpec);
  if (precision != Precision::Fp32) {
    device::checkMatmulDtype(
        device, precision == Precision::Fp16 ? torch::kFloat16 : torch::kBFloat16,
        std::string("precision ") + precisionName(precision),
        std::string("use fp32") + (device.is_cpu() ? " or bf16 on the CPU, or fp16 on a GPU" : ""));
  }
  return fromCheckpoint(loadCheckpoint(path, options), device, precision);
}

std::shared_ptr<Model> Model::load(const std::string& path, const std::string& deviceSpec, const std::string& precision,
                                   const LoadOptions& options) {
  if (precision != "auto") return load(path, deviceSpec, resolvePrecision(precision, torch::kCPU), options);
  const torch::Device device = device::resolve(deviceSpec);
  return load(path, device.str(), autoPrecision(device), options);
}

std::shared_ptr<Model> Model::fromCheckpoint(Checkpoint&& ck, torch::Device device, Precision precision) {
  std::shared_ptr<Model> m(new Model());
  m->hp_ = ck.hp;
  m->summary_ = summarise(ck);
  m->fileBytes_ = ck.fileBytes;
  m->device_ = device;
  m->precision_ = precision;
  m->stream_ = precision == Precision::Fp16   ? torch::kFloat16
               : precision == Precision::Bf16 ? torch::kBFloat16
                                              : torch::kFloat32;
  if (device.is_cuda()) {
    // Faithful codes need float32 convolutions (TF32 can flip near-tie VQ codes); fp32 mode also needs fp32 GEMMs.
    at::globalContext().setAllowTF32CuDNN(false);
    if (precision == Precision::Fp32) at::globalContext().setAllowTF32CuBLAS(false);
  }
  std::set<std::string> wanted;
  for (const auto& s : expectedTensors(m->hp_)) wanted.insert(s.key);
  const bool packForOnednn = device.is_cpu() && precision == Precision::Bf16 && onednn::available(torch::kBFloat16);
  // Move tensor by tensor and drop each host copy at once, so host memory never holds the weights twice.
  for (auto it = ck.tensors.begin(); it != ck.tensors.end(); it = ck.tensors.erase(it)) {
    if (!wanted.count(it->first)) continue;
    torch::Tensor t = it->second.to(device);
    const bool blockTensor =
        it->first.rfind("prior.transformer.", 0) == 0 && it->first.find(".ln_") == std::string::npos;
    if (precision != Precision::Fp32 && blockTensor && !packForOnednn) t = t.to(m->stream_);
    m->t_.emplace(it->first, std::move(t));
  }
  if (packForOnednn) m->packBlocksForOnednn();

  c10::InferenceMode guard;
  TimingBins bins = timingBins(m->hp_);
  const auto idx = [&](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kInt64).to(device); };
  torch::Tensor tlBins = idx({bins.total}), abBins = idx(bins.absolute), reBins = idx(bins.relative);
  checkBins(tlBins, m->hp_.tBins, "total-length");
  checkBins(abBins, m->hp_.tBins, "absolute-position");
  checkBins(reBins, m->hp_.tBins, "relative-position");
  torch::Tensor tl = m->param("y_emb.total_length_emb.emb.weight").index_select(0, tlBins);
  torch::Tensor ab = m->param("y_emb.absolute_pos_emb.emb.weight").index_select(0, abBins);
  torch::Tensor re = m->param("y_emb.relative_pos_emb.emb.weight").index_select(0, reBins);
  m->cond_ = (tl + ab) + re;

  // Bag-of-words genre: one slot holds the genre, the other slots are -1, clamped to 0 and masked out.
  std::vector<int64_t> genreIds(static_cast<size_t>(m->hp_.maxBowGenreSize), -1);
  genreIds[0] = m->hp_.condGenre;
  torch::Tensor gid = idx(genreIds);
  torch::Tensor mask = gid.ge(0).to(torch::kFloat32).unsqueeze(1);
  torch::Tensor genre = (m->param("y_emb.bow_genre_emb.emb.weight").index_select(0, gid.clamp_min(0)) * mask).sum(0);
  torch::Tensor artist = m->param("y_emb.artist_emb.emb.weight").index_select(0, idx({m->hp_.condArtist})).squeeze(0);
  m->start_ = genre + artist;

  // jukebox scales logits once by (1/sqrt(sqrt(n_state // heads)))^2, computed in double.
  const double scale = 1.0 / std::sqrt(std::sqrt(static_cast<double>(m->hp_.nState() / m->hp_.heads)));
  m->scale2_ = scale * scale;
  return m;
}

torch::Tensor Model::param(const std::string& key) const {
  auto it = t_.find(key);
  if (it == t_.end()) throw Error(code::kInternal, "tensor '" + key + "' is not loaded");
  return it->second;
}

namespace {

// Rows per oneDNN product in the packed path: measured on a 2-core Sapphire Rapids at the 5B's width, products
// of 1024-2048 rows ran 1.2-1.4x faster than one of 8192 rows (benchmarks/RESULTS.md).
constexpr int64_t kPackedChunkRows = 1024;

// quick-GELU(z) = z * sigmoid(1.702 z) = silu(1.702 z) / 1.702: scaling the MLP's first projection by 1.702 and
// its second by 1 / 1.702 turns it into oneDNN's fused swish, exactly in real arithmetic.
constexpr double kQuickGeluSlope = 1.702;

}  // namespace

void Model::packBlocksForOnednn() {
  c10::InferenceMode guard;
  auto pack = [&](const std::string& prefix, double weightScale, double biasScale) {
    // Stored (n_in, n_out) fp16 weights, scaled in fp32 and rounded once to bf16 in oneDNN's [out, in] layout.
    torch::Tensor w = (param(prefix + ".w").to(torch::kFloat32).t() * weightScale).to(torch::kBFloat16).contiguous();
    PackedLinear out{onednn::packWeight(w, kPackedChunkRows),
                     (param(prefix + ".b").to(torch::kFloat32) * biasScale).to(torch::kBFloat16)};
    t_.erase(prefix + ".w");
    t_.erase(prefix + ".b");
    return out;
  };
  for (int64_t i = 0; i < hp_.depth; ++i) {
    const std::string p = blockPrefix(i);
    PackedBlock b;
    b.qkv = pack(p + "attn.c_attn", 1.0, 1.0);
    b.proj = pack(p + "attn.c_proj", 1.0, 1.0);
    b.fc = pack(p + "mlp.c_fc", kQuickGeluSlope, kQuickGeluSlope);
    b.mlpProj = pack(p + "mlp.c_proj", 1.0 / kQuickGeluSlope, 1.0);
    packed_.push_back(std::move(b));
  }
}

torch::Tensor Model::computeType(const torch::Tensor& w, Workspace& ws, const std::string& role) const {
  // fp32 mode: stored fp16 weights are upcast here, per layer, which is exact, into one buffer per role.
  if (w.scalar_type() == stream_) return w;
  return ws.get("weight " + role, w.sizes(), w.options().dtype(stream_)).copy_(w);
}

torch::Tensor Model::conv1d(const torch::Tensor& x, const std::string& prefix, int64_t stride, int64_t padding,
                            int64_t dilation) const {
  // x is [B, C, 1, L] in channels-last layout: oneDNN's channels-last 2-D convolution runs the encoder's
  // 32-channel convolutions about 3x faster than conv1d's path on CPU (same products, other summation order).
  torch::Tensor w = param(prefix + "weight").unsqueeze(2).contiguous(at::MemoryFormat::ChannelsLast);
  const std::vector<int64_t> strides{1, stride}, pads{0, padding}, dils{1, dilation};
  return torch::conv2d(x, w, param(prefix + "bias"), strides, pads, dils);
}

torch::Tensor Model::encoderLevel(torch::Tensor x, int64_t b) const {
  const std::string pre = "encoders.2.level_blocks." + std::to_string(b) + ".model.";
  const int64_t s = hp_.vqStridesT[b];
  for (int64_t i = 0; i < hp_.vqDownsT[b]; ++i) {
    const std::string blk = pre + std::to_string(i) + ".";
    {
      profile::Step st("encoder down conv");
      x = conv1d(x, blk + "0.", s, s / 2, 1);
    }
    int64_t dil = 1;
    for (int64_t j = 0; j < hp_.vqDepth; ++j) {
      const std::string res = blk + "1.model." + std::to_string(j) + ".model.";
      // Pre-activation residual block: the skip path has no ReLU. In place where a tensor is ours alone (the
      // same values; fewer fresh [L, 32] tensors, whose page faults cost as much as the small convolutions).
      profile::Step st("encoder residual block");
      torch::Tensor y = conv1d(torch::relu(x), res + "1.", 1, dil, dil);
      x.add_(conv1d(y.relu_(), res + "3.", 1, 0, 1));
      dil *= hp_.vqDilationGrowthRate;
    }
  }
  profile::Step st("encoder out conv");
  return conv1d(x, pre + std::to_string(hp_.vqDownsT[b]) + ".", 1, 1, 1);
}

torch::Tensor Model::encodeFeatures(const torch::Tensor& audio) const {
  TORCH_CHECK(audio.dim() == 2, "audio must be [B, N]");
  torch::Tensor x = audio.to(device_, torch::kFloat32).view({audio.size(0), 1, 1, audio.size(1)});
  x = x.contiguous(at::MemoryFormat::ChannelsLast);
  for (int64_t b = 0; b < hp_.vqLevels; ++b) x = encoderLevel(x, b);
  return x.squeeze(2).contiguous();
}

torch::Tensor Model::encode(const torch::Tensor& audio) const {
  memory::Scope reuse;  // the encoder's [32, samples] maps, convolution after convolution
  torch::Tensor x = encodeFeatures(audio);
  profile::Step st("vq argmin");
  const int64_t B = x.size(0), T = x.size(2);
  torch::Tensor flat = x.permute({0, 2, 1}).reshape({-1, hp_.vqEmbWidth});
  torch::Tensor kw = param("bottleneck.level_blocks.2.k").t();
  // The expanded squared distance in jukebox's order, (|x|^2 - 2 x.k) + |k|^2, argmin through min() like jukebox.
  // Worked in place on the product ([frames, bins], 67 MB for a full 5B window): scaling by -2 is exact and
  // a + (-b) is a - b in IEEE arithmetic, so every distance has the bits of the out-of-place expression, with
  // three fewer passes and tensors of that size.
  torch::Tensor dist = torch::matmul(flat, kw);
  dist.mul_(-2.0).add_(flat.pow(2).sum(-1, true)).add_(kw.pow(2).sum(0, true));
  return std::get<1>(dist.min(-1)).view({B, T});
}

torch::Tensor Model::embed(const torch::Tensor& tokens) const {
  const int64_t B = tokens.size(0), L = tokens.size(1), W = hp_.width;
  TORCH_CHECK(L >= 1 && L <= hp_.nCtx, "token count must be in 1..n_ctx");
  torch::Tensor e = param("prior.x_emb.weight").index_select(0, tokens.reshape(-1)).view({B, L, W});
  // Shift right by one: position 0 is the start vector, position t the embedding of token t-1.
  torch::Tensor h = torch::cat({start_.view({1, 1, W}).expand({B, 1, W}), e.narrow(1, 0, L - 1)}, 1);
  return (h + param("prior.pos_emb.pos_emb").narrow(0, 0, L)) + cond_.narrow(0, 0, L);
}

namespace {

// Runs `f(first, count)` on consecutive row chunks of `rows` and stacks the [count, cols] results.
template <typename F>
torch::Tensor byRows(int64_t rows, int64_t cols, const torch::TensorOptions& opts, const F& f) {
  if (rows <= kPackedChunkRows) return f(0, rows);
  torch::Tensor out = torch::empty({rows, cols}, opts);
  for (int64_t r = 0; r < rows; r += kPackedChunkRows) {
    const int64_t n = std::min(kPackedChunkRows, rows - r);
    out.narrow(0, r, n).copy_(f(r, n));
  }
  return out;
}

}  // namespace

torch::Tensor Model::blockPacked(int64_t index, const torch::Tensor& x) const {
  using profile::Step;
  const PackedBlock& pb = packed_[static_cast<size_t>(index)];
  const std::string p = blockPrefix(index);
  const int64_t B = x.size(0), L = x.size(1), W = hp_.width, H = hp_.heads, ns = hp_.nState(), hd = ns / H;
  const int64_t rows = B * L, bc = hp_.blockCtx(), Lp = roundUp(L, bc);
  const torch::Tensor x2 = x.reshape({rows, W});
  auto layerNorm = [&](const torch::Tensor& in, const std::string& name) {
    Step s("layer norm");
    // LayerNorm reads bf16 and computes in fp32 (ATen's mixed-type kernel): jukebox's upcast without the copies.
    return torch::layer_norm(in, {W}, param(p + name + ".weight"), param(p + name + ".bias"), 1e-5);
  };

  torch::Tensor qkv = byRows(rows, 3 * ns, x.options(), [&](int64_t r, int64_t n) {
    torch::Tensor a = layerNorm(x2.narrow(0, r, n), "ln_0");
    Step s("qkv projection");
    return onednn::linear(a, pb.qkv.weight, pb.qkv.bias, "none");
  });
  auto heads = [&](int64_t part) {
    torch::Tensor t = qkv.narrow(1, part * ns, ns).view({B, L, H, hd}).permute({0, 2, 1, 3});
    return Lp > L ? torch::constant_pad_nd(t, {0, 0, 0, Lp - L}) : t;
  };
  torch::Tensor att;
  {
    const AttnKind kind = attnKindForBlock(index);
    Step s(kind == AttnKind::Row ? "attention row" : kind == AttnKind::Column ? "attention column" : "attention prev");
    att = blockAttention(heads(0), heads(1), heads(2), kind, bc, scale2_, AttnImpl::Fused);
    att = att.narrow(2, 0, L).permute({0, 2, 1, 3}).reshape({rows, ns});
  }
  torch::Tensor h = byRows(rows, W, x.options(), [&](int64_t r, int64_t n) {
    Step s("attention projection + residual");
    return onednn::linearAdd(att.narrow(0, r, n), x2.narrow(0, r, n), pb.proj.weight, pb.proj.bias);
  });
  // The whole MLP one chunk at a time: its [rows, 4800] hidden activations never exist at full length.
  torch::Tensor out = byRows(rows, W, x.options(), [&](int64_t r, int64_t n) {
    torch::Tensor hc = h.narrow(0, r, n);
    torch::Tensor a = layerNorm(hc, "ln_1");
    torch::Tensor u;
    {
      Step s("mlp fc + quick-gelu");
      u = onednn::linear(a, pb.fc.weight, pb.fc.bias, "swish");
    }
    Step s("mlp projection + residual");
    return onednn::linearAdd(u, hc, pb.mlpProj.weight, pb.mlpProj.bias);
  });
  return out.view({B, L, W});
}

torch::Tensor& Model::Workspace::get(const std::string& name, c10::IntArrayRef sizes,
                                     const torch::TensorOptions& opts) {
  torch::Tensor& t = buffers[name];
  if (!t.defined() || t.sizes() != sizes || t.dtype() != opts.dtype() || t.device() != opts.device()) {
    t = torch::empty(sizes, opts);
  }
  return t;
}

torch::Tensor Model::block(int64_t index, const torch::Tensor& x) const {
  Workspace ws;
  return block(index, x, ws);
}

torch::Tensor Model::block(int64_t index, const torch::Tensor& x, Workspace& ws) const {
  if (!packed_.empty()) return blockPacked(index, x);
  using profile::Step;
  const std::string p = blockPrefix(index);
  const int64_t W = hp_.width;
  auto layerNorm = [&](const torch::Tensor& in, const std::string& name) {
    Step s("layer norm");
    // float32 LayerNorm whatever the stream's dtype, cast back (jukebox's LayerNorm).
    return torch::layer_norm(in.to(torch::kFloat32), {W}, param(p + name + ".weight"), param(p + name + ".bias"), 1e-5)
        .to(in.scalar_type());
  };
  // jukebox's Conv1D, y = b + x @ w with w stored (n_in, n_out), into `out` when given.
  auto conv = [&](const torch::Tensor& in, const std::string& name, const char* step, const char* into) {
    torch::Tensor w, b;
    {
      Step s("weight cast");
      w = computeType(param(p + name + ".w"), ws, name + ".w");
      b = computeType(param(p + name + ".b"), ws, name + ".b");
    }
    Step s(step);
    auto sizes = in.sizes().vec();
    sizes.back() = w.size(1);
    const torch::Tensor in2 = in.reshape({-1, in.size(-1)});
    if (!into) return torch::addmm(b, in2, w).view(sizes);
    torch::Tensor& out = ws.get(into, {in2.size(0), w.size(1)}, in.options());
    return torch::addmm_out(out, b, in2, w).view(sizes);
  };

  // Attention on LN_0(x).
  const int64_t B = x.size(0), L = x.size(1), H = hp_.heads, ns = hp_.nState(), hd = ns / H;
  const int64_t bc = hp_.blockCtx(), Lp = roundUp(L, bc);
  auto qkv = conv(layerNorm(x, "ln_0"), "attn.c_attn", "qkv projection", "qkv").chunk(3, -1);
  auto heads = [&](const torch::Tensor& t) {
    torch::Tensor s = t.reshape({B, L, H, hd}).permute({0, 2, 1, 3});
    // Short inputs: zeros after the end up to a whole block (jukemirlib's cache path, spec 3.5).
    return Lp > L ? torch::constant_pad_nd(s, {0, 0, 0, Lp - L}) : s;
  };
  torch::Tensor att;
  {
    const AttnKind kind = attnKindForBlock(index);
    Step s(kind == AttnKind::Row ? "attention row" : kind == AttnKind::Column ? "attention column" : "attention prev");
    att = blockAttention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), kind, bc, scale2_);
    att = att.narrow(2, 0, L).permute({0, 2, 1, 3}).reshape({B, L, ns});
  }
  // The elementwise steps work in place on buffers reused from layer to layer (a fresh [8192, 4800] fp32 tensor
  // costs its page faults every time); each computes exactly what the expression it replaces does.
  torch::Tensor h = conv(att, "attn.c_proj", "attention projection", "h");
  {
    Step s("residual add");
    h.add_(x);  // x + a
  }

  // MLP with quick-GELU on LN_1(x + a).
  torch::Tensor u = conv(layerNorm(h, "ln_1"), "mlp.c_fc", "mlp fc", "u");
  {
    Step s("quick-gelu");
    torch::Tensor& gate = ws.get("gate", u.sizes(), u.options());
    torch::mul_out(gate, u, c10::scalar_to_tensor(1.702));  // u * sigmoid(1.702 u)
    gate.sigmoid_();
    u.mul_(gate);
  }
  // The block's output is a fresh tensor: taps may keep it.
  torch::Tensor m = conv(u, "mlp.c_proj", "mlp projection", nullptr);
  Step s("residual add");
  return m.add_(h);  // h + m
}

void Model::forward(const torch::Tensor& tokens, const std::vector<int>& layers, const Tap& tap,
                    const std::function<void(int)>& between) const {
  if (layers.empty()) return;
  memory::Scope reuse;  // the blocks allocate the same shapes layer after layer
  torch::Tensor h;
  {
    profile::Stage stage(profile::StageKind::Embed);
    profile::Step s("embed");
    h = embed(tokens.to(device_)).to(stream_);
  }
  size_t next = 0;
  Workspace ws;
  for (int d = 0; d < layers.back(); ++d) {
    if (between) between(d);
    {
      profile::Stage stage(profile::StageKind::Block, d);
      h = block(d, h, ws);
    }
    if (next < layers.size() && layers[next] == d + 1) {
      tap(d + 1, h);
      ++next;
    }
  }
}

}  // namespace calmkit::jukebox
