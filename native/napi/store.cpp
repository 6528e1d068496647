// The feature store's checksums: the CRC-32 (zip's) of many ranges of one buffer in one call. A matrix read
// checks every entry of a read chunk with libdeflate's PCLMUL CRC (about 3x zlib's table-driven one that
// node:zlib has) for one call's overhead; lib/store/checksum.ts falls back to node:zlib, same values, where the
// addon is not loaded. Synchronous on purpose: it is memory-speed work on a buffer the caller holds (about
// 0.6 ms per 8 MiB read chunk), and the store's reads are synchronous.
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "core/archive.h"
#include "napi/errors.h"
#include "napi/exports.h"

namespace calmkit_napi {
namespace {

// crc32Ranges(bytes: Uint8Array, starts: Float64Array, lengths: Float64Array) -> Uint32Array
Napi::Value Crc32Ranges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto isTyped = [&](size_t i, napi_typedarray_type type) {
    return info.Length() > i && info[i].IsTypedArray() && info[i].As<Napi::TypedArray>().TypedArrayType() == type;
  };
  if (!isTyped(0, napi_uint8_array) || !isTyped(1, napi_float64_array) || !isTyped(2, napi_float64_array)) {
    ThrowCoded(env, "ERR_INVALID_ARGUMENT",
               "crc32Ranges(bytes: Uint8Array, starts: Float64Array, lengths: Float64Array)");
  }
  auto bytes = info[0].As<Napi::Uint8Array>();
  auto starts = info[1].As<Napi::Float64Array>();
  auto lengths = info[2].As<Napi::Float64Array>();
  const size_t n = starts.ElementLength();
  if (lengths.ElementLength() != n) {
    ThrowCoded(env, "ERR_INVALID_ARGUMENT", "crc32Ranges: starts and lengths differ in length");
  }
  const double size = static_cast<double>(bytes.ByteLength());
  for (size_t i = 0; i < n; ++i) {
    const double s = starts[i], l = lengths[i];
    if (!(s >= 0) || !(l >= 0) || std::floor(s) != s || std::floor(l) != l || s + l > size) {
      ThrowCoded(env, "ERR_INVALID_ARGUMENT", "crc32Ranges: range " + std::to_string(i) + " lies outside the buffer");
    }
  }
  auto out = Napi::Uint32Array::New(env, n);
  const uint8_t* data = bytes.Data();
  for (size_t i = 0; i < n; ++i) {
    out[i] = calmkit::archive::crc32(0, data + static_cast<size_t>(starts[i]), static_cast<size_t>(lengths[i]));
  }
  return out;
}

}  // namespace

void InitStore(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32Ranges", Napi::Function::New(env, Crc32Ranges, "crc32Ranges"));
}

}  // namespace calmkit_napi
