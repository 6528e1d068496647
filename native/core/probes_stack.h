// Training of one stack: the probes of one architecture (hidden sizes and head), stepped together for all epochs
// (probes_step's one step, under the policy of the device and precision), then evaluated (probes_eval): their
// curves, kept weights and selection candidates written into the Result.
#pragma once
#include <cstdint>
#include <vector>

#include "core/probes_kernels.h"
#include "core/probes_shared.h"
#include "core/probes_types.h"

namespace calmkit::probes {

// Trains the probes `ps` (all of architecture `arch`, sorted by steps per epoch, descending) for all epochs and
// fills in their results and their instruments' selections. `probesDone` advances by the stack's size.
void trainStack(Shared& sh, const Arch& arch, std::vector<ProbeSpec> ps, Result& res, int64_t stackIndex,
                int64_t stacks, int64_t& probesDone);

}  // namespace calmkit::probes
