// Readers for the OpenMIC-2018 release files (their layout: docs/contracts.md, "Data and store"; real samples in
// test/fixtures/openmic-2018/). Each reader validates as it goes and throws a DataError naming the file and line
// of the first bad row.
import fs from 'node:fs';
import { parse } from 'csv-parse/sync';
import { DataError } from '../errors';

export const RELEASE_KEY = /^\d{6}_\d+$/;

function readText(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new DataError('ERR_DATA_NOT_FOUND', `cannot read the ${what} ${file}: ${(err as Error).message}`, { input: file, cause: err });
  }
}

interface Row {
  record: Record<string, string>;
  line: number;
}

/** Parses a CSV with a header row; each row comes with its 1-based line number. */
export function readCsvRows(file: string, what: string, required: readonly string[]): { columns: string[]; rows: Row[] } {
  const text = readText(file, what);
  let parsed: { record: Record<string, string>; info: { lines: number } }[];
  let columns: string[] = [];
  try {
    parsed = parse(text, {
      columns: (header: string[]) => {
        columns = header.map((h) => h.trim());
        return columns;
      },
      info: true,
      bom: true,
      skip_empty_lines: true,
    }) as { record: Record<string, string>; info: { lines: number } }[];
  } catch (err) {
    const line = (err as { lines?: number }).lines;
    throw new DataError('ERR_DATA_CSV', `${file}${line ? `:${line}` : ''}: malformed ${what}: ${(err as Error).message}`, { input: file, cause: err });
  }
  const missing = required.filter((c) => !columns.includes(c));
  if (missing.length > 0) {
    throw new DataError('ERR_DATA_CSV', `${file}:1: the ${what} lacks column(s) ${missing.join(', ')} (header: ${columns.join(', ')})`, { input: file });
  }
  return { columns, rows: parsed.map((p) => ({ record: p.record, line: p.info.lines })) };
}

/** class-map.json: {"accordion": 0, ...}; returns the names in index order. */
export function readClassMap(file: string): string[] {
  const text = readText(file, 'class map');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new DataError('ERR_DATA_CLASS_MAP', `${file}: class map is not JSON: ${(err as Error).message}`, { input: file, cause: err });
  }
  return classMapFromObject(doc, file);
}

export function classMapFromObject(doc: unknown, file = '<class map>'): string[] {
  if (Array.isArray(doc)) {
    if (!doc.every((n) => typeof n === 'string' && n.length > 0) || new Set(doc).size !== doc.length) {
      throw new DataError('ERR_DATA_CLASS_MAP', `${file}: a class list must hold distinct non-empty names`, { input: file });
    }
    return doc.slice() as string[];
  }
  if (doc === null || typeof doc !== 'object') throw new DataError('ERR_DATA_CLASS_MAP', `${file}: class map must map names to indices`, { input: file });
  const entries = Object.entries(doc as Record<string, unknown>);
  const names: string[] = new Array(entries.length);
  for (const [name, idx] of entries) {
    if (!Number.isInteger(idx) || (idx as number) < 0 || (idx as number) >= entries.length || names[idx as number] !== undefined) {
      throw new DataError('ERR_DATA_CLASS_MAP', `${file}: index ${JSON.stringify(idx)} of '${name}' is not a distinct integer in [0, ${entries.length})`, {
        input: file,
      });
    }
    names[idx as number] = name;
  }
  if (names.length === 0) throw new DataError('ERR_DATA_CLASS_MAP', `${file}: class map is empty`, { input: file });
  return names;
}

/** A key list (partitions/split01_*.csv): one key per line, no header. */
export function readKeyList(file: string, what: string, keyPattern?: RegExp): { keys: string[]; lines: Map<string, number> } {
  const text = readText(file, what);
  const keys: string[] = [];
  const lines = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const key = raw.trim();
    if (key.length === 0) return;
    if (keyPattern && !keyPattern.test(key))
      throw new DataError('ERR_DATA_SPLIT', `${file}:${i + 1}: '${key}' is not a sample key (${keyPattern.source})`, { input: file });
    if (lines.has(key)) throw new DataError('ERR_DATA_SPLIT', `${file}:${i + 1}: '${key}' repeats line ${lines.get(key)}`, { input: file });
    lines.set(key, i + 1);
    keys.push(key);
  });
  return { keys, lines };
}

export interface LabelRow {
  key: string;
  instrument: number;
  relevance: number;
  numResponses: number | null;
  line: number;
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * openmic-2018-aggregated-labels.csv: sample_key, instrument, relevance, num_responses. Every row is checked
 * (known instrument, relevance a number in [0, 1], integral num_responses, no repeated pair).
 */
export function readAggregatedLabels(file: string, instruments: readonly string[]): LabelRow[] {
  const { columns, rows } = readCsvRows(file, 'labels CSV', ['sample_key', 'instrument', 'relevance']);
  const hasResponses = columns.includes('num_responses');
  const index = new Map(instruments.map((n, i) => [n, i]));
  const seen = new Map<string, number>();
  return rows.map(({ record, line }) => {
    const where = `${file}:${line}`;
    const key = (record.sample_key ?? '').trim();
    if (key.length === 0) throw new DataError('ERR_DATA_LABEL', `${where}: empty sample_key`, { input: file });
    const name = (record.instrument ?? '').trim();
    const instrument = index.get(name);
    if (instrument === undefined)
      throw new DataError('ERR_DATA_UNKNOWN_INSTRUMENT', `${where}: unknown instrument '${name}' (the class map has ${instruments.join(', ')})`, {
        input: file,
      });
    const relText = (record.relevance ?? '').trim();
    const relevance = Number(relText);
    if (!NUMBER.test(relText) || !(relevance >= 0 && relevance <= 1))
      throw new DataError('ERR_DATA_LABEL', `${where}: relevance '${relText}' is not a number in [0, 1]`, { input: file });
    let numResponses: number | null = null;
    if (hasResponses) {
      const t = (record.num_responses ?? '').trim();
      const v = Number(t);
      if (!NUMBER.test(t) || !Number.isInteger(v) || v < 0)
        throw new DataError('ERR_DATA_LABEL', `${where}: num_responses '${t}' is not a non-negative integer`, { input: file });
      numResponses = v;
    }
    const pair = `${key}\u0000${name}`;
    if (seen.has(pair)) throw new DataError('ERR_DATA_LABEL', `${where}: (${key}, ${name}) was already labelled on line ${seen.get(pair)}`, { input: file });
    seen.set(pair, line);
    return { key, instrument, relevance, numResponses, line };
  });
}

export interface MetadataRow {
  trackId: string;
  artistId: string;
  startTime: number;
  line: number;
}

// FMA ids are written as ints (46) or pandas floats (4.0); both name the same id.
function normaliseId(v: string): string {
  const t = v.trim();
  return /^\d+\.0*$/.test(t) ? t.replace(/\.0*$/, '') : t;
}

/** openmic-2018-metadata.csv: the columns calmkit uses are sample_key, track_id, artist_id, start_time. */
export function readMetadata(file: string): Map<string, MetadataRow> {
  const { rows } = readCsvRows(file, 'metadata CSV', ['sample_key', 'track_id', 'artist_id', 'start_time']);
  const out = new Map<string, MetadataRow>();
  for (const { record, line } of rows) {
    const key = (record.sample_key ?? '').trim();
    const artistId = normaliseId(record.artist_id ?? '');
    const startTime = Number((record.start_time ?? '').trim());
    if (key.length === 0 || artistId.length === 0 || !Number.isFinite(startTime)) {
      throw new DataError('ERR_DATA_METADATA', `${file}:${line}: needs a sample_key, an artist_id and a numeric start_time`, { input: file });
    }
    if (out.has(key)) throw new DataError('ERR_DATA_METADATA', `${file}:${line}: sample_key '${key}' repeats line ${out.get(key)!.line}`, { input: file });
    out.set(key, { trackId: normaliseId(record.track_id ?? ''), artistId, startTime, line });
  }
  return out;
}

/** gururani2019_trainval_split_keys.csv: sample_key,subset with subset train|val. */
export function readGururaniSplit(file: string): { train: string[]; val: string[] } {
  const { rows } = readCsvRows(file, 'train/val split', ['sample_key', 'subset']);
  const train: string[] = [];
  const val: string[] = [];
  const seen = new Set<string>();
  for (const { record, line } of rows) {
    const key = (record.sample_key ?? '').trim();
    const subset = (record.subset ?? '').trim();
    if (seen.has(key)) throw new DataError('ERR_DATA_SPLIT', `${file}:${line}: '${key}' appears twice`, { input: file });
    seen.add(key);
    if (subset === 'train') train.push(key);
    else if (subset === 'val') val.push(key);
    else throw new DataError('ERR_DATA_SPLIT', `${file}:${line}: subset '${subset}' is neither train nor val`, { input: file });
  }
  return { train, val };
}

/** checksums/openmic-2018-audio.csv: header ",md5", then key,md5. */
export function readChecksums(file: string): Map<string, string> {
  const text = readText(file, 'checksum list');
  const out = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    if (i === 0 || raw.trim().length === 0) return;
    const [key, md5] = raw.split(',').map((s) => s.trim());
    if (!key || !md5 || !/^[0-9a-f]{32}$/.test(md5)) throw new DataError('ERR_DATA_CSV', `${file}:${i + 1}: expected key,md5`, { input: file });
    out.set(key, md5);
  });
  return out;
}
