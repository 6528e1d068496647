// Training of one stack: the probes of one architecture, stepped together for all epochs, then their curves,
// kept weights and selection candidates written into the Result. Also the data every stack shares: the
// feature matrix, per-instrument standardisation and the evaluation splits on the device.
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

// StandardScaler semantics: population std, and a constant feature keeps scale 1.
Scaler fitScaler(const torch::Tensor& X, const Split& train);

// What every stack of one grid reads.
struct Shared {
  const float* features;
  int64_t n, dim;
  torch::Tensor X;  // CPU view of the features
  const std::vector<Task>& tasks;
  const std::vector<Config>& configs;
  const Options& opt;
  torch::Device device;
  std::vector<Scaler> scalers;
  std::vector<torch::Tensor> valX, valY, testX;  // per task, on device, filled on first use
};

// Bytes one probe of this architecture costs in a stack (weights, Adam state, best copy, activations): the unit
// of maxStackBytes.
int64_t stackBytesPerProbe(int64_t dim, const std::vector<int64_t>& hidden, int64_t batchSize);

// Trains the probes `ps` (all with hidden sizes `hidden`, sorted by steps per epoch, descending) for all epochs
// and fills in their results and their instruments' selections. `probesDone` advances by the stack's size.
void trainStack(Shared& sh, const std::vector<int64_t>& hidden, std::vector<ProbeSpec> ps, Result& res,
                int64_t stackIndex, int64_t stacks, int64_t& probesDone);

}  // namespace calmkit::probes
