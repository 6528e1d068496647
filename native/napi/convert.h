// One place for JS <-> C++ value conversions used by every binding file.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace calmkit_napi {

// A Float32Array that owns `data` without copying it.
Napi::Float32Array ToFloat32Array(Napi::Env env, std::vector<float>&& data);

std::string GetString(const Napi::Object& o, const char* key, const std::string& fallback);
double GetNumber(const Napi::Object& o, const char* key, double fallback);
bool GetBool(const Napi::Object& o, const char* key, bool fallback);
// Throws a JS TypeError naming `what` when v is not a Float32Array.
std::vector<float> CopyFloat32(const Napi::Value& v, const char* what);

// Native calls throw through here so a bad argument rejects/throws with a coded error, never aborts.
[[noreturn]] void ThrowCoded(Napi::Env env, const std::string& code, const std::string& message);

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
