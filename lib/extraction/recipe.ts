// What a set of features IS: the extraction settings, with the paper's defaults filled in, their identity and
// hash, and the spec of each layer's feature store they map to.
import crypto from 'node:crypto';
import { resolveFormatting, type Formatting, FORMATTINGS } from '../audio';
import { ArgumentError } from '../errors';
import { CALM_LAYER, type JukeboxPooling, type JukeboxPrecision } from '../model/jukebox';
import type { StoreDtype, StoreSpec } from '../store/feature-store';

/** Everything that changes the numbers a run writes. */
export interface ExtractionSettings {
  /** `path` and `preset` describe, `id` identifies (only the id enters the hash: paths differ per machine). */
  model: { id: string; path?: string; preset?: string };
  /** fp16/bf16 change the features materially, so they are part of the identity; the device is not. */
  precision: JukeboxPrecision;
  /** 1-based, sorted, distinct. */
  layers: number[];
  pooling: JukeboxPooling;
  segmentTokens?: number;
  segmentSeconds?: number;
  /** With the paper's defaults filled in (tile/pad: targetSeconds 62, upsample: factor 6.2). */
  formatting: Formatting;
  factor?: number;
  targetSeconds?: number;
  windows: 'first' | 'all';
  dtype: StoreDtype;
}

export interface SettingsInput {
  model: { id: string; path?: string; preset?: string };
  precision?: JukeboxPrecision;
  layers?: number[];
  pooling?: JukeboxPooling;
  segmentTokens?: number;
  segmentSeconds?: number;
  formatting?: Formatting;
  factor?: number;
  targetSeconds?: number;
  windows?: 'first' | 'all';
  dtype?: StoreDtype;
  /** Depth of the checkpoint, when known: layers are checked against it and the default is clamped to it. */
  modelLayers?: number;
}

function bad(message: string, input?: string): ArgumentError {
  return new ArgumentError('ERR_INVALID_ARGUMENT', message, input !== undefined ? { input } : undefined);
}

/** Validates settings and fills in defaults, so that equal runs get equal settings (and hashes). */
export function resolveSettings(input: SettingsInput): ExtractionSettings {
  if (!input.model || typeof input.model.id !== 'string' || input.model.id === '') throw bad('settings need model.id');
  const precision = input.precision ?? 'fp32';
  if (!['fp32', 'fp16', 'bf16'].includes(precision)) throw bad(`precision must be fp32, fp16 or bf16; got '${String(precision)}'`, 'precision');
  const layers = [...new Set(input.layers ?? [input.modelLayers !== undefined ? Math.min(CALM_LAYER, input.modelLayers) : CALM_LAYER])].sort((a, b) => a - b);
  if (layers.length === 0) throw bad('at least one layer is needed', 'layers');
  for (const l of layers) {
    if (!Number.isInteger(l) || l < 1) throw bad(`layer ${l} is not a 1-based layer number`, 'layers');
    if (input.modelLayers !== undefined && l > input.modelLayers) throw bad(`layer ${l} is out of range: model ${input.model.path ?? input.model.id} has layers 1..${input.modelLayers}`, 'layers');
  }
  const pooling = input.pooling ?? 'mean';
  if (!['mean', 'segments', 'none'].includes(pooling)) throw bad(`pooling must be mean, segments or none; got '${String(pooling)}'`, 'pooling');
  const out: ExtractionSettings = {
    model: { id: input.model.id },
    precision,
    layers,
    pooling,
    formatting: 'tile',
    windows: input.windows ?? 'first',
    dtype: input.dtype ?? 'float32',
  };
  if (input.model.path !== undefined) out.model.path = input.model.path;
  if (input.model.preset !== undefined) out.model.preset = input.model.preset;
  if (pooling === 'segments') {
    if ((input.segmentTokens === undefined) === (input.segmentSeconds === undefined)) throw bad('segments pooling needs exactly one of segmentTokens and segmentSeconds', 'pooling');
    if (input.segmentTokens !== undefined) {
      if (!Number.isInteger(input.segmentTokens) || input.segmentTokens < 1) throw bad(`segmentTokens must be a positive integer; got ${input.segmentTokens}`, 'segmentTokens');
      out.segmentTokens = input.segmentTokens;
    } else {
      if (!(input.segmentSeconds! > 0)) throw bad(`segmentSeconds must be positive; got ${input.segmentSeconds}`, 'segmentSeconds');
      out.segmentSeconds = input.segmentSeconds;
    }
  } else if (input.segmentTokens !== undefined || input.segmentSeconds !== undefined) {
    throw bad(`segmentTokens/segmentSeconds only apply to segments pooling (pooling is ${pooling})`, 'pooling');
  }
  const formatting = input.formatting ?? 'tile';
  if (!FORMATTINGS.includes(formatting)) throw bad(`formatting must be one of ${FORMATTINGS.join(', ')}; got '${String(formatting)}'`, 'formatting');
  const fitted = resolveFormatting({ formatting, factor: input.factor, targetSeconds: input.targetSeconds });
  out.formatting = formatting;
  if (fitted.factor !== undefined) out.factor = fitted.factor;
  if (fitted.targetSeconds !== undefined) out.targetSeconds = fitted.targetSeconds;
  if (out.windows !== 'first' && out.windows !== 'all') throw bad(`windows must be first or all; got '${String(out.windows)}'`, 'windows');
  if (out.dtype !== 'float32' && out.dtype !== 'float16') throw bad(`dtype must be float32 or float16; got '${String(out.dtype)}'`, 'dtype');
  return out;
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** What the hash covers: the settings minus descriptive fields (model path and preset). */
export function settingsIdentity(s: ExtractionSettings): Record<string, unknown> {
  return { ...s, model: { id: s.model.id } };
}

/** 24 hex digits (96 bits) of sha256 over the canonical identity: stable across machines and key order. */
export function settingsHash(s: ExtractionSettings): string {
  return crypto.createHash('sha256').update(`calmkit-settings-v1:${canonical(settingsIdentity(s))}`).digest('hex').slice(0, 24);
}

/** The spec of one layer's store. It never depends on the other layers a run asked for. */
export function layerStoreSpec(s: ExtractionSettings, layer: number): StoreSpec {
  const one: ExtractionSettings = { ...s, layers: [layer] };
  const extra: Record<string, string | number> = { precision: s.precision, windows: s.windows, settings: settingsHash(one) };
  if (s.factor !== undefined) extra.factor = s.factor;
  if (s.targetSeconds !== undefined) extra.targetSeconds = s.targetSeconds;
  if (s.segmentTokens !== undefined) extra.segmentTokens = s.segmentTokens;
  if (s.segmentSeconds !== undefined) extra.segmentSeconds = s.segmentSeconds;
  return { model: { id: s.model.id }, layers: [layer], pooling: s.pooling, formatting: s.formatting, dtype: s.dtype, extra };
}
