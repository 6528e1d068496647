#include "napi/async.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include "core/error.h"

namespace calmkit_napi {

Executor::Executor(std::string name, int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
}

Executor::~Executor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void Executor::post(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void Executor::loop() {
  // InferenceMode is per thread: set once on each worker thread, never on the JS thread.
  c10::InferenceMode guard;
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_ && jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

// Process-lifetime singletons: deliberately leaked so no worker is joined during static destruction,
// after Node has torn the environment down.
Executor& audioExecutor() {
  static auto* ex = new Executor("audio", 2);
  return *ex;
}

Executor& computeExecutor() {
  static auto* ex = new Executor("compute", 1);
  return *ex;
}

Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Value().Set("code", Napi::String::New(env, code));
  return err;
}

bool Guard(const std::function<void()>& fn, std::string& code, std::string& message) {
  try {
    fn();
    return true;
  } catch (const calmkit::Error& e) {
    code = e.code();
    message = e.what();
  } catch (const Napi::Error& e) {
    code = calmkit::code::kInvalidArgument;
    message = e.Message();
  } catch (const c10::Error& e) {
    code = calmkit::code::kInternal;
    message = e.what_without_backtrace();
  } catch (const std::bad_alloc&) {
    code = calmkit::code::kInternal;
    message = "out of memory";
  } catch (const std::exception& e) {
    // TorchScript surfaces its errors as std::runtime_error.
    code = calmkit::code::kInternal;
    message = e.what();
  } catch (...) {
    code = calmkit::code::kInternal;
    message = "unknown native error";
  }
  return false;
}

}  // namespace calmkit_napi
