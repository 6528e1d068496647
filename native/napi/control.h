// Cancellation and flow control shared by every long job: JS creates a control handle, passes it to the job,
// and calls cancel(control) (an AbortSignal's listener) or consumed(control) (a streamed chunk was taken).
#pragma once
#include <napi.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

namespace calmkit_napi {

struct Control {
  std::mutex mu;
  std::condition_variable cv;
  bool cancelled = false;
  int64_t pending = 0;    // streamed chunks sent, not yet consumed
  int64_t sent = 0;       // events handed to a thread-safe function
  int64_t delivered = 0;  // events that ran on the JS thread (or were dropped at teardown)

  bool isCancelled() {
    std::lock_guard<std::mutex> lock(mu);
    return cancelled;
  }
};

// The job's hold on a control handle; throws a typed ArgumentError when `v` is not one. Jobs keep the
// shared_ptr, so the handle may be garbage-collected while they run.
std::shared_ptr<Control> GetControl(const Napi::Value& v);

void InitControl(Napi::Env env, Napi::Object exports);

}  // namespace calmkit_napi
