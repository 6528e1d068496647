#include "core/probes_shared.h"

#include <algorithm>

namespace calmkit::probes {

Scaler fitScaler(const torch::Tensor& X, const Split& train) {
  return fitScaler(X, std::vector<int64_t>(train.rows.begin(), train.rows.end()));
}

Scaler fitScaler(const torch::Tensor& X, const std::vector<int64_t>& rowList) {
  auto rows = torch::tensor(rowList, torch::kLong);
  auto x = X.index_select(0, rows).to(torch::kDouble);
  auto mean = x.mean(0);
  auto sd = x.sub(mean).pow_(2).mean(0).sqrt_();
  sd.masked_fill_(sd == 0, 1.0);
  return {mean.to(torch::kFloat), sd.to(torch::kFloat)};
}

torch::Tensor forwardRows(const torch::Tensor& x, const std::function<torch::Tensor(const torch::Tensor&)>& net) {
  const int64_t n = x.size(0);
  std::vector<torch::Tensor> out;
  for (int64_t at = 0; at < n; at += kForwardRows) {
    const int64_t rows = std::min(kForwardRows, n - at);
    torch::Tensor block = x.narrow(0, at, rows);
    if (rows < kForwardRows) block = torch::constant_pad_nd(block, {0, 0, 0, kForwardRows - rows});
    out.push_back(net(block).narrow(0, 0, rows));
  }
  return out.size() == 1 ? out[0] : torch::cat(out, 0);
}

torch::Tensor forwardClips(const torch::Tensor& x, int64_t S, const torch::Tensor& valid,
                           const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& net) {
  const int64_t n = x.size(0) / S;
  std::vector<torch::Tensor> out;
  for (int64_t at = 0; at < n; at += kForwardRows) {
    const int64_t clips = std::min(kForwardRows, n - at);
    torch::Tensor block = x.narrow(0, at * S, clips * S);
    torch::Tensor v = valid.defined() ? valid.narrow(0, at, clips) : valid;
    if (clips < kForwardRows) {
      block = torch::constant_pad_nd(block, {0, 0, 0, (kForwardRows - clips) * S});
      if (v.defined())
        v = torch::constant_pad_nd(v.to(torch::kInt), {0, 0, 0, kForwardRows - clips}, 1).to(torch::kBool);
    }
    out.push_back(net(block, v).narrow(0, 0, clips));
  }
  return out.size() == 1 ? out[0] : torch::cat(out, 0);
}

double stackBytesPerProbe(int64_t dim, const Arch& arch, int64_t batchSize, int64_t rowsPerClip,
                          MatmulPrecision precision) {
  double params = 0, acts = static_cast<double>(dim), in = static_cast<double>(dim);
  for (auto h : arch.hidden) {
    params += in * static_cast<double>(h) + static_cast<double>(h);
    acts += 3.0 * static_cast<double>(h);
    in = static_cast<double>(h);
  }
  params += in + 1;  // the score layer
  for (auto out : arch.head->weightOuts()) params += in * static_cast<double>(out);
  acts += static_cast<double>(arch.head->activationsPerRow());
  const double half = precision == MatmulPrecision::kBf16 ? 2.0 * params : 0.0;
  return 4.0 * (5.0 * params + static_cast<double>(batchSize) * static_cast<double>(rowsPerClip) * acts * 2.0) + half;
}

}  // namespace calmkit::probes
