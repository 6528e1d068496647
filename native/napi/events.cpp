#include "napi/events.h"

namespace calmkit_napi {

void EventSender::send(std::function<Napi::Value(Napi::Env)> make) {
  if (!tsfn_) return;
  {
    std::lock_guard<std::mutex> lock(ctl_->mu);
    ++ctl_->sent;
  }
  auto ctl = ctl_;
  using Job = std::function<Napi::Value(Napi::Env)>;
  auto* job = new Job(std::move(make));
  napi_status st = tsfn_->BlockingCall(job, [ctl](Napi::Env env, Napi::Function fn, Job* job) {
    std::unique_ptr<Job> own(job);
    if (env != nullptr && fn != nullptr) {
      Napi::HandleScope scope(env);
      try {
        fn.Call({(*own)(env)});
      } catch (const Napi::Error&) {
        // A throwing listener must not take the job down; the JS side reports its own errors.
      }
    }
    markDelivered(ctl);
  });
  if (st != napi_ok) {
    delete job;
    markDelivered(ctl);
  }
}

void EventSender::finish() {
  if (!tsfn_) return;
  {
    std::unique_lock<std::mutex> lock(ctl_->mu);
    ctl_->cv.wait(lock, [&] { return ctl_->delivered >= ctl_->sent; });
  }
  tsfn_->Release();
  tsfn_.reset();
}

void EventSender::markDelivered(const std::shared_ptr<Control>& ctl) {
  {
    std::lock_guard<std::mutex> lock(ctl->mu);
    ++ctl->delivered;
  }
  ctl->cv.notify_all();
}

}  // namespace calmkit_napi
