// The probe trainer's plain types, shared by its parts (probes.h's API, the stack, the step, the heads, the
// evaluation) and by the glue: the data a grid trains on, its configs and options, and what it returns. No LibTorch
// here, so the public header stays light.
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

// The head of the paper's probe: its output layer's value is the clip's logit (probes_heads.h).
inline constexpr const char* kMlpHead = "mlp";

struct Config {
  std::vector<int64_t> hidden;  // [] is a linear probe (with input dropout)
  double dropout = 0.5;
  double l2 = 0;  // Adam's coupled weight decay
  // What turns the last layer into the clip's logit, by its name in the heads' registry (probes_heads.h): "mlp",
  // the paper's probe on one vector per clip (needs Options::segments == 0), or "attention", attention pooling over
  // the segments of a clip (needs Options::segments >= 1).
  std::string head = kMlpHead;
};

struct Progress {
  int64_t epoch = 0, epochs = 0;  // epochs finished in the current stack
  int64_t stack = 0, stacks = 0;  // which stack of probes is training
  int64_t probes = 0;             // probes in the current stack
  int64_t probesDone = 0, probesTotal = 0;
};

// The arithmetic of a training step's matrix products. fp32 is the paper's. bf16 rounds the operands of every
// training product (the step's activations, its output gradients, and a bf16 copy of the weights refreshed by
// Adam) to bfloat16 and accumulates in fp32; the master weights, Adam's moments, biases, the loss and its
// gradient, and every reduction stay fp32, and evaluation (the per-epoch validation loss that picks the kept
// epoch, the test pass, the returned nets) runs in fp32 on the master weights, as predict() does.
enum class MatmulPrecision { kFp32, kBf16 };

// Test-only: one training step of a grid of exactly one probe, as the trainer did it (test/probes-torch.test.ts checks
// it against PyTorch in float64). The parameters in the order W0, b0, W1, b1, ..., then the head's own parameters;
// `grads` are the gradients the step formed (before Adam, without the L2 term), `weights` the parameters after its
// update. Step 0 is the initial weights, with no gradients.
struct TraceStep {
  int64_t step = 0;
  std::vector<std::vector<float>> grads, weights;
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
  int threads = 0;              // intra-op threads while training; 0 = by stack size (1 for small stacks, else all)
  // Step every stack with batched products over the stack (bmm/baddbmm) and Adam in tensor operations, the step
  // CUDA uses, on any device: checks that path's arithmetic on a machine without a GPU.
  bool batchedStep = false;
  MatmulPrecision matmulPrecision = MatmulPrecision::kFp32;
  // 0: every row of the feature matrix is one clip's vector ([n, dim]). S >= 1: every row holds S segment vectors
  // ([n, S, dim] row-major), for heads that read segments.
  int64_t segments = 0;
  // With segments: how many leading segments of each clip are real (1..S, one per row of the matrix); the rest are
  // padding, never read. Empty: all S are real.
  std::vector<int32_t> validSegments;
  std::function<bool()> cancelled;
  std::function<void(const Progress&)> progress;
  std::function<void(const TraceStep&)> trace;  // test-only (TraceStep); needs one instrument and one config
};

struct Layer {
  int64_t in = 0, out = 0;
  std::vector<float> weight;  // [in][out], row-major: y = x W + b
  std::vector<float> bias;    // [out]
};

// A trained probe as a plain function of a raw feature row: standardise (when mean/std are present), then
// the layers with ReLU between them; the last layer's output is the score of a row. The "mlp" head takes it as the
// clip's logit; a head that reads segments applies the layers to every segment row and combines their scores with
// its own layers (`headLayers`, in the head's order: the attention head's one layer [last hidden, 1] gives each
// segment's attention logit, its bias 0 and ignored). Then a sigmoid.
struct Net {
  std::vector<float> mean, std;
  std::vector<Layer> layers;
  std::string head = kMlpHead;
  std::vector<Layer> headLayers;
};

struct ProbeResult {
  int task = 0, config = 0;
  std::vector<float> valLoss, valAcc;  // one entry per epoch
  int64_t bestEpoch = -1;              // 0-based epoch whose weights were kept; -1: none improved on +inf
  double bestValLoss = 0, bestValAcc = 0;
  std::vector<float> testProb;     // P(present) for each test row, with the kept weights
  std::vector<float> testWeights;  // heads that weigh segments: each test clip's weights over its S segments [test][S]
  bool hasNet = false;
  Net net;
};

struct TaskResult {
  int selected = -1;  // config index (into the grid): lowest validation loss, ties to the earlier config
  Net selectedNet;
  int linear = -1;  // config index of the best zero-hidden-layer probe on one vector per clip, -1 when none
  Net linearNet;
};

struct Result {
  std::vector<ProbeResult> probes;  // task-major: probes[t * configs + c]
  std::vector<TaskResult> tasks;
  int64_t stacks = 0;
  double seconds = 0;
  std::string device;
};

}  // namespace calmkit::probes
