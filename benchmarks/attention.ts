// Attention probes against the paper's mean-pooled probes on the planted problem (test/helpers/planted.ts), under
// the paper's protocol and grids, and what reading segment features from a store costs.
//   npm run bench -- attention [--clips 2000] [--segments 10] [--dim 32] [--instruments 3] [--epochs 200]
//                              [--lr 1e-4] [--strength 3] [--throughout-strength 0.6] [--seeds 1]
//                              [--read-clips 2000] [--read-segments 24] [--read-width 1024]
// Planted: each present instrument is audible in 1 segment of S (the mean dilutes it S-fold), or throughout. The
// mean-pooled side is PAPER_GRID (27 configs: [], [512], [512, 256] x 3 dropouts x 3 L2) on the clip means; the
// attention side is ATTENTION_GRID (18 configs: [128], [512] x the same dropouts and L2) on the segments. Same
// batches of 64, Adam lr, BCE, best epoch and config by validation loss. Printed: macro F1 (present class) of each,
// their difference, training seconds and probes per second.
// Read: a float16 segments store of --read-clips x --read-segments x --read-width, read whole with readSegments in a
// child process; its peak RSS against the size of the float32 matrix it returns shows whether anything is held
// twice.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ATTENTION_GRID, PAPER_GRID, trainProbeGrid, type ProbeSet } from '../lib';
import { FeatureStore } from '../lib/store/feature-store';
import { plantedProblem } from '../test/helpers/planted';
import { machine, mean, parseArgs, peakRss, report } from './harness';

interface Side {
  f1: number;
  seconds: number;
  probes: number;
}

async function side(train: () => Promise<ProbeSet>): Promise<Side> {
  const t0 = process.hrtime.bigint();
  const set = await train();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { f1: set.table().macro.f1Present, seconds, probes: set.results.length * set.grid.length };
}

/** Child mode: read a whole store with readSegments and print the RSS it took. */
function readChild(dir: string): void {
  const store = FeatureStore.open(dir);
  const keys = store.keys();
  const before = process.memoryUsage().rss;
  const t0 = process.hrtime.bigint();
  const m = store.readSegments(keys);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(
    JSON.stringify({ seconds, bytes: m.data.byteLength, rssBefore: before, peakRss: peakRss(), clips: m.clips, segments: m.segments, width: m.width }),
  );
}

async function readBenchmark(clips: number, segments: number, width: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-bench-segments-'));
  try {
    const store = FeatureStore.open(dir, { create: { model: { id: 'bench' }, layers: [36], pooling: 'segments', formatting: 'tile', dtype: 'float16' } });
    const w = store.writer();
    const row = new Float32Array(segments * width);
    for (let c = 0; c < clips; c++) {
      for (let i = 0; i < row.length; i++) row[i] = Math.sin(c * 0.37 + i * 0.011);
      w.put(`clip${String(c).padStart(6, '0')}`, row, [segments, width]);
    }
    w.close();
    const r = spawnSync(process.execPath, ['--import=tsx', __filename, '--read-child', dir], { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (r.status !== 0) throw new Error(`read child failed: ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; bytes: number; rssBefore: number; peakRss: number };
    const onDisk = fs
      .readdirSync(path.join(dir, 'shards'))
      .filter((f) => f.endsWith('.npy'))
      .reduce((a, f) => a + fs.statSync(path.join(dir, 'shards', f)).size, 0);
    return {
      clips,
      segments,
      width,
      storeBytesOnDisk: onDisk,
      matrixBytes: out.bytes,
      seconds: out.seconds,
      rssGrowthBytes: out.peakRss - out.rssBefore,
      rssGrowthOverMatrix: (out.peakRss - out.rssBefore) / out.bytes,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (typeof args['read-child'] === 'string') return readChild(args['read-child']);
  const clips = Number(args.clips ?? 2000);
  const S = Number(args.segments ?? 10);
  const dim = Number(args.dim ?? 32);
  const instruments = Number(args.instruments ?? 3);
  const epochs = Number(args.epochs ?? 200);
  const lr = Number(args.lr ?? 1e-4);
  const seeds = Number(args.seeds ?? 1);
  const cases = [
    { name: `in 1 segment of ${S}`, run: 1, strength: Number(args.strength ?? 3) },
    { name: 'throughout', run: S, strength: Number(args['throughout-strength'] ?? 0.6) },
  ];
  const rows: Record<string, string | number>[] = [];
  const results: Record<string, unknown>[] = [];
  for (const c of cases) {
    const runs: { mean: Side; attention: Side }[] = [];
    for (let seed = 1; seed <= seeds; seed++) {
      const p = plantedProblem({ clips, segments: S, dim, instruments, run: c.run, strength: c.strength, seed });
      const opts = { epochs, lr, seed: 0 };
      const meanSide = await side(() => trainProbeGrid({ ...opts, features: p.means, dim, tasks: p.tasks, grid: PAPER_GRID }));
      const attentionSide = await side(() => trainProbeGrid({ ...opts, features: p.segments, dim, segments: S, tasks: p.tasks, grid: ATTENTION_GRID }));
      runs.push({ mean: meanSide, attention: attentionSide });
    }
    const meanF1 = mean(runs.map((r) => r.mean.f1));
    const attF1 = mean(runs.map((r) => r.attention.f1));
    rows.push({
      instruments: c.name,
      'mean-pooled F1': meanF1.toFixed(3),
      'attention F1': attF1.toFixed(3),
      difference: (attF1 - meanF1 >= 0 ? '+' : '') + (attF1 - meanF1).toFixed(3),
      'mean-pooled s': mean(runs.map((r) => r.mean.seconds)).toFixed(1),
      'attention s': mean(runs.map((r) => r.attention.seconds)).toFixed(1),
    });
    results.push({ case: c.name, run: c.run, strength: c.strength, runs, meanF1, attentionF1: attF1, difference: attF1 - meanF1 });
  }
  const read = await readBenchmark(Number(args['read-clips'] ?? 2000), Number(args['read-segments'] ?? 24), Number(args['read-width'] ?? 1024));
  rows.push({
    instruments: `readSegments: ${read.clips} x ${read.segments} x ${read.width} float16`,
    'mean-pooled F1': `${(read.storeBytesOnDisk / 2 ** 20).toFixed(0)} MiB on disk`,
    'attention F1': `${(read.matrixBytes / 2 ** 20).toFixed(0)} MiB matrix`,
    difference: `RSS +${(read.rssGrowthBytes / 2 ** 20).toFixed(0)} MiB`,
    'mean-pooled s': '',
    'attention s': `${read.seconds.toFixed(2)} s`,
  });
  report(
    'attention',
    {
      machine: machine(),
      problem: { clips, segments: S, dim, instruments, epochs, lr, seeds, batch: 64 },
      grids: { mean: PAPER_GRID, attention: ATTENTION_GRID },
      cases: results,
      read,
    },
    rows,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
