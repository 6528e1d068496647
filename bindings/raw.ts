// Declarations of the raw addon surface (native/napi). Private: lib/ wraps every call with typed errors.

export interface RawDoctor {
  torchVersion: string;
  torchDir: string;
  builtWithCuda: boolean;
  cudaVersion: string;
  threads: number;
  threadsSource: string;
  interopThreads: number;
  blas: { name: string; detail: string; isReference: boolean };
  mkldnn: boolean;
  cpuBf16: {
    avx512Bf16: boolean;
    amxBf16: boolean;
    isaLimit: string;
    onednnIsa: string;
    matmulKernel: string;
    linearKernel: string;
    native: boolean;
    basis: string;
  };
  autoPrecisionCpu: string;
  cudaDevices: { index: number; name: string; totalMemory: number; freeMemory: number; computeCapability: string; autoPrecision: string }[];
  cudaUnavailableReason: string;
}

export interface RawDecoded {
  channels: number;
  sampleRate: number;
  frames: number;
  format: string;
  /** frames x channels, interleaved. */
  interleaved: Float32Array;
}

export interface RawPrepareOptions {
  formatting?: string;
  targetSeconds?: number;
  factor?: number;
  cropSamples?: number;
  normalise?: boolean;
}

export interface RawPrepared {
  /** Mono samples at `sampleRate` (44100). */
  samples: Float32Array;
  sampleRate: number;
  /** Always 1: the front-end mixes to mono by the mean of channels. */
  channels: number;
  sourceChannels: number;
  sourceSampleRate: number;
  sourceFrames: number;
  durationSeconds: number;
}

export type RawAudioInput = string | Uint8Array | { samples: Float32Array; sampleRate: number };

export interface RawSplit {
  rows: Int32Array;
  targets: Uint8Array;
}

export interface RawProbeTask {
  instrument: string;
  train: RawSplit;
  val: RawSplit;
  test: RawSplit;
}

export interface RawProbeConfig {
  hidden: number[];
  dropout: number;
  l2: number;
  /** Attention pooling over the segments of each clip (options.segments >= 1). */
  attention?: boolean;
  /** Another head of the core's registry by name (native/core/probes_heads.cpp); absent: the MLP probe. */
  head?: string;
}

export interface RawProbeOptions {
  epochs?: number;
  batchSize?: number;
  lr?: number;
  seed?: number;
  standardize?: boolean;
  device?: string;
  maxStackBytes?: number;
  maxProbesPerStack?: number;
  keepAllWeights?: boolean;
  batchedStep?: boolean;
  /** 'fp32' | 'bf16' (native/core/probes.h MatmulPrecision). */
  matmulPrecision?: string;
  threads?: number;
  /** 0: one vector per clip ([n, dim]); S >= 1: S segment vectors per clip ([n, S, dim]), for attention probes. */
  segments?: number;
  /** Real segments per clip (1..S); absent: all S. */
  validSegments?: Int32Array;
}

export interface RawProbeProgress {
  epoch: number;
  epochs: number;
  stack: number;
  stacks: number;
  probes: number;
  probesDone: number;
  probesTotal: number;
}

export interface RawProbeLayer {
  in: number;
  out: number;
  weight: Float32Array;
  bias: Float32Array;
}

export interface RawProbeNet {
  mean?: Float32Array;
  std?: Float32Array;
  layers: RawProbeLayer[];
  /** Attention probes: the per-segment attention logit, reading what the last layer reads. */
  attention?: RawProbeLayer;
  /** Any other head: its name and its own weights (each reading what the last layer reads, bias 0). */
  head?: string;
  headLayers?: RawProbeLayer[];
}

export interface RawProbeResult {
  task: number;
  config: number;
  valLoss: Float32Array;
  valAcc: Float32Array;
  bestEpoch: number;
  bestValLoss: number;
  bestValAcc: number;
  testProb: Float32Array;
  /** Attention probes: each test clip's weights over its segments, [test clips][segments]. */
  testAttention?: Float32Array;
  net?: RawProbeNet;
}

export interface RawProbeGridResult {
  /** Task-major: probes[task * configs + config]. */
  probes: RawProbeResult[];
  /** Per task: the selected config (index into the grid) and the best linear one (-1: none in the grid). */
  tasks: { selected: number; selectedNet: RawProbeNet; linear: number; linearNet?: RawProbeNet }[];
  stacks: number;
  seconds: number;
  device: string;
}
/** Opaque native handles (type-tagged Externals). */
export type RawJukeboxHandle = { readonly __brand: 'JukeboxHandle' };
export type RawControl = { readonly __brand: 'JukeboxControl' };

export interface RawJukeboxInfo {
  preset: string;
  source: string;
  sampleRate: number;
  hop: number;
  nCtx: number;
  windowSamples: number;
  encoderMarginSamples: number;
  /** Samples the first window needs: windowSamples + encoderMarginSamples (the front-end's crop for windows 'first'). */
  firstWindowSamples: number;
  width: number;
  /** Transformer blocks in the checkpoint: layers 1..depth can be extracted. */
  depth: number;
  fullDepth: number;
  heads: number;
  nState: number;
  mlpWidth: number;
  blocks: number;
  blockCtx: number;
  attnOrder: number;
  bins: number;
  vqvae: {
    levels: number;
    downsT: number[];
    stridesT: number[];
    width: number;
    depth: number;
    embWidth: number;
    codebookSize: number;
    dilationGrowthRate: number;
  };
  label: { totalLength: number; offset: number; artist: number; genre: number; minDuration: number; maxDuration: number; tBins: number };
  parameters: number;
  bytes: number;
  fileBytes: number;
  blockBytes: number;
  dtypes: { dtype: string; tensors: number; elements: number; bytes: number }[];
  device?: string;
  precision?: string;
  /** How the blocks' products run: `aten` or `onednn-packed` (CPU bf16, see docs/contracts.md). */
  blockKernels?: string;
}

export type RawJukeboxInput = { samples: Float32Array; label?: string } | { tokens: Int32Array; label?: string };

export interface RawJukeboxExtractOptions {
  layers: number[];
  pooling: string;
  segmentTokens?: number;
  segmentSeconds?: number;
  windows: string;
}

export interface RawJukeboxResult {
  segmentTokens: number;
  clips: { tokens: Int32Array; windows: number; layers: { layer: number; shape: number[]; data: Float32Array }[] }[];
}

export type RawJukeboxEvent =
  | { type: 'progress'; clipsDone: number; clipsTotal: number; windowsDone: number; windowsTotal: number; blocksDone: number; blocksTotal: number }
  | { type: 'chunk'; clip: number; layer: number; window: number; start: number; rows: number; data: Float32Array };

/** Where a benchmark report came from (native/core/bench.h Origin). */
export interface RawBenchOrigin {
  command?: string;
  host?: string;
  calmkitVersion?: string;
}

export interface RawBenchExtractOptions extends RawBenchOrigin {
  preset?: string;
  model?: string;
  layers?: number;
  sampleLayers?: number;
  precisions?: string[];
  batches?: number[];
  tokens?: number[];
  device?: string;
  rounds?: number;
  warmup?: number;
  seed?: number;
  verifyWeights?: boolean;
  profile?: boolean;
  referencePython?: string;
  referenceScript?: string;
  referenceAbsent?: string;
  referenceJukemirlib?: boolean;
  workDir?: string;
  bufferCache?: ('on' | 'off')[];
}

export interface RawBenchProbeOptions extends RawBenchOrigin {
  instruments?: number;
  dim?: number;
  clips?: number;
  scale?: number;
  epochs?: number[];
  matmulPrecisions?: string[];
  device?: string;
  mode?: string;
  segments?: number;
  rounds?: number;
  targetEpochs?: number;
}

export interface RawExecutorStats {
  busySeconds: number;
  jobs: number;
}

export interface RawBinding {
  doctor(): RawDoctor;
  gemmPeak(options: { m?: number; n?: number; k?: number; dtype?: string; device?: string; repeats?: number }): Promise<number>;
  /** A cancellation (and, for streams, flow-control) handle for one long job. */
  control(): RawControl;
  /** Asks the job holding `control` to stop; it rejects with ERR_ABORTED at its next check. */
  cancel(control: RawControl): void;
  /** A streamed chunk was taken: lets a stream waiting on back-pressure send the next one. */
  consumed(control: RawControl): void;
  /** CRC-32 (zip's) of bytes[starts[i], starts[i] + lengths[i]) for every i (the feature store's entry checksums). */
  crc32Ranges(bytes: Uint8Array, starts: Float64Array, lengths: Float64Array): Uint32Array;
  decodeAudio(input: string | Uint8Array): Promise<RawDecoded>;
  writeAudio(path: string, options: { interleaved: Float32Array; channels: number; sampleRate: number; container: string; encoding: string }): Promise<void>;
  loadAudio(input: RawAudioInput, options?: RawPrepareOptions): Promise<RawPrepared>;
  /** `features` is borrowed, not copied, until the promise settles: it must not be changed or transferred meanwhile. */
  trainProbeGrid(
    features: Float32Array,
    dim: number,
    tasks: RawProbeTask[],
    configs: RawProbeConfig[],
    options: RawProbeOptions,
    control: RawControl,
    onProgress?: (p: RawProbeProgress) => void,
  ): Promise<RawProbeGridResult>;
  /** P(present) for each row and net, row-major [n][nets]. */
  predictProbes(features: Float32Array, dim: number, nets: RawProbeNet[], device: string): Promise<Float32Array>;
  /** Attention nets on [n, segments, dim]: P(present) [n][nets] and, when asked, weights [n][nets][segments]. */
  predictSegmentProbes(
    features: Float32Array,
    dim: number,
    segments: number,
    validSegments: Int32Array | null,
    nets: RawProbeNet[],
    device: string,
    withWeights: boolean,
  ): Promise<{ probabilities: Float32Array; weights?: Float32Array }>;
  jukeboxLoad(path: string, options: { device: string; precision: string; verifyWeights?: boolean }): Promise<RawJukeboxHandle>;
  jukeboxInfo(handle: RawJukeboxHandle): RawJukeboxInfo;
  jukeboxInspect(path: string, options?: { verifyWeights?: boolean }): Promise<RawJukeboxInfo>;
  jukeboxInit(options: { preset: string; layers?: number; seed?: number; out: string }): Promise<void>;
  jukeboxDispose(handle: RawJukeboxHandle): void;
  /** Tokens per segment of segments pooling, by the core's rule (native/core/extract.cpp segmentTokensFor). */
  jukeboxSegmentTokens(options: { segmentTokens?: number; segmentSeconds?: number; hop: number; sampleRate: number }): number;
  jukeboxExtract(
    handle: RawJukeboxHandle,
    inputs: RawJukeboxInput[],
    options: RawJukeboxExtractOptions,
    control: RawControl,
    onEvent?: (event: RawJukeboxEvent) => void,
  ): Promise<RawJukeboxResult>;
  /** The benchmark engine (native/core/bench.h): the report's JSON text; progress lines to onLine. */
  benchExtract(options: RawBenchExtractOptions, control: RawControl, onLine?: (line: string) => void): Promise<string>;
  benchProbes(options: RawBenchProbeOptions, control: RawControl, onLine?: (line: string) => void): Promise<string>;
  /** The benchmark schema's "machine" object, as JSON text. */
  benchMachine(): string;
  /** Seconds each of the addon's thread pools spent running jobs, and how many jobs ran, since the addon loaded. */
  executorStats(): { compute: RawExecutorStats; audio: RawExecutorStats; load: RawExecutorStats };
  /** Test-only building blocks (napi/testing.cpp). */
  _jukeboxTimingBins(hparams?: {
    nCtx?: number;
    hop?: number;
    sampleRate?: number;
    tBins?: number;
    minDuration?: number;
    maxDuration?: number;
    totalLength?: number;
    offset?: number;
  }): { total: number; absolute: Int32Array; relative: Int32Array };
  /** The probe trainer's dropout draws by its host kernel and by its device (tensor) hash, for tests. */
  _probeKeepDraws(seeds: number[], n: number, keeps: number[]): { host: Uint8Array; tensor: Uint8Array };
  /**
   * One probe (one instrument, one config) trained by the trainer's own step, synchronously, with every step's
   * gradients (before Adam) and updated weights in the order W0, b0, W1, b1, ..., the attention layer; step 0 is
   * the initial weights (napi/probes.cpp TraceProbe), for tests.
   */
  _probeTrace(
    features: Float32Array,
    dim: number,
    task: RawProbeTask,
    config: RawProbeConfig,
    options: RawProbeOptions,
  ): { step: number; grads: Float32Array[]; weights: Float32Array[] }[];
  _jukeboxAttention(q: Float32Array, k: Float32Array, v: Float32Array, shape: number[], kind: string, blockCtx: number, impl?: string): Float32Array;
}
