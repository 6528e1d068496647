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
  cudaDevices: { index: number; name: string; totalMemory: number; freeMemory: number; computeCapability: string }[];
  cudaUnavailableReason: string;
}

export interface RawDecoded {
  channels: number;
  sampleRate: number;
  frames: number;
  format: string;
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
  samples: Float32Array;
  sampleRate: number;
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
  threads?: number;
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

export interface RawProbeNet {
  mean?: Float32Array;
  std?: Float32Array;
  layers: { in: number; out: number; weight: Float32Array; bias: Float32Array }[];
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
  net?: RawProbeNet;
}

export interface RawProbeGridResult {
  /** Task-major: probes[task * configs + config]. */
  probes: RawProbeResult[];
  tasks: { selected: number; selectedNet: RawProbeNet; linear: number; linearNet?: RawProbeNet }[];
  stacks: number;
  seconds: number;
  device: string;
}

export interface RawBinding {
  doctor(): RawDoctor;
  decodeAudio(input: string | Uint8Array): Promise<RawDecoded>;
  loadAudio(input: RawAudioInput, options?: RawPrepareOptions): Promise<RawPrepared>;
  trainProbeGrid(
    features: Float32Array,
    dim: number,
    tasks: RawProbeTask[],
    configs: RawProbeConfig[],
    options: RawProbeOptions,
    onProgress?: (p: RawProbeProgress) => void,
  ): { promise: Promise<RawProbeGridResult>; cancel(): void };
  /** P(present) for each row and net, row-major [n][nets]. */
  predictProbes(features: Float32Array, dim: number, nets: RawProbeNet[], device: string): Promise<Float32Array>;
}
