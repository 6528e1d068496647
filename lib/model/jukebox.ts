// The Jukebox extractor: a calmkit checkpoint loaded on a device, turning audio into per-layer features. The
// forward pass runs in the native core on an addon thread; this file handles inputs, options, cancellation,
// progress and streaming.
import { binding } from '../addon';
import type { RawControl, RawJukeboxEvent, RawJukeboxHandle, RawJukeboxInfo, RawJukeboxInput, RawJukeboxResult } from '../addon';
import { loadAudio, type AudioInput, type LoadAudioOptions } from '../audio';
import {
  abortError,
  ArgumentError,
  booleanArg,
  describeValue,
  DisposedError,
  functionArg,
  integerArg,
  invalidArgument,
  native,
  nativeSync,
  nonEmptyString,
  oneOf,
  optional,
  optionsObject,
  signalArg,
} from '../errors';
import { DEFAULT_DEVICE, type Device } from '../runtime';
import { modelId } from './checkpoint-id';
import { ChunkChannel } from './chunk-channel';
import {
  DEFAULT_PRECISION,
  PRECISION_CHOICES,
  resolveExtractOptions,
  type JukeboxPooling,
  type JukeboxPrecision,
  type JukeboxWindows,
  type PrecisionChoice,
  type ResolvedExtractOptions,
} from './options';

export type { JukeboxPooling, JukeboxPrecision, JukeboxWindows } from './options';
export { CALM_LAYER } from './options';

/** Where the model runs: `cpu`, `cuda`, `cuda:N` or `auto` (runtime/device.ts). */
export type JukeboxDevice = Device;

/** The built-in shapes of random-weight checkpoints: `tiny` (tests), `demo` (tiny with the 5B's 8192-token context), `small` (CPU timing), `5b` (the real shapes). */
export const JUKEBOX_PRESETS = ['tiny', 'demo', 'small', '5b'] as const;
export type JukeboxPreset = (typeof JUKEBOX_PRESETS)[number];

export interface JukeboxLoadOptions {
  /** Default DEFAULT_DEVICE (`auto`: cuda:0 when this build and machine have a GPU, else the CPU). */
  device?: JukeboxDevice;
  /** Default DEFAULT_PRECISION, `fp32` (see JukeboxPrecision); `auto` picks the device's fastest native precision (PrecisionChoice). */
  precision?: PrecisionChoice;
  /**
   * Check every record's CRC-32 and every weight for NaN/Inf while loading (default true). `false` skips both for
   * a file you trust (saves their cost, docs/contracts.md "What a load proves"): record sizes, shapes, dtypes and
   * hyperparameter bounds are always checked.
   */
  verifyWeights?: boolean;
  signal?: AbortSignal;
}

/** Options of Jukebox.inspect. */
export interface JukeboxInspectOptions {
  /** As in JukeboxLoadOptions (default true). */
  verifyWeights?: boolean;
}

/** Options of Jukebox.writeRandomCheckpoint. */
export interface RandomCheckpointOptions {
  preset: JukeboxPreset;
  /** Transformer blocks to keep, 1..4096 (default: the preset's). */
  layers?: number;
  /** Non-negative integer (default 0). */
  seed?: number;
  out: string;
}

/** Model hyperparameters and storage facts, plus where it runs. */
export type JukeboxInfo = Omit<RawJukeboxInfo, 'device' | 'precision'> & { device: string; precision: JukeboxPrecision };
/** What `calmkit model info` shows: a checkpoint's description without loading it for a forward pass. */
export type JukeboxCheckpointInfo = Omit<RawJukeboxInfo, 'device' | 'precision'>;

/** An input clip: anything loadAudio takes, or top-level tokens (skips the VQ-VAE). */
export type JukeboxInput = AudioInput | { tokens: Int32Array };

export interface JukeboxProgress {
  /** Clips of this call finished, of `clipsTotal`. */
  clipsDone: number;
  clipsTotal: number;
  /** Windows finished over all clips of this call, of `windowsTotal`. */
  windowsDone: number;
  windowsTotal: number;
  /** Transformer blocks done in the current window, of `blocksTotal` (the deepest requested layer). */
  blocksDone: number;
  blocksTotal: number;
}

export interface JukeboxExtractOptions extends Pick<LoadAudioOptions, 'formatting' | 'targetSeconds' | 'factor' | 'normalise'> {
  /** 1-based layers (default: 36, or the deepest layer of a shallower checkpoint). One pass serves them all. */
  layers?: number[];
  /** Default `mean` (see JukeboxPooling). */
  pooling?: JukeboxPooling;
  segmentTokens?: number;
  segmentSeconds?: number;
  /** Default `first` (see JukeboxWindows). */
  windows?: JukeboxWindows;
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

/** @internal A clip the front-end has already decoded, fitted and cropped for this model (see extractPrepared). */
export interface PreparedClip {
  samples: Float32Array;
  label: string;
}

function throwIfAborted(signal: AbortSignal | undefined, what: string, input?: string): void {
  if (signal?.aborted) throw abortError(`${what} was aborted`, signal, input);
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

/** Each input is a path, encoded bytes, `{ samples, sampleRate }` or `{ tokens }`, before anything reads it. */
function checkInput(input: unknown, i: number, many: boolean): void {
  const name = many ? `inputs[${i}]` : 'input';
  if (typeof input === 'string') {
    nonEmptyString(name, input);
    return;
  }
  if (input instanceof Uint8Array) return;
  if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    const o = input as Record<string, unknown>;
    if ('tokens' in o) {
      if (!(o.tokens instanceof Int32Array)) throw invalidArgument(`${name}.tokens must be an Int32Array; got ${describeValue(o.tokens)}`, name);
      return;
    }
    if ('samples' in o) {
      if (!(o.samples instanceof Float32Array)) throw invalidArgument(`${name}.samples must be a Float32Array; got ${describeValue(o.samples)}`, name);
      if (typeof o.sampleRate !== 'number') throw invalidArgument(`${name}.sampleRate must be a number; got ${describeValue(o.sampleRate)}`, name);
      return;
    }
  }
  throw invalidArgument(
    `${name} must be a path, a Uint8Array, { samples: Float32Array, sampleRate } or { tokens: Int32Array }; got ${describeValue(input)}`,
    name,
  );
}

/**
 * Tokens per segment of segments pooling, by the core's rule (the one extraction applies): `segmentTokens`, or
 * `segmentSeconds` at the model's token rate (sampleRate / hop), rounded, at least 1.
 */
export function segmentTokensOf(o: { segmentTokens?: number; segmentSeconds?: number }, info: Pick<JukeboxInfo, 'hop' | 'sampleRate'>): number {
  return nativeSync(() =>
    binding().jukeboxSegmentTokens({ segmentTokens: o.segmentTokens, segmentSeconds: o.segmentSeconds, hop: info.hop, sampleRate: info.sampleRate }),
  );
}

export class Jukebox {
  #handle: RawJukeboxHandle | undefined;
  readonly #path: string;
  #info: JukeboxInfo;
  #id: string | undefined;

  private constructor(handle: RawJukeboxHandle, path: string) {
    this.#handle = handle;
    this.#path = path;
    this.#info = nativeSync(() => binding().jukeboxInfo(handle), path) as JukeboxInfo;
  }

  /** Loads and validates a calmkit Jukebox checkpoint (docs/contracts.md) onto a device. */
  static async load(path: string, options?: JukeboxLoadOptions): Promise<Jukebox> {
    nonEmptyString('path', path);
    const o = optionsObject('options', options);
    const precision = oneOf('precision', PRECISION_CHOICES, o.precision ?? DEFAULT_PRECISION);
    const device = optional(o, 'device', nonEmptyString) ?? DEFAULT_DEVICE;
    const verifyWeights = optional(o, 'verifyWeights', booleanArg) ?? true;
    const signal = signalArg('signal', o.signal);
    throwIfAborted(signal, `loading ${path}`, path);
    const handle = await native(() => binding().jukeboxLoad(path, { device, precision, verifyWeights }), path);
    // Loading cannot be interrupted half-way; an abort during it releases the loaded model at once.
    if (signal?.aborted) {
      binding().jukeboxDispose(handle);
      throw abortError(`loading ${path} was aborted`, signal, path);
    }
    return new Jukebox(handle, path);
  }

  /** Validates a checkpoint and describes it (hyperparameters, dtypes, bytes) without preparing a forward pass. */
  static async inspect(path: string, options?: JukeboxInspectOptions): Promise<JukeboxCheckpointInfo> {
    nonEmptyString('path', path);
    const verifyWeights = optional(optionsObject('options', options), 'verifyWeights', booleanArg) ?? true;
    return native(() => binding().jukeboxInspect(path, { verifyWeights }), path);
  }

  /** Writes a random-weight checkpoint (`tiny`, `small` or the real `5b` shapes) with jukebox's init scales. */
  static async writeRandomCheckpoint(options: RandomCheckpointOptions): Promise<void> {
    const o = optionsObject('options', options);
    const checked = {
      preset: oneOf('preset', JUKEBOX_PRESETS, o.preset),
      layers: optional(o, 'layers', (n, v) => integerArg(n, v, { min: 1, max: 4096 })),
      seed: optional(o, 'seed', (n, v) => integerArg(n, v, { min: 0 })),
      out: nonEmptyString('out', o.out),
    };
    return native(() => binding().jukeboxInit(checked), checked.out);
  }

  /** @deprecated Use writeRandomCheckpoint, which says what it does. */
  static init(options: RandomCheckpointOptions): Promise<void> {
    return Jukebox.writeRandomCheckpoint(options);
  }

  get info(): JukeboxInfo {
    this.#live();
    return this.#info;
  }

  /** The checkpoint file this model was loaded from. */
  get path(): string {
    return this.#path;
  }

  /** The checkpoint's identity (modelId of its file, read on first use), as feature stores and probe sets record it. */
  get id(): string {
    this.#live();
    this.#id ??= modelId(this.#path);
    return this.#id;
  }

  get disposed(): boolean {
    return this.#handle === undefined;
  }

  /**
   * Features of one clip, or of each clip of a batch. A batch is one native call; inside it every clip runs on
   * its own, so its features are the same bytes whatever else the batch holds (clips may differ in length).
   */
  extract(input: JukeboxInput, options?: JukeboxExtractOptions): Promise<JukeboxFeatures>;
  extract(inputs: JukeboxInput[], options?: JukeboxExtractOptions): Promise<JukeboxFeatures[]>;
  async extract(input: JukeboxInput | JukeboxInput[], options?: JukeboxExtractOptions): Promise<JukeboxFeatures | JukeboxFeatures[]> {
    options = optionsObject('options', options);
    const many = Array.isArray(input);
    const inputs = many ? input : [input];
    inputs.forEach((x, i) => {
      checkInput(x, i, many);
    });
    const features = await this.#collect(inputs, options, (resolved) => this.#prepare(inputs, options, resolved));
    return many ? features : features[0]!;
  }

  /**
   * @internal extract() for clips that went through the front-end already (decoded, fitted and cropped for this
   * model, as the extraction pipeline's decodeForModel does): their samples go to the model as they are.
   */
  async extractPrepared(
    clips: readonly PreparedClip[],
    options: Omit<JukeboxExtractOptions, 'formatting' | 'targetSeconds' | 'factor' | 'normalise'> = {},
  ): Promise<JukeboxFeatures[]> {
    return this.#collect(clips, options, async () => {
      if (clips.length === 0) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'no inputs given');
      return clips.map((c) => ({ samples: c.samples, label: c.label }));
    });
  }

  async #collect(
    inputs: readonly unknown[],
    options: JukeboxExtractOptions,
    prepare: (resolved: ResolvedExtractOptions) => Promise<RawJukeboxInput[]>,
  ): Promise<JukeboxFeatures[]> {
    const resolved = this.#resolve(options);
    // Raw activations arrive as chunks; collect them per clip and layer.
    const collected: JukeboxChunk[][] = inputs.map(() => []);
    const result = await this.#run(prepare, resolved, options, (chunk) => collected[chunk.clip]!.push(chunk), true);
    return result.clips.map((clip, i): JukeboxFeatures => {
      const layers: Record<number, LayerFeatures> = {};
      if (resolved.pooling === 'none') {
        for (const layer of resolved.layers) {
          const parts = collected[i]!.filter((c) => c.layer === layer);
          layers[layer] = { layer, shape: [parts.reduce((n, c) => n + c.shape[0], 0), this.#info.width], data: concat(parts.map((c) => c.data)) };
        }
      } else {
        for (const l of clip.layers) layers[l.layer] = { layer: l.layer, shape: l.shape, data: l.data };
      }
      const out: JukeboxFeatures = { layers, tokens: clip.tokens, windows: clip.windows };
      if (resolved.pooling === 'segments') out.segmentTokens = result.segmentTokens;
      return out;
    });
  }

  /**
   * Raw activations (pooling `none`, the default here) as they are computed, in bounded memory: the forward
   * pass waits while the consumer holds more than a couple of chunks. Pooled modes yield one chunk per clip and
   * layer at the end. Breaking out of the loop cancels the pass; an iterator that is neither drained nor
   * returned keeps the pass waiting (and later calls queued behind it) until its `signal` aborts.
   */
  stream(input: JukeboxInput | JukeboxInput[], options?: JukeboxExtractOptions): AsyncIterable<JukeboxChunk> {
    const opts = optionsObject('options', options);
    const inputs = Array.isArray(input) ? input : [input];
    inputs.forEach((x, i) => {
      checkInput(x, i, Array.isArray(input));
    });
    const width = this.#info.width;
    return {
      [Symbol.asyncIterator]: (): AsyncIterator<JukeboxChunk> => {
        const channel = new ChunkChannel<JukeboxChunk>();
        const run = async () => {
          const resolved = this.#resolve({ ...opts, pooling: opts.pooling ?? 'none' });
          return this.#run(
            (r) => this.#prepare(inputs, opts, r),
            resolved,
            opts,
            (chunk) => channel.push(chunk),
            false,
            (c) => channel.attach(c),
          );
        };
        const finished = run().then(
          (result) => {
            // Pooled modes have nothing to stream while running: their features come with the result.
            result.clips.forEach((clip, i) => {
              clip.layers.forEach((l) => {
                channel.push({ clip: i, layer: l.layer, window: 0, start: 0, shape: [l.shape.length === 1 ? 1 : l.shape[0]!, width], data: l.data });
              });
            });
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

  /** The one TS check of the extraction options (model/options.ts), against this checkpoint's depth. */
  #resolve(options: JukeboxExtractOptions): ResolvedExtractOptions {
    this.#live();
    return resolveExtractOptions(options, { depth: this.#info.depth, name: 'this checkpoint' });
  }

  /** Inputs through the front-end: decoded, fitted and cropped to what the requested windows need. */
  async #prepare(inputs: JukeboxInput[], options: JukeboxExtractOptions, resolved: ResolvedExtractOptions): Promise<RawJukeboxInput[]> {
    if (inputs.length === 0) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'no inputs given');
    // The first window needs the window plus the encoder's margin (jukemir encodes 25 s to use 23.78 s).
    const cropSamples = resolved.windows === 'first' ? this.#info.firstWindowSamples : undefined;
    return Promise.all(
      inputs.map(async (input, i): Promise<RawJukeboxInput> => {
        const label = inputLabel(input, i);
        if (isTokens(input)) {
          if (!(input.tokens instanceof Int32Array))
            throw new ArgumentError('ERR_INVALID_ARGUMENT', `${label}: tokens must be an Int32Array`, { input: label });
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
  }

  async #run(
    prepare: (resolved: ResolvedExtractOptions) => Promise<RawJukeboxInput[]>,
    resolved: ResolvedExtractOptions,
    options: Pick<JukeboxExtractOptions, 'signal' | 'onProgress'>,
    onChunk: (chunk: JukeboxChunk) => void,
    autoConsume: boolean,
    onControl?: (control: RawControl) => void,
  ): Promise<RawJukeboxResult> {
    this.#live();
    const signal = signalArg('signal', options.signal);
    const onProgress = functionArg<(p: JukeboxProgress) => void>('onProgress', options.onProgress);
    throwIfAborted(signal, 'extraction');
    const raw = await prepare(resolved);
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
            onProgress({
              clipsDone: event.clipsDone,
              clipsTotal: event.clipsTotal,
              windowsDone: event.windowsDone,
              windowsTotal: event.windowsTotal,
              blocksDone: event.blocksDone,
              blocksTotal: event.blocksTotal,
            });
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
            {
              layers: resolved.layers,
              pooling: resolved.pooling,
              windows: resolved.windows,
              segmentTokens: resolved.segmentTokens,
              segmentSeconds: resolved.segmentSeconds,
            },
            control,
            onEvent,
          ),
        this.#path,
        signal,
      );
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }
}

function concat(parts: Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
