// Every output path is checked before any work starts (lib/cli/outputs.ts): calmkit writes where nothing is, into an
// empty folder, or over its own artefact of the same kind; anything else is ERR_OUTPUT_EXISTS and exit 2, with the
// file left as it was.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { checkOutput, type OutputKind } from '../lib/cli/outputs';
import { ArgumentError } from '../lib/errors';
import { runCli } from './helpers/extract-fixtures';
import { tinyCheckpoint } from './helpers/model';
import { tempDir } from './helpers/paths';

let dir = '';
let model = '';
let probeSet = '';
let store = '';
let report = '';

const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

test.before(async () => {
  ({ dir, file: model } = await tinyCheckpoint({ layers: 1 }));
  // Calmkit's own artefacts of each kind, made by calmkit (the probe set by a real, tiny training).
  const { trainProbeGrid, writeReport, FeatureStore } = await import('../lib');
  const { synthProblem } = await import('./helpers/probe-data');
  const p = synthProblem({ n: 120, dim: 8, seed: 3, tasks: [{ instrument: 'piano', flip: 0.1, train: 60, val: 20, test: 30 }] });
  const set = await trainProbeGrid({ features: p.features, dim: p.dim, tasks: p.tasks, epochs: 1, grid: { hidden: [[]], dropout: [0.5], l2: [0] } });
  probeSet = path.join(dir, 'probes.calmkit-probes.json');
  await set.save(probeSet);
  report = path.join(dir, 'report');
  await writeReport(set, report, { png: false });
  store = path.join(dir, 'stores');
  FeatureStore.open(path.join(store, 'layer-1'), { create: { model: { id: 'x' }, layers: [1], pooling: 'mean', formatting: 'none', dtype: 'float32' } });
});

test.after.always(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function refused(t: import('ava').ExecutionContext, p: string, kind: OutputKind, why: RegExp): Promise<void> {
  const err = await t.throwsAsync(checkOutput({ flag: '--out', path: p, kind }), { instanceOf: ArgumentError });
  t.is(err?.code, 'ERR_OUTPUT_EXISTS', err?.message);
  t.true(err!.message.startsWith(`--out ${p} exists and is not `), err?.message);
  t.regex(err!.message, why);
  t.is(err?.input, p);
}

test('what each kind accepts: nothing there, an empty folder, its own artefact', async (t) => {
  const fresh = tempDir('calmkit-outputs-');
  try {
    for (const kind of ['probe-set', 'checkpoint', 'report', 'store-root', 'study', 'demo-data'] as OutputKind[]) {
      await t.notThrowsAsync(checkOutput({ flag: '--out', path: path.join(fresh, 'new', 'deeper', kind), kind }), `${kind}: a path that does not exist yet`);
    }
    for (const kind of ['report', 'store-root', 'study', 'demo-data'] as OutputKind[]) {
      await t.notThrowsAsync(checkOutput({ flag: '--out', path: fresh, kind }), `${kind}: an empty folder`);
    }
    await t.notThrowsAsync(checkOutput({ flag: '--out', path: probeSet, kind: 'probe-set' }));
    await t.notThrowsAsync(checkOutput({ flag: '--out', path: model, kind: 'checkpoint' }));
    await t.notThrowsAsync(checkOutput({ flag: '--report', path: report, kind: 'report' }));
    await t.notThrowsAsync(checkOutput({ flag: '--out', path: store, kind: 'store-root' }));
    const study = path.join(fresh, 'study');
    fs.mkdirSync(path.join(study, 'concatenation', 'features'), { recursive: true });
    fs.writeFileSync(path.join(study, 'comparison.md'), '');
    await t.notThrowsAsync(checkOutput({ flag: '--out', path: study, kind: 'study' }));
  } finally {
    fs.rmSync(fresh, { recursive: true, force: true });
  }
});

test('what each kind refuses: another kind of file, a folder for a file, a file for a folder, foreign folders', async (t) => {
  const other = path.join(dir, 'notes.txt');
  fs.writeFileSync(other, 'my notes');
  await refused(t, model, 'probe-set', /not a calmkit probe set \(it does not start like a probe set file\)/);
  await refused(t, probeSet, 'checkpoint', /not a calmkit Jukebox checkpoint \(it does not read as one/);
  await refused(t, other, 'checkpoint', /not a calmkit Jukebox checkpoint/);
  await refused(t, dir, 'probe-set', /it is a folder, and --out names the file to write/);
  await refused(t, other, 'report', /it is a file, and --out names a folder/);
  await refused(t, dir, 'report', /not a calmkit report folder \(it holds no calmkit table\.json\)/);
  await refused(t, dir, 'study', /not a calmkit study folder \(it holds .*, which a study does not write\)/);
  await refused(t, dir, 'demo-data', /no calmkit-demo-data\.json/);
  const foreign = path.join(dir, 'foreign-root');
  fs.mkdirSync(path.join(foreign, 'layer-1'), { recursive: true });
  fs.writeFileSync(path.join(foreign, 'layer-1', 'data.bin'), 'x');
  await refused(t, foreign, 'store-root', /layer-1 is not a calmkit feature store/);
  // A file on the way to the output: it cannot become a folder.
  const under = path.join(other, 'sub', 'probes.json');
  const err = await t.throwsAsync(checkOutput({ flag: '--out', path: under, kind: 'probe-set' }), { instanceOf: ArgumentError });
  t.is(err?.code, 'ERR_OUTPUT_EXISTS');
  t.is(err?.message, `--out ${under}: ${other} exists and is a file, so calmkit cannot make a folder there; choose another path`);
});

test('train --out naming a folder or a checkpoint: exit 2 before any work, the checkpoint untouched', async (t) => {
  const before = sha(model);
  // --dataset and --features do not exist: the output check runs first, so they are never opened.
  const args = ['train', '--dataset', path.join(dir, 'no-dataset'), '--features', path.join(dir, 'no-store'), '--epochs', '1'];
  const folder = await runCli([...args, '--out', dir]);
  t.is(folder.code, 2, folder.stderr);
  t.regex(
    folder.stderr,
    /^calmkit: ERR_OUTPUT_EXISTS: --out .* exists and is not a calmkit probe set \(it is a folder, and --out names the file to write\); calmkit will not write over it/m,
  );
  const ckpt = await runCli([...args, '--out', model]);
  t.is(ckpt.code, 2, ckpt.stderr);
  t.regex(ckpt.stderr, /ERR_OUTPUT_EXISTS: --out .*tiny\.pt exists and is not a calmkit probe set/);
  t.is(sha(model), before, 'the checkpoint is as it was');
  const rep = await runCli([...args, '--out', path.join(dir, 'new.calmkit-probes.json'), '--report', model]);
  t.is(rep.code, 2, rep.stderr);
  t.regex(rep.stderr, /ERR_OUTPUT_EXISTS: --report .*tiny\.pt exists and is not a calmkit report folder/);
});

test('model init over a probe set is refused; over a checkpoint it replaces it', async (t) => {
  const before = sha(probeSet);
  const r = await runCli(['model', 'init', '--preset', 'tiny', '--layers', '1', '--out', probeSet]);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /ERR_OUTPUT_EXISTS: --out .*probes\.calmkit-probes\.json exists and is not a calmkit Jukebox checkpoint/);
  t.is(sha(probeSet), before);
  const copy = path.join(dir, 'copy.pt');
  fs.copyFileSync(model, copy);
  const again = await runCli(['model', 'init', '--preset', 'tiny', '--layers', '1', '--seed', '9', '--out', copy]);
  t.is(again.code, 0, again.stderr);
  t.not(sha(copy), sha(model), 'replaced by the new random checkpoint');
});

test('report and extract refuse folders that are not theirs', async (t) => {
  const rep = await runCli(['report', '--probes', probeSet, '--out', dir]);
  t.is(rep.code, 2, rep.stderr);
  t.regex(rep.stderr, /ERR_OUTPUT_EXISTS: --out .* exists and is not a calmkit report folder/);
  const notes = path.join(dir, 'extract-notes.txt');
  fs.writeFileSync(notes, 'mine');
  const x = await runCli(['extract', path.join(dir, 'missing.wav'), '--model', model, '--out', notes, '--layers', '1']);
  t.is(x.code, 2, x.stderr);
  t.regex(
    x.stderr,
    /ERR_OUTPUT_EXISTS: --out .*extract-notes\.txt exists and is not a folder of calmkit feature stores \(it is a file, and --out names a folder\)/,
  );
  t.is(fs.readFileSync(notes, 'utf8'), 'mine');
});
