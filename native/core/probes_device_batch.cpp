#include "core/probes_device_batch.h"

#include <algorithm>

namespace calmkit::probes {
namespace {

constexpr int64_t bits(uint64_t v) { return static_cast<int64_t>(v); }
constexpr int64_t kGolden = bits(0x9e3779b97f4a7c15ULL);

// z >> s as an unsigned shift: torch's shift of int64 is arithmetic, so the sign's copies are masked off.
torch::Tensor shiftRight(const torch::Tensor& z, int s) {
  return at::bitwise_right_shift(z, s).bitwise_and_((int64_t{1} << (64 - s)) - 1);
}

// mix64 of probes_random.h, in place; int64 tensor products wrap as uint64 ones do.
void mix64_(torch::Tensor& z) {
  z.add_(kGolden);
  z.bitwise_xor_(shiftRight(z, 30)).mul_(bits(0xbf58476d1ce4e5b9ULL));
  z.bitwise_xor_(shiftRight(z, 27)).mul_(bits(0x94d049bb133111ebULL));
  z.bitwise_xor_(shiftRight(z, 31));
}

// Elements per chunk: the hash holds two int64 temporaries per draw, so a chunk costs about 256 MB.
constexpr int64_t kChunk = int64_t{1} << 24;

}  // namespace

torch::Tensor keepDraws(const torch::Tensor& keys, int64_t n, const torch::Tensor& keepProb) {
  const auto dev = keys.device();
  const int64_t P = keys.size(0);
  auto out = torch::empty({P, n}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  if (P == 0 || n == 0) return out;
  // draw(key, i) = mix64(key + (i + 1) * golden): the counter part is the same for every probe.
  auto counter = torch::arange(1, n + 1, torch::TensorOptions().dtype(torch::kLong).device(dev)).mul_(kGolden);
  const int64_t step = std::max<int64_t>(1, kChunk / n);
  for (int64_t p0 = 0; p0 < P; p0 += step) {
    const int64_t pc = std::min(step, P - p0);
    auto z = keys.narrow(0, p0, pc).view({pc, 1}).add(counter.view({1, n}));
    mix64_(z);
    // uniform01: the top 24 bits as a float in [0, 1), exactly as the host computes it.
    auto u = shiftRight(z, 40).to(torch::kFloat).mul_(0x1.0p-24f);
    out.narrow(0, p0, pc).copy_(u.lt(keepProb.narrow(0, p0, pc).view({pc, 1})));
  }
  return out;
}

}  // namespace calmkit::probes
