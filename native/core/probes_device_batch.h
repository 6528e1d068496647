// The batched (CUDA-style) probe step's inputs and dropout masks, built where the step runs: the host gathers
// only each instrument's batch rows (one copy per instrument, not per probe), and the per-probe expansion,
// standardisation and the counter-based dropout draws are tensor operations on the device. The draws are the
// same integer hash as probes_random.h, in 64-bit tensor arithmetic, so the masks are the host kernels' bits.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace calmkit::probes {

// keep[p, i] = uniform01(keys[p], i) < keepProb[p] for i in [0, n): keys [P] int64 (the stream keys' bits),
// keepProb [P] float32, all on one device. Returns [P, n] bool on that device.
torch::Tensor keepDraws(const torch::Tensor& keys, int64_t n, const torch::Tensor& keepProb);

}  // namespace calmkit::probes
