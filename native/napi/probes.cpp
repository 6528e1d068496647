// Binding of the probe trainer: trainProbeGrid (with progress and cancellation), predictProbes and, for attention
// probes on segment features, predictSegmentProbes.
#include <algorithm>
#include <climits>
#include <cmath>
#include <memory>

#include "core/error.h"
#include "core/probes.h"
#include "napi/async.h"
#include "napi/control.h"
#include "napi/convert.h"
#include "napi/exports.h"

namespace calmkit_napi {
namespace {

namespace pr = calmkit::probes;

pr::Split ReadSplit(const Napi::Object& task, const char* key, const std::string& label) {
  auto o = ObjectAt(task.Get(key), label + "." + key);
  pr::Split s;
  s.rows = CopyTyped<int32_t, napi_int32_array>(o.Get("rows"), label + "." + key + ".rows", "Int32Array");
  s.targets = CopyTyped<uint8_t, napi_uint8_array>(o.Get("targets"), label + "." + key + ".targets", "Uint8Array");
  return s;
}

pr::Task ReadTask(const Napi::Value& v, const std::string& label) {
  auto o = ObjectAt(v, label);
  pr::Task t;
  t.instrument = GetString(o, "instrument", "");
  t.train = ReadSplit(o, "train", label);
  t.val = ReadSplit(o, "val", label);
  t.test = ReadSplit(o, "test", label);
  return t;
}

pr::Config ReadConfig(const Napi::Value& v, const std::string& label) {
  auto o = ObjectAt(v, label);
  pr::Config c;
  c.hidden = MapArray(o.Get("hidden"), label + ".hidden",
                      [](const Napi::Value& h, const std::string& what) -> int64_t { return IntegerAt(h, what); });
  c.dropout = GetNumber(o, "dropout", c.dropout);
  c.l2 = GetNumber(o, "l2", c.l2);
  // `attention: true` is the attention head's spelling in the TS API; `head` names any head of the core's registry.
  c.head = GetBool(o, "attention", false) ? "attention" : GetString(o, "head", pr::kMlpHead);
  return c;
}

// The row-major feature matrix (copied) and its width: rows of `dim` values, a whole number of them.
std::pair<std::shared_ptr<std::vector<float>>, int64_t> ReadFeatures(const Napi::Value& data,
                                                                     const Napi::Value& width) {
  auto features = std::make_shared<std::vector<float>>(CopyFloat32(data, "features"));
  const int64_t dim = IntegerAt(width, "dim", 1);  // the divisor below
  if (features->size() % static_cast<size_t>(dim) != 0) {
    ThrowCoded(
        data.Env(), calmkit::code::kDataMismatch,
        "features has " + std::to_string(features->size()) + " values, not a multiple of dim " + std::to_string(dim));
  }
  return {features, dim};
}

// The training matrix, borrowed rather than copied: segment features are the largest thing a run holds
// ([clips, S, dim]), and a copy would double them. The reference keeps the array alive until the job is over; it
// is released on the JS thread with the job's state (Submit destroys the work function there). The caller must
// not change or transfer the array until the promise settles (lib/probes/train.ts documents it).
struct BorrowedFeatures {
  Napi::Reference<Napi::Float32Array> ref;
  const float* data = nullptr;
  int64_t n = 0, dim = 0;
};

std::shared_ptr<BorrowedFeatures> BorrowFeatures(const Napi::Value& data, const Napi::Value& width,
                                                 int64_t rowsPerClip) {
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    ThrowCoded(data.Env(), calmkit::code::kInvalidArgument, "features must be a Float32Array");
  }
  auto arr = data.As<Napi::Float32Array>();
  auto out = std::make_shared<BorrowedFeatures>();
  out->dim = IntegerAt(width, "dim", 1);  // the divisor below
  const size_t per = static_cast<size_t>(out->dim * rowsPerClip);
  if (arr.ElementLength() % per != 0) {
    ThrowCoded(data.Env(), calmkit::code::kDataMismatch,
               "features has " + std::to_string(arr.ElementLength()) + " values, not a multiple of " +
                   (rowsPerClip > 1 ? "segments x dim " : "dim ") + std::to_string(per));
  }
  out->n = static_cast<int64_t>(arr.ElementLength() / per);
  out->data = arr.Data();
  out->ref = Napi::Persistent(arr);
  return out;
}

// Types are converted safely here, absent options are the core's own defaults (pr::Options); their values are the
// core's to check (probes::validate).
pr::Options ReadOptions(const Napi::Value& v) {
  pr::Options o;
  if (v.IsUndefined() || v.IsNull()) return o;
  auto obj = ObjectAt(v, "options");
  o.epochs = GetInt(obj, "epochs", o.epochs);
  o.batchSize = GetInt(obj, "batchSize", o.batchSize);
  o.lr = GetNumber(obj, "lr", o.lr);
  o.seed = static_cast<uint64_t>(GetInt(obj, "seed", static_cast<int64_t>(o.seed), 0));  // a uint64
  o.standardize = GetBool(obj, "standardize", o.standardize);
  o.device = GetString(obj, "device", o.device);
  o.maxStackBytes = GetInt(obj, "maxStackBytes", o.maxStackBytes);
  o.maxProbesPerStack = GetInt(obj, "maxProbesPerStack", o.maxProbesPerStack);
  o.keepAllWeights = GetBool(obj, "keepAllWeights", o.keepAllWeights);
  o.batchedStep = GetBool(obj, "batchedStep", o.batchedStep);
  const std::string precision = GetString(obj, "matmulPrecision", pr::matmulPrecisionName(o.matmulPrecision));
  try {
    o.matmulPrecision = pr::parseMatmulPrecision(precision);
  } catch (const calmkit::Error& e) {
    ThrowCoded(obj.Env(), e.code(), e.what());
  }
  o.threads = static_cast<int>(GetInt(obj, "threads", o.threads, INT_MIN, INT_MAX));  // into an int
  o.segments = GetInt(obj, "segments", o.segments);
  auto valid = obj.Get("validSegments");
  if (!valid.IsUndefined() && !valid.IsNull()) {
    o.validSegments = CopyTyped<int32_t, napi_int32_array>(valid, "options.validSegments", "Int32Array");
  }
  return o;
}

Napi::Object LayerToJs(Napi::Env env, pr::Layer& layer) {
  auto lo = Napi::Object::New(env);
  lo.Set("in", Napi::Number::New(env, static_cast<double>(layer.in)));
  lo.Set("out", Napi::Number::New(env, static_cast<double>(layer.out)));
  lo.Set("weight", ToFloat32Array(env, std::move(layer.weight)));
  lo.Set("bias", ToFloat32Array(env, std::move(layer.bias)));
  return lo;
}

pr::Layer LayerFromJs(const Napi::Value& v, const std::string& label) {
  auto lo = ObjectAt(v, label);
  pr::Layer layer;
  layer.in = GetInt(lo, "in", 0);
  layer.out = GetInt(lo, "out", 0);
  layer.weight = CopyFloat32(lo.Get("weight"), label + ".weight");
  layer.bias = CopyFloat32(lo.Get("bias"), label + ".bias");
  if (layer.in < 1 || layer.out < 1 || layer.weight.size() != static_cast<size_t>(layer.in * layer.out) ||
      layer.bias.size() != static_cast<size_t>(layer.out)) {
    ThrowCoded(v.Env(), calmkit::code::kProbe, label + " has inconsistent shapes");
  }
  return layer;
}

Napi::Value NetToJs(Napi::Env env, pr::Net& net) {
  auto o = Napi::Object::New(env);
  if (!net.mean.empty()) {
    o.Set("mean", ToFloat32Array(env, std::move(net.mean)));
    o.Set("std", ToFloat32Array(env, std::move(net.std)));
  }
  auto layers = Napi::Array::New(env, net.layers.size());
  for (size_t l = 0; l < net.layers.size(); ++l) layers.Set(static_cast<uint32_t>(l), LayerToJs(env, net.layers[l]));
  o.Set("layers", layers);
  // The attention head's one weight is the TS API's `attention` layer; any other head's weights are `headLayers`.
  if (net.head == "attention" && net.headLayers.size() == 1) {
    o.Set("attention", LayerToJs(env, net.headLayers[0]));
  } else if (net.head != pr::kMlpHead) {
    o.Set("head", net.head);
    auto hl = Napi::Array::New(env, net.headLayers.size());
    for (size_t k = 0; k < net.headLayers.size(); ++k)
      hl.Set(static_cast<uint32_t>(k), LayerToJs(env, net.headLayers[k]));
    o.Set("headLayers", hl);
  }
  return o;
}

pr::Net NetFromJs(const Napi::Value& v, const std::string& label) {
  auto o = ObjectAt(v, label);
  pr::Net net;
  if (!o.Get("mean").IsUndefined()) {
    net.mean = CopyFloat32(o.Get("mean"), "mean");
    net.std = CopyFloat32(o.Get("std"), "std");
  }
  auto layers = ArrayAt(o.Get("layers"), label + ".layers");
  for (uint32_t l = 0; l < layers.Length(); ++l) {
    pr::Layer layer = LayerFromJs(layers.Get(l), label + ".layers[" + std::to_string(l) + "]");
    if (l > 0 && layer.in != net.layers.back().out) {
      ThrowCoded(v.Env(), calmkit::code::kProbe, label + ": layer " + std::to_string(l) + " has inconsistent shapes");
    }
    net.layers.push_back(std::move(layer));
  }
  if (net.layers.empty() || net.layers.back().out != 1) {
    ThrowCoded(v.Env(), calmkit::code::kProbe, label + ": a probe must end in one logit");
  }
  if (!o.Get("attention").IsUndefined()) {
    net.head = "attention";
    net.headLayers = {LayerFromJs(o.Get("attention"), label + ".attention")};
    if (net.headLayers[0].in != net.layers.back().in || net.headLayers[0].out != 1) {
      ThrowCoded(v.Env(), calmkit::code::kProbe,
                 label + ": the attention layer must read what the score layer reads and give one logit");
    }
  } else if (!o.Get("head").IsUndefined()) {
    net.head = GetString(o, "head", pr::kMlpHead);
    auto hl = ArrayAt(o.Get("headLayers"), label + ".headLayers");
    for (uint32_t k = 0; k < hl.Length(); ++k) {
      net.headLayers.push_back(LayerFromJs(hl.Get(k), label + ".headLayers[" + std::to_string(k) + "]"));
    }
  }
  if (!net.mean.empty() &&
      (net.mean.size() != static_cast<size_t>(net.layers[0].in) || net.std.size() != net.mean.size())) {
    ThrowCoded(v.Env(), calmkit::code::kProbe, label + ": standardisation does not match the input size");
  }
  return net;
}

Napi::Value ResultToJs(Napi::Env env, pr::Result& r) {
  auto o = Napi::Object::New(env);
  auto probes = Napi::Array::New(env, r.probes.size());
  for (size_t i = 0; i < r.probes.size(); ++i) {
    auto& p = r.probes[i];
    auto po = Napi::Object::New(env);
    po.Set("task", p.task);
    po.Set("config", p.config);
    po.Set("valLoss", ToFloat32Array(env, std::move(p.valLoss)));
    po.Set("valAcc", ToFloat32Array(env, std::move(p.valAcc)));
    po.Set("bestEpoch", Napi::Number::New(env, static_cast<double>(p.bestEpoch)));
    po.Set("bestValLoss", p.bestValLoss);
    po.Set("bestValAcc", p.bestValAcc);
    po.Set("testProb", ToFloat32Array(env, std::move(p.testProb)));
    if (!p.testWeights.empty()) po.Set("testAttention", ToFloat32Array(env, std::move(p.testWeights)));
    if (p.hasNet) po.Set("net", NetToJs(env, p.net));
    probes.Set(static_cast<uint32_t>(i), po);
  }
  auto tasks = Napi::Array::New(env, r.tasks.size());
  for (size_t t = 0; t < r.tasks.size(); ++t) {
    auto& tr = r.tasks[t];
    auto to = Napi::Object::New(env);
    to.Set("selected", tr.selected);
    to.Set("selectedNet", NetToJs(env, tr.selectedNet));
    to.Set("linear", tr.linear);
    if (tr.linear >= 0) to.Set("linearNet", NetToJs(env, tr.linearNet));
    tasks.Set(static_cast<uint32_t>(t), to);
  }
  o.Set("probes", probes);
  o.Set("tasks", tasks);
  o.Set("stacks", Napi::Number::New(env, static_cast<double>(r.stacks)));
  o.Set("seconds", r.seconds);
  o.Set("device", r.device);
  return o;
}

// Progress goes to JS without blocking training: a dropped update is harmless, a stalled trainer is not.
struct ProgressSink {
  Napi::ThreadSafeFunction tsfn;
  bool active = false;
  ~ProgressSink() {
    if (active) tsfn.Release();
  }
};

Napi::Value TrainProbeGrid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto tasks = std::make_shared<std::vector<pr::Task>>(MapArray(info[2], "tasks", ReadTask));
  auto configs = std::make_shared<std::vector<pr::Config>>(MapArray(info[3], "configs", ReadConfig));
  pr::Options opt = ReadOptions(info[4]);
  auto features = BorrowFeatures(info[0], info[1], std::max<int64_t>(1, opt.segments));
  auto ctl = GetControl(info[5]);
  opt.cancelled = [ctl] { return ctl->isCancelled(); };

  auto sink = std::make_shared<ProgressSink>();
  if (info.Length() > 6 && info[6].IsFunction()) {
    sink->tsfn = Napi::ThreadSafeFunction::New(env, info[6].As<Napi::Function>(), "calmkit-probe-progress", 0, 1);
    sink->active = true;
    opt.progress = [sink](const pr::Progress& p) {
      auto* copy = new pr::Progress(p);
      auto status = sink->tsfn.NonBlockingCall(copy, [](Napi::Env env, Napi::Function fn, pr::Progress* p) {
        std::unique_ptr<pr::Progress> own(p);
        auto o = Napi::Object::New(env);
        o.Set("epoch", Napi::Number::New(env, static_cast<double>(p->epoch)));
        o.Set("epochs", Napi::Number::New(env, static_cast<double>(p->epochs)));
        o.Set("stack", Napi::Number::New(env, static_cast<double>(p->stack)));
        o.Set("stacks", Napi::Number::New(env, static_cast<double>(p->stacks)));
        o.Set("probes", Napi::Number::New(env, static_cast<double>(p->probes)));
        o.Set("probesDone", Napi::Number::New(env, static_cast<double>(p->probesDone)));
        o.Set("probesTotal", Napi::Number::New(env, static_cast<double>(p->probesTotal)));
        try {
          fn.Call({o});
        } catch (const Napi::Error&) {
          // A throwing progress callback must not take training (or the process) down with it.
        }
      });
      if (status != napi_ok) delete copy;
    };
  }
  auto promise = Submit<std::shared_ptr<pr::Result>>(
      env, computeExecutor(),
      [features, tasks, configs, opt]() mutable {
        auto r = std::make_shared<pr::Result>(
            pr::trainGrid(features->data, features->n, features->dim, *tasks, *configs, opt));
        opt.progress = nullptr;  // drops this copy's hold on the sink, so the TSFN is released with the job
        return r;
      },
      [](Napi::Env env, std::shared_ptr<pr::Result>& r) { return ResultToJs(env, *r); });
  sink.reset();
  return promise;
}

Napi::Value PredictProbes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto matrix = ReadFeatures(info[0], info[1]);
  auto features = matrix.first;
  const int64_t dim = matrix.second;
  auto nets = std::make_shared<std::vector<pr::Net>>(MapArray(info[2], "nets", NetFromJs));
  std::string device = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "cpu";
  int64_t n = static_cast<int64_t>(features->size()) / dim;
  return Submit<std::vector<float>>(
      env, computeExecutor(),
      [features, nets, n, dim, device] { return pr::predict(features->data(), n, dim, *nets, device); },
      [](Napi::Env env, std::vector<float>& out) -> Napi::Value { return ToFloat32Array(env, std::move(out)); });
}

// predictSegmentProbes(features, dim, segments, validSegments | null, nets, device, withWeights)
//   -> Promise<{ probabilities: Float32Array [n][nets], weights?: Float32Array [n][nets][segments] }>
Napi::Value PredictSegmentProbes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto matrix = ReadFeatures(info[0], info[1]);
  auto features = matrix.first;
  const int64_t dim = matrix.second;
  const int64_t segments = IntegerAt(info[2], "segments", 1);  // the divisor below
  if (features->size() % static_cast<size_t>(segments * dim) != 0) {
    ThrowCoded(env, calmkit::code::kDataMismatch,
               "features has " + std::to_string(features->size()) + " values, not a multiple of segments x dim " +
                   std::to_string(segments * dim));
  }
  std::vector<int32_t> valid;
  if (!info[3].IsUndefined() && !info[3].IsNull()) {
    valid = CopyTyped<int32_t, napi_int32_array>(info[3], "validSegments", "Int32Array");
  }
  auto nets = std::make_shared<std::vector<pr::Net>>(MapArray(info[4], "nets", NetFromJs));
  std::string device = info[5].IsString() ? info[5].As<Napi::String>().Utf8Value() : "cpu";
  const bool withWeights = info[6].IsBoolean() && info[6].As<Napi::Boolean>().Value();
  const int64_t n = static_cast<int64_t>(features->size()) / (segments * dim);
  return Submit<pr::SegmentPrediction>(
      env, computeExecutor(),
      [features, nets, n, segments, dim, valid, device, withWeights] {
        return pr::predictSegments(features->data(), n, segments, dim, valid, *nets, device, withWeights);
      },
      [withWeights](Napi::Env env, pr::SegmentPrediction& out) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("probabilities", ToFloat32Array(env, std::move(out.probabilities)));
        if (withWeights) o.Set("weights", ToFloat32Array(env, std::move(out.weights)));
        return o;
      });
}

// _probeTrace(features, dim, task, config, options) -> [{ step, grads: Float32Array[], weights: Float32Array[] }]:
// test-only, synchronous. Trains one probe (one instrument, one config) with the trainer's own step and returns
// every step's gradients and updated weights (pr::TraceStep; test/probes-torch.test.ts). Beside the trainer's
// binding because it reads the same arguments.
Napi::Value TraceProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<pr::Task> tasks{ReadTask(info[2], "task")};
  std::vector<pr::Config> configs{ReadConfig(info[3], "config")};
  pr::Options opt = ReadOptions(info[4]);
  auto features = BorrowFeatures(info[0], info[1], std::max<int64_t>(1, opt.segments));
  std::vector<pr::TraceStep> steps;
  opt.trace = [&steps](const pr::TraceStep& t) { steps.push_back(t); };
  std::string code, message;
  if (!Guard([&] { pr::trainGrid(features->data, features->n, features->dim, tasks, configs, opt); }, code, message)) {
    ThrowCoded(env, code, message);
  }
  auto out = Napi::Array::New(env, steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("step", Napi::Number::New(env, static_cast<double>(steps[i].step)));
    auto list = [&](std::vector<std::vector<float>>& v) {
      auto a = Napi::Array::New(env, v.size());
      for (size_t k = 0; k < v.size(); ++k) a.Set(static_cast<uint32_t>(k), ToFloat32Array(env, std::move(v[k])));
      return a;
    };
    o.Set("grads", list(steps[i].grads));
    o.Set("weights", list(steps[i].weights));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

}  // namespace

void InitProbes(Napi::Env env, Napi::Object exports) {
  exports.Set("_probeTrace", Napi::Function::New(env, TraceProbe, "_probeTrace"));
  exports.Set("trainProbeGrid", Napi::Function::New(env, TrainProbeGrid, "trainProbeGrid"));
  exports.Set("predictProbes", Napi::Function::New(env, PredictProbes, "predictProbes"));
  exports.Set("predictSegmentProbes", Napi::Function::New(env, PredictSegmentProbes, "predictSegmentProbes"));
}

}  // namespace calmkit_napi
