// The feature store's upkeep: verify (every byte of every shard against its checksums), repair (damaged shards
// into quarantine/, nothing deleted), compact, cleanup of crashed writers' leftovers, and the upgrade of version 1
// stores (sha256 per shard) to version 2 (CRC-32 per entry, sealed sidecars and store.json).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CalmkitError } from '../errors';
import { atomicReplace, fsyncDir, isSystemError, namesIn, readRegularFile } from '../files';
import { crc32Ranges } from './checksum';
import { itemSize } from '../formats';
import { MANIFEST_FILE, QUARANTINE, SHARDS, STORE_FILE, TMP, encodeSidecar, encodeStoreJson, parseSidecar, storeError, type Sidecar } from './format';
import { clipList, removedName, type CorruptShard } from './scan';
import { storeIo, updateManifest } from './publish';
import { READ_CHUNK_BYTES, preadInto, type FeatureStore } from './feature-store';

/** What verify() found in one shard. */
export interface ShardStatus {
  shard: string;
  ok: boolean;
  /** Clips it holds (as its sidecar or the manifest says; 0 when no record says). */
  clips: number;
  /** 1: checked by the sha256 of the whole file; 2: CRC-32 per entry and sealed sidecar. */
  version?: 1 | 2;
  message?: string;
}

export interface VerifyReport {
  ok: boolean;
  /** Shards checked, whole and damaged. */
  shards: number;
  entries: number;
  duplicates: number;
  corrupt: CorruptShard[];
  /** Per shard (and manifest.json when damaged), in name order. */
  details: ShardStatus[];
  /** Shards of format version 1 (readable; `upgrade()` gives them entry checksums). */
  version1Shards: number;
  /** With `repair`: where the damaged files went, and how many clips they held (the next extraction redoes them). */
  repaired?: { quarantine: string; files: string[]; clips: number; unknownShards: number };
}

export interface VerifyOptions {
  throwOnCorrupt?: boolean;
  repair?: boolean;
}

export interface UpgradeReport {
  /** Version 1 shards resealed as version 2. */
  shards: number;
  /** Whether store.json was version 1 (now sealed). */
  storeJson: boolean;
}

/**
 * A shard's entries (in row order, rows next to each other) in runs of at most READ_CHUNK_BYTES (one entry when an
 * entry is larger): each run's entries, its first row, and its bytes, for one read and one crc32Ranges call.
 */
export function* entryRuns<E extends { row: number; rows: number }>(
  entries: readonly E[],
  rowBytes: number,
): Generator<{ run: E[]; first: number; bytes: number }> {
  for (let i = 0; i < entries.length; ) {
    let j = i;
    while (j + 1 < entries.length && (entries[j + 1]!.row + entries[j + 1]!.rows - entries[i]!.row) * rowBytes <= READ_CHUNK_BYTES) j++;
    const run = entries.slice(i, j + 1);
    const first = run[0]!.row;
    yield { run, first, bytes: (run[run.length - 1]!.row + run[run.length - 1]!.rows - first) * rowBytes };
    i = j + 1;
  }
}

/** Reads a whole shard through its CRC-32s; returns the keys whose bytes differ (openShard checks the rest). */
function checkShardData(store: FeatureStore, name: string): string[] {
  const { fd, dataOffset, sidecar } = store.openShard(name, { fresh: true });
  try {
    const rowBytes = sidecar.dim * itemSize(sidecar.dtype);
    const bad: string[] = [];
    let buf = new Uint8Array(0);
    for (const { run, first, bytes } of entryRuns(sidecar.entries, rowBytes)) {
      if (buf.length < bytes) buf = new Uint8Array(bytes);
      const got = preadInto(fd, buf, bytes, dataOffset + first * rowBytes);
      if (got < bytes) throw storeError('ERR_DATA_STORE_CORRUPT', `shard ends early`, name);
      const crcs = crc32Ranges(
        buf,
        Float64Array.from(run, (e) => (e.row - first) * rowBytes),
        Float64Array.from(run, (e) => e.rows * rowBytes),
      );
      run.forEach((e, k) => {
        if (crcs[k] !== e.crc32) bad.push(e.key);
      });
    }
    return bad;
  } finally {
    fs.closeSync(fd);
  }
}

export function verify(store: FeatureStore, options: VerifyOptions): VerifyReport {
  store.refresh();
  const s = store.state;
  const corrupt: CorruptShard[] = s.damaged.map((d) => ({ ...d }));
  const details: ShardStatus[] = corrupt.map((d) => ({ shard: d.shard, ok: false, clips: d.keys?.length ?? 0, message: d.message }));
  let version1Shards = 0;
  for (const { name, sidecar } of s.shards) {
    const keys = sidecar.entries.map((e) => e.key);
    const file = path.join(store.dir, SHARDS, name);
    if (sidecar.version === 1) version1Shards++;
    let message: string | undefined;
    try {
      const bad = checkShardData(store, name);
      if (bad.length > 0) message = `shard ${file} is damaged: the bytes of ${clipList(bad)} differ from their checksums (changed after writing)`;
    } catch (err) {
      if (!(err instanceof CalmkitError)) throw err;
      message = err.message;
    }
    if (message) corrupt.push({ shard: name, code: 'ERR_DATA_STORE_CORRUPT', message, keys });
    details.push({ shard: name, ok: !message, clips: keys.length, version: sidecar.version, ...(message ? { message } : {}) });
  }
  details.sort((a, b) => (a.shard === MANIFEST_FILE ? -1 : b.shard === MANIFEST_FILE ? 1 : a.shard < b.shard ? -1 : 1));
  let duplicates = 0;
  for (const list of s.shadowed.values()) duplicates += list.length;
  const report: VerifyReport = {
    ok: corrupt.length === 0,
    shards: details.filter((d) => d.shard !== MANIFEST_FILE).length,
    entries: store.size,
    duplicates,
    corrupt,
    details,
    version1Shards,
  };
  if (corrupt.length > 0 && options.repair) {
    report.repaired = repair(store, corrupt);
    return report;
  }
  if (options.throwOnCorrupt && corrupt.length > 0) {
    const c = corrupt[0]!;
    throw storeError(
      'ERR_DATA_STORE_CORRUPT',
      `feature store ${store.dir}: ${corrupt.length} damaged file(s); first: ${c.message}`,
      c.shard === MANIFEST_FILE ? path.join(store.dir, MANIFEST_FILE) : path.join(store.dir, SHARDS, c.shard),
    );
  }
  return report;
}

/** Moves the damaged files into quarantine/<time>-<random>/ (with why.json), then rewrites the manifest without them. */
function repair(store: FeatureStore, damaged: CorruptShard[]): NonNullable<VerifyReport['repaired']> {
  return storeIo(store, 'move damaged shards to quarantine', () => {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const dir = path.join(store.dir, QUARANTINE, `${stamp}-${crypto.randomBytes(3).toString('hex')}`);
    fs.mkdirSync(dir, { recursive: true });
    const files: string[] = [];
    const move = (from: string) => {
      try {
        fs.lstatSync(from);
      } catch (err) {
        if (isSystemError(err) && err.code === 'ENOENT') return;
        throw err;
      }
      const to = path.join(dir, path.basename(from));
      fs.renameSync(from, to);
      files.push(to);
    };
    for (const d of damaged) {
      if (d.shard === MANIFEST_FILE) move(path.join(store.dir, MANIFEST_FILE));
      else {
        fs.closeSync(fs.openSync(path.join(store.dir, SHARDS, removedName(d.shard)), 'w'));
        for (const ext of ['.npy', '.json']) move(path.join(store.dir, SHARDS, d.shard.replace(/\.npy$/, ext)));
      }
      store.sidecarCache.delete(d.shard);
    }
    fs.writeFileSync(path.join(dir, 'why.json'), `${JSON.stringify({ repaired: new Date().toISOString(), damaged }, null, 1)}\n`);
    fsyncDir(dir);
    fsyncDir(path.join(store.dir, SHARDS));
    updateManifest(store, new Set(damaged.map((d) => d.shard)));
    const clips = new Set(damaged.flatMap((d) => d.keys ?? []));
    return { quarantine: dir, files, clips: clips.size, unknownShards: damaged.filter((d) => d.shard !== MANIFEST_FILE && d.keys === undefined).length };
  });
}

export function compact(store: FeatureStore, options: { shardSize?: number }): VerifyReport {
  store.refresh();
  store.assertSound('compacting it', { all: true });
  const old = store.state.shards.map((s) => s.name);
  const keys = store.keys();
  const failures = store.failures();
  const w = store.writer({ id: `compact_${crypto.randomBytes(3).toString('hex')}`, shardSize: options.shardSize ?? 256 });
  w.ignoreExisting = true;
  for (const k of keys) {
    const { data, shape } = store.get(k);
    w.put(k, data, shape);
  }
  for (const f of failures) w.fail(f.key, { input: f.input, code: f.code, message: f.message });
  w.close({ manifest: false });
  storeIo(store, 'remove compacted shards', () => {
    for (const name of old) {
      // The tombstone first: a concurrent writer's manifest that still lists the shard then reads as "removed".
      fs.closeSync(fs.openSync(path.join(store.dir, SHARDS, removedName(name)), 'w'));
      // Unpublish (remove the sidecar) before removing the .npy, the reverse of publication.
      fs.rmSync(path.join(store.dir, SHARDS, name.replace(/\.npy$/, '.json')), { force: true });
      fs.rmSync(path.join(store.dir, SHARDS, name), { force: true });
      store.sidecarCache.delete(name);
    }
  });
  updateManifest(store, new Set(old));
  return verify(store, {});
}

export function cleanup(store: FeatureStore, options: { maxAgeMs?: number }): string[] {
  const maxAge = options.maxAgeMs ?? 3600_000;
  const now = Date.now();
  const removed: string[] = [];
  const old = (file: string) => {
    try {
      return now - fs.lstatSync(file).mtimeMs >= maxAge;
    } catch {
      return false;
    }
  };
  const remove = (file: string) => {
    if (!old(file)) return;
    try {
      fs.rmSync(file, { force: true });
      removed.push(file);
    } catch {
      // Best effort: a leftover that cannot be removed (no permission) stays as harmless as it was.
    }
  };
  for (const name of namesIn(path.join(store.dir, TMP))) remove(path.join(store.dir, TMP, name));
  const names = new Set(namesIn(path.join(store.dir, SHARDS)));
  const recorded = store.state.record?.shards;
  for (const name of names) {
    const m = /^(.+)\.(npy|json|removed)$/.exec(name);
    if (!m) continue;
    const npy = `${m[1]}.npy`;
    if (recorded?.has(npy)) continue;
    // A tombstone outlives every manifest that lists its shard (then it has done its work).
    if (m[2] === 'removed') remove(path.join(store.dir, SHARDS, name));
    // A .npy without its sidecar: a claim whose writer died before publishing.
    if (m[2] === 'npy' && !names.has(`${m[1]}.json`)) remove(path.join(store.dir, SHARDS, name));
    // A sidecar without its .npy: a version 1 writer's claim (version 2 sidecars exist only beside their .npy,
    // so one alone is damage, kept for verify to report and repair to move).
    if (m[2] === 'json' && !names.has(npy)) {
      const file = path.join(store.dir, SHARDS, name);
      let v2 = false;
      try {
        v2 = parseSidecar(readRegularFile(file), file, store.dtype).version === 2;
      } catch {
        v2 = false;
      }
      if (!v2) remove(file);
    }
  }
  return removed;
}

export function lastSeq(store: FeatureStore, writerId: string): number {
  let max = -1;
  for (const name of namesIn(path.join(store.dir, SHARDS))) {
    // Tombstones count: a removed shard's name is never reused (a manifest may still list it).
    const m = /^(.+)-(\d{6,})\.(npy|json|removed)$/.exec(name);
    if (m && m[1] === writerId) max = Math.max(max, Number(m[2]));
  }
  return max;
}

export function upgrade(store: FeatureStore): UpgradeReport {
  store.refresh();
  store.assertSound('upgrading it', { all: true });
  let shards = 0;
  storeIo(store, 'upgrade it', () => {
    for (const { name, sidecar } of store.state.shards) {
      if (sidecar.version !== 1) continue;
      // openShard proves a version 1 shard by its sha256 and computes its entries' CRC-32s from the proven bytes.
      fs.closeSync(store.openShard(name).fd);
      const sealed: Sidecar = { ...sidecar, version: 2 };
      delete sealed.sha256;
      atomicReplace(path.join(store.dir, SHARDS, name.replace(/\.npy$/, '.json')), encodeSidecar(sealed));
      store.sidecarCache.set(name, sealed);
      shards++;
    }
  });
  const storeJson = store.formatVersion === 1;
  if (storeJson) {
    storeIo(store, 'seal store.json', () => atomicReplace(path.join(store.dir, STORE_FILE), encodeStoreJson(store.spec)));
    store.formatVersion = 2;
  }
  updateManifest(store);
  return { shards, storeJson };
}
