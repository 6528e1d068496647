// libFuzzer target: the feature store's parsers of store.json, the shard sidecars and manifest.json
// (lib/store/format.ts). They are TypeScript, so this target drives them in a Node child
// (test/helpers/fuzz-store-child.ts, named by CALMKIT_FUZZ_STORE_CHILD; node by CALMKIT_FUZZ_NODE) over a pipe, and
// feeds V8's block coverage of the parsers back to libFuzzer as extra counters: the search is coverage-guided on
// the TypeScript, as Jazzer.js's is (Jazzer.js itself needs glibc 2.38 or a download at install, neither of which
// this project's machines have). Each input: [u32 length][bytes] to the child; back: [u8 verdict][u32 n][n x u32
// coverage ids]. Verdict 1 (an error other than the typed DataError, or a parsed value that breaks the parser's
// own promises) or a child that dies is a finding: abort(), and libFuzzer saves the input.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern char** environ;

namespace {

constexpr size_t kCounters = 1 << 16;
// libFuzzer reads this section as extra coverage counters (cleared before each input).
__attribute__((section("__libfuzzer_extra_counters"))) uint8_t gCounters[kCounters];

int gToChild = -1;
int gFromChild = -1;
pid_t gChild = -1;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fuzz_store: %s (%s)\n", what, std::strerror(errno));
  std::abort();
}

void writeAll(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("the Node child stopped reading");
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void readAll(int fd, void* data, size_t n) {
  auto* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("the Node child died (a crash of the parser process)");
    p += r;
    n -= static_cast<size_t>(r);
  }
}

void startChild() {
  const char* node = std::getenv("CALMKIT_FUZZ_NODE");
  const char* script = std::getenv("CALMKIT_FUZZ_STORE_CHILD");
  if (!script) {
    std::fprintf(stderr,
                 "fuzz_store: set CALMKIT_FUZZ_STORE_CHILD to test/helpers/fuzz-store-child.ts "
                 "(and CALMKIT_FUZZ_NODE to node)\n");
    std::exit(2);
  }
  int in[2], out[2];
  if (::pipe(in) != 0 || ::pipe(out) != 0) die("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 3);
  posix_spawn_file_actions_addclose(&actions, in[1]);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  std::string nodePath = node ? node : "node";
  std::vector<char*> argv = {nodePath.data(), const_cast<char*>("--import=tsx"), const_cast<char*>(script), nullptr};
  if (posix_spawnp(&gChild, nodePath.c_str(), &actions, nullptr, argv.data(), environ) != 0) die("cannot start node");
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  gToChild = in[1];
  gFromChild = out[0];
  ::signal(SIGPIPE, SIG_IGN);
  uint8_t ready = 0;
  readAll(gFromChild, &ready, 1);
  if (ready != 'R') die("the Node child did not start");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  startChild();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;
  const uint32_t n = static_cast<uint32_t>(size);
  writeAll(gToChild, &n, 4);
  if (size > 0) writeAll(gToChild, data, size);
  uint8_t verdict = 0;
  uint32_t ids = 0;
  readAll(gFromChild, &verdict, 1);
  readAll(gFromChild, &ids, 4);
  std::vector<uint32_t> cover(ids);
  if (ids > 0) readAll(gFromChild, cover.data(), ids * 4);
  for (uint32_t id : cover) {
    uint8_t& c = gCounters[id % kCounters];
    if (c < 255) ++c;
  }
  if (verdict != 0) {
    std::fprintf(stderr, "fuzz_store: the parser broke its contract on this input (the child's stderr says how)\n");
    std::abort();
  }
  return 0;
}
