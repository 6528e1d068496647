// The CLI's one set of flag parsers and the flag groups commands share. Choices come from the library's runtime
// lists (PRECISIONS, POOLINGS, FORMATTINGS, ...), so a flag never allows what the library refuses; a bad flag
// is commander's InvalidArgumentError (usage error, exit 1) before any work starts.
import { InvalidArgumentError, type Command } from 'commander';
import { FORMATTINGS } from '../audio';
import { invalidArgument, orList } from '../errors';
import { datasetItems, fileItems, parseShard, resolveSettings, selectShard, type ExtractionSettings, type WorkItem } from '../extraction';
import { DEFAULT_PRECISION, POOLINGS, PRECISION_CHOICES, PRECISIONS, WINDOWS, type JukeboxPrecision, type PrecisionChoice } from '../model';
import { VALIDATION_RULES, type PartitionOptions, type ValidationRule } from '../openmic';
import { MATMUL_PRECISIONS, PAPER_GRID, TRAINING_DEFAULTS, type MatmulPrecision, type ProbeGrid } from '../probes';
import { DEFAULT_DEVICE, type Device } from '../runtime';
import { STORE_DTYPES } from '../store';

/** An integer flag within [min, max]. */
export function integer(name: string, range: { min: number; max?: number }) {
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < range.min || n > max) {
      throw new InvalidArgumentError(
        range.max === undefined ? `${name} must be an integer >= ${range.min}` : `${name} must be an integer in ${range.min}..${max}`,
      );
    }
    return n;
  };
}

/** A finite number > 0. */
export function positiveNumber(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
    return n;
  };
}

/** One of `values`. */
export function choice<T extends string>(name: string, values: readonly T[]) {
  return (v: string): T => {
    if (!(values as readonly string[]).includes(v)) throw new InvalidArgumentError(`${name} must be ${orList(values)}`);
    return v as T;
  };
}

/** A comma-separated list ("fp32,bf16", "1,4"), each value checked by `one` (e.g. choice or integer). */
export function commaList<T>(name: string, one: (v: string) => T) {
  return (v: string): T[] => {
    const parts = v.split(',').map((s) => s.trim());
    if (parts.length === 0 || parts.some((p) => p === '')) throw new InvalidArgumentError(`${name} takes values separated by commas (e.g. 1,4); got '${v}'`);
    return parts.map(one);
  };
}

/** "36" or "12,24,36": 1-based layer numbers. */
export function layerList(v: string): number[] {
  const parts = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const out = parts.map((p) => Number(p));
  if (out.length === 0 || !out.every((n, i) => /^\d+$/.test(parts[i]!) && n >= 1))
    throw new InvalidArgumentError('--layers must be 1-based layer numbers, comma-separated (e.g. 36 or 12,24,36)');
  return out;
}

/** The device flag: passed to the core, which owns the grammar (cpu, cuda, cuda:N, auto). */
export const DEVICE_HELP = 'cpu | cuda | cuda:N | auto';

/**
 * --device, one flag with one default (DEFAULT_DEVICE, the library's too) for every command that computes: extract,
 * worker, train, study, predict.
 */
export function addDeviceOption(cmd: Command): Command {
  return cmd.option('--device <device>', `${DEVICE_HELP} (auto: a GPU when LibTorch sees one, else the CPU)`, DEFAULT_DEVICE);
}

/**
 * --precision of the prior's blocks (default DEFAULT_PRECISION). `auto` only where this process loads the model
 * (`withAuto`): what it resolves to there is what the features record. `note` says what the flag means for the
 * command.
 */
export function addPrecisionOption(cmd: Command, { withAuto = false, note }: { withAuto?: boolean; note: string }): Command {
  const precisions = withAuto ? PRECISION_CHOICES : PRECISIONS;
  const auto = withAuto ? "; auto: the device's fastest native precision" : '';
  return cmd.option('--precision <p>', `${precisions.join(' | ')} (${note}${auto})`, choice('--precision', precisions), DEFAULT_PRECISION);
}

// --- the feature settings of `extract` and `queue add` -----------------------------------------------------

/**
 * The feature-settings flags shared by `extract` and `queue add`. `--precision auto` only where this process loads
 * the model (`withAuto`): the settings record the precision it resolves to there.
 */
export function addSettingsOptions(cmd: Command, { withAuto = false }: { withAuto?: boolean } = {}): Command {
  cmd
    .option('--layers <list>', "1-based layers, comma-separated (default 36, or the model's last layer if shallower)", layerList)
    .option('--pooling <mode>', POOLINGS.join(' | '), choice('--pooling', POOLINGS), 'mean')
    .option('--segment-tokens <k>', 'segments pooling: tokens per segment', integer('--segment-tokens', { min: 1 }))
    .option('--segment-seconds <s>', 'segments pooling: seconds per segment', positiveNumber('--segment-seconds'))
    .option('--formatting <mode>', FORMATTINGS.join(' | '), choice('--formatting', FORMATTINGS), 'tile')
    .option('--factor <x>', 'tile/pad/upsample factor (upsample default 6.2)', positiveNumber('--factor'))
    .option('--target-seconds <s>', 'tile/pad target length (default 62)', positiveNumber('--target-seconds'))
    .option('--windows <which>', `${WINDOWS.join(' | ')} (first: jukemir)`, choice('--windows', WINDOWS), 'first')
    .option('--dtype <dtype>', `stored dtype: ${STORE_DTYPES.join(' | ')}`, choice('--dtype', STORE_DTYPES), 'float32');
  return addPrecisionOption(cmd, { withAuto, note: 'part of the settings: features differ' });
}

/** The settings flags as commander parses them: the extraction settings, model and layers aside. */
export type SettingsOptions = Omit<ExtractionSettings, 'model' | 'layers' | 'precision'> & { layers?: number[]; precision: PrecisionChoice };

/** `precision` is the loaded model's (where `--precision auto` was allowed), else the flag's. */
export function settingsFromOptions(
  model: { id: string; path?: string; preset?: string; precision?: JukeboxPrecision },
  opts: SettingsOptions,
  modelLayers?: number,
): ExtractionSettings {
  return resolveSettings({
    model: { id: model.id, path: model.path, preset: model.preset },
    modelLayers,
    precision: model.precision ?? (opts.precision as JukeboxPrecision),
    layers: opts.layers,
    pooling: opts.pooling,
    segmentTokens: opts.segmentTokens,
    segmentSeconds: opts.segmentSeconds,
    formatting: opts.formatting,
    factor: opts.factor,
    targetSeconds: opts.targetSeconds,
    windows: opts.windows,
    dtype: opts.dtype,
  });
}

/** The work list of `--dataset ROOT` or FILES..., one of the two, optionally one shard of it. */
export function workItems(dataset: string | undefined, files: string[], shard?: string): WorkItem[] {
  if ((dataset === undefined) === (files.length === 0)) throw invalidArgument('give either --dataset ROOT or audio FILES (not both, not neither)');
  const items = dataset !== undefined ? datasetItems(dataset) : fileItems(files);
  return shard ? selectShard(items, parseShard(shard)) : items;
}

// --- training flags of `train` and `study` -------------------------------------------------------------------

/** `--allow-missing` of train, study and report: by default, labelled clips without features are an error. */
export function addAllowMissingFlag(cmd: Command): Command {
  return cmd.option('--allow-missing', 'go on when labelled clips of the partitions have no features (the probe set and its report record how many)');
}

/** "hidden=[];[512];[512,256] dropout=0.25,0.5 l2=0,1e-4": axes not given keep `base`'s values (the paper's). */
export function gridSpec(text: string, base: ProbeGrid = PAPER_GRID): ProbeGrid {
  const grid: ProbeGrid = { ...(base ?? PAPER_GRID) };
  const numbers = (k: string, v: string) =>
    v.split(',').map((x) => {
      const n = Number(x);
      if (x.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`--grid: ${k} takes numbers separated by commas; got '${v}'`);
      return n;
    });
  for (const part of text.split(/\s+/).filter(Boolean)) {
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    const v = eq < 0 ? '' : part.slice(eq + 1);
    if (k === 'hidden') {
      grid.hidden = v.split(';').map((h) => {
        const m = /^\[([\d,\s]*)\]$/.exec(h.trim());
        if (!m) throw new InvalidArgumentError(`--grid: hidden takes layer lists separated by ';', e.g. [];[512];[512,256]; got '${h}'`);
        return m[1]!
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
          .map(Number);
      });
    } else if (k === 'dropout') grid.dropout = numbers(k, v);
    else if (k === 'l2') grid.l2 = numbers(k, v);
    else throw new InvalidArgumentError(`--grid: unknown key '${k}' (hidden, dropout, l2)`);
  }
  return grid;
}

export interface TrainingFlags {
  epochs: number;
  batch: number;
  seed: number;
  validation: ValidationRule;
  valFraction?: number;
  gururani?: string;
  standardize: boolean;
  device: Device;
  grid?: ProbeGrid;
  probePrecision: MatmulPrecision;
}

/** The training flags shared by `train` and `study`. */
export function addTrainingFlags(cmd: Command): Command {
  const d = TRAINING_DEFAULTS;
  cmd
    .option('--epochs <n>', 'epochs per probe', integer('--epochs', { min: 1 }), d.epochs)
    .option('--batch <n>', 'batch size (even: half positives, half negatives)', integer('--batch', { min: 2 }), d.batchSize)
    .option('--seed <n>', 'seed of sampling, dropout and the validation split', integer('--seed', { min: 0 }), d.seed)
    .option('--validation <rule>', VALIDATION_RULES.join(' | '), choice('--validation', VALIDATION_RULES), 'stratified')
    .option('--val-fraction <f>', 'validation share of split01 train (stratified/artist)', positiveNumber('--val-fraction'))
    .option('--gururani <csv>', 'gururani2019_trainval_split_keys.csv (for --validation gururani2019)')
    .option('--no-standardize', 'do not standardise features (default: train mean/std, as jukemir)')
    .option('--grid <spec>', "grid, e.g. 'hidden=[];[512] dropout=0.5 l2=0,1e-4' (default: the paper's 27 configs)", gridSpec)
    .option(
      '--probe-precision <p>',
      `${MATMUL_PRECISIONS.join(' | ')}: arithmetic of the probe trainer's products (bf16: faster on CPUs with AMX/AVX512-BF16)`,
      choice('--probe-precision', MATMUL_PRECISIONS),
      d.matmulPrecision,
    );
  return addDeviceOption(cmd);
}

/** The training options `train` and `study` share, from their common flags. */
export function trainingOptions(f: TrainingFlags) {
  const partitions: PartitionOptions = { validation: f.validation, seed: f.seed };
  if (f.valFraction !== undefined) partitions.valFraction = f.valFraction;
  if (f.gururani) partitions.gururaniSplit = f.gururani;
  return {
    partitions,
    epochs: f.epochs,
    batchSize: f.batch,
    seed: f.seed,
    grid: f.grid,
    standardize: f.standardize,
    device: f.device,
    matmulPrecision: f.probePrecision,
  };
}
