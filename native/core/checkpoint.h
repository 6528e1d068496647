// The calmkit Jukebox checkpoint: a TorchScript archive whose state_dict keys are jukebox's own names and whose
// root attributes are the hyperparameters (docs/contracts.md). Reading validates every key's presence, shape
// and dtype before anything runs; writing saves tensors and hyperparameters (random weights: core/random_model.h).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace calmkit::jukebox {

struct Hparams {
  int64_t calmkitFormat = 1;
  std::string preset = "5b";
  std::string source;
  int64_t sampleRate = 44100;
  int64_t vqLevels = 3;
  std::vector<int64_t> vqDownsT{3, 2, 2};
  std::vector<int64_t> vqStridesT{2, 2, 2};
  int64_t vqEmbWidth = 64;
  int64_t vqLBins = 2048;
  int64_t vqWidth = 32;
  int64_t vqDepth = 4;
  double vqMConv = 1.0;
  int64_t vqDilationGrowthRate = 3;
  int64_t nCtx = 8192;
  int64_t width = 4800;
  int64_t depth = 36;
  int64_t fullDepth = 72;
  int64_t heads = 8;
  double mAttn = 0.25;
  double mMlp = 1.0;
  int64_t attnOrder = 2;
  int64_t blocks = 128;
  int64_t bins = 2048;
  int64_t yBinsGenre = 120;
  int64_t yBinsArtist = 4111;
  int64_t tBins = 128;
  int64_t maxBowGenreSize = 5;
  double minDuration = 60.0;
  double maxDuration = 600.0;
  int64_t condTotalLength = 2734080;
  int64_t condOffset = 0;
  int64_t condArtist = 0;
  int64_t condGenre = 0;

  int64_t hop() const;  // samples per top-level token
  int64_t blockCtx() const { return nCtx / blocks; }
  int64_t nState() const { return static_cast<int64_t>(static_cast<double>(width) * mAttn); }
  int64_t hidden() const { return static_cast<int64_t>(static_cast<double>(width) * mMlp); }
  int64_t vqState() const { return static_cast<int64_t>(static_cast<double>(vqWidth) * vqMConv); }
  int64_t windowSamples() const { return nCtx * hop(); }
};

// Bounds on each hyperparameter, then the relations between them (divisibility, positivity) and bounds on every
// derived quantity (hop, window, the encoder's dilations and receptive field, the timing bins' ranges), computed
// so that nothing overflows; throws ModelError listing every violation.
void checkHparams(const Hparams& hp, const std::string& label);

// Built-in shapes for `model init`: "tiny" (tests), "demo" (tiny with the 5B's 8192-token context: `npm run demo`),
// "small" (CPU timing), "5b" (the real model's shapes).
Hparams presetHparams(const std::string& preset);

struct TensorSpec {
  std::string key;
  std::vector<int64_t> shape;
  torch::ScalarType dtype;
  bool buffer = false;
};

// Every tensor calmkit reads, with the shape and dtype the hyperparameters imply.
std::vector<TensorSpec> expectedTensors(const Hparams& hp);

struct Checkpoint {
  Hparams hp;
  // Tensors as stored (no copies, no casts), keyed by jukebox's state_dict names.
  std::map<std::string, torch::Tensor> tensors;
  int64_t fileBytes = 0;
};

struct LoadOptions {
  // The costly half of "proven sound": every record's CRC-32 against the zip directory, every weight finite.
  // Off only for files you trust (docs/contracts.md, "What a load proves"); the structure (every record's size
  // against its tensor's shape and dtype, the hyperparameters' bounds) is always checked.
  bool verifyWeights = true;
};

// Loads and proves sound, or refuses. Errors: ERR_MODEL_FILE (missing, unreadable, not a regular file: a FIFO,
// device, directory or symlink loop is refused before any read), ERR_MODEL_FORMAT naming the file and the tensor,
// record or attribute (not a zip/TorchScript archive, damaged records, records whose size is not their tensor's
// shape times its dtype, non-finite weights, missing or mistyped attributes, hyperparameters out of bounds,
// missing keys, wrong shapes or dtypes).
Checkpoint loadCheckpoint(const std::string& path, const LoadOptions& options = {});
// The same from archive bytes in memory (`label` names them in errors): the fuzz target's entry.
Checkpoint loadCheckpointBytes(const uint8_t* data, size_t size, const std::string& label,
                               const LoadOptions& options = {});

// Writes tensors (state_dict names) and hyperparameters as a TorchScript archive.
void saveCheckpoint(const Hparams& hp, const std::map<std::string, torch::Tensor>& tensors, const std::string& path);

struct DtypeBytes {
  std::string dtype;
  int64_t tensors = 0;
  int64_t elements = 0;
  int64_t bytes = 0;
};
struct Summary {
  int64_t parameters = 0;  // elements
  int64_t bytes = 0;       // tensor bytes as stored
  std::vector<DtypeBytes> byDtype;
  int64_t blockBytes = 0;  // one transformer block
};
Summary summarise(const Checkpoint& ck);

std::string dtypeName(torch::ScalarType t);

}  // namespace calmkit::jukebox
