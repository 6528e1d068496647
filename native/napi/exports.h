// Each binding file registers its functions here; module.cpp calls them all.
#pragma once
#include <napi.h>

namespace calmkit_napi {
void InitRuntime(Napi::Env env, Napi::Object exports);
void InitControl(Napi::Env env, Napi::Object exports);
void InitAudio(Napi::Env env, Napi::Object exports);
void InitProbes(Napi::Env env, Napi::Object exports);
void InitJukebox(Napi::Env env, Napi::Object exports);
void InitStore(Napi::Env env, Napi::Object exports);
void InitTesting(Napi::Env env, Napi::Object exports);
void InitBench(Napi::Env env, Napi::Object exports);
}  // namespace calmkit_napi
