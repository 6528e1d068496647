// Instrument probes: jukemir-style MLP probes trained as a whole grid at once.
//
// Every probe of one architecture (hidden sizes) lives in a stacked tensor [P, in, out]; a training step is a
// handful of batched matrix products over the stack, whatever the instrument or config of each probe. The
// random streams (weight init, batch order, dropout masks) are counter-based hashes keyed by (seed,
// instrument name, config), never by a probe's position in the stack, so a probe trains to the same weights
// alone or inside any grid. Nothing here draws from torch's generators.
//
// Two kinds of probe share the trainer. The paper's MLP probe reads one vector per clip. The attention probe
// reads S segment vectors per clip ([n, S, dim]): the same per-segment layers (dropout on the input, Linear ->
// ReLU -> Dropout per hidden size), then per segment a score z_s (the MLP's output layer) and an attention logit
// a_s (one more Linear), weights softmax(a) over the clip's valid segments, and the clip's logit sum_s w_s z_s.
// With one segment it is the MLP probe, bit for bit (same streams, same products; see docs/contracts.md).
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
  // Attention pooling over the segments of a clip (needs Options::segments >= 1); false: the paper's probe on
  // one vector per clip (needs Options::segments == 0).
  bool attention = false;
};

struct Progress {
  int64_t epoch = 0, epochs = 0;      // epochs finished in the current stack
  int64_t stack = 0, stacks = 0;      // which stack of probes is training
  int64_t probes = 0;                 // probes in the current stack
  int64_t probesDone = 0, probesTotal = 0;
};

// The arithmetic of a training step's matrix products. fp32 is the paper's. bf16 rounds the operands of every
// training product (the step's activations, its output gradients, and a bf16 copy of the weights refreshed by
// Adam) to bfloat16 and accumulates in fp32; the master weights, Adam's moments, biases, the loss and its
// gradient, and every reduction stay fp32, and evaluation (the per-epoch validation loss that picks the kept
// epoch, the test pass, the returned nets) runs in fp32 on the master weights, as predict() does.
enum class MatmulPrecision { kFp32, kBf16 };

// "fp32" | "bf16"; anything else throws kInvalidArgument naming matmulPrecision.
MatmulPrecision parseMatmulPrecision(const std::string& name);
const char* matmulPrecisionName(MatmulPrecision p);

// Test-only: one training step of a grid of exactly one probe, as the trainer did it (test/probes-torch.test.ts checks
// it against PyTorch in float64). The parameters in the order W0, b0, W1, b1, ..., then the attention layer's
// weight; `grads` are the gradients the step formed (before Adam, without the L2 term), `weights` the parameters
// after its update. Step 0 is the initial weights, with no gradients.
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
  int threads = 0;  // intra-op threads while training; 0 = by stack size (1 for small stacks, else all)
  // Step every stack with batched products over the stack (bmm/baddbmm) and Adam in tensor operations, the step
  // CUDA uses, on any device: checks that path's arithmetic on a machine without a GPU.
  bool batchedStep = false;
  MatmulPrecision matmulPrecision = MatmulPrecision::kFp32;
  // 0: every row of the feature matrix is one clip's vector ([n, dim]). S >= 1: every row holds S segment vectors
  // ([n, S, dim] row-major), for attention probes.
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
// the layers with ReLU between them, then a sigmoid. An attention probe applies the same to every segment row
// (its last layer gives the segment's score) and has `attentionLayer` (in = the last hidden size, out = 1) for the
// segment's attention logit; the clip's logit is the softmax-weighted sum of the scores. The attention layer's
// bias is 0 and ignored: softmax is invariant to a shift shared by a clip's segments.
struct Net {
  std::vector<float> mean, std;
  std::vector<Layer> layers;
  bool attention = false;
  Layer attentionLayer;
};

struct ProbeResult {
  int task = 0, config = 0;
  std::vector<float> valLoss, valAcc;  // one entry per epoch
  int64_t bestEpoch = -1;              // 0-based epoch whose weights were kept; -1: none improved on +inf
  double bestValLoss = 0, bestValAcc = 0;
  std::vector<float> testProb;         // P(present) for each test row, with the kept weights
  std::vector<float> testWeights;      // attention probes: each test clip's weights over its S segments [test][S]
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

// What runs the bf16 products of a CPU step: "mkl gemm_bf16bf16f32" (oneMKL's bf16 GEMM with fp32 accumulation
// and output, when the LibTorch in use carries it) or "fp32 gemm on bf16-rounded operands" (the same products,
// exact in fp32, summed in fp32; also forced by CALMKIT_CPU_BASELINE=1).
const char* bf16GemmKernel();

// P(present) for n rows and each net: out[row * nets + k].
std::vector<float> predict(const float* features, int64_t n, int64_t dim, const std::vector<Net>& nets,
                           const std::string& device);

// Attention nets on n clips of `segments` rows each ([n, segments, dim]; `valid` as Options::validSegments):
// P(present) out[clip * nets + k] and, when asked, every clip's attention weights
// weights[(clip * nets + k) * segments + s] (0 on padding).
struct SegmentPrediction {
  std::vector<float> probabilities, weights;
};
SegmentPrediction predictSegments(const float* features, int64_t n, int64_t segments, int64_t dim,
                                  const std::vector<int32_t>& valid, const std::vector<Net>& nets,
                                  const std::string& device, bool withWeights);

// The stream key of a probe: what makes its init and masks its own. It does not depend on `attention`: an
// attention probe draws its shared layers and masks from the streams of the MLP probe with the same hidden sizes,
// dropout and L2 (its attention layer from one more init stream), which is what makes the one-segment attention
// probe the MLP probe exactly.
uint64_t probeKey(uint64_t seed, const std::string& instrument, const Config& config);

}  // namespace calmkit::probes
