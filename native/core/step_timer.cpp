#include "core/step_timer.h"

#include <time.h>

namespace calmkit::profile {
namespace {

thread_local StepTimes* current = nullptr;

void sync(const StepTimes& t) {
  if (t.device.is_cuda()) torch::cuda::synchronize(t.device.index());
}

}  // namespace

double processCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

Recording::Recording(StepTimes* times) : previous_(current) { current = times; }

Recording::~Recording() { current = previous_; }

Step::Step(const char* name) : times_(current), name_(name) {
  if (!times_) return;
  sync(*times_);
  start_ = std::chrono::steady_clock::now();
  cpuStart_ = processCpuSeconds();
}

Step::~Step() {
  if (!times_) return;
  sync(*times_);
  times_->seconds[name_] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  times_->cpuSeconds[name_] += processCpuSeconds() - cpuStart_;
  times_->calls[name_] += 1;
}

}  // namespace calmkit::profile
