#include "core/checkpoint.h"

#include <torch/script.h>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <sstream>

#include "core/archive.h"
#include "core/error.h"

namespace calmkit::jukebox {
namespace {

// One table drives reading, writing and validation of the hyperparameter attributes, so the three never
// disagree about a name or a type.
struct AttrDesc {
  const char* name;
  enum Kind { Int, Float, Str, IntList } kind;
  std::function<void(Hparams&, const c10::IValue&)> set;
  std::function<c10::IValue(const Hparams&)> get;
};

#define CK_INT(attr, member)                                                             \
  AttrDesc {                                                                             \
    attr, AttrDesc::Int, [](Hparams& h, const c10::IValue& v) { h.member = v.toInt(); }, \
        [](const Hparams& h) { return c10::IValue(h.member); }                           \
  }
#define CK_FLOAT(attr, member)                                                                \
  AttrDesc {                                                                                  \
    attr, AttrDesc::Float, [](Hparams& h, const c10::IValue& v) { h.member = v.toDouble(); }, \
        [](const Hparams& h) { return c10::IValue(h.member); }                                \
  }
#define CK_STR(attr, member)                                                                   \
  AttrDesc {                                                                                   \
    attr, AttrDesc::Str, [](Hparams& h, const c10::IValue& v) { h.member = v.toStringRef(); }, \
        [](const Hparams& h) { return c10::IValue(h.member); }                                 \
  }
#define CK_INTS(attr, member)                                                                      \
  AttrDesc {                                                                                       \
    attr, AttrDesc::IntList, [](Hparams& h, const c10::IValue& v) { h.member = v.toIntVector(); }, \
        [](const Hparams& h) { return c10::IValue(h.member); }                                     \
  }

const std::vector<AttrDesc>& attrTable() {
  static const std::vector<AttrDesc> table = {
      CK_INT("calmkit_format", calmkitFormat),
      CK_STR("preset", preset),
      CK_STR("source", source),
      CK_INT("sample_rate", sampleRate),
      CK_INT("vq_levels", vqLevels),
      CK_INTS("vq_downs_t", vqDownsT),
      CK_INTS("vq_strides_t", vqStridesT),
      CK_INT("vq_emb_width", vqEmbWidth),
      CK_INT("vq_l_bins", vqLBins),
      CK_INT("vq_width", vqWidth),
      CK_INT("vq_depth", vqDepth),
      CK_FLOAT("vq_m_conv", vqMConv),
      CK_INT("vq_dilation_growth_rate", vqDilationGrowthRate),
      CK_INT("n_ctx", nCtx),
      CK_INT("width", width),
      CK_INT("depth", depth),
      CK_INT("full_depth", fullDepth),
      CK_INT("heads", heads),
      CK_FLOAT("m_attn", mAttn),
      CK_FLOAT("m_mlp", mMlp),
      CK_INT("attn_order", attnOrder),
      CK_INT("blocks", blocks),
      CK_INT("bins", bins),
      CK_INT("y_bins_genre", yBinsGenre),
      CK_INT("y_bins_artist", yBinsArtist),
      CK_INT("t_bins", tBins),
      CK_INT("max_bow_genre_size", maxBowGenreSize),
      CK_FLOAT("min_duration", minDuration),
      CK_FLOAT("max_duration", maxDuration),
      CK_INT("cond_total_length", condTotalLength),
      CK_INT("cond_offset", condOffset),
      CK_INT("cond_artist", condArtist),
      CK_INT("cond_genre", condGenre),
  };
  return table;
}

#undef CK_INT
#undef CK_FLOAT
#undef CK_STR
#undef CK_INTS

c10::TypePtr attrType(AttrDesc::Kind k) {
  switch (k) {
    case AttrDesc::Int:
      return c10::IntType::get();
    case AttrDesc::Float:
      return c10::FloatType::get();
    case AttrDesc::Str:
      return c10::StringType::get();
    case AttrDesc::IntList:
      return c10::ListType::ofInts();
  }
  return c10::IntType::get();
}

bool attrMatches(AttrDesc::Kind k, const c10::IValue& v) {
  switch (k) {
    case AttrDesc::Int:
      return v.isInt();
    case AttrDesc::Float:
      return v.isDouble() || v.isInt();
    case AttrDesc::Str:
      return v.isString();
    case AttrDesc::IntList:
      return v.isIntList();
  }
  return false;
}

const char* kindName(AttrDesc::Kind k) {
  switch (k) {
    case AttrDesc::Int:
      return "int";
    case AttrDesc::Float:
      return "float";
    case AttrDesc::Str:
      return "str";
    case AttrDesc::IntList:
      return "List[int]";
  }
  return "?";
}

std::string shapeString(c10::IntArrayRef s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  if (s.size() == 1) o << ",";
  o << ")";
  return o.str();
}

// Reports at most this many problems: a wrong-preset file would otherwise list thousands of keys.
constexpr size_t kMaxListed = 12;

[[noreturn]] void throwProblems(const std::string& label, const std::string& what,
                                const std::vector<std::string>& problems) {
  std::ostringstream o;
  o << label << ": " << what << " (" << problems.size() << " problem" << (problems.size() == 1 ? "" : "s") << "): ";
  for (size_t i = 0; i < problems.size() && i < kMaxListed; ++i) o << (i ? "; " : "") << problems[i];
  if (problems.size() > kMaxListed) o << "; and " << problems.size() - kMaxListed << " more";
  throw Error(code::kModelFormat, o.str());
}

void readAttributes(const torch::jit::Module& m, Hparams& hp, const std::string& label) {
  std::vector<std::string> problems;
  for (const auto& a : attrTable()) {
    if (!m.hasattr(a.name)) {
      problems.push_back(std::string("missing attribute '") + a.name + "'");
      continue;
    }
    c10::IValue v = m.attr(a.name);
    if (!attrMatches(a.kind, v)) {
      problems.push_back(std::string("attribute '") + a.name + "' should be " + kindName(a.kind) + ", is " +
                         v.tagKind());
      continue;
    }
    if (a.kind == AttrDesc::Float && v.isInt()) v = c10::IValue(static_cast<double>(v.toInt()));
    a.set(hp, v);
  }
  if (!problems.empty()) throwProblems(label, "not a calmkit Jukebox checkpoint", problems);
}

void addConv(std::vector<TensorSpec>& out, const std::string& prefix, int64_t cout, int64_t cin, int64_t k) {
  out.push_back({prefix + "weight", {cout, cin, k}, torch::kFloat32});
  out.push_back({prefix + "bias", {cout}, torch::kFloat32});
}

// Submodules made on demand for dotted state_dict names, so the archive's keys are exactly jukebox's.
class ModuleTree {
 public:
  ModuleTree() : cu_(std::make_shared<torch::jit::CompilationUnit>()), root_(newModule()) {}
  torch::jit::Module& root() { return root_; }

  void add(const std::string& key, const torch::Tensor& t, bool buffer) {
    auto dot = key.rfind('.');
    torch::jit::Module parent = dot == std::string::npos ? root_ : node(key.substr(0, dot));
    std::string leaf = dot == std::string::npos ? key : key.substr(dot + 1);
    if (buffer) {
      parent.register_buffer(leaf, t);
    } else {
      parent.register_parameter(leaf, t, /*is_buffer=*/false);
    }
  }

 private:
  torch::jit::Module newModule() {
    return torch::jit::Module(c10::QualifiedName("__torch__.calmkit.JukeboxNode"), cu_, /*shouldMangle=*/true);
  }

  torch::jit::Module node(const std::string& path) {
    auto it = nodes_.find(path);
    if (it != nodes_.end()) return it->second;
    auto dot = path.rfind('.');
    torch::jit::Module parent = dot == std::string::npos ? root_ : node(path.substr(0, dot));
    std::string leaf = dot == std::string::npos ? path : path.substr(dot + 1);
    torch::jit::Module m = newModule();
    parent.register_module(leaf, m);
    nodes_.emplace(path, m);
    return m;
  }

  std::shared_ptr<torch::jit::CompilationUnit> cu_;
  torch::jit::Module root_;
  std::map<std::string, torch::jit::Module> nodes_;
};

}  // namespace

int64_t Hparams::hop() const {
  int64_t h = 1;
  for (size_t i = 0; i < vqDownsT.size() && i < vqStridesT.size(); ++i) {
    for (int64_t d = 0; d < vqDownsT[i]; ++d) h *= vqStridesT[i];
  }
  return h;
}

void checkHparams(const Hparams& hp, const std::string& label) {
  std::vector<std::string> p;
  auto need = [&](bool ok, const std::string& msg) {
    if (!ok) p.push_back(msg);
  };
  auto within = [&](int64_t v, int64_t lo, int64_t hi, const char* name) {
    need(v >= lo && v <= hi, std::string(name) + " is " + std::to_string(v) + ", outside " + std::to_string(lo) + ".." +
                                 std::to_string(hi));
  };
  auto real = [&](double v, double lo, double hi, const char* name) {
    need(std::isfinite(v) && v >= lo && v <= hi, std::string(name) + " is " + std::to_string(v) + ", outside [" +
                                                     std::to_string(lo) + ", " + std::to_string(hi) + "]");
  };
  // Each value on its own first. The bounds lie far above any real Jukebox (whose values are in
  // docs/contracts.md), so a damaged or hostile header fails here rather than in a huge allocation or an
  // overflow; nothing derived is computed until all of them hold.
  need(hp.calmkitFormat == 1, "calmkit_format " + std::to_string(hp.calmkitFormat) + " is not supported (expected 1)");
  within(hp.sampleRate, 1, 1536000, "sample_rate");
  within(hp.vqLevels, 1, 8, "vq_levels");
  need(static_cast<int64_t>(hp.vqDownsT.size()) == hp.vqLevels, "vq_downs_t must have vq_levels entries");
  need(static_cast<int64_t>(hp.vqStridesT.size()) == hp.vqLevels, "vq_strides_t must have vq_levels entries");
  for (auto d : hp.vqDownsT) need(d >= 1 && d <= 8, "vq_downs_t entries must be in 1..8");
  for (auto s : hp.vqStridesT) need(s >= 2 && s % 2 == 0 && s <= 16, "vq_strides_t entries must be even, 2..16");
  within(hp.vqEmbWidth, 1, 4096, "vq_emb_width");
  within(hp.vqLBins, 1, 1 << 20, "vq_l_bins");
  within(hp.vqWidth, 1, 4096, "vq_width");
  within(hp.vqDepth, 0, 64, "vq_depth");
  real(hp.vqMConv, 1e-3, 16, "vq_m_conv");
  within(hp.vqDilationGrowthRate, 1, 16, "vq_dilation_growth_rate");
  within(hp.nCtx, 1, 1 << 20, "n_ctx");
  within(hp.width, 1, 1 << 16, "width");
  within(hp.depth, 1, 4096, "depth");
  within(hp.fullDepth, hp.depth, 4096, "full_depth (at least depth)");
  within(hp.heads, 1, 1024, "heads");
  real(hp.mAttn, 1e-3, 16, "m_attn");
  real(hp.mMlp, 1e-3, 16, "m_mlp");
  need(hp.attnOrder == 2,
       "only attn_order 2 (row, column, previous block) is implemented; got " + std::to_string(hp.attnOrder));
  within(hp.blocks, 1, 1 << 20, "blocks");
  within(hp.bins, 1, 1 << 20, "bins");
  within(hp.yBinsGenre, 1, 1 << 20, "y_bins_genre");
  within(hp.yBinsArtist, 1, 1 << 20, "y_bins_artist");
  within(hp.tBins, 1, 1 << 20, "t_bins");
  within(hp.maxBowGenreSize, 1, 1024, "max_bow_genre_size");
  real(hp.minDuration, 0, 1e6, "min_duration");
  real(hp.maxDuration, 0, 1e6, "max_duration");
  within(hp.condTotalLength, 1, int64_t(1) << 40, "cond_total_length");
  within(hp.condOffset, 0, int64_t(1) << 40, "cond_offset");
  need(hp.condArtist >= 0 && hp.condArtist < hp.yBinsArtist, "cond_artist must index y_bins_artist");
  need(hp.condGenre >= 0 && hp.condGenre < hp.yBinsGenre, "cond_genre must index y_bins_genre");
  if (!p.empty()) throwProblems(label, "inconsistent hyperparameters", p);

  // Then the relations and every derived quantity, in long double so that none can overflow while it is judged.
  need(hp.maxDuration >= hp.minDuration + 1,
       "need min_duration + 1 s <= max_duration (the timing bins divide by their difference)");
  need(hp.nCtx % hp.blocks == 0, "n_ctx must be a multiple of blocks");
  need(hp.nState() > 0 && hp.nState() % hp.heads == 0, "int(width * m_attn) must be a positive multiple of heads");
  need(hp.hidden() > 0, "int(width * m_mlp) must be positive");
  need(hp.vqState() > 0, "int(vq_width * vq_m_conv) must be positive");
  long double hop = 1;
  for (size_t i = 0; i < hp.vqDownsT.size(); ++i)
    hop *= std::pow(static_cast<long double>(hp.vqStridesT[i]), static_cast<long double>(hp.vqDownsT[i]));
  need(hop <= 65536, "the hop (product of strides_t ** downs_t) must be at most 65536");
  // The encoder's dilations grow as growth ** j (j < vq_depth) and its receptive field sums them, scaled by the
  // strides below them: both must stay far inside what a convolution's padding and the front-end's crop hold.
  constexpr long double kMaxSamples = 2147483647.0L;  // 2^31 - 1: about 13.5 hours at 44.1 kHz
  const long double maxDilation = hp.vqDepth > 0 ? std::pow(static_cast<long double>(hp.vqDilationGrowthRate),
                                                            static_cast<long double>(hp.vqDepth - 1))
                                                 : 1;
  need(maxDilation <= kMaxSamples, "vq_dilation_growth_rate " + std::to_string(hp.vqDilationGrowthRate) +
                                       " ** (vq_depth " + std::to_string(hp.vqDepth) +
                                       " - 1) makes a dilation beyond 2^31 samples");
  long double rf = 1, jump = 1;
  for (size_t b = 0; b < hp.vqDownsT.size(); ++b) {
    for (int64_t i = 0; i < hp.vqDownsT[b]; ++i) {
      rf += (2.0L * hp.vqStridesT[b] - 1) * jump;
      jump *= hp.vqStridesT[b];
      long double dil = 1;
      for (int64_t j = 0; j < hp.vqDepth; ++j, dil *= hp.vqDilationGrowthRate) rf += 2 * dil * jump;
    }
    rf += 2 * jump;
  }
  const long double window = static_cast<long double>(hp.nCtx) * hop;
  char rfText[32];
  std::snprintf(rfText, sizeof rfText, "%.3g", static_cast<double>(rf));
  need(rf + hop <= kMaxSamples,
       std::string("the encoder's receptive field (") + rfText + " samples) must stay under 2^31 samples");
  need(window + rf + 2 * hop <= kMaxSamples,
       "a window plus the encoder's margin (n_ctx * hop + receptive field) must stay under 2^31 samples");
  need(static_cast<long double>(hp.maxDuration) * hp.sampleRate <= static_cast<long double>(int64_t(1) << 50),
       "max_duration * sample_rate is too large for the timing bins");
  if (!p.empty()) throwProblems(label, "inconsistent hyperparameters", p);
}

Hparams presetHparams(const std::string& preset) {
  Hparams hp;
  hp.preset = preset;
  if (preset == "5b") return hp;
  if (preset == "tiny") {
    // Real VQ-VAE and label tables; a narrow, shallow prior with the real three attention kinds.
    hp.nCtx = 1024;
    hp.width = 128;
    hp.depth = 6;
    hp.fullDepth = 6;
    hp.heads = 2;
    hp.blocks = 32;
    return hp;
  }
  if (preset == "demo") {
    // The tiny prior with the 5B's context: n_ctx 8192 tokens (23.78 s) and block_ctx 64, so a 10 s clip is fitted
    // to the window (tiled, upsampled, or left as a 3,445-token short input) exactly as with the real model. The
    // VQ-VAE keeps its strides (hop 128) with a slimmer encoder (width 8, one resnet block per down step): with the
    // real one, encoding 25 s of audio takes seconds per clip on a CPU, too slow for a demo of 200 clips.
    hp.vqWidth = 8;
    hp.vqDepth = 1;
    hp.nCtx = 8192;
    hp.width = 128;
    hp.depth = 6;
    hp.fullDepth = 6;
    hp.heads = 2;
    hp.blocks = 128;
    return hp;
  }
  if (preset == "small") {
    // Sized for CPU timing: the 5B's block_ctx (64) and attention pattern at a fraction of the width.
    hp.nCtx = 2048;
    hp.width = 1024;
    hp.depth = 12;
    hp.fullDepth = 12;
    hp.heads = 4;
    hp.blocks = 32;
    return hp;
  }
  throw Error(code::kInvalidArgument, "unknown preset '" + preset + "' (expected tiny, demo, small or 5b)");
}

std::vector<TensorSpec> expectedTensors(const Hparams& hp) {
  std::vector<TensorSpec> out;
  for (int64_t b = 0; b < hp.vqLevels; ++b) {
    std::string pre = "encoders.2.level_blocks." + std::to_string(b) + ".model.";
    int64_t nDown = hp.vqDownsT[b], stride = hp.vqStridesT[b];
    for (int64_t i = 0; i < nDown; ++i) {
      int64_t cin = i > 0 ? hp.vqWidth : (b == 0 ? 1 : hp.vqEmbWidth);
      std::string blk = pre + std::to_string(i) + ".";
      addConv(out, blk + "0.", hp.vqWidth, cin, 2 * stride);
      for (int64_t j = 0; j < hp.vqDepth; ++j) {
        std::string res = blk + "1.model." + std::to_string(j) + ".model.";
        addConv(out, res + "1.", hp.vqState(), hp.vqWidth, 3);
        addConv(out, res + "3.", hp.vqWidth, hp.vqState(), 1);
      }
    }
    addConv(out, pre + std::to_string(nDown) + ".", hp.vqEmbWidth, hp.vqWidth, 3);
  }
  out.push_back({"bottleneck.level_blocks.2.k", {hp.vqLBins, hp.vqEmbWidth}, torch::kFloat32, true});
  const auto f32 = torch::kFloat32, f16 = torch::kFloat16;
  out.push_back({"prior.x_emb.weight", {hp.bins, hp.width}, f32});
  out.push_back({"prior.pos_emb.pos_emb", {hp.nCtx, hp.width}, f32});
  out.push_back({"y_emb.bow_genre_emb.emb.weight", {hp.yBinsGenre, hp.width}, f32});
  out.push_back({"y_emb.artist_emb.emb.weight", {hp.yBinsArtist, hp.width}, f32});
  out.push_back({"y_emb.total_length_emb.emb.weight", {hp.tBins, hp.width}, f32});
  out.push_back({"y_emb.absolute_pos_emb.emb.weight", {hp.tBins, hp.width}, f32});
  out.push_back({"y_emb.relative_pos_emb.emb.weight", {hp.tBins, hp.width}, f32});
  const int64_t w = hp.width, ns = hp.nState(), hid = hp.hidden();
  for (int64_t i = 0; i < hp.depth; ++i) {
    std::string p = "prior.transformer._attn_mods." + std::to_string(i) + ".";
    out.push_back({p + "attn.c_attn.w", {w, 3 * ns}, f16});
    out.push_back({p + "attn.c_attn.b", {3 * ns}, f32});
    out.push_back({p + "attn.c_proj.w", {ns, w}, f16});
    out.push_back({p + "attn.c_proj.b", {w}, f32});
    out.push_back({p + "ln_0.weight", {w}, f32});
    out.push_back({p + "ln_0.bias", {w}, f32});
    out.push_back({p + "mlp.c_fc.w", {w, hid}, f16});
    out.push_back({p + "mlp.c_fc.b", {hid}, f32});
    out.push_back({p + "mlp.c_proj.w", {hid, w}, f16});
    out.push_back({p + "mlp.c_proj.b", {w}, f32});
    out.push_back({p + "ln_1.weight", {w}, f32});
    out.push_back({p + "ln_1.bias", {w}, f32});
  }
  return out;
}

std::string dtypeName(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32:
      return "float32";
    case torch::kFloat16:
      return "float16";
    case torch::kBFloat16:
      return "bfloat16";
    case torch::kFloat64:
      return "float64";
    case torch::kInt64:
      return "int64";
    case torch::kInt32:
      return "int32";
    default:
      return c10::toString(t);
  }
}

namespace {

// Elements a tensor's view reaches in its storage (offset + the farthest index + 1), or -1 for a negative
// stride or offset; saturates instead of overflowing.
int64_t viewExtent(const torch::Tensor& t) {
  if (t.numel() == 0) return 0;
  if (t.storage_offset() < 0) return -1;
  int64_t far = t.storage_offset();
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.stride(d) < 0) return -1;
    int64_t step;
    if (__builtin_mul_overflow(t.size(d) - 1, t.stride(d), &step) || __builtin_add_overflow(far, step, &far))
      return INT64_MAX;
  }
  return far + 1;
}

// How many elements are NaN or infinite, and the first one: an IEEE value is non-finite exactly when its
// exponent bits are all ones, so the scan reads raw bits (no float compare, no copy) and vectorises.
template <typename Bits>
std::pair<int64_t, int64_t> nonFinite(const Bits* p, int64_t n, Bits exponent) {
  constexpr int64_t kBlock = 8192;
  int64_t count = 0, first = -1;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    Bits any = 0;
    for (int64_t i = b; i < e; ++i) any |= static_cast<Bits>((p[i] & exponent) == exponent);
    if (!any) continue;
    for (int64_t i = b; i < e; ++i) {
      if ((p[i] & exponent) == exponent) {
        if (first < 0) first = i;
        ++count;
      }
    }
  }
  return {count, first};
}

std::string indexString(int64_t flat, c10::IntArrayRef sizes) {
  std::vector<int64_t> idx(sizes.size());
  for (size_t d = sizes.size(); d-- > 0;) {
    idx[d] = sizes[d] ? flat % sizes[d] : 0;
    flat = sizes[d] ? flat / sizes[d] : 0;
  }
  std::string s = "[";
  for (size_t d = 0; d < idx.size(); ++d) s += (d ? ", " : "") + std::to_string(idx[d]);
  return s + "]";
}

// "holds 3 non-finite values (NaN at [12, 40] first)", or empty when every value is finite. Only called on
// contiguous float32/float16 tensors whose storage is proven to hold them.
std::string describeNonFinite(const torch::Tensor& t) {
  std::pair<int64_t, int64_t> r{0, -1};
  bool nan = false;
  if (t.scalar_type() == torch::kFloat32) {
    const auto* p = static_cast<const uint32_t*>(t.data_ptr());
    r = nonFinite<uint32_t>(p, t.numel(), 0x7F800000u);
    if (r.first) nan = (p[r.second] & 0x007FFFFFu) != 0;
  } else if (t.scalar_type() == torch::kFloat16) {
    const auto* p = static_cast<const uint16_t*>(t.data_ptr());
    r = nonFinite<uint16_t>(p, t.numel(), 0x7C00u);
    if (r.first) nan = (p[r.second] & 0x03FFu) != 0;
  }
  if (r.first == 0) return "";
  return "holds " + std::to_string(r.first) + " non-finite value" + (r.first == 1 ? "" : "s") + " (" +
         (nan ? "NaN" : "Inf") + " at " + indexString(r.second, t.sizes()) + (r.first == 1 ? ")" : " first)");
}

Checkpoint loadFrom(std::shared_ptr<const archive::Source> src, const std::string& label, const LoadOptions& options) {
  auto records = archive::readDirectory(*src, label, options.verifyWeights);
  auto reader = std::make_shared<archive::CheckedReader>(src, std::move(records), options.verifyWeights);
  torch::jit::Module m;
  try {
    // Debug records are never read: calmkit needs none of them, and each would be one more thing to parse.
    m = torch::jit::load(std::static_pointer_cast<caffe2::serialize::ReadAdapterInterface>(reader), torch::kCPU,
                         /*load_debug_files=*/false);
  } catch (const std::exception& e) {
    if (reader->refused()) {
      const auto& r = reader->records()[reader->damaged().back()];
      throw Error(code::kModelFormat, label + ": record '" + r.name +
                                          "' is damaged: its bytes do not match the CRC-32 the archive stores (the "
                                          "file changed after it was written)");
    }
    throw Error(code::kModelFormat, label + ": not a readable TorchScript archive (truncated or another format): " +
                                        torchMessage(e.what()));
  }
  Checkpoint ck;
  ck.fileBytes = static_cast<int64_t>(src->size());
  readAttributes(m, ck.hp, label);
  checkHparams(ck.hp, label);
  for (const auto& p : m.named_parameters(/*recurse=*/true)) ck.tensors.emplace(p.name, p.value);
  for (const auto& b : m.named_buffers(/*recurse=*/true)) ck.tensors.emplace(b.name, b.value);

  std::vector<std::string> problems;
  std::set<const archive::Record*> attributed;
  for (const auto& spec : expectedTensors(ck.hp)) {
    auto it = ck.tensors.find(spec.key);
    if (it == ck.tensors.end()) {
      problems.push_back("missing key '" + spec.key + "'");
      continue;
    }
    const torch::Tensor& t = it->second;
    bool ok = true;
    if (t.sizes() != c10::IntArrayRef(spec.shape)) {
      problems.push_back("'" + spec.key + "' has shape " + shapeString(t.sizes()) + ", expected " +
                         shapeString(spec.shape));
      ok = false;
    }
    if (t.scalar_type() != spec.dtype) {
      problems.push_back("'" + spec.key + "' has dtype " + dtypeName(t.scalar_type()) + ", expected " +
                         dtypeName(spec.dtype));
      ok = false;
    }
    if (!ok || t.numel() == 0) continue;
    // The loader sizes a storage by the element count its pickle declares and fills it with whatever bytes the
    // record holds; only the record's own size says whether the tensor's memory is really there.
    const int64_t itemBytes = static_cast<int64_t>(t.element_size());
    const int64_t needBytes = static_cast<int64_t>(t.numel()) * itemBytes;
    const archive::Record* rec = reader->recordAt(t.storage().data());
    if (!rec) {
      problems.push_back("'" + spec.key + "': its data record is empty or was not read whole (" +
                         std::to_string(needBytes) + " bytes of " + dtypeName(t.scalar_type()) + " " +
                         shapeString(t.sizes()) + " expected)");
      continue;
    }
    attributed.insert(rec);
    const int64_t extent = viewExtent(t);
    if (static_cast<uint64_t>(t.storage().nbytes()) != rec->size || extent < 0 ||
        extent > static_cast<int64_t>(rec->size) / itemBytes) {
      problems.push_back("'" + spec.key + "': its data record '" + rec->name + "' holds " + std::to_string(rec->size) +
                         " bytes; " + dtypeName(t.scalar_type()) + " " + shapeString(t.sizes()) + " needs " +
                         std::to_string(needBytes));
      continue;
    }
    if (!options.verifyWeights) continue;
    if (std::find(reader->damaged().begin(), reader->damaged().end(),
                  static_cast<size_t>(rec - reader->records().data())) != reader->damaged().end()) {
      problems.push_back("'" + spec.key + "': its data record '" + rec->name +
                         "' is damaged (its bytes do not match the archive's CRC-32)");
      continue;
    }
    if (!t.is_contiguous()) {
      problems.push_back("'" + spec.key + "' is not stored contiguously");
      continue;
    }
    const std::string bad = describeNonFinite(t);
    if (!bad.empty()) problems.push_back("'" + spec.key + "' " + bad);
  }
  // A damaged record that feeds no tensor calmkit uses still means the file is not what was written.
  for (size_t i : reader->damaged()) {
    const auto* rec = &reader->records()[i];
    if (!attributed.count(rec))
      problems.push_back("record '" + rec->name + "' is damaged (its bytes do not match the archive's CRC-32)");
  }
  if (!problems.empty()) throwProblems(label, "checkpoint is not sound", problems);
  return ck;
}

}  // namespace

Checkpoint loadCheckpoint(const std::string& path, const LoadOptions& options) {
  return loadFrom(std::make_shared<archive::FileSource>(path), path, options);
}

Checkpoint loadCheckpointBytes(const uint8_t* data, size_t size, const std::string& label, const LoadOptions& options) {
  return loadFrom(std::make_shared<archive::MemorySource>(data, size), label, options);
}

void saveCheckpoint(const Hparams& hp, const std::map<std::string, torch::Tensor>& tensors, const std::string& path) {
  std::set<std::string> buffers;
  for (const auto& s : expectedTensors(hp)) {
    if (s.buffer) buffers.insert(s.key);
  }
  ModuleTree tree;
  for (const auto& [key, t] : tensors) tree.add(key, t, buffers.count(key) > 0);
  auto& root = tree.root();
  for (const auto& a : attrTable()) root.register_attribute(a.name, attrType(a.kind), a.get(hp));
  // Checked here so the message names the real problem rather than LibTorch's writer's; written to a temp file
  // and renamed, so a failed or interrupted write never leaves a partial checkpoint under the name.
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  const auto dirStatus = fs::status(dir, ec);
  const std::string cannot = path + ": cannot write the checkpoint: ";
  if (!fs::exists(dirStatus)) throw Error(code::kModelFile, cannot + "the folder " + dir.string() + " does not exist");
  if (!fs::is_directory(dirStatus)) throw Error(code::kModelFile, cannot + dir.string() + " is not a folder");
  if (fs::is_directory(fs::status(target, ec))) throw Error(code::kModelFile, cannot + "it is a directory");
  static std::atomic<uint64_t> serial{0};
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(serial++);
  try {
    root.save(tmp);
  } catch (const std::exception& e) {
    fs::remove(tmp, ec);
    throw Error(code::kModelFile, cannot + torchMessage(e.what()));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    fs::remove(tmp, ec);
    throw Error(code::kModelFile, cannot + std::strerror(err));
  }
}

Summary summarise(const Checkpoint& ck) {
  Summary s;
  std::map<std::string, DtypeBytes> by;
  for (const auto& [key, t] : ck.tensors) {
    int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    s.parameters += t.numel();
    s.bytes += bytes;
    auto& d = by[dtypeName(t.scalar_type())];
    d.dtype = dtypeName(t.scalar_type());
    d.tensors += 1;
    d.elements += t.numel();
    d.bytes += bytes;
    if (key.rfind("prior.transformer._attn_mods.0.", 0) == 0) s.blockBytes += bytes;
  }
  for (auto& [_, d] : by) s.byDtype.push_back(d);
  return s;
}

}  // namespace calmkit::jukebox
