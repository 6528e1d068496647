// Binding of the benchmark engine (core/bench.h): benchExtract and benchProbes run on the compute thread, send
// their progress lines to a JS callback and resolve with the report's JSON text; executorStats says how long each
// of the addon's thread pools has been busy (the pipeline benchmark's "model busy" is the compute pool's).
#include <cmath>
#include <functional>
#include <optional>

#include "core/bench.h"
#include "core/runtime.h"
#include "napi/async.h"
#include "napi/control.h"
#include "napi/convert.h"
#include "napi/events.h"
#include "napi/exports.h"

namespace calmkit_napi {
namespace {

std::vector<std::string> Strings(const Napi::Object& o, const char* key, const std::vector<std::string>& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  return MapArray(v, key, [](const Napi::Value& s, const std::string& what) -> std::string {
    if (!s.IsString()) ThrowCoded(s.Env(), calmkit::code::kInvalidArgument, what + " must be a string");
    return s.As<Napi::String>().Utf8Value();
  });
}

std::vector<int64_t> Integers(const Napi::Object& o, const char* key, const std::vector<int64_t>& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  return MapArray(v, key, [](const Napi::Value& n, const std::string& what) -> int64_t {
    const double d = n.IsNumber() ? n.As<Napi::Number>().DoubleValue() : 0.5;
    if (!(std::fabs(d) <= 9007199254740991.0) || d != std::floor(d)) {
      ThrowCoded(n.Env(), calmkit::code::kInvalidArgument, what + " must be an integer");
    }
    return static_cast<int64_t>(d);
  });
}

calmkit::bench::Origin ReadOrigin(const Napi::Object& o) {
  return {GetString(o, "command", ""), GetString(o, "host", ""), GetString(o, "calmkitVersion", "")};
}

// Runs `work` on the compute thread with progress lines to info[2] and cancellation through info[1].
Napi::Value Run(const Napi::CallbackInfo& info, std::function<std::string(const calmkit::bench::Events&)> work) {
  Napi::Env env = info.Env();
  auto ctl = GetControl(info[1]);
  std::optional<Napi::ThreadSafeFunction> tsfn;
  if (info[2].IsFunction())
    tsfn = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "calmkit-bench-lines", 0, 1);
  auto sender = std::make_shared<EventSender>(ctl, tsfn);
  // runtime::cpuBf16 captures oneDNN's log on stdout once per process: probe here, on the JS thread, while
  // nothing else can write to stdout (the machine's facts in every report read it).
  (void)calmkit::runtime::cpuBf16();
  return Submit<std::string>(
      env, computeExecutor(),
      [work, sender, ctl] {
        calmkit::bench::Events ev;
        ev.log = [sender](const std::string& line) {
          sender->send([line](Napi::Env env) { return Napi::String::New(env, line); });
        };
        ev.cancelled = [ctl] { return ctl->isCancelled(); };
        try {
          std::string doc = work(ev);
          sender->finish();
          return doc;
        } catch (...) {
          sender->finish();
          throw;
        }
      },
      [](Napi::Env env, std::string& doc) -> Napi::Value { return Napi::String::New(env, doc); });
}

// benchExtract(options, control, onLine?) -> Promise<string>: the extraction report's JSON.
Napi::Value BenchExtract(const Napi::CallbackInfo& info) {
  auto o = ObjectAt(info[0], "bench options");
  calmkit::bench::ExtractOptions opts;
  opts.origin = ReadOrigin(o);
  opts.preset = GetString(o, "preset", "5b");
  opts.modelPath = GetString(o, "model", "");
  opts.layers = GetInt(o, "layers", 0, 0, 4096);
  opts.sampleLayers = GetInt(o, "sampleLayers", 0, 0, 4096);
  opts.precisions = Strings(o, "precisions", {"fp32"});
  opts.batches = Integers(o, "batches", {1});
  opts.tokens = Integers(o, "tokens", {});
  opts.device = GetString(o, "device", "cpu");
  opts.rounds = GetInt(o, "rounds", 3, 1, 1e6);
  opts.warmup = GetInt(o, "warmup", 1, 0, 1e6);
  opts.seed = static_cast<uint64_t>(GetInt(o, "seed", 0, 0, 9007199254740991.0));
  opts.verifyWeights = GetBool(o, "verifyWeights", true);
  opts.profile = GetBool(o, "profile", false);
  opts.referencePython = GetString(o, "referencePython", "");
  opts.referenceScript = GetString(o, "referenceScript", "");
  opts.referenceAbsent = GetString(o, "referenceAbsent", "");
  opts.referenceJukemirlib = GetBool(o, "referenceJukemirlib", false);
  opts.workDir = GetString(o, "workDir", "");
  for (const auto& m : Strings(o, "bufferCache", {})) {
    if (m != "on" && m != "off")
      ThrowCoded(info.Env(), calmkit::code::kInvalidArgument, "bufferCache takes 'on' and 'off'; got '" + m + "'");
    opts.bufferCache.push_back(m == "on");
  }
  return Run(info, [opts](const calmkit::bench::Events& ev) { return calmkit::bench::runExtract(opts, ev); });
}

// benchProbes(options, control, onLine?) -> Promise<string>: the probe grid report's JSON.
Napi::Value BenchProbes(const Napi::CallbackInfo& info) {
  auto o = ObjectAt(info[0], "bench options");
  calmkit::bench::ProbeOptions opts;
  opts.origin = ReadOrigin(o);
  opts.instruments = static_cast<int>(GetInt(o, "instruments", 20, 1, 20));
  opts.dim = GetInt(o, "dim", 4800, 1, 1 << 20);
  opts.clips = GetInt(o, "clips", 20000, 1, 1e8);
  opts.scale = GetNumber(o, "scale", 1.0);
  opts.epochs = Integers(o, "epochs", {1, 2});
  opts.matmulPrecisions = Strings(o, "matmulPrecisions", {"fp32"});
  opts.device = GetString(o, "device", "cpu");
  opts.mode = GetString(o, "mode", "vectorised");
  opts.segments = GetInt(o, "segments", 0, 0, 4096);
  opts.rounds = GetInt(o, "rounds", 1, 1, 1e6);
  opts.targetEpochs = GetInt(o, "targetEpochs", 800, 1, 1e9);
  return Run(info, [opts](const calmkit::bench::Events& ev) { return calmkit::bench::runProbes(opts, ev); });
}

// benchMachine() -> string: the schema's "machine" object (JSON), for reports made in JS (the pipeline's).
Napi::Value BenchMachine(const Napi::CallbackInfo& info) {
  (void)calmkit::runtime::cpuBf16();
  return Napi::String::New(info.Env(), calmkit::bench::machineJson());
}

Napi::Value StatsObject(Napi::Env env, const ExecutorStats& s) {
  auto o = Napi::Object::New(env);
  o.Set("busySeconds", Napi::Number::New(env, s.busySeconds));
  o.Set("jobs", Napi::Number::New(env, static_cast<double>(s.jobs)));
  return o;
}

// executorStats() -> {compute, audio, load}: seconds each pool's threads spent running jobs, and jobs run.
Napi::Value GetExecutorStats(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("compute", StatsObject(info.Env(), computeExecutor().stats()));
  o.Set("audio", StatsObject(info.Env(), audioExecutor().stats()));
  o.Set("load", StatsObject(info.Env(), loadExecutor().stats()));
  return o;
}

}  // namespace

void InitBench(Napi::Env env, Napi::Object exports) {
  exports.Set("benchExtract", Napi::Function::New(env, BenchExtract, "benchExtract"));
  exports.Set("benchProbes", Napi::Function::New(env, BenchProbes, "benchProbes"));
  exports.Set("benchMachine", Napi::Function::New(env, BenchMachine, "benchMachine"));
  exports.Set("executorStats", Napi::Function::New(env, GetExecutorStats, "executorStats"));
}

}  // namespace calmkit_napi
