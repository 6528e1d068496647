// Random-weight checkpoints (`model init`): jukebox's init scales (docs/jukebox-spec.md section 5.7), for tests,
// demos and throughput measurements on machines without the real weights.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

#include "core/checkpoint.h"

namespace calmkit::jukebox {

// Random weights with jukebox's init scales, as stored (fp16 `.w`). The codebook is a placeholder here:
// writeRandomModel sets it from encoder outputs.
std::map<std::string, torch::Tensor> randomTensors(const Hparams& hp, at::Generator& gen);
// The same init drawn on `device` with torch's default generator for it (seed it with torch::manual_seed): a
// model of the real 5B shapes made where it runs, with no file and no host copy. The codebook (zeros in
// randomTensors, filled from encoder outputs by writeRandomModel) is standard normal here.
std::map<std::string, torch::Tensor> randomTensorsOn(const Hparams& hp, torch::Device device);

// A random-weight checkpoint. Like jukebox's codebook init, the codebook is a random sample of the (random)
// encoder's outputs, here on a fixed synthetic signal, so random models still use many codes.
void writeRandomModel(const Hparams& hp, uint64_t seed, const std::string& path);

}  // namespace calmkit::jukebox
