// The addon's entry: configures torch threads once, then lets each binding file register itself.
#include <napi.h>

#include "core/runtime.h"
#include "napi/exports.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  calmkit::runtime::configureMemory();
  calmkit::runtime::configureThreads();
  calmkit_napi::InitRuntime(env, exports);
  calmkit_napi::InitControl(env, exports);
  calmkit_napi::InitAudio(env, exports);
  calmkit_napi::InitProbes(env, exports);
  calmkit_napi::InitJukebox(env, exports);
  calmkit_napi::InitStore(env, exports);
  calmkit_napi::InitTesting(env, exports);
  calmkit_napi::InitBench(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(calmkit, Init)
