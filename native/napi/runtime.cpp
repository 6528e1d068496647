// Binding of runtime facts: doctor().
#include "core/runtime.h"
#include "core/jukebox.h"
#include "napi/async.h"
#include "napi/convert.h"
#include "napi/exports.h"

namespace calmkit_napi {
namespace {

Napi::Value Doctor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto r = calmkit::runtime::collect();
  auto o = Napi::Object::New(env);
  o.Set("torchVersion", r.torchVersion);
  o.Set("torchDir", r.torchDir);
  o.Set("builtWithCuda", r.builtWithCuda);
  o.Set("cudaVersion", r.cudaVersion);
  o.Set("threads", r.threads);
  o.Set("threadsSource", r.threadsSource);
  o.Set("interopThreads", r.interopThreads);
  auto blas = Napi::Object::New(env);
  blas.Set("name", r.blas.name);
  blas.Set("detail", r.blas.detail);
  blas.Set("isReference", r.blas.isReference);
  o.Set("blas", blas);
  o.Set("mkldnn", r.mkldnn);
  auto bf16 = Napi::Object::New(env);
  bf16.Set("avx512Bf16", r.bf16.avx512Bf16);
  bf16.Set("amxBf16", r.bf16.amxBf16);
  bf16.Set("isaLimit", r.bf16.isaLimit);
  bf16.Set("onednnIsa", r.bf16.onednnIsa);
  bf16.Set("matmulKernel", r.bf16.matmulKernel);
  bf16.Set("linearKernel", r.bf16.linearKernel);
  bf16.Set("native", r.bf16.native);
  bf16.Set("basis", r.bf16.basis);
  o.Set("cpuBf16", bf16);
  o.Set("autoPrecisionCpu", calmkit::jukebox::precisionName(calmkit::jukebox::autoPrecision(torch::kCPU)));
  auto devs = Napi::Array::New(env, r.cudaDevices.size());
  for (size_t i = 0; i < r.cudaDevices.size(); ++i) {
    const auto& d = r.cudaDevices[i];
    auto dv = Napi::Object::New(env);
    dv.Set("index", d.index);
    dv.Set("name", d.name);
    dv.Set("totalMemory", Napi::Number::New(env, static_cast<double>(d.totalMemory)));
    dv.Set("freeMemory", Napi::Number::New(env, static_cast<double>(d.freeMemory)));
    dv.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    dv.Set("autoPrecision", calmkit::jukebox::precisionName(calmkit::jukebox::autoPrecision(
                                torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(d.index)))));
    devs.Set(static_cast<uint32_t>(i), dv);
  }
  o.Set("cudaDevices", devs);
  o.Set("cudaUnavailableReason", r.cudaUnavailableReason);
  return o;
}

Napi::Value GemmPeak(const Napi::CallbackInfo& info) {
  auto o = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(info.Env());
  int64_t m = GetInt(o, "m", 1024, 1, 1 << 20);
  int64_t n = GetInt(o, "n", 1024, 1, 1 << 20);
  int64_t k = GetInt(o, "k", 1024, 1, 1 << 20);
  int repeats = static_cast<int>(GetInt(o, "repeats", 5, 1, 1000));
  auto dtype = GetString(o, "dtype", "float32");
  auto device = GetString(o, "device", "cpu");
  return Submit<double>(
      info.Env(), computeExecutor(),
      [=] { return calmkit::runtime::measureGemmGflops(m, n, k, dtype, device, repeats); },
      [](Napi::Env env, double& g) -> Napi::Value { return Napi::Number::New(env, g); });
}

}  // namespace

void InitRuntime(Napi::Env env, Napi::Object exports) {
  exports.Set("doctor", Napi::Function::New(env, Doctor, "doctor"));
  exports.Set("gemmPeak", Napi::Function::New(env, GemmPeak, "gemmPeak"));
}

}  // namespace calmkit_napi
