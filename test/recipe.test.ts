// The recipe of a set of features: one checker for the extraction settings, the record written into feature
// stores and probe sets, and its exact inverse; stores and probe sets written before the recipe still read.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { DataError, ProbeError, ProbeSet, trainProbeGrid } from '../lib';
import {
  checkRecipe,
  layerDir,
  LayerStores,
  recipeFromStoreSpec,
  recipeOf,
  recipeOfStoreSpec,
  resolveSettings,
  settingsHash,
  settingsOfRecipe,
  storeSpecOf,
  type FeatureRecipe,
  type SettingsInput,
} from '../lib/extraction';
import { defaultLayers, resolveExtractOptions } from '../lib/model';
import { FeatureStore, type StoreSpec } from '../lib/store';
import { tempDir } from './helpers/paths';
import { synthProblem } from './helpers/probe-data';

const tmp = tempDir('calmkit-recipe-');
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));

const A = `fl1m-sha256:${'a'.repeat(64)}`;
const B = `fl1m-sha256:${'b'.repeat(64)}`;

// Every value of every field, in combinations that resolveSettings accepts.
const INPUTS: SettingsInput[] = [
  { model: { id: A }, layers: [6] },
  { model: { id: B, path: '/x/tiny.pt', preset: 'tiny' }, layers: [3, 6], formatting: 'upsample', precision: 'bf16', dtype: 'float16' },
  { model: { id: 'm' }, layers: [12], pooling: 'segments', segmentSeconds: 2.5, windows: 'all', formatting: 'pad', factor: 3 },
  { model: { id: 'm' }, layers: [1, 36], pooling: 'segments', segmentTokens: 100, formatting: 'none', precision: 'fp16' },
  { model: { id: 'm' }, pooling: 'none', formatting: 'tile', factor: 6.2, windows: 'all' },
  // The study's attention column: 1 s segments of the tiled window, stored in float16.
  { model: { id: A }, layers: [36], pooling: 'segments', segmentSeconds: 1, formatting: 'tile', dtype: 'float16' },
  { model: { id: 'm' }, formatting: 'pad', targetSeconds: 30 },
  { model: { id: 'm' }, modelLayers: 4 },
];

function recipes(): FeatureRecipe[] {
  return INPUTS.flatMap((input) => {
    const s = resolveSettings(input);
    return [recipeOf(s), ...s.layers.map((layer) => recipeOf({ ...s, layers: [layer] }))];
  });
}

test('a recipe survives the store spec and back exactly, in memory and on disk', (t) => {
  for (const r of recipes()) {
    const spec = storeSpecOf(r);
    t.deepEqual(recipeFromStoreSpec(spec), r, JSON.stringify(r));
    t.deepEqual(storeSpecOf(recipeFromStoreSpec(spec)), spec);
    if (r.layers.length !== 1) continue;
    const dir = path.join(tmp, `store-${settingsHash(r)}`);
    FeatureStore.open(dir, { create: spec });
    const reopened = FeatureStore.open(dir);
    t.deepEqual(recipeFromStoreSpec(reopened.spec, dir), r);
    t.deepEqual(recipeOfStoreSpec(reopened.spec), r);
  }
});

test('the recipe is what resolveSettings makes, versioned; settings come back from it', (t) => {
  const s = resolveSettings({ model: { id: A, path: '/m.pt', preset: 'tiny' }, layers: [6, 3, 6], formatting: 'upsample' });
  const r = recipeOf(s);
  t.is(r.version, 1);
  t.deepEqual(r, {
    version: 1,
    model: { id: A },
    precision: 'fp32',
    layers: [3, 6],
    pooling: 'mean',
    formatting: 'upsample',
    factor: 6.2,
    windows: 'first',
    dtype: 'float32',
  });
  t.deepEqual(settingsOfRecipe(r, { path: '/m.pt', preset: 'tiny' }), s);
  t.is(settingsHash(r), settingsHash(s));
  t.deepEqual(checkRecipe(JSON.parse(JSON.stringify(r)), 'json'), r);
});

test('store specs are the ones written before the recipe existed: old stores are read and resumed as they are', (t) => {
  // Specs and hashes computed by calmkit before the recipe (lib/pipeline.ts at af558e9, layerStoreSpec).
  const before: StoreSpec[] = [
    {
      model: { id: A },
      layers: [6],
      pooling: 'mean',
      formatting: 'tile',
      dtype: 'float32',
      extra: { precision: 'fp32', windows: 'first', settings: 'a79df1a07947d702806132fb', targetSeconds: 62 },
    },
    {
      model: { id: B },
      layers: [3],
      pooling: 'mean',
      formatting: 'upsample',
      dtype: 'float16',
      extra: { precision: 'bf16', windows: 'first', settings: '7e5b3bc890749344f9c42b52', factor: 6.2 },
    },
    {
      model: { id: 'm' },
      layers: [12],
      pooling: 'segments',
      formatting: 'pad',
      dtype: 'float32',
      extra: { precision: 'fp32', windows: 'all', settings: '48c0fcc0f9b158121cf30a5a', factor: 3, segmentSeconds: 2.5 },
    },
  ];
  const now = [INPUTS[0]!, INPUTS[1]!, INPUTS[2]!].map((input) => {
    const s = resolveSettings(input);
    return storeSpecOf(recipeOf({ ...s, layers: [s.layers[0]!] }));
  });
  t.deepEqual(now, before);
  t.is(settingsHash(resolveSettings(INPUTS[1]!)), '8925a411632c54956f5ac20d');
  // An old store opens with the settings that made it (as a resumed `calmkit extract` does).
  const root = path.join(tmp, 'old');
  FeatureStore.open(layerDir(root, 6), { create: before[0]! });
  const stores = LayerStores.open(root, resolveSettings(INPUTS[0]!));
  t.deepEqual(recipeFromStoreSpec(stores.stores.get(6)!.spec), recipeOf(resolveSettings(INPUTS[0]!)));
});

test('a spec that calmkit did not write, was edited, or is newer is refused with a DataError naming it', (t) => {
  const spec = storeSpecOf(recipeOf(resolveSettings({ model: { id: A }, layers: [6] })));
  const edited = { ...spec, pooling: 'none' };
  const e1 = t.throws(() => recipeFromStoreSpec(edited, 'edited/store.json'), { instanceOf: DataError });
  t.is(e1.code, 'ERR_DATA_RECIPE');
  t.regex(e1.message, /^edited\/store\.json: .*settings hash/);
  t.throws(() => recipeFromStoreSpec({ ...spec, extra: { ...spec.extra, recipe: 2 } }), { code: 'ERR_DATA_RECIPE', message: /newer calmkit/ });
  t.throws(() => recipeFromStoreSpec({ ...spec, extra: { ...spec.extra, sampleRate: 44100 } }), { code: 'ERR_DATA_RECIPE' });
  t.throws(() => recipeFromStoreSpec({ ...spec, pooling: 'max' }), { code: 'ERR_DATA_RECIPE', message: /pooling must be mean, segments or none/ });
  const handMade: StoreSpec = { model: { id: 'x' }, layers: [1], pooling: 'mean', formatting: 'tile', dtype: 'float32' };
  t.throws(() => recipeFromStoreSpec(handMade), { code: 'ERR_DATA_RECIPE', message: /no extraction settings/ });
  t.is(recipeOfStoreSpec(handMade), undefined);
  // A recipe that is not in its resolved form (a default left out) is not a recipe.
  const r = recipeOf(resolveSettings({ model: { id: A }, layers: [6] }));
  const { targetSeconds: _t, ...partial } = r;
  t.throws(() => checkRecipe(partial, 'partial'), { code: 'ERR_DATA_RECIPE', message: /resolved form/ });
  t.throws(() => checkRecipe({ ...r, version: 2 }, 'v2'), { code: 'ERR_DATA_RECIPE', message: /newer calmkit/ });
});

test('one checker of the extraction options, with one default-layers rule', (t) => {
  t.deepEqual(defaultLayers(), [36]);
  t.deepEqual(defaultLayers(6), [6]);
  t.deepEqual(defaultLayers(72), [36]);
  t.deepEqual(resolveExtractOptions({ layers: [6, 2, 6] }), { layers: [2, 6], pooling: 'mean', windows: 'first' });
  t.deepEqual(resolveExtractOptions({}, { depth: 6, name: 'm' }).layers, [6]);
  t.throws(() => resolveExtractOptions({ layers: [7] }, { depth: 6, name: 'this checkpoint' }), {
    code: 'ERR_INVALID_ARGUMENT',
    message: 'layer 7 is out of range: this checkpoint has layers 1..6 (1-based)',
  });
  t.throws(() => resolveExtractOptions({ layers: [] }), { message: /at least one layer/ });
  t.throws(() => resolveExtractOptions({ windows: 'some' as 'all' }), { message: "windows must be first or all; got 'some'" });
  t.throws(() => resolveExtractOptions({ pooling: 'segments', segmentTokens: 0 }), { message: /segmentTokens must be a positive integer/ });
  t.throws(() => resolveExtractOptions({ pooling: 'segments', segmentTokens: 4, segmentSeconds: 1 }), {
    message: /exactly one of segmentTokens and segmentSeconds/,
  });
  t.throws(() => resolveExtractOptions({ pooling: 'mean', segmentTokens: 4 }), { message: /only apply to segments pooling/ });
  // The settings use the same checker: the same words.
  t.throws(() => resolveSettings({ model: { id: 'm' }, windows: 'some' as 'all' }), { message: "windows must be first or all; got 'some'" });
  t.throws(() => resolveSettings({ model: { id: 'm' }, dtype: 'float64' as 'float32' }), { message: "dtype must be float32 or float16; got 'float64'" });
});

test('probe sets carry the recipe; sets saved before it get it from their store manifest', async (t) => {
  const p = synthProblem({ n: 200, dim: 4, seed: 3, tasks: [{ instrument: 'organ', flip: 0.1, train: 80, val: 30, test: 40 }] });
  const base = { features: p.features, dim: p.dim, tasks: p.tasks, grid: { hidden: [[]], dropout: [0.25], l2: [0] }, epochs: 1 };
  const recipe = recipeOf(resolveSettings({ model: { id: A }, layers: [6] }));
  const withRecipe = await trainProbeGrid({ ...base, recipe });
  const file = path.join(tmp, 'new.calmkit-probes.json');
  await withRecipe.save(file);
  t.deepEqual((await ProbeSet.load(file)).info.recipe, recipe);

  // As calmkit wrote probe sets before: the store's manifest only.
  const legacy = await trainProbeGrid({ ...base, manifest: { store: { spec: storeSpecOf(recipe) }, partitions: {}, missing: 0 } });
  t.is(legacy.info.recipe, undefined);
  const legacyFile = path.join(tmp, 'legacy.calmkit-probes.json');
  await legacy.save(legacyFile);
  t.deepEqual((await ProbeSet.load(legacyFile)).info.recipe, recipe);

  // A recipe that is not one is refused when training, and a file holding one is not a probe set.
  await t.throwsAsync(trainProbeGrid({ ...base, recipe: { ...recipe, pooling: 'max' as 'mean' } }), { instanceOf: DataError, code: 'ERR_DATA_RECIPE' });
  const bad = await trainProbeGrid({ ...base, recipe });
  (bad.info as { recipe: unknown }).recipe = { ...recipe, version: 7 };
  const badFile = path.join(tmp, 'bad.calmkit-probes.json');
  await bad.save(badFile);
  await t.throwsAsync(ProbeSet.load(badFile), { instanceOf: ProbeError, code: 'ERR_PROBE_FILE', message: /version 7/ });
});
