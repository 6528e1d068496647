// A child process that trains a small planted attention grid once and prints a sha256 of everything the run
// produced (every config's validation losses, test probabilities and kept weights). Its process-wide thread count
// comes from its environment (CALMKIT_THREADS); argv: epochs, clips, the byte offset of the features inside a
// larger buffer (a view at an odd place, as a slice of someone else's buffer would be), and the `threads` option
// (0: auto). test/probes-reproducible.test.ts compares the hashes of several such processes.
import crypto from 'node:crypto';
import { trainProbeGrid } from '../../lib';
import { plantedProblem } from './planted';

(async () => {
  const [epochs, clips, offset, threads] = process.argv.slice(2).map(Number);
  const p = plantedProblem({ clips: clips!, segments: 10, dim: 16, instruments: 3, run: 1, strength: 3, seed: 1 });
  const features = new Float32Array(new ArrayBuffer(p.segments.byteLength + 64), offset!, p.segments.length);
  features.set(p.segments);
  const set = await trainProbeGrid({
    features,
    dim: p.dim,
    segments: p.S,
    tasks: p.tasks,
    epochs,
    lr: 1e-3,
    seed: 0,
    threads,
    keepAllWeights: true,
    grid: { hidden: [[32]], dropout: [0.25], l2: [0, 1e-3], attention: true },
  });
  const h = crypto.createHash('sha256');
  const add = (a: ArrayBufferView) => h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  for (const r of set.results) {
    for (const c of r.configs) {
      add(c.valLoss);
      add(c.testProbabilities);
      for (const l of [...c.net!.layers, ...(c.net!.attention ? [c.net!.attention] : [])]) {
        add(l.weight);
        add(l.bias);
      }
    }
  }
  process.stdout.write(`${h.digest('hex')}\n`);
})().catch((e) => {
  process.stderr.write(String(e?.stack ?? e));
  process.exit(1);
});
