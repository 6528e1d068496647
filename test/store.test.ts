import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataError } from '../lib/errors';
import { FeatureStore, type StoreSpec } from '../lib/store/feature-store';
import { PYTHON } from './helpers/paths';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-store-'));
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(tmp, `s${n++}`);
const HELPER = path.join(__dirname, 'helpers', 'store-writer.ts');
const spec: StoreSpec = { model: { id: 'test-model', hash: 'abc' }, layers: [36], pooling: 'mean', formatting: 'tile', dtype: 'float32' };

function runWriter(dir: string, id: string, from: number, to: number, shardSize: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', HELPER, dir, id, String(from), String(to), String(shardSize), 'keys'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer ${id} exited ${code}: ${err}`))));
  });
}

test('put/get/readMatrix round trip, resume skips existing keys, manifest describes the shards', (t) => {
  const dir = fresh();
  const store = FeatureStore.open(dir, { create: spec });
  const w = store.writer({ id: 'w1', shardSize: 3 });
  for (let i = 0; i < 7; i++) t.true(w.put(`k${i}`, Float32Array.from([i, i + 0.25, -i])));
  t.true(store.has('k6'), 'pending keys count as present for this process');
  t.false(w.put('k1', [9, 9, 9]), 'a key already written is skipped');
  w.fail('broken', { input: '/a/broken.ogg', code: 'ERR_AUDIO_DECODE', message: 'bad ogg' });
  w.close();
  const again = FeatureStore.open(dir, { expect: spec });
  t.deepEqual(again.keys(), ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6']);
  t.deepEqual(Array.from(again.get('k4').data), [4, 4.25, -4]);
  t.deepEqual(again.get('k4').shape, [3]);
  const m = again.readMatrix(['k6', 'k0', 'k1', 'k5']);
  t.is(m.rows, 4);
  t.is(m.dim, 3);
  t.deepEqual(Array.from(m.data), [6, 6.25, -6, 0, 0.25, -0, 1, 1.25, -1, 5, 5.25, -5]);
  t.deepEqual(
    again.failures().map((f) => [f.key, f.code, f.input]),
    [['broken', 'ERR_AUDIO_DECODE', '/a/broken.ogg']],
  );
  // resume: a second writer only adds what is missing
  const w2 = again.writer({ id: 'w2' });
  t.false(w2.put('k3', [0, 0, 0]));
  t.true(w2.put('broken', [7, 7, 7]));
  w2.close();
  t.deepEqual(again.failures(), [], 'a later success supersedes the failure');
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  t.deepEqual(manifest.spec, JSON.parse(JSON.stringify(again.spec)));
  t.is(manifest.dtype, '<f4');
  t.deepEqual(
    manifest.shards.map((s: { file: string }) => s.file),
    ['shards/w1-000000.npy', 'shards/w1-000001.npy', 'shards/w1-000002.npy', 'shards/w2-000000.npy'],
  );
  t.deepEqual(manifest.shards[0].keys, ['k0', 'k1', 'k2']);
  t.is(manifest.entries, 8);
  // numpy reads a shard and agrees with the manifest's row order
  const out = execFileSync(
    PYTHON,
    [
      '-c',
      `import numpy as np, json; m = json.load(open('manifest.json')); a = np.load(m['shards'][1]['file']); print(a.shape, m['shards'][1]['keys'], a[0].tolist())`,
    ],
    { cwd: dir, encoding: 'utf8' },
  );
  t.is(out.trim(), "(3, 3) ['k3', 'k4', 'k5'] [3.0, 3.25, -3.0]");
  t.is(t.throws(() => again.get('nope'), { instanceOf: DataError })?.code, 'ERR_DATA_STORE_KEY');
});

test('multi-row entries, float16 storage and shape checks', (t) => {
  const dir = fresh();
  const store = FeatureStore.open(dir, { create: { ...spec, dtype: 'float16', pooling: 'none' } });
  const w = store.writer({ shardSize: 10 });
  w.put(
    'a',
    Float32Array.from({ length: 12 }, (_, i) => i / 3),
    [3, 4],
  );
  w.put(
    'b',
    Float32Array.from({ length: 12 }, (_, i) => -i),
    [3, 4],
  );
  w.put(
    'c',
    Float32Array.from({ length: 8 }, (_, i) => i),
    [2, 4],
  );
  w.put('d', Float32Array.from([1, 2, 3]), [3]);
  w.close();
  const got = store.get('a');
  t.deepEqual(got.shape, [3, 4]);
  t.true(Math.abs(got.data[5]! - 5 / 3) < 1e-3 && got.data[5] !== Math.fround(5 / 3), 'stored as float16');
  t.deepEqual(Array.from(store.readMatrix(['b', 'a']).data.subarray(0, 3)), [-0, -1, -2]);
  t.is(t.throws(() => store.readMatrix(['a', 'c']), { instanceOf: DataError })?.code, 'ERR_DATA_STORE_SHAPE');
  t.deepEqual(Array.from(store.get('d').data), [1, 2, 3]);
  t.is(JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')).shards.length, 2, 'a new row width starts a new shard');
  t.is(t.throws(() => store.writer().put('e', [1, 2, 3], [2, 2]), { instanceOf: DataError })?.code, 'ERR_DATA_STORE_SHAPE');
});

test('readSegments: [clips, segments, width] with zero padding and real counts; float16; one-vector entries; widths must agree', (t) => {
  const dir = fresh();
  const store = FeatureStore.open(dir, { create: { ...spec, dtype: 'float16', pooling: 'segments' } });
  const w = store.writer({ shardSize: 2 });
  const seg = (k: number, S: number) => Float32Array.from({ length: S * 4 }, (_, i) => k + i / 8);
  w.put('a', seg(1, 3), [3, 4]);
  w.put('b', seg(2, 2), [2, 4]);
  w.put('c', seg(3, 3), [3, 4]);
  w.put('d', seg(4, 1), [4]);
  w.put('e', Float32Array.from({ length: 10 }), [2, 5]);
  w.close();
  const m = store.readSegments(['c', 'b', 'd', 'a']);
  t.is(m.clips, 4);
  t.is(m.segments, 3);
  t.is(m.width, 4);
  t.deepEqual(Array.from(m.validSegments!), [3, 2, 1, 3]);
  const clip = (i: number) => Array.from(m.data.subarray(i * 12, (i + 1) * 12));
  t.deepEqual(clip(0), Array.from(store.get('c').data));
  t.deepEqual(clip(1), [...Array.from(store.get('b').data), 0, 0, 0, 0], 'padding is zero');
  t.deepEqual(clip(2), [...Array.from(store.get('d').data), 0, 0, 0, 0, 0, 0, 0, 0], 'a one-vector entry is one segment');
  t.deepEqual(clip(3), Array.from(store.get('a').data));
  t.is(clip(3)[1], 1.125, 'float16 halves decoded exactly');
  const full = store.readSegments(['a', 'c']);
  t.is(full.validSegments, undefined, 'no counts when no clip is padded');
  t.is(t.throws(() => store.readSegments(['a', 'e']), { instanceOf: DataError })?.code, 'ERR_DATA_STORE_SHAPE');
  t.deepEqual(store.readSegments([]), { data: new Float32Array(0), clips: 0, segments: 0, width: 0 });
});

// Matrix reads go through a bounded buffer (8 MiB): a read of more than that crosses chunk boundaries inside a
// shard and between shards, and must still put every entry's values in its row.
test('readMatrix and readSegments across read chunks and shards agree with get() entry by entry', (t) => {
  const dir = fresh();
  const store = FeatureStore.open(dir, { create: { ...spec, pooling: 'segments' } });
  const w = store.writer({ shardSize: 250 });
  const S = 12;
  const W = 1000;
  for (let k = 0; k < 400; k++)
    w.put(
      `k${String(k).padStart(3, '0')}`,
      Float32Array.from({ length: S * W }, (_, i) => k * 1e4 + i),
      [S, W],
    );
  w.close();
  // The first shard's 250 entries (12 MB) are one run of neighbours, read in two chunks; gaps cut the rest.
  const keys = store
    .keys()
    .filter((_, i) => i < 250 || i % 7 !== 3)
    .reverse();
  const m = store.readSegments(keys);
  t.is(m.data.length, keys.length * S * W);
  t.true(250 * S * W * 4 > 8 * 2 ** 20, 'a run longer than one read chunk');
  const flat = store.readMatrix(keys);
  t.deepEqual(flat.data, m.data);
  keys.forEach((k, i) => {
    const got = store.get(k).data;
    const row = m.data.subarray(i * S * W, (i + 1) * S * W);
    if (got[0] !== row[0] || got[S * W - 1] !== row[S * W - 1] || got[(S * W) / 2] !== row[(S * W) / 2]) t.fail(`entry ${k} is misplaced`);
  });
  t.pass();
});

test('a different spec is refused; a missing store is a DataError', (t) => {
  const dir = fresh();
  FeatureStore.open(dir, { create: spec });
  for (const other of [
    { ...spec, layers: [35] },
    { ...spec, dtype: 'float16' as const },
    { ...spec, model: { id: 'test-model', hash: 'zzz' } },
    { ...spec, pooling: 'segments:8' },
    { ...spec, formatting: 'none' },
  ]) {
    const err = t.throws(() => FeatureStore.open(dir, { create: other }), { instanceOf: DataError });
    t.is(err?.code, 'ERR_DATA_STORE_SPEC');
    t.true(err!.message.includes(dir));
  }
  t.is(t.throws(() => FeatureStore.open(fresh()), { instanceOf: DataError })?.code, 'ERR_DATA_STORE_NOT_FOUND');
});

test('two concurrent writer processes on overlapping keys: one entry per key, deterministic winner, consistent manifest', async (t) => {
  const dir = fresh();
  FeatureStore.open(dir, { create: spec });
  await Promise.all([runWriter(dir, 'a', 0, 60, 7), runWriter(dir, 'b', 30, 90, 5)]);
  const store = FeatureStore.open(dir, { expect: spec });
  t.is(store.size, 90);
  t.true(store.verify().ok);
  // Writers refresh their view on every flush, so how many keys both wrote depends on timing; whichever
  // copy is visible must be the one of the first shard in name order.
  for (let i = 30; i < 60; i++) {
    const e = store.entry(`key00${i}`)!;
    t.is(store.get(e.key).data[0], i * 1000 + (e.shard.startsWith('b') ? 0.5 : 0));
  }
  const shadowing = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')).shards as { file: string; shadowed: string[] }[];
  for (const s of shadowing) for (const k of s.shadowed) t.true(`shards/${store.entry(k)!.shard}` < s.file);
  t.is(store.get('key0075').data[0], 75000.5);
  t.is(store.get('key0010').data[0], 10000);
  // A forced race: two views opened before either writes, both write k; 'a' sorts first and wins.
  const viewB = FeatureStore.open(dir, { expect: spec });
  const viewA = FeatureStore.open(dir, { expect: spec });
  const wb = viewB.writer({ id: 'b2' });
  const wa = viewA.writer({ id: 'a2' });
  wb.put('raced', [2, 2, 2, 2, 2, 2, 2, 2]);
  wa.put('raced', [1, 1, 1, 1, 1, 1, 1, 1]);
  wb.close();
  wa.close();
  store.refresh();
  t.is(store.get('raced').data[0], 1);
  t.true(store.verify().duplicates >= 1);
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  const visible = manifest.shards.flatMap((s: { keys: string[]; shadowed: string[] }) => s.keys.filter((k) => !s.shadowed.includes(k)));
  t.is(visible.length, 91);
  t.is(new Set(visible).size, 91);
  const files = fs
    .readdirSync(path.join(dir, 'shards'))
    .filter((f) => f.endsWith('.npy'))
    .sort();
  t.deepEqual(
    manifest.shards.map((s: { file: string }) => s.file),
    files.map((f) => `shards/${f}`),
    'the manifest lists every published shard',
  );
  t.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), []);
  t.is(store.failures().length, 18);
  const before = store.readMatrix(store.keys());
  const compacted = store.compact({ shardSize: 40 });
  t.true(compacted.ok);
  t.is(compacted.duplicates, 0);
  t.is(compacted.shards, 3);
  t.is(compacted.entries, 91);
  t.deepEqual(store.readMatrix(store.keys()).data, before.data, 'compaction keeps the visible values');
  t.is(store.failures().length, 18);
});

test('a SIGKILLed writer leaves no partial entry; crash leftovers are ignored and cleaned', async (t) => {
  const dir = fresh();
  FeatureStore.open(dir, { create: spec });
  const child = spawn(process.execPath, ['--import', 'tsx', HELPER, dir, 'victim', '0', '0', '40', 'forever'], { stdio: 'ignore' });
  const shardsDir = path.join(dir, 'shards');
  const published = () => fs.readdirSync(shardsDir).filter((f) => f.endsWith('.npy')).length;
  const deadline = Date.now() + 60_000;
  while (published() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  // A reader running alongside the writer only ever sees whole, valid shards.
  const reader = FeatureStore.open(dir, { expect: spec });
  for (let i = 0; i < 3; i++) {
    const seen = reader.verify();
    t.true(seen.ok, JSON.stringify(seen.corrupt));
    t.is(seen.entries % 40, 0);
    await new Promise((r) => setTimeout(r, 50));
  }
  // Kill at an arbitrary moment of the next shard's writing.
  await new Promise((r) => setTimeout(r, 37));
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  // Also fabricate the worst leftovers a crash can produce: a half-written temp file and a claimed,
  // never-published sidecar.
  fs.writeFileSync(path.join(dir, 'tmp', 'victim.npy.x.1.dead.tmp'), 'partial');
  fs.writeFileSync(path.join(shardsDir, 'victim-999999.json'), '{"partial": tr');
  const store = FeatureStore.open(dir, { expect: spec });
  t.true(store.size >= 80);
  t.is(store.size % 40, 0, 'only whole shards are visible');
  const report = store.verify();
  t.true(report.ok, JSON.stringify(report.corrupt));
  const keys = store.keys();
  const last = store.get(keys[keys.length - 1]!);
  t.is(last.data.length, 8000);
  t.is(last.data[7999], (keys.length - 1) * 1000 + 7999);
  const removed = store.cleanup({ maxAgeMs: 0 });
  t.true(removed.some((f) => f.endsWith('victim-999999.json')));
  t.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), []);
  // the writer id can be reused after a crash: it continues after the highest claimed sequence number
  const w = store.writer({ id: 'victim' });
  w.put('after', [1]);
  w.close();
  t.true(store.has('after'));
});

test('corrupt shards are detected and reported, reads of them are DataErrors naming the shard', (t) => {
  const dir = fresh();
  const store = FeatureStore.open(dir, { create: spec });
  const w = store.writer({ id: 'w', shardSize: 4 });
  for (let i = 0; i < 8; i++)
    w.put(
      `k${i}`,
      Float32Array.from({ length: 16 }, (_, j) => i + j),
    );
  w.close();
  const first = path.join(dir, 'shards', 'w-000000.npy');
  const second = path.join(dir, 'shards', 'w-000001.npy');
  const bytes = fs.readFileSync(second);
  bytes[bytes.length - 5]! ^= 0xff;
  fs.writeFileSync(second, bytes);
  fs.truncateSync(first, fs.statSync(first).size - 10);
  const report = store.verify();
  t.false(report.ok);
  t.deepEqual(report.corrupt.map((c) => c.shard).sort(), ['w-000000.npy', 'w-000001.npy']);
  t.regex(report.corrupt.find((c) => c.shard === 'w-000001.npy')!.message, /differ from their checksums/);
  const err = t.throws(() => store.get('k1'), { instanceOf: DataError });
  t.is(err?.code, 'ERR_DATA_STORE_CORRUPT');
  t.true(err!.message.includes(first));
  t.is(t.throws(() => store.verify({ throwOnCorrupt: true }), { instanceOf: DataError })?.code, 'ERR_DATA_STORE_CORRUPT');
});

// Extraction's `windows: 'all'` pools every window of a clip: a mean store then holds [windows, width] per clip, and
// its spec says so (extra.windows); with the first window only (the default), one vector per clip.
test("a mean store over windows 'all' holds [windows, width] per clip; a one-vector entry there is damage named with its shard", (t) => {
  const extraction = { ...spec, extra: { settings: 'abc', windows: 'all' } } as StoreSpec;
  const dir = fresh();
  const w = FeatureStore.open(dir, { create: extraction }).writer({ id: 'w1' });
  w.put('a', Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
  w.put('b', Float32Array.from([7, 8, 9]), [1, 3]);
  w.close();
  const store = FeatureStore.open(dir, { expect: extraction });
  t.deepEqual(store.get('a').shape, [2, 3]);
  t.deepEqual(Array.from(store.get('b').data), [7, 8, 9]);
  const first = fresh();
  const w1 = FeatureStore.open(first, { create: { ...extraction, extra: { settings: 'abc', windows: 'first' } } }).writer({ id: 'w1' });
  w1.put('a', Float32Array.from([1, 2, 3]), [3]);
  w1.close();
  // The same shard read under a spec that says windows 'all' disagrees with it.
  const specFile = path.join(first, 'store.json');
  const other = fresh();
  fs.cpSync(dir, other, { recursive: true });
  fs.rmSync(path.join(other, 'shards'), { recursive: true });
  fs.cpSync(path.join(first, 'shards'), path.join(other, 'shards'), { recursive: true });
  fs.copyFileSync(path.join(first, 'manifest.json'), path.join(other, 'manifest.json'));
  t.true(fs.existsSync(specFile));
  const e = t.throws(() => FeatureStore.open(other).get('a'), { instanceOf: DataError });
  t.regex(e!.message, /pooling 'mean' over windows 'all' \(\[windows, width\] per clip\)/);
});
