// Audio front-end: decode (libsndfile) -> mono -> 44.1 kHz (soxr HQ) -> peak-normalise -> fit -> crop.
// All of it runs in the native core on an addon thread.
import { binding } from '../bindings';
import type { RawPrepareOptions } from '../bindings/raw';
import { ArgumentError, native } from './errors';

export const MODEL_SAMPLE_RATE = 44100;
/** The paper's fitting of a 10 s clip: tile to 62 s, or load at 6.2x the rate. */
export const PAPER_TILE_SECONDS = 62;
export const PAPER_UPSAMPLE_FACTOR = 6.2;

export type Formatting = 'none' | 'tile' | 'upsample' | 'pad';
export const FORMATTINGS: readonly Formatting[] = ['none', 'tile', 'upsample', 'pad'];

/** An audio input: a file path, encoded bytes (any format libsndfile reads), or mono samples with their rate. */
export type AudioInput = string | Uint8Array | { samples: Float32Array; sampleRate: number };

export interface LoadAudioOptions {
  /**
   * How to fit the clip to the model window:
   * - `none`: as decoded;
   * - `tile`: concatenate the clip to itself up to `targetSeconds` (default 62 s) or `factor` x its length,
   *   output[i] = clip[i mod n];
   * - `upsample`: resample to `factor` x 44100 Hz (default 6.2) and treat the result as 44.1 kHz;
   * - `pad`: zeros after the clip up to `targetSeconds` or `factor` x its length.
   */
  formatting?: Formatting;
  targetSeconds?: number;
  factor?: number;
  /** Keep at most this many samples after fitting (e.g. the model window). */
  cropSamples?: number;
  /** Peak-normalise the whole resampled signal (jukemir does; default true). */
  normalise?: boolean;
}

export interface LoadedAudio {
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

export interface DecodedAudio {
  channels: number;
  sampleRate: number;
  frames: number;
  format: string;
  /** frames x channels, interleaved. */
  interleaved: Float32Array;
}

function inputLabel(input: AudioInput): string {
  if (typeof input === 'string') return input;
  if (input instanceof Uint8Array) return `<buffer of ${input.byteLength} bytes>`;
  return `<${input?.samples?.length ?? 0} samples>`;
}

/** Fills in the paper's defaults for tile (62 s) and upsample (6.2x). */
export function resolveFormatting(options: LoadAudioOptions = {}): RawPrepareOptions {
  const formatting = options.formatting ?? 'none';
  if (!FORMATTINGS.includes(formatting)) {
    throw new ArgumentError('ERR_INVALID_ARGUMENT', `formatting must be one of ${FORMATTINGS.join(', ')}; got '${String(formatting)}'`);
  }
  const out: RawPrepareOptions = { formatting };
  if (options.targetSeconds !== undefined) out.targetSeconds = options.targetSeconds;
  if (options.factor !== undefined) out.factor = options.factor;
  if (formatting === 'tile' && out.targetSeconds === undefined && out.factor === undefined) out.targetSeconds = PAPER_TILE_SECONDS;
  if (formatting === 'upsample' && out.factor === undefined) out.factor = PAPER_UPSAMPLE_FACTOR;
  if (formatting === 'pad' && out.targetSeconds === undefined && out.factor === undefined) out.targetSeconds = PAPER_TILE_SECONDS;
  if (options.cropSamples !== undefined) out.cropSamples = options.cropSamples;
  if (options.normalise !== undefined) out.normalise = options.normalise;
  return out;
}

/** Decodes, mixes to mono, resamples to 44.1 kHz, peak-normalises and fits a clip, off the JS thread. */
export function loadAudio(input: AudioInput, options: LoadAudioOptions = {}): Promise<LoadedAudio> {
  return native(async () => binding().loadAudio(input, resolveFormatting(options)), inputLabel(input));
}

/** Decodes an audio file or buffer without any processing (all channels, the source rate). */
export function decodeAudio(input: string | Uint8Array): Promise<DecodedAudio> {
  return native(async () => binding().decodeAudio(input), inputLabel(input));
}

export type AudioContainer = 'wav' | 'flac' | 'ogg' | 'mp3';
export type AudioEncoding = 'float' | 'pcm16' | 'pcm24';

export interface WriteAudioOptions {
  /** frames x channels, interleaved, nominally in [-1, 1] (clipped for integer encodings). */
  interleaved: Float32Array;
  channels: number;
  sampleRate: number;
  /** Default: from the file extension. */
  container?: AudioContainer;
  /** wav/flac sample format; ignored for ogg and mp3 (default pcm16). */
  encoding?: AudioEncoding;
}

/** Encodes audio with libsndfile (WAV, FLAC, Ogg Vorbis, MP3), atomically (temp file + rename). */
export function writeAudio(path: string, options: WriteAudioOptions): Promise<void> {
  const ext = path.toLowerCase().split('.').pop() ?? '';
  const container = options.container ?? (ext === 'oga' ? 'ogg' : (ext as AudioContainer));
  if (!['wav', 'flac', 'ogg', 'mp3'].includes(container)) {
    return Promise.reject(new ArgumentError('ERR_INVALID_ARGUMENT', `${path}: cannot tell the container from the extension; pass container`, { input: path }));
  }
  return native(
    async () =>
      binding().writeAudio(path, {
        interleaved: options.interleaved,
        channels: options.channels,
        sampleRate: options.sampleRate,
        container,
        encoding: options.encoding ?? 'pcm16',
      }),
    path,
  );
}
