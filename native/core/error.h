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

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const noexcept { return code_; }

 private:
  std::string code_;
};

}  // namespace calmkit
