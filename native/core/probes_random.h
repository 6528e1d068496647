// The probe trainer's counter-based random streams: every draw is a hash of (stream key, index), so init,
// batch order and dropout masks depend only on (seed, instrument, config) and never on a probe's position in a
// stack, its thread, or how many draws came before. Nothing here draws from torch's generators.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace calmkit::probes {

inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// FNV-1a over n bytes, continuing from `h` (its offset basis for a fresh hash).
inline uint64_t hashBytes(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
  const auto* c = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 0x100000001b3ULL;
  return h;
}

inline uint64_t hashString(const std::string& s) { return hashBytes(s.data(), s.size()); }

inline uint64_t hashDouble(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return mix64(bits);
}

// The i-th draw of the stream `key`: independent of how many draws were taken before, so any slice of a
// mask can be computed on any thread.
inline uint64_t draw(uint64_t key, uint64_t i) { return mix64(key + (i + 1) * 0x9e3779b97f4a7c15ULL); }
inline float uniform01(uint64_t key, uint64_t i) { return static_cast<float>(draw(key, i) >> 40) * 0x1.0p-24f; }

// Tags keep the streams of one probe apart.
enum Stream : uint64_t { kInit = 1, kMask = 2, kSampler = 3 };
inline uint64_t subKey(uint64_t key, uint64_t tag, uint64_t a = 0, uint64_t b = 0) {
  return mix64(mix64(mix64(key ^ (tag * 0xd6e8feb86659fd93ULL)) + a) + b);
}

}  // namespace calmkit::probes
