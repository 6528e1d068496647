// The whole study on one OpenMIC-layout dataset, one column per way of making features, all under one protocol:
//   - concatenation (tile to 62 s), upsampling (6.2x) and untiled (the 10 s clip as it is, a short input): layer-L
//     mean features into a feature store, the paper's 27-config probe grid per instrument;
//   - attention: the 1 s segment means of the best of those variants (lowest mean validation loss of its selected
//     probes, or the one asked for) into a segments store, the attention grid per instrument;
//   - when the dataset has the release's VGGish features: the paper's grid on their mean over the frames, and the
//     attention grid over the frames.
// Then Table I and the figures per column, and the side-by-side table of test F1 with each column's extraction
// cost. Every step resumes: stores skip extracted clips, and a probe set whose inputs are unchanged is reused.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { abortError, ArgumentError, CalmkitError, DataError, oneOf } from '../errors';
import { defaultLayers, Jukebox, segmentTokensOf, type JukeboxInfo, type PrecisionChoice } from '../model';
import type { Device } from '../runtime';
import { OpenMIC, type PartitionOptions } from '../openmic';
import { openmicItems, LayerStores, resolveSettings, type ExtractionSettings, type PipelineProgress, type WorkItem, extractToStore } from '../extraction';
import {
  ATTENTION_GRID,
  MATMUL_PRECISIONS,
  PAPER_GRID,
  ProbeSet,
  TRAINING_DEFAULTS,
  writeReport,
  type MatmulPrecision,
  type ProbeGrid,
  type ProbeProgress,
  type SegmentTimes,
  type TableRow,
} from '../probes';
import { atomicReplace as replaceFile, readRegularFile, withFsErrors } from '../files';
import type { StoreDtype } from '../store';
import type { Formatting } from '../audio';
import { compareVariants, comparisonCsv, comparisonMarkdown, type Comparison } from './compare';
import { trainFromFeatures, trainFromStore, type ClipFeatures } from './train';

export interface StudyVariant {
  name: string;
  formatting: Formatting;
  factor?: number;
  targetSeconds?: number;
}

/** The paper's two ways of fitting a 10 s clip to Jukebox's 23.78 s window. */
export const PAPER_VARIANTS: readonly StudyVariant[] = Object.freeze([
  { name: 'concatenation', formatting: 'tile', targetSeconds: 62 },
  { name: 'upsampling', formatting: 'upsample', factor: 6.2 },
]);

/**
 * No fitting: the 10 s clip as it is, a short input of 3,445 tokens (exact for the causal prior, as jukemirlib
 * runs it): 2.4x less compute than a full window, and no repeated or stretched audio in it.
 */
export const UNTILED_VARIANT: StudyVariant = Object.freeze({ name: 'untiled', formatting: 'none' });

/** The variants `calmkit study` runs by default: the paper's two and the untiled clip. */
export const STUDY_VARIANTS: readonly StudyVariant[] = Object.freeze([...PAPER_VARIANTS, UNTILED_VARIANT]);

/** The comparison of every column, in three forms, at the top of a study's folder. */
const COMPARISON_FILES = ['comparison.md', 'comparison.csv', 'comparison.json'] as const;

/**
 * Every name `calmkit study` writes at the top of its folder: a folder per mean variant, per other column kind
 * (the attention column, the release's VGGish columns), and the comparison files. The CLI's output check reads it.
 */
export const STUDY_ENTRIES: readonly string[] = Object.freeze([
  ...STUDY_VARIANTS.map((v) => v.name),
  ...(['attention', 'vggish-mean', 'vggish-attention'] satisfies ColumnKind[]),
  ...COMPARISON_FILES,
]);

/** What made a column's features. */
export type ColumnKind = 'mean' | 'attention' | 'vggish-mean' | 'vggish-attention';

export type StudyEvent =
  | { phase: 'extract'; variant: string; progress: PipelineProgress }
  | { phase: 'train'; variant: string; progress: ProbeProgress }
  | { phase: 'log'; variant?: string; message: string };

export interface StudyOptions {
  /** An OpenMIC-layout dataset root. */
  dataset: string;
  /** A calmkit Jukebox checkpoint. */
  model: string;
  /** The study folder: one sub-folder per column plus the comparison. */
  out: string;
  /** The mean-pooled variants (default STUDY_VARIANTS). */
  variants?: readonly StudyVariant[];
  /** Default: 36, or the checkpoint's depth if it has fewer layers. */
  layer?: number;
  partitions?: PartitionOptions;
  epochs?: number;
  batchSize?: number;
  seed?: number;
  grid?: ProbeGrid;
  /** Standardise features with each instrument's train mean/std (jukemir's default; default true). */
  standardize?: boolean;
  device?: Device;
  /** Default DEFAULT_PRECISION (`fp32`); `auto` resolves when the model loads, and the stores record the precision it resolved to. */
  precision?: PrecisionChoice;
  /** The probe trainer's products (TrainProbeGridOptions.matmulPrecision; default fp32). */
  matmulPrecision?: MatmulPrecision;
  /** Clips per forward pass. */
  extractBatch?: number;
  /** The attention column (default on): attention probes over the segments of the best variant. */
  attention?: boolean;
  /** The variant whose segments the attention column uses (default: the mean variant with the lowest mean validation loss). */
  attentionVariant?: string;
  /** Segment length of the attention column (default 1 s). */
  segmentSeconds?: number;
  /**
   * How the attention column's segments are stored (default float32). float16 halves the store (23 one-second
   * segments of 4800-d are 220 kB a clip) and rounds the features, which the recipe records.
   */
  segmentDtype?: StoreDtype;
  /** Default ATTENTION_GRID. */
  attentionGrid?: ProbeGrid;
  /** Epochs of the attention probes, Jukebox's and VGGish's (default `epochs`). */
  attentionEpochs?: number;
  /** The VGGish columns: `auto` (default) when the dataset has the release's VGGish features, `off` never. */
  vggish?: 'auto' | 'off';
  /**
   * Train and report columns even when labelled clips have no features (failed extractions; default false:
   * DataError ERR_DATA_MISSING_FEATURES). Each probe set and report records how many were left out.
   */
  allowMissing?: boolean;
  signal?: AbortSignal;
  onEvent?: (e: StudyEvent) => void;
}

export interface VariantResult {
  /** The column's name in the comparison. */
  name: string;
  kind: ColumnKind;
  /** The formatting variant whose audio made the features (Jukebox columns). */
  variant?: StudyVariant;
  featuresDir?: string;
  probesFile: string;
  reportDir: string;
  extracted?: { done: number; skipped: number; failed: number };
  /** Seconds per clip of this column's extraction (decode + model), over every run that extracted clips. */
  extractionSecondsPerClip?: number;
  reusedProbes: boolean;
  macroF1: number;
  /** Mean over instruments of the selected probes' validation loss: what picks the attention column's variant. */
  meanValLoss: number;
  reportFiles: string[];
}

export interface StudyResult {
  out: string;
  layer: number;
  variants: VariantResult[];
  comparison: Comparison;
  files: string[];
}

/** A study file written atomically; a full disk or a read-only folder is a DataError naming the file. */
function atomicReplace(file: string, data: string): void {
  withFsErrors(
    () => replaceFile(file, data),
    (reason, cause) =>
      new DataError('ERR_DATA_STUDY_IO', `cannot write ${file}: ${cause.path && cause.path !== file ? `${cause.path}: ` : ''}${reason}`, {
        input: file,
        cause,
      }),
  );
}

/** The saved inputs key of a column's probe set, or undefined (absent, or not a regular file: never blocks on a FIFO). */
function readKey(file: string): string | undefined {
  try {
    return readRegularFile(file).toString('utf8');
  } catch {
    return undefined;
  }
}

function trainingKey(parts: unknown): string {
  return crypto.createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

function meanValLoss(probes: ProbeSet): number {
  const losses = probes.results.map((r) => r.configs[r.selected]!.bestValLoss).filter(Number.isFinite);
  return losses.length ? losses.reduce((a, b) => a + b, 0) / losses.length : NaN;
}

/** Seconds a column's extraction took per clip, accumulated across runs in `<dir>/extraction.json`. */
function recordExtraction(dir: string, done: number, seconds: number): number | undefined {
  const file = path.join(dir, 'extraction.json');
  let total = { clips: 0, seconds: 0 };
  try {
    total = JSON.parse(readRegularFile(file).toString('utf8'));
  } catch {
    // first run
  }
  if (done > 0) {
    total = { clips: total.clips + done, seconds: total.seconds + seconds };
    atomicReplace(file, `${JSON.stringify(total)}\n`);
  }
  return total.clips > 0 ? total.seconds / total.clips : undefined;
}

/**
 * Where a Jukebox segments store's segments lie: segment s covers tokens [s K, (s + 1) K) of the window (K tokens
 * of hop / rate seconds), shown in seconds of the clip where the formatting keeps clip time (none; upsample: divided
 * by the factor) and of the model's input otherwise.
 */
export function jukeboxSegmentTimes(settings: ExtractionSettings, info: Pick<JukeboxInfo, 'hop' | 'sampleRate' | 'nCtx'>, segments: number): SegmentTimes {
  const tokenSeconds = info.hop / info.sampleRate;
  const k = segmentTokensOf(settings, info);
  const scale = settings.formatting === 'upsample' ? 1 / settings.factor! : 1;
  const spans = Array.from({ length: segments }, (_, s): [number, number] => [
    s * k * tokenSeconds * scale,
    Math.min((s + 1) * k, info.nCtx) * tokenSeconds * scale,
  ]);
  const window = info.nCtx * tokenSeconds;
  const axis =
    settings.formatting === 'none'
      ? 'seconds of the clip'
      : settings.formatting === 'upsample'
        ? `seconds of the clip (upsampled ${settings.factor}x: the window holds its first ${(window * scale).toFixed(2)} s)`
        : settings.formatting === 'tile'
          ? `seconds of the input (the clip tiled to ${settings.targetSeconds} s, so it repeats)`
          : 'seconds of the input (the clip, then silence)';
  return { axis, spans };
}

interface Column {
  name: string;
  kind: ColumnKind;
  dir: string;
  grid: ProbeGrid;
  epochs: number;
  variant?: StudyVariant;
  /** Trains the probes from scratch; `key` says what they depend on (a matching saved set is reused). */
  key: unknown;
  train: (onProgress: (p: ProbeProgress) => void) => Promise<{ probes: ProbeSet; missing: string[] }>;
  extracted?: { done: number; skipped: number; failed: number };
  extractionSecondsPerClip?: number;
  featuresDir?: string;
}

export async function runStudy(options: StudyOptions): Promise<StudyResult> {
  const variants = options.variants ?? STUDY_VARIANTS;
  const log = (message: string, variant?: string) => options.onEvent?.({ phase: 'log', variant, message });
  const checkAbort = () => {
    if (options.signal?.aborted) throw abortError('the study was interrupted; run it again to resume', options.signal);
  };
  const attention = options.attention ?? true;
  if (options.attentionVariant !== undefined && !variants.some((v) => v.name === options.attentionVariant)) {
    throw new ArgumentError(
      'ERR_INVALID_ARGUMENT',
      `attentionVariant '${options.attentionVariant}' is not among the study's variants (${variants.map((v) => v.name).join(', ')})`,
      { input: options.attentionVariant },
    );
  }
  // Checked before any extraction, not when the first column trains.
  if (options.matmulPrecision !== undefined) oneOf('matmulPrecision', MATMUL_PRECISIONS, options.matmulPrecision);
  const segmentSeconds = options.segmentSeconds ?? 1;
  fs.mkdirSync(options.out, { recursive: true });
  const dataset = OpenMIC.open(options.dataset, { audio: 'skip', npz: 'ignore' });
  const items = openmicItems(dataset);
  const training = {
    epochs: options.epochs ?? TRAINING_DEFAULTS.epochs,
    batchSize: options.batchSize ?? TRAINING_DEFAULTS.batchSize,
    seed: options.seed ?? TRAINING_DEFAULTS.seed,
    grid: options.grid ?? PAPER_GRID,
    standardize: options.standardize ?? TRAINING_DEFAULTS.standardize,
    // Only when bf16, so that the keys of fp32 columns trained before the option existed still match.
    ...(options.matmulPrecision === 'bf16' ? { matmulPrecision: 'bf16' as const } : {}),
  };
  const attentionTraining = { ...training, epochs: options.attentionEpochs ?? training.epochs, grid: options.attentionGrid ?? ATTENTION_GRID };
  const model = await Jukebox.load(options.model, { device: options.device, precision: options.precision, signal: options.signal });
  try {
    const layer = options.layer ?? defaultLayers(model.info.depth)[0]!;
    const ctx: Context = { options, dataset, items, model, layer, log, checkAbort };
    const results: VariantResult[] = [];
    const tables: { name: string; rows: TableRow[]; macroF1: number }[] = [];
    const run = async (column: Column) => {
      const { result, rows } = await runColumn(ctx, column);
      results.push(result);
      tables.push({ name: result.name, rows, macroF1: result.macroF1 });
    };
    for (const variant of variants) await run(await meanColumn(ctx, variant, training));
    if (attention) {
      const chosen = options.attentionVariant ?? bestVariant(results);
      const variant = variants.find((v) => v.name === chosen)!;
      log(
        `attention over the ${segmentSeconds} s segments of ${variant.name}${options.attentionVariant ? '' : ' (the lowest mean validation loss of the mean-pooled variants)'}`,
      );
      await run(await attentionColumn(ctx, variant, segmentSeconds, attentionTraining));
    }
    const vggish = options.vggish ?? 'auto';
    const source = vggish === 'off' ? undefined : dataset.vggishSource();
    if (source) {
      log(`the dataset has the release's VGGish features (${source === 'npz' ? 'openmic-2018.npz' : 'vggish/*.json'}): adding their columns`);
      for (const column of vggishColumns(ctx, source, training, attentionTraining)) await run(column);
    }
    const costs = Object.fromEntries(results.map((r) => [r.name, r.extractionSecondsPerClip]));
    return finish(options.out, layer, results, compareVariants(tables, costs));
  } finally {
    model.dispose();
  }
}

interface Context {
  options: StudyOptions;
  dataset: OpenMIC;
  items: WorkItem[];
  model: Jukebox;
  layer: number;
  log: (message: string, variant?: string) => void;
  checkAbort: () => void;
}

/** The variant whose mean probes have the lowest mean validation loss (validation only: test F1 stays unseen). */
function bestVariant(results: VariantResult[]): string {
  const means = results.filter((r) => r.kind === 'mean' && Number.isFinite(r.meanValLoss));
  if (!means.length) throw new CalmkitError('ERR_INTERNAL', 'no mean-pooled variant trained, so none can be picked for the attention column');
  return means.reduce((a, b) => (b.meanValLoss < a.meanValLoss ? b : a)).variant!.name;
}

/** Extracts one settings' features of every clip into `<root>/layer-L` and records the time per clip. */
async function extractStore(ctx: Context, name: string, root: string, settings: ExtractionSettings) {
  const stores = LayerStores.open(root, settings, { create: true });
  ctx.log(
    `extracting layer ${ctx.layer} (${settings.formatting}, ${settings.pooling}${settings.segmentSeconds ? ` ${settings.segmentSeconds} s` : ''}) for ${ctx.items.length} clip${ctx.items.length === 1 ? '' : 's'}`,
    name,
  );
  const summary = await extractToStore({
    model: ctx.model,
    items: ctx.items,
    stores,
    settings,
    batchSize: ctx.options.extractBatch,
    signal: ctx.options.signal,
    onProgress: (progress) => ctx.options.onEvent?.({ phase: 'extract', variant: name, progress }),
  });
  if (summary.aborted) throw abortError('the study was interrupted during extraction; run it again to resume', ctx.options.signal);
  for (const f of summary.failed) ctx.log(`skipped ${f.key}: ${f.code}: ${f.message}`, name);
  const store = stores.stores.get(ctx.layer)!;
  store.refresh();
  return {
    store,
    featuresDir: stores.root,
    extracted: { done: summary.done, skipped: summary.skipped, failed: summary.failed.length },
    extractionSecondsPerClip: recordExtraction(root, summary.done, summary.seconds),
  };
}

function settingsFor(
  ctx: Context,
  variant: StudyVariant,
  pooling: { pooling: 'mean' } | { pooling: 'segments'; segmentSeconds: number; dtype: StoreDtype },
): ExtractionSettings {
  return resolveSettings({
    model: { id: ctx.model.id, path: ctx.options.model, preset: ctx.model.info.preset },
    precision: ctx.model.info.precision,
    layers: [ctx.layer],
    ...pooling,
    formatting: variant.formatting,
    factor: variant.factor,
    targetSeconds: variant.targetSeconds,
    modelLayers: ctx.model.info.depth,
  });
}

type Training = { epochs: number; batchSize: number; seed: number; grid: ProbeGrid; standardize: boolean; matmulPrecision?: MatmulPrecision };

async function meanColumn(ctx: Context, variant: StudyVariant, training: Training): Promise<Column> {
  ctx.checkAbort();
  const dir = path.join(ctx.options.out, variant.name);
  const x = await extractStore(ctx, variant.name, path.join(dir, 'features'), settingsFor(ctx, variant, { pooling: 'mean' }));
  return {
    name: variant.name,
    kind: 'mean',
    dir,
    variant,
    grid: training.grid,
    epochs: training.epochs,
    key: { settings: x.store.spec, keys: x.store.keys(), partitions: ctx.options.partitions ?? {}, training },
    train: (onProgress) =>
      trainFromStore({
        dataset: ctx.dataset,
        store: x.store,
        partitions: ctx.options.partitions,
        ...training,
        allowMissing: ctx.options.allowMissing,
        device: ctx.options.device,
        signal: ctx.options.signal,
        onProgress,
      }),
    ...x,
  };
}

async function attentionColumn(ctx: Context, variant: StudyVariant, segmentSeconds: number, training: Training): Promise<Column> {
  ctx.checkAbort();
  const name = `attention (${variant.name})`;
  const settings = settingsFor(ctx, variant, { pooling: 'segments', segmentSeconds, dtype: ctx.options.segmentDtype ?? 'float32' });
  const x = await extractStore(ctx, name, path.join(ctx.options.out, variant.name, 'segments'), settings);
  const times = (segments: number) => jukeboxSegmentTimes(settings, ctx.model.info, segments);
  return {
    name,
    kind: 'attention',
    dir: path.join(ctx.options.out, 'attention'),
    variant,
    grid: training.grid,
    epochs: training.epochs,
    key: { settings: x.store.spec, keys: x.store.keys(), partitions: ctx.options.partitions ?? {}, training },
    train: async (onProgress) => {
      const segments = Math.max(...x.store.keys().map((k) => x.store.entry(k)!.shape[0]!));
      return trainFromStore({
        dataset: ctx.dataset,
        store: x.store,
        allowMissing: ctx.options.allowMissing,
        partitions: ctx.options.partitions,
        ...training,
        segmentTimes: times(segments),
        device: ctx.options.device,
        signal: ctx.options.signal,
        onProgress,
      });
    },
    ...x,
  };
}

/** The release's VGGish features: their mean over the frames with the paper's grid, and the frames with attention. */
function vggishColumns(ctx: Context, source: 'npz' | 'json', training: Training, attentionTraining: Training): Column[] {
  let cached: ClipFeatures | undefined;
  const frames = (): ClipFeatures => {
    if (!cached) {
      const v = ctx.dataset.vggishFeatures(ctx.dataset.keys, { source });
      cached = { keys: v.keys, data: v.data, dim: v.shape[2]!, segments: v.shape[1]!, validSegments: v.validFrames };
    }
    return cached;
  };
  const means = (): ClipFeatures => {
    const f = frames();
    const S = f.segments!;
    const out = new Float32Array(f.keys.length * f.dim);
    for (let c = 0; c < f.keys.length; c++) {
      const real = f.validSegments ? f.validSegments[c]! : S;
      for (let j = 0; j < f.dim; j++) {
        let sum = 0;
        for (let s = 0; s < real; s++) sum += f.data[(c * S + s) * f.dim + j]!;
        out[c * f.dim + j] = sum / real;
      }
    }
    return { keys: f.keys, data: out, dim: f.dim };
  };
  const file = source === 'npz' ? path.join(ctx.dataset.root!, 'openmic-2018.npz') : path.join(ctx.dataset.root!, 'vggish');
  // The inputs' identity: the source's size and time (re-reading 20,000 files to hash them is not worth it).
  const stat = fs.statSync(file);
  const identity = { source, file, size: stat.size, mtimeMs: stat.mtimeMs, keys: ctx.dataset.keys.length };
  const manifest = { features: { source: `the release's VGGish features (${source === 'npz' ? 'openmic-2018.npz X' : 'vggish/*.json'})`, file } };
  const column = (kind: 'vggish-mean' | 'vggish-attention', t: Training, features: () => ClipFeatures): Column => ({
    name: kind === 'vggish-mean' ? 'vggish (mean)' : 'vggish (attention)',
    kind,
    dir: path.join(ctx.options.out, kind),
    grid: t.grid,
    epochs: t.epochs,
    key: { identity, kind, partitions: ctx.options.partitions ?? {}, training: t },
    train: (onProgress) => {
      const f = features();
      const segmentTimes: SegmentTimes | undefined = f.segments
        ? {
            axis: 'seconds of the clip (VGGish frames of 0.96 s)',
            spans: Array.from({ length: f.segments }, (_, s): [number, number] => [0.96 * s, 0.96 * (s + 1)]),
          }
        : undefined;
      return trainFromFeatures({
        dataset: ctx.dataset,
        features: f,
        partitions: ctx.options.partitions,
        ...t,
        allowMissing: ctx.options.allowMissing,
        segmentTimes,
        manifest,
        device: ctx.options.device,
        signal: ctx.options.signal,
        onProgress,
      });
    },
  });
  return [column('vggish-mean', training, means), column('vggish-attention', attentionTraining, frames)];
}

/** Trains (or reuses) a column's probes, then writes its report. */
async function runColumn(ctx: Context, c: Column): Promise<{ result: VariantResult; rows: TableRow[] }> {
  ctx.checkAbort();
  const probesFile = path.join(c.dir, 'probes.calmkit-probes.json');
  const keyFile = `${probesFile}.inputs`;
  const key = trainingKey(c.key);
  let probes: ProbeSet;
  let reusedProbes = false;
  if (fs.existsSync(probesFile) && readKey(keyFile) === key) {
    probes = await ProbeSet.load(probesFile);
    reusedProbes = true;
    ctx.log(`reusing ${probesFile} (same features, partitions and training options)`, c.name);
  } else {
    ctx.log(
      `training ${c.grid.hidden.length * c.grid.dropout.length * c.grid.l2.length} configs per instrument${c.grid.attention ? ' (attention probes)' : ''}, ${c.epochs} epochs`,
      c.name,
    );
    const trained = await c.train((progress) => ctx.options.onEvent?.({ phase: 'train', variant: c.name, progress }));
    probes = trained.probes;
    if (trained.missing.length)
      ctx.log(`${trained.missing.length} labelled clips have no features: trained without them (--allow-missing; the probe set and report record it)`, c.name);
    await probes.save(probesFile);
    atomicReplace(keyFile, key);
  }
  const reportDir = path.join(c.dir, 'report');
  const reportFiles = await writeReport(probes, reportDir, { allowMissing: ctx.options.allowMissing });
  const table = probes.table();
  const macroF1 = table.macro.f1Present;
  const out: VariantResult = { name: c.name, kind: c.kind, probesFile, reportDir, reusedProbes, macroF1, meanValLoss: meanValLoss(probes), reportFiles };
  if (c.variant) out.variant = c.variant;
  if (c.featuresDir) out.featuresDir = c.featuresDir;
  if (c.extracted) out.extracted = c.extracted;
  if (c.extractionSecondsPerClip !== undefined) out.extractionSecondsPerClip = c.extractionSecondsPerClip;
  return { result: out, rows: table.rows };
}

function finish(out: string, layer: number, variants: VariantResult[], comparison: Comparison): StudyResult {
  const files = COMPARISON_FILES.map((f) => path.join(out, f));
  atomicReplace(files[0]!, `# Test F1 per instrument, layer ${layer}\n\n${comparisonMarkdown(comparison)}`);
  atomicReplace(files[1]!, comparisonCsv(comparison));
  atomicReplace(files[2]!, `${JSON.stringify({ layer, ...comparison }, null, 2)}\n`);
  return { out, layer, variants, comparison, files };
}
