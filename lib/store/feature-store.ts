// The feature store: features keyed by sample key, as numpy-readable .npy shards, written by any number of
// processes (on any number of machines) sharing one filesystem, with no lock. docs/store.md is the format.
//
// Why this shape: a writer only ever creates files whose names it owns (writer id + sequence number,
// claimed with a no-clobber link), so writers never coordinate. A shard is published by two atomic steps,
// sidecar JSON first, then the .npy; a reader counts a shard only when both exist. The manifest is a derived
// view for humans and numpy users, recomputed from the listing; nothing in calmkit trusts it over the shards.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ArgumentError, DataError, nonEmptyString, optionsObject, type CalmkitErrorCode } from '../errors';
import { canonicalJson } from './canonical-json';
import { atomicReplace, publishNoClobber, tempName, withFsErrors, writeDurableExclusive } from '../files';
import { encodeNpyHeader, encodeElements, readNpyHeaderFd, type NpyDtype } from '../formats/npy';
import { halfToFloat32 } from '../formats/float16';

/** How features are stored: float16 halves the size and rounds each value to the nearest half. */
export const STORE_DTYPES = ['float32', 'float16'] as const;
export type StoreDtype = (typeof STORE_DTYPES)[number];

/** What the features are. Two stores (or a store and a run) with different specs must never mix. */
export interface StoreSpec {
  model: { id: string; hash?: string };
  layers: number[];
  pooling: string;
  formatting: string;
  dtype: StoreDtype;
  /** Any further settings that change the features (sample rate, crop, ...); compared like the rest. */
  extra?: Record<string, string | number | boolean | null>;
}

export interface StoreEntry {
  key: string;
  /** Shard file name (in shards/), e.g. `host-123-ab12-000004.npy`. */
  shard: string;
  /** First row of the entry in the shard's [rows, dim] array. */
  row: number;
  /** Rows it spans: size / dim. */
  rows: number;
  shape: number[];
}

export interface FailureInfo {
  /** The input that failed, e.g. the audio path. */
  input?: string;
  code: string;
  message: string;
}

export interface FailureRecord extends FailureInfo {
  key: string;
  shard: string;
}

export interface CorruptShard {
  shard: string;
  code: string;
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  shards: number;
  entries: number;
  duplicates: number;
  corrupt: CorruptShard[];
}

export interface WriterOptions {
  /** Writer id, unique among concurrent writers; default host-pid-random. [A-Za-z0-9_.] and '-' only. */
  id?: string;
  /** Entries per shard before an automatic flush (default 256). */
  shardSize?: number;
}

export interface OpenStoreOptions {
  /** Create the store with this spec if it does not exist; if it exists, its spec must equal this one. */
  create?: StoreSpec;
  /** The store must exist and have this spec. */
  expect?: StoreSpec;
}

interface Sidecar {
  format: 'calmkit-feature-shard';
  version: 1;
  writer: string;
  dtype: NpyDtype;
  dim: number;
  rows: number;
  /** sha256 of the whole .npy file. */
  sha256: string;
  entries: { key: string; row: number; shape: number[] }[];
  failures: { key: string; input?: string; code: string; message: string }[];
}

const STORE_FILE = 'store.json';
const MANIFEST_FILE = 'manifest.json';
const SHARDS = 'shards';
const TMP = 'tmp';
const SHARD_RE = /^(.+)-(\d{6,})\.npy$/;
const DTYPES: Record<StoreDtype, NpyDtype> = { float32: '<f4', float16: '<f2' };
/** Largest read of a matrix read (several small entries per read; an entry larger than this is one read). */
const READ_CHUNK_BYTES = 8 * 2 ** 20;

function normaliseSpec(spec: StoreSpec): StoreSpec {
  if (!spec || typeof spec.model?.id !== 'string' || spec.model.id.length === 0) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'store spec needs model.id (a non-empty string)');
  if (!Array.isArray(spec.layers) || !spec.layers.every((l) => Number.isInteger(l))) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'store spec layers must be an array of integers');
  if (typeof spec.pooling !== 'string' || typeof spec.formatting !== 'string') throw new ArgumentError('ERR_INVALID_ARGUMENT', 'store spec needs pooling and formatting strings');
  if (!(spec.dtype in DTYPES)) throw new ArgumentError('ERR_INVALID_ARGUMENT', `store dtype must be float32 or float16; got '${String(spec.dtype)}'`);
  return JSON.parse(canonicalJson(spec)) as StoreSpec;
}

function specDifferences(a: StoreSpec, b: StoreSpec): string[] {
  const fields = ['model', 'layers', 'pooling', 'formatting', 'dtype', 'extra'] as const;
  return fields.filter((f) => canonicalJson(a[f] ?? null) !== canonicalJson(b[f] ?? null)).map((f) => `${f}: store has ${canonicalJson(a[f] ?? null)}, asked for ${canonicalJson(b[f] ?? null)}`);
}

function defaultWriterId(): string {
  return `${os.hostname().replace(/[^A-Za-z0-9_.]/g, '_')}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
}

function storeError(code: CalmkitErrorCode, message: string, input: string, cause?: unknown): DataError {
  return new DataError(code, message, { input, cause });
}

interface Scan {
  /** Published shards in name order with their sidecars. */
  shards: { name: string; sidecar: Sidecar }[];
  index: Map<string, StoreEntry>;
  /** Keys shadowed by an earlier shard, per shard name. */
  shadowed: Map<string, string[]>;
  failures: FailureRecord[];
  corrupt: CorruptShard[];
}

export class FeatureStore {
  readonly dir: string;
  readonly spec: StoreSpec;
  readonly dtype: NpyDtype;
  private scanState: Scan;
  // Sidecars of published shards never change, so they are read once per process.
  private readonly sidecarCache = new Map<string, Sidecar>();
  private readonly writers = new Set<StoreWriter>();

  private constructor(dir: string, spec: StoreSpec) {
    this.dir = dir;
    this.spec = spec;
    this.dtype = DTYPES[spec.dtype];
    this.scanState = this.scan();
  }

  /** Opens (or with `create`, creates) a store. A spec that differs from the store's is a DataError. */
  static open(dir: string, options?: OpenStoreOptions): FeatureStore {
    nonEmptyString('dir', dir);
    const opts = optionsObject('options', options);
    // A store directory that cannot be made or read (a file in the way, no permission, a full disk) is a DataError
    // naming it, never a raw fs error.
    return withFsErrors(
      () => FeatureStore.openChecked(dir, opts),
      (reason, cause) => storeError('ERR_DATA_STORE_IO', `cannot open the feature store at ${dir}: ${reason}`, dir, cause),
    );
  }

  private static openChecked(dir: string, options: OpenStoreOptions): FeatureStore {
    const file = path.join(dir, STORE_FILE);
    const wanted = options.create ? normaliseSpec(options.create) : options.expect ? normaliseSpec(options.expect) : undefined;
    if (!fs.existsSync(file)) {
      if (!options.create) throw storeError('ERR_DATA_STORE_NOT_FOUND', `no feature store at ${dir} (missing ${STORE_FILE}); pass { create: spec } to make one`, dir);
      fs.mkdirSync(path.join(dir, SHARDS), { recursive: true });
      fs.mkdirSync(path.join(dir, TMP), { recursive: true });
      const tmp = path.join(dir, TMP, tempName(STORE_FILE));
      writeDurableExclusive(tmp, `${JSON.stringify({ format: 'calmkit-feature-store', version: 1, spec: wanted }, null, 2)}\n`);
      // Two processes may create the same store at once: one link wins, the other compares specs below.
      if (!publishNoClobber(tmp, file)) fs.rmSync(tmp, { force: true });
    }
    let stored: StoreSpec;
    try {
      const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { format?: string; version?: number; spec?: StoreSpec };
      if (doc.format !== 'calmkit-feature-store' || doc.version !== 1 || !doc.spec) throw new Error('not a calmkit feature store v1 description');
      stored = normaliseSpec(doc.spec);
    } catch (err) {
      throw storeError('ERR_DATA_STORE_CORRUPT', `${file}: unreadable store description: ${(err as Error).message}`, file, err);
    }
    if (wanted) {
      const diff = specDifferences(stored, wanted);
      if (diff.length > 0) throw storeError('ERR_DATA_STORE_SPEC', `feature store ${dir} holds different features (${diff.join('; ')}); use another directory rather than mixing`, dir);
    }
    for (const sub of [SHARDS, TMP]) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    return new FeatureStore(dir, stored);
  }

  // --- reading ------------------------------------------------------------------------------------------

  /** Re-lists the shards, picking up what other writers published since open() or the last refresh(). */
  refresh(): void {
    this.scanState = this.scan();
  }

  /** Keys present, sorted. */
  keys(): string[] {
    return [...this.scanState.index.keys()].sort();
  }

  get size(): number {
    return this.scanState.index.size;
  }

  /** True if the key is stored (as of the last scan) or pending in a writer of this process. */
  has(key: string): boolean {
    if (this.scanState.index.has(key)) return true;
    for (const w of this.writers) if (w.pending(key)) return true;
    return false;
  }

  entry(key: string): StoreEntry | undefined {
    return this.scanState.index.get(key);
  }

  /** One entry's features, widened to float32, with its shape. Unknown keys are a DataError. */
  get(key: string): { data: Float32Array; shape: number[] } {
    const e = this.scanState.index.get(key);
    if (!e) throw storeError('ERR_DATA_STORE_KEY', `key '${key}' is not in feature store ${this.dir}`, key);
    const m = this.readMatrix([key]);
    return { data: m.data, shape: e.shape.slice() };
  }

  /**
   * Features of `keys` as one row-major matrix [keys.length, dim], read range by range from the shards
   * (never a whole shard unless asked for all of it). All entries must have the same size. The values are
   * decoded straight into the matrix from reads of at most READ_CHUNK_BYTES, so reading N clips holds the matrix
   * plus one bounded buffer, never a second copy of the features.
   */
  readMatrix(keys: readonly string[]): { data: Float32Array; rows: number; dim: number } {
    const entries = this.entriesOf(keys);
    if (entries.length === 0) return { data: new Float32Array(0), rows: 0, dim: 0 };
    const size = (e: StoreEntry) => e.shape.reduce((a, b) => a * b, 1);
    const dim = size(entries[0]!);
    const odd = entries.find((e) => size(e) !== dim);
    if (odd) throw storeError('ERR_DATA_STORE_SHAPE', `readMatrix needs equal-sized entries: '${entries[0]!.key}' has shape [${entries[0]!.shape}], '${odd.key}' has [${odd.shape}]`, odd.key);
    const out = new Float32Array(entries.length * dim);
    this.readInto(entries, out, (i) => i * dim);
    return { data: out, rows: entries.length, dim };
  }

  /**
   * Segment features of `keys` ([S, width] entries, as `pooling: 'segments'` stores them) as one row-major
   * [clips, segments, width] matrix, streamed from the shards like readMatrix. `segments` is the largest S among
   * the keys; a clip with fewer segments is zero-padded at the end and `validSegments` (present only then) gives
   * every clip's real count. A one-vector entry ([width]) reads as one segment. Entries of different widths are
   * DataError ERR_DATA_STORE_SHAPE.
   */
  readSegments(keys: readonly string[]): { data: Float32Array; clips: number; segments: number; width: number; validSegments?: Int32Array } {
    const entries = this.entriesOf(keys);
    if (entries.length === 0) return { data: new Float32Array(0), clips: 0, segments: 0, width: 0 };
    const shapeOf = (e: StoreEntry): [number, number] => {
      if (e.shape.length === 1) return [1, e.shape[0]!];
      if (e.shape.length === 2) return [e.shape[0]!, e.shape[1]!];
      throw storeError('ERR_DATA_STORE_SHAPE', `readSegments needs [segments, width] entries; '${e.key}' has shape [${e.shape}]`, e.key);
    };
    const shapes = entries.map(shapeOf);
    const width = shapes[0]![1];
    const wide = entries.findIndex((_, i) => shapes[i]![1] !== width);
    if (wide >= 0) throw storeError('ERR_DATA_STORE_SHAPE', `readSegments needs one width: '${entries[0]!.key}' has shape [${entries[0]!.shape}], '${entries[wide]!.key}' has [${entries[wide]!.shape}]`, entries[wide]!.key);
    const segments = Math.max(...shapes.map((sh) => sh[0]));
    const out = new Float32Array(entries.length * segments * width);
    this.readInto(entries, out, (i) => i * segments * width);
    const counts = Int32Array.from(shapes, (sh) => sh[0]);
    const padded = counts.some((c) => c < segments);
    return padded ? { data: out, clips: entries.length, segments, width, validSegments: counts } : { data: out, clips: entries.length, segments, width };
  }

  private entriesOf(keys: readonly string[]): StoreEntry[] {
    return keys.map((k) => {
      const e = this.scanState.index.get(k);
      if (!e) throw storeError('ERR_DATA_STORE_KEY', `key '${k}' is not in feature store ${this.dir}`, k);
      return e;
    });
  }

  /**
   * Decodes every entry's values into `out` at offsetOf(i), shard by shard, reading runs of neighbouring entries
   * in chunks of at most READ_CHUNK_BYTES (one entry when an entry is larger).
   */
  private readInto(entries: StoreEntry[], out: Float32Array, offsetOf: (i: number) => number): void {
    const byShard = new Map<string, number[]>();
    entries.forEach((e, i) => {
      const list = byShard.get(e.shard) ?? [];
      list.push(i);
      byShard.set(e.shard, list);
    });
    const item = this.dtype === '<f2' ? 2 : 4;
    let buf = new Uint8Array(0);
    for (const [shard, idx] of byShard) {
      const file = path.join(this.dir, SHARDS, shard);
      const sidecar = this.sidecarOf(shard);
      let fd: number;
      try {
        fd = fs.openSync(file, 'r');
      } catch (err) {
        throw storeError('ERR_DATA_STORE_CORRUPT', `shard ${file} is listed but cannot be opened: ${(err as Error).message}`, file, err);
      }
      try {
        const header = this.checkShardHeader(fd, file, sidecar);
        const rowBytes = sidecar.dim * item;
        idx.sort((a, b) => entries[a]!.row - entries[b]!.row);
        // One read per chunk of entries that sit next to each other in the shard.
        let i = 0;
        while (i < idx.length) {
          let j = i;
          const first = entries[idx[i]!]!;
          while (
            j + 1 < idx.length &&
            entries[idx[j + 1]!]!.row === entries[idx[j]!]!.row + entries[idx[j]!]!.rows &&
            (entries[idx[j + 1]!]!.row + entries[idx[j + 1]!]!.rows - first.row) * rowBytes <= READ_CHUNK_BYTES
          ) {
            j++;
          }
          const last = entries[idx[j]!]!;
          const bytes = (last.row + last.rows - first.row) * rowBytes;
          // A fresh Uint8Array starts at offset 0 of its own buffer: every entry's values are aligned views.
          if (buf.length < bytes) buf = new Uint8Array(Math.max(bytes, Math.min(READ_CHUNK_BYTES, 2 * buf.length)));
          const pos = header.dataOffset + first.row * rowBytes;
          let got = 0;
          while (got < bytes) {
            const n = fs.readSync(fd, buf, got, bytes - got, pos + got);
            if (n === 0) throw storeError('ERR_DATA_STORE_CORRUPT', `shard ${file} ends early`, file);
            got += n;
          }
          for (let k = i; k <= j; k++) {
            const e = entries[idx[k]!]!;
            const count = e.rows * sidecar.dim;
            const at = (e.row - first.row) * rowBytes;
            const dst = out.subarray(offsetOf(idx[k]!), offsetOf(idx[k]!) + count);
            if (item === 2) halfToFloat32(new Uint16Array(buf.buffer, at, count), dst);
            else dst.set(new Float32Array(buf.buffer, at, count));
          }
          i = j + 1;
        }
      } finally {
        fs.closeSync(fd);
      }
    }
  }

  /** Recorded failures whose key has no features (a later success supersedes a failure), one per key. */
  failures(): FailureRecord[] {
    return this.scanState.failures.map((f) => ({ ...f }));
  }

  /** Shards whose sidecar was unreadable when last scanned (their keys are absent). */
  corruptShards(): CorruptShard[] {
    return this.scanState.corrupt.slice();
  }

  /**
   * Reads every published shard in full and checks it against its sidecar (size, header, sha256).
   * With `throwOnCorrupt`, the first problem is thrown as a DataError naming the shard.
   */
  verify(options: { throwOnCorrupt?: boolean } = {}): VerifyReport {
    this.refresh();
    const corrupt = this.scanState.corrupt.slice();
    for (const { name, sidecar } of this.scanState.shards) {
      const file = path.join(this.dir, SHARDS, name);
      try {
        const bytes = fs.readFileSync(file);
        const fd = fs.openSync(file, 'r');
        try {
          this.checkShardHeader(fd, file, sidecar);
        } finally {
          fs.closeSync(fd);
        }
        const sha = crypto.createHash('sha256').update(bytes).digest('hex');
        if (sha !== sidecar.sha256) throw storeError('ERR_DATA_STORE_CORRUPT', `shard ${file}: content hash differs from its sidecar (corrupted after writing)`, file);
      } catch (err) {
        const e = err as DataError;
        corrupt.push({ shard: name, code: e.code ?? 'ERR_DATA_STORE_CORRUPT', message: e.message });
      }
    }
    let duplicates = 0;
    for (const list of this.scanState.shadowed.values()) duplicates += list.length;
    const report = { ok: corrupt.length === 0, shards: this.scanState.shards.length, entries: this.scanState.index.size, duplicates, corrupt };
    if (options.throwOnCorrupt && corrupt.length > 0) {
      const c = corrupt[0]!;
      throw storeError('ERR_DATA_STORE_CORRUPT', `feature store ${this.dir}: ${corrupt.length} corrupt shard(s); first: ${c.message}`, path.join(this.dir, SHARDS, c.shard));
    }
    return report;
  }

  // --- writing ------------------------------------------------------------------------------------------

  writer(options: WriterOptions = {}): StoreWriter {
    const w = new StoreWriter(this, options);
    this.writers.add(w);
    return w;
  }

  /** @internal */
  writerClosed(w: StoreWriter): void {
    this.writers.delete(w);
  }

  /** @internal Publishes one shard; returns its file name. */
  publishShard(writerId: string, seqStart: number, dim: number, items: { key: string; data: Float32Array; shape: number[] }[], failures: Sidecar['failures']): { name: string; seq: number } {
    const rows = dim === 0 ? 0 : items.reduce((n, it) => n + it.data.length / dim, 0);
    const header = encodeNpyHeader(this.dtype, [rows, dim]);
    const body = new Float32Array(rows * dim);
    const entries: Sidecar['entries'] = [];
    let row = 0;
    for (const it of items) {
      body.set(it.data, row * dim);
      entries.push({ key: it.key, row, shape: it.shape });
      row += it.data.length / dim;
    }
    const npy = Buffer.concat([header, encodeElements(this.dtype, body)]);
    const sidecar: Sidecar = {
      format: 'calmkit-feature-shard',
      version: 1,
      writer: writerId,
      dtype: this.dtype,
      dim,
      rows,
      sha256: crypto.createHash('sha256').update(npy).digest('hex'),
      entries,
      failures,
    };
    const tmpDir = path.join(this.dir, TMP);
    const npyTmp = path.join(tmpDir, tempName(`${writerId}.npy`));
    const jsonTmp = path.join(tmpDir, tempName(`${writerId}.json`));
    try {
      writeDurableExclusive(npyTmp, npy);
      writeDurableExclusive(jsonTmp, `${JSON.stringify(sidecar)}\n`);
      for (let seq = seqStart; ; seq++) {
        const base = `${writerId}-${String(seq).padStart(6, '0')}`;
        // Claiming the sidecar name claims the shard name; then the .npy link publishes the shard.
        if (!publishNoClobber(jsonTmp, path.join(this.dir, SHARDS, `${base}.json`))) continue;
        if (!publishNoClobber(npyTmp, path.join(this.dir, SHARDS, `${base}.npy`))) {
          throw storeError('ERR_DATA_STORE_CORRUPT', `shard ${base}.npy already exists without having been claimed: two writers share the id '${writerId}'?`, path.join(this.dir, SHARDS, `${base}.npy`));
        }
        this.sidecarCache.set(`${base}.npy`, sidecar);
        return { name: `${base}.npy`, seq };
      }
    } finally {
      fs.rmSync(npyTmp, { force: true });
      fs.rmSync(jsonTmp, { force: true });
    }
  }

  /**
   * Rewrites manifest.json from the shard listing. Repeats until the listing no longer changes after its own
   * write, so the writer that renames last always leaves a manifest that includes every published shard.
   */
  updateManifest(): void {
    const file = path.join(this.dir, MANIFEST_FILE);
    for (let attempt = 0; attempt < 20; attempt++) {
      this.refresh();
      const text = `${JSON.stringify(this.manifest(), null, 1)}\n`;
      let current: string | undefined;
      try {
        current = fs.readFileSync(file, 'utf8');
      } catch {
        current = undefined;
      }
      if (current === text) return;
      atomicReplace(file, text);
    }
  }

  /** The manifest document (what manifest.json holds), from the current scan. */
  manifest(): Record<string, unknown> {
    const s = this.scanState;
    return {
      format: 'calmkit-feature-store-manifest',
      version: 1,
      spec: this.spec,
      dtype: this.dtype,
      entries: s.index.size,
      shards: s.shards.map(({ name, sidecar }) => ({
        file: `${SHARDS}/${name}`,
        rows: sidecar.rows,
        dim: sidecar.dim,
        keys: sidecar.entries.map((e) => e.key),
        rowStart: sidecar.entries.map((e) => e.row),
        shapes: sidecar.entries.map((e) => e.shape),
        shadowed: s.shadowed.get(name) ?? [],
      })),
      failures: s.failures.map(({ key, input, code, message }) => ({ key, input, code, message })),
      corrupt: s.corrupt,
    };
  }

  /**
   * Rewrites all entries into fresh shards of `shardSize`, in key order, dropping duplicates and superseded
   * failures, then deletes the old shards. Safe against concurrent writers (their new shards are kept), not
   * against concurrent readers of the old shards.
   */
  compact(options: { shardSize?: number } = {}): VerifyReport {
    this.refresh();
    const old = this.scanState.shards.map((s) => s.name);
    const keys = this.keys();
    const failures = this.failures();
    const w = this.writer({ id: `compact_${crypto.randomBytes(3).toString('hex')}`, shardSize: options.shardSize ?? 256 });
    w.ignoreExisting = true;
    for (const k of keys) {
      const { data, shape } = this.get(k);
      w.put(k, data, shape);
    }
    for (const f of failures) w.fail(f.key, { input: f.input, code: f.code, message: f.message });
    w.close({ manifest: false });
    for (const name of old) {
      // Unpublish (remove the .npy) before removing the sidecar, the reverse of publication.
      fs.rmSync(path.join(this.dir, SHARDS, name), { force: true });
      fs.rmSync(path.join(this.dir, SHARDS, name.replace(/\.npy$/, '.json')), { force: true });
      this.sidecarCache.delete(name);
    }
    this.updateManifest();
    return this.verify();
  }

  /**
   * Removes leftovers of crashed writers older than `maxAgeMs` (default 1 h, so a live writer's temp files
   * are never touched): temp files, and sidecars whose .npy was never published. Returns the removed paths.
   */
  cleanup(options: { maxAgeMs?: number } = {}): string[] {
    const maxAge = options.maxAgeMs ?? 3600_000;
    const now = Date.now();
    const removed: string[] = [];
    const old = (file: string) => {
      try {
        return now - fs.statSync(file).mtimeMs >= maxAge;
      } catch {
        return false;
      }
    };
    for (const name of safeList(path.join(this.dir, TMP))) {
      const f = path.join(this.dir, TMP, name);
      if (old(f)) {
        fs.rmSync(f, { force: true });
        removed.push(f);
      }
    }
    const shardNames = new Set(safeList(path.join(this.dir, SHARDS)));
    for (const name of shardNames) {
      if (!name.endsWith('.json') || shardNames.has(name.replace(/\.json$/, '.npy'))) continue;
      const f = path.join(this.dir, SHARDS, name);
      if (old(f)) {
        fs.rmSync(f, { force: true });
        removed.push(f);
      }
    }
    return removed;
  }

  /** Highest sequence number used by a writer id (published or claimed), or -1. */
  lastSeq(writerId: string): number {
    let max = -1;
    for (const name of safeList(path.join(this.dir, SHARDS))) {
      const m = /^(.+)-(\d{6,})\.(npy|json)$/.exec(name);
      if (m && m[1] === writerId) max = Math.max(max, Number(m[2]));
    }
    return max;
  }

  // --- internals ----------------------------------------------------------------------------------------

  private sidecarOf(shard: string): Sidecar {
    const s = this.sidecarCache.get(shard);
    if (!s) throw storeError('ERR_DATA_STORE_CORRUPT', `shard ${shard} has no readable sidecar`, path.join(this.dir, SHARDS, shard));
    return s;
  }

  private checkShardHeader(fd: number, file: string, sidecar: Sidecar) {
    let header;
    try {
      header = readNpyHeaderFd(fd, file);
    } catch (err) {
      throw storeError('ERR_DATA_STORE_CORRUPT', `shard ${file} is corrupt: ${(err as Error).message}`, file, err);
    }
    if (header.dtype !== sidecar.dtype || header.shape.length !== 2 || header.shape[0] !== sidecar.rows || header.shape[1] !== sidecar.dim) {
      throw storeError('ERR_DATA_STORE_CORRUPT', `shard ${file}: header says ${header.dtype} [${header.shape}], its sidecar ${sidecar.dtype} [${sidecar.rows}, ${sidecar.dim}]`, file);
    }
    return header;
  }

  private readSidecar(name: string): Sidecar {
    const cached = this.sidecarCache.get(name);
    if (cached) return cached;
    const file = path.join(this.dir, SHARDS, name.replace(/\.npy$/, '.json'));
    const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as Sidecar;
    if (doc.format !== 'calmkit-feature-shard' || doc.version !== 1 || !Array.isArray(doc.entries) || !Array.isArray(doc.failures)) throw new Error(`${file} is not a shard sidecar v1`);
    if (doc.dtype !== this.dtype) throw new Error(`${file} holds ${doc.dtype} but the store is ${this.dtype}`);
    this.sidecarCache.set(name, doc);
    return doc;
  }

  private scan(): Scan {
    const names = safeList(path.join(this.dir, SHARDS));
    const present = new Set(names);
    const shards: Scan['shards'] = [];
    const corrupt: CorruptShard[] = [];
    for (const name of names.filter((n) => SHARD_RE.test(n)).sort()) {
      const sidecarName = name.replace(/\.npy$/, '.json');
      if (!present.has(sidecarName)) {
        corrupt.push({ shard: name, code: 'ERR_DATA_STORE_CORRUPT', message: `shard ${name} has no sidecar ${sidecarName}` });
        continue;
      }
      // A zero-length .npy is a name reserved by the rename fallback of publishNoClobber: not published yet.
      try {
        if (fs.statSync(path.join(this.dir, SHARDS, name)).size === 0) continue;
      } catch {
        continue;
      }
      try {
        shards.push({ name, sidecar: this.readSidecar(name) });
      } catch (err) {
        corrupt.push({ shard: name, code: 'ERR_DATA_STORE_CORRUPT', message: `shard ${name}: unreadable sidecar: ${(err as Error).message}` });
      }
    }
    const index = new Map<string, StoreEntry>();
    const shadowed = new Map<string, string[]>();
    for (const { name, sidecar } of shards) {
      for (const e of sidecar.entries) {
        if (index.has(e.key)) {
          const list = shadowed.get(name) ?? [];
          list.push(e.key);
          shadowed.set(name, list);
          continue;
        }
        const size = e.shape.reduce((a, b) => a * b, 1);
        index.set(e.key, { key: e.key, shard: name, row: e.row, rows: sidecar.dim === 0 ? 0 : size / sidecar.dim, shape: e.shape });
      }
    }
    const failures: FailureRecord[] = [];
    const failed = new Set<string>();
    for (const { name, sidecar } of shards) {
      for (const f of sidecar.failures) {
        if (index.has(f.key) || failed.has(f.key)) continue;
        failed.add(f.key);
        failures.push({ key: f.key, input: f.input, code: f.code, message: f.message, shard: name });
      }
    }
    return { shards, index, shadowed, failures, corrupt };
  }
}

function safeList(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** Buffers entries and publishes them as shards. Not shared between processes: each process makes its own. */
export class StoreWriter {
  readonly id: string;
  /** @internal compact() rewrites keys that are, of course, already in the store. */
  ignoreExisting = false;
  private readonly store: FeatureStore;
  private readonly shardSize: number;
  private seq: number;
  private items: { key: string; data: Float32Array; shape: number[] }[] = [];
  private itemKeys = new Set<string>();
  private dim = -1;
  private failuresPending: Sidecar['failures'] = [];
  private closed = false;
  private published: string[] = [];

  constructor(store: FeatureStore, options: WriterOptions) {
    const id = options.id ?? defaultWriterId();
    if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]*$/.test(id)) throw new ArgumentError('ERR_INVALID_ARGUMENT', `writer id '${id}' may use only letters, digits, '_', '.', '-'`);
    const shardSize = options.shardSize ?? 256;
    if (!Number.isInteger(shardSize) || shardSize < 1) throw new ArgumentError('ERR_INVALID_ARGUMENT', `shardSize must be a positive integer; got ${shardSize}`);
    this.store = store;
    this.id = id;
    this.shardSize = shardSize;
    this.seq = store.lastSeq(id) + 1;
    store.cleanup();
  }

  /** @internal */
  pending(key: string): boolean {
    return this.itemKeys.has(key);
  }

  /** Shards this writer has published, in order. */
  get shards(): readonly string[] {
    return this.published;
  }

  /**
   * Queues one entry. Returns false (and stores nothing) when the key is already in the store or queued, so
   * a resumed run simply skips it. The shape defaults to [data.length]; its last axis is the row width.
   */
  put(key: string, data: Float32Array | ArrayLike<number>, shape?: number[]): boolean {
    this.assertOpen();
    if (typeof key !== 'string' || key.length === 0) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'store keys must be non-empty strings');
    if (this.itemKeys.has(key) || (!this.ignoreExisting && this.store.has(key))) return false;
    const values = data instanceof Float32Array ? data.slice() : Float32Array.from(data);
    const sh = shape ? shape.slice() : [values.length];
    const size = sh.reduce((a, b) => a * b, 1);
    if (!sh.every((d) => Number.isInteger(d) && d >= 0) || size !== values.length) {
      throw storeError('ERR_DATA_STORE_SHAPE', `entry '${key}': shape [${sh}] holds ${size} values but ${values.length} were given`, key);
    }
    const dim = sh.length === 0 ? 1 : sh[sh.length - 1]!;
    if (dim === 0) throw storeError('ERR_DATA_STORE_SHAPE', `entry '${key}': shape [${sh}] is empty`, key);
    // One shard is one [rows, dim] array, so a change of row width starts a new shard.
    if (this.items.length > 0 && dim !== this.dim) this.flush();
    this.dim = dim;
    this.items.push({ key, data: values, shape: sh });
    this.itemKeys.add(key);
    if (this.items.length >= this.shardSize) this.flush();
    return true;
  }

  /** Records that a key could not be extracted (published with the next shard). */
  fail(key: string, info: FailureInfo): void {
    this.assertOpen();
    this.failuresPending.push({ key, input: info.input, code: info.code, message: info.message });
    if (this.failuresPending.length >= this.shardSize) this.flush();
  }

  /** Publishes everything queued as one durable shard, then refreshes the manifest. */
  flush(options: { manifest?: boolean } = {}): void {
    if (this.items.length === 0 && this.failuresPending.length === 0) return;
    const { name, seq } = this.store.publishShard(this.id, this.seq, this.items.length > 0 ? this.dim : 0, this.items, this.failuresPending);
    this.published.push(name);
    this.seq = seq + 1;
    this.items = [];
    this.itemKeys = new Set();
    this.failuresPending = [];
    if (options.manifest !== false) this.store.updateManifest();
    else this.store.refresh();
  }

  close(options: { manifest?: boolean } = {}): void {
    if (this.closed) return;
    this.flush(options);
    this.closed = true;
    this.store.writerClosed(this);
  }

  private assertOpen() {
    if (this.closed) throw new ArgumentError('ERR_INVALID_ARGUMENT', `store writer '${this.id}' is closed`);
  }
}
