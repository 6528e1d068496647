#include "core/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace calmkit::files {
namespace {

Opened fail(Problem p, std::string reason) {
  Opened o;
  o.problem = p;
  o.reason = std::move(reason);
  return o;
}

Opened fromErrno(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return fail(Problem::NotFound, "no such file");
    case ELOOP:
      return fail(Problem::SymlinkLoop, "symlink loop (too many levels of symbolic links)");
    case EACCES:
    case EPERM:
      return fail(Problem::Denied, "permission denied");
    case ENAMETOOLONG:
      return fail(Problem::Other, "the path is too long");
    default:
      return fail(Problem::Other, std::string("cannot open: ") + std::strerror(err));
  }
}

// Why a stat'ed path that is not a regular file cannot be read as one.
Opened notRegular(mode_t mode) {
  if (S_ISDIR(mode)) return fail(Problem::IsDirectory, "is a directory, not a file");
  if (S_ISFIFO(mode)) return fail(Problem::NotRegular, "is a FIFO (named pipe), not a regular file");
  if (S_ISCHR(mode) || S_ISBLK(mode)) return fail(Problem::NotRegular, "is a device, not a regular file");
  if (S_ISSOCK(mode)) return fail(Problem::NotRegular, "is a socket, not a regular file");
  return fail(Problem::NotRegular, "is not a regular file");
}

}  // namespace

Opened openRegular(const std::string& path) {
  if (path.empty()) return fail(Problem::NotFound, "the path is an empty string");
  if (path.find('\0') != std::string::npos) return fail(Problem::Other, "the path contains a NUL character");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fromErrno(errno);
  if (!S_ISREG(st.st_mode)) return notRegular(st.st_mode);
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return fromErrno(errno);
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    Opened o = S_ISREG(st.st_mode) ? fromErrno(errno) : notRegular(st.st_mode);
    ::close(fd);
    return o;
  }
  Opened o;
  o.fd = fd;
  o.size = static_cast<uint64_t>(st.st_size);
  return o;
}

size_t readFully(int fd, uint64_t pos, void* buf, size_t n) {
  size_t done = 0;
  auto* p = static_cast<char*>(buf);
  while (done < n) {
    // pread takes at most about 2 GiB at a time on Linux; ask for less so one record of any size reads through.
    const size_t want = std::min<size_t>(n - done, size_t(1) << 30);
    ssize_t got = ::pread(fd, p + done, want, static_cast<off_t>(pos + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

}  // namespace calmkit::files
