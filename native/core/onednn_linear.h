// oneDNN's fused linear layer as LibTorch ships it (the mkldnn::_linear_pointwise operators that torch.compile's
// CPU backend uses): weights reordered once into the layout the CPU's kernels read (AMX tiles where present),
// and the bias, an activation or a residual add applied to the fp32 accumulator before the output is rounded.
// Reached through the operator registry, so a LibTorch built without oneDNN (or a CPU whose oneDNN has no kernel
// for the dtype) is a `false` from available(), never a link or load error.
#pragma once
#include <torch/torch.h>

namespace calmkit::onednn {

// Whether the fused linear runs for `dtype` on this CPU with this LibTorch (tried once per dtype, cached).
bool available(c10::ScalarType dtype);

// A linear weight [out, in] reordered for `rowsHint`-row inputs (any row count works; the hint picks the layout).
torch::Tensor packWeight(const torch::Tensor& weightOutIn, int64_t rowsHint);

// x [rows, in] @ W^T + bias, then `activation` ("none" or "swish": y * sigmoid(y)), rounded once to x's dtype.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& packed, const torch::Tensor& bias,
                     const char* activation);

// x [rows, in] @ W^T + bias + residual, rounded once to x's dtype.
torch::Tensor linearAdd(const torch::Tensor& x, const torch::Tensor& residual, const torch::Tensor& packed,
                        const torch::Tensor& bias);

}  // namespace calmkit::onednn
