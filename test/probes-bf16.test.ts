// The probe grid's bf16 mode (matmulPrecision 'bf16', native/core/probes.h MatmulPrecision): bf16 operands in the
// training steps' products, fp32 everywhere else. It trains to the fp32 grid's quality on a planted problem, leaves
// the default fp32 arithmetic as it was, is recorded in the probe set, and refuses unknown values. Both of its CPU
// product kernels (oneMKL's bf16 GEMM where LibTorch carries it, the fp32 GEMM on bf16-rounded operands
// elsewhere) are exercised, so this passes, slowly or not, on CPUs without native bf16.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ArgumentError, ProbeSet, trainProbeGrid, type ProbeGrid, type TrainProbeGridOptions } from '../lib';
import { binding } from '../bindings';
import { plantedProblem } from './helpers/planted';

// Instruments audible throughout the clip, learnable but not perfectly (macro F1 0.6-0.99), so a worse trainer
// shows. dim 96 and hidden 64 take both weight-gradient paths of the CPU step (fused blocks, here one partial
// block, and the whole-gradient product of the narrow output layer).
const PROBLEM = plantedProblem({ clips: 3000, segments: 4, dim: 96, instruments: 3, run: 4, strength: 1.0, seed: 5 });
const MLP_GRID: ProbeGrid = { hidden: [[], [64]], dropout: [0.25], l2: [0, 1e-3] };
const ATTENTION_GRID: ProbeGrid = { hidden: [[64]], dropout: [0.25], l2: [0, 1e-3], attention: true };
const TRAIN = { epochs: 40, lr: 1e-3, seed: 2 } as const;

function mlp(extra: Partial<TrainProbeGridOptions> = {}) {
  return trainProbeGrid({ ...TRAIN, features: PROBLEM.means, dim: PROBLEM.dim, tasks: PROBLEM.tasks, grid: MLP_GRID, ...extra });
}

function attention(extra: Partial<TrainProbeGridOptions> = {}) {
  return trainProbeGrid({ ...TRAIN, features: PROBLEM.segments, dim: PROBLEM.dim, segments: PROBLEM.S, tasks: PROBLEM.tasks, grid: ATTENTION_GRID, ...extra });
}

const f1 = (set: ProbeSet) => set.table().macro.f1Present;

test("bf16 products train the grid to the fp32 grid's macro F1 within 0.01 (MLP and attention probes, per-probe and batched steps)", async (t) => {
  const cases: [string, () => Promise<ProbeSet>, () => Promise<ProbeSet>][] = [
    ['MLP, CPU step', () => mlp(), () => mlp({ matmulPrecision: 'bf16' })],
    ['MLP, batched step', () => mlp({ batchedStep: true }), () => mlp({ batchedStep: true, matmulPrecision: 'bf16' })],
    ['attention, CPU step', () => attention(), () => attention({ matmulPrecision: 'bf16' })],
  ];
  for (const [name, fp32Run, bf16Run] of cases) {
    const fp32 = await fp32Run();
    const bf16 = await bf16Run();
    t.log(`${name}: macro F1 fp32 ${f1(fp32).toFixed(4)}, bf16 ${f1(bf16).toFixed(4)}`);
    t.true(f1(fp32) > 0.6 && f1(fp32) < 0.99, `${name}: the problem must be neither hopeless nor trivial (fp32 F1 ${f1(fp32)})`);
    t.true(Math.abs(f1(bf16) - f1(fp32)) <= 0.01, `${name}: bf16 ${f1(bf16)} vs fp32 ${f1(fp32)}`);
    // The products really were bf16: some test probability moved.
    const moved = bf16.results.some((r, i) =>
      r.configs.some((c, k) => c.testProbabilities.some((p, j) => p !== fp32.results[i]!.configs[k]!.testProbabilities[j])),
    );
    t.true(moved, `${name}: bf16 gave the fp32 bits`);
  }
});

test('without the option the grid trains in fp32, bit for bit as an explicit fp32 run; the precision is recorded and saved', async (t) => {
  const byDefault = await mlp({ keepAllWeights: true });
  const fp32 = await mlp({ keepAllWeights: true, matmulPrecision: 'fp32' });
  t.is(byDefault.info.options.matmulPrecision, 'fp32');
  byDefault.results.forEach((r, i) => {
    r.configs.forEach((c, k) => {
      const o = fp32.results[i]!.configs[k]!;
      t.deepEqual(c.testProbabilities, o.testProbabilities);
      t.deepEqual(c.valLoss, o.valLoss);
      t.deepEqual(c.net, o.net);
    });
  });
  const bf16 = await mlp({ epochs: 2, matmulPrecision: 'bf16' });
  t.is(bf16.info.options.matmulPrecision, 'bf16');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-bf16-'));
  try {
    const file = path.join(dir, 'probes.calmkit-probes.json');
    await bf16.save(file);
    t.is((await ProbeSet.load(file)).info.options.matmulPrecision, 'bf16');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an unknown matmulPrecision is a typed error naming the option, in the library and in the native core', async (t) => {
  for (const bad of ['fp16', 'BF16', 7]) {
    await t.throwsAsync(mlp({ matmulPrecision: bad as 'bf16' }), {
      instanceOf: ArgumentError,
      code: 'ERR_INVALID_ARGUMENT',
      message: /matmulPrecision must be fp32 or bf16/,
    });
  }
  const task = PROBLEM.tasks[0]!;
  const raw = () =>
    binding().trainProbeGrid(
      PROBLEM.means,
      PROBLEM.dim,
      [task],
      [{ hidden: [], dropout: 0.25, l2: 0 }],
      { epochs: 1, matmulPrecision: 'tf32' },
      binding().control(),
    );
  t.throws(raw, { code: 'ERR_INVALID_ARGUMENT', message: /matmulPrecision must be 'fp32' or 'bf16'; got 'tf32'/ });
});

// The CPU step's bf16 products come from oneMKL's bf16 GEMM (operands passed by layout: plain, transposed, copied)
// or, with CALMKIT_CPU_BASELINE=1 or without oneMKL, from fp32 GEMMs of the widened operands: the same products,
// summed in another order. After one epoch the two runs agree to rounding; a wrong layout or leading dimension
// would not.
test('both bf16 product kernels train the same grid (calmkit-core probe-grid)', (t) => {
  const tool = path.join(__dirname, '..', 'build', 'calmkit-core');
  const runGrid = (baseline: boolean, precision: string) => {
    const r = spawnSync(
      tool,
      ['probe-grid', '--instruments', '2', '--dim', '600', '--clips', '3000', '--scale', '0.1', '--epochs', '1', '--matmul-precision', precision],
      {
        encoding: 'utf8',
        env: { ...process.env, CALMKIT_CPU_BASELINE: baseline ? '1' : '0' },
      },
    );
    t.is(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as { bf16Gemm: string; matmulPrecision: string; testProbabilitySum: number; probes: number };
  };
  const fast = runGrid(false, 'bf16');
  const base = runGrid(true, 'bf16');
  const fp32 = runGrid(false, 'fp32');
  t.log(
    `kernels: ${fast.bf16Gemm} vs ${base.bf16Gemm}; fingerprints ${fast.testProbabilitySum} vs ${base.testProbabilitySum} (fp32 ${fp32.testProbabilitySum})`,
  );
  t.is(base.bf16Gemm, 'fp32 gemm on bf16-rounded operands');
  t.is(fast.matmulPrecision, 'bf16');
  t.is(fast.probes, 54);
  // The sum of every probe's test probabilities (~1,400 here; 600-d takes three gradient blocks of the bf16 step,
  // one partial): measured 8e-5 apart between the kernels, 1.1e-2 between bf16 and fp32.
  const kernels = Math.abs(fast.testProbabilitySum - base.testProbabilitySum);
  const precisions = Math.abs(fast.testProbabilitySum - fp32.testProbabilitySum);
  t.true(kernels < 2e-3, `kernels ${kernels} apart`);
  t.true(10 * kernels < precisions, `kernels ${kernels} apart, bf16 and fp32 ${precisions}`);
});
