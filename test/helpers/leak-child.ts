// One process doing each kind of repeated work calmkit does: loadAudio of a clip tiled to 62 s, extractions,
// model loads and probe trainings. After a warm-up, RSS is sampled after every round with no forced GC (as a
// user's process runs): results that died wait for V8's next collection, so RSS saws up and down by up to V8's
// external-memory allowance (about 64 MB: six dead 11 MB clips). Growth is therefore judged window against
// window: the peak and the floor of the last third of the rounds against those of the first third. A leak
// raises both; the saw raises neither. One JSON line per run.
// usage: node --import=tsx leak-child.ts MODEL CLIP.ogg [SCALE]
import { Jukebox, loadAudio, trainProbeGrid } from '../../lib';
import { synthProblem } from './probe-data';

const [model, clip] = process.argv.slice(2);
const scale = Number(process.argv[4] ?? '1');
async function phase(name: string, warmup: number, rounds: number, work: (i: number) => Promise<void>) {
  for (let i = 0; i < warmup; i++) await work(i);
  const rss: number[] = [];
  for (let i = 0; i < rounds; i++) {
    await work(warmup + i);
    rss.push(process.memoryUsage().rss);
  }
  const w = Math.max(1, Math.floor(rounds / 3));
  const first = rss.slice(0, w);
  const last = rss.slice(-w);
  const peak = [Math.max(...first), Math.max(...last)];
  const floor = [Math.min(...first), Math.min(...last)];
  return { name, warmup, rounds, peak, floor, peakGrowth: (peak[1]! - peak[0]!) / peak[0]!, floorGrowth: (floor[1]! - floor[0]!) / floor[0]! };
}

(async () => {
  const results = [];
  results.push(
    await phase('loadAudio 62 s tile', 30, Math.round(300 * scale), async () => {
      const a = await loadAudio(clip!, { formatting: 'tile', targetSeconds: 62 });
      if (a.samples.length !== 62 * 44100) throw new Error('wrong length');
    }),
  );
  const m = await Jukebox.load(model!);
  const input = { samples: new Float32Array(30000).map((_, i) => Math.sin(i / 7) * 0.5), sampleRate: 44100 };
  results.push(
    await phase('extract', 5, Math.round(45 * scale), async () => {
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
