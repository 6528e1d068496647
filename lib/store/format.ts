// The feature store's small files as bytes: store.json, the shard sidecars and manifest.json (docs/store.md): how
// each is sealed by a CRC-32 and how each is read back and proven. Every parser here takes untrusted bytes and
// returns a checked value or throws DataError ERR_DATA_STORE_CORRUPT naming the file, never anything else
// (native/fuzz/fuzz_store.cpp drives them with libFuzzer through test/helpers/fuzz-store-child.ts).
//
// The seal: a version-2 file starts with the 20 bytes `{"crc32":"XXXXXXXX",` and XXXXXXXX (8 lowercase hex digits)
// is the CRC-32 of every byte after them, to the end of the file. It is plain JSON (numpy users json.load it), the
// check needs no JSON canonical form, and a reader proves the bytes before it parses them.
import { DataError, type CalmkitErrorCode } from '../errors';
import { itemSize, type NpyDtype } from '../formats';
import { crc32 } from './checksum';
import { DTYPES, type StoreSpec } from './dtype';

export const STORE_FILE = 'store.json';
export const MANIFEST_FILE = 'manifest.json';
export const SHARDS = 'shards';
export const TMP = 'tmp';
export const QUARANTINE = 'quarantine';
/** A shard's data file name: `<writer>-<seq>.npy`. */
export const SHARD_RE = /^([A-Za-z0-9_.][A-Za-z0-9_.-]*)-(\d{6,})\.npy$/;
/** The format version this calmkit writes (it reads 1 and 2). */
export const STORE_FORMAT = 2;

const SEAL_HEAD = '{"crc32":"';
const SEAL_BYTES = SEAL_HEAD.length + 8 + 2;

/** `doc` as sealed JSON text (see the seal above); `indent` as JSON.stringify's. */
export function sealJson(doc: Record<string, unknown>, indent?: number): string {
  const body = JSON.stringify(doc, null, indent);
  const rest = `${body.slice(1)}\n`;
  return `${SEAL_HEAD}${crc32(rest).toString(16).padStart(8, '0')}",${rest}`;
}

/** A DataError of the store family (ERR_DATA_STORE_*) about `input`. */
export function storeError(code: CalmkitErrorCode, message: string, input: string, cause?: unknown): DataError {
  return new DataError(code, message, { input, cause });
}

function corrupt(file: string, why: string): DataError {
  return new DataError('ERR_DATA_STORE_CORRUPT', `${file} is damaged: ${why}`, { input: file });
}

/** Parses JSON bytes, proving the seal when there is one. `sealed` says whether it had one. */
export function unsealJson(bytes: Uint8Array, file: string): { doc: Record<string, unknown>; sealed: boolean } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const sealed = buf.length >= SEAL_BYTES && buf.toString('latin1', 0, SEAL_HEAD.length) === SEAL_HEAD;
  if (sealed) {
    const hex = buf.toString('latin1', SEAL_HEAD.length, SEAL_HEAD.length + 8);
    if (!/^[0-9a-f]{8}$/.test(hex) || buf.toString('latin1', SEAL_HEAD.length + 8, SEAL_BYTES) !== '",') throw corrupt(file, 'its checksum field is malformed');
    const got = crc32(buf.subarray(SEAL_BYTES));
    if (got !== parseInt(hex, 16)) throw corrupt(file, `checksum mismatch (the file says ${hex}, its bytes give ${got.toString(16).padStart(8, '0')})`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw corrupt(file, `not JSON (${(err as Error).message})`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw corrupt(file, 'not a JSON object');
  return { doc: doc as Record<string, unknown>, sealed };
}

/** Version 2 files are sealed, version 1 files (written before the seal) are not: anything else is damage. */
function versionOf(doc: Record<string, unknown>, sealed: boolean, file: string, format: string): 1 | 2 {
  if (doc.format !== format) throw corrupt(file, `not a ${format} file (format ${JSON.stringify(doc.format)})`);
  if (doc.version === 2 && sealed) return 2;
  if (doc.version === 1 && !sealed) return 1;
  if (doc.version === 2 || doc.version === 1) throw corrupt(file, sealed ? 'a version 1 file with a checksum' : 'a version 2 file without its checksum');
  throw corrupt(
    file,
    `format version ${JSON.stringify(doc.version)} (this calmkit reads 1 and 2${typeof doc.version === 'number' && doc.version > 2 ? '; the store was written by a newer calmkit' : ''})`,
  );
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isCrc = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;

// --- store.json ---------------------------------------------------------------------------------------------

/** Why `spec` is not a store spec, or undefined when it is one. */
export function specProblem(spec: unknown): string | undefined {
  if (!isObject(spec)) return 'the spec is not an object';
  const model = spec.model;
  if (!isObject(model) || typeof model.id !== 'string' || model.id.length === 0) return 'the spec needs model.id (a non-empty string)';
  if (model.hash !== undefined && typeof model.hash !== 'string') return 'model.hash must be a string';
  if (!Array.isArray(spec.layers) || !spec.layers.every((l) => Number.isInteger(l))) return 'layers must be an array of integers';
  if (typeof spec.pooling !== 'string' || typeof spec.formatting !== 'string') return 'the spec needs pooling and formatting strings';
  if (typeof spec.dtype !== 'string' || !Object.hasOwn(DTYPES, spec.dtype)) return `dtype must be float32 or float16; got ${JSON.stringify(spec.dtype)}`;
  if (spec.extra !== undefined) {
    if (!isObject(spec.extra)) return 'extra must be an object';
    for (const [k, v] of Object.entries(spec.extra)) {
      if (v !== null && typeof v !== 'string' && typeof v !== 'boolean' && !(typeof v === 'number' && Number.isFinite(v)))
        return `extra.${k} must be a string, a finite number, a boolean or null`;
    }
  }
  return undefined;
}

/** store.json: `{ format, version, spec }`, sealed from version 2 on. */
export function parseStoreJson(bytes: Uint8Array, file: string): { version: 1 | 2; spec: StoreSpec } {
  const { doc, sealed } = unsealJson(bytes, file);
  const version = versionOf(doc, sealed, file, 'calmkit-feature-store');
  const problem = specProblem(doc.spec);
  if (problem) throw corrupt(file, problem);
  return { version, spec: doc.spec as StoreSpec };
}

export function encodeStoreJson(spec: StoreSpec): string {
  return sealJson({ format: 'calmkit-feature-store', version: STORE_FORMAT, spec }, 2);
}

// --- shard sidecars -----------------------------------------------------------------------------------------

export interface SidecarEntry {
  key: string;
  /** First row in the shard's [rows, dim] array; entries tile the rows in order. */
  row: number;
  /** Rows it spans (size / dim). */
  rows: number;
  shape: number[];
  /** CRC-32 of the entry's bytes. Version 1 sidecars have none until their shard is proven by its sha256. */
  crc32?: number;
}

export interface SidecarFailure {
  key: string;
  input?: string;
  code: string;
  message: string;
}

export interface Sidecar {
  version: 1 | 2;
  writer: string;
  dtype: NpyDtype;
  dim: number;
  rows: number;
  /** Version 2: the .npy file's size, and its header's size and CRC-32. */
  bytes?: number;
  header?: { bytes: number; crc32: number };
  /** Version 1: sha256 of the whole .npy file. */
  sha256?: string;
  entries: SidecarEntry[];
  failures: SidecarFailure[];
}

/**
 * A shard's sidecar, proven: sealed (version 2), the store's dtype, entries with unique keys and shapes whose last
 * axis is the shard's width, tiling rows 0..rows in order, and (version 2) the file size its header and rows give.
 */
export function parseSidecar(bytes: Uint8Array, file: string, dtype: NpyDtype): Sidecar {
  const { doc, sealed } = unsealJson(bytes, file);
  const version = versionOf(doc, sealed, file, 'calmkit-feature-shard');
  const fail = (why: string): never => {
    throw corrupt(file, why);
  };
  if (typeof doc.writer !== 'string') fail('writer must be a string');
  if (doc.dtype !== dtype) fail(`it holds ${JSON.stringify(doc.dtype)} but the store is ${dtype}`);
  const { dim, rows } = doc;
  if (!isCount(dim) || !isCount(rows)) fail('dim and rows must be non-negative integers');
  if (((dim as number) === 0) !== ((rows as number) === 0)) fail(`dim ${dim} and rows ${rows}: only a shard without entries has no width`);
  if (!Number.isSafeInteger((dim as number) * (rows as number) * itemSize(dtype))) fail('dim x rows is too large');
  if (!Array.isArray(doc.entries) || !Array.isArray(doc.failures)) fail('entries and failures must be arrays');
  const entries: SidecarEntry[] = [];
  const keys = new Set<string>();
  let next = 0;
  for (const [i, e] of (doc.entries as unknown[]).entries()) {
    if (!isObject(e)) fail(`entry ${i} is not an object`);
    const { key, row, shape } = e as Record<string, unknown>;
    if (typeof key !== 'string' || key.length === 0) fail(`entry ${i} has no key`);
    if (keys.has(key as string)) fail(`key '${key}' appears twice`);
    keys.add(key as string);
    if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isSafeInteger(d) && d > 0))
      fail(`entry '${key}' has a bad shape ${JSON.stringify(shape)}`);
    const sh = shape as number[];
    if (sh[sh.length - 1] !== dim) fail(`entry '${key}' has shape [${sh}] but the shard's width is ${dim}`);
    const size = sh.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(size)) fail(`entry '${key}' is too large`);
    if (row !== next) fail(`entry '${key}' starts at row ${JSON.stringify(row)}, not at ${next} where the previous entry ends`);
    const span = size / (dim as number);
    next += span;
    if (next > (rows as number)) fail(`entry '${key}' runs past the shard's ${rows} rows`);
    const entry: SidecarEntry = { key: key as string, row: row as number, rows: span, shape: sh.slice() };
    if (version === 2) {
      const crc = (e as Record<string, unknown>).crc32;
      if (!isCrc(crc)) fail(`entry '${key}' has no CRC-32`);
      entry.crc32 = crc as number;
    }
    entries.push(entry);
  }
  if (next !== rows) fail(`its entries cover ${next} of its ${rows} rows`);
  const failures: SidecarFailure[] = [];
  for (const [i, f] of (doc.failures as unknown[]).entries()) {
    if (
      !isObject(f) ||
      typeof f.key !== 'string' ||
      f.key.length === 0 ||
      typeof f.code !== 'string' ||
      typeof f.message !== 'string' ||
      (f.input !== undefined && typeof f.input !== 'string')
    ) {
      fail(`failure record ${i} is malformed`);
    }
    const r = f as Record<string, string>;
    failures.push({ key: r.key!, ...(r.input !== undefined ? { input: r.input } : {}), code: r.code!, message: r.message! });
  }
  const out: Sidecar = { version, writer: doc.writer as string, dtype, dim: dim as number, rows: rows as number, entries, failures };
  if (version === 2) {
    const header = doc.header;
    if (!isObject(header) || !isCount(header.bytes) || header.bytes < 10 || !isCrc(header.crc32)) fail('header must be { bytes, crc32 }');
    const h = header as { bytes: number; crc32: number };
    if (doc.bytes !== h.bytes + (dim as number) * (rows as number) * itemSize(dtype))
      fail(`bytes ${JSON.stringify(doc.bytes)} is not the header's ${h.bytes} plus ${rows} rows of ${dim}`);
    out.bytes = doc.bytes as number;
    out.header = { bytes: h.bytes, crc32: h.crc32 };
  } else {
    if (typeof doc.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(doc.sha256)) fail('sha256 must be 64 hex digits');
    out.sha256 = doc.sha256 as string;
  }
  return out;
}

export function encodeSidecar(s: Sidecar): string {
  return sealJson({
    format: 'calmkit-feature-shard',
    version: 2,
    writer: s.writer,
    dtype: s.dtype,
    dim: s.dim,
    rows: s.rows,
    bytes: s.bytes,
    header: s.header,
    entries: s.entries.map((e) => ({ key: e.key, row: e.row, shape: e.shape, crc32: e.crc32 })),
    failures: s.failures,
  });
}

// --- manifest.json ------------------------------------------------------------------------------------------

/** What manifest.json records: every shard the store has published (and not deliberately removed), with its keys. */
export interface ManifestRecord {
  version: 1 | 2;
  /** Per shard (.npy name): its keys, and the manifest's whole entry for it (kept as it is when the shard is lost). */
  shards: Map<string, { keys: string[]; entry: Record<string, unknown> }>;
}

export function parseManifest(bytes: Uint8Array, file: string): ManifestRecord {
  const { doc, sealed } = unsealJson(bytes, file);
  const version = versionOf(doc, sealed, file, 'calmkit-feature-store-manifest');
  if (!Array.isArray(doc.shards)) throw corrupt(file, 'shards must be an array');
  const shards: ManifestRecord['shards'] = new Map();
  for (const [i, s] of (doc.shards as unknown[]).entries()) {
    if (!isObject(s) || typeof s.file !== 'string') throw corrupt(file, `shard ${i} has no file`);
    const m = /^shards\/(.+)$/.exec(s.file);
    if (!m || !SHARD_RE.test(m[1]!)) throw corrupt(file, `shard ${i} names ${JSON.stringify(s.file)}, not shards/<writer>-<seq>.npy`);
    if (!Array.isArray(s.keys) || !s.keys.every((k) => typeof k === 'string' && k.length > 0)) throw corrupt(file, `shard ${s.file} has no key list`);
    if (shards.has(m[1]!)) throw corrupt(file, `shard ${s.file} is listed twice`);
    shards.set(m[1]!, { keys: (s.keys as string[]).slice(), entry: s });
  }
  return { version, shards };
}

export function encodeManifest(doc: Record<string, unknown>): string {
  return sealJson(doc, 1);
}
