// libFuzzer target: the audio front-end on arbitrary bytes (libsndfile's decoders through decodeMemory, then mono,
// resampling, normalising, fitting and cropping). The first bytes choose the front-end's options, so every
// formatting is reached. Any input must end in prepared samples or a calmkit::Error.
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "core/audio.h"
#include "core/error.h"

namespace au = calmkit::audio;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  au::PrepareOptions o;
  o.fit = static_cast<au::FitMode>(data[0] % 4);
  // Small targets keep each run short; the fit's arithmetic is the same at any length.
  o.targetSeconds = o.fit == au::FitMode::Tile || o.fit == au::FitMode::Pad ? 0.05 + (data[1] % 8) * 0.05 : 0.0;
  o.factor = o.fit == au::FitMode::Upsample ? 1.0 + (data[1] % 4) * 0.7 : 0.0;
  o.cropSamples = (data[1] & 0x80) ? 4096 : 0;
  o.normalise = (data[1] & 0x40) == 0;
  try {
    au::Decoded d = au::decodeMemory(data + 2, size - 2, "<fuzz input>");
    // Long streams cost time without new paths: the front-end's work grows with the length only.
    if (d.frames > 2'000'000) return 0;
    au::Prepared p = au::prepare(d, o, "<fuzz input>");
    for (float v : p.samples) {
      if (!std::isfinite(v)) std::abort();  // non-finite audio must be refused, never passed on
    }
  } catch (const calmkit::Error&) {
  }
  return 0;
}
