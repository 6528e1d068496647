#include "core/audio.h"

#if CALMKIT_WITH_AUDIO
#include <sndfile.h>
#include <soxr.h>
#endif
#include <sys/stat.h>

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/files.h"

namespace calmkit::audio {
namespace {

#if CALMKIT_WITH_AUDIO
struct MemoryFile {
  const uint8_t* data;
  sf_count_t size;
  sf_count_t pos;
};

sf_count_t memLength(void* u) { return static_cast<MemoryFile*>(u)->size; }
sf_count_t memSeek(sf_count_t offset, int whence, void* u) {
  auto* m = static_cast<MemoryFile*>(u);
  sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->size;
  sf_count_t next = base + offset;
  if (next < 0) return -1;
  m->pos = std::min(next, m->size);
  return m->pos;
}
sf_count_t memRead(void* ptr, sf_count_t count, void* u) {
  auto* m = static_cast<MemoryFile*>(u);
  sf_count_t n = std::max<sf_count_t>(0, std::min(count, m->size - m->pos));
  std::memcpy(ptr, m->data + m->pos, static_cast<size_t>(n));
  m->pos += n;
  return n;
}
sf_count_t memWrite(const void*, sf_count_t, void*) { return 0; }
sf_count_t memTell(void* u) { return static_cast<MemoryFile*>(u)->pos; }

std::string formatName(int format) {
  SF_FORMAT_INFO info;
  info.format = format & SF_FORMAT_TYPEMASK;
  if (sf_command(nullptr, SFC_GET_FORMAT_INFO, &info, sizeof(info)) == 0 && info.name) return info.name;
  return "unknown";
}

// libsndfile opens a WAV/AIFF whose data chunk is cut short and silently reports the frames present; its log
// keeps the declared size ("data : 88200 (should be 19956)"). Streamed files declare 0 or 0xFFFFFFFF: not truncation.
bool logShowsTruncatedData(SNDFILE* snd) {
  char log[8192] = {0};
  sf_command(snd, SFC_GET_LOG_INFO, log, sizeof(log) - 1);
  for (const char* chunk : {"data : ", "SSND : "}) {
    const char* p = std::strstr(log, chunk);
    if (!p) continue;
    unsigned long long declared = 0, actual = 0;
    if (std::sscanf(p + std::strlen(chunk), "%llu (should be %llu)", &declared, &actual) == 2) {
      if (declared > actual && declared != 0xFFFFFFFFull && declared != 0) return true;
    }
  }
  return false;
}

// Reads every frame; libsndfile reports decode failures of truncated streams as short reads or errors.
Decoded readAll(SNDFILE* snd, const SF_INFO& info, const std::string& label) {
  Decoded out;
  out.channels = info.channels;
  out.sampleRate = info.samplerate;
  out.format = formatName(info.format);
  if (info.channels <= 0) throw Error(code::kAudioDecode, label + ": the stream has no channels");
  // libsndfile allows up to 1024; the read buffer is 65536 frames of every channel, so bound it to what music has.
  if (info.channels > 256)
    throw Error(code::kAudioDecode, label + ": implausible channel count " + std::to_string(info.channels));
  if (info.samplerate < kMinRate || info.samplerate > kMaxRate) {
    throw Error(code::kAudioDecode, label + ": implausible sample rate " + std::to_string(info.samplerate) + " Hz");
  }
  // Frame counts can be unknown or wrong (MP3, truncated files): read in chunks until the stream ends.
  const sf_count_t chunk = 65536;
  std::vector<float> buf(static_cast<size_t>(chunk) * info.channels);
  // The header's frame count is a claim, not a promise: reserve for it only up to 16 M samples (64 MB), so a few
  // bytes claiming billions of frames cannot make a huge allocation (found by fuzz_audio); real data grows the
  // buffer as it arrives.
  if (info.frames > 0) {
    const int64_t want = std::min<int64_t>(info.frames, int64_t(1) << 34) * info.channels;
    out.interleaved.reserve(static_cast<size_t>(std::min<int64_t>(want, int64_t(1) << 24)));
  }
  for (;;) {
    sf_count_t got = sf_readf_float(snd, buf.data(), chunk);
    if (got < 0) throw Error(code::kAudioDecode, label + ": decode failed: " + sf_strerror(snd));
    if (got == 0) break;
    out.interleaved.insert(out.interleaved.end(), buf.begin(), buf.begin() + got * info.channels);
    if (got < chunk) break;
  }
  if (sf_error(snd) != SF_ERR_NO_ERROR) {
    throw Error(code::kAudioDecode, label + ": decode failed: " + sf_strerror(snd));
  }
  out.frames = static_cast<int64_t>(out.interleaved.size()) / info.channels;
  // Containers with an exact frame count in the header: fewer decoded frames means a truncated file.
  // (Ogg and MP3 report estimates, so they are judged by the decoder's own errors only.)
  int major = info.format & SF_FORMAT_TYPEMASK;
  bool exactHeader = major == SF_FORMAT_WAV || major == SF_FORMAT_WAVEX || major == SF_FORMAT_W64 ||
                     major == SF_FORMAT_AIFF || major == SF_FORMAT_RF64 || major == SF_FORMAT_CAF ||
                     major == SF_FORMAT_FLAC;
  if (exactHeader && logShowsTruncatedData(snd)) {
    throw Error(code::kAudioDecode, label + ": truncated: the data chunk is shorter than its header declares");
  }
  if (exactHeader && info.frames > 0 && out.frames < info.frames) {
    throw Error(code::kAudioDecode, label + ": truncated: the header declares " + std::to_string(info.frames) +
                                        " frames but only " + std::to_string(out.frames) + " could be decoded");
  }
  if (out.frames == 0) throw Error(code::kAudioEmpty, label + ": the audio has zero frames");
  return out;
}

#endif  // CALMKIT_WITH_AUDIO

void checkFinite(const std::vector<float>& x, const std::string& label) {
  for (float v : x) {
    if (!std::isfinite(v)) throw Error(code::kAudioNotFinite, label + ": the audio contains NaN or infinite samples");
  }
}

void checkPositive(double v, double lo, double hi, const char* what, const std::string& label) {
  if (!std::isfinite(v) || v < lo || v > hi) {
    throw Error(code::kInvalidArgument, label + ": " + what + " must be between " + std::to_string(lo) + " and " +
                                            std::to_string(hi) + ", got " + std::to_string(v));
  }
}

}  // namespace

#if CALMKIT_WITH_AUDIO
Decoded decodeFile(const std::string& path) {
  // Never a blocking open: a FIFO, device or socket is refused before libsndfile sees it.
  files::Opened f = files::openRegular(path);
  if (f.fd < 0) {
    const std::string msg = path + ": " + f.reason;
    if (f.problem == files::Problem::NotFound) throw Error(code::kAudioNotFound, msg);
    if (f.problem == files::Problem::IsDirectory)
      throw Error(code::kAudioIsDirectory, path + ": is a directory, not an audio file");
    throw Error(code::kAudioUnreadable, msg);
  }
  // libsndfile reads with plain read(2); a regular file ignores O_NONBLOCK, but nothing should depend on that.
  ::fcntl(f.fd, F_SETFL, ::fcntl(f.fd, F_GETFL) & ~O_NONBLOCK);
  const int fd = f.fd;
  SF_INFO info;
  std::memset(&info, 0, sizeof(info));
  SNDFILE* snd = sf_open_fd(fd, SFM_READ, &info, /*close_desc=*/SF_TRUE);
  if (!snd) {
    std::string why = sf_strerror(nullptr);
    if (f.size == 0) throw Error(code::kAudioEmpty, path + ": the file is empty (0 bytes)");
    throw Error(code::kAudioDecode, path + ": not a readable audio file (" + why + ")");
  }
  try {
    Decoded d = readAll(snd, info, path);
    sf_close(snd);
    return d;
  } catch (...) {
    sf_close(snd);
    throw;
  }
}

Decoded decodeMemory(const uint8_t* data, size_t size, const std::string& label) {
  if (size == 0) throw Error(code::kAudioEmpty, label + ": the buffer is empty (0 bytes)");
  MemoryFile mem{data, static_cast<sf_count_t>(size), 0};
  SF_VIRTUAL_IO io{memLength, memSeek, memRead, memWrite, memTell};
  SF_INFO info;
  std::memset(&info, 0, sizeof(info));
  SNDFILE* snd = sf_open_virtual(&io, SFM_READ, &info, &mem);
  if (!snd) throw Error(code::kAudioDecode, label + ": not a readable audio stream (" + sf_strerror(nullptr) + ")");
  try {
    Decoded d = readAll(snd, info, label);
    sf_close(snd);
    return d;
  } catch (...) {
    sf_close(snd);
    throw;
  }
}

void encodeFile(const std::string& path, const float* x, int64_t frames, int channels, int sampleRate,
                const std::string& container, const std::string& encoding) {
  if (channels <= 0 || channels > 64) throw Error(code::kInvalidArgument, path + ": channels must be 1..64");
  if (sampleRate < kMinRate || sampleRate > kMaxRate)
    throw Error(code::kInvalidArgument, path + ": implausible sample rate");
  if (frames <= 0) throw Error(code::kInvalidArgument, path + ": nothing to write (0 frames)");
  int sub = 0;
  if (encoding == "float")
    sub = SF_FORMAT_FLOAT;
  else if (encoding == "pcm16")
    sub = SF_FORMAT_PCM_16;
  else if (encoding == "pcm24")
    sub = SF_FORMAT_PCM_24;
  else
    throw Error(code::kInvalidArgument, path + ": encoding must be float, pcm16 or pcm24");
  int format = 0;
  if (container == "wav")
    format = SF_FORMAT_WAV | sub;
  else if (container == "flac")
    format = SF_FORMAT_FLAC | (sub == SF_FORMAT_FLOAT ? SF_FORMAT_PCM_24 : sub);
  else if (container == "ogg")
    format = SF_FORMAT_OGG | SF_FORMAT_VORBIS;
  else if (container == "mp3")
    format = SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III;
  else
    throw Error(code::kInvalidArgument, path + ": container must be wav, flac, ogg or mp3");
  SF_INFO info;
  std::memset(&info, 0, sizeof(info));
  info.channels = channels;
  info.samplerate = sampleRate;
  info.format = format;
  if (!sf_format_check(&info))
    throw Error(code::kInvalidArgument, path + ": libsndfile cannot write this format combination");
  static std::atomic<uint64_t> serial{0};
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(serial++);
  SNDFILE* snd = sf_open(tmp.c_str(), SFM_WRITE, &info);
  if (!snd) throw Error(code::kAudioUnreadable, path + ": cannot open for writing: " + sf_strerror(nullptr));
  // Floats beyond [-1, 1] would wrap in integer encodings; libsndfile clips them when asked.
  sf_command(snd, SFC_SET_CLIPPING, nullptr, SF_TRUE);
  sf_count_t wrote = sf_writef_float(snd, x, frames);
  int closeErr = sf_close(snd);
  if (wrote != frames || closeErr != 0) {
    ::unlink(tmp.c_str());
    throw Error(code::kAudioUnreadable, path + ": write failed after " + std::to_string(wrote) + " frames");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw Error(code::kAudioUnreadable, path + ": rename failed: " + std::strerror(errno));
  }
}

#else   // a core built without libsndfile and soxr (CALMKIT_AUDIO=OFF, e.g. for the Node-less GPU check)

namespace {
[[noreturn]] void noCodecs(const std::string& label) {
  throw Error(code::kInternal, label + ": this build has no audio codecs or resampler (built with CALMKIT_AUDIO=OFF)");
}
}  // namespace

Decoded decodeFile(const std::string& path) { noCodecs(path); }
Decoded decodeMemory(const uint8_t*, size_t, const std::string& label) { noCodecs(label); }
void encodeFile(const std::string& path, const float*, int64_t, int, int, const std::string&, const std::string&) {
  noCodecs(path);
}
#endif  // CALMKIT_WITH_AUDIO

std::vector<float> mixToMono(const float* x, int64_t frames, int channels) {
  std::vector<float> mono(static_cast<size_t>(frames));
  if (channels == 1) {
    std::copy(x, x + frames, mono.begin());
    return mono;
  }
  // Sum then divide, in float, as numpy's mean over the channel axis does for small channel counts.
  for (int64_t i = 0; i < frames; ++i) {
    float s = 0.f;
    for (int c = 0; c < channels; ++c) s += x[i * channels + c];
    mono[static_cast<size_t>(i)] = s / static_cast<float>(channels);
  }
  return mono;
}

int64_t resampledLength(int64_t n, double inRate, double outRate) {
  // Exact for the integral rates in use (including 6.2 x 44100 = 273420): ceil of a rational.
  long double q = static_cast<long double>(n) * outRate / inRate;
  long double r = std::nearbyintl(q);
  if (std::fabs(static_cast<double>(q - r)) < 1e-9) return static_cast<int64_t>(r);
  return static_cast<int64_t>(std::ceil(q));
}

std::vector<float> resample(const std::vector<float>& x, double inRate, double outRate) {
  if (inRate == outRate) return x;
#if CALMKIT_WITH_AUDIO
  int64_t outLen = resampledLength(static_cast<int64_t>(x.size()), inRate, outRate);
  std::vector<float> y(static_cast<size_t>(outLen), 0.f);
  soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
  size_t done = 0;
  soxr_error_t err =
      soxr_oneshot(inRate, outRate, 1, x.data(), x.size(), nullptr, y.data(), y.size(), &done, &io, &q, nullptr);
  if (err) throw Error(code::kInternal, std::string("soxr: ") + err);
  // soxr may deliver a sample or so short of the rounded-up length at the very end; those stay zero.
  return y;
#else
  throw Error(code::kInternal, "resampling needs soxr (this build has CALMKIT_AUDIO=OFF)");
#endif
}

void peakNormalise(std::vector<float>& x) {
  float peak = 0.f;
  for (float v : x) peak = std::max(peak, std::fabs(v));
  if (peak == 0.f) return;
  for (float& v : x) v /= peak;
}

FitMode parseFitMode(const std::string& s) {
  if (s == "none") return FitMode::None;
  if (s == "tile") return FitMode::Tile;
  if (s == "upsample") return FitMode::Upsample;
  if (s == "pad") return FitMode::Pad;
  throw Error(code::kInvalidArgument, "formatting must be one of none, tile, upsample, pad; got '" + s + "'");
}

const char* fitModeName(FitMode m) {
  switch (m) {
    case FitMode::Tile:
      return "tile";
    case FitMode::Upsample:
      return "upsample";
    case FitMode::Pad:
      return "pad";
    default:
      return "none";
  }
}

void validateOptions(const PrepareOptions& o, const std::string& label) {
  if (o.targetSeconds != 0.0) checkPositive(o.targetSeconds, 1e-3, kMaxSeconds, "targetSeconds", label);
  if (o.factor != 0.0) checkPositive(o.factor, kMinFactor, kMaxFactor, "factor", label);
  if (o.cropSamples < 0) throw Error(code::kInvalidArgument, label + ": cropSamples must be >= 0");
  if (o.fit == FitMode::Upsample && o.factor == 0.0) {
    throw Error(code::kInvalidArgument, label + ": formatting 'upsample' needs a factor (the paper's is 6.2)");
  }
  if ((o.fit == FitMode::Tile || o.fit == FitMode::Pad) && o.targetSeconds == 0.0 && o.factor == 0.0) {
    throw Error(code::kInvalidArgument, label + std::string(": formatting '") + fitModeName(o.fit) +
                                            "' needs targetSeconds or factor (the paper tiles to 62 s)");
  }
}

Prepared prepareSamples(const float* mono, int64_t n, double rate, const PrepareOptions& o, const std::string& label) {
  validateOptions(o, label);
  checkPositive(rate, kMinRate, kMaxRate, "sampleRate", label);
  if (n <= 0) throw Error(code::kAudioEmpty, label + ": the audio has zero samples");
  std::vector<float> x(mono, mono + n);
  checkFinite(x, label);
  // upsample: "loaded at factor x the rate", then played at 44.1 kHz, so one resample does both steps.
  double target = o.fit == FitMode::Upsample ? kModelRate * o.factor : kModelRate;
  std::vector<float> y = resample(x, rate, target);
  if (o.normalise) peakNormalise(y);
  const int64_t len = static_cast<int64_t>(y.size());
  auto targetLength = [&]() -> int64_t {
    if (o.targetSeconds > 0) return static_cast<int64_t>(std::llround(o.targetSeconds * kModelRate));
    return static_cast<int64_t>(std::llround(o.factor * static_cast<double>(len)));
  };
  Prepared out;
  out.sourceRate = static_cast<int>(rate);
  out.sourceFrames = n;
  out.sourceChannels = 1;
  if (o.fit == FitMode::Tile) {
    int64_t total = targetLength();
    // Concatenation: output[i] = clip[i mod len]; never shorter than one copy of the clip.
    total = std::max(total, len);
    out.samples.resize(static_cast<size_t>(total));
    for (int64_t i = 0; i < total; i += len) {
      int64_t k = std::min(len, total - i);
      std::copy(y.begin(), y.begin() + k, out.samples.begin() + i);
    }
  } else if (o.fit == FitMode::Pad) {
    int64_t total = std::max(targetLength(), len);
    out.samples = std::move(y);
    out.samples.resize(static_cast<size_t>(total), 0.f);
  } else {
    out.samples = std::move(y);
  }
  if (o.cropSamples > 0 && static_cast<int64_t>(out.samples.size()) > o.cropSamples) {
    out.samples.resize(static_cast<size_t>(o.cropSamples));
  }
  return out;
}

Prepared prepare(const Decoded& d, const PrepareOptions& o, const std::string& label) {
  std::vector<float> mono = mixToMono(d.interleaved.data(), d.frames, d.channels);
  Prepared p = prepareSamples(mono.data(), d.frames, d.sampleRate, o, label);
  p.sourceChannels = d.channels;
  return p;
}

}  // namespace calmkit::audio
