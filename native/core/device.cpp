#include "core/device.h"

#include <torch/version.h>

#include "core/error.h"
#include "core/runtime.h"

namespace calmkit::device {

torch::Device resolve(const std::string& spec) {
  if (spec == "cpu") return torch::kCPU;
  const bool cuda = torch::cuda::is_available();
  if (spec == "auto") return cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    int64_t index = 0;
    if (spec.size() > 4) {
      const std::string digits = spec.substr(5);
      if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 3) {
        throw Error(code::kInvalidArgument, "device must be cpu, cuda, cuda:N or auto; got '" + spec + "'");
      }
      index = std::stoll(digits);
    }
    if (!cuda) {
      throw Error(code::kDevice, "device '" + spec + "' is not available: " + runtime::cudaUnavailableReason());
    }
    if (index >= static_cast<int64_t>(torch::cuda::device_count())) {
      throw Error(code::kDevice, "device '" + spec + "' is not available: " +
                                     std::to_string(torch::cuda::device_count()) + " CUDA device(s) visible");
    }
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw Error(code::kInvalidArgument, "device must be cpu, cuda, cuda:N or auto; got '" + spec + "'");
}

void checkMatmulDtype(torch::Device device, c10::ScalarType dtype, const std::string& what, const std::string& advice) {
  try {
    c10::InferenceMode guard;
    auto a = torch::ones({2, 2}, torch::TensorOptions().dtype(dtype).device(device));
    (void)torch::addmm(a, a, a);
  } catch (const std::exception&) {
    throw Error(code::kDevice,
                what + " is not supported on " + device.str() + " by this LibTorch (" + TORCH_VERSION + "); " + advice);
  }
}

}  // namespace calmkit::device
