// What a feature store holds, from its files: the shards' sidecars, the .npy files next to them, and manifest.json,
// the store's record of every shard it has published. A scan is cheap (one listing, one stat per shard, each sidecar
// read once per process); it finds every shard that the records say exists but that is missing, truncated,
// unreadable, not a regular file, or at odds with store.json, and names its clips. Reading the values (and proving
// them by their checksums) is the reader's part (feature-store.ts).
import fs from 'node:fs';
import path from 'node:path';
import { DataError } from '../errors';
import { fsReason, isSystemError, readRegularFile } from '../files';
import type { NpyDtype } from '../formats';
import type { StoreSpec } from './dtype';
import { MANIFEST_FILE, SHARDS, SHARD_RE, parseManifest, parseSidecar, type ManifestRecord, type Sidecar } from './format';

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

export interface FailureRecord {
  key: string;
  input?: string;
  code: string;
  message: string;
  shard: string;
}

/** A damaged shard (or manifest.json): what is wrong, and the clips it held when a record says which. */
export interface CorruptShard {
  /** The .npy name in shards/ (or `manifest.json`). */
  shard: string;
  code: string;
  message: string;
  /** The clips it held, from its sidecar or the manifest; absent when no record says. */
  keys?: string[];
}

export interface Scan {
  /** Shards that look whole (sidecar proven, .npy present, regular and of the right size), in name order. */
  shards: { name: string; sidecar: Sidecar }[];
  /** Damaged shards in name order (manifest.json first when it is the damaged one). */
  damaged: CorruptShard[];
  index: Map<string, StoreEntry>;
  /** Keys whose copy that readers would see lies in a damaged shard. */
  damagedKeys: Map<string, CorruptShard>;
  /** Keys shadowed by an earlier shard, per shard name. */
  shadowed: Map<string, string[]>;
  failures: FailureRecord[];
  /** manifest.json as read (undefined when absent or damaged). */
  record?: ManifestRecord;
}

/** The tombstone of a shard removed on purpose (compact, repair): `<writer>-<seq>.removed` in shards/. */
export function removedName(npy: string): string {
  return npy.replace(/\.npy$/, '.removed');
}

/** "3 clips: a, b, c" / "300 clips: a, b, c, d, e, ..." (how errors name clips). */
export function clipList(keys: readonly string[], max = 5): string {
  const shown = keys.slice(0, max).join(', ');
  return `${keys.length} clip${keys.length === 1 ? '' : 's'}: ${shown}${keys.length > max ? ', ...' : ''}`;
}

/** The names in shards/; a missing folder is an empty listing (the record then says what is gone). */
function listShards(dir: string): string[] {
  const shards = path.join(dir, SHARDS);
  try {
    return fs.readdirSync(shards);
  } catch (err) {
    if (isSystemError(err) && err.code === 'ENOENT') return [];
    throw new DataError('ERR_DATA_STORE_CORRUPT', `feature store ${dir}: cannot list ${shards}: ${fsReason(err)}`, { input: shards, cause: err });
  }
}

function readRecord(dir: string): { record?: ManifestRecord; damage?: CorruptShard } {
  const file = path.join(dir, MANIFEST_FILE);
  try {
    fs.lstatSync(file);
  } catch (err) {
    if (isSystemError(err) && err.code === 'ENOENT') return {};
    return { damage: { shard: MANIFEST_FILE, code: 'ERR_DATA_STORE_CORRUPT', message: `${file} cannot be read: ${fsReason(err)}` } };
  }
  try {
    return { record: parseManifest(readRegularFile(file), file) };
  } catch (err) {
    const message = err instanceof DataError ? err.message : `${file} cannot be read: ${fsReason(err)}`;
    return { damage: { shard: MANIFEST_FILE, code: 'ERR_DATA_STORE_CORRUPT', message } };
  }
}

function statOf(file: string): fs.Stats | Error {
  try {
    return fs.statSync(file);
  } catch (err) {
    return err as Error;
  }
}

/**
 * Why the entries of a shard disagree with the store's spec, or undefined. Any store: `mean` pooling stores one
 * vector per clip (one per window, [windows, width], when the spec's windows are 'all'). A store made by calmkit's
 * extraction (its spec records the settings): `segments` and `none` store one [n, width] matrix per clip.
 */
function shapeProblem(spec: StoreSpec, sidecar: Sidecar): string | undefined {
  const fromExtraction = typeof spec.extra?.settings === 'string';
  // Extraction's windows 'all' pools each window of a clip: one mean per window, [windows, width].
  const perWindow = spec.extra?.windows === 'all';
  for (const e of sidecar.entries) {
    if (spec.pooling === 'mean' && e.shape.length !== (perWindow ? 2 : 1)) {
      return `entry '${e.key}' has shape [${e.shape}] but store.json says pooling 'mean'${perWindow ? " over windows 'all' ([windows, width] per clip)" : ' (one vector per clip)'}`;
    }
    if (fromExtraction && (spec.pooling === 'segments' || spec.pooling === 'none') && e.shape.length !== 2) {
      return `entry '${e.key}' has shape [${e.shape}] but store.json says pooling '${spec.pooling}' ([n, width] per clip)`;
    }
  }
  return undefined;
}

/** The value most entries of the intact shards have (ties: the first shard's), for the width and segment checks. */
function majority(shards: Scan['shards'], of: (s: Sidecar) => number | undefined): number | undefined {
  const counts = new Map<number, number>();
  for (const { sidecar } of shards) {
    const v = of(sidecar);
    if (v !== undefined) counts.set(v, (counts.get(v) ?? 0) + sidecar.entries.length);
  }
  let best: number | undefined;
  for (const [v, n] of counts) if (best === undefined || n > counts.get(best)!) best = v;
  return best;
}

/**
 * Lists the store. `cache` holds sidecars already proven by this process (they never change once published).
 * Throws only when the listing itself fails, or when store.json disagrees with every shard (then store.json is
 * the suspect, not the shards).
 */
export function scanStore(dir: string, spec: StoreSpec, dtype: NpyDtype, cache: Map<string, Sidecar>): Scan {
  const { record, damage: manifestDamage } = readRecord(dir);
  const names = listShards(dir);
  const present = new Set(names);
  const candidates = new Set<string>();
  for (const n of names) {
    if (n.endsWith('.json') && SHARD_RE.test(n.replace(/\.json$/, '.npy'))) candidates.add(n.replace(/\.json$/, '.npy'));
  }
  // A tombstone (`<name>.removed`, left by compact and repair) says a recorded shard was removed on purpose: a
  // manifest written by a concurrent writer from the listing before the removal may still list it.
  for (const n of record?.shards.keys() ?? []) if (!present.has(removedName(n)) || present.has(n.replace(/\.npy$/, '.json'))) candidates.add(n);
  const shards: Scan['shards'] = [];
  const damaged: CorruptShard[] = manifestDamage ? [manifestDamage] : [];
  const fail = (name: string, message: string, keys: string[] | undefined) => {
    damaged.push({ shard: name, code: 'ERR_DATA_STORE_CORRUPT', message, ...(keys ? { keys } : {}) });
  };
  for (const name of [...candidates].sort()) {
    const npy = path.join(dir, SHARDS, name);
    const json = npy.replace(/\.npy$/, '.json');
    const recorded = record?.shards.get(name);
    const jsonName = name.replace(/\.npy$/, '.json');
    let sidecar = cache.get(name);
    let sidecarError: string | undefined;
    if (!present.has(jsonName)) {
      sidecar = undefined;
      sidecarError = 'its sidecar is missing';
    } else if (!sidecar) {
      try {
        const bytes = readRegularFile(json);
        // An empty sidecar beside its .npy is the rename fallback's reservation (no hard links): publication in
        // progress, unless the manifest already lists the shard.
        if (bytes.length === 0 && !recorded) continue;
        sidecar = parseSidecar(bytes, json, dtype);
        cache.set(name, sidecar);
      } catch (err) {
        sidecarError =
          err instanceof DataError ? err.message.replace(`${json} is damaged: `, 'its sidecar is damaged: ') : `its sidecar cannot be read: ${fsReason(err)}`;
      }
    }
    if (!sidecar) {
      // A sidecar is the shard's publication: without a readable one, the shard counts as damaged only when a record
      // says it was published (the manifest, or a .npy beside an unreadable sidecar); else it is a crashed claim.
      if (recorded) fail(name, `shard ${npy}: ${sidecarError} (manifest.json lists it with ${clipList(recorded.keys)})`, recorded.keys);
      else if (present.has(jsonName) && present.has(name)) fail(name, `shard ${npy}: ${sidecarError}; no record says which clips it held`, undefined);
      continue;
    }
    const keys = sidecar.entries.map((e) => e.key);
    const st = statOf(npy);
    if (sidecar.version === 1) {
      // Version 1 published the sidecar first: a sidecar with no (or an empty) .npy is a claim in progress, unless
      // the manifest already lists the shard.
      const unpublished = st instanceof Error ? isSystemError(st) && st.code === 'ENOENT' : st.isFile() && st.size === 0;
      if (unpublished && !recorded) continue;
    }
    if (st instanceof Error) fail(name, `shard ${npy} (${clipList(keys)}) cannot be read: ${fsReason(st)}`, keys);
    else if (!st.isFile()) fail(name, `shard ${npy} (${clipList(keys)}) is not a regular file`, keys);
    else if (sidecar.bytes !== undefined && st.size !== sidecar.bytes)
      fail(name, `shard ${npy} (${clipList(keys)}) has ${st.size} bytes; its sidecar says ${sidecar.bytes} (truncated or overwritten)`, keys);
    else if (st.size === 0) fail(name, `shard ${npy} (${clipList(keys)}) is empty`, keys);
    else {
      const problem = shapeProblem(spec, sidecar);
      if (problem) fail(name, `shard ${npy} disagrees with store.json: ${problem}`, keys);
      else shards.push({ name, sidecar });
    }
  }
  checkAgreement(dir, spec, shards, damaged);
  return { ...indexOf(shards, damaged), shards, damaged, ...(record ? { record } : {}) };
}

/**
 * Shards of one store made by calmkit's extraction share one width and, where every clip is fitted to one length
 * (tile, pad), one segment count. A shard that differs from the rest is damaged; when the spec's pooling fits no
 * shard at all, store.json is wrong (or belongs to other shards) and the store cannot be opened.
 */
function checkAgreement(dir: string, spec: StoreSpec, shards: Scan['shards'], damaged: CorruptShard[]): void {
  const mismatched = damaged.filter((d) => d.message.includes('disagrees with store.json'));
  if (mismatched.length > 0 && shards.every((s) => s.sidecar.entries.length === 0)) {
    throw new DataError(
      'ERR_DATA_STORE_SPEC',
      `feature store ${dir}: store.json (pooling '${spec.pooling}') disagrees with every shard; first: ${mismatched[0]!.message}`,
      { input: path.join(dir, 'store.json') },
    );
  }
  if (typeof spec.extra?.settings !== 'string') return;
  const width = majority(shards, (s) => (s.entries.length ? s.dim : undefined));
  const fixedLength = spec.formatting === 'tile' || spec.formatting === 'pad';
  const counts = (s: Sidecar) => (s.entries.length && fixedLength && spec.pooling !== 'mean' ? s.entries[0]!.shape[0] : undefined);
  const segments = majority(shards, counts);
  for (let i = shards.length - 1; i >= 0; i--) {
    const { name, sidecar } = shards[i]!;
    if (sidecar.entries.length === 0) continue;
    const keys = sidecar.entries.map((e) => e.key);
    const file = path.join(dir, SHARDS, name);
    let problem: string | undefined;
    if (sidecar.dim !== width) problem = `its width is ${sidecar.dim}, the store's other shards' ${width}`;
    const odd = segments === undefined ? undefined : sidecar.entries.find((e) => e.shape[0] !== segments);
    if (!problem && odd)
      problem = `entry '${odd.key}' has ${odd.shape[0]} ${spec.pooling === 'segments' ? 'segments' : 'rows'}, every clip fitted by '${spec.formatting}' has ${segments} elsewhere in the store`;
    if (problem) {
      damaged.push({ shard: name, code: 'ERR_DATA_STORE_CORRUPT', message: `shard ${file} disagrees with store.json: ${problem}`, keys });
      shards.splice(i, 1);
    }
  }
  damaged.sort((a, b) => (a.shard === MANIFEST_FILE ? -1 : b.shard === MANIFEST_FILE ? 1 : a.shard < b.shard ? -1 : 1));
}

function indexOf(shards: Scan['shards'], damaged: CorruptShard[]): Pick<Scan, 'index' | 'damagedKeys' | 'shadowed' | 'failures'> {
  // Readers see the first copy of a key in shard name order, whether that shard is whole or not: a damaged first
  // copy makes the key unreadable rather than silently the later copy.
  const all: { name: string; sidecar?: Sidecar; damage?: CorruptShard }[] = [
    ...shards.map((s) => ({ name: s.name, sidecar: s.sidecar })),
    ...damaged.filter((d) => d.shard !== MANIFEST_FILE).map((d) => ({ name: d.shard, damage: d })),
  ].sort((a, b) => (a.name < b.name ? -1 : 1));
  const index = new Map<string, StoreEntry>();
  const damagedKeys = new Map<string, CorruptShard>();
  const shadowed = new Map<string, string[]>();
  for (const s of all) {
    const keys = s.sidecar ? s.sidecar.entries.map((e) => e.key) : (s.damage!.keys ?? []);
    s.sidecar?.entries.forEach((e) => {
      if (index.has(e.key) || damagedKeys.has(e.key)) return;
      index.set(e.key, { key: e.key, shard: s.name, row: e.row, rows: e.rows, shape: e.shape });
    });
    for (const k of keys) {
      if (s.sidecar && index.get(k)?.shard === s.name) continue;
      if (index.has(k) || damagedKeys.has(k)) {
        const list = shadowed.get(s.name) ?? [];
        list.push(k);
        shadowed.set(s.name, list);
      } else damagedKeys.set(k, s.damage!);
    }
  }
  const failures: FailureRecord[] = [];
  const failed = new Set<string>();
  for (const { name, sidecar } of shards) {
    for (const f of sidecar.failures) {
      if (index.has(f.key) || damagedKeys.has(f.key) || failed.has(f.key)) continue;
      failed.add(f.key);
      failures.push({ key: f.key, ...(f.input !== undefined ? { input: f.input } : {}), code: f.code, message: f.message, shard: name });
    }
  }
  return { index, damagedKeys, shadowed, failures };
}
