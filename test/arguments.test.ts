// Every public function checks its arguments' types before it uses them: absurd arguments give a CalmkitError
// (an ArgumentError naming the argument, or the typed error the docs give), never a TypeError, a RangeError, a
// raw fs error, a crash or a hang. Each public entry is called with each value of BAD in each argument position
// while the others stay good.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {
  ArgumentError,
  CalmkitError,
  decodeAudio,
  FeatureStore,
  fileItems,
  Jukebox,
  listAudioFiles,
  loadAudio,
  modelId,
  OpenMIC,
  ProbeError,
  ProbeSet,
  resolveSettings,
  trainProbeGrid,
  writeAudio,
} from '../lib';
import { recipeFromStoreSpec, settingsHash } from '../lib/extraction';
import { binaryMetrics, expandGrid, macroMetrics } from '../lib/probes';
import { synthAudio, tinyCheckpoint } from './helpers/model';
import { synthProblem } from './helpers/probe-data';

process.env.CALMKIT_THREADS ??= '1';

const BAD: [string, unknown][] = [
  ['null', null],
  ['42', 42],
  ['-1', -1],
  ['NaN', Number.NaN],
  ["''", ''],
  ["'x'", 'x'],
  ['{}', {}],
  ['[]', []],
  ['true', true],
  ['a symbol', Symbol('s')],
  ['a function', () => 1],
  ['a Float32Array', new Float32Array(3)],
  ['2^40', 2 ** 40],
];

let dir = '';
let model: Jukebox;
let probes: ProbeSet;
const CLIP = { samples: synthAudio(20000, 4), sampleRate: 44100 };

test.before(async () => {
  let file: string;
  ({ dir, file } = await tinyCheckpoint({ layers: 1 }));
  // Bad values such as 'x' are valid relative paths: whatever they create lands in the temp dir.
  process.chdir(dir);
  model = await Jukebox.load(file);
  const d = probeData(2);
  probes = await trainProbeGrid({ features: d.features, dim: d.dim, tasks: d.tasks, grid: { hidden: [[]], dropout: [0.5], l2: [0] }, epochs: 1 });
});

test.after.always(() => {
  model?.dispose();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function probeData(seed: number) {
  const p = synthProblem({ n: 40, dim: 8, seed, tasks: [{ instrument: 'piano', flip: 0, train: 20, val: 10, test: 10 }] });
  return { ...p, tasks: p.tasks.map(({ oracleTest: _, ...task }) => task) };
}

/** Calls `f`; passes when it returns or resolves, or throws or rejects a CalmkitError; fails otherwise. */
async function acceptable(label: string, f: () => unknown): Promise<string | undefined> {
  try {
    const r = f();
    if (r && typeof (r as Promise<unknown>).then === 'function') {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('hung for 20 s')), 20_000)));
      try {
        await Promise.race([r, timeout]);
      } finally {
        clearTimeout(timer);
      }
    } else if (r && typeof (r as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
      for await (const _ of r as AsyncIterable<unknown>) void _;
    }
    return undefined;
  } catch (err) {
    if (err instanceof CalmkitError) return undefined;
    return `${label}: ${err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err)}`;
  }
}

/** Each position of `args` replaced by each bad value in turn. */
async function hostile(name: string, call: (...args: unknown[]) => unknown, good: unknown[]): Promise<string[]> {
  const problems: string[] = [];
  for (let i = 0; i < good.length; i++) {
    for (const [label, bad] of BAD) {
      const args = good.slice();
      args[i] = bad;
      const p = await acceptable(`${name} with argument ${i + 1} = ${label}`, () => call(...args));
      if (p) problems.push(p);
    }
  }
  return problems;
}

test('the model and audio entries take absurd arguments as typed errors', async (t) => {
  const out = path.join(dir, 'w.wav');
  const problems = [
    ...(await hostile('Jukebox.load', (p, o) => Jukebox.load(p as string, o as object).then((m) => m.dispose()), [path.join(dir, 'tiny.pt'), {}])),
    ...(await hostile('Jukebox.inspect', (p, o) => Jukebox.inspect(p as string, o as object), [path.join(dir, 'tiny.pt'), {}])),
    ...(await hostile('Jukebox.writeRandomCheckpoint', (o) => Jukebox.writeRandomCheckpoint(o as never), [
      { preset: 'tiny', layers: 1, out: path.join(dir, 'w.pt') },
    ])),
    ...(await hostile('model.extract', (x, o) => model.extract(x as never, o as never), [CLIP, { layers: [1] }])),
    ...(await hostile('model.extract options.layers', (l) => model.extract(CLIP, { layers: l as number[] }), [[1]])),
    ...(await hostile('model.extract options.pooling', (p) => model.extract(CLIP, { pooling: p as 'mean' }), ['mean'])),
    ...(await hostile('model.extract options.onProgress', (f) => model.extract(CLIP, { onProgress: f as () => void }), [() => undefined])),
    ...(await hostile('model.stream', (x, o) => model.stream(x as never, o as never), [CLIP, { layers: [1], pooling: 'mean' }])),
    ...(await hostile('loadAudio', (x, o) => loadAudio(x as never, o as never), [CLIP, { formatting: 'tile', targetSeconds: 1 }])),
    ...(await hostile('loadAudio options.cropSamples', (c) => loadAudio(CLIP, { cropSamples: c as number }), [100])),
    ...(await hostile('decodeAudio', (x) => decodeAudio(x as never), [path.join(dir, 'tiny.pt')])),
    ...(await hostile('writeAudio', (p, o) => writeAudio(p as string, o as never), [
      out,
      { interleaved: new Float32Array(100), channels: 1, sampleRate: 44100 },
    ])),
    ...(await hostile('listAudioFiles', (d) => listAudioFiles(d as string), [dir])),
    ...(await hostile('modelId', (f) => modelId(f as string), [path.join(dir, 'tiny.pt')])),
  ];
  t.deepEqual(problems, []);
});

test('the extraction, store and dataset entries take absurd arguments as typed errors', async (t) => {
  const store = path.join(dir, 'store');
  const spec = { model: { id: 'm' }, layers: [1], pooling: 'mean', formatting: 'none', dtype: 'float32' as const };
  const problems = [
    ...(await hostile('resolveSettings', (s) => resolveSettings(s as never), [{ model: { id: 'x' } }])),
    ...(await hostile('settingsHash', (s) => settingsHash(s as never), [resolveSettings({ model: { id: 'x' } })])),
    ...(await hostile('recipeFromStoreSpec', (s) => recipeFromStoreSpec(s as never), [spec])),
    ...(await hostile('fileItems', (f) => fileItems(f as string[]), [[path.join(dir, 'a.wav')]])),
    ...(await hostile('FeatureStore.open', (d, o) => FeatureStore.open(d as string, o as never), [store, { create: spec }])),
    ...(await hostile('OpenMIC.open', (r, o) => OpenMIC.open(r as string, o as never), [dir, {}])),
  ];
  t.deepEqual(problems, []);
});

test('the probe entries take absurd arguments as typed errors', async (t) => {
  const d = probeData(3);
  const good = { features: d.features, dim: d.dim, tasks: d.tasks, grid: { hidden: [[]], dropout: [0.5], l2: [0] }, epochs: 1 };
  const problems = [
    ...(await hostile('trainProbeGrid', (o) => trainProbeGrid(o as never), [good])),
    ...(await hostile('trainProbeGrid grid', (g) => trainProbeGrid({ ...good, grid: g as never }), [good.grid])),
    ...(await hostile('trainProbeGrid epochs', (e) => trainProbeGrid({ ...good, epochs: e as number }), [1])),
    ...(await hostile('probes.predict', (f, o) => probes.predict(f as Float32Array, o as never), [new Float32Array(8), 1])),
    ...(await hostile('probes.save', (f) => probes.save(f as string), [path.join(dir, 'p.calmprobes')])),
    ...(await hostile('ProbeSet.load', (f) => ProbeSet.load(f as string), [path.join(dir, 'p.calmprobes')])),
    ...(await hostile('expandGrid', (g) => expandGrid(g as never), [{ hidden: [[]], dropout: [0.5], l2: [0] }])),
    ...(await hostile('binaryMetrics', (p, y) => binaryMetrics(p as never, y as never), [
      [0.2, 0.8],
      [0, 1],
    ])),
    ...(await hostile('macroMetrics', (l) => macroMetrics(l as never), [[binaryMetrics([0.2, 0.8], [0, 1])]])),
  ];
  t.deepEqual(problems, []);
});

test('the cases of the issue: each is an ArgumentError or the typed error named', async (t) => {
  const clip = CLIP;
  for (const [options, pattern] of [
    [{ layers: 3 }, /layers must be an array/],
    [{ layers: { 1: true } }, /layers must be an array/],
    [null, /options must be an object; got null/],
  ] as [unknown, RegExp][]) {
    const e = await t.throwsAsync(model.extract(clip, options as never), { instanceOf: ArgumentError });
    t.regex(e!.message, pattern);
  }
  const e = await t.throwsAsync(model.extract(42 as never), { instanceOf: ArgumentError });
  t.regex(e!.message, /input must be a path, a Uint8Array, \{ samples: Float32Array, sampleRate \} or \{ tokens: Int32Array \}; got 42/);
  const zero = await t.throwsAsync(Jukebox.writeRandomCheckpoint({ preset: 'tiny', layers: 0, out: path.join(dir, 'zero.pt') }), { instanceOf: ArgumentError });
  t.regex(zero!.message, /layers must be an integer in 1\.\.4096; got 0/);
  t.false(fs.existsSync(path.join(dir, 'zero.pt')));
  await t.throwsAsync(Jukebox.init({ preset: 'tiny', layers: 0, out: path.join(dir, 'zero.pt') }), { instanceOf: ArgumentError });

  // A probe set saved under a path whose parent is a file.
  const blocker = path.join(dir, 'a-file');
  fs.writeFileSync(blocker, 'x');
  const saved = await t.throwsAsync(probes.save(path.join(blocker, 'p.calmprobes')), { instanceOf: ProbeError });
  t.is(saved?.code, 'ERR_PROBE_FILE');
  t.regex(saved!.message, /cannot save the probe set to .*a-file\/p\.calmprobes: a file of that name is in the way of a folder|a part of the path is a file/);

  // A grid whose hidden size cannot be allocated: a typed error before any allocation.
  const d = probeData(3);
  const huge = await t.throwsAsync(
    trainProbeGrid({ features: d.features, dim: d.dim, tasks: d.tasks, grid: { hidden: [[2 ** 40]], dropout: [0.5], l2: [0] }, epochs: 1 }),
    {
      instanceOf: ArgumentError,
    },
  );
  t.regex(huge!.message, /hidden sizes \[1099511627776\] .* needs about .* GB to train, more than this machine's memory/);

  // A feature store under a path that is a file.
  const e2 = await t.throwsAsync(
    async () =>
      FeatureStore.open(path.join(blocker, 'store'), { create: { model: { id: 'm' }, layers: [1], pooling: 'mean', formatting: 'none', dtype: 'float32' } }),
    {
      instanceOf: CalmkitError,
    },
  );
  t.is(e2?.code, 'ERR_DATA_STORE_IO');
  t.notRegex(e2!.message, /^E[A-Z]+:/);
});
