// The eager PyTorch reference (benchmarks/reference/jukebox_eager.py) as a child process of the benchmark engine:
// one JSON object per line each way on its stdin and stdout, its stderr kept in a log file whose tail goes into
// any error. It inherits this process's environment, so its OpenMP threads wait the way calmkit's do
// (OMP_WAIT_POLICY: the addon sets PASSIVE before LibTorch loads) and the interleaved rounds treat both alike.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "core/json.h"

namespace calmkit::bench {

class ReferenceProcess {
 public:
  // Starts `python script`; throws calmkit::Error(ERR_INTERNAL) when it cannot be started.
  ReferenceProcess(const std::string& python, const std::string& script, const std::string& logPath);
  ~ReferenceProcess();
  ReferenceProcess(const ReferenceProcess&) = delete;
  ReferenceProcess& operator=(const ReferenceProcess&) = delete;

  // Sends one request line and reads the reply. A reply with "ok": false, an unreadable reply or the process's
  // exit throw calmkit::Error(ERR_INTERNAL) naming the request and the tail of the reference's stderr.
  json::Flat call(const std::string& request);
  // The child's peak resident memory (VmHWM), 0 when unknown.
  int64_t peakRssBytes() const;

 private:
  std::string stderrTail() const;
  pid_t pid_ = -1;
  FILE* in_ = nullptr;   // the child's stdin
  FILE* out_ = nullptr;  // the child's stdout
  std::string logPath_;
};

}  // namespace calmkit::bench
