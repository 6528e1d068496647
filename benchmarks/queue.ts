// `npm run bench -- queue [--clips N] [--workers 1,2,4] [--threads T]`: extraction throughput through the BullMQ
// queue with 1, 2 and 4 CPU worker processes on the tiny model, against direct single-process extraction,
// and the queue's own cost per job (jobs whose key is already stored: fetch, lock, store check, ack).
//
// Throughput is measured from the jobs' own timestamps (first processedOn to last finishedOn of the measured
// jobs, added after each worker has run two warm-up jobs), so worker start-up and first-pass costs are not
// counted; direct extraction is timed around extractToStore after a two-clip warm-up.
// A private redis-server (AOF fsync always, as in the tests) runs on 127.0.0.1 for the duration.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Jukebox } from '../lib/model/jukebox';
import { datasetItems, extractToStore, fileItems, LayerStores, resolveSettings } from '../lib/extraction';
import { modelId } from '../lib/model';
import { addJobs, redisConnection } from '../lib/extraction/queue';
import { freePort, makeDataset, RedisServer, spawnCli, tinyModel, waitFor } from '../test/helpers/extract-fixtures';
import { machine, parseArgs, report } from './harness';

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const clips = Number(args.clips ?? 24);
  const workerCounts = String(args.workers ?? '1,2,4')
    .split(',')
    .map(Number);
  const threads = String(args.threads ?? '1');
  // Each worker process gets `threads` model threads; so does the direct run (set before the addon loads).
  process.env.CALMKIT_THREADS = threads;
  const env = { ...process.env, CALMKIT_THREADS: threads, CALMKIT_PLAIN_PROGRESS: '1' };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-bench-queue-'));
  const redis = new RedisServer(await freePort(), path.join(tmp, 'redis'));
  const children: ReturnType<typeof spawnCli>[] = [];
  try {
    await redis.start();
    const model = await tinyModel(tmp);
    const data = path.join(tmp, 'data');
    await makeDataset(data, clips, [], 2);
    const items = datasetItems(data);
    const jb = await Jukebox.load(model);
    const settings = resolveSettings({ model: { id: modelId(model), path: model, preset: 'tiny' }, modelLayers: jb.info.depth, layers: [6] });

    // Direct: one process, extractToStore (decode overlapped with the model), same settings and threads.
    const directOut = path.join(tmp, 'direct');
    await extractToStore({ model: jb, items: items.slice(0, 2), stores: LayerStores.open(path.join(tmp, 'warm'), settings, { create: true }), settings });
    const t0 = process.hrtime.bigint();
    const direct = await extractToStore({ model: jb, items, stores: LayerStores.open(directOut, settings, { create: true }), settings });
    const directSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    jb.dispose();
    if (direct.done !== clips) throw new Error(`direct run extracted ${direct.done} of ${clips}`);

    const rows: Record<string, string | number>[] = [
      {
        mode: 'direct (1 process)',
        workers: 1,
        clips,
        seconds: directSeconds.toFixed(2),
        'clips/s': (clips / directSeconds).toFixed(2),
        speedup: '1.00',
        'ms/clip': ((1000 * directSeconds) / clips).toFixed(1),
      },
    ];
    const result: Record<string, unknown> = {
      machine: machine(),
      clips,
      threadsPerWorker: Number(threads),
      model: 'tiny',
      formatting: 'tile',
      direct: { seconds: directSeconds, clipsPerSecond: clips / directSeconds },
    };

    // Only the measured jobs count (not the warm-up ones), from the first start to the last finish.
    const span = async (queue: string) => {
      const q = new Queue(queue, { connection: redisConnection(redis.url) });
      try {
        const jobs = (await q.getJobs(['completed'])).filter((j) => !String(j.data.key).startsWith('warm-'));
        const start = Math.min(...jobs.map((j) => j.processedOn ?? Infinity));
        const end = Math.max(...jobs.map((j) => j.finishedOn ?? 0));
        return { jobs: jobs.length, seconds: (end - start) / 1000 };
      } finally {
        await q.close();
      }
    };
    // Workers start, then run 2 warm-up jobs each (first forward passes are slow), then the measured jobs
    // are added all at once.
    const runWorkers = async (queue: string, n: number, store: string) => {
      const warmDir = path.join(tmp, `warm-${queue}`);
      fs.mkdirSync(warmDir, { recursive: true });
      const warm = Array.from({ length: 2 * n }, (_, i) => {
        const file = path.join(warmDir, `warm-${i}${path.extname(items[i % items.length]!.input)}`);
        fs.copyFileSync(items[i % items.length]!.input, file);
        return file;
      });
      await addJobs({ redis: redis.url, queue, items: fileItems(warm), settings });
      const ws = Array.from({ length: n }, () =>
        spawnCli(['worker', '--redis', redis.url, '--queue', queue, '--model', model, '--store', store, '--progress-seconds', '0'], env),
      );
      children.push(...ws);
      const q = new Queue(queue, { connection: redisConnection(redis.url) });
      try {
        await waitFor(`${queue} warmed up`, async () => (await q.getJobCounts('completed')).completed >= warm.length, 600_000, 100);
        await addJobs({ redis: redis.url, queue, items, settings });
        await waitFor(`${queue} drained`, async () => (await q.getJobCounts('completed')).completed >= warm.length + clips, 600_000, 100);
      } finally {
        await q.close();
      }
      for (const w of ws) w.child.kill('SIGTERM');
      await Promise.all(ws.map((w) => w.done));
      return span(queue);
    };

    const scaling: Record<string, unknown>[] = [];
    let oneWorker = 0;
    for (const n of workerCounts) {
      const queue = `bench-${n}`;
      const s = await runWorkers(queue, n, path.join(tmp, `store-${n}`));
      if (n === 1) oneWorker = s.seconds;
      scaling.push({ workers: n, seconds: s.seconds, clipsPerSecond: clips / s.seconds });
      rows.push({
        mode: 'queue',
        workers: n,
        clips,
        seconds: s.seconds.toFixed(2),
        'clips/s': (clips / s.seconds).toFixed(2),
        speedup: oneWorker ? (oneWorker / s.seconds).toFixed(2) : '-',
        'ms/clip': ((1000 * s.seconds) / clips).toFixed(1),
      });
    }
    result.scaling = scaling;

    // Queue overhead alone: every key is already in the store, so a job is fetch + lock + store check + ack.
    const noop = 'bench-noop';
    const ns = await runWorkers(noop, 1, directOut);
    const perJobMs = (1000 * ns.seconds) / clips;
    const oneWorkerMs = oneWorker ? (1000 * oneWorker) / clips : NaN;
    const directMs = (1000 * directSeconds) / clips;
    result.overhead = { noopJobMs: perJobMs, queueMinusDirectMsPerClip: oneWorkerMs - directMs };
    rows.push({
      mode: 'queue, no-op jobs',
      workers: 1,
      clips,
      seconds: ns.seconds.toFixed(2),
      'clips/s': (clips / ns.seconds).toFixed(1),
      speedup: '-',
      'ms/clip': perJobMs.toFixed(1),
    });
    report('queue', result, rows);
    console.log(`queue overhead: ${perJobMs.toFixed(1)} ms per no-op job; 1 queue worker vs direct: ${(oneWorkerMs - directMs).toFixed(1)} ms per clip`);
  } finally {
    for (const w of children) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await redis.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
