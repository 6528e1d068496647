// Where the core computes: the one device grammar of the model and the probe trainer, and whether a device
// has matrix products in a given dtype.
#pragma once
#include <torch/torch.h>

#include <string>

namespace calmkit::device {

// "cpu", "cuda", "cuda:N" or "auto" (cuda:0 when LibTorch sees a CUDA device, else the CPU). ERR_DEVICE when
// the device is not available, ERR_INVALID_ARGUMENT for anything else.
torch::Device resolve(const std::string& spec);

// Throws ERR_DEVICE, naming `what` (e.g. "precision fp16"), when `device` has no matrix products in `dtype`
// (LibTorch 1.13's CPU has none for float16). `advice` ends the message (what to use instead).
void checkMatmulDtype(torch::Device device, c10::ScalarType dtype, const std::string& what, const std::string& advice);

}  // namespace calmkit::device
