// calmkit core errors: one exception type with a stable code, mapped 1:1 onto the JS CalmkitError family.
#pragma once
#include <stdexcept>
#include <string>

namespace calmkit {

// Stable codes, shared with lib/errors.ts. Keep the two lists in step.
namespace code {
inline constexpr const char* kInvalidArgument = "ERR_INVALID_ARGUMENT";
inline constexpr const char* kAudioNotFound = "ERR_AUDIO_NOT_FOUND";
inline constexpr const char* kAudioIsDirectory = "ERR_AUDIO_IS_DIRECTORY";
inline constexpr const char* kAudioUnreadable = "ERR_AUDIO_UNREADABLE";
inline constexpr const char* kAudioDecode = "ERR_AUDIO_DECODE";
inline constexpr const char* kAudioEmpty = "ERR_AUDIO_EMPTY";
inline constexpr const char* kAudioNotFinite = "ERR_AUDIO_NOT_FINITE";
inline constexpr const char* kModelFile = "ERR_MODEL_FILE";
inline constexpr const char* kModelFormat = "ERR_MODEL_FORMAT";
inline constexpr const char* kModelDisposed = "ERR_MODEL_DISPOSED";
inline constexpr const char* kDevice = "ERR_DEVICE";
inline constexpr const char* kAborted = "ERR_ABORTED";
inline constexpr const char* kProbe = "ERR_PROBE";
inline constexpr const char* kProbeFile = "ERR_PROBE_FILE";
inline constexpr const char* kDataMismatch = "ERR_DATA_MISMATCH";
inline constexpr const char* kDataNotFinite = "ERR_DATA_NOT_FINITE";
inline constexpr const char* kDataSingleClass = "ERR_DATA_SINGLE_CLASS";
inline constexpr const char* kInternal = "ERR_INTERNAL";
}  // namespace code

// The useful part of a message from LibTorch: its first line, without the "Exception raised from <function> at
// <file>:<line>" trailer, frame addresses or C++ backtrace that c10 appends. Applied wherever a LibTorch error
// becomes a calmkit error, so calmkit's messages never carry LibTorch's internals.
inline std::string torchMessage(const std::string& what) {
  std::string s = what.substr(0, what.find('\n'));
  for (const char* cut : {"Exception raised from ", " (no backtrace available)"}) {
    const auto at = s.find(cut);
    if (at != std::string::npos) s = s.substr(0, at);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
  return s.empty() ? std::string("LibTorch failed without a message") : s;
}

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const noexcept { return code_; }

 private:
  std::string code_;
};

}  // namespace calmkit
