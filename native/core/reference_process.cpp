#include "core/reference_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "core/error.h"

extern char** environ;

namespace calmkit::bench {

ReferenceProcess::ReferenceProcess(const std::string& python, const std::string& script, const std::string& logPath)
    : logPath_(logPath) {
  int toChild[2], fromChild[2];
  if (pipe2(toChild, O_CLOEXEC) != 0)
    throw Error(code::kInternal, "reference: cannot make a pipe: " + std::string(std::strerror(errno)));
  if (pipe2(fromChild, O_CLOEXEC) != 0) {
    close(toChild[0]);
    close(toChild[1]);
    throw Error(code::kInternal, "reference: cannot make a pipe: " + std::string(std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, toChild[0], 0);
  posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);

  std::string py = python, sc = script;
  char* argv[] = {py.data(), sc.data(), nullptr};
  const int rc = posix_spawnp(&pid_, python.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(toChild[0]);
  close(fromChild[1]);
  if (rc != 0) {
    close(toChild[1]);
    close(fromChild[0]);
    pid_ = -1;
    throw Error(code::kInternal, "reference: cannot start " + python + ": " + std::strerror(rc));
  }
  in_ = fdopen(toChild[1], "w");
  out_ = fdopen(fromChild[0], "r");
}

ReferenceProcess::~ReferenceProcess() {
  if (in_) {
    std::fputs("{\"cmd\": \"quit\"}\n", in_);
    std::fclose(in_);  // EOF ends its read loop even if it missed the quit
  }
  if (out_) std::fclose(out_);
  if (pid_ > 0) {
    // A few seconds to exit on its own, then killed: a stuck reference must not hang the benchmark.
    for (int i = 0; i < 100; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

std::string ReferenceProcess::stderrTail() const {
  std::ifstream f(logPath_);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.size() > 600) s = "..." + s.substr(s.size() - 600);
  return s;
}

json::Flat ReferenceProcess::call(const std::string& request) {
  const std::string what = request.substr(0, 120);
  if (!in_ || !out_) throw Error(code::kInternal, "reference: the process is not running");
  if (std::fputs((request + "\n").c_str(), in_) < 0 || std::fflush(in_) != 0) {
    throw Error(code::kInternal, "reference: the process exited before " + what + "; its stderr: " + stderrTail());
  }
  std::string line;
  for (int c; (c = std::fgetc(out_)) != EOF && c != '\n';) line += static_cast<char>(c);
  if (line.empty()) throw Error(code::kInternal, "reference: no reply to " + what + "; its stderr: " + stderrTail());
  json::Flat reply = json::Flat::parse(line);
  if (!reply.boolean("ok").value_or(false)) {
    throw Error(code::kInternal, "reference: " + reply.string("error").value_or(line) + " (request " + what + ")");
  }
  return reply;
}

int64_t ReferenceProcess::peakRssBytes() const {
  if (pid_ <= 0) return 0;
  std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

}  // namespace calmkit::bench
