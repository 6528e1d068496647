#include "napi/convert.h"

#include "core/error.h"
#include "napi/async.h"

namespace calmkit_napi {

Napi::Float32Array ToFloat32Array(Napi::Env env, std::vector<float>&& data) {
  auto* owned = new std::vector<float>(std::move(data));
  size_t n = owned->size();
  Napi::ArrayBuffer buf;
  if (n == 0) {
    delete owned;
    buf = Napi::ArrayBuffer::New(env, 0);
  } else {
    buf = Napi::ArrayBuffer::New(env, owned->data(), n * sizeof(float),
                                 [](Napi::Env, void*, std::vector<float>* v) { delete v; }, owned);
  }
  return Napi::Float32Array::New(env, n, buf, 0);
}

std::string GetString(const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) ThrowCoded(o.Env(), calmkit::code::kInvalidArgument, std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

double GetNumber(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) ThrowCoded(o.Env(), calmkit::code::kInvalidArgument, std::string("option '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool GetBool(const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) ThrowCoded(o.Env(), calmkit::code::kInvalidArgument, std::string("option '") + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::vector<float> CopyFloat32(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    ThrowCoded(v.Env(), calmkit::code::kInvalidArgument, std::string(what) + " must be a Float32Array");
  }
  auto a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

void ThrowCoded(Napi::Env env, const std::string& code, const std::string& message) {
  throw MakeError(env, code, message);
}

}  // namespace calmkit_napi
