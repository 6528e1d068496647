// The probe grid search on an OpenMIC-sized synthetic problem: the vectorised grid (probes stacked per
// architecture) against the same protocol trained one config at a time, in the same run.
//
//   npx tsx benchmarks/grid-search.ts [--epochs 1] [--instruments 20] [--dim 4800] [--clips 20000]
//                                     [--only vectorised|one-at-a-time|pytorch|bf16] [--max-stack-bytes N]
//                                     [--bf16 yes|no]   (default yes: also the grid with matmulPrecision 'bf16')
//                                     [--hidden paper|linear|512]   (default paper: [], [512], [512, 256])
//                                     [--reference pytorch|none]
//
// Prints a human table and one `BENCH_JSON {...}` line. Three modes, each the whole protocol (init, balanced sampler, masks,
// per-epoch validation, kept-best weights, test pass) for every probe:
// - vectorised: calmkit's native trainer, probes stacked per architecture;
// - one-at-a-time: the same native trainer with maxProbesPerStack: 1 (isolates what stacking alone buys);
// - vectorised-bf16: the vectorised grid with matmulPrecision 'bf16' (bf16 products, fp32 master weights and Adam);
// - pytorch: benchmarks/reference/probe_grid_eager.py, one config after another in eager PyTorch (nn.Sequential,
//   torch.optim.Adam, BCEWithLogitsLoss) on the same data and threads: the way the study's probes are usually
//   trained. Skipped, and said so, where CALMKIT_PYTHON (default the project's .venv) has no torch.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PAPER_GRID, type MatmulPrecision, type ProbeGrid, type ProbeSet, type ProbeTask, doctor, trainProbeGrid } from '../lib';
import { writeNpy } from '../lib/formats/npy';
import { PYTHON, mean } from './harness';

// OpenMIC-2018 labeled counts per class, positive = relevance >= 0.5 (docs/openmic.md, section 1.5).
const OPENMIC: [string, number, number, number, number][] = [
  ['accordion', 374, 1159, 115, 423],
  ['banjo', 592, 1148, 140, 338],
  ['bass', 415, 1010, 134, 329],
  ['cello', 598, 866, 226, 259],
  ['clarinet', 396, 1349, 137, 503],
  ['cymbals', 814, 485, 297, 139],
  ['drums', 828, 495, 278, 146],
  ['flute', 472, 1050, 175, 387],
  ['guitar', 852, 362, 286, 150],
  ['mallet_percussion', 522, 802, 211, 267],
  ['mandolin', 652, 1185, 193, 434],
  ['organ', 482, 977, 121, 310],
  ['piano', 885, 420, 285, 130],
  ['saxophone', 830, 906, 305, 324],
  ['synthesizer', 823, 399, 268, 112],
  ['trombone', 635, 1405, 228, 492],
  ['trumpet', 828, 1303, 318, 467],
  ['ukulele', 556, 1279, 182, 408],
  ['violin', 779, 623, 394, 237],
  ['voice', 764, 426, 224, 150],
];
const VAL_FRACTION = 0.15;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
}

/**
 * Standard-normal clip features; each instrument scores its clips with its own planted direction plus noise
 * and labels the top `pos` present, so every class has OpenMIC's exact counts and a learnable signal.
 */
function synthesize(instruments: number, dim: number, clips: number, seed: number): { features: Float32Array; tasks: ProbeTask[] } {
  const r = rng(seed);
  const features = new Float32Array(clips * dim);
  for (let i = 0; i < features.length; i++) features[i] = gaussian(r);
  const tasks = OPENMIC.slice(0, instruments).map(([instrument, trPos, trNeg, tePos, teNeg]) => {
    if (trPos + trNeg + tePos + teNeg > clips) throw new Error(`${instrument} needs more than ${clips} clips`);
    const w = Float32Array.from({ length: dim }, () => gaussian(r) / Math.sqrt(dim));
    const order = Int32Array.from({ length: clips }, (_, i) => i);
    for (let i = clips - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const label = (from: number, pos: number, neg: number) => {
      const rows = order.slice(from, from + pos + neg);
      const scored = Array.from(rows, (row) => {
        let s = 0;
        for (let k = 0; k < dim; k++) s += features[row * dim + k] * w[k];
        return { row, s: s + 0.7 * gaussian(r) };
      }).sort((a, b) => b.s - a.s);
      return scored.map((x, i) => ({ row: x.row, y: i < pos ? 1 : 0 }));
    };
    const split = (items: { row: number; y: number }[]) => ({ rows: Int32Array.from(items, (x) => x.row), targets: Uint8Array.from(items, (x) => x.y) });
    const trainAll = label(0, trPos, trNeg);
    // Stratified validation fold: every k-th clip of each class.
    const step = Math.round(1 / VAL_FRACTION);
    const val: typeof trainAll = [];
    const train: typeof trainAll = [];
    let seen = [0, 0];
    for (const x of trainAll) (seen[x.y]++ % step === 0 ? val : train).push(x);
    seen = [0, 0];
    return { instrument, train: split(train), val: split(val), test: split(label(trPos + trNeg, tePos, teNeg)) };
  });
  return { features, tasks };
}

interface Run {
  mode: string;
  seconds: number;
  probes: number;
  stacks: number;
  set?: ProbeSet;
  /** Mean over probes of the kept (best) validation loss: the modes train the same protocol, so these agree. */
  meanBestValLoss: number;
  torch?: string;
}

function meanBestValLoss(set: ProbeSet): number {
  return mean(set.results.flatMap((r) => r.configs.map((c) => c.bestValLoss)));
}

/** The grid in eager PyTorch, one config at a time, on the same features, splits and thread count. */
function runPytorch(features: Float32Array, dim: number, tasks: ProbeTask[], epochs: number, grid: ProbeGrid, threads: number): Run | null {
  if (spawnSync(PYTHON, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status !== 0) {
    process.stderr.write(`  pytorch: skipped, ${PYTHON} has no torch/numpy (set CALMKIT_PYTHON)\n`);
    return null;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-grid-ref-'));
  try {
    writeNpy(path.join(dir, 'features.npy'), features, { dtype: '<f4', shape: [features.length / dim, dim] });
    const part = (s: { rows: Int32Array; targets: Uint8Array }) => ({ rows: Array.from(s.rows), targets: Array.from(s.targets) });
    const problem = {
      dim,
      epochs,
      batchSize: 64,
      lr: 1e-4,
      seed: 7,
      threads,
      grid,
      tasks: tasks.map((t) => ({ instrument: t.instrument, train: part(t.train), val: part(t.val!), test: part(t.test!) })),
    };
    fs.writeFileSync(path.join(dir, 'problem.json'), JSON.stringify(problem));
    const script = path.join(__dirname, 'reference', 'probe_grid_eager.py');
    const res = spawnSync(PYTHON, [script, path.join(dir, 'problem.json'), path.join(dir, 'features.npy'), path.join(dir, 'out.json')], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, OMP_NUM_THREADS: String(threads) },
    });
    if (res.status !== 0) throw new Error(`${script} exited with ${res.status ?? res.signal}`);
    const out = JSON.parse(fs.readFileSync(path.join(dir, 'out.json'), 'utf8')) as {
      seconds: number;
      probes: number;
      torch: string;
      probeResults: { bestValLoss: number }[];
    };
    const meanBestValLoss = mean(out.probeResults.map((r) => r.bestValLoss));
    return { mode: 'pytorch', seconds: out.seconds, probes: out.probes, stacks: out.probes, meanBestValLoss, torch: out.torch };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const HIDDEN: Record<string, number[][]> = { paper: PAPER_GRID.hidden, linear: [[]], '512': [[512]] };

async function run(
  mode: 'vectorised' | 'one-at-a-time' | 'vectorised-bf16',
  features: Float32Array,
  dim: number,
  tasks: ProbeTask[],
  epochs: number,
  grid: ProbeGrid,
  maxStackBytes?: number,
): Promise<Run> {
  const matmulPrecision: MatmulPrecision = mode === 'vectorised-bf16' ? 'bf16' : 'fp32';
  const t0 = process.hrtime.bigint();
  let last = -1;
  const set = await trainProbeGrid({
    features,
    dim,
    tasks,
    grid,
    epochs,
    maxStackBytes,
    maxProbesPerStack: mode === 'one-at-a-time' ? 1 : undefined,
    matmulPrecision,
    onProgress: (p) => {
      const done = Math.floor((100 * (p.probesDone + (p.probes * p.epoch) / p.epochs)) / p.probesTotal);
      if (done >= last + 10) {
        last = done;
        process.stderr.write(`  ${mode}: ${done}% (stack ${p.stack + 1}/${p.stacks})\n`);
      }
    },
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { mode, seconds, probes: set.results.length * set.grid.length, stacks: set.info.training.stacks, set, meanBestValLoss: meanBestValLoss(set) };
}

/** The CPU's native bf16 arithmetic as Linux reports it (avx512_bf16, amx_bf16); [] elsewhere. */
function cpuBf16Flags(): string[] {
  try {
    const flags = new Set(/^flags\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim().split(/\s+/) ?? []);
    return ['avx512_bf16', 'amx_bf16'].filter((f) => flags.has(f));
  } catch {
    return [];
  }
}

function maxDiff(a: ProbeSet, b: ProbeSet): number {
  let m = 0;
  a.results.forEach((r, i) => {
    r.configs.forEach((c, k) => {
      const o = b.results[i].configs[k].testProbabilities;
      c.testProbabilities.forEach((v, j) => {
        m = Math.max(m, Math.abs(v - o[j]));
      });
    });
  });
  return m;
}

async function main(): Promise<void> {
  const epochs = Number(arg('epochs', '1'));
  const instruments = Number(arg('instruments', '20'));
  const dim = Number(arg('dim', '4800'));
  const clips = Number(arg('clips', '20000'));
  const only = arg('only', '');
  const maxStackBytes = process.argv.includes('--max-stack-bytes') ? Number(arg('max-stack-bytes', '0')) : undefined;
  const hiddenName = arg('hidden', 'paper');
  if (!HIDDEN[hiddenName]) throw new Error(`--hidden must be one of ${Object.keys(HIDDEN).join(', ')}`);
  const grid: ProbeGrid = { ...PAPER_GRID, hidden: HIDDEN[hiddenName] };
  const configs = grid.hidden.length * grid.dropout.length * grid.l2.length;

  const d = doctor();
  process.stderr.write(`synthesising ${clips} clips x ${dim} features for ${instruments} instruments...\n`);
  const { features, tasks } = synthesize(instruments, dim, clips, 2024);
  const runs: Run[] = [];
  const withBf16 = arg('bf16', 'yes') !== 'no';
  if (!only || only === 'vectorised' || only === 'bf16') runs.push(await run('vectorised', features, dim, tasks, epochs, grid, maxStackBytes));
  if ((!only && withBf16) || only === 'bf16') runs.push(await run('vectorised-bf16', features, dim, tasks, epochs, grid, maxStackBytes));
  if (!only || only === 'one-at-a-time') runs.push(await run('one-at-a-time', features, dim, tasks, epochs, grid, maxStackBytes));
  if ((!only || only === 'pytorch') && arg('reference', 'pytorch') !== 'none') {
    const ref = runPytorch(features, dim, tasks, epochs, grid, d.threads.count);
    if (ref) runs.push(ref);
  }

  const vec = runs.find((r) => r.mode === 'vectorised');
  const one = runs.find((r) => r.mode === 'one-at-a-time');
  const ref = runs.find((r) => r.mode === 'pytorch');
  const bf16 = runs.find((r) => r.mode === 'vectorised-bf16');
  const bf16VsFp32 = bf16 && vec ? vec.seconds / bf16.seconds : null;
  const bf16VsPytorch = bf16 && ref ? ref.seconds / bf16.seconds : null;
  const macroF1 = (r?: Run) => (r?.set ? r.set.table().macro.f1Present : null);
  const bf16F1Difference = bf16?.set && vec?.set ? macroF1(bf16)! - macroF1(vec)! : null;
  const speedup = vec && one ? one.seconds / vec.seconds : null;
  const speedupVsPytorch = vec && ref ? ref.seconds / vec.seconds : null;
  const sameResults = vec?.set && one?.set ? maxDiff(vec.set, one.set) : null;
  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cpuBf16: cpuBf16Flags(),
    loadAverage1m: os.loadavg()[0],
    threads: d.threads.count,
    blas: d.blas.name,
    torch: d.libtorch.version,
    node: process.version,
    device: vec?.set?.info.training.device ?? one?.set?.info.training.device,
    pytorch: ref?.torch ?? null,
  };
  const pad = (s: string, n: number) => s.padEnd(n);
  console.log('');
  console.log(
    `probe grid search: ${instruments} instruments x ${configs} configs (hidden ${JSON.stringify(grid.hidden)}), ${dim}-d, ${epochs} epoch(s), batch 64, OpenMIC class counts`,
  );
  console.log(`${pad('mode', 18)}${pad('stacks', 8)}${pad('wall s', 10)}${pad('probes/s', 10)}${pad('mean kept val loss', 20)}macro F1 (test, selected)`);
  for (const r of runs) {
    const f1 = macroF1(r);
    console.log(
      `${pad(r.mode, 18)}${pad(String(r.stacks), 8)}${pad(r.seconds.toFixed(1), 10)}${pad((r.probes / r.seconds).toFixed(3), 10)}${pad(r.meanBestValLoss.toFixed(4), 20)}${f1 === null ? '-' : f1.toFixed(4)}`,
    );
  }
  if (speedup !== null)
    console.log(`speed-up over native one-at-a-time: ${speedup.toFixed(2)}x; max |test P difference| between the native modes: ${sameResults}`);
  if (speedupVsPytorch !== null) console.log(`speed-up over PyTorch one-at-a-time: ${speedupVsPytorch.toFixed(2)}x`);
  if (bf16VsFp32 !== null) {
    console.log(
      `bf16 products: ${bf16VsFp32.toFixed(2)}x the fp32 trainer${bf16VsPytorch !== null ? `, ${bf16VsPytorch.toFixed(2)}x eager PyTorch` : ''}; macro F1 bf16 - fp32: ${bf16F1Difference!.toFixed(4)}`,
    );
  }
  console.log(
    `machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.threads} torch threads, ${machine.blas}, LibTorch ${machine.torch}, load ${machine.loadAverage1m.toFixed(1)}`,
  );
  console.log(
    'BENCH_JSON ' +
      JSON.stringify({
        benchmark: 'grid-search',
        time: new Date().toISOString(),
        epochs,
        instruments,
        configs,
        hidden: grid.hidden,
        probes: vec?.probes ?? one?.probes,
        dim,
        clips,
        vectorised: vec ? { seconds: vec.seconds, probesPerSecond: vec.probes / vec.seconds, stacks: vec.stacks, meanBestValLoss: vec.meanBestValLoss } : null,
        oneAtATime: one ? { seconds: one.seconds, probesPerSecond: one.probes / one.seconds, stacks: one.stacks, meanBestValLoss: one.meanBestValLoss } : null,
        bf16: bf16
          ? {
              seconds: bf16.seconds,
              probesPerSecond: bf16.probes / bf16.seconds,
              stacks: bf16.stacks,
              meanBestValLoss: bf16.meanBestValLoss,
              macroF1: macroF1(bf16),
              fp32MacroF1: macroF1(vec),
            }
          : null,
        pytorchOneAtATime: ref ? { seconds: ref.seconds, probesPerSecond: ref.probes / ref.seconds, meanBestValLoss: ref.meanBestValLoss } : null,
        speedup,
        speedupVsPytorch,
        bf16VsFp32,
        bf16VsPytorch,
        bf16F1Difference,
        maxTestProbabilityDifference: sameResults,
        machine,
      }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
