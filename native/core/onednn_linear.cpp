#include "core/onednn_linear.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <map>
#include <mutex>
#include <optional>

namespace calmkit::onednn {
namespace {

using Scalars = c10::List<std::optional<c10::Scalar>>;
using LinearFn = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, c10::string_view,
                            Scalars, std::optional<c10::string_view>);
using LinearBinaryFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                  const std::optional<at::Tensor>&, c10::string_view);
using PackFn = at::Tensor(const at::Tensor&, std::optional<int64_t>);

// The three operators, looked up once; absent when this LibTorch was built without oneDNN.
struct Ops {
  c10::TypedOperatorHandle<LinearFn> linear;
  c10::TypedOperatorHandle<LinearBinaryFn> binary;
  c10::TypedOperatorHandle<PackFn> pack;
};

const Ops* ops() {
  static const std::optional<Ops> found = []() -> std::optional<Ops> {
    try {
      auto& d = c10::Dispatcher::singleton();
      return Ops{d.findSchemaOrThrow("mkldnn::_linear_pointwise", "").typed<LinearFn>(),
                 d.findSchemaOrThrow("mkldnn::_linear_pointwise", "binary").typed<LinearBinaryFn>(),
                 d.findSchemaOrThrow("mkldnn::_reorder_linear_weight", "").typed<PackFn>()};
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }();
  return found ? &*found : nullptr;
}

const Ops& require() {
  const Ops* o = ops();
  TORCH_CHECK(o, "oneDNN's fused linear is not available in this LibTorch");
  return *o;
}

}  // namespace

bool available(c10::ScalarType dtype) {
  static std::mutex mu;
  static std::map<c10::ScalarType, bool> known;
  std::lock_guard<std::mutex> lock(mu);
  auto it = known.find(dtype);
  if (it != known.end()) return it->second;
  bool ok = false;
  if (ops()) {
    // A tiny product through every path the model takes: oneDNN refuses a dtype its kernels for this CPU lack
    // (bf16 below AVX-512, for instance) when the primitive is created.
    try {
      c10::InferenceMode guard;
      auto opts = torch::TensorOptions().dtype(dtype);
      torch::Tensor x = torch::ones({4, 16}, opts), w = torch::ones({8, 16}, opts), b = torch::zeros({8}, opts);
      torch::Tensor packed = packWeight(w, 4);
      torch::Tensor y = linear(x, packed, b, "swish");
      torch::Tensor z = linearAdd(x, y, packed, b);
      ok = z.scalar_type() == dtype && z.size(1) == 8 && std::abs(z[0][0].item<double>() - 32.0) < 0.5;
    } catch (const std::exception&) {
      ok = false;
    }
  }
  known[dtype] = ok;
  return ok;
}

torch::Tensor packWeight(const torch::Tensor& weightOutIn, int64_t rowsHint) {
  return require().pack.call(weightOutIn.contiguous(), rowsHint);
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& packed, const torch::Tensor& bias,
                     const char* activation) {
  return require().linear.call(x, packed, bias, activation, Scalars(), std::nullopt);
}

torch::Tensor linearAdd(const torch::Tensor& x, const torch::Tensor& residual, const torch::Tensor& packed,
                        const torch::Tensor& bias) {
  return require().binary.call(x, residual, packed, bias, "add");
}

}  // namespace calmkit::onednn
