// The extraction options in one place: their allowed values as runtime lists (the types derive from them), the
// default-layers rule, and the one TS checker that both Jukebox.extract and the extraction settings use. The
// native core checks again (validateLayers, segmentTokensFor): it is the final authority, and the C++ tool
// relies on it.
import { invalidArgument, oneOf } from '../errors';

export const PRECISIONS = ['fp32', 'fp16', 'bf16'] as const;
/**
 * The arithmetic of the prior's blocks, part of a feature store's identity. `fp32` is faithful (TF32 off, fp16
 * weights upcast exactly; the default). `bf16` is the fast path on GPUs and on CPUs with native bf16 (AVX512_BF16
 * or AMX): pooled features within cosine 0.9999 of fp32. `fp16` is for GPUs.
 */
export type JukeboxPrecision = (typeof PRECISIONS)[number];

/** The precision a model loads at when none is named: the faithful one (the library's and the CLI's default). */
export const DEFAULT_PRECISION: JukeboxPrecision = 'fp32';

/** What a model can be loaded at: a precision, or `auto` (resolved at load; see PrecisionChoice). */
export const PRECISION_CHOICES = [...PRECISIONS, 'auto'] as const;
/**
 * `auto` resolves when the model loads to the fastest precision the device runs natively: `bf16` on a CPU
 * whose bf16 products run on bf16 instructions (doctor().cpuBf16.native) and on CUDA devices of compute
 * capability 8.0 or later, `fp32` elsewhere. The loaded model's `info.precision` is the concrete one, and that is
 * what recipes and stores record.
 */
export type PrecisionChoice = (typeof PRECISION_CHOICES)[number];

export const POOLINGS = ['mean', 'segments', 'none'] as const;
/**
 * `mean` over all positions of a window (jukemir); `segments`: means over consecutive runs of `segmentTokens`
 * tokens or `segmentSeconds` seconds ([S, width]); `none`: raw [T, width] activations.
 */
export type JukeboxPooling = (typeof POOLINGS)[number];

export const WINDOWS = ['first', 'all'] as const;
/** `first`: the first window only (jukemir); `all`: every window of n_ctx tokens (the last may be shorter). */
export type JukeboxWindows = (typeof WINDOWS)[number];

/** The CALM layer of the 5B model (the middle of 72). */
export const CALM_LAYER = 36;

/** The layers extracted when none are asked for: [36], or the deepest layer of a shallower checkpoint. */
export function defaultLayers(depth?: number): number[] {
  return [depth === undefined ? CALM_LAYER : Math.min(CALM_LAYER, depth)];
}

export interface ExtractOptionsInput {
  /** 1-based; duplicates and order do not matter. Default: defaultLayers(depth). */
  layers?: number[];
  pooling?: JukeboxPooling;
  segmentTokens?: number;
  segmentSeconds?: number;
  windows?: JukeboxWindows;
}

export interface ResolvedExtractOptions {
  /** 1-based, sorted, distinct. */
  layers: number[];
  pooling: JukeboxPooling;
  /** Exactly one of the two with segments pooling; neither otherwise. */
  segmentTokens?: number;
  segmentSeconds?: number;
  windows: JukeboxWindows;
}

/**
 * Checks extraction options and fills in the defaults. `model`, when known, bounds the layers (`name` says whose
 * depth it is in the message). Bad values are ArgumentErrors naming the option.
 */
export function resolveExtractOptions(o: ExtractOptionsInput, model?: { depth: number; name: string }): ResolvedExtractOptions {
  if (o.layers !== undefined && !Array.isArray(o.layers)) throw invalidArgument('layers must be an array of 1-based layer numbers', 'layers');
  const layers = [...new Set(o.layers ?? defaultLayers(model?.depth))].sort((a, b) => a - b);
  if (layers.length === 0) throw invalidArgument('at least one layer is needed', 'layers');
  for (const l of layers) {
    if (!Number.isInteger(l) || l < 1) throw invalidArgument(`layer ${l} is not a 1-based layer number`, 'layers');
    if (model && l > model.depth) throw invalidArgument(`layer ${l} is out of range: ${model.name} has layers 1..${model.depth} (1-based)`, 'layers');
  }
  const pooling = oneOf('pooling', POOLINGS, o.pooling ?? 'mean');
  const windows = oneOf('windows', WINDOWS, o.windows ?? 'first');
  const out: ResolvedExtractOptions = { layers, pooling, windows };
  if (pooling === 'segments') {
    if ((o.segmentTokens === undefined) === (o.segmentSeconds === undefined)) {
      throw invalidArgument('segments pooling needs a segment length: exactly one of segmentTokens and segmentSeconds', 'pooling');
    }
    if (o.segmentTokens !== undefined) {
      if (!Number.isInteger(o.segmentTokens) || o.segmentTokens < 1)
        throw invalidArgument(`segmentTokens must be a positive integer; got ${o.segmentTokens}`, 'segmentTokens');
      out.segmentTokens = o.segmentTokens;
    } else {
      if (!(o.segmentSeconds! > 0) || !Number.isFinite(o.segmentSeconds))
        throw invalidArgument(`segmentSeconds must be a positive number; got ${o.segmentSeconds}`, 'segmentSeconds');
      out.segmentSeconds = o.segmentSeconds;
    }
  } else if (o.segmentTokens !== undefined || o.segmentSeconds !== undefined) {
    throw invalidArgument(`segmentTokens/segmentSeconds only apply to segments pooling (pooling is ${pooling})`, 'pooling');
  }
  return out;
}
