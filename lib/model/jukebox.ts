// The Jukebox extractor: a calmkit checkpoint loaded on a device, turning audio into per-layer features. The
// forward pass runs in the native core on an addon thread; this file handles inputs, options, cancellation,
// progress and streaming.
import { binding } from '../../bindings';
import type { RawControl, RawJukeboxEvent, RawJukeboxHandle, RawJukeboxInfo, RawJukeboxInput, RawJukeboxResult } from '../../bindings/raw';
import { loadAudio, type AudioInput, type LoadAudioOptions } from '../audio';
import { AbortError, ArgumentError, DisposedError, native, nativeSync } from '../errors';
import type { Device } from '../runtime/device';
import { ChunkChannel } from './chunk-channel';

/** Where the model runs: `cpu`, `cuda`, `cuda:N` or `auto` (runtime/device.ts). */
export type JukeboxDevice = Device;
export type JukeboxPrecision = 'fp32' | 'fp16' | 'bf16';
export type JukeboxPooling = 'mean' | 'segments' | 'none';

export interface JukeboxLoadOptions {
  /** `auto` picks cuda when this build and machine have it (default `cpu`). */
  device?: JukeboxDevice;
  /** `fp32` is faithful (TF32 off, fp16 weights upcast exactly); `fp16`/`bf16` are fast paths for GPUs. */
  precision?: JukeboxPrecision;
  signal?: AbortSignal;
}

/** Model hyperparameters and storage facts, plus where it runs. */
export type JukeboxInfo = Omit<RawJukeboxInfo, 'device' | 'precision'> & { device: string; precision: JukeboxPrecision };
/** What `calmkit model info` shows: a checkpoint's description without loading it for a forward pass. */
export type JukeboxCheckpointInfo = Omit<RawJukeboxInfo, 'device' | 'precision'>;

/** An input clip: anything loadAudio takes, or top-level tokens (skips the VQ-VAE). */
export type JukeboxInput = AudioInput | { tokens: Int32Array };

export interface JukeboxProgress {
  windowsDone: number;
  windowsTotal: number;
  /** Transformer blocks done in the current window, of `blocksTotal` (the deepest requested layer). */
  blocksDone: number;
  blocksTotal: number;
}

export interface JukeboxExtractOptions extends Pick<LoadAudioOptions, 'formatting' | 'targetSeconds' | 'factor' | 'normalise'> {
  /** 1-based layers (default: 36, or the deepest layer of a shallower checkpoint). One pass serves them all. */
  layers?: number[];
  /**
   * `mean` over all positions of a window (jukemir); `segments`: means over consecutive runs of
   * `segmentTokens` tokens or `segmentSeconds` seconds ([S, width]); `none`: raw [T, width] activations.
   */
  pooling?: JukeboxPooling;
  segmentTokens?: number;
  segmentSeconds?: number;
  /** `first`: the first window only (jukemir); `all`: every window of n_ctx tokens (the last may be shorter). */
  windows?: 'first' | 'all';
  signal?: AbortSignal;
  onProgress?: (progress: JukeboxProgress) => void;
}

export interface LayerFeatures {
  layer: number;
  /**
   * mean: [width] for the first window, [windows, width] for all; segments: [S, width]; none: [T, width].
   * Windows follow one another along the first axis.
   */
  shape: number[];
  data: Float32Array;
}

export interface JukeboxFeatures {
  /** Features by 1-based layer. */
  layers: Record<number, LayerFeatures>;
  /** The top-level tokens the prior saw, window after window. */
  tokens: Int32Array;
  windows: number;
  /** Tokens per segment, with segments pooling. */
  segmentTokens?: number;
}

/** A piece of raw activations from `stream()`: rows [start, start + rows) of one clip's layer. */
export interface JukeboxChunk {
  clip: number;
  layer: number;
  window: number;
  start: number;
  shape: [number, number];
  data: Float32Array;
}

/** The CALM layer of the 5B model (the middle of 72). */
export const CALM_LAYER = 36;

function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new AbortError(`${what} was aborted`);
}

function inputLabel(input: JukeboxInput, i: number): string {
  if (typeof input === 'string') return input;
  if (input instanceof Uint8Array) return `<input ${i}: buffer of ${input.byteLength} bytes>`;
  if (input && 'tokens' in input) return `<input ${i}: ${input.tokens?.length ?? 0} tokens>`;
  return `<input ${i}: ${(input as { samples?: Float32Array })?.samples?.length ?? 0} samples>`;
}

function isTokens(input: JukeboxInput): input is { tokens: Int32Array } {
  return typeof input === 'object' && input !== null && !(input instanceof Uint8Array) && 'tokens' in input;
}

export class Jukebox {
  #handle: RawJukeboxHandle | undefined;
  readonly #path: string;
  #info: JukeboxInfo;

  private constructor(handle: RawJukeboxHandle, path: string) {
    this.#handle = handle;
    this.#path = path;
    this.#info = nativeSync(() => binding().jukeboxInfo(handle), path) as JukeboxInfo;
  }

  /** Loads and validates a calmkit Jukebox checkpoint (docs/contracts.md) onto a device. */
  static async load(path: string, options: JukeboxLoadOptions = {}): Promise<Jukebox> {
    if (typeof path !== 'string' || path === '') throw new ArgumentError('ERR_INVALID_ARGUMENT', 'model path must be a non-empty string');
    const precision = options.precision ?? 'fp32';
    if (!['fp32', 'fp16', 'bf16'].includes(precision)) {
      throw new ArgumentError('ERR_INVALID_ARGUMENT', `precision must be fp32, fp16 or bf16; got '${String(precision)}'`);
    }
    throwIfAborted(options.signal, 'loading ' + path);
    const handle = await native(() => binding().jukeboxLoad(path, { device: options.device ?? 'cpu', precision }), path);
    // Loading cannot be interrupted half-way; an abort during it releases the loaded model at once.
    if (options.signal?.aborted) {
      binding().jukeboxDispose(handle);
      throw new AbortError(`loading ${path} was aborted`, { input: path });
    }
    return new Jukebox(handle, path);
  }

  /** Validates a checkpoint and describes it (hyperparameters, dtypes, bytes) without preparing a forward pass. */
  static inspect(path: string): Promise<JukeboxCheckpointInfo> {
    return native(() => binding().jukeboxInspect(path), path);
  }

  /** Writes a random-weight checkpoint (`tiny`, `small` or the real `5b` shapes) with jukebox's init scales. */
  static init(options: { preset: 'tiny' | 'small' | '5b'; layers?: number; seed?: number; out: string }): Promise<void> {
    return native(() => binding().jukeboxInit(options), options.out);
  }

  get info(): JukeboxInfo {
    this.#live();
    return this.#info;
  }

  get disposed(): boolean {
    return this.#handle === undefined;
  }

  /** Features of one clip, or of each clip of a batch (equal lengths after formatting), from one forward pass. */
  extract(input: JukeboxInput, options?: JukeboxExtractOptions): Promise<JukeboxFeatures>;
  extract(inputs: JukeboxInput[], options?: JukeboxExtractOptions): Promise<JukeboxFeatures[]>;
  async extract(input: JukeboxInput | JukeboxInput[], options: JukeboxExtractOptions = {}): Promise<JukeboxFeatures | JukeboxFeatures[]> {
    const many = Array.isArray(input);
    const inputs = many ? input : [input];
    const pooling = options.pooling ?? 'mean';
    // Raw activations arrive as chunks; collect them per clip and layer.
    const collected: JukeboxChunk[][] = inputs.map(() => []);
    const result = await this.#run(inputs, { ...options, pooling }, (chunk) => collected[chunk.clip].push(chunk), true);
    const features = result.clips.map((clip, i): JukeboxFeatures => {
      const layers: Record<number, LayerFeatures> = {};
      if (pooling === 'none') {
        for (const layer of this.#layers(options.layers)) {
          const parts = collected[i].filter((c) => c.layer === layer);
          layers[layer] = { layer, shape: [parts.reduce((n, c) => n + c.shape[0], 0), this.#info.width], data: concat(parts.map((c) => c.data)) };
        }
      } else {
        for (const l of clip.layers) layers[l.layer] = { layer: l.layer, shape: l.shape, data: l.data };
      }
      const out: JukeboxFeatures = { layers, tokens: clip.tokens, windows: result.windows };
      if (pooling === 'segments') out.segmentTokens = result.segmentTokens;
      return out;
    });
    return many ? features : features[0];
  }

  /**
   * Raw activations (pooling `none`, the default here) as they are computed, in bounded memory: the forward
   * pass waits while the consumer holds more than a couple of chunks. Pooled modes yield one chunk per clip and
   * layer at the end. Breaking out of the loop cancels the pass; an iterator that is neither drained nor
   * returned keeps the pass waiting (and later calls queued behind it) until its `signal` aborts.
   */
  stream(input: JukeboxInput | JukeboxInput[], options: JukeboxExtractOptions = {}): AsyncIterable<JukeboxChunk> {
    const inputs = Array.isArray(input) ? input : [input];
    const pooling = options.pooling ?? 'none';
    const width = this.#info.width;
    return {
      [Symbol.asyncIterator]: (): AsyncIterator<JukeboxChunk> => {
        const channel = new ChunkChannel<JukeboxChunk>();
        const finished = this.#run(inputs, { ...options, pooling }, (chunk) => channel.push(chunk), false, (c) => channel.attach(c)).then(
          (result) => {
            // Pooled modes have nothing to stream while running: their features come with the result.
            result.clips.forEach((clip, i) =>
              clip.layers.forEach((l) => channel.push({ clip: i, layer: l.layer, window: 0, start: 0, shape: [l.shape.length === 1 ? 1 : l.shape[0], width], data: l.data })),
            );
            channel.end();
          },
          (e: unknown) => channel.fail(e),
        );
        return {
          next: () => channel.next(),
          return: async () => {
            channel.cancel();
            await finished;
            return { value: undefined, done: true };
          },
        };
      },
    };
  }

  /** Releases the weights (a running extraction finishes first). Later calls throw DisposedError. */
  dispose(): void {
    if (this.#handle) binding().jukeboxDispose(this.#handle);
    this.#handle = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  #live(): RawJukeboxHandle {
    if (!this.#handle) throw new DisposedError(`Jukebox model ${this.#path}`);
    return this.#handle;
  }

  #layers(layers: number[] | undefined): number[] {
    const list = layers ?? [Math.min(CALM_LAYER, this.#info.depth)];
    return [...new Set(list)].sort((a, b) => a - b);
  }

  async #prepare(inputs: JukeboxInput[], options: JukeboxExtractOptions): Promise<RawJukeboxInput[]> {
    if (inputs.length === 0) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'no inputs given');
    const windows = options.windows ?? 'first';
    // The first window needs the window plus the encoder's margin (jukemir encodes 25 s to use 23.78 s).
    const cropSamples = windows === 'first' ? this.#info.firstWindowSamples : undefined;
    const prepared = await Promise.all(
      inputs.map(async (input, i): Promise<RawJukeboxInput> => {
        const label = inputLabel(input, i);
        if (isTokens(input)) {
          if (!(input.tokens instanceof Int32Array)) throw new ArgumentError('ERR_INVALID_ARGUMENT', `${label}: tokens must be an Int32Array`, { input: label });
          return { tokens: input.tokens, label };
        }
        const audio = await loadAudio(input, {
          formatting: options.formatting,
          targetSeconds: options.targetSeconds,
          factor: options.factor,
          normalise: options.normalise,
          cropSamples,
        });
        return { samples: audio.samples, label };
      }),
    );
    const lengths = prepared.map((p) => ('tokens' in p ? p.tokens.length : p.samples.length));
    if (lengths.some((n) => n !== lengths[0])) {
      throw new ArgumentError('ERR_INVALID_ARGUMENT', `clips of a batch must have equal lengths after formatting; got ${lengths.join(', ')}`);
    }
    return prepared;
  }

  async #run(
    inputs: JukeboxInput[],
    options: JukeboxExtractOptions,
    onChunk: (chunk: JukeboxChunk) => void,
    autoConsume: boolean,
    onControl?: (control: RawControl) => void,
  ): Promise<RawJukeboxResult> {
    this.#live();
    const { signal, onProgress } = options;
    throwIfAborted(signal, 'extraction');
    const pooling = options.pooling ?? 'mean';
    const windows = options.windows ?? 'first';
    if (!['mean', 'segments', 'none'].includes(pooling)) throw new ArgumentError('ERR_INVALID_ARGUMENT', `pooling must be mean, segments or none; got '${String(pooling)}'`);
    if (windows !== 'first' && windows !== 'all') throw new ArgumentError('ERR_INVALID_ARGUMENT', `windows must be 'first' or 'all'; got '${String(windows)}'`);
    const layers = this.#layers(options.layers);
    for (const l of layers) {
      if (!Number.isInteger(l) || l < 1 || l > this.#info.depth) {
        throw new ArgumentError('ERR_INVALID_ARGUMENT', `layer ${l} is out of range: this checkpoint has layers 1..${this.#info.depth} (1-based)`);
      }
    }
    const raw = await this.#prepare(inputs, options);
    throwIfAborted(signal, 'extraction');
    // Disposal while the audio loaded counts: the handle is taken only now.
    const live = this.#live();
    const control = binding().control();
    onControl?.(control);
    const cancel = () => binding().cancel(control);
    signal?.addEventListener('abort', cancel, { once: true });
    const width = this.#info.width;
    const onEvent = (event: RawJukeboxEvent) => {
      if (event.type === 'progress') {
        if (onProgress) {
          try {
            onProgress({ windowsDone: event.windowsDone, windowsTotal: event.windowsTotal, blocksDone: event.blocksDone, blocksTotal: event.blocksTotal });
          } catch {
            // A failing progress listener must not break the extraction.
          }
        }
        return;
      }
      onChunk({ clip: event.clip, layer: event.layer, window: event.window, start: event.start, shape: [event.rows, width], data: event.data });
      if (autoConsume) binding().consumed(control);
    };
    try {
      return await native(
        () =>
          binding().jukeboxExtract(
            live,
            raw,
            { layers, pooling, windows, segmentTokens: options.segmentTokens, segmentSeconds: options.segmentSeconds },
            control,
            onEvent,
          ),
        this.#path,
      );
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }
}

function concat(parts: Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0];
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
