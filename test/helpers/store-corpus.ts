// Child process of test/store-corruption.test.ts: builds two small good stores, damages copies of them in every
// way the corpus lists (bit flips at seeded random offsets of every file kind, truncations, deletions, renames,
// FIFOs, symlink loops, folders in place of files, a missing shards/ folder, a store.json at odds with its shards)
// and prints one JSON line per case: what opening and reading the damaged copy gave. It runs apart from the test
// so that a read that blocks (a FIFO opened for reading) shows as a timeout of this process, not a hung suite.
// argv: work dir
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CalmkitError } from '../../lib/errors';
import { Rng } from '../../lib/random';
import { FeatureStore, type StoreSpec } from '../../lib/store/feature-store';
import { encodeStoreJson } from '../../lib/store/format';

const work = process.argv[2]!;
const settings = { settings: 'corpus-settings' };
const SPECS: Record<string, StoreSpec> = {
  mean: { model: { id: 'corpus' }, layers: [36], pooling: 'mean', formatting: 'tile', dtype: 'float32', extra: settings },
  segments: { model: { id: 'corpus' }, layers: [36], pooling: 'segments', formatting: 'tile', dtype: 'float16', extra: settings },
};

function build(kind: 'mean' | 'segments'): { dir: string; keys: string[]; values: Float32Array } {
  const dir = path.join(work, `good-${kind}`);
  const store = FeatureStore.open(dir, { create: SPECS[kind]! });
  const w = store.writer({ id: 'w', shardSize: kind === 'mean' ? 4 : 3 });
  const clips = kind === 'mean' ? 10 : 6;
  for (let c = 0; c < clips; c++) {
    const shape = kind === 'mean' ? [16] : [3, 8];
    const n = shape.reduce((a, b) => a * b, 1);
    w.put(
      `clip${String(c).padStart(2, '0')}`,
      Float32Array.from({ length: n }, (_, i) => Math.sin(c * 31 + i) * 4),
      shape,
    );
    if (c === 2) w.fail(`broken${c}`, { input: `/audio/broken${c}.ogg`, code: 'ERR_AUDIO_DECODE', message: 'cannot decode' });
  }
  w.close();
  const keys = store.keys();
  return { dir, keys, values: read(store, kind, keys) };
}

function read(store: FeatureStore, kind: string, keys: string[]): Float32Array {
  return kind === 'mean' ? store.readMatrix(keys).data : store.readSegments(keys).data;
}

type Damage = (file: string) => void;
const rng = new Rng('store-corpus');
const damages: [string, Damage][] = [];
for (let k = 0; k < 8; k++) {
  damages.push([
    `bit flip ${k}`,
    (f) => {
      const b = fs.readFileSync(f);
      const at = rng.int(0, b.length - 1);
      b[at]! ^= 1 << rng.int(0, 7);
      fs.writeFileSync(f, b);
    },
  ]);
}
damages.push(
  ['truncated to 0 bytes', (f) => fs.truncateSync(f, 0)],
  ['truncated to half', (f) => fs.truncateSync(f, Math.floor(fs.statSync(f).size / 2))],
  ['last byte cut', (f) => fs.truncateSync(f, fs.statSync(f).size - 1)],
  ['a byte appended', (f) => fs.appendFileSync(f, Buffer.from([0]))],
  ['deleted', (f) => fs.rmSync(f)],
  ['renamed', (f) => fs.renameSync(f, `${f}.bak`)],
  [
    'replaced by a FIFO',
    (f) => {
      fs.rmSync(f);
      execFileSync('mkfifo', [f]);
    },
  ],
  [
    'replaced by a symlink loop',
    (f) => {
      fs.rmSync(f);
      fs.symlinkSync(path.basename(f), f);
    },
  ],
  [
    'replaced by a folder',
    (f) => {
      fs.rmSync(f);
      fs.mkdirSync(f);
    },
  ],
);

function outcome(dir: string, kind: string, good: { keys: string[]; values: Float32Array }): Record<string, unknown> {
  try {
    const store = FeatureStore.open(dir);
    const values = read(store, kind, good.keys);
    const same = values.length === good.values.length && Buffer.from(values.buffer).equals(Buffer.from(good.values.buffer));
    const keys = store.keys();
    if (!same) return { result: 'wrong', why: 'the values differ from the good store' };
    if (keys.join() !== good.keys.join()) return { result: 'wrong', why: `the keys differ: ${keys.length} vs ${good.keys.length}` };
    return { result: 'good' };
  } catch (err) {
    if (err instanceof CalmkitError) return { result: 'error', code: err.code, message: err.message, name: err.name };
    return { result: 'untyped', message: String((err as Error)?.stack ?? err) };
  }
}

/** After verify --repair: the store opens, what it still holds reads as the good values, and what it lost is named. */
function repaired(dir: string, kind: string, good: { keys: string[]; values: Float32Array }): Record<string, unknown> {
  try {
    const store = FeatureStore.open(dir);
    const report = store.verify({ repair: true });
    const after = FeatureStore.open(dir);
    const keys = after.keys();
    const values = read(after, kind, keys);
    const per = good.values.length / good.keys.length;
    const mismatch = keys.find((k, i) => {
      const g = good.keys.indexOf(k);
      return g < 0 || !Buffer.from(values.buffer, i * per * 4, per * 4).equals(Buffer.from(good.values.buffer, g * per * 4, per * 4));
    });
    const lost = good.keys.filter((k) => !keys.includes(k));
    const named = new Set(report.corrupt.flatMap((c) => c.keys ?? []));
    const unnamed = lost.filter((k) => !named.has(k));
    return {
      repairOk: mismatch === undefined && after.verify().ok && (unnamed.length === 0 || (report.repaired?.unknownShards ?? 0) > 0),
      lost: lost.length,
      mismatch,
      unnamed,
      quarantined: report.repaired?.files.length ?? 0,
    };
  } catch (err) {
    return { repairOk: false, repairError: String((err as Error)?.message ?? err) };
  }
}

for (const kind of ['mean', 'segments'] as const) {
  const good = build(kind);
  const files = [
    'store.json',
    'manifest.json',
    ...fs
      .readdirSync(path.join(good.dir, 'shards'))
      .sort()
      .map((f) => `shards/${f}`),
  ];
  let n = 0;
  for (const file of files) {
    for (const [what, damage] of damages) {
      const dir = path.join(work, `${kind}-${n++}`);
      fs.cpSync(good.dir, dir, { recursive: true });
      process.stdout.write(`${JSON.stringify({ kind, file, what, started: true })}\n`);
      damage(path.join(dir, file));
      const result = outcome(dir, kind, good);
      const extra = result.result === 'error' && file.startsWith('shards/') ? repaired(dir, kind, good) : {};
      process.stdout.write(`${JSON.stringify({ kind, file, what, ...result, ...extra })}\n`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  // The whole shards/ folder gone (a half-finished copy): the manifest still says what the store held.
  const gone = path.join(work, `${kind}-noshards`);
  fs.cpSync(good.dir, gone, { recursive: true });
  fs.rmSync(path.join(gone, 'shards'), { recursive: true });
  process.stdout.write(`${JSON.stringify({ kind, file: 'shards', what: 'folder deleted', ...outcome(gone, kind, good) })}\n`);
  // store.json says mean where the shards hold segments (or the reverse), sealed as a real one.
  const other = path.join(work, `${kind}-otherspec`);
  fs.cpSync(good.dir, other, { recursive: true });
  fs.writeFileSync(path.join(other, 'store.json'), encodeStoreJson({ ...SPECS[kind]!, pooling: kind === 'mean' ? 'segments' : 'mean' }));
  process.stdout.write(`${JSON.stringify({ kind, file: 'store.json', what: 'spec at odds with the shards', ...outcome(other, kind, good) })}\n`);
}
process.stdout.write('{"done":true}\n');
