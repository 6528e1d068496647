// A stack's evaluation and the grid's selection: after every epoch each probe's validation loss and accuracy (no
// dropout), keeping its weights at a new best loss; after the last, its test probabilities (and segment weights)
// with the kept weights, its net when asked, and each instrument's selected probe (lowest kept validation loss, ties
// to the earlier config) and best zero-hidden-layer probe.
#pragma once
#include <cstdint>
#include <vector>

#include "core/probes_kernels.h"
#include "core/probes_shared.h"
#include "core/probes_step.h"
#include "core/probes_types.h"

namespace calmkit::probes {

// The validation targets of task t and, with `rows`, its standardised validation and test rows, kept on the device
// for every later stack. One-vector probes keep the rows (small); segment probes build them per evaluation
// instead: [clips * S, dim] copies of every instrument's validation and test clips would come close to a second copy
// of the whole feature matrix.
void ensureEvalData(Shared& sh, int t, bool rows);

void evaluateEpoch(Shared& sh, const Arch& arch, const std::vector<ProbeSpec>& ps, StackParams& prm, Result& res,
                   int64_t epoch, std::vector<float>& bestLoss);

void finishStack(Shared& sh, const Arch& arch, const std::vector<ProbeSpec>& ps, StackParams& prm, Result& res);

}  // namespace calmkit::probes
