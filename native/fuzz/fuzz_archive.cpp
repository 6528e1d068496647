// libFuzzer target: the checkpoint loader on arbitrary bytes (the zip directory walk, the CRC-checked reader under
// LibTorch's loader, the attribute and tensor checks). Any input must end in a checkpoint or a calmkit::Error;
// a crash, a sanitizer report, an escaped exception of another type or a hang is a finding.
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "core/checkpoint.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool once = [] {
    torch::set_num_threads(1);
    return true;
  }();
  (void)once;
  c10::InferenceMode guard;
  try {
    calmkit::jukebox::Checkpoint ck = calmkit::jukebox::loadCheckpointBytes(data, size, "<fuzz input>");
    // A checkpoint that loads was proven sound: reading every tensor must be safe.
    double sum = 0;
    for (const auto& [key, t] : ck.tensors) {
      if (t.numel() > 0 && (t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kFloat16))
        sum += t.to(torch::kFloat32).sum().item<double>();
    }
    if (sum != sum) std::abort();  // every weight is finite, so no sum of them is NaN
  } catch (const calmkit::Error&) {
  }
  return 0;
}
