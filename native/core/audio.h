// The audio front-end: decode -> mono -> 44.1 kHz (soxr) -> peak-normalise -> fit to the window -> crop.
// These are jukemir's loading steps (docs/jukebox-spec.md section 1) plus the paper's two ways of fitting a
// 10 s clip to Jukebox's window.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace calmkit::audio {

inline constexpr int kModelRate = 44100;
// Bounds that separate a plausible request from a mistake; named once here and in lib/audio.ts.
inline constexpr double kMinRate = 100.0;
inline constexpr double kMaxRate = 1536000.0;
inline constexpr double kMinFactor = 0.01;
inline constexpr double kMaxFactor = 64.0;
inline constexpr double kMaxSeconds = 4.0 * 3600.0;

struct Decoded {
  std::vector<float> interleaved;  // frames * channels
  int64_t frames = 0;
  int channels = 0;
  int sampleRate = 0;
  std::string format;  // libsndfile's major format name, e.g. "OGG (OGG Container format)"
};

// Decode with libsndfile. `label` names the input in errors.
Decoded decodeFile(const std::string& path);
Decoded decodeMemory(const uint8_t* data, size_t size, const std::string& label);

// Encode interleaved float samples with libsndfile. container: wav | flac | ogg | mp3;
// encoding: float | pcm16 | pcm24 (wav and flac; ogg and mp3 are always lossy). Written to a temp file and
// renamed, so a failed write leaves nothing behind.
void encodeFile(const std::string& path, const float* interleaved, int64_t frames, int channels, int sampleRate,
                const std::string& container, const std::string& encoding);

std::vector<float> mixToMono(const float* interleaved, int64_t frames, int channels);

// Length of a resampled signal: ceil(n * outRate / inRate), librosa's convention (jukemirlib).
int64_t resampledLength(int64_t n, double inRate, double outRate);
// soxr "HQ" recipe (20-bit precision, linear phase): what librosa >= 0.10 uses by default, i.e. what modern
// jukemirlib applies; the paper's resampy kaiser_best is not available as a C library.
std::vector<float> resample(const std::vector<float>& x, double inRate, double outRate);

// Divides by max|x| over the whole signal; a silent signal stays as it is.
void peakNormalise(std::vector<float>& x);

enum class FitMode { None, Tile, Upsample, Pad };
FitMode parseFitMode(const std::string& s);
const char* fitModeName(FitMode m);

struct PrepareOptions {
  FitMode fit = FitMode::None;
  // tile/pad: the target length is targetSeconds if > 0, else factor x the clip's length.
  double targetSeconds = 0.0;
  // tile: repeat up to factor x the clip; upsample: resample to factor x 44100 Hz, played as 44.1 kHz.
  double factor = 0.0;
  // Keep at most this many samples after fitting (0: keep all).
  int64_t cropSamples = 0;
  bool normalise = true;
};

struct Prepared {
  std::vector<float> samples;  // mono, 44100 Hz (as played)
  int sourceChannels = 0;
  int sourceRate = 0;
  int64_t sourceFrames = 0;
};

// The whole front-end on decoded audio. `label` names the input in errors.
Prepared prepare(const Decoded& decoded, const PrepareOptions& opts, const std::string& label);
// Same, for mono samples handed over with their rate.
Prepared prepareSamples(const float* mono, int64_t n, double rate, const PrepareOptions& opts,
                        const std::string& label);

void validateOptions(const PrepareOptions& opts, const std::string& label);

}  // namespace calmkit::audio
