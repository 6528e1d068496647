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

export interface RawBinding {
  doctor(): RawDoctor;
  gemmPeak(options: { m?: number; n?: number; k?: number; dtype?: string; device?: string; repeats?: number }): Promise<number>;
  decodeAudio(input: string | Uint8Array): Promise<RawDecoded>;
  writeAudio(path: string, options: { interleaved: Float32Array; channels: number; sampleRate: number; container: string; encoding: string }): Promise<void>;
  loadAudio(input: RawAudioInput, options?: RawPrepareOptions): Promise<RawPrepared>;
}
