// A probe set: per instrument the selected probe and the whole grid's results, with everything needed to
// reproduce it; predict, save and load.
import fs from 'node:fs';
import path from 'node:path';
import { binding } from '../addon';
import type { RawProbeNet } from '../addon';
import { ArgumentError, DataError, ProbeError, native, nonEmptyString, optionsObject } from '../errors';
import { checkRecipe, recipeOfStoreSpec, type FeatureRecipe } from '../recipe';
import type { StoreSpec } from '../store';
import { DEFAULT_DEVICE, type Device } from '../runtime';
import { atomicReplace, readRegularFile, withFsErrors } from '../files';
import { decodeProbeFile, encodeProbeFile } from './file';
import type { ProbeConfig } from './grid';
import { type BinaryMetrics, type MacroMetrics, macroMetrics } from './metrics';

/** The decision threshold on P(present): present when strictly above. */
export const PROBE_THRESHOLD = 0.5;

/** One Linear layer: weight is [in][out] row-major, y = x W + b. */
export interface ProbeLayer {
  in: number;
  out: number;
  weight: Float32Array;
  bias: Float32Array;
}

/**
 * A trained probe as weights: standardise (if mean/std), Linear -> ReLU ... -> Linear -> sigmoid. An attention
 * probe runs the layers on every segment (the last gives the segment's score) and `attention` on the last layer's
 * input (the segment's attention logit); the clip's logit is the softmax-weighted sum of the scores.
 */
export interface ProbeNet {
  mean?: Float32Array;
  std?: Float32Array;
  layers: ProbeLayer[];
  attention?: ProbeLayer;
  /** A probe of another head (ProbeConfig.head): its name and its own weights, in the head's order. */
  head?: string;
  headLayers?: ProbeLayer[];
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
  /**
   * Attention probes: where the selected probe looked in each test clip, its softmax weights over the clip's
   * segments, [test clips][segments] (0 on padding), in the order of `testTargets`.
   */
  testAttention?: Float32Array;
}

export interface SkippedInstrument {
  instrument: string;
  reason: string;
}

/** One row of the paper's Table I. */
export interface TableRow {
  instrument: string;
  hidden: number[];
  /** The selected probe pools segments with attention. */
  attention?: true;
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
  /** Clips in `features` (default: features.length / dim, or / (segments x dim) for attention probes). */
  n?: number;
  /** A subset of the trained instruments (default: all). Unknown names are an ArgumentError. */
  instruments?: string[];
  device?: Device;
  /**
   * Attention probes: segments per clip of `features` (default: the training features' `info.segments`; an attention
   * probe reads any number).
   */
  segments?: number;
  /** Attention probes: real segments per clip (1..segments; the rest of a clip's rows are padding). Default: all. */
  validSegments?: Int32Array;
  /** Attention probes: also return every clip's attention weights over its segments. */
  attentionWeights?: boolean;
}

/** Attention probes' predictions can carry where each probe looked: weights [clip][instrument][segment]. */
export interface AttentionPredictions extends Predictions {
  segments: number;
  attentionWeights?: Float32Array;
}

/**
 * Where each segment of an attention probe set's clips lies in time, for figures: `spans[s]` = [start, end) of
 * segment s in seconds, measured on the axis `axis` describes (e.g. "seconds of the clip").
 */
export interface SegmentTimes {
  axis: string;
  spans: [number, number][];
}

/** The arithmetic of the probe trainer's matrix products (TrainProbeGridOptions.matmulPrecision). */
export const MATMUL_PRECISIONS = ['fp32', 'bf16'] as const;
export type MatmulPrecision = (typeof MATMUL_PRECISIONS)[number];

/** Everything a probe set records about how it was made. */
export interface ProbeSetInfo {
  format: 1;
  createdAt: string;
  /** Width of one feature vector (one segment's, for attention probes). */
  dim: number;
  /** Attention probes: segments per clip of the training features ([clips, segments, dim]). Absent: one vector per clip. */
  segments?: number;
  /** Attention probes: when the segments happen, when the trainer was told (descriptive; figures use it). */
  segmentTimes?: SegmentTimes;
  grid: ProbeConfig[];
  /** matmulPrecision: absent in sets saved before it existed, which trained in fp32. */
  options: { epochs: number; batchSize: number; lr: number; seed: number; standardize: boolean; threshold: number; matmulPrecision?: MatmulPrecision };
  training: { device: string; seconds: number; stacks: number };
  /**
   * sha256 (hex) of the feature matrix's bytes (featureRows x dim float32, little-endian) and, per instrument and
   * split, of its rows (int32) followed by its targets (uint8).
   */
  hashes: { features: string; featureRows: number; validSegments?: string; tasks: Record<string, { train: string; val: string; test: string }> };
  /**
   * How the features were made (lib/recipe.ts): the path predictAudio takes for new audio. Absent when
   * the probes were trained on features from elsewhere. Probe sets saved before the recipe existed get it from
   * their store manifest (`manifest.store.spec`) when they are loaded.
   */
  recipe?: FeatureRecipe;
  /** Free-form, as given to trainProbeGrid (trainFromStore: the store's manifest, partitions, missing clips). */
  manifest?: unknown;
  /** Labelled clips that had no features and were left out (trained with `allowMissing`); absent when none were. */
  missingClips?: number;
}

/** @internal The saved form of a probe set. */
export interface ProbeSetState {
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
      const c = r.configs[r.selected]!;
      return {
        instrument: r.instrument,
        hidden: c.config.hidden,
        ...(c.config.attention ? { attention: true as const } : {}),
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
    return { rows, macro: macroMetrics(this.results.map((r) => r.configs[r.selected]!.test)) };
  }

  /**
   * P(present) and the decision at 0.5 of each selected probe, for one clip (features.length === dim) or n clips
   * (row-major n x dim; attention probes: n x segments x dim, with `validSegments` for padded clips and
   * `attentionWeights` for where each probe looked). Runs in the native core, off the JS thread.
   */
  async predict(features: Float32Array, options: number | PredictOptions = {}): Promise<AttentionPredictions | Predictions> {
    const opts: PredictOptions = typeof options === 'number' ? { n: options } : optionsObject('options', options);
    if (!(features instanceof Float32Array)) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'features must be a Float32Array');
    const dim = this.info.dim;
    if (opts.segments !== undefined && (this.info.segments === undefined || !Number.isInteger(opts.segments) || opts.segments < 1)) {
      throw new ArgumentError(
        'ERR_INVALID_ARGUMENT',
        this.info.segments === undefined ? 'segments applies to attention probes only' : `segments must be a positive integer; got ${opts.segments}`,
      );
    }
    const segments = opts.segments ?? this.info.segments;
    const per = dim * (segments ?? 1);
    const n = opts.n ?? features.length / per;
    if (!Number.isInteger(n) || n < 1 || n * per !== features.length) {
      const shape = segments ? `n x ${segments} segments x ${dim}` : `n x ${dim}`;
      throw new DataError('ERR_DATA_MISMATCH', `features has ${features.length} values; expected ${shape} (n = ${opts.n ?? `length / ${per}`})`);
    }
    if (segments === undefined && (opts.validSegments !== undefined || opts.attentionWeights)) {
      throw new ArgumentError(
        'ERR_INVALID_ARGUMENT',
        'validSegments, segments and attentionWeights apply to attention probes only; this probe set reads one vector per clip',
      );
    }
    if (opts.validSegments !== undefined && (!(opts.validSegments instanceof Int32Array) || opts.validSegments.length !== n)) {
      throw new ArgumentError('ERR_INVALID_ARGUMENT', `validSegments must be an Int32Array with one count per clip (${n})`);
    }
    const chosen = (opts.instruments ?? this.instruments).map((name) => this.result(name));
    const nets = chosen.map((r) => r.net as RawProbeNet);
    const device = opts.device ?? DEFAULT_DEVICE;
    let probabilities: Float32Array;
    let attentionWeights: Float32Array | undefined;
    if (segments !== undefined) {
      const out = await native(() =>
        binding().predictSegmentProbes(features, dim, segments, opts.validSegments ?? null, nets, device, opts.attentionWeights === true),
      );
      probabilities = out.probabilities;
      attentionWeights = out.weights;
    } else {
      probabilities = await native(() => binding().predictProbes(features, dim, nets, device));
    }
    const present = new Uint8Array(probabilities.length);
    for (let i = 0; i < probabilities.length; i++) present[i] = probabilities[i]! > PROBE_THRESHOLD ? 1 : 0;
    const names = chosen.map((r) => r.instrument);
    const clips = Array.from({ length: n }, (_, i) => {
      const clip: Record<string, { probability: number; present: boolean }> = {};
      names.forEach((name, k) => {
        clip[name] = { probability: probabilities[i * names.length + k]!, present: present[i * names.length + k] === 1 };
      });
      return clip;
    });
    const base = { instruments: names, n, probabilities, present, threshold: PROBE_THRESHOLD, clips };
    if (segments === undefined) return base;
    return attentionWeights ? { ...base, segments, attentionWeights } : { ...base, segments };
  }

  /**
   * Labelled clips of the partitions that had no features when the set was trained, and were left out: 0 when every
   * clip had them (sets saved before `info.missingClips` give the count their store manifest recorded).
   */
  get missingClips(): number {
    if (this.info.missingClips !== undefined) return this.info.missingClips;
    const recorded = (this.info.manifest as { missing?: unknown } | undefined)?.missing;
    return typeof recorded === 'number' && Number.isSafeInteger(recorded) && recorded > 0 ? recorded : 0;
  }

  /** True when the probes pool segment features with attention (info.segments is set). */
  get attention(): boolean {
    return this.info.segments !== undefined;
  }

  /** Writes the probe set (configs, seeds, hashes, manifest, curves, weights) to one file, atomically. */
  async save(file: string): Promise<void> {
    nonEmptyString('file', file);
    const state: ProbeSetState = { info: this.info, instruments: this.results, skipped: this.skipped };
    // Attention probes go in container format 2, so a calmkit that predates them refuses the file instead of
    // reading the nets as MLPs.
    const bytes = encodeProbeFile(state, this.attention ? 2 : 1);
    withFsErrors(
      () => {
        fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
        atomicReplace(file, bytes);
      },
      (reason, cause) => new ProbeError('ERR_PROBE_FILE', `cannot save the probe set to ${file}: ${reason}`, { input: file, cause }),
    );
  }

  /** Reads a file written by save(); ProbeError ERR_PROBE_FILE when it is missing, corrupt or inconsistent. */
  static async load(file: string): Promise<ProbeSet> {
    nonEmptyString('file', file);
    // Checked to be a regular file before it is opened (a FIFO would block the read forever).
    const buf = withFsErrors(
      () => readRegularFile(file),
      (reason, cause) => new ProbeError('ERR_PROBE_FILE', `cannot read probe set ${file}: ${reason}`, { input: file, cause }),
    );
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
  if (info.segments !== undefined && (!Number.isInteger(info.segments) || info.segments < 1)) fail('segments must be a positive integer');
  const sized = (l: ProbeLayer | undefined) =>
    !!l &&
    Number.isSafeInteger(l.in) &&
    Number.isSafeInteger(l.out) &&
    l.in > 0 &&
    l.out > 0 &&
    l.weight instanceof Float32Array &&
    l.weight.length === l.in * l.out &&
    l.bias instanceof Float32Array &&
    l.bias.length === l.out;
  const finite = (a: Float32Array) => a.every((v) => Number.isFinite(v));
  // Every number a prediction uses: finite weights and biases, finite means, positive finite standard deviations.
  const checkNet = (net: ProbeNet | undefined, what: string) => {
    if (!net || !Array.isArray(net.layers)) return fail(`${what} has no layers`);
    for (const [i, l] of net.layers.entries()) {
      if (!sized(l)) fail(`${what}: layer ${i} has the wrong size`);
      if (!finite(l.weight) || !finite(l.bias)) fail(`${what}: layer ${i} has a NaN or infinite weight or bias`);
    }
    if (net.attention !== undefined && (!sized(net.attention) || !finite(net.attention.weight) || !finite(net.attention.bias)))
      fail(`${what}: its attention layer has the wrong size or a NaN or infinite weight`);
    if (net.headLayers !== undefined) {
      if (typeof net.head !== 'string' || !Array.isArray(net.headLayers)) fail(`${what}: its head's weights lack the head's name`);
      for (const [i, l] of net.headLayers.entries()) {
        if (!sized(l) || !finite(l.weight) || !finite(l.bias))
          fail(`${what}: weight ${i} of its ${net.head} head has the wrong size or a NaN or infinite value`);
      }
    }
    if ((net.mean === undefined) !== (net.std === undefined)) fail(`${what} has a mean without a standard deviation or the reverse`);
    if (net.mean !== undefined) {
      if (!(net.mean instanceof Float32Array) || !(net.std instanceof Float32Array) || net.mean.length !== info.dim || net.std.length !== info.dim)
        fail(`${what}: its mean and standard deviation must have ${info.dim} values`);
      if (!finite(net.mean)) fail(`${what}: its mean has a NaN or infinite value`);
      if (!net.std!.every((v) => Number.isFinite(v) && v > 0)) fail(`${what}: its standard deviations must be positive and finite`);
    }
  };
  const seen = new Set<string>();
  for (const r of state.instruments) {
    if (typeof r.instrument !== 'string' || !Array.isArray(r.configs) || !r.configs[r.selected]) fail('an instrument lacks its configs');
    if (seen.has(r.instrument)) fail(`instrument '${r.instrument}' has two entries`);
    seen.add(r.instrument);
    // Every layer's size and values (this net's, its linear twin's, each config's); below, how the layers chain.
    checkNet(r.net, `the probe of '${r.instrument}'`);
    if (r.linear !== undefined) checkNet(r.linear.net, `the linear probe of '${r.instrument}'`);
    r.configs.forEach((c, i) => {
      c?.net !== undefined && checkNet(c.net, `config ${i} of '${r.instrument}'`);
    });
    const layers = r.net?.layers;
    if (!Array.isArray(layers) || layers.length === 0 || layers[0]!.in !== info.dim || layers[layers.length - 1]!.out !== 1) {
      fail(`the probe of '${r.instrument}' does not map ${info.dim} features to one logit`);
    }
    const att = r.net.attention;
    // The attention head reads segments, the MLP one vector per clip; another head's reading is the core's to check.
    if (r.net.head === undefined && (att !== undefined) !== (info.segments !== undefined)) {
      fail(
        `the probe of '${r.instrument}' ${att ? 'has an attention layer but the set records no segments' : 'lacks the attention layer its segment features need'}`,
      );
    }
    if (att && (att.in !== layers[layers.length - 1]!.in || att.out !== 1)) fail(`the attention layer of '${r.instrument}' has the wrong size`);
  }
  if (!Array.isArray(state.skipped)) state.skipped = [];
  if (info.recipe !== undefined) {
    try {
      info.recipe = checkRecipe(info.recipe, `${file} (info.recipe)`);
    } catch (err) {
      fail((err as Error).message);
    }
  } else {
    // Saved before the recipe existed: the store's spec in the manifest says the same in the store's form. A spec
    // that does not map leaves the set without a recipe (predictAudio then says so); everything else still works.
    const spec = (info.manifest as { store?: { spec?: StoreSpec } } | undefined)?.store?.spec;
    try {
      const recipe = spec ? recipeOfStoreSpec(spec) : undefined;
      if (recipe) info.recipe = recipe;
    } catch {
      // no recipe
    }
  }
}
