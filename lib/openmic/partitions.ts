// Per-instrument train/validation/test partitions. OpenMIC labels are partial, so each instrument is its own
// binary task over the clips labelled for it (relevance > 0.5 present, < 0.5 absent); the test set is always
// split01 test, and the validation fold is carved out of split01 train by one of three documented rules.
import { DataError, ArgumentError, oneOf } from '../errors';
import { Rng } from '../random';

/** How a validation fold is drawn from split01 train (see PartitionOptions.validation). */
export const VALIDATION_RULES = ['stratified', 'gururani2019', 'artist', 'none'] as const;
export type ValidationRule = (typeof VALIDATION_RULES)[number];

export interface PartitionOptions {
  /**
   * - `stratified` (default): a seeded random `valFraction` of the instrument's labelled train clips, drawn
   *   separately from positives and negatives;
   * - `gururani2019`: the fixed clip-level 15 % of Gururani et al. (2019), from `gururaniSplit`;
   * - `artist`: artist-disjoint, seeded, stratified by each artist's majority target; needs the metadata CSV;
   * - `none`: no validation fold.
   */
  validation?: ValidationRule;
  valFraction?: number;
  seed?: number;
  /** Path of gururani2019_trainval_split_keys.csv (default: looked up under the dataset root). */
  gururaniSplit?: string;
  /** Restrict to these instruments (class-map names); default all, in class-map order. */
  instruments?: string[];
}

export interface SplitPart {
  keys: string[];
  /** 1 present, 0 absent, aligned with keys. */
  targets: Uint8Array;
  pos: number;
  neg: number;
}

export interface InstrumentPartition {
  instrument: string;
  index: number;
  train: SplitPart;
  val: SplitPart;
  test: SplitPart;
}

export interface PartitionSummaryRow {
  instrument: string;
  train: { pos: number; neg: number };
  val: { pos: number; neg: number };
  test: { pos: number; neg: number };
}

/** What partitioning needs from a dataset. */
export interface PartitionSource {
  instruments: readonly string[];
  train: readonly string[];
  test: readonly string[];
  /** 1, 0, or undefined when unlabelled. */
  target(key: string, instrument: number): 0 | 1 | undefined;
  artistOf(key: string): string | undefined;
  hasMetadata: boolean;
  metadataPath?: string;
  gururaniKeys(explicitPath?: string): { train: Set<string>; val: Set<string>; file: string };
}

function part(keys: string[], target: (k: string) => 0 | 1): SplitPart {
  const sorted = keys.slice().sort();
  const targets = Uint8Array.from(sorted, target);
  let pos = 0;
  for (const t of targets) pos += t;
  return { keys: sorted, targets, pos, neg: targets.length - pos };
}

export function buildPartitions(src: PartitionSource, options: PartitionOptions = {}): InstrumentPartition[] {
  const rule = options.validation ?? 'stratified';
  oneOf('validation', VALIDATION_RULES, rule);
  const frac = options.valFraction ?? 0.15;
  if (!(frac >= 0 && frac < 1)) throw new ArgumentError('ERR_INVALID_ARGUMENT', `valFraction must be in [0, 1); got ${frac}`);
  const seed = options.seed ?? 0;
  const names = options.instruments ?? src.instruments.slice();
  for (const n of names) if (!src.instruments.includes(n)) throw new ArgumentError('ERR_INVALID_ARGUMENT', `unknown instrument '${n}'`);
  if (rule === 'artist' && !src.hasMetadata) {
    throw new DataError('ERR_DATA_METADATA', 'artist-disjoint validation needs openmic-2018-metadata.csv (artist_id), which this dataset does not have', {
      input: src.metadataPath,
    });
  }
  const gururani = rule === 'gururani2019' ? src.gururaniKeys(options.gururaniSplit) : undefined;
  if (gururani) {
    const missing = src.train.filter((k) => !gururani.train.has(k) && !gururani.val.has(k));
    if (missing.length > 0)
      throw new DataError(
        'ERR_DATA_SPLIT',
        `${gururani.file}: ${missing.length} train key(s) of this dataset are not in the Gururani split, e.g. '${missing[0]}'`,
        { input: gururani.file },
      );
  }

  return names.map((instrument) => {
    const index = src.instruments.indexOf(instrument);
    const t = (k: string) => src.target(k, index) as 0 | 1;
    const labelled = (keys: readonly string[]) => keys.filter((k) => src.target(k, index) !== undefined);
    const trainAll = labelled(src.train);
    let val: string[];
    if (rule === 'none') val = [];
    else if (rule === 'gururani2019') val = trainAll.filter((k) => gururani!.val.has(k));
    else if (rule === 'stratified') val = stratifiedFold(trainAll, t, frac, new Rng(`${seed}:stratified:${instrument}`));
    else
      val = artistFold(
        trainAll,
        t,
        (k) => {
          const a = src.artistOf(k);
          if (a === undefined)
            throw new DataError('ERR_DATA_METADATA', `${src.metadataPath}: no metadata row (artist_id) for '${k}'`, { input: src.metadataPath });
          return a;
        },
        frac,
        new Rng(`${seed}:artist:${instrument}`),
      );
    const valSet = new Set(val);
    return {
      instrument,
      index,
      train: part(
        trainAll.filter((k) => !valSet.has(k)),
        t,
      ),
      val: part(val, t),
      test: part(labelled(src.test), t),
    };
  });
}

/** round(frac * n) positives and round(frac * n) negatives, each drawn without replacement. */
function stratifiedFold(keys: string[], target: (k: string) => 0 | 1, frac: number, rng: Rng): string[] {
  const out: string[] = [];
  for (const cls of [1, 0] as const) {
    const members = keys.filter((k) => target(k) === cls).sort();
    out.push(...rng.shuffle(members).slice(0, Math.round(frac * members.length)));
  }
  return out;
}

/**
 * Whole artists go to validation. Artists are stratified by their majority target for this instrument
 * (ties count as positive), shuffled, and taken greedily while that brings the stratum's validation clip
 * count closer to frac of its clips.
 */
function artistFold(keys: string[], target: (k: string) => 0 | 1, artistOf: (k: string) => string, frac: number, rng: Rng): string[] {
  const byArtist = new Map<string, string[]>();
  for (const k of keys.slice().sort()) {
    const a = artistOf(k);
    const list = byArtist.get(a) ?? [];
    list.push(k);
    byArtist.set(a, list);
  }
  const strata: [string[], string[]] = [[], []];
  for (const [artist, clips] of [...byArtist].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const pos = clips.filter((k) => target(k) === 1).length;
    strata[pos * 2 >= clips.length ? 1 : 0].push(artist);
  }
  const out: string[] = [];
  for (const artists of strata) {
    const total = artists.reduce((n, a) => n + byArtist.get(a)!.length, 0);
    const goal = frac * total;
    let taken = 0;
    for (const a of rng.shuffle(artists.slice())) {
      const n = byArtist.get(a)!.length;
      if (Math.abs(taken + n - goal) < Math.abs(taken - goal)) {
        taken += n;
        out.push(...byArtist.get(a)!);
      }
    }
  }
  return out;
}

/** Per-instrument positive/negative counts per split. */
export function partitionSummary(parts: readonly InstrumentPartition[]): PartitionSummaryRow[] {
  return parts.map((p) => ({
    instrument: p.instrument,
    train: { pos: p.train.pos, neg: p.train.neg },
    val: { pos: p.val.pos, neg: p.val.neg },
    test: { pos: p.test.pos, neg: p.test.neg },
  }));
}
