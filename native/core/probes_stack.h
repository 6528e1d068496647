// Training of one stack: the probes of one architecture (hidden sizes, and MLP or attention head), stepped
// together for all epochs, then their curves, kept weights and selection candidates written into the Result. Also
// the data every stack shares: the feature matrix, per-instrument standardisation and the evaluation splits on the
// device.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "core/probes.h"
#include "core/probes_kernels.h"

namespace calmkit::probes {

struct Scaler {
  torch::Tensor mean, std;  // [dim] float32 on CPU; undefined without standardisation
};

// Runs `net` over the rows of x [n, in] in blocks of exactly kForwardRows rows (the last one padded with zeros) and
// returns its [n, out] outputs: every product then has one shape whatever n is, so a clip's probabilities are the
// same bits whichever clips are predicted with it (BLAS and cuBLAS choose kernels by shape), and the trainer's
// test probabilities equal predict()'s on the same features.
constexpr int64_t kForwardRows = 64;
torch::Tensor forwardRows(const torch::Tensor& x, const std::function<torch::Tensor(const torch::Tensor&)>& net);

// The same for clips of S rows each (attention probes): x [n * S, in] in blocks of kForwardRows clips; `valid`
// [n, S] (bool; undefined when every segment is real) is blocked alongside. The padding clips are all valid.
torch::Tensor forwardClips(const torch::Tensor& x, int64_t S, const torch::Tensor& valid,
                           const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& net);

// StandardScaler semantics over the given rows of X: population std, and a constant feature keeps scale 1.
Scaler fitScaler(const torch::Tensor& X, const std::vector<int64_t>& rows);
Scaler fitScaler(const torch::Tensor& X, const Split& train);

// One probe's forward pass on standardised rows: the MLP's logits [rows, 1] for x [rows, in]; with `attention`,
// x holds S rows per clip ([clips * S, in]) and the result is the clips' logits [clips, 1] (and their attention
// weights [clips, S] in *weights when given). w[l] is [in, out], b[l] is [1, out] or [out]; wa [last hidden, 1].
struct NetTensors {
  std::vector<torch::Tensor> w, b;
  torch::Tensor wa;  // the attention layer (no bias: softmax ignores a shared shift); undefined for an MLP probe
};
torch::Tensor netLogits(const NetTensors& net, const torch::Tensor& x, int64_t S, const torch::Tensor& valid,
                        torch::Tensor* weights = nullptr);

// What every stack of one grid reads.
struct Shared {
  const float* features;
  int64_t n, dim;
  int64_t segments;  // rows of `dim` values per clip: 1 when each clip is one vector
  const std::vector<int32_t>& validSegments;  // per clip, or empty (all segments real)
  torch::Tensor X;  // CPU view of the features, [n * segments, dim]
  const std::vector<Task>& tasks;
  const std::vector<Config>& configs;
  const Options& opt;
  torch::Device device;
  std::vector<Scaler> scalers;
  // Per task, on device, filled on first use: validation targets; for MLP probes also the standardised rows
  // (attention probes build theirs per evaluation; probes_stack.cpp, ensureEvalData) and, for clips with padding,
  // the [clips, S] mask of real segments (undefined when all are real).
  std::vector<torch::Tensor> valX, valY, testX, valValid, testValid;

  // Some clip has fewer real segments than `segments` (set once by trainGrid: masks are needed only then).
  bool padded = false;

  int64_t validOf(int64_t clip) const {
    return validSegments.empty() ? segments : static_cast<int64_t>(validSegments[static_cast<size_t>(clip)]);
  }
};

// An architecture: the hidden sizes and whether the probe pools segments with attention.
struct Arch {
  std::vector<int64_t> hidden;
  bool attention = false;
  bool operator==(const Arch& o) const { return hidden == o.hidden && attention == o.attention; }
};

// Bytes one probe of this architecture costs in a stack (weights, Adam state, best copy, activations): the unit
// of maxStackBytes. rowsPerClip is S for attention probes, else 1. The bf16 step adds the weights' bf16 copy.
int64_t stackBytesPerProbe(int64_t dim, const Arch& arch, int64_t batchSize, int64_t rowsPerClip,
                           MatmulPrecision precision);

// Trains the probes `ps` (all of architecture `arch`, sorted by steps per epoch, descending) for all epochs and
// fills in their results and their instruments' selections. `probesDone` advances by the stack's size.
void trainStack(Shared& sh, const Arch& arch, std::vector<ProbeSpec> ps, Result& res, int64_t stackIndex,
                int64_t stacks, int64_t& probesDone);

}  // namespace calmkit::probes
