// Binding of the Jukebox extractor: load, info, inspect, init, extract (pooled results, or raw activations
// streamed in chunks with backpressure through the shared control handle), dispose. Test-only building blocks
// are in napi/testing.cpp.
#include <climits>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "core/error.h"
#include "core/extract.h"
#include "core/random_model.h"
#include "core/runtime.h"
#include "napi/async.h"
#include "napi/control.h"
#include "napi/convert.h"
#include "napi/events.h"
#include "napi/exports.h"

namespace calmkit_napi {
namespace {

namespace jb = calmkit::jukebox;
namespace code = calmkit::code;

// Distinct tags so a handle of one kind is never taken for another (or for any other External).
const napi_type_tag kModelTag = {0x6a756b65626f7831ULL, 0x6d6f64656c000001ULL};

// Raw activations a stream may have sent and JS not yet taken: bounds host memory when JS consumes slowly.
constexpr int64_t kMaxPendingChunks = 2;

struct ModelHandle {
  std::mutex mu;
  std::shared_ptr<jb::Model> model;  // null once disposed; running jobs keep their own reference
};

std::shared_ptr<jb::Model> LiveModel(const Napi::Value& v) {
  auto* h = Unwrap<ModelHandle>(v, kModelTag, "model");
  std::lock_guard<std::mutex> lock(h->mu);
  if (!h->model) ThrowCoded(v.Env(), code::kModelDisposed, "the Jukebox model has been disposed");
  return h->model;
}

// ---- load / info / dispose ---------------------------------------------------------------------------------

Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowCoded(env, code::kInvalidArgument, "model path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string device = "cpu", precision = "fp32";
  jb::LoadOptions load;
  if (info[1].IsObject()) {
    device = GetString(info[1].As<Napi::Object>(), "device", "cpu");
    precision = GetString(info[1].As<Napi::Object>(), "precision", "fp32");
    load.verifyWeights = GetBool(info[1].As<Napi::Object>(), "verifyWeights", true);
  }
  try {
    // "auto" on the CPU reads runtime::cpuBf16, which captures oneDNN's log on stdout once per process: probe
    // here, on the JS thread, while nothing else can write to stdout.
    if (precision == "auto")
      (void)calmkit::runtime::cpuBf16();
    else
      (void)jb::resolvePrecision(precision, torch::kCPU);
  } catch (const calmkit::Error& e) {
    ThrowCoded(env, e.code(), e.what());
  }
  return Submit<std::shared_ptr<jb::Model>>(
      env, loadExecutor(), [path, device, precision, load] { return jb::Model::load(path, device, precision, load); },
      [](Napi::Env env, std::shared_ptr<jb::Model>& m) -> Napi::Value {
        auto* h = new ModelHandle();
        h->model = std::move(m);
        auto ext = Napi::External<ModelHandle>::New(env, h, [](Napi::Env, ModelHandle* p) { delete p; });
        ext.TypeTag(&kModelTag);
        return ext;
      });
}

Napi::Object InfoObject(Napi::Env env, const jb::Hparams& h, const jb::Summary& s, int64_t fileBytes) {
  auto o = Napi::Object::New(env);
  auto num = [&](const char* k, double v) { o.Set(k, Napi::Number::New(env, v)); };
  o.Set("preset", h.preset);
  o.Set("source", h.source);
  num("sampleRate", h.sampleRate);
  num("hop", h.hop());
  num("nCtx", h.nCtx);
  num("windowSamples", h.windowSamples());
  num("encoderMarginSamples", jb::encoderMarginSamples(h));
  num("firstWindowSamples", jb::firstWindowSamples(h));
  num("width", h.width);
  num("depth", h.depth);
  num("fullDepth", h.fullDepth);
  num("heads", h.heads);
  num("nState", h.nState());
  num("mlpWidth", h.hidden());
  num("blocks", h.blocks);
  num("blockCtx", h.blockCtx());
  num("attnOrder", h.attnOrder);
  num("bins", h.bins);
  auto vq = Napi::Object::New(env);
  vq.Set("levels", Napi::Number::New(env, h.vqLevels));
  vq.Set("downsT", ToNumberArray(env, h.vqDownsT));
  vq.Set("stridesT", ToNumberArray(env, h.vqStridesT));
  vq.Set("width", Napi::Number::New(env, h.vqWidth));
  vq.Set("depth", Napi::Number::New(env, h.vqDepth));
  vq.Set("embWidth", Napi::Number::New(env, h.vqEmbWidth));
  vq.Set("codebookSize", Napi::Number::New(env, h.vqLBins));
  vq.Set("dilationGrowthRate", Napi::Number::New(env, h.vqDilationGrowthRate));
  o.Set("vqvae", vq);
  auto label = Napi::Object::New(env);
  label.Set("totalLength", Napi::Number::New(env, h.condTotalLength));
  label.Set("offset", Napi::Number::New(env, h.condOffset));
  label.Set("artist", Napi::Number::New(env, h.condArtist));
  label.Set("genre", Napi::Number::New(env, h.condGenre));
  label.Set("minDuration", Napi::Number::New(env, h.minDuration));
  label.Set("maxDuration", Napi::Number::New(env, h.maxDuration));
  label.Set("tBins", Napi::Number::New(env, h.tBins));
  o.Set("label", label);
  num("parameters", s.parameters);
  num("bytes", s.bytes);
  num("fileBytes", fileBytes);
  num("blockBytes", s.blockBytes);
  auto dtypes = Napi::Array::New(env, s.byDtype.size());
  for (size_t i = 0; i < s.byDtype.size(); ++i) {
    auto d = Napi::Object::New(env);
    d.Set("dtype", s.byDtype[i].dtype);
    d.Set("tensors", Napi::Number::New(env, s.byDtype[i].tensors));
    d.Set("elements", Napi::Number::New(env, s.byDtype[i].elements));
    d.Set("bytes", Napi::Number::New(env, s.byDtype[i].bytes));
    dtypes.Set(static_cast<uint32_t>(i), d);
  }
  o.Set("dtypes", dtypes);
  return o;
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  auto m = LiveModel(info[0]);
  auto o = InfoObject(info.Env(), m->hparams(), m->summary(), m->fileBytes());
  o.Set("device", m->device().str());
  o.Set("precision", jb::precisionName(m->precision()));
  o.Set("blockKernels", m->blockKernels());
  return o;
}

struct Inspected {
  jb::Hparams hp;
  jb::Summary summary;
  int64_t fileBytes = 0;
};

// inspect(path, {verifyWeights?}): validates a checkpoint and describes it without preparing it for a forward pass.
Napi::Value Inspect(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) ThrowCoded(info.Env(), code::kInvalidArgument, "model path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  jb::LoadOptions load;
  if (info[1].IsObject()) load.verifyWeights = GetBool(info[1].As<Napi::Object>(), "verifyWeights", true);
  return Submit<Inspected>(
      info.Env(), loadExecutor(),
      [path, load] {
        jb::Checkpoint ck = jb::loadCheckpoint(path, load);
        return Inspected{ck.hp, jb::summarise(ck), ck.fileBytes};
      },
      [](Napi::Env env, Inspected& r) -> Napi::Value { return InfoObject(env, r.hp, r.summary, r.fileBytes); });
}

// init({preset, layers?, seed?, out}): writes a random-weight checkpoint.
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowCoded(env, code::kInvalidArgument, "init options must be an object");
  auto o = info[0].As<Napi::Object>();
  const std::string out = GetString(o, "out", "");
  if (out.empty()) ThrowCoded(env, code::kInvalidArgument, "init needs an output path ('out')");
  jb::Hparams hp;
  try {
    hp = jb::presetHparams(GetString(o, "preset", "tiny"));
  } catch (const calmkit::Error& e) {
    ThrowCoded(env, e.code(), e.what());
  }
  // Absent means the preset's depth; a given value is checked by the core (checkHparams: 1..4096).
  if (!o.Get("layers").IsUndefined() && !o.Get("layers").IsNull()) {
    hp.depth = IntegerAt(o.Get("layers"), "layers");
    hp.fullDepth = std::max(hp.fullDepth, hp.depth);
  }
  const int64_t seed = GetInt(o, "seed", 0, 0);  // a uint64: a negative seed has no value to cast to
  hp.source = "random init, seed " + std::to_string(seed);
  return Submit<bool>(
      env, computeExecutor(),
      [hp, seed, out] {
        jb::writeRandomModel(hp, static_cast<uint64_t>(seed), out);
        return true;
      },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  auto* h = Unwrap<ModelHandle>(info[0], kModelTag, "model");
  std::lock_guard<std::mutex> lock(h->mu);
  h->model.reset();
  return info.Env().Undefined();
}

// ---- extract -----------------------------------------------------------------------------------------------

// Forwards core events to a JS callback. Chunks wait for credit so at most kMaxPendingChunks raw arrays are
// in flight; the job ends only after every event has run on the JS thread, so none arrives after the result.
class JsSink : public jb::Sink {
 public:
  JsSink(std::shared_ptr<Control> ctl, std::optional<Napi::ThreadSafeFunction> tsfn)
      : ctl_(ctl), events_(std::move(ctl), std::move(tsfn)) {}

  void chunk(size_t clip, int layer, int64_t window, int64_t start, torch::Tensor rows) override {
    if (!events_.active()) return;
    {
      std::unique_lock<std::mutex> lock(ctl_->mu);
      ctl_->cv.wait(lock, [&] { return ctl_->cancelled || ctl_->pending < kMaxPendingChunks; });
      if (ctl_->cancelled) throw calmkit::Error(code::kAborted, "extraction aborted");
      ++ctl_->pending;
    }
    events_.send([clip, layer, window, start, rows](Napi::Env env) {
      auto o = Napi::Object::New(env);
      o.Set("type", "chunk");
      o.Set("clip", Napi::Number::New(env, static_cast<double>(clip)));
      o.Set("layer", layer);
      o.Set("window", Napi::Number::New(env, static_cast<double>(window)));
      o.Set("start", Napi::Number::New(env, static_cast<double>(start)));
      o.Set("rows", Napi::Number::New(env, static_cast<double>(rows.size(0))));
      o.Set("data", TensorToFloat32Array(env, rows));
      return o;
    });
  }

  void progress(const jb::Progress& p) override {
    if (!events_.active()) return;
    events_.send([p](Napi::Env env) {
      auto o = Napi::Object::New(env);
      o.Set("type", "progress");
      o.Set("clipsDone", Napi::Number::New(env, static_cast<double>(p.clipsDone)));
      o.Set("clipsTotal", Napi::Number::New(env, static_cast<double>(p.clipsTotal)));
      o.Set("windowsDone", Napi::Number::New(env, static_cast<double>(p.windowsDone)));
      o.Set("windowsTotal", Napi::Number::New(env, static_cast<double>(p.windowsTotal)));
      o.Set("blocksDone", Napi::Number::New(env, static_cast<double>(p.blocksDone)));
      o.Set("blocksTotal", Napi::Number::New(env, static_cast<double>(p.blocksTotal)));
      return o;
    });
  }

  bool cancelled() override { return ctl_->isCancelled(); }

  // Waits for all events to be delivered, then releases the function.
  void finish() { events_.finish(); }

 private:
  std::shared_ptr<Control> ctl_;
  EventSender events_;
};

std::vector<jb::ClipInput> ReadInputs(const Napi::Value& v) {
  Napi::Env env = v.Env();
  if (!v.IsArray()) ThrowCoded(env, code::kInvalidArgument, "inputs must be an array");
  auto arr = v.As<Napi::Array>();
  std::vector<jb::ClipInput> clips(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value item = arr.Get(i);
    if (!item.IsObject()) ThrowCoded(env, code::kInvalidArgument, "input " + std::to_string(i) + " must be an object");
    auto o = item.As<Napi::Object>();
    auto& c = clips[i];
    c.label = GetString(o, "label", "input " + std::to_string(i));
    Napi::Value tokens = o.Get("tokens");
    if (tokens.IsTypedArray() && tokens.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
      auto t = tokens.As<Napi::Int32Array>();
      c.isTokens = true;
      c.tokens.assign(t.Data(), t.Data() + t.ElementLength());
    } else {
      c.samples = CopyFloat32(o.Get("samples"), "samples");
    }
  }
  return clips;
}

// Types are converted safely here; the core checks the values (validateLayers, segmentTokensFor).
jb::ExtractOptions ReadExtractOptions(const Napi::Value& v) {
  jb::ExtractOptions o;
  auto obj = ObjectAt(v, "extract options");
  o.layers = MapArray(obj.Get("layers"), "layers", [](const Napi::Value& l, const std::string& what) -> int {
    return static_cast<int>(IntegerAt(l, what, INT_MIN, INT_MAX));  // into an int: the core checks the range
  });
  try {
    o.pooling = jb::parsePooling(GetString(obj, "pooling", "mean"));
    o.allWindows = jb::parseWindows(GetString(obj, "windows", "first"));
  } catch (const calmkit::Error& e) {
    ThrowCoded(v.Env(), e.code(), e.what());
  }
  o.segmentTokens = GetInt(obj, "segmentTokens", 0, 0, 1e9);
  o.segmentSeconds = GetNumber(obj, "segmentSeconds", 0);
  return o;
}

Napi::Value ResultToJs(Napi::Env env, jb::ExtractResult& r) {
  auto o = Napi::Object::New(env);
  o.Set("segmentTokens", Napi::Number::New(env, static_cast<double>(r.segmentTokens)));
  auto clips = Napi::Array::New(env, r.clips.size());
  for (size_t i = 0; i < r.clips.size(); ++i) {
    auto c = Napi::Object::New(env);
    c.Set("tokens", ToInt32Array(env, r.clips[i].tokens));
    c.Set("windows", Napi::Number::New(env, static_cast<double>(r.clips[i].windows)));
    auto layers = Napi::Array::New(env, r.clips[i].layers.size());
    for (size_t j = 0; j < r.clips[i].layers.size(); ++j) {
      auto& f = r.clips[i].layers[j];
      auto lo = Napi::Object::New(env);
      lo.Set("layer", f.layer);
      lo.Set("shape", ToNumberArray(env, f.shape));
      lo.Set("data", ToFloat32Array(env, std::move(f.data)));
      layers.Set(static_cast<uint32_t>(j), lo);
    }
    c.Set("layers", layers);
    clips.Set(static_cast<uint32_t>(i), c);
  }
  o.Set("clips", clips);
  return o;
}

// extract(model, inputs, options, control, onEvent?): pooled features per clip and layer; with pooling 'none'
// the raw rows arrive only through onEvent ({type: 'chunk'}), each to be acknowledged with consumed(control).
Napi::Value Extract(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = LiveModel(info[0]);
  auto clips = std::make_shared<std::vector<jb::ClipInput>>(ReadInputs(info[1]));
  auto opts = ReadExtractOptions(info[2]);
  auto ctl = GetControl(info[3]);
  std::optional<Napi::ThreadSafeFunction> tsfn;
  if (info[4].IsFunction()) {
    tsfn = Napi::ThreadSafeFunction::New(env, info[4].As<Napi::Function>(), "calmkit-jukebox-events", 0, 1);
  }
  auto sink = std::make_shared<JsSink>(ctl, tsfn);
  return Submit<jb::ExtractResult>(
      env, computeExecutor(),
      [model, clips, opts, sink] {
        try {
          auto r = jb::extract(*model, *clips, opts, *sink, /*collectNone=*/false);
          sink->finish();
          return r;
        } catch (...) {
          sink->finish();
          throw;
        }
      },
      ResultToJs);
}

}  // namespace

// segmentTokens({segmentTokens?, segmentSeconds?, hop, sampleRate}) -> tokens per segment: the core's rule
// (segmentTokensFor), so the TS side never recomputes it.
Napi::Value SegmentTokens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = ObjectAt(info[0], "segment options");
  jb::ExtractOptions opts;
  opts.segmentTokens = GetInt(o, "segmentTokens", 0);
  opts.segmentSeconds = GetNumber(o, "segmentSeconds", 0);
  jb::Hparams hp;
  hp.sampleRate = GetInt(o, "sampleRate", hp.sampleRate);
  hp.vqLevels = 1;
  hp.vqDownsT = {1};
  hp.vqStridesT = {GetInt(o, "hop", 128)};
  std::string code, message;
  int64_t tokens = 0;
  if (!Guard([&] { tokens = jb::segmentTokensFor(opts, hp); }, code, message)) ThrowCoded(env, code, message);
  return Napi::Number::New(env, static_cast<double>(tokens));
}

void InitJukebox(Napi::Env env, Napi::Object exports) {
  exports.Set("jukeboxSegmentTokens", Napi::Function::New(env, SegmentTokens, "jukeboxSegmentTokens"));
  exports.Set("jukeboxLoad", Napi::Function::New(env, Load, "jukeboxLoad"));
  exports.Set("jukeboxInfo", Napi::Function::New(env, Info, "jukeboxInfo"));
  exports.Set("jukeboxInspect", Napi::Function::New(env, Inspect, "jukeboxInspect"));
  exports.Set("jukeboxInit", Napi::Function::New(env, Init, "jukeboxInit"));
  exports.Set("jukeboxDispose", Napi::Function::New(env, Dispose, "jukeboxDispose"));
  exports.Set("jukeboxExtract", Napi::Function::New(env, Extract, "jukeboxExtract"));
}

}  // namespace calmkit_napi
