// The feature store's write side: StoreWriter buffers entries, publishShard makes them a durable shard, and
// updateManifest keeps manifest.json, the store's record of every published shard, up to date.
//
// Publication (docs/store.md): the .npy and its sidecar are written to tmp/ and fsynced; the .npy is linked to
// shards/<writer>-<seq>.npy with a no-clobber link (this claims the name; a taken name moves to seq + 1); then the
// sidecar is linked beside it: this publishes the shard. A crash before that leaves an .npy without a sidecar,
// which readers ignore and cleanup() removes; a sidecar never exists without its whole .npy.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ArgumentError } from '../errors';
import { atomicReplace, isSystemError, publishNoClobber, readRegularFile, tempName, withFsErrors, writeDurableExclusive } from '../files';
import { encodeElements, encodeNpyHeader, itemSize } from '../formats';
import { crc32, crc32Ranges } from './checksum';
import { MANIFEST_FILE, SHARDS, TMP, encodeManifest, encodeSidecar, storeError, type Sidecar, type SidecarFailure } from './format';
import type { FeatureStore, FailureInfo } from './feature-store';

export interface WriterOptions {
  /** Writer id, unique among concurrent writers; default host-pid-random. [A-Za-z0-9_.] and '-' only. */
  id?: string;
  /** Entries per shard before an automatic flush (default 256). */
  shardSize?: number;
}

function defaultWriterId(): string {
  return `${os.hostname().replace(/[^A-Za-z0-9_.]/g, '_')}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
}

/** A file-system failure while writing to the store, as ERR_DATA_STORE_IO naming the path (ENOSPC, EROFS, ...). */
export function storeIo<T>(store: FeatureStore, doing: string, fn: () => T): T {
  return withFsErrors(fn, (why, cause) =>
    storeError(
      'ERR_DATA_STORE_IO',
      `feature store ${store.dir}: cannot ${doing}: ${cause.path ? `${cause.path}: ` : ''}${why}`,
      cause.path ?? store.dir,
      cause,
    ),
  );
}

/** Publishes one shard; returns its file name. */
export function publishShard(
  store: FeatureStore,
  writerId: string,
  seqStart: number,
  dim: number,
  items: { key: string; data: Float32Array; shape: number[] }[],
  failures: SidecarFailure[],
): { name: string; seq: number } {
  const rows = dim === 0 ? 0 : items.reduce((n, it) => n + it.data.length / dim, 0);
  const header = encodeNpyHeader(store.dtype, [rows, dim]);
  const body = new Float32Array(rows * dim);
  const entries: Sidecar['entries'] = [];
  let row = 0;
  for (const it of items) {
    body.set(it.data, row * dim);
    entries.push({ key: it.key, row, rows: it.data.length / dim, shape: it.shape });
    row += it.data.length / dim;
  }
  const npy = Buffer.concat([header, encodeElements(store.dtype, body)]);
  const rowBytes = dim * itemSize(store.dtype);
  const crcs = crc32Ranges(
    npy,
    Float64Array.from(entries, (e) => header.length + e.row * rowBytes),
    Float64Array.from(entries, (e) => e.rows * rowBytes),
  );
  entries.forEach((e, i) => {
    e.crc32 = crcs[i];
  });
  const sidecar: Sidecar = {
    version: 2,
    writer: writerId,
    dtype: store.dtype,
    dim,
    rows,
    bytes: npy.length,
    header: { bytes: header.length, crc32: crc32(header) },
    entries,
    failures,
  };
  const tmpDir = path.join(store.dir, TMP);
  const npyTmp = path.join(tmpDir, tempName(`${writerId}.npy`));
  const jsonTmp = path.join(tmpDir, tempName(`${writerId}.json`));
  return storeIo(store, 'publish a shard', () => {
    try {
      writeDurableExclusive(npyTmp, npy);
      writeDurableExclusive(jsonTmp, encodeSidecar(sidecar));
      for (let seq = seqStart; ; seq++) {
        const base = `${writerId}-${String(seq).padStart(6, '0')}`;
        // The .npy link claims the name; the sidecar's link then publishes the shard.
        if (!publishNoClobber(npyTmp, path.join(store.dir, SHARDS, `${base}.npy`))) continue;
        if (!publishNoClobber(jsonTmp, path.join(store.dir, SHARDS, `${base}.json`))) {
          throw storeError(
            'ERR_DATA_STORE_CORRUPT',
            `shard ${base}.json already exists though this writer claimed ${base}.npy: two writers share the id '${writerId}'?`,
            path.join(store.dir, SHARDS, `${base}.json`),
          );
        }
        store.sidecarCache.set(`${base}.npy`, sidecar);
        return { name: `${base}.npy`, seq };
      }
    } finally {
      fs.rmSync(npyTmp, { force: true });
      fs.rmSync(jsonTmp, { force: true });
    }
  });
}

/**
 * The manifest document from the store's last scan: every whole shard with its keys and rows, and every damaged
 * one as the previous manifest (or its sidecar) described it, so that a lost shard stays on record. `forget`:
 * shards removed on purpose (repair, compact).
 */
export function manifestDocument(store: FeatureStore, forget: ReadonlySet<string> = new Set()): Record<string, unknown> {
  const s = store.state;
  const shards: { file: string; [k: string]: unknown }[] = s.shards.map(({ name, sidecar }) => ({
    file: `${SHARDS}/${name}`,
    rows: sidecar.rows,
    dim: sidecar.dim,
    keys: sidecar.entries.map((e) => e.key),
    rowStart: sidecar.entries.map((e) => e.row),
    shapes: sidecar.entries.map((e) => e.shape),
    shadowed: s.shadowed.get(name) ?? [],
  }));
  for (const d of s.damaged) {
    if (d.shard === MANIFEST_FILE || forget.has(d.shard)) continue;
    const recorded = s.record?.shards.get(d.shard)?.entry;
    const sidecar = store.sidecarCache.get(d.shard);
    const base =
      recorded ??
      (sidecar
        ? {
            rows: sidecar.rows,
            dim: sidecar.dim,
            keys: sidecar.entries.map((e) => e.key),
            rowStart: sidecar.entries.map((e) => e.row),
            shapes: sidecar.entries.map((e) => e.shape),
          }
        : { keys: d.keys ?? [] });
    shards.push({ ...base, file: `${SHARDS}/${d.shard}`, damaged: d.message });
  }
  shards.sort((a, b) => (a.file < b.file ? -1 : 1));
  return {
    format: 'calmkit-feature-store-manifest',
    version: 2,
    spec: store.spec,
    dtype: store.dtype,
    entries: store.size,
    shards,
    failures: s.failures.map(({ key, input, code, message }) => ({ key, input, code, message })),
    corrupt: s.damaged.filter((d) => d.shard !== MANIFEST_FILE && !forget.has(d.shard)).map(({ shard, code, message }) => ({ shard, code, message })),
  };
}

/**
 * Rewrites manifest.json until the listing no longer changes after its own write (the writer that renames last
 * leaves a manifest with every published shard). A damaged or non-regular manifest.json is replaced, never read
 * through (no FIFO can block this).
 */
export function updateManifest(store: FeatureStore, forget: ReadonlySet<string> = new Set()): void {
  const file = path.join(store.dir, MANIFEST_FILE);
  storeIo(store, 'update its manifest', () => {
    for (let attempt = 0; attempt < 20; attempt++) {
      store.refresh();
      const text = encodeManifest(manifestDocument(store, forget));
      let current: string | undefined;
      try {
        current = readRegularFile(file).toString('utf8');
      } catch (err) {
        if (!isSystemError(err)) throw err;
        current = undefined;
      }
      if (current === text) return;
      atomicReplace(file, text);
    }
  });
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
  private failuresPending: SidecarFailure[] = [];
  private closed = false;
  private published: string[] = [];

  constructor(store: FeatureStore, options: WriterOptions) {
    const id = options.id ?? defaultWriterId();
    if (typeof id !== 'string' || !/^[A-Za-z0-9_.][A-Za-z0-9_.-]*$/.test(id))
      throw new ArgumentError('ERR_INVALID_ARGUMENT', `writer id '${String(id)}' may use only letters, digits, '_', '.', '-'`);
    const shardSize = options.shardSize ?? 256;
    if (!Number.isInteger(shardSize) || shardSize < 1)
      throw new ArgumentError('ERR_INVALID_ARGUMENT', `shardSize must be a positive integer; got ${shardSize}`);
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
    if (sh.length === 0 || !sh.every((d) => Number.isInteger(d) && d >= 0) || size !== values.length) {
      throw storeError('ERR_DATA_STORE_SHAPE', `entry '${key}': shape [${sh}] holds ${size} values but ${values.length} were given`, key);
    }
    const dim = sh[sh.length - 1]!;
    if (size === 0) throw storeError('ERR_DATA_STORE_SHAPE', `entry '${key}': shape [${sh}] is empty`, key);
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
    this.failuresPending.push({ key, ...(info.input !== undefined ? { input: info.input } : {}), code: info.code, message: info.message });
    if (this.failuresPending.length >= this.shardSize) this.flush();
  }

  /** Publishes everything queued as one durable shard, then refreshes the manifest. */
  flush(options: { manifest?: boolean } = {}): void {
    if (this.items.length === 0 && this.failuresPending.length === 0) return;
    const { name, seq } = publishShard(this.store, this.id, this.seq, this.items.length > 0 ? this.dim : 0, this.items, this.failuresPending);
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
