// Building blocks exposed for tests and experiments, not for the public API: jukebox's timing-conditioning
// bins and one block-attention kind. Named with a leading underscore, as sharp names its internal probes.
#include <cmath>

#include "core/error.h"
#include "core/jukebox.h"
#include "core/probes_device_batch.h"
#include "core/probes_kernels.h"
#include "core/probes_random.h"
#include "napi/convert.h"
#include "napi/exports.h"

namespace calmkit_napi {
namespace {

namespace jb = calmkit::jukebox;
namespace code = calmkit::code;

Napi::Value TimingBinsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  jb::Hparams hp;  // the 5B's
  if (info[0].IsObject()) {
    auto o = info[0].As<Napi::Object>();
    hp.nCtx = GetInt(o, "nCtx", hp.nCtx, 1, 1 << 24);
    hp.sampleRate = GetInt(o, "sampleRate", hp.sampleRate, 1, 1e7);
    hp.tBins = GetInt(o, "tBins", hp.tBins, 1, 1 << 24);
    hp.minDuration = GetNumber(o, "minDuration", hp.minDuration);
    hp.maxDuration = GetNumber(o, "maxDuration", hp.maxDuration);
    hp.condTotalLength = GetInt(o, "totalLength", hp.condTotalLength, 1, 1e15);
    hp.condOffset = GetInt(o, "offset", hp.condOffset, 0, 1e15);
    const int64_t hop = GetInt(o, "hop", 128, 1, 1 << 16);
    hp.vqLevels = 1;
    hp.vqDownsT = {1};
    hp.vqStridesT = {hop};
  }
  if (!(hp.minDuration >= 0 && hp.maxDuration > hp.minDuration)) {
    ThrowCoded(env, code::kInvalidArgument, "timing bins need 0 <= minDuration < maxDuration");
  }
  auto bins = jb::timingBins(hp);
  auto o = Napi::Object::New(env);
  o.Set("total", Napi::Number::New(env, static_cast<double>(bins.total)));
  o.Set("absolute", ToInt32Array(env, bins.absolute));
  o.Set("relative", ToInt32Array(env, bins.relative));
  return o;
}

// attention(q, k, v, [B, H, T, d], kind, blockCtx, impl?): jukebox's scale 1/sqrt(d), float32; impl "batched"
// (default) or "fused".
Napi::Value AttentionJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto q = CopyFloat32(info[0], "q"), k = CopyFloat32(info[1], "k"), v = CopyFloat32(info[2], "v");
  if (!info[3].IsArray() || info[3].As<Napi::Array>().Length() != 4) {
    ThrowCoded(env, code::kInvalidArgument, "shape must be [B, H, T, d]");
  }
  std::vector<int64_t> shape;
  int64_t n = 1;
  for (uint32_t i = 0; i < 4; ++i) {
    Napi::Value s = info[3].As<Napi::Array>().Get(i);
    const int64_t d = s.IsNumber() ? s.As<Napi::Number>().Int64Value() : 0;
    if (d < 1) ThrowCoded(env, code::kInvalidArgument, "shape entries must be positive integers");
    shape.push_back(d);
    n *= d;
  }
  if (static_cast<int64_t>(q.size()) != n || k.size() != q.size() || v.size() != q.size()) {
    ThrowCoded(env, code::kInvalidArgument, "q, k and v must each hold B*H*T*d values");
  }
  if (!info[4].IsString() || !info[5].IsNumber()) ThrowCoded(env, code::kInvalidArgument, "need a kind and a blockCtx");
  const int64_t bc = info[5].As<Napi::Number>().Int64Value();
  if (bc < 1 || shape[2] % bc != 0) ThrowCoded(env, code::kInvalidArgument, "T must be a multiple of blockCtx");
  try {
    const jb::AttnKind kind = jb::parseAttnKind(info[4].As<Napi::String>().Utf8Value());
    const std::string implName = info[6].IsString() ? info[6].As<Napi::String>().Utf8Value() : "batched";
    if (implName != "batched" && implName != "fused")
      ThrowCoded(env, code::kInvalidArgument, "impl must be batched or fused");
    const jb::AttnImpl impl = implName == "fused" ? jb::AttnImpl::Fused : jb::AttnImpl::Batched;
    c10::InferenceMode guard;
    auto t = [&](std::vector<float>& x) { return torch::from_blob(x.data(), shape, torch::kFloat32); };
    torch::Tensor out =
        jb::blockAttention(t(q), t(k), t(v), kind, bc, 1.0 / std::sqrt(static_cast<double>(shape[3])), impl);
    return TensorToFloat32Array(env, out.clone());
  } catch (const calmkit::Error& e) {
    ThrowCoded(env, e.code(), e.what());
  }
}

// _probeKeepDraws(seeds, n, keeps): the dropout draws of the streams mix64(seed) (one per seed, each with its
// keep probability), by the host kernel the per-probe CPU step uses and by the tensor hash the batched step runs
// on its device (here the CPU): { host, tensor }, each [seeds][n] bytes of 0/1.
Napi::Value ProbeKeepDrawsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray() || !info[1].IsNumber() || !info[2].IsArray()) {
    ThrowCoded(env, code::kInvalidArgument, "need (seeds: number[], n: number, keeps: number[])");
  }
  auto seeds = info[0].As<Napi::Array>(), keeps = info[2].As<Napi::Array>();
  const int64_t n = info[1].As<Napi::Number>().Int64Value();
  const int64_t P = seeds.Length();
  if (n < 1 || n > (1 << 24) || keeps.Length() != seeds.Length()) ThrowCoded(env, code::kInvalidArgument, "bad sizes");
  std::vector<int64_t> keys(P);
  std::vector<float> keep(P);
  auto host = Napi::Uint8Array::New(env, static_cast<size_t>(P * n));
  std::vector<float> row(static_cast<size_t>(n));
  for (int64_t p = 0; p < P; ++p) {
    const uint64_t key = calmkit::probes::mix64(static_cast<uint64_t>(seeds.Get(p).As<Napi::Number>().Int64Value()));
    keys[p] = static_cast<int64_t>(key);
    keep[p] = keeps.Get(p).As<Napi::Number>().FloatValue();
    calmkit::probes::dropoutRow(row.data(), nullptr, nullptr, nullptr, n, key, 0, keep[p], 1.0f / keep[p]);
    for (int64_t i = 0; i < n; ++i) host[p * n + i] = row[i] != 0.0f;
  }
  c10::InferenceMode guard;
  auto t = calmkit::probes::keepDraws(torch::tensor(keys, torch::kLong), n, torch::tensor(keep))
               .to(torch::kUInt8)
               .contiguous();
  auto tensor = Napi::Uint8Array::New(env, static_cast<size_t>(P * n));
  std::copy_n(t.data_ptr<uint8_t>(), P * n, tensor.Data());
  auto o = Napi::Object::New(env);
  o.Set("host", host);
  o.Set("tensor", tensor);
  return o;
}

}  // namespace

void InitTesting(Napi::Env env, Napi::Object exports) {
  exports.Set("_jukeboxTimingBins", Napi::Function::New(env, TimingBinsJs, "_jukeboxTimingBins"));
  exports.Set("_jukeboxAttention", Napi::Function::New(env, AttentionJs, "_jukeboxAttention"));
  exports.Set("_probeKeepDraws", Napi::Function::New(env, ProbeKeepDrawsJs, "_probeKeepDraws"));
}

}  // namespace calmkit_napi
