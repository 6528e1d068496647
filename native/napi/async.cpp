#include "napi/async.h"

#include <torch/torch.h>

#include <chrono>

namespace calmkit_napi {

Executor::Executor(std::string name, int threads, bool growing) : growing_(growing) {
  std::lock_guard<std::mutex> lock(mu_);
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
    // Each idle thread takes one job; more queued jobs than idle threads means one would wait.
    if (growing_ && jobs_.size() > idle_) threads_.emplace_back([this] { loop(); });
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
      ++idle_;
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      --idle_;
      if (stopping_ && jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    const auto t0 = std::chrono::steady_clock::now();
    job();
    const double busy = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::lock_guard<std::mutex> lock(mu_);
    stats_.busySeconds += busy;
    ++stats_.jobs;
  }
}

ExecutorStats Executor::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
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

Executor& loadExecutor() {
  static auto* ex = new Executor("load", 0, /*growing=*/true);
  return *ex;
}

}  // namespace calmkit_napi
