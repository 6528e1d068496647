// Cross-check against PyTorch: the reference re-implements calmkit's random streams in Python and lets autograd
// and torch.optim.Adam do the rest, so matching weights check the hand-written backward and the fused Adam.
// Needs the project's Python (scripts/setup.sh); without it the tests fail rather than skip.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { trainProbeGrid } from '../lib';
import { PYTHON } from './helpers/paths';
import { synthProblem } from './helpers/probe-data';


const problem = (dim: number) =>
  synthProblem({ n: 120, dim, seed: 9, tasks: [{ instrument: 'mandolin', flip: 0.1, threshold: 0.4, train: 45, val: 20, test: 20 }] });

// The 300 x 160 case goes through the CPU path that forms the gradient of wide layers a block of rows at a time
// inside the Adam pass (300 and 160 rows: full blocks of 64 and a partial one).
for (const [dim, config] of [
  [6, { hidden: [5, 3], dropout: 0.5, l2: 1e-3 }],
  [6, { hidden: [], dropout: 0.25, l2: 0 }],
  [300, { hidden: [160, 3], dropout: 0.5, l2: 1e-4 }],
] as const) {
  const p = problem(dim);
  test(`one epoch of ${JSON.stringify(config)} on ${dim}-d features matches PyTorch autograd + Adam within 1e-5`, async (t) => {
    const opts = { seed: 5, epochs: 1, batchSize: 8, lr: 1e-2, standardize: true };
    const set = await trainProbeGrid({
      ...opts,
      features: p.features,
      dim: p.dim,
      tasks: p.tasks,
      grid: { hidden: [[...config.hidden]], dropout: [config.dropout], l2: [config.l2] },
      keepAllWeights: true,
    });
    const ours = set.results[0].configs[0];
    t.is(ours.bestEpoch, 0, 'after one epoch the kept weights are the final ones');

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-probe-ref-'));
    const features = Array.from({ length: p.features.length / p.dim }, (_, i) => Array.from(p.features.subarray(i * p.dim, (i + 1) * p.dim)));
    const task = p.tasks[0];
    fs.writeFileSync(
      path.join(dir, 'in.json'),
      JSON.stringify({ ...opts, features, config, task: { instrument: task.instrument, train: { rows: Array.from(task.train.rows), targets: Array.from(task.train.targets) } } }),
    );
    const run = spawnSync(PYTHON, [path.join(__dirname, 'reference', 'probe_ref.py'), path.join(dir, 'in.json'), path.join(dir, 'out.json')], { encoding: 'utf8' });
    t.is(run.status, 0, run.stderr);
    const ref = JSON.parse(fs.readFileSync(path.join(dir, 'out.json'), 'utf8')) as { layers: { weight: number[][]; bias: number[] }[] };
    let worst = 0;
    let moved = 0;
    ref.layers.forEach((layer, l) => {
      const mine = ours.net!.layers[l];
      layer.weight.flat().forEach((v, i) => (worst = Math.max(worst, Math.abs(v - mine.weight[i]))));
      layer.bias.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - mine.bias[i]))));
      moved += layer.bias.length;
    });
    t.log(`max |calmkit - torch| = ${worst}`);
    t.true(moved > 0);
    t.true(worst < 1e-5);
    fs.rmSync(dir, { recursive: true, force: true });
  });
}

// Attention probes: segment features [n, S, dim], the reference's masked softmax and autograd. The 300-d case
// takes the fused gradient + Adam path for the first layer and for the score and attention layers after a
// 160-wide hidden layer; the padded case masks the softmax and zeroes padding in both.
function segmentsOf(p: ReturnType<typeof problem>, S: number, seed: number, padded: boolean) {
  const n = p.features.length / p.dim;
  let state = seed;
  const next = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648);
  const features = new Float32Array(n * S * p.dim);
  const valid = new Int32Array(n).fill(S);
  for (let c = 0; c < n; c++) {
    if (padded) valid[c] = 1 + Math.floor(next() * S);
    for (let s = 0; s < S; s++) {
      for (let j = 0; j < p.dim; j++) {
        // The clip's own vector in its first segment, shifted copies in the others; 0 in padding.
        features[(c * S + s) * p.dim + j] = s < valid[c] ? p.features[c * p.dim + ((j + s) % p.dim)] * (1 - 0.2 * s) + (next() - 0.5) : 0;
      }
    }
  }
  return { features, valid: padded ? valid : undefined };
}

for (const [dim, S, padded, config] of [
  [6, 4, false, { hidden: [5], dropout: 0.5, l2: 1e-3 }],
  [6, 5, true, { hidden: [5, 3], dropout: 0.25, l2: 1e-4 }],
  [6, 3, false, { hidden: [], dropout: 0.25, l2: 0 }],
  [300, 3, true, { hidden: [160], dropout: 0.5, l2: 1e-4 }],
] as const) {
  const p = problem(dim);
  const seg = segmentsOf(p, S, dim + S, padded);
  test(`one epoch of the attention probe ${JSON.stringify(config)} on ${S} x ${dim}-d segments${padded ? ' (padded)' : ''} matches PyTorch within 1e-5; its forward matches within 1e-6`, async (t) => {
    const opts = { seed: 5, epochs: 1, batchSize: 8, lr: 1e-2, standardize: true };
    const set = await trainProbeGrid({
      ...opts,
      features: seg.features,
      dim: p.dim,
      segments: S,
      validSegments: seg.valid,
      tasks: p.tasks,
      grid: { hidden: [[...config.hidden]], dropout: [config.dropout], l2: [config.l2], attention: true },
      keepAllWeights: true,
    });
    const ours = set.results[0].configs[0];
    t.is(ours.bestEpoch, 0, 'after one epoch the kept weights are the final ones');
    const n = p.features.length / p.dim;
    const features = Array.from({ length: n }, (_, c) => Array.from({ length: S }, (_, s) => Array.from(seg.features.subarray((c * S + s) * p.dim, (c * S + s + 1) * p.dim))));
    const valid = seg.valid ? Array.from(seg.valid) : undefined;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-attention-ref-'));
    const task = p.tasks[0];
    fs.writeFileSync(
      path.join(dir, 'in.json'),
      JSON.stringify({ ...opts, features, segments: S, valid, config: { ...config, attention: true }, task: { instrument: task.instrument, train: { rows: Array.from(task.train.rows), targets: Array.from(task.train.targets) } } }),
    );
    const script = path.join(__dirname, 'reference', 'probe_ref.py');
    const run = spawnSync(PYTHON, [script, path.join(dir, 'in.json'), path.join(dir, 'out.json')], { encoding: 'utf8' });
    t.is(run.status, 0, run.stderr);
    const ref = JSON.parse(fs.readFileSync(path.join(dir, 'out.json'), 'utf8')) as { layers: { weight: number[][]; bias: number[] }[]; attention: { weight: number[][]; bias: number[] } };
    let worst = 0;
    [...ref.layers, ref.attention].forEach((layer, l) => {
      const mine = l < ref.layers.length ? ours.net!.layers[l] : ours.net!.attention!;
      layer.weight.flat().forEach((v, i) => (worst = Math.max(worst, Math.abs(v - mine.weight[i]))));
      layer.bias.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - mine.bias[i]))));
    });
    t.log(`training: max |calmkit - torch| = ${worst}`);
    t.true(worst < 1e-5);

    // Forward: our trained net on the test clips through predict, and through torch.
    const rows = Array.from(task.test.rows);
    const per = S * p.dim;
    const test = new Float32Array(rows.length * per);
    rows.forEach((r, i) => test.set(seg.features.subarray(r * per, (r + 1) * per), i * per));
    const testValid = seg.valid ? Int32Array.from(rows, (r) => seg.valid![r]) : undefined;
    const pred = (await set.predict(test, { validSegments: testValid, attentionWeights: true })) as { probabilities: Float32Array; attentionWeights: Float32Array };
    const net = ours.net!;
    const plain = (l: { in: number; out: number; weight: Float32Array; bias: Float32Array }) => ({ in: l.in, out: l.out, weight: Array.from(l.weight), bias: Array.from(l.bias) });
    fs.writeFileSync(
      path.join(dir, 'fwd.json'),
      JSON.stringify({
        features: rows.map((r) => features[r]),
        valid: testValid ? Array.from(testValid) : undefined,
        net: { mean: Array.from(net.mean!), std: Array.from(net.std!), layers: net.layers.map(plain), attention: plain(net.attention!) },
      }),
    );
    const fwd = spawnSync(PYTHON, [script, '--forward', path.join(dir, 'fwd.json'), path.join(dir, 'fwd-out.json')], { encoding: 'utf8' });
    t.is(fwd.status, 0, fwd.stderr);
    const refFwd = JSON.parse(fs.readFileSync(path.join(dir, 'fwd-out.json'), 'utf8')) as { probabilities: number[]; weights: number[][] };
    let worstP = 0;
    let worstW = 0;
    refFwd.probabilities.forEach((v, i) => (worstP = Math.max(worstP, Math.abs(v - pred.probabilities[i]))));
    refFwd.weights.forEach((ws, i) => ws.forEach((v, s) => (worstW = Math.max(worstW, Math.abs(v - pred.attentionWeights[i * S + s])))));
    t.log(`forward: max |P| difference ${worstP}, max |weight| difference ${worstW}`);
    t.true(worstP < 1e-6 && worstW < 1e-6);
    fs.rmSync(dir, { recursive: true, force: true });
  });
}
