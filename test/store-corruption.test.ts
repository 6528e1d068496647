// The feature store proves every value it returns (issue 23). A corruption corpus built here from two small good
// stores (test/helpers/store-corpus.ts: every file kind bit-flipped at seeded random offsets, truncated, extended,
// deleted, renamed, replaced by a FIFO, a symlink loop or a folder; shards/ deleted; store.json at odds with the
// shards): each case is a typed error naming the damaged file, or the good store's values bit for bit; after
// `verify --repair`, what is left reads as the good values and what is gone is named. Then: version 1 stores
// (sha256 per shard) read, proven and upgraded; a full disk (a small tmpfs where the machine lets us mount one, else
// an injected ENOSPC) is a typed error and a resume completes; the CLI's verify, repair, re-extraction and the
// refusal to train on damaged or missing features.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CalmkitError, DataError } from '../lib/errors';
import { FeatureStore, type StoreSpec } from '../lib/store/feature-store';
import { ProbeSet } from '../lib/probes/probe-set';
import { CHILD_ENV, makeDataset, runCli, tinyModel } from './helpers/extract-fixtures';
import { ROOT, tempDir } from './helpers/paths';

const tmp = tempDir('calmkit-corrupt-');
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(tmp, `s${n++}`);
const spec: StoreSpec = { model: { id: 'test-model' }, layers: [36], pooling: 'mean', formatting: 'tile', dtype: 'float32' };

test('the corruption corpus: every damaged copy is a typed error naming the file, or the good values; repair keeps the rest', (t) => {
  t.timeout(8 * 60_000);
  const work = fresh();
  fs.mkdirSync(work);
  // A read that blocked on a FIFO would end this child by its timeout: the last case started names it.
  const run = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, 'helpers', 'store-corpus.ts'), work], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 6 * 60_000,
    maxBuffer: 64 << 20,
  });
  const lines = run.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const last = lines.filter((l) => l.started).pop();
  t.is(run.status, 0, `the corpus did not finish (last case started: ${JSON.stringify(last)}): ${run.stderr.slice(-3000)}`);
  t.true(
    lines.some((l) => l.done),
    'the corpus ran to its end',
  );
  const cases = lines.filter((l) => l.result !== undefined);
  const counts: Record<string, number> = {};
  for (const c of cases) {
    const label = `${c.kind} ${c.file}: ${c.what}`;
    counts[c.result as string] = (counts[c.result as string] ?? 0) + 1;
    if (c.result === 'untyped' || c.result === 'wrong') {
      t.fail(`${label}: ${c.result}: ${c.why ?? c.message}`);
      continue;
    }
    if (c.result === 'good') {
      // Only a lost manifest is harmless: the shards themselves say everything; anything else must be an error.
      t.true(c.file === 'manifest.json' && (c.what === 'deleted' || c.what === 'renamed'), `${label}: read as the good values`);
      continue;
    }
    const file = String(c.file);
    const stem = path.basename(file).replace(/\.(npy|json)$/, '');
    t.true(
      String(c.message).includes(stem) || (file === 'shards' && String(c.message).includes('shards/')),
      `${label}: the error does not name the file: ${c.message}`,
    );
    t.true(String(c.code).startsWith('ERR_DATA_STORE_'), `${label}: ${c.code}`);
    if (c.repairOk !== undefined) t.true(c.repairOk, `${label}: after --repair: ${JSON.stringify(c)}`);
  }
  t.true(cases.length >= 200, `${cases.length} cases`);
  t.log(`${cases.length} damaged copies: ${JSON.stringify(counts)}`);
});

/** Rewrites a version 2 store as calmkit wrote stores before checksums: sha256 per shard, nothing sealed. */
function downgrade(dir: string): void {
  const shards = path.join(dir, 'shards');
  for (const f of fs.readdirSync(shards).filter((x) => x.endsWith('.json'))) {
    const doc = JSON.parse(fs.readFileSync(path.join(shards, f), 'utf8'));
    const npy = fs.readFileSync(path.join(shards, f.replace(/\.json$/, '.npy')));
    const v1 = {
      format: doc.format,
      version: 1,
      writer: doc.writer,
      dtype: doc.dtype,
      dim: doc.dim,
      rows: doc.rows,
      sha256: crypto.createHash('sha256').update(npy).digest('hex'),
      entries: doc.entries.map(({ key, row, shape }: { key: string; row: number; shape: number[] }) => ({ key, row, shape })),
      failures: doc.failures,
    };
    fs.writeFileSync(path.join(shards, f), `${JSON.stringify(v1)}\n`);
  }
  const store = JSON.parse(fs.readFileSync(path.join(dir, 'store.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'store.json'), `${JSON.stringify({ format: store.format, version: 1, spec: store.spec }, null, 2)}\n`);
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  delete manifest.crc32;
  fs.writeFileSync(path.join(dir, 'manifest.json'), `${JSON.stringify({ ...manifest, version: 1 }, null, 1)}\n`);
}

test('format 1 stores: read as before, each shard proven by its sha256 on first read; upgrade seals them as format 2', (t) => {
  const dir = fresh();
  const store = FeatureStore.open(dir, { create: { ...spec, dtype: 'float16', pooling: 'segments' } });
  const w = store.writer({ id: 'w', shardSize: 3 });
  for (let c = 0; c < 7; c++)
    w.put(
      `k${c}`,
      Float32Array.from({ length: 12 }, (_, i) => c + i / 7),
      [3, 4],
    );
  w.close();
  const good = store.readSegments(store.keys()).data;
  downgrade(dir);
  const old = FeatureStore.open(dir);
  t.is(old.formatVersion, 1);
  t.deepEqual(old.readSegments(old.keys()).data, good);
  const report = old.verify();
  t.true(report.ok);
  t.is(report.version1Shards, 3);
  // A flipped value bit in a format 1 shard: its sha256 catches it on the first read in a process.
  const copy = fresh();
  fs.cpSync(dir, copy, { recursive: true });
  const npy = path.join(copy, 'shards', 'w-000001.npy');
  const bytes = fs.readFileSync(npy);
  bytes[bytes.length - 3]! ^= 0x10;
  fs.writeFileSync(npy, bytes);
  const err = t.throws(() => FeatureStore.open(copy).readSegments(['k3']), { instanceOf: DataError });
  t.is(err?.code, 'ERR_DATA_STORE_CORRUPT');
  t.regex(err!.message, /w-000001\.npy.*sha256/);
  t.false(FeatureStore.open(copy).verify().ok);
  // Upgrade: sidecars and store.json sealed, the .npy files untouched, the values the same.
  const before = fs
    .readdirSync(path.join(dir, 'shards'))
    .filter((f) => f.endsWith('.npy'))
    .map((f) => fs.readFileSync(path.join(dir, 'shards', f)));
  t.deepEqual(old.upgrade(), { shards: 3, storeJson: true });
  const after = fs
    .readdirSync(path.join(dir, 'shards'))
    .filter((f) => f.endsWith('.npy'))
    .map((f) => fs.readFileSync(path.join(dir, 'shards', f)));
  t.deepEqual(after, before);
  const sealed = FeatureStore.open(dir);
  t.is(sealed.formatVersion, 2);
  t.deepEqual(sealed.readSegments(sealed.keys()).data, good);
  t.deepEqual(sealed.verify().version1Shards, 0);
  t.true(fs.readFileSync(path.join(dir, 'shards', 'w-000000.json'), 'utf8').startsWith('{"crc32":"'));
  // An upgrade refuses a damaged store rather than sealing damage in.
  t.is(t.throws(() => FeatureStore.open(copy).upgrade(), { instanceOf: DataError })?.code, 'ERR_DATA_STORE_CORRUPT');
});

test('the store works without the addon: node:zlib gives the same checksums (a child without calmkit.node)', (t) => {
  const dir = fresh();
  const store = FeatureStore.open(dir, { create: spec });
  const w = store.writer({ id: 'w', shardSize: 2 });
  for (let c = 0; c < 5; c++)
    w.put(
      `k${c}`,
      Float32Array.from({ length: 8 }, (_, i) => c * 10 + i),
    );
  w.close();
  const script = `const { FeatureStore } = require(${JSON.stringify(path.join(ROOT, 'lib', 'store', 'feature-store.ts'))});
const { checksumImplementation } = require(${JSON.stringify(path.join(ROOT, 'lib', 'store', 'checksum.ts'))});
const s = FeatureStore.open(process.argv[1]);
const w = s.writer({ id: 'nozlib' }); w.put('extra', new Float32Array([1, 2, 3, 4, 5, 6, 7, 8])); w.close();
console.log(JSON.stringify({ impl: checksumImplementation(), sum: Array.from(s.readMatrix(s.keys()).data).reduce((a, b) => a + b, 0), ok: s.verify().ok }));`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '-e', script, dir], {
    env: { ...process.env, CALMKIT_ADDON_PATH: path.join(tmp, 'no-such-addon.node') },
    encoding: 'utf8',
  });
  const got = JSON.parse(out.trim().split('\n').pop()!);
  t.deepEqual(got, { impl: 'node:zlib', sum: [0, 1, 2, 3, 4].reduce((a, c) => a + 8 * c * 10 + 28, 0) + 36, ok: true });
  // ... and what it wrote, this process (with the addon) proves with libdeflate.
  const again = FeatureStore.open(dir);
  t.true(again.verify().ok);
  t.deepEqual(Array.from(again.get('extra').data), [1, 2, 3, 4, 5, 6, 7, 8]);
});

/** A small tmpfs at `dir` when the machine lets this process mount one (root, no sandbox refusing it). */
function mountTmpfs(dir: string, size: string): boolean {
  fs.mkdirSync(dir, { recursive: true });
  return spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]).status === 0;
}

test('a full disk while a store is written: a typed error naming the path, the store stays whole, and a resume completes', async (t) => {
  const dir = fresh();
  const mounted = mountTmpfs(dir, '256k');
  t.teardown(() => {
    if (mounted) spawnSync('umount', [dir]);
  });
  let restore = () => {};
  if (!mounted) {
    // No mount allowed: the same failure injected, fs.writeSync refusing past a byte budget as a full disk does.
    t.log('tmpfs not mountable here: ENOSPC injected into fs.writeSync');
    const real = fs.writeSync;
    let budget = 256 * 1024;
    (fs as { writeSync: unknown }).writeSync = (fd: number, buf: Uint8Array, ...rest: unknown[]) => {
      const len = typeof buf === 'string' ? Buffer.byteLength(buf) : buf.byteLength;
      budget -= len;
      if (budget < 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
      return (real as (...a: unknown[]) => number)(fd, buf, ...rest);
    };
    restore = () => ((fs as { writeSync: unknown }).writeSync = real);
  } else t.log('tmpfs of 256 KiB mounted');
  t.teardown(() => restore());
  const store = FeatureStore.open(path.join(dir, 'store'), { create: spec });
  const w = store.writer({ id: 'w', shardSize: 8 });
  const value = (c: number) => Float32Array.from({ length: 1024 }, (_, i) => c + i / 1024);
  let err: unknown;
  let c = 0;
  try {
    for (; c < 1000; c++) w.put(`k${String(c).padStart(4, '0')}`, value(c));
  } catch (e) {
    err = e;
  }
  t.true(err instanceof DataError, String(err));
  t.is((err as DataError).code, 'ERR_DATA_STORE_IO');
  t.regex((err as DataError).message, /no space left on the device/);
  t.true((err as DataError).message.includes(path.join(dir, 'store')), (err as DataError).message);
  // What was published is whole and readable; nothing half-written is visible.
  const after = FeatureStore.open(path.join(dir, 'store'));
  t.true(after.verify().ok);
  const kept = after.keys();
  t.true(kept.length > 0 && kept.length % 8 === 0, `${kept.length} keys`);
  kept.forEach((k) => {
    t.is(after.get(k).data[5], Number(k.slice(1)) + 5 / 1024);
  });
  // Free space, resume: every clip ends up stored.
  restore();
  if (mounted) spawnSync('mount', ['-o', 'remount,size=16m', dir]);
  const resume = after.writer({ id: 'w2', shardSize: 64 });
  for (let k = 0; k < 300; k++) resume.put(`k${String(k).padStart(4, '0')}`, value(k));
  resume.close();
  t.is(after.size, 300);
  t.true(after.verify().ok);
  t.is(after.get('k0299').data[1], 299 + 1 / 1024);
});

test('calmkit: train refuses a damaged store naming the shard and clips; store verify, --repair, and extract redoes exactly those clips; missing clips need --allow-missing, which the probe set and reports record', async (t) => {
  t.timeout(10 * 60_000);
  const root = fresh();
  const data = path.join(root, 'data');
  const { good } = await makeDataset(data, 16);
  // Two instruments labelled on every clip (the fixture's own labels leave every instrument single-class).
  const rows = good.flatMap((k, i) => [`${k},piano,${i % 3 === 0 ? 0.9 : 0.1},3`, `${k},violin,${i % 2 === 1 ? 0.9 : 0.1},3`]);
  fs.writeFileSync(path.join(data, 'openmic-2018-aggregated-labels.csv'), `sample_key,instrument,relevance,num_responses\n${rows.join('\n')}\n`);
  const model = await tinyModel(root);
  const out = path.join(root, 'out');
  const extract = ['extract', '--model', model, '--dataset', data, '--out', out, '--flush-every', '4', '--layers', '2'];
  let r = await runCli(extract);
  t.is(r.code, 0, r.stderr);
  const dir = path.join(out, 'layer-2');
  const shards = fs
    .readdirSync(path.join(dir, 'shards'))
    .filter((f) => f.endsWith('.npy'))
    .sort();
  t.is(shards.length, 4);
  const victim = FeatureStore.open(dir)
    .state.shards.find((s) => s.name === shards[1])!
    .sidecar.entries.map((e) => e.key);
  const npy = path.join(dir, 'shards', shards[1]!);
  const bytes = fs.readFileSync(npy);
  bytes[bytes.length - 100]! ^= 0x04;
  fs.writeFileSync(npy, bytes);
  const probes = path.join(root, 'p.calmkit-probes');
  const train = [
    'train',
    '--dataset',
    data,
    '--features',
    dir,
    '--out',
    probes,
    '--epochs',
    '2',
    '--batch',
    '4',
    '--val-fraction',
    '0.25',
    '--grid',
    'hidden=[] dropout=0 l2=0',
    '--device',
    'cpu',
  ];
  r = await runCli(train);
  t.is(r.code, 1);
  t.regex(r.stderr, /^calmkit: ERR_DATA_STORE_CORRUPT: shard .*\.npy is damaged: the bytes of 1 clip: \d+_\d+ differ from their checksums/m);
  t.true(r.stderr.includes(shards[1]!));
  t.false(fs.existsSync(probes), 'nothing trained on damaged features');
  r = await runCli(['store', 'verify', dir]);
  t.is(r.code, 1, r.stdout + r.stderr);
  t.regex(r.stdout, new RegExp(`ok +shards/${shards[0]!.replace('.', '\\.')} \\(4 clips\\)`));
  t.regex(r.stdout, new RegExp(`DAMAGED +shards/${shards[1]!.replace('.', '\\.')}: `));
  r = await runCli(['store', 'verify', dir, '--repair']);
  t.is(r.code, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /moved 2 file\(s\) to .*quarantine.*4 clip\(s\) to re-extract/);
  t.deepEqual(
    FeatureStore.open(dir).keys(),
    good.filter((k) => !victim.includes(k)),
  );
  t.true(fs.readdirSync(path.join(dir, 'quarantine')).length === 1, 'quarantined, nothing deleted');
  // Missing clips: refused by default, naming how many and which; --allow-missing trains and says so everywhere.
  r = await runCli(train);
  t.is(r.code, 1);
  t.regex(r.stderr, /ERR_DATA_MISSING_FEATURES: 4 of the 16 labelled clips of the partitions have no features/);
  t.true(victim.every((k) => r.stderr.includes(k)));
  const report = path.join(root, 'report');
  r = await runCli([...train, '--allow-missing', '--report', report]);
  t.is(r.code, 0, r.stderr);
  t.is((await ProbeSet.load(probes)).info.missingClips, 4);
  t.regex(fs.readFileSync(path.join(report, 'table.md'), 'utf8'), /4 labelled clips of the partitions had no features and were left out/);
  t.is(JSON.parse(fs.readFileSync(path.join(report, 'table.json'), 'utf8')).missingClips, 4);
  r = await runCli(['report', '--probes', probes, '--out', path.join(root, 'report2')]);
  t.is(r.code, 1);
  t.regex(r.stderr, /ERR_DATA_MISSING_FEATURES: the probe set was trained without 4 labelled clips/);
  r = await runCli(['report', '--probes', probes, '--out', path.join(root, 'report2'), '--allow-missing']);
  t.is(r.code, 0, r.stderr);
  // The next extraction redoes exactly the quarantined clips.
  r = await runCli(extract);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /extract: 4 extracted, 12 already in the store, 0 failed/);
  const full = FeatureStore.open(dir);
  t.deepEqual(full.keys(), good);
  t.true(full.verify().ok);
  // A FIFO where the manifest should be: extraction refuses at once, naming it (no hang).
  fs.rmSync(path.join(dir, 'manifest.json'));
  execFileSync('mkfifo', [path.join(dir, 'manifest.json')]);
  r = await runCli(extract, { ...CHILD_ENV });
  t.is(r.code, 1);
  t.regex(r.stderr, /ERR_DATA_STORE_CORRUPT: .*manifest\.json.*FIFO/);
});

test('compact and repair leave tombstones: a manifest a concurrent writer wrote from the old listing is no damage', (t) => {
  const dir = fresh();
  const store = FeatureStore.open(dir, { create: spec });
  const w = store.writer({ id: 'w', shardSize: 2 });
  for (let c = 0; c < 6; c++) w.put(`k${c}`, [c, 2 * c]);
  w.close();
  const stale = fs.readFileSync(path.join(dir, 'manifest.json'));
  const good = store.readMatrix(store.keys()).data;
  t.true(store.compact({ shardSize: 4 }).ok);
  // A writer that read the old manifest before compact removed the shards, and renamed its own over compact's.
  fs.writeFileSync(path.join(dir, 'manifest.json'), stale);
  const after = FeatureStore.open(dir);
  t.deepEqual(after.corruptShards(), []);
  t.deepEqual(after.readMatrix(after.keys()).data, good);
  after.writer({ id: 'w' }).close();
  t.is(after.lastSeq('w'), 2, 'removed names are never reused');
  // The same after a repair: the quarantined shard is gone on purpose, not lost.
  const npy = path.join(dir, 'shards', after.state.shards[0]!.name);
  fs.truncateSync(npy, 10);
  after.refresh();
  const before = fs.readFileSync(path.join(dir, 'manifest.json'));
  const report = after.verify({ repair: true });
  t.is(report.repaired!.clips, 4);
  fs.writeFileSync(path.join(dir, 'manifest.json'), before);
  const repaired = FeatureStore.open(dir);
  t.deepEqual(repaired.corruptShards(), []);
  t.deepEqual(repaired.keys(), ['k4', 'k5']);
  // Tombstones go once no manifest lists their shard (and they are old enough).
  repaired.updateManifest();
  t.true(repaired.cleanup({ maxAgeMs: 0 }).some((f) => f.endsWith('.removed')));
});

test('leftovers stay ignored: temp files, an unpublished .npy claim, stray files and a quarantine folder', (t) => {
  const dir = fresh();
  const store = FeatureStore.open(dir, { create: spec });
  const w = store.writer({ id: 'w', shardSize: 2 });
  for (let c = 0; c < 5; c++) w.put(`k${c}`, [c, -c]);
  w.close();
  const good = store.readMatrix(store.keys()).data;
  fs.writeFileSync(path.join(dir, 'tmp', 'w.npy.host.1.dead.tmp'), 'partial');
  fs.copyFileSync(path.join(dir, 'shards', 'w-000000.npy'), path.join(dir, 'shards', 'other-000000.npy'));
  fs.writeFileSync(path.join(dir, 'shards', 'notes.txt'), 'mine');
  fs.writeFileSync(path.join(dir, 'README'), 'a store');
  fs.mkdirSync(path.join(dir, 'quarantine', 'old'), { recursive: true });
  const again = FeatureStore.open(dir);
  t.deepEqual(again.readMatrix(again.keys()).data, good);
  t.deepEqual(again.keys(), ['k0', 'k1', 'k2', 'k3', 'k4']);
  t.true(again.verify().ok);
  t.deepEqual(again.corruptShards(), []);
});

test('a store that is damaged everywhere a record cannot tell: unknown clips block every read, and writes, until repaired', (t) => {
  const dir = fresh();
  const store = FeatureStore.open(dir, { create: spec });
  const w = store.writer({ id: 'w', shardSize: 2 });
  for (let c = 0; c < 4; c++) w.put(`k${c}`, [c, c]);
  w.close();
  // Both the sidecar and the manifest damaged: nothing says which clips the shard held.
  fs.writeFileSync(path.join(dir, 'shards', 'w-000000.json'), 'garbage');
  fs.writeFileSync(path.join(dir, 'manifest.json'), '{"crc32":"00000000",');
  const s = FeatureStore.open(dir);
  for (const f of [() => s.get('k3'), () => s.readMatrix(['k2']), () => s.writer()]) {
    const err = t.throws(f, { instanceOf: CalmkitError });
    t.is(err?.code, 'ERR_DATA_STORE_CORRUPT');
    t.regex(err!.message, /manifest\.json|w-000000/);
  }
  const report = s.verify({ repair: true });
  t.false(report.ok);
  t.is(report.repaired!.unknownShards, 1);
  const after = FeatureStore.open(dir);
  t.deepEqual(after.keys(), ['k2', 'k3']);
  t.deepEqual(Array.from(after.get('k3').data), [3, 3]);
});
