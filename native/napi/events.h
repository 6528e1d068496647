// Events from a job's thread to a JS callback through a thread-safe function, counted on the job's Control so the
// job can wait, before it settles its promise, until every event has run on the JS thread (none arrives after the
// result). Used by extraction's sink (chunks, progress) and the benchmark's progress lines.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <optional>

#include "napi/control.h"

namespace calmkit_napi {

class EventSender {
 public:
  // No function: every send is a no-op (the caller passed no callback).
  EventSender(std::shared_ptr<Control> ctl, std::optional<Napi::ThreadSafeFunction> tsfn)
      : ctl_(std::move(ctl)), tsfn_(std::move(tsfn)) {}

  bool active() const { return tsfn_.has_value(); }
  // Queues `make` (run on the JS thread, its value passed to the callback); blocks while the queue is full. A
  // throwing listener does not take the job down: the JS side reports its own errors.
  void send(std::function<Napi::Value(Napi::Env)> make);
  // Waits for every queued event to have run (or been dropped at teardown), then releases the function.
  void finish();

 private:
  static void markDelivered(const std::shared_ptr<Control>& ctl);
  std::shared_ptr<Control> ctl_;
  std::optional<Napi::ThreadSafeFunction> tsfn_;
};

}  // namespace calmkit_napi
