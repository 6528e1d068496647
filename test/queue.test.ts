// The BullMQ scale-out against a real redis-server (Debian's), started here on 127.0.0.1 with a private dir.
import test, { type ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { fileItems, layerDir, resolveSettings, settingsHash } from '../lib/extraction';
import { modelId } from '../lib/model';
import { addJobs, ExtractionWorker, jobIdFor, queueStatus, redisConnection, type QueueJobResult, type QueueStatus } from '../lib/extraction/queue';
import { QueueError } from '../lib/extraction/queue';
import { freePort, makeDataset, RedisServer, runCli, snapshot, spawnCli, tinyModel, waitFor, type CliResult } from './helpers/extract-fixtures';
import { tempDir } from './helpers/paths';

const tmp = tempDir('calmkit-queue-');
const DATA = path.join(tmp, 'data');
const children = new Set<ChildProcess>();
let redis: RedisServer | undefined;

test.after.always(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await redis?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const setup = (async () => {
  redis = new RedisServer(await freePort(), path.join(tmp, 'redis'));
  await redis.start();
  const model = await tinyModel(tmp);
  const ds = await makeDataset(DATA, 10, ['empty', 'text']);
  // The single-process reference the workers must match bit for bit.
  const ref = path.join(tmp, 'reference');
  const r = await runCli(['extract', '--dataset', DATA, '--model', model, '--out', ref, '--layers', '6']);
  if (r.code !== 2) throw new Error(`reference extraction: ${r.stdout}${r.stderr}`);
  return { model, good: ds.good, bad: ds.bad, ref, url: redis.url };
})();

function worker(url: string, model: string, queue: string, store: string, ...more: string[]) {
  const w = spawnCli(['worker', '--redis', url, '--queue', queue, '--model', model, '--store', store, '--progress-seconds', '0', ...more]);
  children.add(w.child);
  return w;
}

async function status(url: string, queue: string): Promise<QueueStatus> {
  return queueStatus({ redis: url, queue, windowMinutes: 10 });
}

async function settled(url: string, queue: string, total: number, timeoutMs = 90_000): Promise<QueueStatus> {
  let s: QueueStatus | undefined;
  await waitFor(
    `${total} jobs settled on ${queue}`,
    async () => {
      s = await status(url, queue);
      return s.counts.completed + s.counts.failed >= total;
    },
    timeoutMs,
    250,
  );
  return s!;
}

async function stopAll(ws: { child: ChildProcess; done: Promise<CliResult> }[]): Promise<CliResult[]> {
  for (const w of ws) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
  return Promise.all(ws.map((w) => w.done));
}

/** Every good clip once in the store, bit-identical to the single-process run, no duplicate entries. */
function matchesReference(t: ExecutionContext, store: string, ref: string, good: string[]) {
  const a = snapshot(layerDir(store, 6));
  const b = snapshot(layerDir(ref, 6));
  t.deepEqual(a.keys, good);
  for (const k of good) t.is(a.bytes.get(k), b.bytes.get(k), `features of ${k}`);
  const v = a.store.verify();
  t.true(v.ok);
  t.is(v.duplicates, 0);
}

function checkFailures(t: ExecutionContext, s: QueueStatus, bad: Record<string, string>) {
  t.is(s.counts.failed, Object.keys(bad).length);
  for (const f of s.failed) {
    const kind = bad[f.key!];
    t.truthy(kind, `failed job ${f.id} is a bad file`);
    t.regex(f.failedReason, kind === 'empty' ? /^ERR_AUDIO_EMPTY: .*is empty/ : /^ERR_AUDIO_DECODE: .*not a readable audio file/);
    t.true(f.failedReason.includes(f.input!));
    // Bad audio is unrecoverable: one attempt, no retries.
    t.is(f.attemptsMade, 1, `${f.key} attempts`);
  }
}

test.serial('3 workers: every clip extracted exactly once, bad files fail with reasons, adding twice adds nothing', async (t) => {
  const { model, good, bad, ref, url } = await setup;
  const q = 'three';
  const store = path.join(tmp, 'store-three');
  const events = new QueueEvents(q, { connection: redisConnection(url) });
  await events.waitUntilReady();
  const completions = new Map<string, number>();
  events.on('completed', ({ jobId }) => completions.set(jobId, (completions.get(jobId) ?? 0) + 1));
  try {
    const add = await runCli(['queue', 'add', '--dataset', DATA, '--model', model, '--redis', url, '--queue', q, '--layers', '6']);
    t.is(add.code, 0, add.stderr);
    t.regex(add.stdout, /added 12 job\(s\), 0 already queued/);
    const again = await runCli(['queue', 'add', '--dataset', DATA, '--model', modelId(model), '--redis', url, '--queue', q, '--layers', '6']);
    t.is(again.code, 0, again.stderr);
    t.regex(again.stdout, /added 0 job\(s\), 12 already queued/);

    // Different micro-batch shapes: batching must not change a single bit.
    const ws = [[], ['--batch', '3', '--concurrency', '4'], ['--batch', '2', '--batch-wait', '50']].map((more) => worker(url, model, q, store, ...more));
    // Graceful stop mid-run: the first worker finishes what it has taken and hands nothing back half-done.
    await waitFor('three completions', async () => (await status(url, q)).counts.completed >= 3, 90_000, 100);
    ws[0]!.child.kill('SIGTERM');
    const first = await ws[0]!.done;
    t.is(first.code, 0, first.stderr);
    t.regex(first.stderr, /stopping: finishing \d+ taken job\(s\)/);
    const s = await settled(url, q, 12);
    const results = [first, ...(await stopAll(ws.slice(1)))];
    for (const r of results) {
      t.is(r.code, 0, r.stderr);
      t.regex(r.stderr, /stopped: \d+ done/);
    }
    const queue = new Queue(q, { connection: redisConnection(url) });
    try {
      t.true(
        (await queue.getJobs(['completed'])).every((j) => j.stalledCounter === 0),
        'no job stalled: the stopped worker finished its own',
      );
    } finally {
      await queue.close();
    }
    t.is(s.counts.completed, 10);
    checkFailures(t, s, bad);
    matchesReference(t, store, ref, good);
    // Exactly once: the workers' own counts of extractions add up to the clips, and each job completed once.
    const extracted = results.reduce((n, r) => {
      const m = /stopped: (\d+) done \((\d+) already stored\)/.exec(r.stderr)!;
      return n + Number(m[1]) - Number(m[2]);
    }, 0);
    t.is(extracted, 10);
    await waitFor('completion events', () => completions.size >= 10, 10_000);
    const hash = settingsHash(resolveSettings({ model: { id: modelId(model) }, layers: [6] }));
    t.deepEqual([...completions.keys()].sort(), good.map((k) => jobIdFor(hash, k)).sort());
    t.true([...completions.values()].every((n) => n === 1));

    const cli = await runCli(['queue', 'status', '--redis', url, '--queue', q, '--json']);
    t.is(cli.code, 0, cli.stderr);
    const js = JSON.parse(cli.stdout) as QueueStatus;
    t.like(js.counts, { waiting: 0, active: 0, completed: 10, failed: 2, delayed: 0 });
    t.is(js.throughput.completed, 10);
    t.is(
      Object.values(js.throughput.byWorker).reduce((n, w) => n + w.completed, 0),
      10,
    );
    const text = await runCli(['queue', 'status', '--redis', url, '--queue', q]);
    t.regex(text.stdout, /0 waiting, 0 active, 10 completed, 2 failed, 0 delayed/);
    for (const key of Object.keys(bad)) t.regex(text.stdout, new RegExp(`${key} \\(.*\\), 1 attempt\\(s\\): ERR_AUDIO_`));
  } finally {
    await events.close();
  }
});

test.serial('a worker SIGKILLed mid-run loses nothing: its jobs go to the others, each clip stored once', async (t) => {
  const { model, good, bad, ref, url } = await setup;
  const q = 'killed';
  const store = path.join(tmp, 'store-killed');
  const add = await runCli(['queue', 'add', '--dataset', DATA, '--model', model, '--redis', url, '--queue', q, '--layers', '6']);
  t.is(add.code, 0, add.stderr);
  const fast = ['--lock-duration', '2000', '--stalled-interval', '1000'];
  const victim = worker(url, model, q, store, ...fast, '--progress-seconds', '1');
  // The victim takes jobs first; kill it once it has finished one and holds more.
  await waitFor('the victim to finish a job', () => /[1-9]\d* done/.test(victim.output()), 60_000, 50);
  const others = [worker(url, model, q, store, ...fast), worker(url, model, q, store, ...fast)];
  const held = (await status(url, q)).counts.active;
  victim.child.kill('SIGKILL');
  t.is((await victim.done).signal, 'SIGKILL');
  const s = await settled(url, q, 12);
  await stopAll(others);
  t.is(s.counts.completed, 10);
  checkFailures(t, s, bad);
  matchesReference(t, store, ref, good);
  // The jobs the victim held were recovered as stalled, not lost (and not failed).
  const queue = new Queue(q, { connection: redisConnection(url) });
  try {
    const jobs = await queue.getJobs(['completed']);
    const recovered = jobs.filter((j) => j.stalledCounter > 0).length;
    t.log(`victim held ${held} active job(s); ${recovered} recovered after stalling`);
    if (held > 0) t.true(recovered >= 1);
    t.true(jobs.every((j) => (j.returnvalue as QueueJobResult).writer !== undefined));
  } finally {
    await queue.close();
  }
});

test.serial('Redis restarted mid-run: workers reconnect and finish', async (t) => {
  const { model, good, bad, ref, url } = await setup;
  const q = 'restart';
  const store = path.join(tmp, 'store-restart');
  const add = await runCli(['queue', 'add', '--dataset', DATA, '--model', model, '--redis', url, '--queue', q, '--layers', '6']);
  t.is(add.code, 0, add.stderr);
  const ws = [
    worker(url, model, q, store, '--lock-duration', '10000', '--stalled-interval', '2000'),
    worker(url, model, q, store, '--lock-duration', '10000', '--stalled-interval', '2000'),
  ];
  await waitFor('two completions', async () => (await status(url, q)).counts.completed >= 2, 60_000, 100);
  await redis!.stop();
  await new Promise((r) => setTimeout(r, 1500));
  await redis!.start();
  const s = await settled(url, q, 12);
  const results = await stopAll(ws);
  for (const r of results) t.is(r.code, 0, r.stderr);
  t.true(
    results.some((r) => /redis: .*\(retrying\)/.test(r.stderr)),
    'a worker noticed the outage',
  );
  t.is(s.counts.completed, 10);
  checkFailures(t, s, bad);
  matchesReference(t, store, ref, good);
});

test.serial('a job whose settings do not match the worker fails with a clear, unretried error', async (t) => {
  const { model, good, url } = await setup;
  const q = 'mismatch';
  const other = path.join(tmp, 'other.pt');
  fs.copyFileSync(model, other);
  fs.appendFileSync(other, Buffer.alloc(16));
  const item = fileItems([path.join(DATA, 'audio', good[0]!.slice(0, 3), `${good[0]}.ogg`)]);
  // A job for another checkpoint (id given, as on a machine without the file) and one at bf16.
  const add1 = await runCli(['queue', 'add', item[0]!.input, '--model', modelId(other), '--redis', url, '--queue', q, '--layers', '6']);
  const add2 = await runCli(['queue', 'add', item[0]!.input, '--model', model, '--redis', url, '--queue', q, '--layers', '6', '--precision', 'bf16']);
  t.is(add1.code, 0, add1.stderr);
  t.is(add2.code, 0, add2.stderr);
  // And a job not made by `queue add`: malformed settings.
  const raw = new Queue(q, { connection: redisConnection(url) });
  await raw.add(
    'extract',
    { v: 1, key: 'odd', input: item[0]!.input, settings: { model: { id: modelId(model) }, pooling: 'max' }, settingsHash: 'x' },
    { jobId: 'odd-job' },
  );
  await raw.close();
  const w = worker(url, model, q, path.join(tmp, 'store-mismatch'));
  const s = await settled(url, q, 3, 60_000);
  await stopAll([w]);
  t.is(s.counts.failed, 3);
  t.regex(
    s.failed.find((f) => f.id === 'odd-job')!.failedReason,
    /^ERR_QUEUE_JOB: job odd-job \(odd\): bad settings: pooling must be mean, segments or none; got 'max'$/,
  );
  const reasons = s.failed.map((f) => f.failedReason).sort();
  t.regex(reasons.find((r) => r.includes('precision'))!, /^ERR_QUEUE_SETTINGS: job .* wants precision bf16, this worker runs fp32$/);
  t.regex(
    reasons.find((r) => r.includes(modelId(other)))!,
    new RegExp(`^ERR_QUEUE_SETTINGS: job .* wants model ${modelId(other)}, this worker serves ${modelId(model)}`),
  );
  t.true(s.failed.every((f) => f.attemptsMade === 1));
});

test.serial('other errors are retried with backoff, a bounded number of times', async (t) => {
  const { model, good, url, ref } = await setup;
  const q = 'retried';
  const input = path.join(DATA, 'audio', good[0]!.slice(0, 3), `${good[0]}.ogg`);
  const add = await runCli(['queue', 'add', input, '--model', model, '--redis', url, '--queue', q, '--layers', '6', '--attempts', '2']);
  t.is(add.code, 0, add.stderr);
  // The store cannot be opened (a file where its shards folder belongs): a system error, not a verdict on the job.
  // The store itself is calmkit's, with the settings' spec (the reference's), so the worker's check of --store at
  // start (lib/cli/outputs.ts) lets it through and the failure comes with the job.
  const store = path.join(tmp, 'blocked-store');
  fs.mkdirSync(path.join(store, 'layer-6'), { recursive: true });
  fs.copyFileSync(path.join(ref, 'layer-6', 'store.json'), path.join(store, 'layer-6', 'store.json'));
  fs.writeFileSync(path.join(store, 'layer-6', 'shards'), '');
  const w = worker(url, model, q, store);
  const s = await settled(url, q, 1, 60_000);
  await stopAll([w]);
  t.is(s.counts.failed, 1);
  t.is(s.failed[0]!.attemptsMade, 2);
  // The store's fs failure is typed since issue 14 (was the raw ENOTDIR); it is still retried.
  t.regex(
    s.failed[0]!.failedReason,
    /^ERR_DATA_STORE_IO: cannot open the feature store at .*blocked-store\/layer-6: a file of that name is in the way of a folder/,
  );
});

test.serial('a worker is disposable like the model: `await using` stops it gracefully at the end of the block', async (t) => {
  const { model, good, url } = await setup;
  const q = 'disposable';
  const items = fileItems([path.join(DATA, 'audio', good[0]!.slice(0, 3), `${good[0]}.ogg`)]);
  const settings = resolveSettings({ model: { id: modelId(model), path: model }, layers: [6], modelLayers: 6 });
  await addJobs({ redis: url, queue: q, items, settings });
  const lines: string[] = [];
  let held: ExtractionWorker | undefined;
  {
    await using worker = await ExtractionWorker.start({
      redis: url,
      queue: q,
      model,
      store: path.join(tmp, 'store-disposable'),
      progressSeconds: 0,
      log: (l) => lines.push(l),
    });
    held = worker;
    await settled(url, q, 1, 60_000);
  }
  t.true(
    lines.some((l) => /stopped: 1 done/.test(l)),
    lines.join('\n'),
  );
  // Disposed: disposing again (or closing) is harmless and reports the same run.
  await held!.dispose();
  t.is((await held!.close()).completed, 1);
  t.is(lines.filter((l) => /stopped:/.test(l)).length, 1);
});

test('one-shot commands fail with ERR_QUEUE_REDIS when Redis cannot be reached', async (t) => {
  const url = `redis://127.0.0.1:${await freePort()}`;
  const err = await t.throwsAsync(queueStatus({ redis: url }), { instanceOf: QueueError });
  t.is(err.code, 'ERR_QUEUE_REDIS');
  t.regex(err.message, new RegExp(`Redis at ${url}.*ECONNREFUSED`));
});

test('redis URLs: bad ones are typed errors naming the URL', (t) => {
  t.like(redisConnection('redis://127.0.0.1:7001/2'), { host: '127.0.0.1', port: 7001, db: 2, maxRetriesPerRequest: null });
  for (const bad of ['127.0.0.1:6379', 'http://127.0.0.1:6379', 'redis://h:1/x']) {
    const err = t.throws(() => redisConnection(bad), { instanceOf: QueueError });
    t.is(err.input, bad);
  }
});
