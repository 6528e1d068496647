// The study end to end through the CLI, on a small demo dataset and the tiny model: the three formatting variants,
// attention over the best one's segments, the VGGish columns (from per-clip JSON files in the release's format),
// Table I each, the side-by-side table, resume, predict and report.
import test from 'ava';
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { OpenMIC } from '../lib/openmic';
import { ProbeSet } from '../lib/probes';
import { ROOT, tempDir } from './helpers/paths';

const run = promisify(execFile);
const CLI = path.join(ROOT, 'lib', 'cli', 'main.ts');
const dir = tempDir('calmkit-study-');
const model = path.join(dir, 'tiny.pt');
const data = path.join(dir, 'data');
const out = path.join(dir, 'study');
// A reduced grid and few epochs keep the test short; the paper grid runs in `npm run demo`.
const STUDY = [
  'study',
  '--dataset',
  data,
  '--model',
  model,
  '--out',
  out,
  '--epochs',
  '20',
  '--grid',
  'hidden=[];[16] dropout=0.5 l2=0,1e-4',
  '--attention-grid',
  'hidden=[16] dropout=0.5 l2=0,1e-4',
  '--attention-epochs',
  '10',
];
const COLUMNS = ['concatenation', 'upsampling', 'untiled'];

function calmkit(args: string[]) {
  return run(process.execPath, ['--import=tsx', CLI, ...args], { env: { ...process.env, CI: '1' }, maxBuffer: 64 << 20, timeout: 300_000 });
}

/**
 * The release's per-clip VGGish files (vggish/xxx/KEY.json: 10 time points, 10 x 128 values 0-255) for the demo
 * clips: noise plus a bump in eight dimensions per instrument that plays, so the VGGish probes have something to find.
 */
function writeVggish(root: string): void {
  const truth = JSON.parse(fs.readFileSync(path.join(root, 'calmkit-demo-data.json'), 'utf8')).truth as { key: string; parts: { instrument: string }[] }[];
  const instruments = Object.keys(JSON.parse(fs.readFileSync(path.join(root, 'class-map.json'), 'utf8')));
  let state = 7;
  const noise = () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % 96;
  };
  for (const clip of truth) {
    const features = Array.from({ length: 10 }, () => Array.from({ length: 128 }, () => 64 + noise()));
    for (const part of clip.parts) {
      const i = instruments.indexOf(part.instrument);
      for (const frame of features) for (let j = 0; j < 6; j++) frame[(i * 6 + j) % 128] += 90;
    }
    fs.mkdirSync(path.join(root, 'vggish', clip.key.slice(0, 3)), { recursive: true });
    fs.writeFileSync(
      path.join(root, 'vggish', clip.key.slice(0, 3), `${clip.key}.json`),
      JSON.stringify({ time_points: features.map((_, k) => Math.round(96 * k) / 100), features }),
    );
  }
}

test.before(async () => {
  await calmkit(['model', 'init', '--preset', 'tiny', '--out', model]);
  await calmkit(['demo-data', '--out', data, '--clips', '64', '--seed', '3']);
  writeVggish(data);
});

test.serial('calmkit study: three variants, attention over the best one, the VGGish columns, Table I each, the side-by-side table', async (t) => {
  const { stdout, stderr } = await calmkit(STUDY);
  for (const variant of COLUMNS) {
    const report = path.join(out, variant, 'report');
    for (const f of ['table.md', 'table.csv', 'table.json']) t.true(fs.existsSync(path.join(report, f)), `${variant}/${f}`);
    t.true(
      fs.readdirSync(report).some((f) => f.endsWith('.png')),
      'figures as PNG',
    );
    t.true(
      fs.readdirSync(report).some((f) => f.endsWith('.svg')),
      'figures as SVG',
    );
    const probes = await ProbeSet.load(path.join(out, variant, 'probes.calmkit-probes.json'));
    t.is(probes.instruments.length + probes.skipped.length, 20);
    t.true(probes.instruments.length > 0);
    t.is(probes.info.grid.length, 4);
    const spec = (probes.info.manifest as { store: { spec: { formatting: string } } }).store.spec;
    t.is(spec.formatting, ({ concatenation: 'tile', upsampling: 'upsample', untiled: 'none' } as Record<string, string>)[variant]!);
  }
  // The attention column: segments of the variant with the lowest mean validation loss, attention probes, and the
  // figure of where they look.
  const comparison = JSON.parse(fs.readFileSync(path.join(out, 'comparison.json'), 'utf8'));
  const attention = comparison.variants[3] as string;
  const chosen = /^attention \((\w+)\)$/.exec(attention)?.[1];
  t.true(COLUMNS.includes(chosen!), attention);
  t.regex(stderr, new RegExp(`attention over the 1 s segments of ${chosen} \\(the lowest mean validation loss`));
  const valLoss = await Promise.all(
    COLUMNS.map(async (v) => {
      const set = await ProbeSet.load(path.join(out, v, 'probes.calmkit-probes.json'));
      const losses = set.results.map((r) => r.configs[r.selected].bestValLoss);
      return losses.reduce((a, b) => a + b, 0) / losses.length;
    }),
  );
  t.is(COLUMNS[valLoss.indexOf(Math.min(...valLoss))]!, chosen!);
  const att = await ProbeSet.load(path.join(out, 'attention', 'probes.calmkit-probes.json'));
  t.true(att.attention);
  t.true(att.grid.every((c) => c.attention));
  t.is(att.info.grid.length, 2);
  t.is(att.info.recipe!.pooling, 'segments');
  t.is(att.info.recipe!.segmentSeconds, 1);
  t.is(att.info.segmentTimes!.spans.length, att.info.segments!);
  t.truthy(att.results[0].testAttention);
  t.true(fs.existsSync(path.join(out, 'attention', 'report', 'attention-weights.png')));
  const segStore = path.join(out, chosen!, 'segments', 'layer-6');
  t.true(fs.existsSync(path.join(segStore, 'store.json')));
  // The VGGish columns: the mean over 10 frames with the paper's grid, the frames with attention.
  t.deepEqual(comparison.variants, [...COLUMNS, attention, 'vggish (mean)', 'vggish (attention)']);
  const vMean = await ProbeSet.load(path.join(out, 'vggish-mean', 'probes.calmkit-probes.json'));
  const vAtt = await ProbeSet.load(path.join(out, 'vggish-attention', 'probes.calmkit-probes.json'));
  t.is(vMean.info.dim, 128);
  t.is(vMean.info.segments, undefined);
  t.is(vAtt.info.segments, 10);
  t.is(vAtt.info.recipe, undefined, 'features calmkit did not make have no recipe');
  // They trained on exactly the files' values: the frames in key order, and their mean over the 10 frames.
  const keys = OpenMIC.open(data, { audio: 'skip' }).keys;
  const frames = new Float32Array(keys.length * 1280);
  keys.forEach((k, i) => {
    frames.set((JSON.parse(fs.readFileSync(path.join(data, 'vggish', k.slice(0, 3), `${k}.json`), 'utf8')).features as number[][]).flat(), i * 1280);
  });
  const means = new Float32Array(keys.length * 128);
  for (let i = 0; i < keys.length; i++) {
    for (let j = 0; j < 128; j++) {
      let sum = 0;
      for (let f = 0; f < 10; f++) sum += frames[i * 1280 + f * 128 + j];
      means[i * 128 + j] = sum / 10;
    }
  }
  const sha = (a: Float32Array) => crypto.createHash('sha256').update(new Uint8Array(a.buffer)).digest('hex');
  t.is(vAtt.info.hashes.features, sha(frames));
  t.is(vMean.info.hashes.features, sha(means));
  t.is(comparison.rows.length, 20);
  for (const r of comparison.rows) {
    if (Number.isFinite(r.f1.concatenation) && Number.isFinite(r.f1.upsampling)) t.is(r.difference, r.f1.upsampling - r.f1.concatenation);
  }
  for (const v of comparison.variants.slice(0, 4)) t.true(comparison.extractionSecondsPerClip[v] > 0, `${v} has an extraction cost`);
  t.is(comparison.extractionSecondsPerClip['vggish (mean)'], null);
  t.regex(stdout, /\| \*\*macro \(present-class F1\)\*\* \|/);
  const md = fs.readFileSync(path.join(out, 'comparison.md'), 'utf8');
  t.regex(md, /upsampling − concatenation/);
  t.regex(md, /\| extraction s\/clip \|/);
  t.regex(md, /\| macro − concatenation \|/);
  // The variants see different audio, so their features differ.
  const first = (v: string) => {
    const dir = path.join(out, v, 'features', 'layer-6', 'shards');
    return fs.readFileSync(path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.npy'))!));
  };
  t.notDeepEqual(first('concatenation'), first('upsampling'));
});

test.serial('calmkit study again: nothing is extracted or trained twice', async (t) => {
  const before = fs.statSync(path.join(out, 'concatenation', 'probes.calmkit-probes.json')).mtimeMs;
  const { stdout, stderr } = await calmkit(STUDY);
  t.regex(stdout, /concatenation \(tile\): extracted 0, reused 64, failed 0/);
  t.regex(stdout, /upsampling \(upsample\): extracted 0, reused 64, failed 0/);
  t.regex(stdout, /untiled \(none\): extracted 0, reused 64, failed 0/);
  t.regex(stdout, /attention \(\w+\) \(\w+, segments\): extracted 0, reused 64, failed 0/);
  t.notRegex(stderr, /training \d+ configs/);
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
