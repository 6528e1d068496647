// Attention probes on segment features: the one-segment reduction to the paper's MLP probe (bit for bit), the
// random-stream properties of the trainer (alone, in a grid, in any stack; the batched step), padding, predict
// with attention weights, save/load, and the argument checks. The planted problem is test/probes-planted.test.ts;
// the PyTorch cross-check test/probes-torch.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ArgumentError, ATTENTION_GRID, DataError, ProbeSet, trainProbeGrid, type ProbeNet } from '../lib';
import { normal, rng, synthProblem } from './helpers/probe-data';

function maxAbsDiff(a: ProbeNet, b: ProbeNet): number {
  let m = 0;
  const layers = (n: ProbeNet) => (n.attention ? [...n.layers, n.attention] : n.layers);
  const lb = layers(b);
  layers(a).forEach((l, i) => {
    for (let k = 0; k < l.weight.length; k++) m = Math.max(m, Math.abs(l.weight[k] - lb[i].weight[k]));
    for (let k = 0; k < l.bias.length; k++) m = Math.max(m, Math.abs(l.bias[k] - lb[i].bias[k]));
  });
  return m;
}

/** Every config's curves, selection, test probabilities and weights of two runs of one grid are the same bits. */
function sameBits(t: ExecutionContext, a: ProbeSet, b: ProbeSet, what: string): void {
  a.results.forEach((r, i) => {
    t.is(r.selected, b.results[i].selected, `${what}: selection of ${r.instrument}`);
    r.configs.forEach((c, k) => {
      const o = b.results[i].configs[k];
      t.deepEqual(c.valLoss, o.valLoss, `${what}: validation losses of ${r.instrument} config ${k}`);
      t.deepEqual(c.testProbabilities, o.testProbabilities, `${what}: test probabilities of ${r.instrument} config ${k}`);
      t.is(maxAbsDiff(c.net!, o.net!), 0, `${what}: weights of ${r.instrument} config ${k}`);
    });
  });
}

/** Segment features: S segments of `dim` values per clip, labels from a rule on one random segment's projection. */
function segmentProblem(opts: { n: number; S: number; dim: number; seed: number; padded?: boolean }) {
  const base = synthProblem({
    n: opts.n,
    dim: opts.dim,
    seed: opts.seed,
    tasks: [
      { instrument: 'banjo', flip: 0.05, train: Math.round(opts.n * 0.5), val: Math.round(opts.n * 0.2), test: Math.round(opts.n * 0.3) },
      { instrument: 'cello', flip: 0.1, threshold: 0.4, train: Math.round(opts.n * 0.4), val: Math.round(opts.n * 0.2), test: Math.round(opts.n * 0.3) },
    ],
  });
  // The labelled vector becomes one segment of the clip; the others are noise.
  const r = rng(opts.seed + 1);
  const features = new Float32Array(opts.n * opts.S * opts.dim);
  const validSegments = new Int32Array(opts.n).fill(opts.S);
  for (let c = 0; c < opts.n; c++) {
    if (opts.padded) validSegments[c] = 1 + Math.floor(r() * opts.S);
    const at = Math.floor(r() * validSegments[c]);
    for (let s = 0; s < opts.S; s++) {
      for (let j = 0; j < opts.dim; j++) {
        features[(c * opts.S + s) * opts.dim + j] = s === at ? base.features[c * opts.dim + j] : s < validSegments[c] ? normal(r) : NaN;
      }
    }
  }
  return { features, dim: opts.dim, S: opts.S, tasks: base.tasks, validSegments: opts.padded ? validSegments : undefined };
}

const GRID = { hidden: [[8], [5, 3]], dropout: [0.25, 0.5], l2: [0, 1e-3], attention: true };

test('with one segment an attention probe is the MLP probe with the same hidden sizes, bit for bit', async (t) => {
  const p = synthProblem({
    n: 500,
    dim: 70, // >= 64: the first layer takes the fused gradient + Adam path, as at 4800-d
    seed: 21,
    tasks: [
      { instrument: 'banjo', flip: 0.1, train: 200, val: 80, test: 100 },
      { instrument: 'cello', flip: 0.2, threshold: 0.5, train: 130, val: 60, test: 90 },
    ],
  });
  const grid = { hidden: [[], [16], [80, 4]], dropout: [0.25, 0.5], l2: [0, 1e-3] };
  const base = { features: p.features, dim: p.dim, tasks: p.tasks, epochs: 4, seed: 3, keepAllWeights: true } as const;
  const mlp = await trainProbeGrid({ ...base, grid });
  const attention = await trainProbeGrid({ ...base, grid: { ...grid, attention: true }, segments: 1 });
  t.is(attention.info.segments, 1);
  attention.results.forEach((r, i) => {
    const m = mlp.results[i];
    t.is(r.selected, m.selected);
    r.configs.forEach((c, k) => {
      const o = m.configs[k];
      t.true(c.config.attention);
      t.deepEqual(c.valLoss, o.valLoss, `${r.instrument} ${k}: validation losses`);
      t.deepEqual(c.testProbabilities, o.testProbabilities, `${r.instrument} ${k}: test probabilities`);
      t.is(c.bestEpoch, o.bestEpoch);
      t.truthy(c.net!.attention, 'the attention layer is kept');
      c.net!.layers.forEach((l, j) => {
        t.deepEqual(l.weight, o.net!.layers[j].weight, `${r.instrument} ${k}: layer ${j} weights`);
        t.deepEqual(l.bias, o.net!.layers[j].bias, `${r.instrument} ${k}: layer ${j} bias`);
      });
    });
  });
});

test('an attention probe trains to the same bits alone, in its grid, in stacks of any size and on 1 or 2 threads', async (t) => {
  const p = segmentProblem({ n: 260, S: 5, dim: 70, seed: 4 });
  const base = { features: p.features, dim: p.dim, segments: p.S, tasks: p.tasks, grid: GRID, epochs: 3, seed: 9, keepAllWeights: true } as const;
  const together = await trainProbeGrid(base);
  t.is(together.info.training.stacks, 2, 'one stack per architecture');
  sameBits(t, together, await trainProbeGrid({ ...base, maxProbesPerStack: 1 }), 'one at a time');
  sameBits(t, together, await trainProbeGrid({ ...base, maxProbesPerStack: 3 }), 'stacks of 3');
  sameBits(t, together, await trainProbeGrid({ ...base, threads: 2 }), 'two threads');
  const cfg = together.grid[5];
  const solo = await trainProbeGrid({ ...base, tasks: [p.tasks[1]], grid: { hidden: [cfg.hidden], dropout: [cfg.dropout], l2: [cfg.l2], attention: true } });
  t.is(maxAbsDiff(solo.results[0].configs[0].net!, together.results[1].configs[5].net!), 0, 'alone in a grid of its own');
  t.deepEqual(solo.results[0].configs[0].testProbabilities, together.results[1].configs[5].testProbabilities);
});

// The step CUDA runs (bmm over the stack, the head in tensor operations, Adam in tensor operations) against the
// per-probe CPU step, on padded clips so the masked softmax is exercised in both.
test('the batched (CUDA-style) step trains attention probes to the weights of the per-probe CPU step', async (t) => {
  const p = segmentProblem({ n: 260, S: 6, dim: 70, seed: 5, padded: true });
  const base = {
    features: p.features,
    dim: p.dim,
    segments: p.S,
    validSegments: p.validSegments,
    tasks: p.tasks,
    grid: GRID,
    epochs: 3,
    seed: 2,
    keepAllWeights: true,
  } as const;
  const perProbe = await trainProbeGrid(base);
  const batched = await trainProbeGrid({ ...base, batchedStep: true });
  let worst = 0;
  perProbe.results.forEach((r, i) => {
    r.configs.forEach((c, k) => {
      const o = batched.results[i].configs[k];
      worst = Math.max(worst, maxAbsDiff(c.net!, o.net!));
      for (let e = 0; e < c.valLoss.length; e++) t.true(Math.abs(c.valLoss[e] - o.valLoss[e]) < 1e-5);
    });
    t.is(r.selected, batched.results[i].selected);
  });
  t.log(`max |w_batched - w_perProbe| = ${worst}`);
  t.true(worst < 1e-5);
});

test('padding segments are never read: NaN padding trains like zero padding, and attention weights are 0 there', async (t) => {
  const p = segmentProblem({ n: 200, S: 4, dim: 6, seed: 8, padded: true });
  const zeros = p.features.map((v) => (Number.isNaN(v) ? 0 : v));
  const base = { dim: p.dim, segments: p.S, validSegments: p.validSegments, tasks: p.tasks, grid: GRID, epochs: 3, keepAllWeights: true } as const;
  const withNaN = await trainProbeGrid({ ...base, features: p.features });
  const withZeros = await trainProbeGrid({ ...base, features: zeros });
  sameBits(t, withNaN, withZeros, 'NaN vs zero padding');
  // Without the counts the NaNs are real segments, and the trainer names the first it meets.
  const err = await t.throwsAsync(trainProbeGrid({ ...base, validSegments: undefined, features: p.features }), { instanceOf: DataError });
  t.is(err!.code, 'ERR_DATA_NOT_FINITE');
  t.regex(err!.message, /segment \d+, column 0/);

  // predict: the test clips (padded with NaN) reproduce the trainer's test probabilities; weights sum to 1 over
  // the real segments and are 0 on padding.
  const task = p.tasks[1];
  const rows = task.test.rows;
  const per = p.S * p.dim;
  const feats = new Float32Array(rows.length * per);
  rows.forEach((row, i) => {
    feats.set(p.features.subarray(row * per, (row + 1) * per), i * per);
  });
  const valid = Int32Array.from(rows, (row) => p.validSegments![row]);
  const pred = await withNaN.predict(feats, { validSegments: valid, attentionWeights: true });
  const r = withNaN.result('cello');
  const expected = r.configs[r.selected].testProbabilities;
  for (let i = 0; i < rows.length; i++) t.is(pred.probabilities[i * 2 + 1], expected[i], `test clip ${i}`);
  t.true('attentionWeights' in pred && pred.attentionWeights !== undefined);
  const w = (pred as { attentionWeights: Float32Array }).attentionWeights;
  t.is(w.length, rows.length * 2 * p.S);
  for (let i = 0; i < rows.length; i++) {
    for (let k = 0; k < 2; k++) {
      const ws = w.subarray((i * 2 + k) * p.S, (i * 2 + k + 1) * p.S);
      let sum = 0;
      ws.forEach((v, s) => {
        if (s >= valid[i]) t.is(v, 0);
        sum += v;
      });
      t.true(Math.abs(sum - 1) < 1e-6);
    }
  }
  // The selected probe's test attention weights are kept with the results, the same as predict's.
  t.deepEqual(
    r.testAttention,
    Float32Array.from({ length: rows.length * p.S }, (_, j) => w[(Math.floor(j / p.S) * 2 + 1) * p.S + (j % p.S)]),
  );
  // One clip alone gets the same bits as among the others.
  const one = await withNaN.predict(feats.subarray(per, 2 * per), { validSegments: valid.subarray(1, 2), instruments: ['cello'] });
  t.is(one.probabilities[0], pred.probabilities[3]);
});

test('attention probe sets save and load (container format 2), and predict the same after loading', async (t) => {
  const p = segmentProblem({ n: 160, S: 3, dim: 5, seed: 12 });
  const set = await trainProbeGrid({ features: p.features, dim: p.dim, segments: p.S, tasks: p.tasks, grid: GRID, epochs: 2 });
  t.deepEqual(set.grid.length, 8);
  t.true(set.attention);
  t.is(set.results[0].linear, undefined, 'attention probes are never the "linear" probe');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-attention-'));
  const file = path.join(dir, 'probes.calmprobes');
  await set.save(file);
  t.is(fs.readFileSync(file).readUInt32LE(16), 2, 'attention sets are container format 2');
  const loaded = await ProbeSet.load(file);
  t.deepEqual(loaded.info, set.info);
  const feats = p.features.subarray(0, 4 * p.S * p.dim);
  t.deepEqual((await loaded.predict(feats)).probabilities, (await set.predict(feats)).probabilities);
  t.deepEqual(loaded.table(), set.table());
  // A set of MLP probes stays format 1, readable by calmkits that predate attention probes.
  const mlp = await trainProbeGrid({
    features: p.features.subarray(0, 160 * p.dim),
    dim: p.dim,
    tasks: p.tasks,
    grid: { hidden: [[]], dropout: [0.5], l2: [0] },
    epochs: 1,
  });
  await mlp.save(file);
  t.is(fs.readFileSync(file).readUInt32LE(16), 1);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('segment features and attention grids go together; bad segment counts are named', async (t) => {
  const p = segmentProblem({ n: 120, S: 3, dim: 4, seed: 13 });
  const base = { features: p.features, dim: p.dim, tasks: p.tasks, epochs: 1 };
  const noSegments = await t.throwsAsync(trainProbeGrid({ ...base, features: p.features.subarray(0, 120 * 4), grid: GRID }), { instanceOf: ArgumentError });
  t.regex(noSegments!.message, /attention probes need segment features/);
  const mixed = await t.throwsAsync(trainProbeGrid({ ...base, segments: p.S, grid: { hidden: [[8]], dropout: [0.5], l2: [0] } }), {
    instanceOf: ArgumentError,
  });
  t.regex(mixed!.message, /MLP probes, which take one vector per clip/);
  await t.throwsAsync(trainProbeGrid({ ...base, segments: 0 }), { instanceOf: ArgumentError, message: /segments must be a positive integer/ });
  await t.throwsAsync(trainProbeGrid({ ...base, segments: 7 }), { instanceOf: DataError, message: /not a multiple of segments x dim 28/ });
  const badCount = await t.throwsAsync(trainProbeGrid({ ...base, segments: p.S, validSegments: new Int32Array(120).fill(4) }), { instanceOf: DataError });
  t.regex(badCount!.message, /clip 0 has 4 real segments; it must have 1..3/);
  await t.throwsAsync(trainProbeGrid({ ...base, segments: p.S, validSegments: new Int32Array(7).fill(1) }), {
    instanceOf: DataError,
    message: /validSegments has 7 entries for 120 clips/,
  });
  // The default grid with segments is the attention grid.
  t.deepEqual(ATTENTION_GRID.hidden, [[128], [512]]);
  t.true(ATTENTION_GRID.attention);
  const set = await trainProbeGrid({ ...base, segments: p.S, tasks: [p.tasks[0]], grid: { ...ATTENTION_GRID, hidden: [[4]], dropout: [0.5], l2: [0] } });
  t.is(set.grid[0].attention, true);
  // MLP probe sets refuse attention-only predict options; attention sets refuse flat features.
  await t.throwsAsync(set.predict(p.features.subarray(0, 7)), { instanceOf: DataError, message: /n x 3 segments x 4/ });
});

// Heads by name: the trainer's registry (native/core/probes_heads.cpp) is reached through `head`, the generic
// spelling a new head needs no TypeScript for; `attention: true` is the attention head's own spelling, and both
// train the same probes, bit for bit.
test('a grid names its head: head "attention" is attention: true, bit for bit; an unknown head is an ArgumentError naming the heads', async (t) => {
  const p = segmentProblem({ n: 90, S: 3, dim: 5, seed: 17, padded: true });
  const base = { features: p.features, dim: p.dim, segments: p.S, validSegments: p.validSegments, tasks: [p.tasks[0]], epochs: 2, keepAllWeights: true };
  const axes = { hidden: [[4]], dropout: [0.5], l2: [1e-4] };
  const byFlag = await trainProbeGrid({ ...base, grid: { ...axes, attention: true } });
  const byName = await trainProbeGrid({ ...base, grid: { ...axes, head: 'attention' } });
  t.deepEqual(byName.grid, byFlag.grid, 'one spelling in the saved grid');
  sameBits(t, byName, byFlag, 'head: attention');
  const unknown = await t.throwsAsync(trainProbeGrid({ ...base, grid: { ...axes, head: 'nope' } }), { instanceOf: ArgumentError });
  t.regex(unknown!.message, /unknown probe head 'nope' \(the heads are mlp, attention\)/);
  const mlp = synthProblem({ n: 90, dim: 5, seed: 3, tasks: [{ instrument: 'flute', flip: 0.1, train: 40, val: 20, test: 20 }] });
  const plain = await trainProbeGrid({ features: mlp.features, dim: 5, tasks: mlp.tasks, epochs: 2, grid: axes });
  const named = await trainProbeGrid({ features: mlp.features, dim: 5, tasks: mlp.tasks, epochs: 2, grid: { ...axes, head: 'mlp' } });
  t.deepEqual(named.results[0].configs[0].testProbabilities, plain.results[0].configs[0].testProbabilities);
  await t.throwsAsync(trainProbeGrid({ ...base, grid: { ...axes, attention: true, head: 'mlp' } }), {
    instanceOf: ArgumentError,
    message: /contradicts head: 'mlp' \(one head per grid\)/,
  });
});
