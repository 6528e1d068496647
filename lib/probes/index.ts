// Instrument probes: the paper's 27-config grid per instrument, trained together in the native core, selected
// on validation loss, evaluated on test, saved and reloaded with everything needed to reproduce them.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { binding } from '../../bindings';
import type { RawProbeConfig, RawProbeGridResult, RawProbeNet, RawProbeProgress, RawProbeTask } from '../../bindings/raw';
import { AbortError, ArgumentError, DataError, ProbeError, native } from '../errors';
import { decodeProbeFile, encodeProbeFile, writeFileAtomic } from './file';
import { type BinaryMetrics, type MacroMetrics, binaryMetrics, macroMetrics } from './metrics';

export { binaryMetrics, macroMetrics } from './metrics';
export type { BinaryMetrics, MacroMetrics } from './metrics';

/** One probe architecture and its regularisation. */
export interface ProbeConfig {
  /** Hidden layer sizes: [] is a linear probe (still with input dropout). */
  hidden: number[];
  /** Dropout rate on the input and after every hidden ReLU. */
  dropout: number;
  /** Adam's coupled weight decay (L2 added to the gradient, not AdamW). */
  l2: number;
}

/** A grid as the product of its axes. */
export interface ProbeGrid {
  hidden: number[][];
  dropout: number[];
  l2: number[];
}

/** The paper's grid: 3 architectures x 3 dropouts x 3 L2 = 27 configs per instrument. */
export const PAPER_GRID: ProbeGrid = Object.freeze({
  hidden: [[], [512], [512, 256]],
  dropout: [0.25, 0.5, 0.75],
  l2: [0, 1e-4, 1e-3],
}) as ProbeGrid;

/** The decision threshold on P(present): present when strictly above. */
export const PROBE_THRESHOLD = 0.5;

/** Rows of the shared feature matrix and their 0/1 targets (1 = the instrument is present). */
export interface ProbeSplit {
  rows: Int32Array;
  targets: Uint8Array;
}

export interface ProbeTask {
  instrument: string;
  train: ProbeSplit;
  val: ProbeSplit;
  test: ProbeSplit;
}

export interface ProbeProgress {
  /** Epochs finished by the stack now training. */
  epoch: number;
  epochs: number;
  /** Probes in the stack now training, and stacks in all (the grid is cut into stacks that fit in memory). */
  probes: number;
  stack: number;
  stacks: number;
  probesDone: number;
  probesTotal: number;
}

/** The core's device grammar (native/core/device.h), shared with the extractor: `cuda:N` picks a GPU. */
export type ProbeDevice = 'cpu' | 'cuda' | 'auto' | `cuda:${number}`;

export interface TrainProbeGridOptions {
  /** One row-major N x dim matrix shared by all instruments; tasks index into it. */
  features: Float32Array;
  dim: number;
  tasks: ProbeTask[];
  /** Default: PAPER_GRID. */
  grid?: ProbeGrid;
  /** Epochs of ceil(n_train / batchSize) balanced steps each. Default 800. */
  epochs?: number;
  /** Even; every batch holds batchSize/2 positives and batchSize/2 negatives. Default 64. */
  batchSize?: number;
  /** Adam's learning rate. Default 1e-4. */
  lr?: number;
  /** Seeds every stream (init, batch order, dropout masks) together with the instrument name and config. Default 0. */
  seed?: number;
  /** Standardise features with the mean/std of each instrument's train rows (sklearn StandardScaler). Default true. */
  standardize?: boolean;
  /** Default 'cpu'. 'auto' takes cuda:0 when LibTorch sees a device. */
  device?: ProbeDevice;
  /**
   * Probes of one architecture train together in stacks of at most this many bytes of weights, Adam state and
   * activations (default 4 GiB); `maxProbesPerStack: 1` is the one-at-a-time reference. Results do not depend on
   * either.
   */
  maxStackBytes?: number;
  maxProbesPerStack?: number;
  /**
   * What to do with an instrument whose train split lacks positives or negatives (balanced batches need
   * both), or whose validation or test split is empty: 'skip' it and list it in `ProbeSet.skipped` (default),
   * or 'error' (DataError ERR_DATA_SINGLE_CLASS).
   */
  onSingleClass?: 'skip' | 'error';
  /** Keep the weights of every probe, not only the selected ones (memory: all probes' parameters). */
  keepAllWeights?: boolean;
  /**
   * Step each stack with batched products over all its probes and Adam in tensor operations -- the step used on
   * CUDA -- on any device. On the CPU the default per-probe step is faster; this checks the CUDA step's arithmetic
   * where there is no GPU. Same results up to float summation order.
   */
  batchedStep?: boolean;
  /**
   * Intra-op threads while training (default: 1 for stacks under ~50 MFLOP a step, where threading costs more than
   * it gains, else the process setting from CALMKIT_THREADS / OMP_NUM_THREADS / cores).
   */
  threads?: number;
  /** Passed through into the saved file, e.g. the feature store's manifest. */
  manifest?: unknown;
  signal?: AbortSignal;
  onProgress?: (p: ProbeProgress) => void;
}

/** A trained probe as weights: standardise (if mean/std), Linear -> ReLU ... -> Linear -> sigmoid. */
export interface ProbeNet {
  mean?: Float32Array;
  std?: Float32Array;
  /** Weight is [in][out] row-major: y = x W + b. */
  layers: { in: number; out: number; weight: Float32Array; bias: Float32Array }[];
}

export interface ConfigResult {
  /** Index into `ProbeSet.grid`. */
  configIndex: number;
  config: ProbeConfig;
  /** Validation BCE and accuracy after each epoch (natural class balance, no dropout). */
  valLoss: Float32Array;
  valAccuracy: Float32Array;
  /** 0-based epoch whose weights were kept (lowest validation loss); -1 if the loss never was finite. */
  bestEpoch: number;
  bestValLoss: number;
  bestValAccuracy: number;
  /** P(present) for each test row with the kept weights, and the metrics at PROBE_THRESHOLD. */
  testProbabilities: Float32Array;
  test: BinaryMetrics;
  /** Only with `keepAllWeights`. */
  net?: ProbeNet;
}

export interface ClassCounts {
  positives: number;
  negatives: number;
}

export interface InstrumentResult {
  instrument: string;
  counts: { train: ClassCounts; val: ClassCounts; test: ClassCounts };
  /** Every config of the grid, in grid order. */
  configs: ConfigResult[];
  /** Index of the selected config: lowest validation loss, ties to the earlier config. */
  selected: number;
  testTargets: Uint8Array;
  /** The selected probe's weights. */
  net: ProbeNet;
  /** The best zero-hidden-layer probe (when the grid has one): its weights read directly as feature importances. */
  linear?: { configIndex: number; net: ProbeNet };
}

export interface SkippedInstrument {
  instrument: string;
  reason: string;
}

/** One row of the paper's Table I. */
export interface TableRow {
  instrument: string;
  hidden: number[];
  dropout: number;
  l2: number;
  valLoss: number;
  valAccuracy: number;
  precision: number;
  recall: number;
  f1: number;
  accuracy: number;
  averagePrecision: number;
  rocAuc: number;
  /** Extra columns for comparisons with papers that report them. */
  f1PresentAbsent: number;
  testPositives: number;
  testNegatives: number;
}

export interface ProbeTable {
  rows: TableRow[];
  macro: MacroMetrics;
}

export interface Predictions {
  instruments: string[];
  n: number;
  /** P(present), row-major [clip][instrument]. */
  probabilities: Float32Array;
  /** 1 where probability > threshold. */
  present: Uint8Array;
  threshold: number;
  /** The same, per clip, keyed by instrument. */
  clips: Record<string, { probability: number; present: boolean }>[];
}

export interface PredictOptions {
  /** Clips in `features` (default: features.length / dim). */
  n?: number;
  /** A subset of the trained instruments (default: all). Unknown names are an ArgumentError. */
  instruments?: string[];
  device?: ProbeDevice;
}

/** Everything a probe set records about how it was made. */
export interface ProbeSetInfo {
  format: 1;
  createdAt: string;
  dim: number;
  grid: ProbeConfig[];
  options: { epochs: number; batchSize: number; lr: number; seed: number; standardize: boolean; threshold: number };
  training: { device: string; seconds: number; stacks: number };
  /**
   * sha256 (hex) of the feature matrix's bytes (featureRows x dim float32, little-endian) and, per instrument and
   * split, of its rows (int32) followed by its targets (uint8).
   */
  hashes: { features: string; featureRows: number; tasks: Record<string, { train: string; val: string; test: string }> };
  manifest?: unknown;
}

interface ProbeSetState {
  info: ProbeSetInfo;
  instruments: InstrumentResult[];
  skipped: SkippedInstrument[];
}

/** A trained, selected probe per instrument plus the whole grid's results. */
export class ProbeSet {
  readonly info: ProbeSetInfo;
  /** Per trained instrument, in task order. */
  readonly results: InstrumentResult[];
  /** Instruments not trained, with why. */
  readonly skipped: SkippedInstrument[];

  private constructor(state: ProbeSetState) {
    this.info = state.info;
    this.results = state.instruments;
    this.skipped = state.skipped;
  }

  /** @internal */
  static fromState(state: ProbeSetState): ProbeSet {
    return new ProbeSet(state);
  }

  get instruments(): string[] {
    return this.results.map((r) => r.instrument);
  }

  get grid(): ProbeConfig[] {
    return this.info.grid;
  }

  /** The result of one instrument; ArgumentError for a name that was not trained. */
  result(instrument: string): InstrumentResult {
    const r = this.results.find((x) => x.instrument === instrument);
    if (!r) {
      const why = this.skipped.find((s) => s.instrument === instrument);
      throw new ArgumentError(
        'ERR_INVALID_ARGUMENT',
        why
          ? `instrument '${instrument}' was skipped: ${why.reason}`
          : `unknown instrument '${instrument}'; this probe set has: ${this.instruments.join(', ')}`,
        { input: instrument },
      );
    }
    return r;
  }

  /** The paper's Table I: per instrument the selected config and its test metrics, plus macro averages. */
  table(): ProbeTable {
    const rows = this.results.map((r): TableRow => {
      const c = r.configs[r.selected];
      return {
        instrument: r.instrument,
        hidden: c.config.hidden,
        dropout: c.config.dropout,
        l2: c.config.l2,
        valLoss: c.bestValLoss,
        valAccuracy: c.bestValAccuracy,
        precision: c.test.precision,
        recall: c.test.recall,
        f1: c.test.f1,
        accuracy: c.test.accuracy,
        averagePrecision: c.test.averagePrecision,
        rocAuc: c.test.rocAuc,
        f1PresentAbsent: c.test.f1PresentAbsentMean,
        testPositives: r.counts.test.positives,
        testNegatives: r.counts.test.negatives,
      };
    });
    return { rows, macro: macroMetrics(this.results.map((r) => r.configs[r.selected].test)) };
  }

  /**
   * P(present) and the decision at 0.5 of each selected probe, for one clip (features.length === dim) or n clips
   * (row-major n x dim). Runs in the native core, off the JS thread.
   */
  async predict(features: Float32Array, options: number | PredictOptions = {}): Promise<Predictions> {
    const opts: PredictOptions = typeof options === 'number' ? { n: options } : options;
    if (!(features instanceof Float32Array)) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'features must be a Float32Array');
    const dim = this.info.dim;
    const n = opts.n ?? features.length / dim;
    if (!Number.isInteger(n) || n < 1 || n * dim !== features.length) {
      throw new DataError('ERR_DATA_MISMATCH', `features has ${features.length} values; expected n x ${dim} (n = ${opts.n ?? 'length / dim'})`);
    }
    const chosen = (opts.instruments ?? this.instruments).map((name) => this.result(name));
    const nets = chosen.map((r) => r.net as RawProbeNet);
    const device = opts.device ?? 'cpu';
    const probabilities = await native(() => binding().predictProbes(features, dim, nets, device));
    const present = new Uint8Array(probabilities.length);
    for (let i = 0; i < probabilities.length; i++) present[i] = probabilities[i] > PROBE_THRESHOLD ? 1 : 0;
    const names = chosen.map((r) => r.instrument);
    const clips = Array.from({ length: n }, (_, i) => {
      const clip: Record<string, { probability: number; present: boolean }> = {};
      names.forEach((name, k) => {
        clip[name] = { probability: probabilities[i * names.length + k], present: present[i * names.length + k] === 1 };
      });
      return clip;
    });
    return { instruments: names, n, probabilities, present, threshold: PROBE_THRESHOLD, clips };
  }

  /** Writes the probe set (configs, seeds, hashes, manifest, curves, weights) to one file, atomically. */
  async save(file: string): Promise<void> {
    const state: ProbeSetState = { info: this.info, instruments: this.results, skipped: this.skipped };
    await fs.promises.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    writeFileAtomic(file, encodeProbeFile(state));
  }

  /** Reads a file written by save(); ProbeError ERR_PROBE_FILE when it is missing, corrupt or inconsistent. */
  static async load(file: string): Promise<ProbeSet> {
    let buf: Buffer;
    try {
      buf = await fs.promises.readFile(file);
    } catch (err) {
      throw new ProbeError('ERR_PROBE_FILE', `cannot read probe set ${file}: ${(err as Error).message}`, { input: file, cause: err });
    }
    const state = decodeProbeFile(buf, file) as ProbeSetState;
    checkState(state, file);
    return new ProbeSet(state);
  }
}

function checkState(state: ProbeSetState, file: string): void {
  const fail = (why: string): never => {
    throw new ProbeError('ERR_PROBE_FILE', `${file} is not a valid calmkit probe set: ${why}`, { input: file });
  };
  if (!state || typeof state !== 'object' || !state.info || !Array.isArray(state.instruments)) fail('missing sections');
  const { info } = state;
  if (!Number.isInteger(info.dim) || info.dim < 1 || !Array.isArray(info.grid)) fail('missing dim or grid');
  for (const r of state.instruments) {
    if (typeof r.instrument !== 'string' || !Array.isArray(r.configs) || !r.configs[r.selected]) fail('an instrument lacks its configs');
    const layers = r.net?.layers;
    if (!Array.isArray(layers) || layers.length === 0 || layers[0].in !== info.dim || layers[layers.length - 1].out !== 1) {
      fail(`the probe of '${r.instrument}' does not map ${info.dim} features to one logit`);
    }
    for (const l of layers) {
      if (!(l.weight instanceof Float32Array) || l.weight.length !== l.in * l.out || !(l.bias instanceof Float32Array) || l.bias.length !== l.out) {
        fail(`the probe of '${r.instrument}' has a layer of the wrong size`);
      }
    }
  }
  if (!Array.isArray(state.skipped)) state.skipped = [];
}

/** The grid's configs in order: hidden-major, then dropout, then L2. */
export function expandGrid(grid: ProbeGrid): ProbeConfig[] {
  const out: ProbeConfig[] = [];
  for (const hidden of grid.hidden) for (const dropout of grid.dropout) for (const l2 of grid.l2) out.push({ hidden: [...hidden], dropout, l2 });
  return out;
}

/** The grid's configs; the shape of `grid` is checked here, its numbers by the core. */
function gridConfigs(grid: ProbeGrid): ProbeConfig[] {
  const bad = (msg: string): never => {
    throw new ArgumentError('ERR_INVALID_ARGUMENT', `grid: ${msg}`);
  };
  if (!grid || !Array.isArray(grid.hidden) || !Array.isArray(grid.dropout) || !Array.isArray(grid.l2)) bad('needs hidden, dropout and l2 arrays');
  if (grid.hidden.some((h) => !Array.isArray(h))) bad('hidden sizes must be arrays of positive integers');
  const configs = expandGrid(grid);
  if (configs.length === 0) bad('is empty');
  return configs;
}

function counts(s: ProbeSplit): ClassCounts {
  let positives = 0;
  for (let i = 0; i < s.targets.length; i++) if (s.targets[i] === 1) positives++;
  return { positives, negatives: s.targets.length - positives };
}

function checkSplitTypes(task: ProbeTask, which: 'train' | 'val' | 'test'): void {
  const s = task[which];
  if (!s || !(s.rows instanceof Int32Array) || !(s.targets instanceof Uint8Array)) {
    throw new ArgumentError('ERR_INVALID_ARGUMENT', `instrument '${task.instrument}' ${which} must be { rows: Int32Array, targets: Uint8Array }`, { input: task.instrument });
  }
}

function sha256(...parts: ArrayBufferView[]): string {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
  return h.digest('hex');
}

function splitHash(s: ProbeSplit): string {
  return sha256(s.rows, s.targets);
}

/**
 * Trains the grid for every instrument at once in the native core (off the JS thread), selects per instrument
 * the config with the lowest validation loss and evaluates every config on test.
 *
 * Rejects with ArgumentError (bad options), DataError (shape mismatches, non-finite features, a train split
 * with one class, or an empty validation or test split, when onSingleClass is 'error'), DeviceError, or
 * AbortError (signal). With onSingleClass 'skip' (the default) such instruments are listed in `skipped`.
 */
export async function trainProbeGrid(options: TrainProbeGridOptions): Promise<ProbeSet> {
  const { features, tasks } = options;
  if (!(features instanceof Float32Array)) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'features must be a Float32Array');
  const dim = options.dim;
  if (features.length === 0) throw new DataError('ERR_DATA_MISMATCH', 'features is empty');
  if (!Array.isArray(tasks) || tasks.length === 0) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'tasks must be a non-empty array');
  // Option values (epochs, batch size, rates, the grid's numbers, the device) are the core's to check
  // (native/core/probes.cpp validate); here only their defaults and the single-class policy.
  const grid = gridConfigs(options.grid ?? PAPER_GRID);
  const epochs = options.epochs ?? 800;
  const batchSize = options.batchSize ?? 64;
  const lr = options.lr ?? 1e-4;
  const seed = options.seed ?? 0;
  const standardize = options.standardize ?? true;
  const device = options.device ?? 'cpu';
  const onSingleClass = options.onSingleClass ?? 'skip';
  if (onSingleClass !== 'skip' && onSingleClass !== 'error') throw new ArgumentError('ERR_INVALID_ARGUMENT', `onSingleClass must be 'skip' or 'error'`);

  const seen = new Set<string>();
  const skipped: SkippedInstrument[] = [];
  const trained: ProbeTask[] = [];
  for (const task of tasks) {
    if (!task || typeof task.instrument !== 'string' || task.instrument.length === 0) {
      throw new ArgumentError('ERR_INVALID_ARGUMENT', 'every task needs a non-empty instrument name');
    }
    if (seen.has(task.instrument)) throw new ArgumentError('ERR_INVALID_ARGUMENT', `instrument '${task.instrument}' appears twice`, { input: task.instrument });
    seen.add(task.instrument);
    for (const which of ['train', 'val', 'test'] as const) checkSplitTypes(task, which);
    const c = counts(task.train);
    // Small datasets leave some instruments without validation or test clips: same treatment as one class.
    const empty = (['val', 'test'] as const).filter((w) => task[w].rows.length === 0);
    if (c.positives === 0 || c.negatives === 0 || empty.length) {
      const reason = empty.length
        ? `its ${empty.join(' and ')} split${empty.length > 1 ? 's are' : ' is'} empty`
        : `its train split has no ${c.positives === 0 ? 'positives' : 'negatives'}; balanced batches need both classes`;
      if (onSingleClass === 'error') throw new DataError('ERR_DATA_SINGLE_CLASS', `instrument '${task.instrument}': ${reason}`, { input: task.instrument });
      skipped.push({ instrument: task.instrument, reason });
      continue;
    }
    trained.push(task);
  }
  if (trained.length === 0) throw new DataError('ERR_DATA_SINGLE_CLASS', `no instrument can be trained: ${skipped.map((s) => `${s.instrument} (${s.reason})`).join('; ')}`);
  if (options.signal?.aborted) throw new AbortError('probe training was aborted before it started');

  const rawTasks: RawProbeTask[] = trained.map((t) => ({ instrument: t.instrument, train: t.train, val: t.val, test: t.test }));
  const rawConfigs: RawProbeConfig[] = grid.map((c) => ({ hidden: c.hidden, dropout: c.dropout, l2: c.l2 }));
  const onProgress = options.onProgress ? (p: RawProbeProgress) => options.onProgress!({ ...p }) : undefined;
  const raw = await native(() => {
    const control = binding().control();
    const job = binding().trainProbeGrid(
      features,
      dim,
      rawTasks,
      rawConfigs,
      {
        epochs,
        batchSize,
        lr,
        seed,
        standardize,
        device,
        maxStackBytes: options.maxStackBytes ?? 4 * 2 ** 30,
        maxProbesPerStack: options.maxProbesPerStack ?? 0,
        keepAllWeights: options.keepAllWeights ?? false,
        batchedStep: options.batchedStep ?? false,
        threads: options.threads ?? 0,
      },
      control,
      onProgress,
    );
    const onAbort = () => binding().cancel(control);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    return job.finally(() => options.signal?.removeEventListener('abort', onAbort));
  });

  const rowsInMatrix = features.length / dim;
  const info: ProbeSetInfo = {
    format: 1,
    createdAt: new Date().toISOString(),
    dim,
    grid,
    options: { epochs, batchSize, lr, seed, standardize, threshold: PROBE_THRESHOLD },
    training: { device: raw.device, seconds: raw.seconds, stacks: raw.stacks },
    hashes: {
      features: sha256(features),
      featureRows: rowsInMatrix,
      tasks: Object.fromEntries(trained.map((t) => [t.instrument, { train: splitHash(t.train), val: splitHash(t.val), test: splitHash(t.test) }])),
    },
  };
  if (options.manifest !== undefined) info.manifest = options.manifest;
  return ProbeSet.fromState({ info, instruments: assemble(raw, trained, grid), skipped });
}

function assemble(raw: RawProbeGridResult, tasks: ProbeTask[], grid: ProbeConfig[]): InstrumentResult[] {
  return tasks.map((task, t) => {
    const configs = grid.map((config, c): ConfigResult => {
      const p = raw.probes[t * grid.length + c];
      const result: ConfigResult = {
        configIndex: c,
        config,
        valLoss: p.valLoss,
        valAccuracy: p.valAcc,
        bestEpoch: p.bestEpoch,
        bestValLoss: p.bestValLoss,
        bestValAccuracy: p.bestValAcc,
        testProbabilities: p.testProb,
        test: binaryMetrics(p.testProb, task.test.targets, PROBE_THRESHOLD),
      };
      if (p.net) result.net = p.net;
      return result;
    });
    const tr = raw.tasks[t];
    const out: InstrumentResult = {
      instrument: task.instrument,
      counts: { train: counts(task.train), val: counts(task.val), test: counts(task.test) },
      configs,
      selected: tr.selected,
      testTargets: task.test.targets.slice(),
      net: tr.selectedNet,
    };
    if (tr.linear >= 0 && tr.linearNet) out.linear = { configIndex: tr.linear, net: tr.linearNet };
    return out;
  });
}
