// The OpenMIC-2018 dataset: the release layout (OpenMIC.open) or any folder of audio with labels in the
// aggregated-labels format (OpenMIC.fromFolder). Label semantics follow the release: relevance > 0.5 present,
// < 0.5 absent, exactly 0.5 or no row unlabelled.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { listAudioFiles } from '../audio';
import { ArgumentError, DataError, nonEmptyString, optionsObject } from '../errors';
import { readNpz, type NpzMember } from '../formats';
import { Rng } from '../random';
import {
  RELEASE_KEY,
  classMapFromObject,
  readAggregatedLabels,
  readChecksums,
  readClassMap,
  readGururaniSplit,
  readKeyList,
  readMetadata,
  type LabelRow,
  type MetadataRow,
} from './files';
import { buildPartitions, partitionSummary, type InstrumentPartition, type PartitionOptions, type PartitionSummaryRow } from './partitions';

/** README errata: FMA source files that were corrupted (track ids, the key's first six digits). */
export const CORRUPTED_TRACK_IDS: readonly string[] = ['071826', '071827', '087435', '095253', '095259', '095263', '102144', '113025', '113604', '138485'];
/** README errata: labels corrected by hand (all "present"). */
export const HAND_CORRECTED_LABELS: readonly { key: string; instrument: string }[] = [
  { key: '095253_134400', instrument: 'piano' },
  { key: '095263_96000', instrument: 'mallet_percussion' },
  { key: '113025_99840', instrument: 'trumpet' },
];

export const RELEASE_FILES = {
  classMap: 'class-map.json',
  labels: 'openmic-2018-aggregated-labels.csv',
  metadata: 'openmic-2018-metadata.csv',
  npz: 'openmic-2018.npz',
  vggish: 'vggish',
  train: 'partitions/split01_train.csv',
  test: 'partitions/split01_test.csv',
  audioChecksums: 'checksums/openmic-2018-audio.csv',
  gururani: ['gururani2019_trainval_split_keys.csv', 'attentionmic-gururani2019/gururani2019_trainval_split_keys.csv'],
} as const;

export type MissingAudio = 'require' | 'skip' | 'ignore';

export interface OpenMICOptions {
  /** Clips without audio: `require` (default) is a DataError, `skip` drops them with a report entry, `ignore` does not look. */
  audio?: MissingAudio;
  /** openmic-2018.npz: `auto` (default) uses it when present, `require` fails without it, `ignore` never reads it. */
  npz?: 'auto' | 'require' | 'ignore';
  errata?: {
    /** Drop every clip of the 10 corrupted FMA tracks (default true). */
    skipCorrupted?: boolean;
    /** Add the 3 hand-corrected "present" labels where the labels lack them (default true). */
    applyCorrections?: boolean;
  };
}

export interface FolderOptions {
  audioDir: string;
  labelsCsv: string;
  /** A class-map.json path, a name->index object, or names in index order. */
  classMap: string | Record<string, number> | string[];
  /** Key lists (files, one key per line, or arrays); default a seeded random split. */
  split?: { train: string | string[]; test: string | string[] } | { testFraction?: number; seed?: number };
  metadataCsv?: string;
  /** Label rows or split keys with no audio file: `require` (default) is a DataError, `skip` reports them. */
  audio?: Exclude<MissingAudio, 'ignore'>;
}

export interface SkippedClip {
  key: string;
  reason: 'corrupted-source' | 'missing-audio';
  detail: string;
}

export interface LabelCorrection {
  key: string;
  instrument: string;
  action: 'added' | 'overridden' | 'already-present' | 'clip-absent';
  previous?: number;
}

export interface OpenMICReport {
  /** Where the labels came from. */
  labelSource: 'csv' | 'npz';
  labelRows: number;
  /** Rows with relevance exactly 0.5: kept out of every partition (unlabelled by construction). */
  unlabelledRows: { key: string; instrument: string; line: number }[];
  skipped: SkippedClip[];
  corrections: LabelCorrection[];
  /** Label rows dropped because their clip was skipped. */
  droppedLabelRows: number;
  npz?: { file: string; rows: number; checkedAgainstCsv: boolean };
}

export interface LabelCounts {
  instrument: string;
  train: { pos: number; neg: number; unlabelled: number };
  test: { pos: number; neg: number; unlabelled: number };
}

interface Assembly {
  root?: string;
  instruments: string[];
  train: string[];
  test: string[];
  relevance: Map<string, Float64Array>;
  audioPath: (key: string) => string;
  metadata?: Map<string, MetadataRow>;
  metadataPath?: string;
  checksumsPath?: string;
  report: OpenMICReport;
}

export class OpenMIC {
  readonly root?: string;
  readonly instruments: readonly string[];
  /** split01 train and test keys (or the folder's split), sorted, without skipped clips. */
  readonly train: readonly string[];
  readonly test: readonly string[];
  readonly report: OpenMICReport;
  readonly metadataPath?: string;
  private readonly rel: Map<string, Float64Array>;
  private readonly audioPathOf: (key: string) => string;
  private readonly meta?: Map<string, MetadataRow>;
  private readonly checksumsPath?: string;

  private constructor(a: Assembly) {
    this.root = a.root;
    this.instruments = Object.freeze(a.instruments.slice());
    this.train = Object.freeze(a.train.slice().sort());
    this.test = Object.freeze(a.test.slice().sort());
    this.rel = a.relevance;
    this.audioPathOf = a.audioPath;
    this.meta = a.metadata;
    this.metadataPath = a.metadataPath;
    this.checksumsPath = a.checksumsPath;
    this.report = a.report;
  }

  /** Opens the release layout under `root` (the folder holding class-map.json). */
  static open(root: string, options?: OpenMICOptions): OpenMIC {
    nonEmptyString('root', root);
    options = optionsObject('options', options);
    if (!fs.existsSync(root) || !fs.statSync(root).isDirectory())
      throw new DataError('ERR_DATA_NOT_FOUND', `OpenMIC root ${root} is not a directory`, { input: root });
    const f = (rel: string) => path.join(root, rel);
    const instruments = readClassMap(f(RELEASE_FILES.classMap));
    const trainList = readKeyList(f(RELEASE_FILES.train), 'split file', RELEASE_KEY);
    const testList = readKeyList(f(RELEASE_FILES.test), 'split file', RELEASE_KEY);
    for (const k of testList.keys) {
      if (trainList.lines.has(k))
        throw new DataError(
          'ERR_DATA_SPLIT',
          `${f(RELEASE_FILES.test)}:${testList.lines.get(k)}: '${k}' is also in ${f(RELEASE_FILES.train)}:${trainList.lines.get(k)}`,
          { input: f(RELEASE_FILES.test) },
        );
    }
    const allKeys = new Set([...trainList.keys, ...testList.keys]);
    const report: OpenMICReport = { labelSource: 'csv', labelRows: 0, unlabelledRows: [], skipped: [], corrections: [], droppedLabelRows: 0 };

    const labelsFile = f(RELEASE_FILES.labels);
    const npzFile = f(RELEASE_FILES.npz);
    const npzMode = options.npz ?? 'auto';
    const useNpz = npzMode === 'require' || (npzMode === 'auto' && fs.existsSync(npzFile));
    const hasCsv = fs.existsSync(labelsFile);
    if (!hasCsv && !useNpz) throw new DataError('ERR_DATA_NOT_FOUND', `no labels: neither ${labelsFile} nor ${npzFile} exists`, { input: labelsFile });

    let relevance = new Map<string, Float64Array>();
    let csvRows: Map<string, Map<number, LabelRow>> | undefined;
    if (hasCsv) {
      const rows = readAggregatedLabels(labelsFile, instruments);
      csvRows = new Map();
      for (const r of rows) {
        if (!allKeys.has(r.key)) throw new DataError('ERR_DATA_LABEL', `${labelsFile}:${r.line}: '${r.key}' is in neither split file`, { input: labelsFile });
        const m = csvRows.get(r.key) ?? new Map<number, LabelRow>();
        m.set(r.instrument, r);
        csvRows.set(r.key, m);
      }
      relevance = relevanceFromRows(rows, instruments.length, report, instruments);
      report.labelRows = rows.length;
    }
    if (useNpz) {
      const fromNpz = readReleaseNpz(npzFile, instruments.length, allKeys);
      report.npz = { file: npzFile, rows: fromNpz.keys.length, checkedAgainstCsv: csvRows !== undefined };
      if (csvRows) crossCheckNpz(fromNpz, csvRows, npzFile);
      else {
        report.labelSource = 'npz';
        relevance = fromNpz.relevance;
        report.labelRows = fromNpz.maskCount;
      }
    }

    const errata = { skipCorrupted: true, applyCorrections: true, ...options.errata };
    if (errata.applyCorrections) applyCorrections(relevance, allKeys, instruments, report);
    const skipped = new Set<string>();
    if (errata.skipCorrupted) {
      for (const k of [...allKeys].sort()) {
        if (CORRUPTED_TRACK_IDS.includes(k.slice(0, 6))) {
          skipped.add(k);
          report.skipped.push({ key: k, reason: 'corrupted-source', detail: `FMA track ${k.slice(0, 6)} is listed as corrupted in the OpenMIC README errata` });
        }
      }
    }
    const audioPath = (key: string) => path.join(root, 'audio', key.slice(0, 3), `${key}.ogg`);
    const audioMode = options.audio ?? 'require';
    if (audioMode !== 'ignore') {
      for (const [list, file] of [
        [trainList, f(RELEASE_FILES.train)],
        [testList, f(RELEASE_FILES.test)],
      ] as const) {
        for (const k of list.keys) {
          if (skipped.has(k) || fs.existsSync(audioPath(k))) continue;
          if (audioMode === 'require') {
            throw new DataError(
              'ERR_DATA_MISSING_AUDIO',
              `${file}:${list.lines.get(k)}: no audio for '${k}' (expected ${audioPath(k)}); pass { audio: 'skip' } to leave such clips out`,
              { input: audioPath(k) },
            );
          }
          skipped.add(k);
          report.skipped.push({ key: k, reason: 'missing-audio', detail: `${audioPath(k)} does not exist` });
        }
      }
    }
    for (const k of skipped) {
      const r = csvRows?.get(k);
      if (r) report.droppedLabelRows += r.size;
      relevance.delete(k);
    }

    const metaFile = f(RELEASE_FILES.metadata);
    const metadata = fs.existsSync(metaFile) ? readMetadata(metaFile) : undefined;
    return new OpenMIC({
      root,
      instruments,
      train: trainList.keys.filter((k) => !skipped.has(k)),
      test: testList.keys.filter((k) => !skipped.has(k)),
      relevance,
      audioPath,
      metadata,
      metadataPath: metaFile,
      checksumsPath: fs.existsSync(f(RELEASE_FILES.audioChecksums)) ? f(RELEASE_FILES.audioChecksums) : undefined,
      report,
    });
  }

  /** Any folder of audio (keys are file names without extension) plus a labels CSV in the release format. */
  static fromFolder(options: FolderOptions): OpenMIC {
    options = optionsObject('options', options);
    nonEmptyString('audioDir', options.audioDir);
    nonEmptyString('labelsCsv', options.labelsCsv);
    const { audioDir, labelsCsv } = options;
    if (!fs.existsSync(audioDir) || !fs.statSync(audioDir).isDirectory())
      throw new DataError('ERR_DATA_NOT_FOUND', `audio folder ${audioDir} is not a directory`, { input: audioDir });
    const instruments = typeof options.classMap === 'string' ? readClassMap(options.classMap) : classMapFromObject(options.classMap);
    const audio = scanAudio(audioDir);
    const mode = options.audio ?? 'require';
    const report: OpenMICReport = { labelSource: 'csv', labelRows: 0, unlabelledRows: [], skipped: [], corrections: [], droppedLabelRows: 0 };
    const skipped = new Set<string>();
    const rows = readAggregatedLabels(labelsCsv, instruments).filter((r) => {
      if (audio.has(r.key)) return true;
      if (mode === 'require')
        throw new DataError('ERR_DATA_MISSING_AUDIO', `${labelsCsv}:${r.line}: no audio file for '${r.key}' under ${audioDir}`, { input: labelsCsv });
      if (!skipped.has(r.key))
        report.skipped.push({ key: r.key, reason: 'missing-audio', detail: `labelled in ${labelsCsv}:${r.line} but no audio under ${audioDir}` });
      skipped.add(r.key);
      report.droppedLabelRows++;
      return false;
    });
    report.labelRows = rows.length;
    const relevance = relevanceFromRows(rows, instruments.length, report, instruments);

    let train: string[];
    let test: string[];
    const split = options.split ?? {};
    if ('train' in split) {
      const load = (v: string | string[], what: string) => {
        if (Array.isArray(v)) return v.map((k) => ({ key: k, where: `${what}[${k}]` }));
        const list = readKeyList(v, 'split file');
        return list.keys.map((k) => ({ key: k, where: `${v}:${list.lines.get(k)}` }));
      };
      const keep = (items: { key: string; where: string }[]) =>
        items
          .filter(({ key, where }) => {
            if (audio.has(key)) return true;
            if (mode === 'require') throw new DataError('ERR_DATA_MISSING_AUDIO', `${where}: no audio file for '${key}' under ${audioDir}`, { input: key });
            report.skipped.push({ key, reason: 'missing-audio', detail: `${where} names it but no audio under ${audioDir}` });
            relevance.delete(key);
            return false;
          })
          .map((i) => i.key);
      train = keep(load(split.train, 'train'));
      test = keep(load(split.test, 'test'));
      const trainSet = new Set(train);
      const both = test.find((k) => trainSet.has(k));
      if (both) throw new DataError('ERR_DATA_SPLIT', `'${both}' is in both the train and the test split`, { input: both });
    } else {
      const frac = split.testFraction ?? 0.25;
      if (!(frac > 0 && frac < 1)) throw new ArgumentError('ERR_INVALID_ARGUMENT', `testFraction must be in (0, 1); got ${frac}`);
      const keys = new Rng(`${split.seed ?? 0}:folder-split`).shuffle([...audio.keys()].sort());
      const nTest = Math.round(frac * keys.length);
      test = keys.slice(0, nTest);
      train = keys.slice(nTest);
    }
    const metadata = options.metadataCsv ? readMetadata(options.metadataCsv) : undefined;
    return new OpenMIC({
      instruments,
      train,
      test,
      relevance,
      audioPath: (k) => audio.get(k) ?? path.join(audioDir, k),
      metadata,
      metadataPath: options.metadataCsv,
      report,
    });
  }

  /** All clip keys (train then test order is not implied: sorted). */
  get keys(): string[] {
    return [...this.train, ...this.test].sort();
  }

  get hasMetadata(): boolean {
    return this.meta !== undefined;
  }

  audioPath(key: string): string {
    return this.audioPathOf(key);
  }

  private instrumentIndex(instrument: number | string): number {
    const i = typeof instrument === 'number' ? instrument : this.instruments.indexOf(instrument);
    if (!Number.isInteger(i) || i < 0 || i >= this.instruments.length)
      throw new ArgumentError('ERR_INVALID_ARGUMENT', `unknown instrument ${JSON.stringify(instrument)}`);
    return i;
  }

  /** Relevance per instrument in class-map order; 0.5 means unlabelled. */
  relevance(key: string): Float64Array {
    const r = this.rel.get(key);
    return r ? r.slice() : new Float64Array(this.instruments.length).fill(0.5);
  }

  /** 1 present, 0 absent, undefined unlabelled. */
  target(key: string, instrument: number | string): 0 | 1 | undefined {
    const v = this.rel.get(key)?.[this.instrumentIndex(instrument)];
    if (v === undefined || v === 0.5) return undefined;
    return v > 0.5 ? 1 : 0;
  }

  /** The labelled instruments of a clip. */
  labels(key: string): { instrument: string; relevance: number; target: 0 | 1 }[] {
    const r = this.rel.get(key);
    if (!r) return [];
    const out: { instrument: string; relevance: number; target: 0 | 1 }[] = [];
    r.forEach((v, i) => {
      if (v !== 0.5) out.push({ instrument: this.instruments[i]!, relevance: v, target: v > 0.5 ? 1 : 0 });
    });
    return out;
  }

  metadata(key: string): MetadataRow | undefined {
    return this.meta?.get(key);
  }

  /** Y_true / Y_mask for `keys`, row-major [keys.length, instruments], as in openmic-2018.npz. */
  labelMatrix(keys: readonly string[]): { yTrue: Float32Array; yMask: Uint8Array; instruments: readonly string[] } {
    const n = this.instruments.length;
    const yTrue = new Float32Array(keys.length * n).fill(0.5);
    const yMask = new Uint8Array(keys.length * n);
    keys.forEach((k, row) => {
      const r = this.rel.get(k);
      if (!r) return;
      for (let i = 0; i < n; i++) {
        yTrue[row * n + i] = r[i]!;
        yMask[row * n + i] = r[i] !== 0.5 ? 1 : 0;
      }
    });
    return { yTrue, yMask, instruments: this.instruments };
  }

  /** Positives, negatives and unlabelled clips per instrument and split (openmic.md table 1.5). */
  labelCounts(): LabelCounts[] {
    return this.instruments.map((instrument, i) => {
      const count = (keys: readonly string[]) => {
        const c = { pos: 0, neg: 0, unlabelled: 0 };
        for (const k of keys) {
          const t = this.target(k, i);
          if (t === 1) c.pos++;
          else if (t === 0) c.neg++;
          else c.unlabelled++;
        }
        return c;
      };
      return { instrument, train: count(this.train), test: count(this.test) };
    });
  }

  partitions(options: PartitionOptions = {}): InstrumentPartition[] {
    return buildPartitions(
      {
        instruments: this.instruments,
        train: this.train,
        test: this.test,
        target: (k, i) => this.target(k, i),
        artistOf: (k) => this.meta?.get(k)?.artistId,
        hasMetadata: this.meta !== undefined,
        metadataPath: this.metadataPath,
        gururaniKeys: (explicit) => {
          const candidates = explicit ? [explicit] : this.root ? RELEASE_FILES.gururani.map((g) => path.join(this.root!, g)) : [];
          const file = candidates.find((c) => fs.existsSync(c));
          if (!file)
            throw new DataError(
              'ERR_DATA_NOT_FOUND',
              `the Gururani et al. 2019 train/val split was not found (looked for ${candidates.join(', ') || 'nothing: pass gururaniSplit'})`,
              { input: candidates[0] },
            );
          const s = readGururaniSplit(file);
          return { train: new Set(s.train), val: new Set(s.val), file };
        },
      },
      options,
    );
  }

  partitionSummary(options: PartitionOptions = {}): PartitionSummaryRow[] {
    return partitionSummary(this.partitions(options));
  }

  /**
   * Where this dataset's copy of the release's VGGish features is: `npz` (openmic-2018.npz, which holds `X`),
   * `json` (the per-clip files vggish/xxx/KEY.json), or undefined when it has neither.
   */
  vggishSource(): 'npz' | 'json' | undefined {
    if (!this.root) return undefined;
    if (fs.existsSync(path.join(this.root, RELEASE_FILES.npz))) return 'npz';
    return fs.existsSync(path.join(this.root, RELEASE_FILES.vggish)) ? 'json' : undefined;
  }

  /** The release's per-clip VGGish file of a key: vggish/{key[:3]}/{key}.json. */
  vggishPath(key: string): string {
    if (!this.root) throw new DataError('ERR_DATA_NOT_FOUND', 'this dataset has no release root, so no VGGish files', { input: key });
    return path.join(this.root, RELEASE_FILES.vggish, key.slice(0, 3), `${key}.json`);
  }

  /**
   * The release's quantised VGGish features (values 0-255, frames of 0.96 s x 128) for `keys` (default: all clips
   * of this dataset), as float32 [keys.length, frames, 128]. From `X` of openmic-2018.npz (read once; only X and
   * sample_key are inflated) or, without the npz or with `source: 'json'`, from the per-clip JSON files
   * (`time_points` and `features`, as the release ships them). JSON clips may have fewer frames than the longest:
   * they are zero-padded at the end and `validFrames` gives every clip's real count (present only then).
   */
  vggishFeatures(
    keys: readonly string[] = this.keys,
    options: { source?: 'npz' | 'json' } = {},
  ): { keys: string[]; data: Float32Array; shape: number[]; source: 'npz' | 'json'; validFrames?: Int32Array } {
    const source = options.source ?? this.vggishSource();
    if (source === 'json') return this.vggishFromJson(keys);
    const file = this.root ? path.join(this.root, RELEASE_FILES.npz) : undefined;
    if (!file || !fs.existsSync(file))
      throw new DataError('ERR_DATA_NOT_FOUND', `no ${RELEASE_FILES.npz} and no ${RELEASE_FILES.vggish}/ folder under ${this.root ?? 'this dataset'}`, {
        input: file,
      });
    const m = readNpz(file, { names: ['X', 'sample_key'] });
    const x = m.get('X');
    const sk = m.get('sample_key');
    if (!x || !sk) throw new DataError('ERR_DATA_NPZ', `${file} lacks ${!x ? 'X' : 'sample_key'}`, { input: file });
    if (x.dtype === '|O' || sk.dtype !== '|O' || x.shape.length < 2 || x.shape[0] !== sk.values.length) {
      throw new DataError('ERR_DATA_NPZ', `${file}: X [${x.shape}] does not match sample_key (${sk.shape})`, { input: file });
    }
    const row = new Map(sk.values.map((k, i) => [k, i]));
    const per = x.shape.slice(1).reduce((a, b) => a * b, 1);
    const data = new Float32Array(keys.length * per);
    const src = x.data;
    keys.forEach((k, i) => {
      const r = row.get(k);
      if (r === undefined) throw new DataError('ERR_DATA_NPZ', `${file}: no row for '${k}' in sample_key`, { input: file });
      for (let j = 0; j < per; j++) data[i * per + j] = Number(src[r * per + j]!);
    });
    return { keys: keys.slice(), data, shape: [keys.length, ...x.shape.slice(1)], source: 'npz' };
  }

  /** md5 of each clip's audio against checksums/openmic-2018-audio.csv (release layout only). */
  verifyChecksums(keys: readonly string[] = this.keys): {
    checked: number;
    mismatched: { key: string; expected: string; actual: string }[];
    missing: string[];
  } {
    if (!this.checksumsPath)
      throw new DataError('ERR_DATA_NOT_FOUND', `no checksums/openmic-2018-audio.csv under ${this.root ?? 'this dataset'}`, { input: this.root });
    const sums = readChecksums(this.checksumsPath);
    const mismatched: { key: string; expected: string; actual: string }[] = [];
    const missing: string[] = [];
    let checked = 0;
    for (const k of keys) {
      const expected = sums.get(k);
      if (!expected) {
        missing.push(k);
        continue;
      }
      const actual = crypto
        .createHash('md5')
        .update(fs.readFileSync(this.audioPath(k)))
        .digest('hex');
      checked++;
      if (actual !== expected) mismatched.push({ key: k, expected, actual });
    }
    return { checked, mismatched, missing };
  }

  private vggishFromJson(keys: readonly string[]): { keys: string[]; data: Float32Array; shape: number[]; source: 'json'; validFrames?: Int32Array } {
    const clips = keys.map((k) => readVggishJson(this.vggishPath(k)));
    const width = clips[0]?.width ?? 128;
    const frames = Math.max(0, ...clips.map((c) => c.frames));
    const data = new Float32Array(keys.length * frames * width);
    clips.forEach((c, i) => {
      if (c.width !== width)
        throw new DataError('ERR_DATA_VGGISH', `${this.vggishPath(keys[i]!)}: ${c.width} values per frame, but ${this.vggishPath(keys[0]!)} has ${width}`, {
          input: this.vggishPath(keys[i]!),
        });
      data.set(c.values, i * frames * width);
    });
    const validFrames = Int32Array.from(clips, (c) => c.frames);
    const shape = [keys.length, frames, width];
    return validFrames.some((f) => f < frames)
      ? { keys: keys.slice(), data, shape, source: 'json', validFrames }
      : { keys: keys.slice(), data, shape, source: 'json' };
  }
}

/** One release VGGish JSON file: {"time_points": [t0, ...], "features": [[128 values], ...]}, one row per time point. */
function readVggishJson(file: string): { frames: number; width: number; values: Float32Array } {
  let doc: { time_points?: unknown; features?: unknown };
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new DataError(
      missing ? 'ERR_DATA_NOT_FOUND' : 'ERR_DATA_VGGISH',
      `${file}: ${missing ? 'no such VGGish file' : `not JSON (${(err as Error).message})`}`,
      { input: file, cause: err },
    );
  }
  const fail = (why: string): never => {
    throw new DataError('ERR_DATA_VGGISH', `${file}: ${why}`, { input: file });
  };
  const rows = doc?.features;
  if (!Array.isArray(rows) || rows.length === 0) return fail('"features" must be a non-empty array of frames');
  if (!Array.isArray(doc.time_points) || doc.time_points.length !== rows.length) fail(`"time_points" must list one time per frame (${rows.length})`);
  const width = Array.isArray(rows[0]) ? rows[0].length : 0;
  const values = new Float32Array(rows.length * width);
  rows.forEach((r, f) => {
    if (!Array.isArray(r) || r.length !== width || width === 0) fail(`frame ${f} must hold ${width || 'some'} numbers like frame 0`);
    (r as unknown[]).forEach((v, j) => {
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(`frame ${f}, value ${j} is not a finite number`);
      values[f * width + j] = v as number;
    });
  });
  return { frames: rows.length, width, values };
}

function relevanceFromRows(rows: LabelRow[], n: number, report: OpenMICReport, instruments: readonly string[]): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const r of rows) {
    let v = out.get(r.key);
    if (!v) {
      v = new Float64Array(n).fill(0.5);
      out.set(r.key, v);
    }
    v[r.instrument] = r.relevance;
    if (r.relevance === 0.5) report.unlabelledRows.push({ key: r.key, instrument: instruments[r.instrument]!, line: r.line });
  }
  return out;
}

function applyCorrections(relevance: Map<string, Float64Array>, keys: Set<string>, instruments: readonly string[], report: OpenMICReport): void {
  for (const c of HAND_CORRECTED_LABELS) {
    const i = instruments.indexOf(c.instrument);
    if (!keys.has(c.key) || i < 0) {
      report.corrections.push({ key: c.key, instrument: c.instrument, action: 'clip-absent' });
      continue;
    }
    let v = relevance.get(c.key);
    if (!v) {
      v = new Float64Array(instruments.length).fill(0.5);
      relevance.set(c.key, v);
    }
    const previous = v[i]!;
    if (previous > 0.5) {
      report.corrections.push({ key: c.key, instrument: c.instrument, action: 'already-present', previous });
      continue;
    }
    v[i] = 1;
    report.corrections.push(
      previous === 0.5 ? { key: c.key, instrument: c.instrument, action: 'added' } : { key: c.key, instrument: c.instrument, action: 'overridden', previous },
    );
  }
}

interface ReleaseNpz {
  keys: string[];
  relevance: Map<string, Float64Array>;
  mask: Map<string, Uint8Array>;
  maskCount: number;
}

/**
 * sample_key is parsed from its pickle by the restricted reader (lib/pickle.ts) and must equal the sorted
 * union of the split files, which is what helper_numpy.py's np.unique produced.
 */
function readReleaseNpz(file: string, nInstruments: number, splitKeys: Set<string>): ReleaseNpz {
  const m = readNpz(file, { names: ['sample_key', 'Y_true', 'Y_mask'] });
  const sk = m.get('sample_key') as NpzMember;
  if (sk.dtype !== '|O') throw new DataError('ERR_DATA_NPZ', `${file}: sample_key is ${sk.dtype}, expected an object array of str`, { input: file });
  const keys = sk.values;
  const yTrue = m.get('Y_true')!;
  const yMask = m.get('Y_mask')!;
  const n = keys.length;
  if (yTrue.dtype === '|O' || yMask.dtype === '|O') throw new DataError('ERR_DATA_NPZ', `${file}: Y_true/Y_mask must be numeric`, { input: file });
  if (yTrue.shape.join() !== `${n},${nInstruments}` || yMask.shape.join() !== `${n},${nInstruments}`) {
    throw new DataError(
      'ERR_DATA_NPZ',
      `${file}: Y_true [${yTrue.shape}] and Y_mask [${yMask.shape}] must be [${n}, ${nInstruments}] (sample_key count x class-map size)`,
      { input: file },
    );
  }
  if (n !== splitKeys.size) throw new DataError('ERR_DATA_NPZ', `${file}: ${n} sample keys, but the split files hold ${splitKeys.size}`, { input: file });
  for (let i = 0; i < n; i++) {
    if (!splitKeys.has(keys[i]!)) throw new DataError('ERR_DATA_NPZ', `${file}: sample_key[${i}] '${keys[i]}' is in neither split file`, { input: file });
    if (i > 0 && keys[i - 1]! >= keys[i]!) throw new DataError('ERR_DATA_NPZ', `${file}: sample_key is not sorted at row ${i}`, { input: file });
  }
  const t = yTrue.data as Float64Array | Float32Array;
  const mk = yMask.data as Uint8Array;
  const relevance = new Map<string, Float64Array>();
  const mask = new Map<string, Uint8Array>();
  let maskCount = 0;
  for (let r = 0; r < n; r++) {
    const rowMask = mk.slice(r * nInstruments, (r + 1) * nInstruments);
    const rowRel = new Float64Array(nInstruments).fill(0.5);
    for (let i = 0; i < nInstruments; i++) {
      // Unmasked entries are 0.5 in the release; masking here keeps that true whatever the file holds.
      if (rowMask[i]) {
        rowRel[i] = Number(t[r * nInstruments + i]);
        maskCount++;
      }
    }
    mask.set(keys[r]!, rowMask);
    if (rowMask.some((b) => b)) relevance.set(keys[r]!, rowRel);
  }
  return { keys, relevance, mask, maskCount };
}

function crossCheckNpz(npz: ReleaseNpz, csv: Map<string, Map<number, LabelRow>>, file: string): void {
  for (const key of npz.keys) {
    const rows = csv.get(key);
    const mask = npz.mask.get(key)!;
    const rel = npz.relevance.get(key);
    for (let i = 0; i < mask.length; i++) {
      const row = rows?.get(i);
      if (Boolean(mask[i]) !== (row !== undefined) || (row && Math.abs(rel![i]! - row.relevance) > 1e-6)) {
        throw new DataError(
          'ERR_DATA_NPZ',
          `${file}: Y_true/Y_mask of '${key}' (instrument ${i}) disagree with the labels CSV${row ? ` line ${row.line}` : ''}`,
          { input: file },
        );
      }
    }
  }
}

function scanAudio(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of listAudioFiles(dir)) {
    const name = path.basename(p);
    const key = name.slice(0, -path.extname(name).length);
    if (out.has(key)) throw new DataError('ERR_DATA_SPLIT', `two audio files share the key '${key}': ${out.get(key)} and ${p}`, { input: p });
    out.set(key, p);
  }
  return out;
}
