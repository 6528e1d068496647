// trainProbeGrid: every instrument's grid trained at once in the native core, each instrument's config with the
// lowest validation loss selected, every config evaluated on test. The core checks the option values
// (native/core/probes.cpp validate); this side applies the single-class policy and assembles the ProbeSet.
import crypto from 'node:crypto';
import { binding } from '../addon';
import type { RawProbeConfig, RawProbeGridResult, RawProbeProgress, RawProbeTask } from '../addon';
import { abortError, ArgumentError, DataError, native, oneOf, optionsObject } from '../errors';
import { checkRecipe, type FeatureRecipe } from '../recipe';
import { DEFAULT_DEVICE, type Device } from '../runtime';
import { ATTENTION_GRID, gridConfigs, PAPER_GRID, type ProbeConfig, type ProbeGrid } from './grid';
import { binaryMetrics } from './metrics';
import {
  MATMUL_PRECISIONS,
  PROBE_THRESHOLD,
  ProbeSet,
  type MatmulPrecision,
  type SegmentTimes,
  type ClassCounts,
  type ConfigResult,
  type InstrumentResult,
  type ProbeSetInfo,
  type SkippedInstrument,
} from './probe-set';

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

export interface TrainProbeGridOptions {
  /**
   * One row-major N x dim matrix shared by all instruments (or N x segments x dim with `segments`); tasks index
   * its clips. The native trainer reads it in place without a copy until the promise settles: do not change or
   * transfer it meanwhile.
   */
  features: Float32Array;
  dim: number;
  tasks: ProbeTask[];
  /**
   * Segment features for attention probes: every clip is `segments` rows of `dim` values ([N, segments, dim]).
   * Absent: one vector per clip, for the paper's probes.
   */
  segments?: number;
  /** With segments: how many leading segments of each clip are real (1..segments); the rest is padding. Default: all. */
  validSegments?: Int32Array;
  /** With segments: when each segment happens (saved with the probe set for figures; does not change training). */
  segmentTimes?: SegmentTimes;
  /** Default: PAPER_GRID, or ATTENTION_GRID with segments. */
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
  /** Default DEFAULT_DEVICE ('auto': cuda:0 when LibTorch sees a device, else the CPU). */
  device?: Device;
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
   * The arithmetic of the training steps' matrix products (recorded in `info.options`). 'fp32' (default) is the
   * paper's. 'bf16' rounds the products' operands (activations, output gradients and a bf16 copy of the weights)
   * to bfloat16 and sums in fp32; master weights, Adam's moments, biases, the loss and every reduction stay fp32,
   * and validation (which picks the kept epoch), the test pass and the saved nets are fp32, so `predict` gives
   * the set's test probabilities. Measured 1.29x the fp32 grid on 2 cores with AMX-BF16 (benchmarks/RESULTS.md:
   * Adam's fp32 state traffic, which bf16 does not touch, bounds it); on CPUs without native bf16, correct but
   * expect no gain. Results differ from fp32 by training noise (docs/contracts.md).
   */
  matmulPrecision?: MatmulPrecision;
  /**
   * Intra-op threads while training (default: 1 for stacks under ~50 MFLOP a step, where threading costs more than
   * it gains, else the process setting from CALMKIT_THREADS / OMP_NUM_THREADS / cores).
   */
  threads?: number;
  /**
   * How the features were made (checked, then saved with the probe set): what predictAudio retraces for new audio.
   * trainFromStore fills it from the feature store.
   */
  recipe?: FeatureRecipe;
  /** Passed through into the saved file as it is, e.g. the feature store's manifest. */
  manifest?: unknown;
  /**
   * Labelled clips of the tasks' partitions that had no features and were left out (trainFromStore with
   * `allowMissing`): saved as `info.missingClips`, and said by every report of the set.
   */
  missingClips?: number;
  signal?: AbortSignal;
  onProgress?: (p: ProbeProgress) => void;
}

/**
 * The probe trainer's defaults, in one place: jukemir's protocol (800 epochs of batches of 64, Adam at 1e-4, seed 0,
 * standardised features, fp32 products) and where the work runs. The CLI's training flags and the study's reuse
 * keys read them; trainProbeGrid fills them in through resolveTrainingOptions.
 */
export const TRAINING_DEFAULTS = Object.freeze({
  epochs: 800,
  batchSize: 64,
  lr: 1e-4,
  seed: 0,
  standardize: true,
  matmulPrecision: 'fp32' as MatmulPrecision,
  device: DEFAULT_DEVICE,
  /** Stacks of at most 4 GiB of weights, Adam state and activations. */
  maxStackBytes: 4 * 2 ** 30,
  maxProbesPerStack: 0,
  onSingleClass: 'skip' as 'skip' | 'error',
  keepAllWeights: false,
  batchedStep: false,
  threads: 0,
});

/** The training options trainProbeGrid runs with: every default filled in, the grid expanded. */
export interface ResolvedTrainingOptions {
  grid: ProbeConfig[];
  epochs: number;
  batchSize: number;
  lr: number;
  seed: number;
  standardize: boolean;
  matmulPrecision: MatmulPrecision;
  device: Device;
  maxStackBytes: number;
  maxProbesPerStack: number;
  onSingleClass: 'skip' | 'error';
  keepAllWeights: boolean;
  batchedStep: boolean;
  threads: number;
}

/**
 * The training side's counterpart of resolveSettings: the options with TRAINING_DEFAULTS filled in and the grid
 * (default PAPER_GRID, or ATTENTION_GRID with segments) expanded and its shape checked. Option values (epochs,
 * rates, the grid's numbers, the device) are the core's to check (native/core/probes.cpp validate); the names
 * that have a fixed list (matmulPrecision, onSingleClass) are checked here.
 */
export function resolveTrainingOptions(options: Omit<Partial<TrainProbeGridOptions>, 'grid'> & { grid?: ProbeGrid }): ResolvedTrainingOptions {
  const d = TRAINING_DEFAULTS;
  const onSingleClass = options.onSingleClass ?? d.onSingleClass;
  if (onSingleClass !== 'skip' && onSingleClass !== 'error') throw new ArgumentError('ERR_INVALID_ARGUMENT', `onSingleClass must be 'skip' or 'error'`);
  return {
    grid: gridConfigs(options.grid ?? (options.segments !== undefined ? ATTENTION_GRID : PAPER_GRID)),
    epochs: options.epochs ?? d.epochs,
    batchSize: options.batchSize ?? d.batchSize,
    lr: options.lr ?? d.lr,
    seed: options.seed ?? d.seed,
    standardize: options.standardize ?? d.standardize,
    matmulPrecision: oneOf('matmulPrecision', MATMUL_PRECISIONS, options.matmulPrecision ?? d.matmulPrecision),
    device: options.device ?? d.device,
    maxStackBytes: options.maxStackBytes ?? d.maxStackBytes,
    maxProbesPerStack: options.maxProbesPerStack ?? d.maxProbesPerStack,
    onSingleClass,
    keepAllWeights: options.keepAllWeights ?? d.keepAllWeights,
    batchedStep: options.batchedStep ?? d.batchedStep,
    threads: options.threads ?? d.threads,
  };
}

function counts(s: ProbeSplit): ClassCounts {
  let positives = 0;
  for (let i = 0; i < s.targets.length; i++) if (s.targets[i] === 1) positives++;
  return { positives, negatives: s.targets.length - positives };
}

function checkSplitTypes(task: ProbeTask, which: 'train' | 'val' | 'test'): void {
  const s = task[which];
  if (!s || !(s.rows instanceof Int32Array) || !(s.targets instanceof Uint8Array)) {
    throw new ArgumentError('ERR_INVALID_ARGUMENT', `instrument '${task.instrument}' ${which} must be { rows: Int32Array, targets: Uint8Array }`, {
      input: task.instrument,
    });
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
  options = optionsObject('options', options);
  const { features, tasks } = options;
  if (!(features instanceof Float32Array)) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'features must be a Float32Array');
  const dim = options.dim;
  if (features.length === 0) throw new DataError('ERR_DATA_MISMATCH', 'features is empty');
  if (!Array.isArray(tasks) || tasks.length === 0) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'tasks must be a non-empty array');
  // Option values (epochs, batch size, rates, the grid's numbers, the device) are the core's to check
  // (native/core/probes.cpp validate); here only their defaults and the single-class policy.
  const segments = options.segments;
  if (segments !== undefined && (!Number.isInteger(segments) || segments < 1)) {
    throw new ArgumentError('ERR_INVALID_ARGUMENT', `segments must be a positive integer; got ${String(segments)}`);
  }
  if (options.validSegments !== undefined && !(options.validSegments instanceof Int32Array)) {
    throw new ArgumentError('ERR_INVALID_ARGUMENT', 'validSegments must be an Int32Array (real segments per clip)');
  }
  const resolved = resolveTrainingOptions(options);
  const { grid, epochs, batchSize, lr, seed, standardize, matmulPrecision, onSingleClass } = resolved;
  const recipe = options.recipe === undefined ? undefined : checkRecipe(options.recipe, 'recipe');

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
  if (trained.length === 0)
    throw new DataError('ERR_DATA_SINGLE_CLASS', `no instrument can be trained: ${skipped.map((s) => `${s.instrument} (${s.reason})`).join('; ')}`);
  if (options.signal?.aborted) throw abortError('probe training was aborted before it started', options.signal);

  const rawTasks: RawProbeTask[] = trained.map((t) => ({ instrument: t.instrument, train: t.train, val: t.val, test: t.test }));
  const rawConfigs: RawProbeConfig[] = grid.map((c) => ({
    hidden: c.hidden,
    dropout: c.dropout,
    l2: c.l2,
    attention: c.attention === true,
    ...(c.head ? { head: c.head } : {}),
  }));
  const onProgress = options.onProgress ? (p: RawProbeProgress) => options.onProgress!({ ...p }) : undefined;
  const raw = await native(
    () => {
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
          device: resolved.device,
          maxStackBytes: resolved.maxStackBytes,
          maxProbesPerStack: resolved.maxProbesPerStack,
          keepAllWeights: resolved.keepAllWeights,
          batchedStep: resolved.batchedStep,
          matmulPrecision,
          threads: resolved.threads,
          segments: segments ?? 0,
          validSegments: options.validSegments,
        },
        control,
        onProgress,
      );
      const onAbort = () => binding().cancel(control);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      return job.finally(() => options.signal?.removeEventListener('abort', onAbort));
    },
    undefined,
    options.signal,
  );

  const rowsInMatrix = features.length / (dim * (segments ?? 1));
  const info: ProbeSetInfo = {
    format: 1,
    createdAt: new Date().toISOString(),
    dim,
    ...(segments !== undefined ? { segments } : {}),
    ...(segments !== undefined && options.segmentTimes ? { segmentTimes: options.segmentTimes } : {}),
    grid,
    options: { epochs, batchSize, lr, seed, standardize, threshold: PROBE_THRESHOLD, matmulPrecision },
    training: { device: raw.device, seconds: raw.seconds, stacks: raw.stacks },
    hashes: {
      features: sha256(features),
      featureRows: rowsInMatrix,
      ...(options.validSegments ? { validSegments: sha256(options.validSegments) } : {}),
      tasks: Object.fromEntries(trained.map((t) => [t.instrument, { train: splitHash(t.train), val: splitHash(t.val), test: splitHash(t.test) }])),
    },
  };
  if (recipe !== undefined) info.recipe = recipe;
  if (options.manifest !== undefined) info.manifest = options.manifest;
  if (options.missingClips !== undefined && options.missingClips > 0) info.missingClips = options.missingClips;
  return ProbeSet.fromState({ info, instruments: assemble(raw, trained, grid), skipped });
}

function assemble(raw: RawProbeGridResult, tasks: ProbeTask[], grid: ProbeConfig[]): InstrumentResult[] {
  return tasks.map((task, t) => {
    const configs = grid.map((config, c): ConfigResult => {
      const p = raw.probes[t * grid.length + c]!; // task-major, one per (task, config)
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
    const tr = raw.tasks[t]!;
    const out: InstrumentResult = {
      instrument: task.instrument,
      counts: { train: counts(task.train), val: counts(task.val), test: counts(task.test) },
      configs,
      selected: tr.selected,
      testTargets: task.test.targets.slice(),
      net: tr.selectedNet,
    };
    const attention = raw.probes[t * grid.length + tr.selected]!.testAttention;
    if (attention) out.testAttention = attention;
    if (tr.linear >= 0 && tr.linearNet) out.linear = { configIndex: tr.linear, net: tr.linearNet };
    return out;
  });
}
