// `calmkit-core bench extract|probes`: the benchmark engine (core/bench.h) without Node, for the GPU machines
// (scripts/gpu-check.py) and C++-side checks. Progress lines go to stderr; the report, the same JSON document
// `calmkit bench --json` writes, to --json FILE or stdout.
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/bench.h"
#include "core/error.h"
#include "tools/args.h"
#include "tools/commands.h"

namespace calmkit_tools {
namespace {

using calmkit::Error;
namespace code = calmkit::code;

std::vector<std::string> list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::vector<int64_t> intList(const std::string& s, const std::string& what) {
  std::vector<int64_t> out;
  for (const auto& item : list(s)) out.push_back(toInt(item, what));
  if (out.empty()) throw Error(code::kInvalidArgument, what + " needs at least one value");
  return out;
}

std::string commandLine(int argc, char** argv, const char* sub) {
  std::string s = std::string("calmkit-core bench ") + sub;
  for (int i = 0; i < argc; ++i) s += std::string(" ") + argv[i];
  return s;
}

void emit(const Args& a, const std::string& doc) {
  const std::string out = a.get("json", "");
  if (out.empty()) {
    std::cout << doc << "\n";
    return;
  }
  std::ofstream f(out);
  f << doc << "\n";
  if (!f) throw Error(code::kInvalidArgument, out + ": cannot be written");
  std::cerr << "wrote " << out << "\n";
}

// A private temporary folder of plain files (the reference's checkpoint and inputs), removed with its files.
// Plain POSIX calls: libtorch.so exports std::filesystem symbols of its own build, and calls bound to those
// (remove_all) crash in this binary.
class WorkDir {
 public:
  std::string make() {
    std::string tmpl =
        (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : std::string("/tmp")) + "/calmkit-bench-XXXXXX";
    if (!mkdtemp(tmpl.data()))
      throw Error(code::kInternal, "cannot make a temporary folder: " + std::string(std::strerror(errno)));
    path_ = tmpl;
    return path_;
  }
  ~WorkDir() {
    if (path_.empty()) return;
    if (DIR* d = opendir(path_.c_str())) {
      while (dirent* e = readdir(d)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") unlink((path_ + "/" + name).c_str());
      }
      closedir(d);
    }
    rmdir(path_.c_str());
  }

 private:
  std::string path_;
};

calmkit::bench::Events events() {
  calmkit::bench::Events ev;
  ev.log = [](const std::string& line) { std::cerr << line << std::endl; };
  return ev;
}

int benchExtract(int argc, char** argv) {
  Args a = parseArgs(argc, argv, {"jukemirlib", "profile"});
  calmkit::bench::ExtractOptions o;
  o.origin = {commandLine(argc, argv, "extract"), "calmkit-core", ""};
  o.preset = a.get("preset", "5b");
  o.modelPath = a.get("model", "");
  o.layers = toInt(a.get("layers", "0"), "--layers");
  o.sampleLayers = toInt(a.get("sample-layers", "0"), "--sample-layers");
  o.precisions = list(a.get("precision", "fp32"));
  o.batches = intList(a.get("batch", "1"), "--batch");
  if (a.has("tokens")) o.tokens = intList(a.get("tokens", ""), "--tokens");
  o.device = a.get("device", "cpu");
  o.rounds = toInt(a.get("rounds", "3"), "--rounds");
  o.warmup = toInt(a.get("warmup", "1"), "--warmup");
  o.seed = static_cast<uint64_t>(toInt(a.get("seed", "0"), "--seed"));
  o.profile = a.has("profile");
  o.verifyWeights = !a.has("no-verify-weights");
  o.referenceJukemirlib = a.has("jukemirlib");
  if (a.has("cpu-buffer-cache")) {
    // on,off: rows with calmkit's CPU buffer cache and without it, interleaved (a diagnostic of what it buys).
    for (const auto& m : list(a.get("cpu-buffer-cache", ""))) {
      if (m != "on" && m != "off")
        throw Error(code::kInvalidArgument, "--cpu-buffer-cache takes on, off or on,off; got '" + m + "'");
      o.bufferCache.push_back(m == "on");
    }
  }
  WorkDir work;
  if (a.has("reference")) {
    // --reference PYTHON: the eager reference with that Python; --reference-script defaults to the repo's.
    o.referencePython = a.get("reference", "");
    o.referenceScript = a.get("reference-script", "benchmarks/reference/jukebox_eager.py");
    o.workDir = work.make();
    // A reference that dies mid-write must be an error, not a SIGPIPE that ends this process.
    signal(SIGPIPE, SIG_IGN);
  } else {
    o.referenceAbsent = "no --reference PYTHON given";
  }
  emit(a, calmkit::bench::runExtract(o, events()));
  return 0;
}

int benchProbes(int argc, char** argv) {
  Args a = parseArgs(argc, argv);
  calmkit::bench::ProbeOptions o;
  o.origin = {commandLine(argc, argv, "probes"), "calmkit-core", ""};
  o.instruments = static_cast<int>(toInt(a.get("instruments", "20"), "--instruments"));
  o.dim = toInt(a.get("dim", "4800"), "--dim");
  o.clips = toInt(a.get("clips", "20000"), "--clips");
  o.scale = toDouble(a.get("scale", "1"), "--scale");
  o.epochs = intList(a.get("epochs", "1,2"), "--epochs");
  o.matmulPrecisions = list(a.get("matmul-precision", "fp32"));
  o.device = a.get("device", "cpu");
  o.mode = a.get("mode", "vectorised");
  o.segments = toInt(a.get("segments", "0"), "--segments");
  o.rounds = toInt(a.get("rounds", "1"), "--rounds");
  o.targetEpochs = toInt(a.get("target-epochs", "800"), "--target-epochs");
  emit(a, calmkit::bench::runProbes(o, events()));
  return 0;
}

Register bench(
    "bench",
    "extract [--preset 5b|small|demo|tiny | --model FILE] [--layers N] [--sample-layers K] [--precision "
    "fp32[,bf16,fp16,auto]] "
    "[--batch 1[,4]] [--tokens 8192[,3445]] [--device cpu|cuda|cuda:N|auto] [--rounds 3] [--warmup 1] [--seed 0] "
    "[--reference PYTHON [--reference-script PATH] [--jukemirlib]] [--profile] [--cpu-buffer-cache on,off] [--json "
    "FILE]\n"
    "        | probes [--dim 4800] [--instruments 20] [--clips 20000] [--scale 1] [--epochs 1,2] "
    "[--matmul-precision fp32[,bf16]] [--mode vectorised|one-at-a-time|batched] [--segments S] [--device cpu] [--json "
    "FILE]:\n"
    "        the benchmark engine of `calmkit bench`; the report (schema calmkit-bench) to --json FILE or stdout",
    [](int argc, char** argv) {
      if (argc < 1)
        throw Error(code::kInvalidArgument, "usage: calmkit-core bench extract|probes [options] (see --help)");
      const std::string sub = argv[0];
      if (sub == "extract") return benchExtract(argc - 1, argv + 1);
      if (sub == "probes") return benchProbes(argc - 1, argv + 1);
      throw Error(code::kInvalidArgument, "bench: unknown benchmark '" + sub + "' (extract or probes)");
    });

}  // namespace
}  // namespace calmkit_tools
