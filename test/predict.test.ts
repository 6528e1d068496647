// The return trip: features made by `calmkit extract`, probes trained on them, and then predictAudio on the same
// clips' audio gives the probabilities the stored features give, bit for bit; a model or a precision other than
// the recipe's is refused before any audio is read.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { Jukebox, ModelError, OpenMIC, OPENMIC_INSTRUMENTS, ProbeError, ProbeSet, predictAudio, trainFromStore, trainProbeGrid } from '../lib';
import { layerDir, recipeFromStoreSpec } from '../lib/extraction';
import { modelId } from '../lib/model';
import { FeatureStore } from '../lib/store';
import { makeDataset, runCli, tinyModel } from './helpers/extract-fixtures';
import { tempDir } from './helpers/paths';

const tmp = tempDir('calmkit-predict-');
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));

const DATA = path.join(tmp, 'data');
const audioOf = (key: string) => path.join(DATA, 'audio', key.slice(0, 3), `${key}.ogg`);

/** Two instruments labelled on every clip (the fixture's own labels leave every instrument single-class). */
function relabel(keys: string[]): void {
  const rows = keys.flatMap((k, i) => [`${k},piano,${i % 3 === 0 ? 0.9 : 0.1},3`, `${k},violin,${i % 2 === 1 ? 0.9 : 0.1},3`]);
  fs.writeFileSync(path.join(DATA, 'openmic-2018-aggregated-labels.csv'), `sample_key,instrument,relevance,num_responses\n${rows.join('\n')}\n`);
}

async function trained(out: string) {
  const store = FeatureStore.open(layerDir(out, 6));
  const { probes } = await trainFromStore({
    dataset: OpenMIC.open(DATA, { audio: 'skip', npz: 'ignore' }),
    store,
    partitions: { validation: 'stratified', valFraction: 0.25 },
    grid: { hidden: [[], [8]], dropout: [0.25], l2: [0] },
    epochs: 5,
    batchSize: 4,
  });
  return { store, probes };
}

const setup = (async () => {
  const model = await tinyModel(tmp);
  const { good } = await makeDataset(DATA, 16);
  relabel(good);
  const out = path.join(tmp, 'features');
  const r = await runCli(['extract', '--dataset', DATA, '--model', model, '--out', out, '--layers', '6']);
  if (r.code !== 0) throw new Error(`calmkit extract: ${r.stdout}${r.stderr}`);
  return { model, keys: good, out, ...(await trained(out)) };
})();

test.serial('predictAudio on the clips gives the probabilities of their stored features, bit for bit', async (t) => {
  const { model, keys, store, probes } = await setup;
  t.deepEqual(probes.instruments, ['piano', 'violin']);
  t.deepEqual(probes.info.recipe, recipeFromStoreSpec(store.spec));
  t.is(probes.info.recipe!.model.id, modelId(model));

  const stored = store.readMatrix(keys);
  const fromStore = await probes.predict(stored.data, { n: keys.length });
  const fromAudio = await predictAudio(probes, model, keys.map(audioOf));
  t.deepEqual(fromAudio.inputs, keys.map(audioOf));
  t.deepEqual(fromAudio.failed, []);
  t.deepEqual(fromAudio.instruments, fromStore.instruments);
  t.deepEqual(fromAudio.probabilities, fromStore.probabilities);
  t.deepEqual(fromAudio.recipe, probes.info.recipe);

  // The training run's own test probabilities of the selected probes: the same function of the same features,
  // evaluated by the trainer in the same blocks of rows (forwardRows): the same bits.
  for (const [k, name] of probes.instruments.entries()) {
    const r = probes.result(name);
    const testKeys = OpenMIC.open(DATA, { audio: 'skip', npz: 'ignore' })
      .partitions({ validation: 'stratified', valFraction: 0.25 })
      .find((p) => p.instrument === name)!.test.keys;
    testKeys.forEach((key, i) => {
      const p = fromAudio.probabilities[keys.indexOf(key) * probes.instruments.length + k]!;
      t.is(p, r.configs[r.selected]!.testProbabilities[i]!, `${name} ${key}`);
    });
  }
});

test.serial("attention probes on a segments store (float16): predictAudio on the clips gives their stored features' probabilities, bit for bit", async (t) => {
  const { model, keys } = await setup;
  const out = path.join(tmp, 'segments');
  const r = await runCli([
    'extract',
    '--dataset',
    DATA,
    '--model',
    model,
    '--out',
    out,
    '--layers',
    '6',
    '--pooling',
    'segments',
    '--segment-seconds',
    '1',
    '--dtype',
    'float16',
  ]);
  t.is(r.code, 0, r.stderr);
  const store = FeatureStore.open(layerDir(out, 6));
  const { probes } = await trainFromStore({
    dataset: OpenMIC.open(DATA, { audio: 'skip', npz: 'ignore' }),
    store,
    partitions: { validation: 'stratified', valFraction: 0.25 },
    grid: { hidden: [[8]], dropout: [0.25], l2: [0], attention: true },
    epochs: 5,
    batchSize: 4,
  });
  t.true(probes.attention);
  t.is(probes.info.recipe!.pooling, 'segments');
  t.is(probes.info.recipe!.dtype, 'float16');
  const m = store.readSegments(keys);
  t.is(probes.info.segments, m.segments);
  const fromStore = await probes.predict(m.data, { validSegments: m.validSegments });
  const fromAudio = await predictAudio(probes, model, keys.map(audioOf));
  t.deepEqual(fromAudio.failed, []);
  t.deepEqual(fromAudio.probabilities, fromStore.probabilities);

  // `calmkit train` on a segments store: --grid gives the attention grid's axes.
  const file = path.join(tmp, 'attention.calmkit-probes.json');
  const cli = await runCli([
    'train',
    '--dataset',
    DATA,
    '--features',
    layerDir(out, 6),
    '--out',
    file,
    '--grid',
    'hidden=[8] dropout=0.25 l2=0',
    '--epochs',
    '2',
    '--batch',
    '4',
    '--val-fraction',
    '0.25',
    '--device',
    'cpu',
  ]);
  t.is(cli.code, 0, cli.stderr);
  const fromCli = await ProbeSet.load(file);
  t.true(fromCli.attention);
  t.deepEqual(fromCli.grid, [{ hidden: [8], dropout: 0.25, l2: 0, attention: true }]);
  t.regex(cli.stdout, /attention \[8\]/, 'Table I names the attention probes');
});

test.serial('a loaded model, a saved probe set and batches of clips give the same; the CLI prints the same', async (t) => {
  const { model, keys, probes } = await setup;
  const file = path.join(tmp, 'probes.calmkit-probes.json');
  await probes.save(file);
  const files = keys.map(audioOf);
  const reference = await predictAudio(probes, model, files);
  await using jukebox = await Jukebox.load(model);
  const loaded = await predictAudio(file, jukebox, files, { batchSize: 4 });
  t.deepEqual(loaded.probabilities, reference.probabilities);
  t.false(jukebox.disposed, "a model given loaded stays the caller's");

  const cli = await runCli(['predict', ...files.slice(0, 3), path.join(tmp, 'missing.ogg'), '--model', model, '--probes', file, '--json', '--device', 'cpu']);
  // Some clips failed, the rest predicted: exit 2 (the README's exit codes; was 1 before issue 14 gave partial
  // failure its own code, as extract has).
  t.is(cli.code, 2, cli.stderr);
  t.regex(cli.stderr, /missing\.ogg: ERR_AUDIO_NOT_FOUND/);
  const rows = JSON.parse(cli.stdout) as Record<string, number | string>[];
  t.deepEqual(
    rows.map((r) => r.file),
    files.slice(0, 3),
  );
  rows.forEach((row, i) => {
    probes.instruments.forEach((name, k) => {
      t.is(row[name], reference.probabilities[i * probes.instruments.length + k]);
    });
  });
});

test.serial('another model, or the model at another precision, is refused with a typed error naming both', async (t) => {
  const { model, keys, probes } = await setup;
  const other = path.join(tmp, 'other.pt');
  await Jukebox.writeRandomCheckpoint({ preset: 'tiny', seed: 8, out: other });
  const files = keys.slice(0, 2).map(audioOf);
  const e = await t.throwsAsync(predictAudio(probes, other, files), { instanceOf: ModelError });
  t.is(e!.code, 'ERR_MODEL_MISMATCH');
  t.true(e!.message.includes(modelId(model)) && e!.message.includes(modelId(other)) && e!.message.includes(other), e!.message);
  await using loadedOther = await Jukebox.load(other);
  await t.throwsAsync(predictAudio(probes, loadedOther, files), { instanceOf: ModelError, code: 'ERR_MODEL_MISMATCH' });

  await using bf16 = await Jukebox.load(model, { precision: 'bf16' });
  const p = await t.throwsAsync(predictAudio(probes, bf16, files), { instanceOf: ModelError });
  t.is(p!.code, 'ERR_MODEL_PRECISION');
  t.regex(p!.message, /precision fp32.*runs at bf16/);

  const cli = await runCli(['predict', ...files, '--model', other, '--probes', path.join(tmp, 'probes.calmkit-probes.json')]);
  t.is(cli.code, 1);
  t.regex(cli.stderr, /ERR_MODEL_MISMATCH: .*was trained on features of model fl1m-sha256:[0-9a-f]{64}; .*other\.pt is model fl1m-sha256:[0-9a-f]{64}/);
});

test.serial('float16 stores: the audio path rounds the features as the store does', async (t) => {
  const { model, keys } = await setup;
  const out = path.join(tmp, 'features-f16');
  const r = await runCli(['extract', '--dataset', DATA, '--model', model, '--out', out, '--layers', '6', '--dtype', 'float16']);
  t.is(r.code, 0, r.stderr);
  const { store, probes } = await trained(out);
  t.is(probes.info.recipe!.dtype, 'float16');
  const fromStore = await probes.predict(store.readMatrix(keys).data, { n: keys.length });
  const fromAudio = await predictAudio(probes, model, keys.map(audioOf));
  t.deepEqual(fromAudio.probabilities, fromStore.probabilities);
});

test('a probe set that does not record its recipe cannot predict from audio', async (t) => {
  const { model, keys } = await setup;
  const features = new Float32Array(40 * 2).map((_, i) => Math.sin(i));
  const rows = (a: number, b: number) => Int32Array.from({ length: b - a }, (_, i) => a + i);
  const targets = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 2);
  const set = await trainProbeGrid({
    features,
    dim: 2,
    tasks: [
      {
        instrument: OPENMIC_INSTRUMENTS[0]!,
        train: { rows: rows(0, 20), targets: targets(20) },
        val: { rows: rows(20, 30), targets: targets(10) },
        test: { rows: rows(30, 40), targets: targets(10) },
      },
    ],
    grid: { hidden: [[]], dropout: [0.25], l2: [0] },
    epochs: 1,
  });
  await t.throwsAsync(predictAudio(set, model, [audioOf(keys[0]!)]), { instanceOf: ProbeError, code: 'ERR_PROBE_RECIPE' });
  t.true(set instanceof ProbeSet);
});
