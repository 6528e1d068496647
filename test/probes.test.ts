// Probe training end to end: planted signal vs the Bayes-optimal F1, vectorised vs one-at-a-time, determinism,
// predict, save/load, progress and cancellation. Problems are tiny so the file runs in seconds on 2 cores.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { binding } from '../bindings';
import { AbortError, PAPER_GRID, ProbeSet, trainProbeGrid, type ProbeNet } from '../lib';
import { binaryMetrics } from '../lib/probes';
import { synthProblem } from './helpers/probe-data';

function maxAbsDiff(a: ProbeNet, b: ProbeNet): number {
  let m = 0;
  a.layers.forEach((l, i) => {
    for (let k = 0; k < l.weight.length; k++) m = Math.max(m, Math.abs(l.weight[k] - b.layers[i].weight[k]));
    for (let k = 0; k < l.bias.length; k++) m = Math.max(m, Math.abs(l.bias[k] - b.layers[i].bias[k]));
  });
  return m;
}

/** Asserts equal per-epoch validation losses (1e-5) and selections of two runs of one grid; returns the largest weight difference. */
function compareSets(t: ExecutionContext, a: ProbeSet, b: ProbeSet): number {
  let worst = 0;
  a.results.forEach((r, i) => {
    r.configs.forEach((c, k) => {
      const o = b.results[i].configs[k];
      worst = Math.max(worst, maxAbsDiff(c.net!, o.net!));
      for (let e = 0; e < c.valLoss.length; e++) t.true(Math.abs(c.valLoss[e] - o.valLoss[e]) < 1e-5);
    });
    t.is(r.selected, b.results[i].selected);
  });
  return worst;
}

// Small, fast problem for the equivalence and determinism checks: the paper's grid on 12-d features.
const small = synthProblem({
  n: 900,
  dim: 12,
  seed: 7,
  tasks: [
    { instrument: 'banjo', flip: 0.1, train: 200, val: 80, test: 100 },
    { instrument: 'cello', flip: 0.2, threshold: 0.6, train: 130, val: 60, test: 90 },
  ],
});

test('selected probes come within 0.02 of the Bayes-optimal F1 of a noisy linear rule', async (t) => {
  const flips = [0.05, 0.1, 0.2];
  const p = synthProblem({
    n: 16000,
    dim: 4,
    seed: 1,
    tasks: flips.map((flip, i) => ({ instrument: `rule${i}`, flip, train: 6000, val: 1000, test: 3000 })),
  });
  const set = await trainProbeGrid({
    features: p.features,
    dim: p.dim,
    tasks: p.tasks,
    grid: { hidden: [[], [64]], dropout: [0.1, 0.25], l2: [0, 1e-4] },
    epochs: 20,
    lr: 1e-3,
  });
  set.results.forEach((r, i) => {
    // The rule w.x > 0 splits N(0, I) in half; flipping a fraction rho of labels leaves the rule itself optimal,
    // with precision = recall = 1 - rho, so the Bayes-optimal present-class F1 is 1 - rho. On this finite test
    // set the optimal rule's realised F1 is the reference.
    const bayes = 1 - flips[i];
    const oracle = binaryMetrics(Float32Array.from(p.tasks[i].oracleTest), p.tasks[i].test.targets).f1;
    t.true(Math.abs(oracle - bayes) < 0.02, `oracle realised ${oracle} vs analytic ${bayes}`);
    const f1 = r.configs[r.selected].test.f1;
    t.log(`${r.instrument}: flip ${flips[i]}, selected ${JSON.stringify(r.configs[r.selected].config)}, F1 ${f1.toFixed(4)}, Bayes ${oracle.toFixed(4)}`);
    t.true(f1 >= oracle - 0.02 && f1 <= oracle + 0.02, `${r.instrument}: F1 ${f1} vs Bayes-optimal ${oracle}`);
  });
});

test('the vectorised grid equals training each config alone with the same seed (weights within 1e-5)', async (t) => {
  const base = { features: small.features, dim: small.dim, tasks: small.tasks, epochs: 3, seed: 11, keepAllWeights: true } as const;
  const together = await trainProbeGrid(base);
  const oneByOne = await trainProbeGrid({ ...base, maxProbesPerStack: 1 });
  t.is(together.info.training.stacks, 3, 'one stack per architecture');
  t.is(oneByOne.info.training.stacks, 2 * 27);
  const worst = compareSets(t, together, oneByOne);
  t.log(`max |w_together - w_alone| = ${worst}`);
  t.true(worst < 1e-5);

  // A single config of a single instrument, in a grid of its own, follows the same streams.
  const cfg = together.grid[13];
  const solo = await trainProbeGrid({ ...base, tasks: [small.tasks[1]], grid: { hidden: [cfg.hidden], dropout: [cfg.dropout], l2: [cfg.l2] } });
  const d = maxAbsDiff(solo.results[0].configs[0].net!, together.results[1].configs[13].net!);
  t.true(d < 1e-5, `solo vs grid: ${d}`);
});

// The batched step is what CUDA runs (bmm/baddbmm over the stack, Adam in tensor operations); forcing it on the CPU
// checks its arithmetic against the per-probe CPU step (fused gradient + Adam) without a GPU. The two instruments
// have different steps per epoch, so the stack's active prefix shrinks inside every epoch.
test('the batched (CUDA-style) step trains the paper grid to the same weights as the per-probe CPU step', async (t) => {
  const base = { features: small.features, dim: small.dim, tasks: small.tasks, epochs: 3, seed: 11, keepAllWeights: true } as const;
  const perProbe = await trainProbeGrid(base);
  const batched = await trainProbeGrid({ ...base, batchedStep: true });
  const worst = compareSets(t, batched, perProbe);
  const moved = batched.results.flatMap((r) => r.configs).filter((c) => c.valLoss[0] !== c.valLoss[c.valLoss.length - 1]).length;
  t.log(`max |w_batched - w_perProbe| = ${worst}`);
  t.true(moved > 40, 'the probes trained');
  t.true(worst < 1e-5);
});

// The batched step draws its dropout masks on its device with the counter hash in 64-bit tensor arithmetic
// (probes_device_batch.cpp); here on the CPU it must give the host kernel's bits, keep for keep, including a
// length that is no multiple of any vector width and streams whose keys have the top bit set.
test("the device dropout draws are the host kernel's, bit for bit", (t) => {
  const seeds = [0, 1, 7, 123456789, 2 ** 40 + 3, 2 ** 52 - 1];
  const keeps = [0.25, 0.5, 0.75, 0.5, 0.9, 0.1];
  const n = 4800 * 3 + 7;
  const { host, tensor } = binding()._probeKeepDraws(seeds, n, keeps);
  t.is(host.length, seeds.length * n);
  let differ = 0;
  for (let i = 0; i < host.length; i++) if (host[i] !== tensor[i]) differ++;
  t.is(differ, 0);
  seeds.forEach((_, p) => {
    let kept = 0;
    for (let i = 0; i < n; i++) kept += host[p * n + i];
    t.true(Math.abs(kept / n - keeps[p]) < 0.02, `stream ${p}: kept ${kept / n}, expected ${keeps[p]}`);
  });
});

test('same seed, same result; another seed, another result', async (t) => {
  const opts = { features: small.features, dim: small.dim, tasks: small.tasks, epochs: 2, grid: { hidden: [[], [16]], dropout: [0.5], l2: [1e-3] } };
  const a = await trainProbeGrid({ ...opts, seed: 3, keepAllWeights: true });
  const b = await trainProbeGrid({ ...opts, seed: 3, keepAllWeights: true });
  const c = await trainProbeGrid({ ...opts, seed: 4, keepAllWeights: true });
  a.results.forEach((r, i) => {
    r.configs.forEach((cfg, k) => {
      t.is(maxAbsDiff(cfg.net!, b.results[i].configs[k].net!), 0);
      t.deepEqual(cfg.valLoss, b.results[i].configs[k].valLoss);
      t.deepEqual(cfg.testProbabilities, b.results[i].configs[k].testProbabilities);
      t.true(maxAbsDiff(cfg.net!, c.results[i].configs[k].net!) > 1e-4);
    });
  });
});

test('results, selection, table, predict, save/load round trip', async (t) => {
  const progress: number[] = [];
  const manifest = { store: 'unit-test', layers: [36] };
  const set = await trainProbeGrid({
    features: small.features,
    dim: small.dim,
    tasks: small.tasks,
    epochs: 4,
    manifest,
    onProgress: (p) => progress.push(p.epoch),
  });
  t.deepEqual(set.grid.length, 27);
  t.deepEqual(set.grid[0], { hidden: [], dropout: 0.25, l2: 0 });
  t.true(progress.length > 0 && progress.includes(4), 'progress reports epochs');
  for (const r of set.results) {
    t.is(r.configs.length, 27);
    const losses = r.configs.map((c) => c.bestValLoss);
    t.is(r.configs[r.selected].bestValLoss, Math.min(...losses), 'selected = lowest validation loss');
    for (const c of r.configs) {
      t.is(c.valLoss.length, 4);
      t.is(c.bestValLoss, c.valLoss[c.bestEpoch]);
      t.is(c.testProbabilities.length, r.testTargets.length);
    }
    t.truthy(r.linear, 'the grid has linear probes, so the best one is kept');
    t.is(r.linear!.net.layers.length, 1);
  }
  const table = set.table();
  t.is(table.rows.length, 2);
  t.is(table.rows[0].instrument, 'banjo');
  t.true(table.macro.f1Present <= 1 && table.macro.f1PresentAbsent <= 1);

  // Predicting the test rows reproduces the training-time test probabilities of the selected probes.
  const r0 = set.result('cello');
  const rows = small.tasks[1].test.rows;
  const feats = new Float32Array(rows.length * small.dim);
  rows.forEach((row, i) => {
    feats.set(small.features.subarray(row * small.dim, (row + 1) * small.dim), i * small.dim);
  });
  const pred = await set.predict(feats);
  t.deepEqual(pred.instruments, ['banjo', 'cello']);
  t.is(pred.n, rows.length);
  const expected = r0.configs[r0.selected].testProbabilities;
  // Both go through the same blocks of rows (forwardRows in the core): the same bits.
  for (let i = 0; i < rows.length; i++) t.is(pred.probabilities[i * 2 + 1], expected[i]);
  t.is(pred.clips[0].cello.present, pred.clips[0].cello.probability > 0.5);
  const one = await set.predict(feats.subarray(0, small.dim), { instruments: ['cello'] });
  t.is(one.n, 1);
  // A clip's probability does not depend on which clips are predicted with it.
  t.is(one.probabilities[0], pred.probabilities[1]);
  const last = rows.length - 1;
  const tail = await set.predict(feats.subarray(last * small.dim), { instruments: ['cello'] });
  t.is(tail.probabilities[0], pred.probabilities[last * 2 + 1]);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-probes-'));
  const file = path.join(dir, 'sub', 'probes.calmprobes');
  await set.save(file);
  t.deepEqual(fs.readdirSync(path.dirname(file)), ['probes.calmprobes'], 'no temporary file left behind');
  const loaded = await ProbeSet.load(file);
  t.deepEqual(loaded.info, set.info);
  t.deepEqual(loaded.info.manifest, manifest);
  t.deepEqual(loaded.table(), table);
  t.deepEqual(loaded.results[1].configs[5].valLoss, set.results[1].configs[5].valLoss);
  t.is(loaded.info.options.seed, 0);
  t.regex(loaded.info.hashes.features, /^[0-9a-f]{64}$/);
  t.truthy(loaded.info.hashes.tasks.cello.test);
  const again = await loaded.predict(feats);
  t.deepEqual(again.probabilities, pred.probabilities);
  fs.rmSync(dir, { recursive: true, force: true });
});

// A training of (practically) endless epochs that `ac` aborts, with `reason`, once the first epoch is done.
function abortedAfterOneEpoch(ac: AbortController, reason?: unknown) {
  return trainProbeGrid({
    features: small.features,
    dim: small.dim,
    tasks: small.tasks,
    epochs: 100000,
    signal: ac.signal,
    onProgress: (p) => {
      if (p.epoch >= 1) ac.abort(reason);
    },
  });
}

test('an AbortSignal cancels training with AbortError (ERR_ABORTED)', async (t) => {
  const ac = new AbortController();
  const err = await t.throwsAsync(abortedAfterOneEpoch(ac), { instanceOf: AbortError });
  t.is(err!.code, 'ERR_ABORTED');
  await t.throwsAsync(trainProbeGrid({ features: small.features, dim: small.dim, tasks: small.tasks, signal: ac.signal }), { instanceOf: AbortError });
});

test("an aborted training's AbortError has the signal's reason as its cause", async (t) => {
  const reason = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
  const ac = new AbortController();
  const err = await t.throwsAsync(abortedAfterOneEpoch(ac, reason), { instanceOf: AbortError });
  t.is(err!.cause, reason);
  const before = await t.throwsAsync(trainProbeGrid({ features: small.features, dim: small.dim, tasks: small.tasks, signal: ac.signal }), {
    instanceOf: AbortError,
  });
  t.is(before!.cause, reason);
});

test('the paper grid is 3 x 3 x 3', (t) => {
  t.deepEqual(PAPER_GRID.hidden, [[], [512], [512, 256]]);
  t.deepEqual(PAPER_GRID.dropout, [0.25, 0.5, 0.75]);
  t.deepEqual(PAPER_GRID.l2, [0, 1e-4, 1e-3]);
});

// The dropout masks come from one of two builds of the same loop (AVX-512 where the CPU has it, else the x86-64
// baseline); CALMKIT_CPU_BASELINE=1 forces the baseline, so on an AVX-512 machine this compares the two builds.
test('both builds of the dropout kernels train the same grid to the same bits (calmkit-core probe-grid)', (t) => {
  const tool = path.join(__dirname, '..', 'build', 'calmkit-core');
  const runGrid = (baseline: boolean) => {
    const r = spawnSync(tool, ['probe-grid', '--instruments', '2', '--dim', '200', '--clips', '3000', '--scale', '0.3', '--epochs', '2'], {
      encoding: 'utf8',
      env: { ...process.env, CALMKIT_CPU_BASELINE: baseline ? '1' : '0' },
    });
    t.is(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as { dropoutKernel: string; testProbabilitySum: number; probes: number };
  };
  const fast = runGrid(false);
  const base = runGrid(true);
  t.log(`kernels: ${fast.dropoutKernel} vs ${base.dropoutKernel}; test-probability fingerprint ${fast.testProbabilitySum}`);
  t.is(base.dropoutKernel, 'x86-64 baseline');
  t.is(fast.probes, 54);
  t.is(fast.testProbabilitySum, base.testProbabilitySum);
});
