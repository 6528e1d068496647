// Off-JS-thread jobs for the addon: addon-owned worker threads (long model jobs must not starve libuv's pool,
// which Node uses for fs), completion back on the JS thread through a ThreadSafeFunction, typed errors.
#pragma once
#include <napi.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "napi/errors.h"

namespace calmkit_napi {

// How long a pool's threads have spent running jobs, summed over its threads, and how many jobs ran.
struct ExecutorStats {
  double busySeconds = 0;
  int64_t jobs = 0;
};

class Executor {
 public:
  // `growing`: a job never waits for another; a thread is added whenever every thread is busy (threads stay
  // for later jobs). For jobs that may block on the filesystem, so one stuck job cannot hold up the next.
  Executor(std::string name, int threads, bool growing = false);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
  void post(std::function<void()> job);
  ExecutorStats stats();

 private:
  void loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool growing_ = false;
  bool stopping_ = false;
  ExecutorStats stats_;
};

// Short I/O-bound jobs (decode, resample) and long compute jobs (forward passes, training) use separate
// threads so a decode never waits behind a forward pass.
Executor& audioExecutor();
Executor& computeExecutor();
// Model loads and inspections: a growing pool, so a load stuck in the filesystem (a hung network mount) never
// delays the next load, and a load never waits behind a long extraction on the compute thread.
Executor& loadExecutor();

template <typename R>
Napi::Promise Submit(Napi::Env env, Executor& ex, std::function<R()> work,
                     std::function<Napi::Value(Napi::Env, R&)> toJs) {
  struct State {
    Napi::Promise::Deferred deferred;
    std::function<R()> work;
    std::function<Napi::Value(Napi::Env, R&)> toJs;
    std::optional<R> result;
    std::string code, message;
  };
  auto deferred = Napi::Promise::Deferred::New(env);
  auto* st = new State{deferred, std::move(work), std::move(toJs), std::nullopt, {}, {}};
  auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                            "calmkit-job", 0, 1);
  ex.post([st, tsfn]() mutable {
    Guard([st] { st->result.emplace(st->work()); }, st->code, st->message);
    tsfn.BlockingCall([st](Napi::Env env, Napi::Function) {
      std::unique_ptr<State> own(st);
      Napi::HandleScope scope(env);
      if (own->result) {
        std::string code, message;
        Napi::Value value;
        if (Guard([&] { value = own->toJs(env, *own->result); }, code, message)) {
          own->deferred.Resolve(value);
        } else {
          own->deferred.Reject(MakeError(env, code, message).Value());
        }
      } else {
        own->deferred.Reject(MakeError(env, own->code, own->message).Value());
      }
    });
    tsfn.Release();
  });
  return deferred.Promise();
}

}  // namespace calmkit_napi
