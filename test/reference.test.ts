// test/reference/jukebox_ref.py: shapes, pooling, the causal property on short
// inputs, and the timing bins against the spec's table.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exportArgs, HOP, makeCkptArgs, readNpy, REF, runOk, runPy, SMALL, tempDir, writeAudio } from './helpers/jukebox';

const DEPTH = 6; // two of each attention kind
const dir = tempDir('ref');
const archive = path.join(dir, 'small.pt');
const longAudio = path.join(dir, 'long.f32');
const shortAudio = path.join(dir, 'short.f32');
const SHORT_T = 100; // not a multiple of block_ctx (32): ends inside a block
const COND_OFFSET = 2000000;

test.before(async () => {
  await runOk(makeCkptArgs(dir, ['--seed', '7']));
  // A label 2,000,000 samples into the song puts every position in absolute bin 1 and
  // relative bin 11 (of 16), so a mix-up of the timing tables cannot hide behind bin 0.
  await runOk(exportArgs(dir, archive, DEPTH, ['--cond-offset', `${COND_OFFSET}`]));
  // One token more than the window, so the long run is cut to n_ctx tokens.
  const a = writeAudio(longAudio, (SMALL.nCtx + 1) * HOP + 77);
  fs.writeFileSync(shortAudio, Buffer.from(a.slice(0, SHORT_T * HOP + 37).buffer));
});

test.after.always(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function ref(audio: string, layers: string, pooling: string, out: string): Promise<string> {
  return runOk([REF, '--model', archive, '--audio', audio, '--layers', layers, '--pooling', pooling, '--out', out]);
}

// One full-window `none` run serves both the pooling and the causality tests: each
// Python start costs over a second of a shared CPU.
const NONE_LAYERS = '1,2,3,5,6';
let noneRun: Promise<string> | undefined;
function fullNone(): Promise<string> {
  const out = path.join(dir, 'none');
  noneRun ??= ref(longAudio, NONE_LAYERS, 'none', out).then(() => out);
  return noneRun;
}

function f32(file: string) {
  const n = readNpy(file);
  if (!(n.data instanceof Float32Array)) throw new Error(`${file}: expected float32`);
  return { shape: n.shape, data: n.data };
}

function row(x: { shape: number[]; data: Float32Array }, i: number): Float32Array {
  const w = x.shape[1];
  return x.data.subarray(i * w, (i + 1) * w);
}

function meanRows(x: { shape: number[]; data: Float32Array }, from: number, to: number): Float64Array {
  const w = x.shape[1];
  const m = new Float64Array(w);
  for (let i = from; i < to; i++) for (let c = 0; c < w; c++) m[c] += x.data[i * w + c];
  for (let c = 0; c < w; c++) m[c] /= to - from;
  return m;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

test('reference: tokens and per-layer outputs with every pooling', async (t) => {
  const [noneDir] = await Promise.all([
    fullNone(),
    ref(longAudio, '2,6', 'mean', path.join(dir, 'mean')),
    ref(longAudio, '6,2', 'segments:50', path.join(dir, 'seg')),
  ]);
  const out = { none: noneDir, mean: path.join(dir, 'mean'), seg: path.join(dir, 'seg') };
  const tokens = readNpy(path.join(out.none, 'tokens.npy'));
  t.deepEqual(tokens.shape, [SMALL.nCtx]);
  t.true(tokens.data instanceof BigInt64Array);
  const tok = Array.from(tokens.data as BigInt64Array, Number);
  t.true(tok.every((v) => v >= 0 && v < SMALL.vqLBins));
  t.true(new Set(tok).size > 4, 'the encoder should produce more than a handful of distinct codes');
  t.deepEqual(readNpy(path.join(out.mean, 'tokens.npy')).data, tokens.data);
  t.false(fs.existsSync(path.join(out.none, 'layer4.npy')), 'only requested layers are written');
  t.false(fs.existsSync(path.join(out.mean, 'layer1.npy')), 'only requested layers are written');

  for (const L of [2, 6]) {
    const none = f32(path.join(out.none, `layer${L}.npy`));
    t.deepEqual(none.shape, [SMALL.nCtx, SMALL.width]);
    t.true(none.data.every(Number.isFinite));

    const mean = f32(path.join(out.mean, `layer${L}.npy`));
    t.deepEqual(mean.shape, [SMALL.width]);
    const scale = Math.max(...Array.from(mean.data, Math.abs));
    t.true(maxAbsDiff(mean.data, meanRows(none, 0, SMALL.nCtx)) <= 1e-5 * Math.max(1, scale), `mean pooling, layer ${L}`);

    const seg = f32(path.join(out.seg, `layer${L}.npy`));
    t.deepEqual(seg.shape, [Math.ceil(SMALL.nCtx / 50), SMALL.width]); // 5 full segments + one of 6 tokens
    for (let s = 0; s < seg.shape[0]; s++) {
      const want = meanRows(none, s * 50, Math.min(SMALL.nCtx, (s + 1) * 50));
      t.true(maxAbsDiff(row(seg, s), want) <= 1e-5 * Math.max(1, scale), `segment ${s}, layer ${L}`);
    }
  }
  // Deeper layers must actually be different computations.
  const l2 = f32(path.join(out.none, 'layer2.npy'));
  const l6 = f32(path.join(out.none, 'layer6.npy'));
  t.true(maxAbsDiff(l2.data, l6.data) > 0.1);
});

test('reference: a short input equals the first positions of a full-window run (causality)', async (t) => {
  const outShort = path.join(dir, 'causal-short');
  const [outLong] = await Promise.all([fullNone(), ref(shortAudio, '1,3,5,6', 'none', outShort)]);
  const tokLong = Array.from(readNpy(path.join(outLong, 'tokens.npy')).data as BigInt64Array, Number);
  const tokShort = Array.from(readNpy(path.join(outShort, 'tokens.npy')).data as BigInt64Array, Number);
  t.is(tokShort.length, SHORT_T);
  // The encoder sees zero padding where the short audio ends, so its last few codes
  // may differ; position p depends on tokens < p only, so positions 0..k compare,
  // where k is the length of the common token prefix.
  let k = 0;
  while (k < SHORT_T && tokShort[k] === tokLong[k]) k++;
  t.true(k >= SHORT_T - 8, `common token prefix ${k} is implausibly short`);
  const P = Math.min(k + 1, SHORT_T);
  t.true(P > 2 * 32, 'the compared prefix must span several attention blocks');
  for (const L of [1, 3, 5, 6]) {
    const long = f32(path.join(outLong, `layer${L}.npy`));
    const short = f32(path.join(outShort, `layer${L}.npy`));
    t.deepEqual(short.shape, [SHORT_T, SMALL.width]);
    const d = maxAbsDiff(short.data.subarray(0, P * SMALL.width), long.data.subarray(0, P * SMALL.width));
    t.true(d <= 1e-4, `layer ${L}: max |short - long| over ${P} positions = ${d}`);
  }
});

test('reference: rejects layers beyond the archive and audio shorter than a token', async (t) => {
  const r = await runPy([REF, '--model', archive, '--audio', longAudio, '--layers', `${DEPTH + 1}`, '--pooling', 'mean', '--out', path.join(dir, 'bad')]);
  t.not(r.code, 0);
  t.regex(r.stderr, /within 1\.\.6/);
  const tiny = path.join(dir, 'tiny.f32');
  fs.writeFileSync(tiny, Buffer.alloc(4 * (HOP - 1)));
  const r2 = await runPy([REF, '--model', archive, '--audio', tiny, '--layers', '1', '--pooling', 'mean', '--out', path.join(dir, 'bad')]);
  t.not(r2.code, 0);
  t.regex(r2.stderr, /shorter than one token/);
});

interface Bins {
  total_length_bin: number;
  absolute: number[];
  relative: number[];
}

test('reference --bins-only: 5B timing bins match the spec table', async (t) => {
  const b: Bins = JSON.parse(
    await runOk([
      REF,
      '--bins-only',
      '--n-ctx',
      '8192',
      '--hop',
      '128',
      '--sample-rate',
      '44100',
      '--min-duration',
      '60',
      '--max-duration',
      '600',
      '--t-bins',
      '128',
      '--cond-total-length',
      '2734080',
      '--cond-offset',
      '0',
    ]),
  );
  t.is(b.total_length_bin, 0);
  t.is(b.absolute.length, 8192);
  t.is(b.relative.length, 8192);
  // Spec 3.2: a_t changes at 1615, 3230, 4845, 6460, 8075; r_t = floor(8t/1335).
  const ts = [0, 166, 167, 1614, 1615, 8074, 8075, 8191];
  t.deepEqual(
    ts.map((i) => b.absolute[i]),
    [0, 0, 0, 0, 1, 4, 5, 5],
  );
  t.deepEqual(
    ts.map((i) => b.relative[i]),
    [0, 0, 1, 9, 9, 48, 48, 49],
  );
  // The spec also says the float32 bins equal the exact rational floors at every t.
  const absExact = b.absolute.map((_, i) => Math.floor((128 * 128 * i) / 26460000));
  const relExact = b.relative.map((_, i) => Math.floor((8 * i) / 1335));
  t.deepEqual(b.absolute, absExact);
  t.deepEqual(b.relative, relExact);
});

test('reference --bins-only: reads the hyperparameters from an archive', async (t) => {
  const explicitArgs = [REF, '--bins-only', '--n-ctx', `${SMALL.nCtx}`, '--hop', `${HOP}`, '--t-bins', `${SMALL.tBins}`];
  const [fromArchive, explicit, atZero] = await Promise.all([
    runOk([REF, '--bins-only', '--model', archive]),
    runOk([...explicitArgs, '--cond-offset', `${COND_OFFSET}`]),
    runOk(explicitArgs),
  ]);
  const a: Bins = JSON.parse(fromArchive);
  t.is(a.absolute.length, SMALL.nCtx);
  t.deepEqual(a, JSON.parse(explicit));
  // 16 * 2000000 / 26460000 = 1.2 and 16 * 2000000 / 2734080 = 11.7; the 32768-sample
  // window moves neither across a bin edge.
  t.true(
    a.absolute.every((v) => v === 1),
    JSON.stringify(a.absolute.slice(0, 4)),
  );
  t.true(
    a.relative.every((v) => v === 11),
    JSON.stringify(a.relative.slice(0, 4)),
  );
  t.is(a.total_length_bin, 0);
  const z: Bins = JSON.parse(atZero);
  t.true(z.absolute.every((v) => v === 0) && z.relative.every((v) => v === 0));
});

test('reference: first positions of layers 1-3 match a float64 numpy recomputation', async (t) => {
  const out = await fullNone();
  const r = await runPy([path.join(path.dirname(REF), 'check_first_positions.py'), archive, out, '32']);
  t.is(r.code, 0, r.stdout + r.stderr);
  t.deepEqual(Object.keys(JSON.parse(r.stdout)).sort(), ['1', '2', '3']);
});

test('reference: masked T x T attention equals the block-reshape formulation for all three kinds', async (t) => {
  const r = await runPy([path.join(path.dirname(REF), 'check_attention.py')]);
  t.is(r.code, 0, r.stdout + r.stderr);
  const diffs = JSON.parse(r.stdout);
  t.deepEqual(Object.keys(diffs).sort(), ['0', '1', '2']);
});
