#include "core/step_timer.h"

#include <time.h>

namespace calmkit::profile {
namespace {

thread_local StepTimes* current = nullptr;
thread_local StageTimes* currentStages = nullptr;

void syncDevice(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

void sync(const StepTimes& t) { syncDevice(t.device); }

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

StageRecording::StageRecording(StageTimes* times) : previous_(currentStages) { currentStages = times; }

StageRecording::~StageRecording() { currentStages = previous_; }

Stage::Stage(StageKind kind, int64_t block) : times_(currentStages), kind_(kind), block_(block) {
  if (!times_) return;
  syncDevice(times_->device);
  start_ = std::chrono::steady_clock::now();
  cpuStart_ = processCpuSeconds();
}

Stage::~Stage() {
  if (!times_) return;
  syncDevice(times_->device);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double cpu = processCpuSeconds() - cpuStart_;
  switch (kind_) {
    case StageKind::Encode:
      times_->encode += s;
      times_->encodeCpu += cpu;
      break;
    case StageKind::Embed:
      times_->embed += s;
      break;
    case StageKind::Pool:
      times_->pool += s;
      break;
    case StageKind::Block:
      if (block_ >= 0) {
        const size_t b = static_cast<size_t>(block_);
        if (times_->blocks.size() <= b) times_->blocks.resize(b + 1, 0.0);
        if (times_->blocksCpu.size() <= b) times_->blocksCpu.resize(b + 1, 0.0);
        times_->blocks[b] += s;
        times_->blocksCpu[b] += cpu;
      }
      break;
  }
}

}  // namespace calmkit::profile
