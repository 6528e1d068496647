// Opening input files without ever blocking: a path that names a FIFO, a device, a socket, a directory or a
// symlink loop is refused at once with the reason, before any read. The model loader and the audio decoder both
// open their inputs here and map the problem onto their own error codes.
#pragma once
#include <cstdint>
#include <string>

namespace calmkit::files {

enum class Problem { None, NotFound, IsDirectory, NotRegular, SymlinkLoop, Denied, Other };

struct Opened {
  int fd = -1;        // open for reading (O_CLOEXEC), or -1 with a problem
  uint64_t size = 0;  // bytes, from fstat of the open descriptor
  Problem problem = Problem::None;
  std::string reason;  // e.g. "no such file", "is a FIFO (named pipe), not a regular file", "symlink loop"
};

// stat, then open with O_NONBLOCK (a FIFO without a writer cannot hold the open), then fstat of the descriptor
// (the path may have changed in between): only a regular file comes back open.
Opened openRegular(const std::string& path);

// Everything of `n` bytes at `pos`, retrying short reads and EINTR; fewer only at the end of the file or on an
// error.
size_t readFully(int fd, uint64_t pos, void* buf, size_t n);

}  // namespace calmkit::files
