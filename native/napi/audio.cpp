// Binding of the audio front-end: decodeAudio (raw frames) and loadAudio (the whole front-end).
#include <memory>

#include "core/audio.h"
#include "core/error.h"
#include "napi/async.h"
#include "napi/convert.h"
#include "napi/exports.h"

namespace calmkit_napi {
namespace {

namespace au = calmkit::audio;

// The input, copied on the JS thread so the job never touches JS memory.
struct Source {
  enum Kind { Path, Bytes, Samples } kind = Path;
  std::string label;
  std::string path;
  std::vector<uint8_t> bytes;
  std::vector<float> samples;
  double rate = 0;
};

Source ReadSource(const Napi::Value& v) {
  Source s;
  if (v.IsString()) {
    s.kind = Source::Path;
    s.path = v.As<Napi::String>().Utf8Value();
    s.label = s.path;
    if (s.path.empty()) ThrowCoded(v.Env(), calmkit::code::kInvalidArgument, "audio path is an empty string");
  } else if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    auto a = v.As<Napi::Uint8Array>();
    s.kind = Source::Bytes;
    s.bytes.assign(a.Data(), a.Data() + a.ElementLength());
    s.label = "<buffer of " + std::to_string(a.ElementLength()) + " bytes>";
  } else if (v.IsObject() && v.As<Napi::Object>().Has("samples")) {
    auto o = v.As<Napi::Object>();
    s.kind = Source::Samples;
    s.samples = CopyFloat32(o.Get("samples"), "samples");
    s.rate = GetNumber(o, "sampleRate", 0);
    s.label = "<" + std::to_string(s.samples.size()) + " samples at " + std::to_string(s.rate) + " Hz>";
  } else {
    ThrowCoded(v.Env(), calmkit::code::kInvalidArgument,
               "audio input must be a path, a Uint8Array/Buffer, or { samples: Float32Array, sampleRate }");
  }
  return s;
}

au::PrepareOptions ReadPrepareOptions(const Napi::Value& v, const std::string& label) {
  au::PrepareOptions o;
  if (v.IsUndefined() || v.IsNull()) return o;
  if (!v.IsObject()) ThrowCoded(v.Env(), calmkit::code::kInvalidArgument, "options must be an object");
  auto obj = v.As<Napi::Object>();
  try {
    o.fit = au::parseFitMode(GetString(obj, "formatting", "none"));
    o.targetSeconds = GetNumber(obj, "targetSeconds", 0);
    o.factor = GetNumber(obj, "factor", 0);
    double crop = GetNumber(obj, "cropSamples", 0);
    if (!(crop >= 0) || crop > 9.0e15 || crop != static_cast<double>(static_cast<int64_t>(crop))) {
      throw calmkit::Error(calmkit::code::kInvalidArgument, label + ": cropSamples must be a non-negative integer");
    }
    o.cropSamples = static_cast<int64_t>(crop);
    o.normalise = GetBool(obj, "normalise", true);
    au::validateOptions(o, label);
  } catch (const calmkit::Error& e) {
    ThrowCoded(v.Env(), e.code(), e.what());
  }
  return o;
}

au::Decoded DecodeSource(const Source& s) {
  if (s.kind == Source::Path) return au::decodeFile(s.path);
  return au::decodeMemory(s.bytes.data(), s.bytes.size(), s.label);
}

Napi::Value DecodeAudio(const Napi::CallbackInfo& info) {
  auto src = std::make_shared<Source>(ReadSource(info[0]));
  if (src->kind == Source::Samples) {
    ThrowCoded(info.Env(), calmkit::code::kInvalidArgument, "decodeAudio takes a path or encoded bytes");
  }
  return Submit<au::Decoded>(
      info.Env(), audioExecutor(), [src] { return DecodeSource(*src); },
      [](Napi::Env env, au::Decoded& d) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("channels", d.channels);
        o.Set("sampleRate", d.sampleRate);
        o.Set("frames", Napi::Number::New(env, static_cast<double>(d.frames)));
        o.Set("format", d.format);
        o.Set("interleaved", ToFloat32Array(env, std::move(d.interleaved)));
        return o;
      });
}

Napi::Value LoadAudio(const Napi::CallbackInfo& info) {
  auto src = std::make_shared<Source>(ReadSource(info[0]));
  auto opts = ReadPrepareOptions(info[1], src->label);
  return Submit<au::Prepared>(
      info.Env(), audioExecutor(),
      [src, opts] {
        if (src->kind == Source::Samples) {
          return au::prepareSamples(src->samples.data(), static_cast<int64_t>(src->samples.size()), src->rate, opts,
                                    src->label);
        }
        return au::prepare(DecodeSource(*src), opts, src->label);
      },
      [](Napi::Env env, au::Prepared& p) -> Napi::Value {
        auto o = Napi::Object::New(env);
        double n = static_cast<double>(p.samples.size());
        o.Set("sampleRate", au::kModelRate);
        o.Set("channels", 1);
        o.Set("sourceChannels", p.sourceChannels);
        o.Set("sourceSampleRate", p.sourceRate);
        o.Set("sourceFrames", Napi::Number::New(env, static_cast<double>(p.sourceFrames)));
        o.Set("durationSeconds", Napi::Number::New(env, n / au::kModelRate));
        o.Set("samples", ToFloat32Array(env, std::move(p.samples)));
        return o;
      });
}

Napi::Value WriteAudio(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowCoded(env, calmkit::code::kInvalidArgument, "writeAudio: path must be a string");
  if (!info[1].IsObject()) ThrowCoded(env, calmkit::code::kInvalidArgument, "writeAudio: options must be an object");
  auto path = info[0].As<Napi::String>().Utf8Value();
  auto o = info[1].As<Napi::Object>();
  auto data = std::make_shared<std::vector<float>>(CopyFloat32(o.Get("interleaved"), "interleaved"));
  int channels = static_cast<int>(GetInt(o, "channels", 1, 1, 65535));
  int rate = static_cast<int>(GetInt(o, "sampleRate", 0, 0, 1e9));
  auto container = GetString(o, "container", "wav");
  auto encoding = GetString(o, "encoding", "pcm16");
  if (channels <= 0 || data->size() % static_cast<size_t>(channels) != 0) {
    ThrowCoded(env, calmkit::code::kInvalidArgument, path + ": interleaved length is not a multiple of channels");
  }
  int64_t frames = static_cast<int64_t>(data->size()) / channels;
  return Submit<bool>(
      env, audioExecutor(),
      [=] {
        au::encodeFile(path, data->data(), frames, channels, rate, container, encoding);
        return true;
      },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

}  // namespace

void InitAudio(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeAudio", Napi::Function::New(env, DecodeAudio, "decodeAudio"));
  exports.Set("writeAudio", Napi::Function::New(env, WriteAudio, "writeAudio"));
  exports.Set("loadAudio", Napi::Function::New(env, LoadAudio, "loadAudio"));
}

}  // namespace calmkit_napi
