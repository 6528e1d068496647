// One process doing each kind of repeated work calmkit does: loadAudio of a clip tiled to 62 s, extractions,
// model loads and probe trainings. For each phase it prints the resident memory after a warm-up and after the
// measured rounds (both after a full GC, so what remains is what the allocator keeps), as one JSON line.
// usage: node --expose-gc --import=tsx leak-child.ts MODEL CLIP.ogg [SCALE]
import { Jukebox, loadAudio, trainProbeGrid } from '../../lib';
import { synthProblem } from './probe-data';

const [model, clip] = process.argv.slice(2);
const scale = Number(process.argv[4] ?? '1');
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

function rss(): number {
  gc!();
  gc!();
  return process.memoryUsage().rss;
}

async function phase(name: string, warmup: number, rounds: number, work: (i: number) => Promise<void>) {
  for (let i = 0; i < warmup; i++) await work(i);
  const before = rss();
  for (let i = 0; i < rounds; i++) await work(warmup + i);
  const after = rss();
  return { name, warmup, rounds, before, after, growth: (after - before) / before };
}

(async () => {
  const results = [];
  results.push(
    await phase('loadAudio 62 s tile', 20, Math.round(150 * scale), async () => {
      const a = await loadAudio(clip!, { formatting: 'tile', targetSeconds: 62 });
      if (a.samples.length !== 62 * 44100) throw new Error('wrong length');
    }),
  );
  const m = await Jukebox.load(model!);
  const input = { samples: new Float32Array(30000).map((_, i) => Math.sin(i / 7) * 0.5), sampleRate: 44100 };
  results.push(
    await phase('extract', 5, Math.round(40 * scale), async () => {
      await m.extract(input, { layers: [m.info.depth] });
    }),
  );
  m.dispose();
  results.push(
    await phase('Jukebox.load', 5, Math.round(30 * scale), async () => {
      const x = await Jukebox.load(model!);
      x.dispose();
    }),
  );
  const p = synthProblem({ n: 300, dim: 64, seed: 1, tasks: [{ instrument: 'a', flip: 0.1, train: 200, val: 50, test: 50 }] });
  const tasks = p.tasks.map(({ oracleTest: _, ...t }) => t);
  results.push(
    await phase('trainProbeGrid', 3, Math.round(15 * scale), async () => {
      await trainProbeGrid({ features: p.features, dim: p.dim, tasks, grid: { hidden: [[], [32]], dropout: [0.5], l2: [0] }, epochs: 3 });
    }),
  );
  process.stdout.write(`${JSON.stringify(results)}\n`);
})().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
