// What every stack of one grid reads: the feature matrix, per-instrument standardisation and the evaluation splits
// on the device; the architecture a stack trains; and the fixed-shape forward blocks that make a clip's
// probabilities independent of which clips are predicted with it.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "core/probes_heads.h"
#include "core/probes_types.h"

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

// The same for clips of S rows each (heads that read segments): x [n * S, in] in blocks of kForwardRows clips; `valid`
// [n, S] (bool; undefined when every segment is real) is blocked alongside. The padding clips are all valid.
torch::Tensor forwardClips(const torch::Tensor& x, int64_t S, const torch::Tensor& valid,
                           const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& net);

// StandardScaler semantics over the given rows of X: population std, and a constant feature keeps scale 1.
Scaler fitScaler(const torch::Tensor& X, const std::vector<int64_t>& rows);
Scaler fitScaler(const torch::Tensor& X, const Split& train);

// What every stack of one grid reads.
struct Shared {
  const float* features;
  int64_t n, dim;
  int64_t segments;                           // rows of `dim` values per clip: 1 when each clip is one vector
  const std::vector<int32_t>& validSegments;  // per clip, or empty (all segments real)
  torch::Tensor X;                            // CPU view of the features, [n * segments, dim]
  const std::vector<Task>& tasks;
  const std::vector<Config>& configs;
  const Options& opt;
  torch::Device device;
  std::vector<Scaler> scalers;
  // Per task, on device, filled on first use: validation targets; for one-vector probes also the standardised rows
  // (segment probes build theirs per evaluation; probes_eval.cpp) and, for clips with padding, the [clips, S] mask of
  // real segments (undefined when all are real).
  std::vector<torch::Tensor> valX, valY, testX, valValid, testValid;

  // Some clip has fewer real segments than `segments` (set once by trainGrid: masks are needed only then).
  bool padded = false;

  int64_t validOf(int64_t clip) const {
    return validSegments.empty() ? segments : static_cast<int64_t>(validSegments[static_cast<size_t>(clip)]);
  }
};

// An architecture: the hidden sizes and the head.
struct Arch {
  std::vector<int64_t> hidden;
  const Head* head;
  bool operator==(const Arch& o) const { return hidden == o.hidden && head == o.head; }
  // Rows a clip is to this architecture's probes: S for a head that reads segments, else 1.
  int64_t rowsPerClip(int64_t segments) const { return head->readsSegments() ? segments : 1; }
};

// Bytes one probe of this architecture costs in a stack (weights, Adam state, best copy, gradients, a batch's
// activations; the bf16 step adds the weights' bf16 copy): the unit of maxStackBytes, and what validation refuses
// before any allocation when one probe alone exceeds the machine's memory. In double, so absurd sizes cannot
// overflow.
double stackBytesPerProbe(int64_t dim, const Arch& arch, int64_t batchSize, int64_t rowsPerClip,
                          MatmulPrecision precision);

}  // namespace calmkit::probes
