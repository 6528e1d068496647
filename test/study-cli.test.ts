// The study end to end through the CLI, on a small demo dataset and the tiny model: both formatting variants,
// Table I each, the side-by-side table, resume, predict and report.
import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { ProbeSet } from '../lib/probes';
import { ROOT, tempDir } from './helpers/paths';

const run = promisify(execFile);
const CLI = path.join(ROOT, 'lib', 'cli', 'main.ts');
const dir = tempDir('calmkit-study-');
const model = path.join(dir, 'tiny.pt');
const data = path.join(dir, 'data');
const out = path.join(dir, 'study');
// A reduced grid and few epochs keep the test short; the paper grid runs in `npm run demo`.
const STUDY = ['study', '--dataset', data, '--model', model, '--out', out, '--epochs', '20', '--grid', 'hidden=[];[16] dropout=0.5 l2=0,1e-4'];

function calmkit(args: string[]) {
  return run(process.execPath, ['--import=tsx', CLI, ...args], { env: { ...process.env, CI: '1' }, maxBuffer: 64 << 20, timeout: 300_000 });
}

test.before(async () => {
  await calmkit(['model', 'init', '--preset', 'tiny', '--out', model]);
  await calmkit(['demo-data', '--out', data, '--clips', '64', '--seed', '3']);
});

test.serial('calmkit study: both variants, Table I each, the side-by-side table', async (t) => {
  const { stdout } = await calmkit(STUDY);
  for (const variant of ['concatenation', 'upsampling']) {
    const report = path.join(out, variant, 'report');
    for (const f of ['table.md', 'table.csv', 'table.json']) t.true(fs.existsSync(path.join(report, f)), `${variant}/${f}`);
    t.true(fs.readdirSync(report).some((f) => f.endsWith('.png')), 'figures as PNG');
    t.true(fs.readdirSync(report).some((f) => f.endsWith('.svg')), 'figures as SVG');
    const probes = await ProbeSet.load(path.join(out, variant, 'probes.calmkit-probes.json'));
    t.is(probes.instruments.length + probes.skipped.length, 20);
    t.true(probes.instruments.length > 0);
    t.is(probes.info.grid.length, 4);
    const spec = (probes.info.manifest as { store: { spec: { formatting: string } } }).store.spec;
    t.is(spec.formatting, variant === 'concatenation' ? 'tile' : 'upsample');
  }
  const comparison = JSON.parse(fs.readFileSync(path.join(out, 'comparison.json'), 'utf8'));
  t.deepEqual(comparison.variants, ['concatenation', 'upsampling']);
  t.is(comparison.rows.length, 20);
  for (const r of comparison.rows) {
    if (Number.isFinite(r.f1.concatenation) && Number.isFinite(r.f1.upsampling)) t.is(r.difference, r.f1.upsampling - r.f1.concatenation);
  }
  t.regex(stdout, /\| \*\*macro \(present-class F1\)\*\* \|/);
  t.regex(fs.readFileSync(path.join(out, 'comparison.md'), 'utf8'), /upsampling − concatenation/);
  // The two variants see different audio, so their features differ.
  const a = fs.readdirSync(path.join(out, 'concatenation', 'features', 'layer-6', 'shards')).find((f) => f.endsWith('.npy'))!;
  const b = fs.readdirSync(path.join(out, 'upsampling', 'features', 'layer-6', 'shards')).find((f) => f.endsWith('.npy'))!;
  t.notDeepEqual(
    fs.readFileSync(path.join(out, 'concatenation', 'features', 'layer-6', 'shards', a)),
    fs.readFileSync(path.join(out, 'upsampling', 'features', 'layer-6', 'shards', b)),
  );
});

test.serial('calmkit study again: nothing is extracted or trained twice', async (t) => {
  const before = fs.statSync(path.join(out, 'concatenation', 'probes.calmkit-probes.json')).mtimeMs;
  const { stdout, stderr } = await calmkit(STUDY);
  t.regex(stdout, /concatenation \(tile\): extracted 0, reused 64, failed 0/);
  t.regex(stdout, /upsampling \(upsample\): extracted 0, reused 64, failed 0/);
  t.regex(stderr, /reusing .*probes\.calmkit-probes\.json/);
  t.is(fs.statSync(path.join(out, 'concatenation', 'probes.calmkit-probes.json')).mtimeMs, before);
});

test.serial('calmkit predict and report with the trained probe set', async (t) => {
  const probesFile = path.join(out, 'concatenation', 'probes.calmkit-probes.json');
  const clip = path.join(data, 'audio', fs.readdirSync(path.join(data, 'audio'))[0]);
  const file = path.join(clip, fs.readdirSync(clip)[0]);
  const { stdout } = await calmkit(['predict', file, '--model', model, '--probes', probesFile, '--json']);
  const rows = JSON.parse(stdout);
  t.is(rows.length, 1);
  const probs = Object.entries(rows[0]).filter(([k]) => k !== 'file');
  t.true(probs.length > 0);
  for (const [, p] of probs) t.true((p as number) >= 0 && (p as number) <= 1);
  const reportDir = path.join(dir, 'report-again');
  await calmkit(['report', '--probes', probesFile, '--out', reportDir]);
  t.is(fs.readFileSync(path.join(reportDir, 'table.md'), 'utf8'), fs.readFileSync(path.join(out, 'concatenation', 'report', 'table.md'), 'utf8'));
  const bad = await t.throwsAsync(calmkit(['predict', path.join(dir, 'missing.ogg'), '--model', model, '--probes', probesFile]));
  t.regex(String((bad as { stderr?: string }).stderr), /ERR_AUDIO_NOT_FOUND/);
});
