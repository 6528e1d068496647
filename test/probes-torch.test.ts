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
