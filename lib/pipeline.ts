// The shared extraction pipeline: what a run's features ARE (settings identity and its hash), which clips a
// run covers (dataset root or files, sharded), and extractToStore, which `calmkit extract` and the queue
// workers both use to turn clips into feature-store entries.
//
// Layout on disk: one feature store per layer, `<out>/layer-<L>/` (lib/store.ts), because the study reads
// one layer as one [N, width] matrix and a store entry has one shape. A clip counts as done only when every
// requested layer's store holds it; a crash between two layers' flushes just redoes that clip for the layers
// that lack it (put() skips the others), so no store ever holds a partial or duplicated entry.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { loadAudio, resolveFormatting, type Formatting, FORMATTINGS } from './audio';
import { AbortError, ArgumentError, CalmkitError, DataError, ModelError } from './errors';
import { CALM_LAYER, type Jukebox, type JukeboxPooling, type JukeboxPrecision } from './jukebox';
import { OpenMIC } from './openmic';
import { FeatureStore, type StoreDtype, type StoreSpec, type StoreWriter } from './store';

export const MODEL_ID_PREFIX = 'fl1m-sha256:';

/**
 * Identity of a checkpoint file without reading all of a 5 GB archive: sha256 over (size, first MiB, last MiB).
 * A calmkit checkpoint is a zip (torch.jit.save); its central directory sits in the last MiB and holds the
 * CRC-32 and size of every member, so a change to any tensor changes the id even when it sits mid-file.
 */
export function modelId(file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw new ModelError('ERR_MODEL_FILE', `cannot open model ${file}: ${(err as Error).message}`, { input: file, cause: err });
  }
  try {
    const size = fs.fstatSync(fd).size;
    const MiB = 1 << 20;
    const hash = crypto.createHash('sha256').update(`calmkit-model-id:${size}:`);
    const read = (pos: number, len: number) => {
      const buf = Buffer.alloc(len);
      let got = 0;
      while (got < len) {
        const n = fs.readSync(fd, buf, got, len - got, pos + got);
        if (n === 0) break;
        got += n;
      }
      return buf.subarray(0, got);
    };
    hash.update(read(0, Math.min(MiB, size)));
    if (size > MiB) hash.update(read(Math.max(MiB, size - MiB), Math.min(MiB, size - MiB)));
    return MODEL_ID_PREFIX + hash.digest('hex');
  } finally {
    fs.closeSync(fd);
  }
}

export function isModelId(s: string): boolean {
  return new RegExp(`^${MODEL_ID_PREFIX}[0-9a-f]{64}$`).test(s);
}

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

export function layerDir(root: string, layer: number): string {
  return path.join(root, `layer-${layer}`);
}

// --- work lists -----------------------------------------------------------------------------------------

export interface WorkItem {
  key: string;
  /** The audio file. */
  input: string;
}

const AUDIO_EXTENSIONS = ['.ogg', '.wav', '.flac', '.mp3', '.aiff', '.aif', '.opus', '.oga'];

/**
 * Every clip of a dataset root that has audio, in key order. An OpenMIC release layout (class-map.json) is
 * read through OpenMIC.open (its errata applied: the corrupted FMA tracks are left out); any other folder is
 * scanned for audio files, keyed by file name without extension.
 */
export function datasetItems(root: string): WorkItem[] {
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) throw new DataError('ERR_DATA_NOT_FOUND', `dataset root ${root} is not a directory`, { input: root });
  if (fs.existsSync(path.join(root, 'class-map.json'))) return openmicItems(OpenMIC.open(root, { audio: 'skip', npz: 'ignore' }));
  const files: string[] = [];
  const walk = (d: string) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) walk(p);
      else if (AUDIO_EXTENSIONS.includes(path.extname(ent.name).toLowerCase())) files.push(p);
    }
  };
  walk(root);
  if (files.length === 0) throw new DataError('ERR_DATA_NOT_FOUND', `no audio files under ${root} (looked for ${AUDIO_EXTENSIONS.join(' ')}) and no class-map.json`, { input: root });
  return fileItems(files);
}

/** Files as work items, key = base name without extension; two files with one key are a DataError. */
/** Every clip of an opened OpenMIC dataset, in key order. */
export function openmicItems(ds: OpenMIC): WorkItem[] {
  // Absolute paths: queue jobs carry them to workers whose working directory is anywhere.
  return ds.keys.map((key) => ({ key, input: path.resolve(ds.audioPath(key)) }));
}

export function fileItems(files: readonly string[]): WorkItem[] {
  const byKey = new Map<string, string>();
  for (const f of files) {
    const base = path.basename(f);
    const ext = path.extname(base);
    const key = ext ? base.slice(0, -ext.length) : base;
    if (key === '') throw new DataError('ERR_DATA_DUPLICATE_KEY', `cannot derive a sample key from ${f}`, { input: f });
    const prev = byKey.get(key);
    if (prev !== undefined) throw new DataError('ERR_DATA_DUPLICATE_KEY', `${prev} and ${f} both have the sample key '${key}' (keys are file names without extension); rename one`, { input: f });
    byKey.set(key, path.resolve(f));
  }
  return [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, input]) => ({ key, input }));
}

export interface Shard {
  index: number;
  count: number;
}

/** `i/N` with 0 <= i < N. */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index < count)) throw bad(`--shard must be i/N with 0 <= i < N; got '${text}'`, '--shard');
  return { index, count };
}

/** The items whose position in key order is i mod N: shards are disjoint, cover everything, and balance. */
export function selectShard<T extends { key: string }>(items: readonly T[], shard: Shard): T[] {
  const sorted = items.slice().sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return sorted.filter((_, i) => i % shard.count === shard.index);
}

// --- the stores of a run --------------------------------------------------------------------------------

/** The per-layer stores of one settings identity under one root. */
export class LayerStores {
  readonly root: string;
  readonly settings: ExtractionSettings;
  readonly stores: ReadonlyMap<number, FeatureStore>;

  private constructor(root: string, settings: ExtractionSettings, stores: Map<number, FeatureStore>) {
    this.root = root;
    this.settings = settings;
    this.stores = stores;
  }

  /** Opens (creating with `create`) `<root>/layer-<L>/` for each layer; a store with other settings is a DataError. */
  static open(root: string, settings: ExtractionSettings, options: { create?: boolean } = {}): LayerStores {
    const stores = new Map<number, FeatureStore>();
    for (const layer of settings.layers) {
      const spec = layerStoreSpec(settings, layer);
      stores.set(layer, FeatureStore.open(layerDir(root, layer), options.create ? { create: spec } : { expect: spec }));
    }
    return new LayerStores(root, settings, stores);
  }

  /** In every layer's store (as of the last refresh). */
  has(key: string): boolean {
    for (const s of this.stores.values()) if (!s.has(key)) return false;
    return true;
  }

  refresh(): void {
    for (const s of this.stores.values()) s.refresh();
  }

  writers(options: { id?: string; shardSize?: number } = {}): LayerWriters {
    return new LayerWriters(this, options);
  }

  updateManifests(): void {
    for (const s of this.stores.values()) s.updateManifest();
  }
}

/** One writer per layer store, all with the same writer id; flushing publishes one shard per layer. */
export class LayerWriters {
  readonly id: string;
  private readonly writers: Map<number, StoreWriter>;
  private buffered = 0;

  constructor(stores: LayerStores, options: { id?: string; shardSize?: number }) {
    this.writers = new Map();
    let id: string | undefined = options.id;
    for (const [layer, store] of stores.stores) {
      // Automatic flushes stay off (huge shardSize): the caller decides when a shard is published, so that
      // "flushed" means "durable in every layer".
      const w = store.writer({ id, shardSize: Number.MAX_SAFE_INTEGER });
      id = w.id;
      this.writers.set(layer, w);
    }
    this.id = id!;
  }

  /** Entries buffered since the last flush. */
  get pending(): number {
    return this.buffered;
  }

  put(key: string, layers: Record<number, { data: Float32Array; shape: number[] }>): void {
    for (const [layer, w] of this.writers) {
      const f = layers[layer];
      if (!f) throw new CalmkitError('ERR_INTERNAL', `features of '${key}' lack layer ${layer}`, { input: key });
      w.put(key, f.data, f.shape);
    }
    this.buffered++;
  }

  fail(key: string, info: { input?: string; code: string; message: string }): void {
    for (const w of this.writers.values()) w.fail(key, info);
    this.buffered++;
  }

  /** Publishes what is buffered, durably (fsynced shard + sidecar, no-clobber links) in every layer. */
  flush(options: { manifest?: boolean } = {}): void {
    for (const w of this.writers.values()) w.flush({ manifest: options.manifest ?? false });
    this.buffered = 0;
  }

  close(options: { manifest?: boolean } = {}): void {
    for (const w of this.writers.values()) w.close({ manifest: options.manifest ?? true });
    this.buffered = 0;
  }
}

// --- extraction -----------------------------------------------------------------------------------------

export interface ClipFailure {
  key: string;
  input: string;
  code: string;
  message: string;
}

export interface PipelineProgress {
  /** Clips to extract in this run (after skipping those already stored). */
  total: number;
  done: number;
  failed: number;
  skipped: number;
  key?: string;
}

export interface ExtractToStoreOptions {
  model: Jukebox;
  items: readonly WorkItem[];
  stores: LayerStores;
  settings: ExtractionSettings;
  /** Clips per forward pass (clips of a batch must have equal lengths after fitting; others run apart). */
  batchSize?: number;
  /** Clips between durable flushes (default 64); also flushed every `flushSeconds` (default 30). */
  flushEvery?: number;
  flushSeconds?: number;
  writerId?: string;
  signal?: AbortSignal;
  onProgress?: (p: PipelineProgress) => void;
}

export interface ExtractSummary {
  total: number;
  done: number;
  skipped: number;
  failed: ClipFailure[];
  aborted: boolean;
  seconds: number;
  writer: string;
}

export interface Decoded {
  item: WorkItem;
  samples?: Float32Array;
  error?: CalmkitError;
}

/** Samples the model needs for a clip: decoded, fitted and cropped exactly as Jukebox.extract would. */
export async function decodeForModel(item: WorkItem, settings: ExtractionSettings, model: Jukebox): Promise<Decoded> {
  const info = model.info;
  const cropSamples = settings.windows === 'first' ? info.firstWindowSamples : undefined;
  try {
    const audio = await loadAudio(item.input, { formatting: settings.formatting, factor: settings.factor, targetSeconds: settings.targetSeconds, cropSamples });
    return { item, samples: audio.samples };
  } catch (err) {
    return { item, error: asCalmkit(err, item.input) };
  }
}

function asCalmkit(err: unknown, input: string): CalmkitError {
  if (err instanceof CalmkitError) return err;
  return new CalmkitError('ERR_INTERNAL', `${input}: ${(err as Error)?.message ?? String(err)}`, { input, cause: err });
}

export type ClipResult = { key: string; layers: Record<number, { data: Float32Array; shape: number[] }> } | { key: string; error: CalmkitError };

/**
 * Runs decoded clips through the model: equal-length clips share a forward pass; when a shared pass fails
 * for a reason other than an abort, each clip is retried alone so one bad clip cannot sink its neighbours.
 */
export async function runModel(model: Jukebox, decoded: readonly Decoded[], settings: ExtractionSettings, signal?: AbortSignal): Promise<ClipResult[]> {
  const results = new Map<string, ClipResult>();
  const groups = new Map<number, Decoded[]>();
  for (const d of decoded) {
    if (d.error || !d.samples) {
      results.set(d.item.key, { key: d.item.key, error: d.error ?? new CalmkitError('ERR_INTERNAL', `${d.item.input}: no samples`) });
      continue;
    }
    const g = groups.get(d.samples.length) ?? [];
    g.push(d);
    groups.set(d.samples.length, g);
  }
  const options = {
    layers: settings.layers,
    pooling: settings.pooling,
    segmentTokens: settings.segmentTokens,
    segmentSeconds: settings.segmentSeconds,
    windows: settings.windows,
    // The samples are already fitted and normalised; a second pass must leave them as they are.
    formatting: 'none' as const,
    normalise: false,
    signal,
  };
  const run = async (group: Decoded[]) => {
    const feats = await model.extract(group.map((d) => ({ samples: d.samples!, sampleRate: 44100 })), options);
    group.forEach((d, i) => {
      const layers: Record<number, { data: Float32Array; shape: number[] }> = {};
      for (const l of settings.layers) layers[l] = { data: feats[i]!.layers[l]!.data, shape: feats[i]!.layers[l]!.shape };
      results.set(d.item.key, { key: d.item.key, layers });
    });
  };
  for (const group of groups.values()) {
    try {
      await run(group);
    } catch (err) {
      if (err instanceof AbortError || signal?.aborted) throw err;
      if (group.length === 1) {
        results.set(group[0]!.item.key, { key: group[0]!.item.key, error: asCalmkit(err, group[0]!.item.input) });
        continue;
      }
      for (const d of group) {
        try {
          await run([d]);
        } catch (e) {
          if (e instanceof AbortError || signal?.aborted) throw e;
          results.set(d.item.key, { key: d.item.key, error: asCalmkit(e, d.item.input) });
        }
      }
    }
  }
  return decoded.map((d) => results.get(d.item.key)!);
}

/**
 * Extracts every item not yet in the stores. The next batch is decoded (on the audio threads) while the
 * current one runs through the model (on the compute thread). Failures are recorded in the stores and the
 * run goes on. On abort the batch in flight is dropped, everything finished is flushed, and the summary says
 * `aborted`; a later run resumes where this one stopped.
 */
export async function extractToStore(options: ExtractToStoreOptions): Promise<ExtractSummary> {
  const started = Date.now();
  const { model, stores, settings, signal } = options;
  const batchSize = options.batchSize ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw bad(`batchSize must be a positive integer; got ${batchSize}`, 'batchSize');
  const flushEvery = options.flushEvery ?? 64;
  const flushMs = (options.flushSeconds ?? 30) * 1000;
  stores.refresh();
  const todo = options.items.filter((it) => !stores.has(it.key));
  const skipped = options.items.length - todo.length;
  const writers = stores.writers({ id: options.writerId });
  const failed: ClipFailure[] = [];
  let done = 0;
  let aborted = false;
  let lastFlush = Date.now();
  const progress = (key?: string) => options.onProgress?.({ total: todo.length, done, failed: failed.length, skipped, key });
  progress();

  const batches: WorkItem[][] = [];
  for (let i = 0; i < todo.length; i += batchSize) batches.push(todo.slice(i, i + batchSize));
  const decode = (b: WorkItem[]) => Promise.all(b.map((it) => decodeForModel(it, settings, model)));
  try {
    let next = batches.length > 0 ? decode(batches[0]!) : undefined;
    for (let b = 0; b < batches.length; b++) {
      if (signal?.aborted) {
        aborted = true;
        break;
      }
      const decoded = await next!;
      next = b + 1 < batches.length ? decode(batches[b + 1]!) : undefined;
      let results: ClipResult[];
      try {
        results = await runModel(model, decoded, settings, signal);
      } catch (err) {
        if (err instanceof AbortError || signal?.aborted) {
          aborted = true;
          await next?.catch(() => undefined);
          break;
        }
        throw err;
      }
      for (const r of results) {
        const item = batches[b]!.find((it) => it.key === r.key)!;
        if ('error' in r) {
          failed.push({ key: r.key, input: item.input, code: r.error.code, message: r.error.message });
          writers.fail(r.key, { input: item.input, code: r.error.code, message: r.error.message });
        } else {
          writers.put(r.key, r.layers);
          done++;
        }
        progress(r.key);
      }
      if (writers.pending >= flushEvery || Date.now() - lastFlush >= flushMs) {
        writers.flush({ manifest: true });
        lastFlush = Date.now();
      }
    }
  } finally {
    // Whatever finished is published even when the loop throws; the manifest follows the shards.
    writers.close({ manifest: true });
  }
  return { total: todo.length, done, skipped, failed, aborted, seconds: (Date.now() - started) / 1000, writer: writers.id };
}
