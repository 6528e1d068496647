// The measuring engine behind `calmkit bench` (through the addon) and `calmkit-core bench` (without Node, e.g. on
// the GPU machines by scripts/gpu-check.py): one implementation, so a figure means the same wherever it is printed.
//
// - extract: extraction at a preset's real shapes with random weights drawn in memory (or a checkpoint file),
//   every stage of every pass timed (the input's encoding, the embedding, each block, the pooling) through the
//   same core::extract users run, rows of precision x tokens x batch interleaved round after round; the GEMM peak
//   of each dtype measured in the same run on the same device; FLOP counts; peak resident and device memory; each
//   precision's pooled cosine to fp32; and, when a Python with torch is given, the eager PyTorch reference
//   (benchmarks/reference/jukebox_eager.py) on the same device in the same rounds.
// - probes: the probe grid's throughput on a synthetic OpenMIC-sized problem at two epoch counts, extrapolated to
//   the paper's 800 epochs, against the floor its products' FLOPs set at the measured GEMM peak.
//
// Each returns one JSON document of the schema "calmkit-bench" version kSchemaVersion (docs/bench.md lists its
// fields; every number's unit is in its name: ...Seconds, ...Bytes, ...GflopPerSecond, ...Fraction).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/checkpoint.h"
#include "core/json.h"
#include "core/probes.h"

namespace calmkit::bench {

inline constexpr const char* kSchema = "calmkit-bench";
inline constexpr int kSchemaVersion = 1;

struct Events {
  std::function<void(const std::string& line)> log;  // one line per finished measurement
  std::function<bool()> cancelled;                   // polled between passes and between blocks: ERR_ABORTED
};

// What every report records about where it came from.
struct Origin {
  std::string command;         // the command line as typed
  std::string host;            // "calmkit 0.1.0 (Node v20...)" or "calmkit-core"
  std::string calmkitVersion;  // "" when unknown (calmkit-core)
};

struct ExtractOptions {
  Origin origin;
  std::string preset = "5b";  // tiny | demo | small | 5b, random weights; ignored with modelPath
  std::string modelPath;      // a calmkit checkpoint instead of random weights
  int64_t layers = 0;         // the clip is reported to this layer (0: the preset's or checkpoint's depth)
  int64_t sampleLayers = 0;   // > 0: only this many blocks run, the rest extrapolated per attention kind
  std::vector<std::string> precisions{"fp32"};  // fp32 | bf16 | fp16 | auto
  std::vector<int64_t> batches{1};
  std::vector<int64_t> tokens;  // empty: a full window (n_ctx)
  std::string device = "cpu";
  int64_t rounds = 3, warmup = 1;
  uint64_t seed = 0;
  bool verifyWeights = true;
  bool profile = false;  // also each step inside the blocks (profile::Step), per row: profileSeconds
  // Rows with the CPU buffer cache (core/buffer_cache.h) on and off, interleaved: what it buys, measured in one
  // process. Empty: as configured (CALMKIT_CPU_BUFFER_CACHE).
  std::vector<bool> bufferCache;
  // The eager reference: run when referencePython is set; referenceAbsent says why not, for the report.
  std::string referencePython, referenceScript, referenceAbsent;
  bool referenceJukemirlib = false;  // also the original code's own way (25 s, three VQ-VAE levels), fp32
  std::string workDir;               // temporary files (the reference's checkpoint and inputs); must exist
};
std::string runExtract(const ExtractOptions& options, const Events& events);

struct ProbeOptions {
  Origin origin;
  int instruments = 20;
  int64_t dim = 4800, clips = 20000;
  double scale = 1.0;                 // multiplies OpenMIC's per-class counts (quick runs)
  std::vector<int64_t> epochs{1, 2};  // two or more epoch counts: time = setup + epochs x per epoch
  std::vector<std::string> matmulPrecisions{"fp32"};
  std::string device = "cpu";
  std::string mode = "vectorised";  // vectorised | one-at-a-time | batched
  int64_t segments = 0;             // > 0: the attention grid on this many segments per clip
  int64_t rounds = 1;
  int64_t targetEpochs = 800;
};
std::string runProbes(const ProbeOptions& options, const Events& events);

// ---- shared by the engine and calmkit-core's other commands ---------------------------------------------------

// The schema's "machine" object (JSON text): CPU model and flags, cores, memory, OS, load, LibTorch, BLAS,
// threads, bf16 on the CPU, GPUs and driver.
std::string machineJson();

// The fields every report starts with: schema and version, kind, createdAt (UTC), where it came from, the machine.
json::Object reportHead(const char* kind, const Origin& origin);

// FLOPs of one clip's prior pass over layers 1..L on T tokens (spec 7.2): the four projections plus the attention
// products as computed (whole blocks, masked entries included).
double priorFlops(const jukebox::Hparams& hp, int64_t layers, int64_t tokens);
// FLOPs of the level-2 encoder's convolutions on n samples, and of the VQ distances of its frames.
double encoderFlops(const jukebox::Hparams& hp, int64_t samples);

// A test signal: harmonics with a sweep and a little noise, peak 1 (a random encoder spreads its codes on it).
std::vector<float> testAudio(int64_t n, uint64_t seed);

struct Peak {
  std::string dtype;   // float32 | bfloat16 | float16
  std::string kernel;  // what reached it: "torch.mm" or "oneDNN packed linear"
  int64_t size = 0;    // the square product size (m = n = k) that reached it
  double gflopPerSecond = 0;
};
// The schema's "peaks" array: one object per dtype measured on `device`.
json::Array peaksJson(const std::map<std::string, Peak>& peaks, const std::string& device);

// How far a pooled row is from a reference row: cosine, and the largest difference relative to the largest
// magnitude of `ref` (the figures every precision and device check reports).
double cosine(const std::vector<float>& a, const std::vector<float>& b);
double maxRel(const std::vector<float>& a, const std::vector<float>& ref);

// The dtype's matrix-product peak on `device` now: square products of growing size until one takes ~0.3 s, each
// the best of up to 10 repetitions (~1 s), the best of torch.mm and (for half precision on a CPU with oneDNN)
// the packed linear the bf16 blocks run on.
Peak measurePeak(const std::string& dtype, const std::string& device);

// The synthetic probe problem of `calmkit-core probe-grid` and the probes benchmark: standard-normal clips, each
// instrument labelling its clips by a noisy linear rule with OpenMIC-2018's per-class counts (x scale).
struct ProbeProblem {
  std::vector<float> features;  // [clips, dim] (or [clips, segments, dim] after toSegments)
  std::vector<probes::Task> tasks;
};
ProbeProblem probeProblem(int instruments, int64_t dim, int64_t clips, double scale);
std::vector<probes::Config> paperGrid();
std::vector<probes::Config> attentionGrid();
std::vector<float> toSegments(const std::vector<float>& x, int64_t clips, int64_t dim, int64_t segments);

}  // namespace calmkit::bench
