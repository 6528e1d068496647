// Instrument probes: jukemir-style MLP probes trained as a whole grid at once.
//
// Every probe of one architecture (hidden sizes and head) lives in a stacked tensor [P, in, out]; a training step
// is a handful of matrix products per probe (or batched over the stack), whatever the instrument or config of each
// probe. The random streams (weight init, batch order, dropout masks) are counter-based hashes keyed by (seed,
// instrument name, config), never by a probe's position in the stack, so a probe trains to the same weights
// alone or inside any grid. Nothing here draws from torch's generators.
//
// Every probe has the same shared layers (dropout on the input, Linear -> ReLU -> Dropout per hidden size, and an
// output Linear giving one score per row) and a head (probes_heads.h) that turns the scores into the clip's logit.
// The paper's probe ("mlp") reads one vector per clip and its score is the logit. The attention probe reads S
// segment vectors per clip ([n, S, dim]): the layers run on every segment, then an attention logit a_s per segment
// (one more Linear), weights softmax(a) over the clip's valid segments, and the clip's logit sum_s w_s z_s. With one
// segment it is the MLP probe, bit for bit (same streams, same products; see docs/contracts.md).
//
// The trainer's parts, top down: probes.cpp (checks, the grid's orchestration, predict), probes_stack (one stack:
// allocation, batches, the epoch loop), probes_step (the one forward/backward, over a product policy),
// probes_eval (validation, the kept epoch, test probabilities, selection), probes_heads (the heads and their
// registry), probes_kernels (dropout rows, Adam, the bf16 products), probes_random.h (the streams); the plain types
// are probes_types.h.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/probes_types.h"

namespace calmkit::probes {

// "fp32" | "bf16"; anything else throws kInvalidArgument naming matmulPrecision.
MatmulPrecision parseMatmulPrecision(const std::string& name);
const char* matmulPrecisionName(MatmulPrecision p);

// Checks everything trainGrid relies on; throws calmkit::Error with a code naming the problem.
void validate(const float* features, int64_t n, int64_t dim, const std::vector<Task>& tasks,
              const std::vector<Config>& configs, const Options& opt);

Result trainGrid(const float* features, int64_t n, int64_t dim, const std::vector<Task>& tasks,
                 const std::vector<Config>& configs, const Options& opt);

// P(present) for n rows and each net: out[row * nets + k].
std::vector<float> predict(const float* features, int64_t n, int64_t dim, const std::vector<Net>& nets,
                           const std::string& device);

// Nets whose head reads segments (attention) on n clips of `segments` rows each ([n, segments, dim]; `valid` as
// Options::validSegments): P(present) out[clip * nets + k] and, when asked and the head weighs segments, every
// clip's weights weights[(clip * nets + k) * segments + s] (0 on padding).
struct SegmentPrediction {
  std::vector<float> probabilities, weights;
};
SegmentPrediction predictSegments(const float* features, int64_t n, int64_t segments, int64_t dim,
                                  const std::vector<int32_t>& valid, const std::vector<Net>& nets,
                                  const std::string& device, bool withWeights);

// The stream key of a probe: what makes its init and masks its own. It does not depend on the head: an attention
// probe draws its shared layers and masks from the streams of the MLP probe with the same hidden sizes, dropout and
// L2 (its attention layer from one more init stream), which is what makes the one-segment attention probe the MLP
// probe exactly.
uint64_t probeKey(uint64_t seed, const std::string& instrument, const Config& config);

}  // namespace calmkit::probes
