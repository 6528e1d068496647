// Audio front-end: decode (libsndfile) -> mono -> 44.1 kHz (soxr HQ) -> peak-normalise -> fit -> crop.
// All of it runs in the native core on an addon thread.
import fs from 'node:fs';
import path from 'node:path';
import { binding } from './addon';
import type { RawDecoded, RawPrepared, RawPrepareOptions } from './addon';
import {
  ArgumentError,
  booleanArg,
  describeValue,
  integerArg,
  invalidArgument,
  native,
  nonEmptyString,
  numberArg,
  oneOf,
  optional,
  optionsObject,
} from './errors';

export const MODEL_SAMPLE_RATE = 44100;
/** The paper's fitting of a 10 s clip: tile to 62 s, or load at 6.2x the rate. */
export const PAPER_TILE_SECONDS = 62;
export const PAPER_UPSAMPLE_FACTOR = 6.2;

export const FORMATTINGS = ['none', 'tile', 'upsample', 'pad'] as const;
export type Formatting = (typeof FORMATTINGS)[number];

/** The extensions calmkit takes for audio files when it scans a folder (what libsndfile reads). */
export const AUDIO_EXTENSIONS: readonly string[] = ['.ogg', '.oga', '.opus', '.wav', '.flac', '.mp3', '.aiff', '.aif'];

/** Every audio file (by AUDIO_EXTENSIONS, any case) under `dir`, recursively, in path order. */
export function listAudioFiles(dir: string): string[] {
  nonEmptyString('dir', dir);
  const files: string[] = [];
  const walk = (d: string) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) walk(p);
      else if (AUDIO_EXTENSIONS.includes(path.extname(ent.name).toLowerCase())) files.push(p);
    }
  };
  walk(dir);
  return files.sort();
}

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

/** A clip through the front-end: mono samples at 44100 Hz and what the source was (fields in bindings/raw.ts). */
export type LoadedAudio = RawPrepared;

/** An audio file or buffer as decoded: all channels, interleaved, at the source rate. */
export type DecodedAudio = RawDecoded;

function inputLabel(input: AudioInput): string {
  if (typeof input === 'string') return input;
  if (input instanceof Uint8Array) return `<buffer of ${input.byteLength} bytes>`;
  return `<${input?.samples?.length ?? 0} samples>`;
}

/** An audio input's type, checked before anything reads it. */
function checkAudioInput(input: unknown, bytesOnly = false): void {
  if (typeof input === 'string') {
    nonEmptyString('input', input);
    return;
  }
  if (input instanceof Uint8Array) return;
  if (!bytesOnly && typeof input === 'object' && input !== null && !Array.isArray(input)) {
    const o = input as Record<string, unknown>;
    if (!(o.samples instanceof Float32Array)) throw invalidArgument(`input.samples must be a Float32Array; got ${describeValue(o.samples)}`, 'input');
    if (typeof o.sampleRate !== 'number') throw invalidArgument(`input.sampleRate must be a number; got ${describeValue(o.sampleRate)}`, 'input');
    return;
  }
  throw invalidArgument(
    `input must be a path, a Uint8Array${bytesOnly ? '' : ' or { samples: Float32Array, sampleRate }'}; got ${describeValue(input)}`,
    'input',
  );
}

/** Fills in the paper's defaults for tile (62 s) and upsample (6.2x). */
export function resolveFormatting(options?: LoadAudioOptions): RawPrepareOptions {
  options = optionsObject('options', options);
  const formatting = oneOf('formatting', FORMATTINGS, options.formatting ?? 'none');
  const out: RawPrepareOptions = { formatting };
  // Types here; the core checks the ranges (audio.h's bounds) and is the authority for the C++ tool.
  optional(options, 'targetSeconds', numberArg);
  optional(options, 'factor', numberArg);
  optional(options, 'cropSamples', (n, v) => integerArg(n, v, { min: 0 }));
  optional(options, 'normalise', booleanArg);
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
export async function loadAudio(input: AudioInput, options?: LoadAudioOptions): Promise<LoadedAudio> {
  checkAudioInput(input);
  const resolved = resolveFormatting(options);
  return native(async () => binding().loadAudio(input, resolved), inputLabel(input));
}

/** Decodes an audio file or buffer without any processing (all channels, the source rate). */
export async function decodeAudio(input: string | Uint8Array): Promise<DecodedAudio> {
  checkAudioInput(input, true);
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
export async function writeAudio(path: string, options: WriteAudioOptions): Promise<void> {
  nonEmptyString('path', path);
  options = optionsObject('options', options);
  if (!(options.interleaved instanceof Float32Array))
    throw invalidArgument(`interleaved must be a Float32Array; got ${describeValue(options.interleaved)}`, 'interleaved');
  integerArg('channels', options.channels, { min: 1, max: 64 });
  integerArg('sampleRate', options.sampleRate, { min: 1, max: 1536000 });
  optional(options, 'encoding', (n, v) => oneOf(n, ['float', 'pcm16', 'pcm24'] as const, v));
  const ext = path.toLowerCase().split('.').pop() ?? '';
  const container = options.container ?? (ext === 'oga' ? 'ogg' : (ext as AudioContainer));
  if (!['wav', 'flac', 'ogg', 'mp3'].includes(container)) {
    throw new ArgumentError('ERR_INVALID_ARGUMENT', `${path}: cannot tell the container from the extension; pass container`, { input: path });
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
