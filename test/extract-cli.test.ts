import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { DataError } from '../lib/errors';
import { fileItems, layerDir, parseShard, resolveSettings, selectShard, settingsHash } from '../lib/extraction';
import { modelId } from '../lib/model';
import { makeDataset, publishedShards, runCli, snapshot, spawnCli, tinyModel, waitFor } from './helpers/extract-fixtures';
import { tempDir } from './helpers/paths';

const tmp = tempDir('calmkit-extract-');
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));

const DATA = path.join(tmp, 'data');
const BAD_DATA = path.join(tmp, 'bad-data');
// The tiny model has layers 1..6. Clips are tiled (the default) to the tiny model's ~3.4 s window: slow
// enough for the kill and interrupt tests to land part-way.
const SETTINGS = ['--layers', '3,6'];
const setup = (async () => {
  const model = await tinyModel(tmp);
  const ds = await makeDataset(DATA, 8);
  const bad = await makeDataset(BAD_DATA, 3, ['empty', 'truncated', 'text']);
  const full = path.join(tmp, 'full');
  const r = await runCli(['extract', '--dataset', DATA, '--model', model, '--out', full, ...SETTINGS]);
  return { model, keys: ds.good, bad, full, fullRun: r };
})();

const args = (model: string, out: string, ...more: string[]) => ['extract', '--dataset', DATA, '--model', model, '--out', out, ...SETTINGS, ...more];

function sameStore(t: import('ava').ExecutionContext, dir: string, reference: string) {
  for (const layer of [3, 6]) {
    const a = snapshot(layerDir(dir, layer));
    const b = snapshot(layerDir(reference, layer));
    t.deepEqual(a.keys, b.keys, `layer ${layer} keys`);
    for (const k of b.keys) t.is(a.bytes.get(k), b.bytes.get(k), `layer ${layer} ${k} features`);
    const v = a.store.verify();
    t.true(v.ok);
    t.is(v.duplicates, 0, `layer ${layer}: no duplicate entries`);
    t.deepEqual(a.store.failures(), []);
  }
}

test.serial('extract stores every clip of the dataset in one store per layer; a rerun skips them all', async (t) => {
  const { model, keys, full, fullRun } = await setup;
  t.is(fullRun.code, 0, fullRun.stderr);
  t.regex(fullRun.stdout, /8 extracted, 0 already in the store, 0 failed/);
  t.regex(fullRun.stderr, /settings [0-9a-f]{24} \(layers 3,6, mean, tile\)/);
  // The plain progress display's last line (one renderer for terminals and logs: lib/cli/progress.ts).
  t.regex(fullRun.stderr, /^extract: 8\/8 clips in [\d.]+ s/m);
  for (const layer of [3, 6]) {
    const { keys: stored, store } = snapshot(layerDir(full, layer));
    t.deepEqual(stored, keys);
    t.deepEqual(store.get(keys[0]!).shape, [128]);
    t.deepEqual(store.spec.layers, [layer]);
    t.is(store.spec.model.id, modelId(model));
    const manifest = JSON.parse(fs.readFileSync(path.join(layerDir(full, layer), 'manifest.json'), 'utf8'));
    t.is(manifest.entries, 8);
  }
  // Different layers are different features.
  t.notDeepEqual(snapshot(layerDir(full, 3)).bytes.get(keys[0]!), snapshot(layerDir(full, 6)).bytes.get(keys[0]!));
  const again = await runCli(args(model, full));
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /0 extracted, 8 already in the store, 0 failed/);
  sameStore(t, full, full);
  // Other settings into the same stores are refused rather than mixed.
  const other = await runCli(['extract', '--dataset', DATA, '--model', model, '--out', full, '--layers', '3,6', '--formatting', 'none']);
  t.is(other.code, 1);
  t.regex(other.stderr, /ERR_DATA_STORE_SPEC/);
});

test.serial('a run killed with SIGKILL part-way resumes to a store identical to an uninterrupted run', async (t) => {
  const { model, full } = await setup;
  const out = path.join(tmp, 'killed');
  const run = spawnCli(args(model, out, '--flush-every', '1'));
  // Kill it once some clips are published, well before the end.
  await waitFor('two published shards', () => publishedShards(layerDir(out, 6)) >= 2 || run.child.exitCode !== null, 90_000);
  run.child.kill('SIGKILL');
  const killed = await run.done;
  t.is(killed.signal, 'SIGKILL', killed.stderr);
  const partial = snapshot(layerDir(out, 6)).keys.length;
  t.true(partial >= 2 && partial < 8, `killed with ${partial} clips stored`);
  const resumed = await runCli(args(model, out));
  t.is(resumed.code, 0, resumed.stderr);
  t.regex(resumed.stdout, new RegExp(`${8 - partial} extracted, ${partial} already in the store`));
  sameStore(t, out, full);
});

test.serial('SIGINT stops cleanly: exit 130, finished clips flushed, the rerun completes', async (t) => {
  const { model, full } = await setup;
  const out = path.join(tmp, 'interrupted');
  const run = spawnCli(args(model, out, '--flush-every', '100'));
  await waitFor('two clips done', () => /extract: [1-7]\/8 clips/.test(run.output()) || run.child.exitCode !== null, 90_000, 50);
  run.child.kill('SIGINT');
  const r = await run.done;
  t.is(r.code, 130, r.stderr);
  t.regex(r.stderr, /interrupted; flushing finished clips/);
  const kept = snapshot(layerDir(out, 6)).keys.length;
  // flush-every 100 means nothing was published before the signal: what is kept was flushed on the way out.
  t.true(kept >= 1 && kept < 8, `kept ${kept}`);
  t.deepEqual(snapshot(layerDir(out, 3)).keys, snapshot(layerDir(out, 6)).keys);
  const resumed = await runCli(args(model, out));
  t.is(resumed.code, 0, resumed.stderr);
  sameStore(t, out, full);
});

test.serial('--shard 0/2 and 1/2, run at the same time into one store (one batching), add up to the whole', async (t) => {
  const { model, full, keys } = await setup;
  const out = path.join(tmp, 'sharded');
  // One of them batches 3 clips per forward pass: same bits.
  const [a, b] = await Promise.all([runCli(args(model, out, '--shard', '0/2', '--batch', '3')), runCli(args(model, out, '--shard', '1/2'))]);
  t.is(a.code, 0, a.stderr);
  t.is(b.code, 0, b.stderr);
  t.regex(a.stdout, /4 extracted/);
  t.regex(b.stdout, /4 extracted/);
  sameStore(t, out, full);
  t.deepEqual(snapshot(layerDir(out, 6)).keys, keys);
});

test.serial('bad audio files are recorded as failures with their reasons; every other clip is extracted', async (t) => {
  const { model, bad } = await setup;
  const out = path.join(tmp, 'bad');
  const r = await runCli(['extract', '--dataset', BAD_DATA, '--model', model, '--out', out, ...SETTINGS]);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stdout, /3 extracted, 0 already in the store, 3 failed/);
  const expected: Record<string, RegExp> = { empty: /^ERR_AUDIO_EMPTY$/, truncated: /^ERR_AUDIO_DECODE$/, text: /^ERR_AUDIO_DECODE$/ };
  for (const layer of [3, 6]) {
    const { keys, store } = snapshot(layerDir(out, layer));
    t.deepEqual(keys, bad.good);
    const manifest = JSON.parse(fs.readFileSync(path.join(layerDir(out, layer), 'manifest.json'), 'utf8')) as {
      failures: { key: string; input: string; code: string; message: string }[];
    };
    t.deepEqual(manifest.failures.map((f) => f.key).sort(), Object.keys(bad.bad).sort());
    for (const f of manifest.failures) {
      t.regex(f.code, expected[bad.bad[f.key]!]!);
      t.true(f.input.endsWith(`${f.key}.ogg`));
      t.true(f.message.includes(f.input), f.message);
    }
    t.is(store.failures().length, 3);
  }
  for (const key of Object.keys(bad.bad)) t.regex(r.stdout, new RegExp(`failed ${key} \\(.*\\): ERR_AUDIO_`));
});

test('files as input: keys are base names; two files with one key are refused', async (t) => {
  const dir = path.join(tmp, 'files');
  fs.mkdirSync(path.join(dir, 'a'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'b'), { recursive: true });
  const items = fileItems([path.join(dir, 'b', 'y.wav'), path.join(dir, 'a', 'x.ogg')]);
  t.deepEqual(
    items.map((i) => i.key),
    ['x', 'y'],
  );
  const err = t.throws(() => fileItems([path.join(dir, 'a', 'x.ogg'), path.join(dir, 'b', 'x.wav')]), { instanceOf: DataError });
  t.is(err.code, 'ERR_DATA_DUPLICATE_KEY');
  t.regex(err.message, /a\/x\.ogg and .*b\/x\.wav both have the sample key 'x'/);
  const r = await runCli(['extract', path.join(dir, 'a', 'x.ogg'), path.join(dir, 'b', 'x.wav'), '--model', '/nonexistent.pt', '--out', path.join(dir, 'out')]);
  t.is(r.code, 1);
  t.regex(r.stderr, /ERR_DATA_DUPLICATE_KEY/);
});

test('settings hash: stable, defaults filled in, descriptive fields and option order do not count', (t) => {
  const a = resolveSettings({ model: { id: 'm', path: '/a/model.pt', preset: 'tiny' }, layers: [6, 3, 6], formatting: 'tile' });
  const b = resolveSettings({ formatting: 'tile', targetSeconds: 62, layers: [3, 6], model: { id: 'm', path: '/elsewhere.pt' } });
  t.deepEqual(a.layers, [3, 6]);
  t.is(a.targetSeconds, 62);
  t.is(settingsHash(a), settingsHash(b));
  t.regex(settingsHash(a), /^[0-9a-f]{24}$/);
  for (const change of [
    { formatting: 'upsample' as const },
    { layers: [6] },
    { dtype: 'float16' as const },
    { precision: 'bf16' as const },
    { windows: 'all' as const },
    { model: { id: 'n' } },
  ]) {
    t.not(settingsHash(resolveSettings({ model: { id: 'm' }, layers: [3, 6], formatting: 'tile', ...change })), settingsHash(a), JSON.stringify(change));
  }
  t.deepEqual(resolveSettings({ model: { id: 'm' }, modelLayers: 6 }).layers, [6]);
  t.deepEqual(resolveSettings({ model: { id: 'm' } }).layers, [36]);
  t.throws(() => resolveSettings({ model: { id: 'm' }, modelLayers: 6, layers: [7] }), { code: 'ERR_INVALID_ARGUMENT', message: /layer 7 is out of range/ });
  t.throws(() => resolveSettings({ model: { id: 'm' }, pooling: 'segments' }), { message: /exactly one of segmentTokens and segmentSeconds/ });
});

test('shards are disjoint, cover every key and do not depend on input order', (t) => {
  const items = Array.from({ length: 11 }, (_, i) => ({ key: `k${String(i).padStart(2, '0')}`, input: '' }));
  const shuffled = items.slice().reverse();
  const parts = [0, 1, 2].map((i) => selectShard(shuffled, parseShard(`${i}/3`)).map((x) => x.key));
  t.deepEqual(
    parts.flat().sort(),
    items.map((x) => x.key),
  );
  t.deepEqual(
    parts.map((p) => p.length),
    [4, 4, 3],
  );
  t.deepEqual(
    selectShard(items, { index: 1, count: 3 }).map((x) => x.key),
    parts[1],
  );
  for (const bad of ['3/3', '1', 'a/b', '-1/2', '0/0']) t.throws(() => parseShard(bad), { code: 'ERR_INVALID_ARGUMENT' });
});
