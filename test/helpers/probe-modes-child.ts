// A child process that trains the same two 4800-d probes (hidden 512) stacked and one at a time, both with
// `threads: 2`, and prints the largest differences of their test probabilities, validation losses and weights as
// JSON. At this size oneMKL splits a product over two threads when asked to; test/probes-reproducible.test.ts
// runs it in a two-thread process (CALMKIT_THREADS=2).
import { trainProbeGrid, type ProbeSet, type TrainProbeGridOptions } from '../../lib';
import { synthProblem } from './probe-data';

function maxDiff(a: ProbeSet, b: ProbeSet): { probabilities: number; valLoss: number; weights: number } {
  const out = { probabilities: 0, valLoss: 0, weights: 0 };
  const worst = (x: ArrayLike<number>, y: ArrayLike<number>, m: number) => {
    let w = m;
    for (let i = 0; i < x.length; i++) w = Math.max(w, Math.abs(x[i]! - y[i]!));
    return w;
  };
  a.results.forEach((r, i) => {
    r.configs.forEach((c, k) => {
      const o = b.results[i]!.configs[k]!;
      out.probabilities = worst(c.testProbabilities, o.testProbabilities, out.probabilities);
      out.valLoss = worst(c.valLoss, o.valLoss, out.valLoss);
      c.net!.layers.forEach((l, j) => {
        out.weights = worst(l.weight, o.net!.layers[j]!.weight, out.weights);
        out.weights = worst(l.bias, o.net!.layers[j]!.bias, out.weights);
      });
    });
  });
  return out;
}

(async () => {
  const p = synthProblem({ n: 500, dim: 4800, seed: 5, tasks: [{ instrument: 'banjo', flip: 0.1, train: 256, val: 100, test: 128 }] });
  const base: TrainProbeGridOptions = {
    features: p.features,
    dim: p.dim,
    tasks: p.tasks,
    epochs: 2,
    seed: 1,
    threads: 2,
    keepAllWeights: true,
    grid: { hidden: [[512]], dropout: [0.25, 0.5], l2: [0] },
  };
  const stacked = await trainProbeGrid(base);
  const alone = await trainProbeGrid({ ...base, maxProbesPerStack: 1 });
  process.stdout.write(`${JSON.stringify({ stacks: [stacked.info.training.stacks, alone.info.training.stacks], ...maxDiff(stacked, alone) })}\n`);
})().catch((e) => {
  process.stderr.write(String(e?.stack ?? e));
  process.exit(1);
});
