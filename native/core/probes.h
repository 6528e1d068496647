// Instrument probes: jukemir-style MLP probes trained as a whole grid at once.
//
// Every probe of one architecture (hidden sizes) lives in a stacked tensor [P, in, out]; a training step is a
// handful of batched matrix products over the stack, whatever the instrument or config of each probe. The
// random streams (weight init, batch order, dropout masks) are counter-based hashes keyed by (seed,
// instrument name, config), never by a probe's position in the stack, so a probe trains to the same weights
// alone or inside any grid. Nothing here draws from torch's generators.
//
// The trainer's parts: probes_random.h (the streams), probes_kernels.{h,cpp} (dropout rows and Adam),
// probes_stack.{h,cpp} (one stack's training), probes.cpp (checks, the grid's orchestration, predict).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace calmkit::probes {

// Rows into the shared feature matrix and their binary targets (1 = the instrument is present).
struct Split {
  std::vector<int32_t> rows;
  std::vector<uint8_t> targets;
};

struct Task {
  std::string instrument;
  Split train, val, test;
};

struct Config {
  std::vector<int64_t> hidden;  // [] is a linear probe (with input dropout)
  double dropout = 0.5;
  double l2 = 0;  // Adam's coupled weight decay
};

struct Progress {
  int64_t epoch = 0, epochs = 0;      // epochs finished in the current stack
  int64_t stack = 0, stacks = 0;      // which stack of probes is training
  int64_t probes = 0;                 // probes in the current stack
  int64_t probesDone = 0, probesTotal = 0;
};

struct Options {
  int64_t epochs = 800;
  int64_t batchSize = 64;  // even: half positives, half negatives
  double lr = 1e-4;
  uint64_t seed = 0;
  bool standardize = true;
  std::string device = "cpu";  // cpu | cuda | cuda:N | auto (core/device.h)
  // Probes trained together are cut into stacks that fit these limits (0 = no limit). One probe per stack
  // is the one-at-a-time reference.
  int64_t maxStackBytes = 0;
  int64_t maxProbesPerStack = 0;
  bool keepAllWeights = false;  // return the kept weights of every probe, not only the selected ones
  int threads = 0;  // intra-op threads while training; 0 = by stack size (1 for small stacks, else all)
  // Step every stack with batched products over the stack (bmm/baddbmm) and Adam in tensor operations, the step
  // CUDA uses, on any device: checks that path's arithmetic on a machine without a GPU.
  bool batchedStep = false;
  std::function<bool()> cancelled;
  std::function<void(const Progress&)> progress;
};

struct Layer {
  int64_t in = 0, out = 0;
  std::vector<float> weight;  // [in][out], row-major: y = x W + b
  std::vector<float> bias;    // [out]
};

// A trained probe as a plain function of a raw feature row: standardise (when mean/std are present), then
// the layers with ReLU between them, then a sigmoid.
struct Net {
  std::vector<float> mean, std;
  std::vector<Layer> layers;
};

struct ProbeResult {
  int task = 0, config = 0;
  std::vector<float> valLoss, valAcc;  // one entry per epoch
  int64_t bestEpoch = -1;              // 0-based epoch whose weights were kept; -1: none improved on +inf
  double bestValLoss = 0, bestValAcc = 0;
  std::vector<float> testProb;         // P(present) for each test row, with the kept weights
  bool hasNet = false;
  Net net;
};

struct TaskResult {
  int selected = -1;  // config index (into the grid): lowest validation loss, ties to the earlier config
  Net selectedNet;
  int linear = -1;    // config index of the best zero-hidden-layer probe, -1 when the grid has none
  Net linearNet;
};

struct Result {
  std::vector<ProbeResult> probes;  // task-major: probes[t * configs + c]
  std::vector<TaskResult> tasks;
  int64_t stacks = 0;
  double seconds = 0;
  std::string device;
};

// Checks everything trainGrid relies on; throws calmkit::Error with a code naming the problem.
void validate(const float* features, int64_t n, int64_t dim, const std::vector<Task>& tasks,
              const std::vector<Config>& configs, const Options& opt);

Result trainGrid(const float* features, int64_t n, int64_t dim, const std::vector<Task>& tasks,
                 const std::vector<Config>& configs, const Options& opt);

// Which build of the dropout kernels this process runs: "avx512" or "x86-64 baseline" (CALMKIT_CPU_BASELINE=1).
const char* dropoutKernel();

// P(present) for n rows and each net: out[row * nets + k].
std::vector<float> predict(const float* features, int64_t n, int64_t dim, const std::vector<Net>& nets,
                           const std::string& device);

// The stream key of a probe: what makes its init and masks its own.
uint64_t probeKey(uint64_t seed, const std::string& instrument, const Config& config);

}  // namespace calmkit::probes
