// The feature store: features keyed by sample key, as numpy-readable .npy shards, written by any number of
// processes (on any number of machines) sharing one filesystem, with no lock. docs/store.md is the format.
//
// Why this shape: a writer only ever creates files whose names it owns (writer id + sequence number, claimed with
// a no-clobber link), so writers never coordinate. A shard is published by two atomic steps, the .npy first, then
// its sidecar; a reader counts a shard once its sidecar exists. Every byte that decides a returned value is
// covered by a CRC-32 that the read checks (each entry's rows, the .npy header, the sidecar, store.json), and
// manifest.json records every published shard, so a shard that goes missing is an error, never "fewer clips".
//
// This file is the store and its read side; publishing is publish.ts, verify/repair/compact/upgrade
// maintenance.ts, the file formats format.ts, the listing scan.ts.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ArgumentError, nonEmptyString, optionsObject } from '../errors';
import { fsReason, isSystemError, namesIn, openRegular, publishNoClobber, readRegularFile, tempName, withFsErrors, writeDurableExclusive } from '../files';
import { decodeNpyHeader, halfToFloat32, itemSize, type NpyDtype } from '../formats';
import { canonicalJson } from './canonical-json';
import { crc32, crc32Ranges } from './checksum';
import { DTYPES, type StoreSpec } from './dtype';
import { MANIFEST_FILE, SHARDS, STORE_FILE, TMP, encodeStoreJson, parseStoreJson, specProblem, storeError, type Sidecar } from './format';
import { clipList, scanStore, type CorruptShard, type FailureRecord, type Scan, type StoreEntry } from './scan';
import { StoreWriter, manifestDocument, updateManifest, type WriterOptions } from './publish';
import { cleanup, compact, lastSeq, upgrade, verify, type UpgradeReport, type VerifyOptions, type VerifyReport } from './maintenance';

export { STORE_DTYPES, asStored } from './dtype';
export type { StoreDtype, StoreSpec } from './dtype';
export type { StoreEntry, FailureRecord, CorruptShard } from './scan';
export { StoreWriter } from './publish';
export type { WriterOptions } from './publish';
export type { VerifyReport, ShardStatus, VerifyOptions, UpgradeReport } from './maintenance';

export interface FailureInfo {
  /** The input that failed, e.g. the audio path. */
  input?: string;
  code: string;
  message: string;
}

export interface OpenStoreOptions {
  /** Create the store with this spec if it does not exist; if it exists, its spec must equal this one. */
  create?: StoreSpec;
  /** The store must exist and have this spec. */
  expect?: StoreSpec;
}

/** Largest read of a matrix read (several small entries per read; an entry larger than this is one read). */
export const READ_CHUNK_BYTES = 8 * 2 ** 20;

function normaliseSpec(spec: StoreSpec): StoreSpec {
  const problem = specProblem(spec);
  if (problem) throw new ArgumentError('ERR_INVALID_ARGUMENT', `store spec: ${problem}`);
  return JSON.parse(canonicalJson(spec)) as StoreSpec;
}

function specDifferences(a: StoreSpec, b: StoreSpec): string[] {
  const fields = ['model', 'layers', 'pooling', 'formatting', 'dtype', 'extra'] as const;
  return fields
    .filter((f) => canonicalJson(a[f] ?? null) !== canonicalJson(b[f] ?? null))
    .map((f) => `${f}: store has ${canonicalJson(a[f] ?? null)}, asked for ${canonicalJson(b[f] ?? null)}`);
}

export class FeatureStore {
  readonly dir: string;
  readonly spec: StoreSpec;
  readonly dtype: NpyDtype;
  /** The format version of store.json: 2, or 1 for a store written before checksums (until `upgrade()` seals it). */
  formatVersion: 1 | 2;
  /** @internal Sidecars proven by this process, per .npy name (published sidecars never change). */
  readonly sidecarCache = new Map<string, Sidecar>();
  private scanState: Scan;
  private readonly writers = new Set<StoreWriter>();
  /** Per proven sidecar: where its shard's data starts (its header proven by its CRC-32 in this process). */
  private readonly provenHeaders = new WeakMap<Sidecar, number>();
  /** Per proven sidecar: its entries' CRC-32s by first row. */
  private readonly crcsByRow = new WeakMap<Sidecar, Map<number, number>>();

  private constructor(dir: string, spec: StoreSpec, version: 1 | 2) {
    this.dir = dir;
    this.spec = spec;
    this.dtype = DTYPES[spec.dtype];
    this.formatVersion = version;
    this.scanState = scanStore(dir, spec, this.dtype, this.sidecarCache);
  }

  /**
   * Opens (or with `create`, creates) a store. A spec that differs from the store's is a DataError; so is a
   * damaged store.json, or one that disagrees with every shard. Damaged shards do not stop the open (verify and
   * repair need it): they are listed by corruptShards(), and reading their clips, or writing to the store, is a
   * DataError ERR_DATA_STORE_CORRUPT naming them.
   */
  static open(dir: string, options?: OpenStoreOptions): FeatureStore {
    nonEmptyString('dir', dir);
    const opts = optionsObject('options', options);
    // A store directory that cannot be made or read (a file in the way, no permission, a full disk) is a DataError
    // naming it, never a raw fs error.
    return withFsErrors(
      () => FeatureStore.openChecked(dir, opts),
      (why, cause) => storeError('ERR_DATA_STORE_IO', `cannot open the feature store at ${dir}: ${why}`, dir, cause),
    );
  }

  private static openChecked(dir: string, options: OpenStoreOptions): FeatureStore {
    const file = path.join(dir, STORE_FILE);
    const wanted = options.create ? normaliseSpec(options.create) : options.expect ? normaliseSpec(options.expect) : undefined;
    if (!exists(file)) {
      // A folder with a store's shards or manifest but no store.json lost it (deleted, renamed, a partial copy):
      // making a new one would let other settings' features mix with these.
      const leftovers = exists(path.join(dir, MANIFEST_FILE)) || namesIn(path.join(dir, SHARDS)).some((n) => /\.(npy|json)$/.test(n));
      if (leftovers)
        throw storeError(
          'ERR_DATA_STORE_CORRUPT',
          `${file} is missing, but ${dir} holds a feature store's shards or manifest: store.json was deleted or renamed (restore it; a new one is not made over existing shards)`,
          file,
        );
      if (!options.create)
        throw storeError('ERR_DATA_STORE_NOT_FOUND', `no feature store at ${dir} (missing ${STORE_FILE}); pass { create: spec } to make one`, dir);
      fs.mkdirSync(path.join(dir, SHARDS), { recursive: true });
      fs.mkdirSync(path.join(dir, TMP), { recursive: true });
      const tmp = path.join(dir, TMP, tempName(STORE_FILE));
      writeDurableExclusive(tmp, encodeStoreJson(wanted!));
      // Two processes may create the same store at once: one link wins, the other compares specs below.
      if (!publishNoClobber(tmp, file)) fs.rmSync(tmp, { force: true });
    }
    let bytes: Buffer;
    try {
      bytes = readRegularFile(file);
    } catch (err) {
      throw storeError('ERR_DATA_STORE_CORRUPT', `${file} cannot be read: ${fsReason(err)}`, file, err);
    }
    const { version, spec } = parseStoreJson(bytes, file);
    const stored = JSON.parse(canonicalJson(spec)) as StoreSpec;
    if (wanted) {
      const diff = specDifferences(stored, wanted);
      if (diff.length > 0)
        throw storeError(
          'ERR_DATA_STORE_SPEC',
          `feature store ${dir} holds different features (${diff.join('; ')}); use another directory rather than mixing`,
          dir,
        );
    }
    for (const sub of [SHARDS, TMP]) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    return new FeatureStore(dir, stored, version);
  }

  // --- reading ------------------------------------------------------------------------------------------

  /** Re-lists the shards, picking up what other writers published since open() or the last refresh(). */
  refresh(): void {
    this.scanState = scanStore(this.dir, this.spec, this.dtype, this.sidecarCache);
  }

  /** @internal The last scan. */
  get state(): Scan {
    return this.scanState;
  }

  /** Keys present, sorted (keys whose shard is damaged included: reading them is the error). */
  keys(): string[] {
    return [...this.scanState.index.keys(), ...this.scanState.damagedKeys.keys()].sort();
  }

  get size(): number {
    return this.scanState.index.size + this.scanState.damagedKeys.size;
  }

  /** True if the key is stored (as of the last scan, also in a damaged shard) or pending in a writer of this process. */
  has(key: string): boolean {
    if (this.scanState.index.has(key) || this.scanState.damagedKeys.has(key)) return true;
    for (const w of this.writers) if (w.pending(key)) return true;
    return false;
  }

  entry(key: string): StoreEntry | undefined {
    return this.scanState.index.get(key);
  }

  /** One entry's features, widened to float32, with its shape. Unknown keys are a DataError. */
  get(key: string): { data: Float32Array; shape: number[] } {
    const m = this.readMatrix([key]);
    return { data: m.data, shape: this.scanState.index.get(key)!.shape.slice() };
  }

  /**
   * Features of `keys` as one row-major matrix [keys.length, dim], read range by range from the shards
   * (never a whole shard unless asked for all of it). All entries must have the same size. The values are
   * decoded straight into the matrix from reads of at most READ_CHUNK_BYTES, so reading N clips holds the matrix
   * plus one bounded buffer, never a second copy of the features. Every entry's bytes are checked against their
   * CRC-32 before they are decoded.
   */
  readMatrix(keys: readonly string[]): { data: Float32Array; rows: number; dim: number } {
    const entries = this.entriesOf(keys);
    if (entries.length === 0) return { data: new Float32Array(0), rows: 0, dim: 0 };
    const size = (e: StoreEntry) => e.shape.reduce((a, b) => a * b, 1);
    const dim = size(entries[0]!);
    const odd = entries.find((e) => size(e) !== dim);
    if (odd)
      throw storeError(
        'ERR_DATA_STORE_SHAPE',
        `readMatrix needs equal-sized entries: '${entries[0]!.key}' has shape [${entries[0]!.shape}], '${odd.key}' has [${odd.shape}]`,
        odd.key,
      );
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
    if (wide >= 0)
      throw storeError(
        'ERR_DATA_STORE_SHAPE',
        `readSegments needs one width: '${entries[0]!.key}' has shape [${entries[0]!.shape}], '${entries[wide]!.key}' has [${entries[wide]!.shape}]`,
        entries[wide]!.key,
      );
    const segments = Math.max(...shapes.map((sh) => sh[0]));
    const out = new Float32Array(entries.length * segments * width);
    this.readInto(entries, out, (i) => i * segments * width);
    const counts = Int32Array.from(shapes, (sh) => sh[0]);
    const padded = counts.some((c) => c < segments);
    return padded ? { data: out, clips: entries.length, segments, width, validSegments: counts } : { data: out, clips: entries.length, segments, width };
  }

  /**
   * DataError ERR_DATA_STORE_CORRUPT when the store is damaged in a way that makes `what` unsafe: manifest.json
   * unreadable, or a damaged shard whose clips no record names (any of them could be among the ones asked for).
   * With `all`, any damage at all.
   */
  assertSound(what: string, options: { all?: boolean } = {}): void {
    const s = this.scanState;
    const blocking = options.all ? s.damaged : s.damaged.filter((d) => d.keys === undefined);
    if (blocking.length === 0) return;
    const first = blocking[0]!;
    throw storeError(
      'ERR_DATA_STORE_CORRUPT',
      `feature store ${this.dir} is damaged (${blocking.length} problem${blocking.length === 1 ? '' : 's'}; first: ${first.message}), so ${what} is refused; ` +
        `\`calmkit store verify ${this.dir} --repair\` moves the damaged shards aside, then extraction re-extracts their clips`,
      first.shard === 'manifest.json' ? path.join(this.dir, first.shard) : path.join(this.dir, SHARDS, first.shard),
    );
  }

  private entriesOf(keys: readonly string[]): StoreEntry[] {
    this.assertSound('reading from it');
    const damaged = new Map<CorruptShard, string[]>();
    const entries = keys.map((k) => {
      const e = this.scanState.index.get(k);
      if (e) return e;
      const d = this.scanState.damagedKeys.get(k);
      if (!d) throw storeError('ERR_DATA_STORE_KEY', `key '${k}' is not in feature store ${this.dir}`, k);
      damaged.set(d, [...(damaged.get(d) ?? []), k]);
      return undefined as unknown as StoreEntry;
    });
    if (damaged.size > 0) {
      const [d, ks] = [...damaged][0]!;
      const more = damaged.size > 1 ? ` (and ${damaged.size - 1} more damaged shard${damaged.size > 2 ? 's' : ''})` : '';
      throw storeError('ERR_DATA_STORE_CORRUPT', `${d!.message}; asked for ${clipList(ks!)}${more}`, path.join(this.dir, SHARDS, d!.shard));
    }
    return entries;
  }

  /** @internal The sidecar of a whole shard of the last scan. */
  sidecarOf(shard: string): Sidecar {
    const s = this.sidecarCache.get(shard);
    if (!s) throw storeError('ERR_DATA_STORE_CORRUPT', `shard ${shard} has no readable sidecar`, path.join(this.dir, SHARDS, shard));
    return s;
  }

  /**
   * @internal Opens a shard for reading and proves what decides where its values lie: a regular file of the size
   * its sidecar gives, whose header matches its CRC-32 and the sidecar. A version 1 shard (no entry checksums yet)
   * is read whole once per process and checked against its sha256; its entries' CRC-32s are then computed from the
   * proven bytes. Returns the open fd (the caller closes it) and where the data starts.
   */
  openShard(shard: string, options: { fresh?: boolean } = {}): { fd: number; dataOffset: number; file: string; sidecar: Sidecar } {
    const file = path.join(this.dir, SHARDS, shard);
    const sidecar = this.sidecarOf(shard);
    const clips = () => clipList(sidecar.entries.map((e) => e.key));
    let opened: { fd: number; size: number };
    try {
      opened = openRegular(file);
    } catch (err) {
      // Out of file descriptors or a failing disk says nothing about the shard: an I/O error, not damage.
      const transient = isSystemError(err) && ['EMFILE', 'ENFILE', 'EIO', 'ENOMEM', 'EINTR'].includes(err.code!);
      throw storeError(transient ? 'ERR_DATA_STORE_IO' : 'ERR_DATA_STORE_CORRUPT', `shard ${file} (${clips()}) cannot be read: ${fsReason(err)}`, file, err);
    }
    const fail = (why: string, cause?: unknown): never => {
      throw storeError('ERR_DATA_STORE_CORRUPT', `shard ${file} (${clips()}) is damaged: ${why}`, file, cause);
    };
    try {
      if (sidecar.version === 1 && sidecar.entries.some((e) => e.crc32 === undefined)) proveVersion1(opened.fd, opened.size, sidecar, fail);
      if (opened.size !== sidecar.bytes) fail(`${opened.size} bytes; its sidecar says ${sidecar.bytes}`);
      // The header decides only where the data starts: once proven in this process, later reads take its offset
      // (a header changed since then cannot move a read, and every entry's bytes are still checked); verify
      // proves it afresh.
      const proven = this.provenHeaders.get(sidecar);
      if (proven !== undefined && !options.fresh) return { fd: opened.fd, dataOffset: proven, file, sidecar };
      const head = preadAll(opened.fd, sidecar.header!.bytes, 0);
      if (head.length !== sidecar.header!.bytes) fail('the file ends inside its header');
      if (crc32(head) !== sidecar.header!.crc32) fail('its header differs from its checksum');
      let header: ReturnType<typeof decodeNpyHeader>;
      try {
        header = decodeNpyHeader(head, file);
      } catch (err) {
        return fail((err as Error).message, err);
      }
      if (
        header.dtype !== sidecar.dtype ||
        header.shape.length !== 2 ||
        header.shape[0] !== sidecar.rows ||
        header.shape[1] !== sidecar.dim ||
        header.dataOffset !== head.length
      ) {
        fail(`its header says ${header.dtype} [${header.shape}], its sidecar ${sidecar.dtype} [${sidecar.rows}, ${sidecar.dim}]`);
      }
      this.provenHeaders.set(sidecar, header.dataOffset);
      return { fd: opened.fd, dataOffset: header.dataOffset, file, sidecar };
    } catch (err) {
      fs.closeSync(opened.fd);
      throw err;
    }
  }

  /**
   * Decodes every entry's values into `out` at offsetOf(i), shard by shard, reading runs of neighbouring entries
   * in chunks of at most READ_CHUNK_BYTES (one entry when an entry is larger), each entry checked by its CRC-32.
   */
  private readInto(entries: StoreEntry[], out: Float32Array, offsetOf: (i: number) => number): void {
    const byShard = new Map<string, number[]>();
    entries.forEach((e, i) => {
      const list = byShard.get(e.shard) ?? [];
      list.push(i);
      byShard.set(e.shard, list);
    });
    const item = itemSize(this.dtype);
    let buf = new Uint8Array(0);
    for (const [shard, idx] of byShard) {
      const { fd, dataOffset, file, sidecar } = this.openShard(shard);
      try {
        let crcOf = this.crcsByRow.get(sidecar);
        if (!crcOf) {
          crcOf = new Map(sidecar.entries.map((e) => [e.row, e.crc32!]));
          this.crcsByRow.set(sidecar, crcOf);
        }
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
          const got = preadInto(fd, buf, bytes, dataOffset + first.row * rowBytes);
          const count = j - i + 1;
          if (got < bytes) {
            throw storeError(
              'ERR_DATA_STORE_CORRUPT',
              `shard ${file} ends early: ${clipList(idx.slice(i, j + 1).map((k) => entries[k]!.key))} cannot be read in full`,
              file,
            );
          }
          // Every entry of the chunk checked by its CRC-32 in one call, before any of its values is decoded.
          const starts = new Float64Array(count);
          const lengths = new Float64Array(count);
          for (let k = 0; k < count; k++) {
            const e = entries[idx[i + k]!]!;
            starts[k] = (e.row - first.row) * rowBytes;
            lengths[k] = e.rows * rowBytes;
          }
          const crcs = crc32Ranges(buf, starts, lengths);
          for (let k = 0; k < count; k++) {
            if (crcs[k] === crcOf.get(entries[idx[i + k]!]!.row)) continue;
            const bad = idx
              .slice(i, j + 1)
              .map((x) => entries[x]!)
              .filter((e, x) => crcs[x] !== crcOf!.get(e.row));
            throw storeError(
              'ERR_DATA_STORE_CORRUPT',
              `shard ${file} is damaged: the bytes of ${clipList(bad.map((e) => e.key))} differ from their checksums (changed after writing)`,
              file,
            );
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

  /** Damaged shards (and a damaged manifest.json) as of the last scan, with the clips they held where known. */
  corruptShards(): CorruptShard[] {
    return this.scanState.damaged.map((d) => ({ ...d, ...(d.keys ? { keys: d.keys.slice() } : {}) }));
  }

  /**
   * Reads every shard in full and checks it: its sidecar, size and header (as every read does) and every entry's
   * CRC-32 (version 1 shards: the sha256 of the whole file). Reports per shard; `repair` moves damaged shards
   * (and a damaged manifest.json) into `quarantine/<time>/`, nothing deleted, and rewrites the manifest without
   * them, so that the next extraction re-extracts exactly their clips. With `throwOnCorrupt`, damage found (and
   * not repaired) is thrown as a DataError naming the first damaged file.
   */
  verify(options: VerifyOptions = {}): VerifyReport {
    return verify(this, optionsObject('options', options));
  }

  /**
   * Seals a version 1 store as version 2, in place: each version 1 shard is proven by its sha256, then its sidecar
   * is rewritten with its entries' CRC-32s (the .npy is not touched); store.json and the manifest get their seals.
   */
  upgrade(): UpgradeReport {
    return upgrade(this);
  }

  // --- writing ------------------------------------------------------------------------------------------

  /** A writer; DataError ERR_DATA_STORE_CORRUPT when the store is damaged (repair it first). */
  writer(options: WriterOptions = {}): StoreWriter {
    this.assertSound('writing to it', { all: true });
    const w = new StoreWriter(this, optionsObject('options', options));
    this.writers.add(w);
    return w;
  }

  /** @internal */
  writerClosed(w: StoreWriter): void {
    this.writers.delete(w);
  }

  /**
   * Rewrites manifest.json from the shard listing and the manifest it replaces (a shard it listed that is gone
   * stays listed, as damaged). Repeats until the listing no longer changes after its own write, so the writer
   * that renames last always leaves a manifest that includes every published shard.
   */
  updateManifest(): void {
    updateManifest(this);
  }

  /** The manifest document (what manifest.json holds), from the current scan. */
  manifest(): Record<string, unknown> {
    return manifestDocument(this);
  }

  /**
   * Rewrites all entries into fresh shards of `shardSize`, in key order, dropping duplicates and superseded
   * failures, then deletes the old shards. Safe against concurrent writers (their new shards are kept), not
   * against concurrent readers of the old shards.
   */
  compact(options: { shardSize?: number } = {}): VerifyReport {
    return compact(this, optionsObject('options', options));
  }

  /**
   * Removes leftovers of crashed writers older than `maxAgeMs` (default 1 h, so a live writer's temp files
   * are never touched): temp files, and claimed shard names that were never published. Returns the removed paths.
   */
  cleanup(options: { maxAgeMs?: number } = {}): string[] {
    return cleanup(this, optionsObject('options', options));
  }

  /** Highest sequence number used by a writer id (published or claimed), or -1. */
  lastSeq(writerId: string): number {
    return lastSeq(this, writerId);
  }
}

function exists(file: string): boolean {
  try {
    fs.lstatSync(file);
    return true;
  } catch (err) {
    if (isSystemError(err) && err.code === 'ENOENT') return false;
    throw err;
  }
}

/** @internal Reads up to `bytes` at `pos` into buf; returns how many were read (fewer only at the end of the file). */
export function preadInto(fd: number, buf: Uint8Array, bytes: number, pos: number): number {
  let got = 0;
  while (got < bytes) {
    const n = fs.readSync(fd, buf, got, bytes - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

function preadAll(fd: number, bytes: number, pos: number): Uint8Array {
  const buf = new Uint8Array(bytes);
  return buf.subarray(0, preadInto(fd, buf, bytes, pos));
}

/**
 * A version 1 shard, read whole and checked against its sidecar's sha256; then its entries' CRC-32s and its
 * header's come from the proven bytes, so this process reads it like a version 2 shard from here on.
 */
function proveVersion1(fd: number, size: number, sidecar: Sidecar, fail: (why: string) => never): void {
  const bytes = preadAll(fd, size, 0);
  if (bytes.length !== size) fail('it changed while it was read');
  if (crypto.createHash('sha256').update(bytes).digest('hex') !== sidecar.sha256) fail('its sha256 differs from its sidecar (changed after writing)');
  let header: ReturnType<typeof decodeNpyHeader>;
  try {
    header = decodeNpyHeader(bytes.subarray(0, Math.min(bytes.length, 65536 + 12)), 'shard');
  } catch (err) {
    fail((err as Error).message);
  }
  const item = itemSize(sidecar.dtype);
  if (header.dataOffset + sidecar.rows * sidecar.dim * item !== size) fail(`${size} bytes, not its header and ${sidecar.rows} rows of ${sidecar.dim}`);
  const rowBytes = sidecar.dim * item;
  const crcs = crc32Ranges(
    bytes,
    Float64Array.from(sidecar.entries, (e) => header.dataOffset + e.row * rowBytes),
    Float64Array.from(sidecar.entries, (e) => e.rows * rowBytes),
  );
  sidecar.entries.forEach((e, i) => {
    e.crc32 = crcs[i];
  });
  sidecar.header = { bytes: header.dataOffset, crc32: crc32(bytes.subarray(0, header.dataOffset)) };
  sidecar.bytes = size;
}
