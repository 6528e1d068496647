// Wall-clock time per named step of a computation, for finding where the time goes (`calmkit-core bench-shapes
// --profile`). Off unless a StepTimes is installed on the calling thread: a disabled Step costs one
// thread-local load, so the steps can stay in the model's hot path.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace calmkit::profile {

struct StepTimes {
  torch::Device device = torch::kCPU;     // CUDA work is asynchronous: each step synchronises it
  std::map<std::string, double> seconds;  // wall clock
  std::map<std::string, double>
      cpuSeconds;  // this process's CPU time (all threads): the work, even on a shared machine
  std::map<std::string, int64_t> calls;
};

// Installs `times` for this thread while in scope (nested scopes restore the outer one).
class Recording {
 public:
  explicit Recording(StepTimes* times);
  ~Recording();
  Recording(const Recording&) = delete;
  Recording& operator=(const Recording&) = delete;

 private:
  StepTimes* previous_;
};

// CPU time of this process so far (all threads), seconds.
double processCpuSeconds();

// Adds the time from construction to destruction to `name` when a StepTimes is installed.
class Step {
 public:
  explicit Step(const char* name);
  ~Step();
  Step(const Step&) = delete;
  Step& operator=(const Step&) = delete;

 private:
  StepTimes* times_;
  const char* name_;
  std::chrono::steady_clock::time_point start_;
  double cpuStart_ = 0;
};

// The coarse stages of an extraction (the input's encoding, the embedding, each block, the pooling), timed for the
// benchmark engine (core/bench.h) on every pass it measures: installed per thread like StepTimes, and a disabled
// Stage costs one thread-local load. With CUDA, each stage boundary synchronises, so a stage's time is its own.
struct StageTimes {
  torch::Device device = torch::kCPU;
  double encode = 0, embed = 0, pool = 0;
  std::vector<double> blocks;  // by 0-based block index, summed over the clips of the recording
  // This process's CPU seconds in the same stages (all threads): on a shared machine, the work without the wait.
  double encodeCpu = 0;
  std::vector<double> blocksCpu;
};

class StageRecording {
 public:
  explicit StageRecording(StageTimes* times);
  ~StageRecording();
  StageRecording(const StageRecording&) = delete;
  StageRecording& operator=(const StageRecording&) = delete;

 private:
  StageTimes* previous_;
};

enum class StageKind { Encode, Embed, Block, Pool };

class Stage {
 public:
  explicit Stage(StageKind kind, int64_t block = -1);
  ~Stage();
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

 private:
  StageTimes* times_;
  StageKind kind_;
  int64_t block_;
  std::chrono::steady_clock::time_point start_;
  double cpuStart_ = 0;
};

}  // namespace calmkit::profile
