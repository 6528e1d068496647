#include "core/checkpoint.h"

#include <torch/script.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <sys/stat.h>

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

#define CK_INT(attr, member)                                                           \
  AttrDesc{attr, AttrDesc::Int, [](Hparams& h, const c10::IValue& v) { h.member = v.toInt(); }, \
           [](const Hparams& h) { return c10::IValue(h.member); }}
#define CK_FLOAT(attr, member)                                                              \
  AttrDesc{attr, AttrDesc::Float, [](Hparams& h, const c10::IValue& v) { h.member = v.toDouble(); }, \
           [](const Hparams& h) { return c10::IValue(h.member); }}
#define CK_STR(attr, member)                                                                   \
  AttrDesc{attr, AttrDesc::Str, [](Hparams& h, const c10::IValue& v) { h.member = v.toStringRef(); }, \
           [](const Hparams& h) { return c10::IValue(h.member); }}
#define CK_INTS(attr, member)                                                                   \
  AttrDesc{attr, AttrDesc::IntList, [](Hparams& h, const c10::IValue& v) { h.member = v.toIntVector(); }, \
           [](const Hparams& h) { return c10::IValue(h.member); }}

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
    case AttrDesc::Int: return c10::IntType::get();
    case AttrDesc::Float: return c10::FloatType::get();
    case AttrDesc::Str: return c10::StringType::get();
    case AttrDesc::IntList: return c10::ListType::ofInts();
  }
  return c10::IntType::get();
}

bool attrMatches(AttrDesc::Kind k, const c10::IValue& v) {
  switch (k) {
    case AttrDesc::Int: return v.isInt();
    case AttrDesc::Float: return v.isDouble() || v.isInt();
    case AttrDesc::Str: return v.isString();
    case AttrDesc::IntList: return v.isIntList();
  }
  return false;
}

const char* kindName(AttrDesc::Kind k) {
  switch (k) {
    case AttrDesc::Int: return "int";
    case AttrDesc::Float: return "float";
    case AttrDesc::Str: return "str";
    case AttrDesc::IntList: return "List[int]";
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

[[noreturn]] void throwProblems(const std::string& label, const std::string& what, const std::vector<std::string>& problems) {
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
      problems.push_back(std::string("attribute '") + a.name + "' should be " + kindName(a.kind) + ", is " + v.tagKind());
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
  need(hp.calmkitFormat == 1, "calmkit_format " + std::to_string(hp.calmkitFormat) + " is not supported (expected 1)");
  need(hp.sampleRate > 0, "sample_rate must be positive");
  need(hp.vqLevels >= 1 && hp.vqLevels <= 8, "vq_levels must be in 1..8");
  need(static_cast<int64_t>(hp.vqDownsT.size()) == hp.vqLevels, "vq_downs_t must have vq_levels entries");
  need(static_cast<int64_t>(hp.vqStridesT.size()) == hp.vqLevels, "vq_strides_t must have vq_levels entries");
  for (auto d : hp.vqDownsT) need(d >= 1 && d <= 8, "vq_downs_t entries must be in 1..8");
  for (auto s : hp.vqStridesT) need(s >= 2 && s % 2 == 0 && s <= 16, "vq_strides_t entries must be even, 2..16");
  double hop = 1;
  for (size_t i = 0; i < hp.vqDownsT.size() && i < hp.vqStridesT.size(); ++i) hop *= std::pow(double(hp.vqStridesT[i]), double(hp.vqDownsT[i]));
  need(hop <= 65536, "the hop (product of strides_t ** downs_t) must be at most 65536");
  need(hp.vqEmbWidth > 0 && hp.vqLBins > 0 && hp.vqWidth > 0 && hp.vqDepth >= 0 && hp.vqState() > 0,
       "vq widths, depth and l_bins must be positive");
  need(hp.vqDilationGrowthRate >= 1, "vq_dilation_growth_rate must be >= 1");
  need(hp.nCtx > 0 && hp.width > 0 && hp.depth > 0 && hp.heads > 0 && hp.blocks > 0, "n_ctx, width, depth, heads, blocks must be positive");
  need(hp.fullDepth >= hp.depth, "full_depth must be >= depth");
  // Bounds far above any real Jukebox, so a corrupt header fails here rather than in a huge allocation.
  need(hp.nCtx <= (1 << 20) && hp.width <= (1 << 16) && hp.depth <= 4096 && hp.heads <= 1024 && hp.bins <= (1 << 20) &&
           hp.yBinsGenre <= (1 << 20) && hp.yBinsArtist <= (1 << 20) && hp.tBins <= (1 << 20) && hp.vqLBins <= (1 << 20) &&
           hp.vqWidth <= 4096 && hp.vqEmbWidth <= 4096 && hp.vqDepth <= 64 && hp.mAttn <= 16 && hp.mMlp <= 16 &&
           hp.vqMConv <= 16 && hp.maxBowGenreSize <= 1024 && hp.vqDilationGrowthRate <= 16,
       "a hyperparameter is implausibly large (n_ctx <= 2^20, width <= 65536, depth <= 4096, ...)");
  need(hp.blocks > 0 && hp.nCtx % std::max<int64_t>(hp.blocks, 1) == 0, "n_ctx must be a multiple of blocks");
  need(hp.nState() > 0 && hp.nState() % std::max<int64_t>(hp.heads, 1) == 0, "int(width * m_attn) must be a positive multiple of heads");
  need(hp.hidden() > 0, "int(width * m_mlp) must be positive");
  need(hp.attnOrder == 2, "only attn_order 2 (row, column, previous block) is implemented; got " + std::to_string(hp.attnOrder));
  need(hp.bins > 0 && hp.yBinsGenre > 0 && hp.yBinsArtist > 0 && hp.tBins > 0, "bins, y_bins and t_bins must be positive");
  need(hp.maxBowGenreSize >= 1, "max_bow_genre_size must be >= 1");
  need(hp.condArtist >= 0 && hp.condArtist < hp.yBinsArtist, "cond_artist must index y_bins_artist");
  need(hp.condGenre >= 0 && hp.condGenre < hp.yBinsGenre, "cond_genre must index y_bins_genre");
  need(hp.minDuration >= 0 && hp.maxDuration > hp.minDuration, "need 0 <= min_duration < max_duration");
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
    case torch::kFloat32: return "float32";
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat64: return "float64";
    case torch::kInt64: return "int64";
    case torch::kInt32: return "int32";
    default: return c10::toString(t);
  }
}

Checkpoint loadCheckpoint(const std::string& path) {
  struct stat st {};
  if (path.empty()) throw Error(code::kModelFile, "model path is an empty string");
  if (stat(path.c_str(), &st) != 0) throw Error(code::kModelFile, path + ": no such file");
  if (S_ISDIR(st.st_mode)) throw Error(code::kModelFile, path + ": is a directory, not a checkpoint file");
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) throw Error(code::kModelFile, path + ": cannot be opened for reading");
  }
  torch::jit::Module m;
  try {
    m = torch::jit::load(path, torch::kCPU);
  } catch (const std::exception& e) {
    std::string why = e.what();
    auto nl = why.find('\n');
    if (nl != std::string::npos) why = why.substr(0, nl);
    throw Error(code::kModelFormat, path + ": not a readable TorchScript archive (truncated or another format): " + why);
  }
  Checkpoint ck;
  ck.fileBytes = static_cast<int64_t>(st.st_size);
  readAttributes(m, ck.hp, path);
  checkHparams(ck.hp, path);
  for (const auto& p : m.named_parameters(/*recurse=*/true)) ck.tensors.emplace(p.name, p.value);
  for (const auto& b : m.named_buffers(/*recurse=*/true)) ck.tensors.emplace(b.name, b.value);

  std::vector<std::string> problems;
  for (const auto& spec : expectedTensors(ck.hp)) {
    auto it = ck.tensors.find(spec.key);
    if (it == ck.tensors.end()) {
      problems.push_back("missing key '" + spec.key + "'");
      continue;
    }
    const torch::Tensor& t = it->second;
    if (t.sizes() != c10::IntArrayRef(spec.shape)) {
      problems.push_back("'" + spec.key + "' has shape " + shapeString(t.sizes()) + ", expected " + shapeString(spec.shape));
    }
    if (t.scalar_type() != spec.dtype) {
      problems.push_back("'" + spec.key + "' has dtype " + dtypeName(t.scalar_type()) + ", expected " + dtypeName(spec.dtype));
    }
  }
  if (!problems.empty()) throwProblems(path, "checkpoint does not match its hyperparameters", problems);
  return ck;
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
  try {
    root.save(path);
  } catch (const std::exception& e) {
    throw Error(code::kModelFile, path + ": cannot write the checkpoint: " + std::string(e.what()).substr(0, 300));
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
