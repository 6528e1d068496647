// The one place for JS <-> C++ value conversions used by every binding file: options read with type and range
// checks (a bad value is a coded ERR_INVALID_ARGUMENT naming it, never a silent cast), typed arrays copied in,
// and results handed out without copies.
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "napi/errors.h"

namespace calmkit_napi {

// ---- C++ -> JS ---------------------------------------------------------------------------------------------

// A Float32Array that owns `data` without copying it.
Napi::Float32Array ToFloat32Array(Napi::Env env, std::vector<float>&& data);
// A Float32Array over a CPU float32 tensor's memory, which the array keeps alive.
Napi::Float32Array TensorToFloat32Array(Napi::Env env, const torch::Tensor& t);
Napi::Int32Array ToInt32Array(Napi::Env env, const std::vector<int64_t>& v);
Napi::Array ToNumberArray(Napi::Env env, const std::vector<int64_t>& v);

// ---- JS -> C++ ---------------------------------------------------------------------------------------------

// 2^53 - 1: every integer up to it is a JS number, exactly.
constexpr double kMaxSafeInteger = 9007199254740991.0;

// `v` as an integer in [lo, hi] (default: every integer a JS number holds exactly), else ERR_INVALID_ARGUMENT naming
// `what`. The one integer conversion of the glue: the range check a double-to-integer cast needs (casting an
// out-of-range double is undefined), and a bound the glue's own arithmetic needs (a divisor >= 1); what the value
// means is the TS entry's and the core's to check.
int64_t IntegerAt(const Napi::Value& v, const std::string& what, double lo = -kMaxSafeInteger,
                  double hi = kMaxSafeInteger);

// Options of an object: undefined or null gives the fallback; a value of another type is ERR_INVALID_ARGUMENT.
std::string GetString(const Napi::Object& o, const char* key, const std::string& fallback);
double GetNumber(const Napi::Object& o, const char* key, double fallback);
bool GetBool(const Napi::Object& o, const char* key, bool fallback);
// An integer option (IntegerAt) within [lo, hi]; undefined or null gives the fallback, which the caller takes from the
// core's own struct default where there is one.
int64_t GetInt(const Napi::Object& o, const char* key, int64_t fallback, double lo = -kMaxSafeInteger,
               double hi = kMaxSafeInteger);

// `v` as an object or an array, else ERR_INVALID_ARGUMENT naming `what`.
Napi::Object ObjectAt(const Napi::Value& v, const std::string& what);
Napi::Array ArrayAt(const Napi::Value& v, const std::string& what);

// A copy of a typed array of element type T (Kind), else ERR_INVALID_ARGUMENT naming `what`.
template <typename T, napi_typedarray_type Kind>
std::vector<T> CopyTyped(const Napi::Value& v, const std::string& what, const char* typeName) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Kind) {
    ThrowCoded(v.Env(), calmkit::code::kInvalidArgument, what + " must be a " + typeName);
  }
  auto a = v.As<Napi::TypedArrayOf<T>>();
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}
std::vector<float> CopyFloat32(const Napi::Value& v, const std::string& what);

// Each element of the array `v` read by `read(element, label)`, where label is "what[i]".
template <typename Read>
auto MapArray(const Napi::Value& v, const std::string& what, Read read) {
  auto arr = ArrayAt(v, what);
  std::vector<decltype(read(arr.Get(0u), what))> out;
  out.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) out.push_back(read(arr.Get(i), what + "[" + std::to_string(i) + "]"));
  return out;
}

// The object behind a handle made with Napi::External<T> and type-tagged with `tag`; an ERR_INVALID_ARGUMENT
// naming `what` for anything else, so a handle of one kind is never taken for another.
template <typename T>
T* Unwrap(const Napi::Value& v, const napi_type_tag& tag, const char* what) {
  if (!v.IsExternal() || !v.As<Napi::External<T>>().CheckTypeTag(&tag)) {
    ThrowCoded(v.Env(), calmkit::code::kInvalidArgument, std::string(what) + " is not a valid handle");
  }
  return v.As<Napi::External<T>>().Data();
}

}  // namespace calmkit_napi
