#include "napi/convert.h"

#include <cmath>

namespace calmkit_napi {

namespace code = calmkit::code;

Napi::Float32Array ToFloat32Array(Napi::Env env, std::vector<float>&& data) {
  auto* owned = new std::vector<float>(std::move(data));
  size_t n = owned->size();
  Napi::ArrayBuffer buf;
  if (n == 0) {
    delete owned;
    buf = Napi::ArrayBuffer::New(env, 0);
  } else {
    buf = Napi::ArrayBuffer::New(
        env, owned->data(), n * sizeof(float), [](Napi::Env, void*, std::vector<float>* v) { delete v; }, owned);
  }
  return Napi::Float32Array::New(env, n, buf, 0);
}

Napi::Float32Array TensorToFloat32Array(Napi::Env env, const torch::Tensor& t) {
  auto* owned = new torch::Tensor(t.contiguous());
  const size_t n = static_cast<size_t>(owned->numel());
  if (n == 0) {
    delete owned;
    return Napi::Float32Array::New(env, 0);
  }
  auto buf = Napi::ArrayBuffer::New(
      env, owned->data_ptr<float>(), n * sizeof(float), [](Napi::Env, void*, torch::Tensor* p) { delete p; }, owned);
  return Napi::Float32Array::New(env, n, buf, 0);
}

Napi::Int32Array ToInt32Array(Napi::Env env, const std::vector<int64_t>& v) {
  auto a = Napi::Int32Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = static_cast<int32_t>(v[i]);
  return a;
}

Napi::Array ToNumberArray(Napi::Env env, const std::vector<int64_t>& v) {
  auto a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i)
    a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(v[i])));
  return a;
}

std::string GetString(const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) ThrowCoded(o.Env(), code::kInvalidArgument, std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

double GetNumber(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) ThrowCoded(o.Env(), code::kInvalidArgument, std::string("option '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool GetBool(const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean())
    ThrowCoded(o.Env(), code::kInvalidArgument, std::string("option '") + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

int64_t IntegerAt(const Napi::Value& v, const std::string& what, double lo, double hi) {
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : std::nan("");
  // Range first: casting an out-of-range double to an integer is undefined.
  if (!(d >= lo && d <= hi) || d != std::floor(d)) {
    const bool safe = lo <= -kMaxSafeInteger && hi >= kMaxSafeInteger;
    ThrowCoded(v.Env(), code::kInvalidArgument,
               what + " must be an integer" +
                   (safe ? std::string()
                         : " in [" + std::to_string(static_cast<int64_t>(lo)) + ", " +
                               std::to_string(static_cast<int64_t>(hi)) + "]") +
                   "; got " + (v.IsUndefined() ? std::string("undefined") : v.ToString().Utf8Value()));
  }
  return static_cast<int64_t>(d);
}

int64_t GetInt(const Napi::Object& o, const char* key, int64_t fallback, double lo, double hi) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  return IntegerAt(v, std::string("option '") + key + "'", lo, hi);
}

Napi::Object ObjectAt(const Napi::Value& v, const std::string& what) {
  if (!v.IsObject()) ThrowCoded(v.Env(), code::kInvalidArgument, what + " must be an object");
  return v.As<Napi::Object>();
}

Napi::Array ArrayAt(const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) ThrowCoded(v.Env(), code::kInvalidArgument, what + " must be an array");
  return v.As<Napi::Array>();
}

std::vector<float> CopyFloat32(const Napi::Value& v, const std::string& what) {
  return CopyTyped<float, napi_float32_array>(v, what, "Float32Array");
}

}  // namespace calmkit_napi
