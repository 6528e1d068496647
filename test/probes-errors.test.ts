// Bad input to the probe trainer and probe-set files: typed errors or reported skips, never half-written files.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ArgumentError, DataError, ProbeError, ProbeSet, trainProbeGrid, type TrainProbeGridOptions } from '../lib';
import { binding } from '../bindings';
import { synthProblem } from './helpers/probe-data';

const p = synthProblem({
  n: 400,
  dim: 6,
  seed: 5,
  tasks: [
    { instrument: 'organ', flip: 0.1, train: 120, val: 40, test: 60 },
    { instrument: 'piano', flip: 0.1, train: 120, val: 40, test: 60 },
  ],
});
const tiny = { hidden: [[]], dropout: [0.25], l2: [0] };
const base = (): TrainProbeGridOptions => ({ features: p.features, dim: p.dim, tasks: p.tasks.map((t) => ({ ...t })), grid: tiny, epochs: 1 });

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-probe-err-'));

test('feature/label count mismatch is a DataError', async (t) => {
  const o = base();
  o.tasks[0] = { ...o.tasks[0], train: { rows: o.tasks[0].train.rows, targets: o.tasks[0].train.targets.subarray(1) } };
  const err = await t.throwsAsync(trainProbeGrid(o), { instanceOf: DataError });
  t.is(err!.code, 'ERR_DATA_MISMATCH');
  t.regex(err!.message, /'organ' train: 120 rows but 119 targets/);

  await t.throwsAsync(trainProbeGrid({ ...base(), features: p.features.subarray(1) }), { instanceOf: DataError, code: 'ERR_DATA_MISMATCH' });
  const out = base();
  out.tasks[1] = { ...out.tasks[1], test: { rows: Int32Array.of(0, 400), targets: Uint8Array.of(0, 1) } };
  await t.throwsAsync(trainProbeGrid(out), { instanceOf: DataError, message: /row 400 is outside the feature matrix/ });
});

test('NaN or Inf in a used feature row is a DataError naming the row; unused rows do not matter', async (t) => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    const features = p.features.slice();
    const row = p.tasks[1].val.rows[3];
    features[row * p.dim + 2] = bad;
    const err = await t.throwsAsync(trainProbeGrid({ ...base(), features }), { instanceOf: DataError });
    t.is(err!.code, 'ERR_DATA_NOT_FINITE');
    t.regex(err!.message, new RegExp(`feature row ${row} \\(used by instrument '\\w+'\\).*column 2`));
  }
  const used = new Set<number>();
  for (const task of p.tasks)
    for (const s of [task.train, task.val, task.test])
      s.rows.forEach((r) => {
        used.add(r);
      });
  const unused = Array.from({ length: 400 }, (_, i) => i).find((i) => !used.has(i))!;
  const features = p.features.slice();
  features[unused * p.dim] = NaN;
  await t.notThrowsAsync(trainProbeGrid({ ...base(), features }));
});

test('an instrument without positives (or negatives) in train is skipped and reported, or a DataError on request', async (t) => {
  const o = base();
  o.tasks[0] = { ...o.tasks[0], train: { rows: o.tasks[0].train.rows, targets: new Uint8Array(120) } };
  const set = await trainProbeGrid(o);
  t.deepEqual(set.instruments, ['piano']);
  t.is(set.skipped.length, 1);
  t.is(set.skipped[0].instrument, 'organ');
  t.regex(set.skipped[0].reason, /no positives/);
  t.throws(() => set.result('organ'), { instanceOf: ArgumentError, message: /was skipped: .*no positives/ });

  const strict = base();
  strict.tasks[1] = { ...strict.tasks[1], train: { rows: strict.tasks[1].train.rows, targets: new Uint8Array(120).fill(1) } };
  const err = await t.throwsAsync(trainProbeGrid({ ...strict, onSingleClass: 'error' }), { instanceOf: DataError });
  t.is(err!.code, 'ERR_DATA_SINGLE_CLASS');
  t.regex(err!.message, /piano.*no negatives/);

  const none = base();
  none.tasks = none.tasks.map((task) => ({ ...task, train: { rows: task.train.rows, targets: new Uint8Array(120) } }));
  await t.throwsAsync(trainProbeGrid(none), { instanceOf: DataError, code: 'ERR_DATA_SINGLE_CLASS' });
});

test('a test split with one class trains, with AP and ROC-AUC reported as undefined (NaN)', async (t) => {
  const o = base();
  o.tasks[0] = { ...o.tasks[0], test: { rows: o.tasks[0].test.rows, targets: new Uint8Array(60).fill(1) } };
  const set = await trainProbeGrid(o);
  const row = set.table().rows[0];
  t.true(Number.isNaN(row.averagePrecision));
  t.true(Number.isNaN(row.rocAuc));
  t.is(set.table().macro.rankedInstruments, 1);
});

test('bad options and unknown instrument names are ArgumentErrors', async (t) => {
  await t.throwsAsync(trainProbeGrid({ ...base(), batchSize: 63 }), { instanceOf: ArgumentError, message: /even/ });
  await t.throwsAsync(trainProbeGrid({ ...base(), epochs: 0 }), { instanceOf: ArgumentError });
  await t.throwsAsync(trainProbeGrid({ ...base(), grid: { hidden: [[]], dropout: [1], l2: [0] } }), { instanceOf: ArgumentError });
  await t.throwsAsync(trainProbeGrid({ ...base(), device: 'tpu' as never }), { instanceOf: ArgumentError });
  const dup = base();
  dup.tasks[1] = { ...dup.tasks[1], instrument: 'organ' };
  await t.throwsAsync(trainProbeGrid(dup), { instanceOf: ArgumentError, message: /appears twice/ });

  const set = await trainProbeGrid(base());
  t.throws(() => set.result('kazoo'), { instanceOf: ArgumentError, message: /unknown instrument 'kazoo'.*organ, piano/ });
  await t.throwsAsync(set.predict(p.features.subarray(0, p.dim), { instruments: ['organ', 'kazoo'] }), { instanceOf: ArgumentError });
  await t.throwsAsync(set.predict(p.features.subarray(0, p.dim + 1)), { instanceOf: DataError, code: 'ERR_DATA_MISMATCH' });
  const nan = p.features.slice(0, p.dim);
  nan[0] = NaN;
  await t.throwsAsync(set.predict(nan), { instanceOf: DataError, code: 'ERR_DATA_NOT_FINITE' });
});

test('corrupt, truncated, foreign or missing probe-set files are ProbeErrors (ERR_PROBE_FILE)', async (t) => {
  const dir = tmp();
  const file = path.join(dir, 'p.calmprobes');
  const set = await trainProbeGrid(base());
  await set.save(file);
  const good = fs.readFileSync(file);
  t.truthy(await ProbeSet.load(file));

  const cases: [string, Buffer][] = [
    ['flipped byte', Buffer.from(good.map((b, i) => (i === Math.floor(good.length / 2) ? b ^ 0x40 : b)))],
    ['truncated', good.subarray(0, good.length - 100)],
    ['empty', Buffer.alloc(0)],
    ['foreign', Buffer.from('{"not": "a probe set"}')],
  ];
  for (const [what, bytes] of cases) {
    const f = path.join(dir, `${what.replace(' ', '-')}.calmprobes`);
    fs.writeFileSync(f, bytes);
    const err = await t.throwsAsync(ProbeSet.load(f), { instanceOf: ProbeError }, what);
    t.is(err!.code, 'ERR_PROBE_FILE', what);
  }
  await t.throwsAsync(ProbeSet.load(path.join(dir, 'missing.calmprobes')), { instanceOf: ProbeError, code: 'ERR_PROBE_FILE' });
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a failed save leaves neither a partial file nor a temporary one, and keeps the previous file', async (t) => {
  const dir = tmp();
  const set = await trainProbeGrid(base());
  // The target is a directory: the final rename fails after the temporary file was written.
  const blocked = path.join(dir, 'blocked.calmprobes');
  fs.mkdirSync(blocked);
  fs.writeFileSync(path.join(blocked, 'keep'), 'x');
  await t.throwsAsync(set.save(blocked));
  t.deepEqual(fs.readdirSync(dir), ['blocked.calmprobes']);
  // Overwriting an existing probe set replaces it whole.
  const file = path.join(dir, 'ok.calmprobes');
  await set.save(file);
  await set.save(file);
  t.deepEqual(fs.readdirSync(dir).sort(), ['blocked.calmprobes', 'ok.calmprobes']);
  t.truthy(await ProbeSet.load(file));
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the native trainer takes only a control handle (one shared mechanism with extraction) and names a wrong one', (t) => {
  const raw = binding();
  const call = (control: unknown) => raw.trainProbeGrid(p.features, p.dim, [], [], { epochs: 1 } as never, control as ReturnType<typeof raw.control>);
  const err = t.throws(() => call({}));
  t.is((err as Error & { code?: string }).code, 'ERR_INVALID_ARGUMENT');
  t.regex(err!.message, /control is not a valid handle/);
  // A cancelled control stops training before its first step, with the same error an AbortSignal gives.
  const control = raw.control();
  raw.cancel(control);
  return t.throwsAsync(
    raw.trainProbeGrid(
      p.features,
      p.dim,
      [{ instrument: 'organ', train: p.tasks[0].train, val: p.tasks[0].val!, test: p.tasks[0].test! }],
      [{ hidden: [], dropout: 0.25, l2: 0 }],
      { epochs: 1 } as never,
      control,
    ),
    { message: /cancelled/ },
  );
});
