// Scale-out of extraction on BullMQ and Redis (docs/queue.md): `addJobs` enqueues one job per clip with a
// deterministic id, `ExtractionWorker` takes jobs, batches them for the model and acknowledges a job only
// after its features (or its failure) are durable in the shared feature store, and `queueStatus` reports.
//
// Exactly-once results come from two layers: BullMQ gives every job to one worker at a time and hands the
// jobs of a dead worker to another (stalled-job recovery); the store's no-clobber shards and first-shard-wins
// index keep one entry per key even when a job's work is redone after a crash between publish and ack, and a
// worker skips keys the store already holds.
import os from 'node:os';
import crypto from 'node:crypto';
import { Queue, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { AudioError, CalmkitError, DataError, QueueError } from '../errors';

export { QueueError };
import { Jukebox, type JukeboxDevice } from '../model/jukebox';
import type { PrecisionChoice } from '../model/options';
import { modelId } from '../model/checkpoint-id';
import { LayerStores, type LayerWriters } from './layer-stores';
import { modelMismatches, resolveSettings, settingsHash, type ExtractionSettings } from '../recipe';
import { decodeForModel, runModel, type Decoded } from './run';
import type { WorkItem } from './work-items';

export const DEFAULT_QUEUE = 'calmkit-extract';


export interface QueueJobData {
  v: 1;
  key: string;
  /** Audio path, as every worker will see it (shared filesystem). */
  input: string;
  settings: ExtractionSettings;
  settingsHash: string;
}

export interface QueueJobResult {
  writer: string;
  /** The store already held the key (redone after a crash, or added twice under another queue). */
  skipped: boolean;
  ms: number;
}

/** BullMQ job ids may not contain ':' (nor be integers); the settings hash prefix rules both out. */
export function jobIdFor(hash: string, key: string): string {
  return `${hash}-${encodeURIComponent(key)}`;
}

export interface RedisOptions {
  /** Upper bound of the reconnect backoff (default 5000 ms). */
  maxBackoffMs?: number;
  /**
   * For one-shot commands (`queue add`, `queue status`): give up after a few reconnects instead of waiting
   * forever, so an unreachable Redis is an error rather than a hang.
   */
  failFast?: boolean;
}

/**
 * ioredis options from a redis:// or rediss:// URL. Commands never fail for lack of a connection
 * (maxRetriesPerRequest null, offline queue on) and reconnection never stops, with capped exponential
 * backoff: a Redis restart only pauses the workers.
 */
export function redisConnection(url: string, options: RedisOptions = {}): ConnectionOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new QueueError('ERR_QUEUE_REDIS_URL', `'${url}' is not a Redis URL (redis://[user:password@]host:port[/db])`, { input: url });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new QueueError('ERR_QUEUE_REDIS_URL', `'${url}': the scheme must be redis:// or rediss://`, { input: url });
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new QueueError('ERR_QUEUE_REDIS_URL', `'${url}': the database must be a non-negative integer`, { input: url });
  const maxBackoff = options.maxBackoffMs ?? 5000;
  const failFast = options.failFast
    ? { maxRetriesPerRequest: 2, connectTimeout: 5000, retryStrategy: (times: number) => (times > 4 ? null : 250 * times) }
    : {};
  return {
    // URL keeps IPv6 literals bracketed; ioredis wants them bare.
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 10), maxBackoff),
    ...failFast,
  };
}

/** Runs `fn` on a Queue for one-shot commands; connection failures become ERR_QUEUE_REDIS naming the URL. */
async function withQueue<T>(url: string, name: string, fn: (queue: Queue) => Promise<T>): Promise<T> {
  const queue = new Queue(checkQueueName(name), { connection: redisConnection(url, { failFast: true }) });
  let lastError: Error | undefined;
  queue.on('error', (err) => (lastError = err));
  try {
    return await fn(queue);
  } catch (err) {
    if (err instanceof CalmkitError) throw err;
    const why = lastError && lastError !== err ? `${(err as Error).message} (${lastError.message})` : (err as Error).message;
    throw new QueueError('ERR_QUEUE_REDIS', `Redis at ${url}, queue '${name}': ${why}`, { input: url, cause: err });
  } finally {
    await queue.close().catch(() => undefined);
  }
}

function checkQueueName(name: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new QueueError('ERR_QUEUE_NAME', `queue name '${name}' may use only letters, digits, '_', '.', '-'`, { input: name });
  return name;
}

// --- adding -----------------------------------------------------------------------------------------------

export interface AddJobsOptions {
  redis: string;
  queue?: string;
  items: readonly WorkItem[];
  settings: ExtractionSettings;
  /** Attempts for errors other than bad audio (default 3), with exponential backoff from `backoffMs` (2000). */
  attempts?: number;
  backoffMs?: number;
  /** Put failed jobs of these keys back to waiting (e.g. after fixing the files). */
  retryFailed?: boolean;
}

export interface AddJobsResult {
  added: number;
  /** Already queued (waiting, active, completed, ...) under the same settings: left alone. */
  existing: number;
  retried: number;
  settingsHash: string;
}

export async function addJobs(options: AddJobsOptions): Promise<AddJobsResult> {
  const hash = settingsHash(options.settings);
  const result: AddJobsResult = { added: 0, existing: 0, retried: 0, settingsHash: hash };
  return withQueue(options.redis, options.queue ?? DEFAULT_QUEUE, async (queue) => {
    const client = await queue.client;
    const CHUNK = 500;
    for (let i = 0; i < options.items.length; i += CHUNK) {
      const chunk = options.items.slice(i, i + CHUNK);
      const ids = chunk.map((it) => jobIdFor(hash, it.key));
      const pipe = client.pipeline();
      for (const id of ids) pipe.runCommand('exists', [queue.toKey(id)]);
      const exists = ((await pipe.exec()) ?? []).map(([, n]) => n === 1);
      const fresh = chunk.filter((_, j) => !exists[j]);
      result.existing += chunk.length - fresh.length;
      // The jobId makes add idempotent even when two `queue add` race: the second add of an id is a no-op.
      await queue.addBulk(
        fresh.map((it) => ({
          name: 'extract',
          data: { v: 1, key: it.key, input: it.input, settings: options.settings, settingsHash: hash } satisfies QueueJobData,
          opts: {
            jobId: jobIdFor(hash, it.key),
            attempts: options.attempts ?? 3,
            backoff: { type: 'exponential', delay: options.backoffMs ?? 2000 },
            // Completed ids stay, so re-adding a dataset is a no-op; failed jobs stay to be inspected.
            removeOnComplete: false,
            removeOnFail: false,
          },
        })),
      );
      result.added += fresh.length;
      if (options.retryFailed) {
        for (let j = 0; j < chunk.length; j++) {
          if (!exists[j]) continue;
          const job = await queue.getJob(ids[j]!);
          if (job && (await job.getState()) === 'failed') {
            await job.retry('failed');
            result.retried++;
          }
        }
      }
    }
    return result;
  });
}

// --- status -----------------------------------------------------------------------------------------------

export interface QueueStatus {
  queue: string;
  counts: { waiting: number; active: number; completed: number; failed: number; delayed: number; prioritized: number; paused: number };
  throughput: { windowMinutes: number; completed: number; perMinute: number; byWorker: Record<string, { completed: number; perMinute: number }> };
  failed: { id: string; key?: string; input?: string; attemptsMade: number; failedReason: string; finishedOn?: number }[];
}

export async function queueStatus(options: { redis: string; queue?: string; windowMinutes?: number; failedLimit?: number }): Promise<QueueStatus> {
  const name = checkQueueName(options.queue ?? DEFAULT_QUEUE);
  return withQueue(options.redis, name, async (queue) => {
    const c = await queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized', 'paused');
    const windowMinutes = options.windowMinutes ?? 5;
    const since = Date.now() - windowMinutes * 60_000;
    let completed = 0;
    const byWorker: Record<string, { completed: number; perMinute: number }> = {};
    // The completed set is ordered by finish time; read newest first until the window is left behind.
    const PAGE = 500;
    for (let start = 0; ; start += PAGE) {
      const jobs = (await queue.getJobs(['completed'], start, start + PAGE - 1, false)).filter(Boolean);
      let older = false;
      for (const job of jobs) {
        if ((job.finishedOn ?? 0) < since) {
          older = true;
          continue;
        }
        completed++;
        const w = (job.returnvalue as QueueJobResult | undefined)?.writer ?? 'unknown';
        byWorker[w] = byWorker[w] ?? { completed: 0, perMinute: 0 };
        byWorker[w].completed++;
      }
      if (older || jobs.length < PAGE) break;
    }
    for (const w of Object.values(byWorker)) w.perMinute = w.completed / windowMinutes;
    const failedJobs = (await queue.getJobs(['failed'], 0, (options.failedLimit ?? 100) - 1, false)).filter(Boolean);
    return {
      queue: name,
      counts: {
        waiting: c.waiting ?? 0,
        active: c.active ?? 0,
        completed: c.completed ?? 0,
        failed: c.failed ?? 0,
        delayed: c.delayed ?? 0,
        prioritized: c.prioritized ?? 0,
        paused: c.paused ?? 0,
      },
      throughput: { windowMinutes, completed, perMinute: completed / windowMinutes, byWorker },
      failed: failedJobs.map((j) => ({
        id: String(j.id),
        key: (j.data as QueueJobData | undefined)?.key,
        input: (j.data as QueueJobData | undefined)?.input,
        attemptsMade: j.attemptsMade,
        failedReason: j.failedReason,
        finishedOn: j.finishedOn,
      })),
    };
  });
}

// --- the worker -------------------------------------------------------------------------------------------

export interface WorkerOptions {
  redis: string;
  queue?: string;
  /** Checkpoint file; jobs must name its id. */
  model: string;
  device?: JukeboxDevice;
  /** `auto` resolves when the model loads; jobs must ask for the precision it resolved to. */
  precision?: PrecisionChoice;
  /** Store root: features go to `<store>/layer-<L>/`, as with `calmkit extract --out`. */
  store: string;
  /** Clips per forward pass (default 1 on cpu, 8 otherwise). */
  batch?: number;
  /** Jobs held at once (default 2 x batch: one batch in the model, the next one decoding). */
  concurrency?: number;
  /** How long a partial batch waits for more jobs (default 200 ms). */
  batchWaitMs?: number;
  /** A job's lock lives this long without renewal (default 60 s); the worker renews it every half of it. */
  lockDurationMs?: number;
  /** How often this worker looks for stalled jobs of dead workers (default 30 s). */
  stalledIntervalMs?: number;
  /** Stalls a job may survive before it fails (default 2). */
  maxStalledCount?: number;
  writerId?: string;
  /** Plain progress lines (default: stderr). */
  log?: (line: string) => void;
  /** Seconds between progress lines (default 10; 0 disables them). */
  progressSeconds?: number;
}

export interface WorkerStats {
  id: string;
  completed: number;
  skipped: number;
  failed: number;
  seconds: number;
  /** Clips per second since the worker started taking jobs. */
  rate: number;
}

interface Pending {
  job: Job;
  data: QueueJobData;
  decoded: Promise<Decoded>;
  since: number;
  resolve: (r: QueueJobResult) => void;
  reject: (e: Error) => void;
}

interface Group {
  settings: ExtractionSettings;
  stores: LayerStores;
  writers: LayerWriters;
  pending: Pending[];
}

function writerIdDefault(): string {
  return `${os.hostname().replace(/[^A-Za-z0-9_.]/g, '_')}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
}

function validJobData(d: unknown): d is QueueJobData {
  const x = d as QueueJobData;
  return !!x && x.v === 1 && typeof x.key === 'string' && x.key !== '' && typeof x.input === 'string' && !!x.settings && typeof x.settingsHash === 'string';
}

export class ExtractionWorker {
  readonly id: string;
  readonly modelId: string;
  private readonly opts: WorkerOptions;
  private readonly model: Jukebox;
  private readonly batch: number;
  private readonly batchWaitMs: number;
  private readonly log: (line: string) => void;
  private readonly groups = new Map<string, Group>();
  private worker!: Worker;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  private closing: Promise<WorkerStats> | undefined;
  private stopping = false;
  private readonly started = Date.now();
  private readonly stats = { completed: 0, skipped: 0, failed: 0 };
  private readonly recent: number[] = [];
  private redisDown = false;

  private constructor(opts: WorkerOptions, model: Jukebox, id: string, mid: string) {
    this.opts = opts;
    this.model = model;
    this.id = id;
    this.modelId = mid;
    // Batching pays on a GPU; on a CPU the forward pass is already compute-bound per clip.
    this.batch = opts.batch ?? (model.info.device.startsWith('cuda') ? 8 : 1);
    this.batchWaitMs = opts.batchWaitMs ?? 200;
    this.log = opts.log ?? ((line) => process.stderr.write(line + '\n'));
  }

  /** Loads the model, then starts taking jobs. */
  static async start(opts: WorkerOptions): Promise<ExtractionWorker> {
    const mid = modelId(opts.model);
    const model = await Jukebox.load(opts.model, { device: opts.device, precision: opts.precision });
    const id = opts.writerId ?? writerIdDefault();
    const w = new ExtractionWorker(opts, model, id, mid);
    w.run();
    return w;
  }

  private run(): void {
    const o = this.opts;
    const concurrency = o.concurrency ?? 2 * this.batch;
    this.worker = new Worker(checkQueueName(o.queue ?? DEFAULT_QUEUE), (job) => this.process(job), {
      connection: redisConnection(o.redis),
      concurrency,
      lockDuration: o.lockDurationMs ?? 60_000,
      stalledInterval: o.stalledIntervalMs ?? 30_000,
      maxStalledCount: o.maxStalledCount ?? 2,
      name: this.id,
    });
    this.worker.on('error', (err) => {
      // ioredis reports every failed reconnect; one line per outage is enough.
      if (!this.redisDown) this.log(`worker ${this.id}: redis: ${err.message} (retrying)`);
      this.redisDown = true;
    });
    this.worker.on('ready', () => {
      if (this.redisDown) this.log(`worker ${this.id}: redis: reconnected`);
      this.redisDown = false;
    });
    this.worker.on('failed', (job, err) => {
      if (job) this.log(`worker ${this.id}: job ${job.id} (${(job.data as QueueJobData)?.key}) failed: ${err.message}`);
    });
    const every = (o.progressSeconds ?? 10) * 1000;
    if (every > 0) this.progressTimer = setInterval(() => this.log(this.progressLine()), every).unref();
    this.log(`worker ${this.id}: model ${o.model} (${this.modelId.slice(0, 24)}...), ${this.model.info.device}/${this.model.info.precision}, batch ${this.batch}, concurrency ${concurrency}, store ${o.store}`);
  }

  private progressLine(): string {
    const now = Date.now();
    while (this.recent.length && this.recent[0]! < now - 60_000) this.recent.shift();
    const window = Math.min(60, (now - this.started) / 1000);
    return `worker ${this.id}: ${this.stats.completed} done (${this.stats.skipped} already stored), ${this.stats.failed} failed; ${(this.recent.length / Math.max(window, 1e-3)).toFixed(2)} clips/s over the last ${Math.round(window)} s`;
  }

  getStats(): WorkerStats {
    const seconds = (Date.now() - this.started) / 1000;
    return { id: this.id, ...this.stats, seconds, rate: this.stats.completed / Math.max(seconds, 1e-3) };
  }

  private group(data: QueueJobData): Group {
    let g = this.groups.get(data.settingsHash);
    if (!g) {
      const stores = LayerStores.open(this.opts.store, data.settings, { create: true });
      g = { settings: data.settings, stores, writers: stores.writers({ id: this.id }), pending: [] };
      this.groups.set(data.settingsHash, g);
    }
    return g;
  }

  private async process(job: Job): Promise<QueueJobResult> {
    try {
      return await this.processOne(job);
    } catch (err) {
      // Failures of batched jobs are counted where they are decided (runBatch); these are the early ones.
      if (!(err as { counted?: boolean }).counted) this.stats.failed++;
      throw err;
    }
  }

  private async processOne(job: Job): Promise<QueueJobResult> {
    const t0 = Date.now();
    const data = job.data as unknown;
    if (!validJobData(data)) throw new UnrecoverableError(`ERR_QUEUE_JOB: job ${job.id} is not a calmkit extraction job (v1)`);
    let settings: ExtractionSettings;
    try {
      // Re-resolving is the identity on well-formed settings and rejects anything else.
      settings = resolveSettings(data.settings);
    } catch (err) {
      throw new UnrecoverableError(`ERR_QUEUE_JOB: job ${job.id} (${data.key}): bad settings: ${(err as Error).message}`);
    }
    const hash = settingsHash(settings);
    if (hash !== data.settingsHash) throw new UnrecoverableError(`ERR_QUEUE_JOB: job ${job.id} (${data.key}): its settings hash to ${hash}, not the ${data.settingsHash} it names`);
    const mismatch = modelMismatches(settings, { id: this.modelId, precision: this.model.info.precision, depth: this.model.info.depth }).map((m) =>
      m.field === 'model'
        ? `model ${m.wanted}${settings.model.path ? ` (${settings.model.path})` : ''}, this worker serves ${m.has} (${this.opts.model})`
        : m.field === 'precision'
          ? `precision ${m.wanted}, this worker runs ${m.has}`
          : `${m.wanted}, the model has ${m.has}`,
    );
    if (mismatch.length) throw new UnrecoverableError(`ERR_QUEUE_SETTINGS: job ${job.id} (${data.key}) wants ${mismatch.join('; ')}`);
    let g: Group;
    try {
      g = this.group({ ...data, settings });
    } catch (err) {
      // A store with other settings (or a corrupt one) stays so; a system error (a shared filesystem that is
      // briefly away; typed ERR_DATA_STORE_IO by the store) may not, and gets the job's bounded attempts.
      const e = err as { code?: string; message: string };
      const reason = `${e.code ?? 'ERR_INTERNAL'}: ${e.message}`;
      const transient = !(err instanceof CalmkitError) || err.code === 'ERR_DATA_STORE_IO';
      throw transient ? new Error(reason) : new UnrecoverableError(reason);
    }
    if (g.stores.has(data.key)) {
      this.done(true);
      return { writer: this.id, skipped: true, ms: Date.now() - t0 };
    }
    return new Promise<QueueJobResult>((resolve, reject) => {
      g.pending.push({
        job,
        data,
        // Decoding starts now, while earlier batches run through the model.
        decoded: decodeForModel({ key: data.key, input: data.input }, settings, this.model),
        since: Date.now(),
        resolve: (r) => resolve({ ...r, ms: Date.now() - t0 }),
        reject,
      });
      this.pump();
    });
  }

  private done(skipped: boolean): void {
    this.stats.completed++;
    if (skipped) this.stats.skipped++;
    const now = Date.now();
    this.recent.push(now);
    while (this.recent[0]! < now - 60_000) this.recent.shift();
  }

  /** Runs ready batches one after another: a full batch, one that waited batchWaitMs, or anything when closing. */
  private pump(): void {
    if (this.running) return;
    const now = Date.now();
    let ready: Group | undefined;
    let wake = Infinity;
    for (const g of this.groups.values()) {
      if (g.pending.length === 0) continue;
      const due = g.pending[0]!.since + this.batchWaitMs;
      if (g.pending.length >= this.batch || due <= now || this.stopping) {
        ready = g;
        break;
      }
      wake = Math.min(wake, due);
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!ready) {
      if (wake < Infinity) this.timer = setTimeout(() => this.pump(), wake - now);
      return;
    }
    this.running = true;
    const take = ready.pending.splice(0, this.batch);
    void this.runBatch(ready, take).finally(() => {
      this.running = false;
      this.pump();
    });
  }

  private async runBatch(g: Group, batch: Pending[]): Promise<void> {
    try {
      // Another worker may have stored some of these since they were taken (a redo after a stall).
      g.stores.refresh();
      const todo: Pending[] = [];
      for (const p of batch) {
        if (g.stores.has(p.data.key)) {
          this.done(true);
          p.resolve({ writer: this.id, skipped: true, ms: 0 });
        } else todo.push(p);
      }
      if (todo.length === 0) return;
      const decoded = await Promise.all(todo.map((p) => p.decoded));
      const results = await runModel(this.model, decoded, g.settings);
      const outcome: { p: Pending; error?: CalmkitError }[] = [];
      results.forEach((r, i) => {
        const p = todo[i]!;
        if ('error' in r) {
          g.writers.fail(p.data.key, { input: p.data.input, code: r.error.code, message: r.error.message });
          outcome.push({ p, error: r.error });
        } else {
          g.writers.put(p.data.key, r.layers);
          outcome.push({ p });
        }
      });
      // Acknowledge only what is durable: the shards (and failure records) are published before any job resolves.
      g.writers.flush();
      for (const { p, error } of outcome) {
        if (!error) {
          this.done(false);
          p.resolve({ writer: this.id, skipped: false, ms: 0 });
          continue;
        }
        this.stats.failed++;
        const reason = `${error.code}: ${error.message}`;
        // Bad audio stays bad: no retries. Anything else (I/O, the device) gets the job's bounded attempts.
        const e = error instanceof AudioError || error instanceof DataError ? new UnrecoverableError(reason) : new Error(reason);
        (e as { counted?: boolean }).counted = true;
        p.reject(e);
      }
    } catch (err) {
      const e = err as CalmkitError;
      const reason = `${e.code ?? 'ERR_INTERNAL'}: ${e.message}`;
      for (const p of batch) p.reject(Object.assign(new Error(reason), { counted: true }));
      this.stats.failed += batch.length;
    }
  }

  /**
   * Stops taking jobs, finishes the jobs already taken (partial batches run at once), publishes and closes
   * the stores, and disconnects. Safe to call more than once.
   */
  close(): Promise<WorkerStats> {
    if (this.closing) return this.closing;
    this.stopping = true;
    this.closing = (async () => {
      this.log(`worker ${this.id}: stopping: finishing ${[...this.groups.values()].reduce((n, g) => n + g.pending.length, 0)} taken job(s)`);
      const closed = this.worker.close();
      this.pump();
      await closed;
      if (this.timer) clearTimeout(this.timer);
      if (this.progressTimer) clearInterval(this.progressTimer);
      for (const g of this.groups.values()) g.writers.close({ manifest: true });
      this.model.dispose();
      const stats = this.getStats();
      this.log(`worker ${this.id}: stopped: ${stats.completed} done (${stats.skipped} already stored), ${stats.failed} failed in ${stats.seconds.toFixed(1)} s (${stats.rate.toFixed(2)} clips/s)`);
      return stats;
    })();
    return this.closing;
  }

  /** close() without the stats: what `await using worker = await ExtractionWorker.start(...)` calls at the end. */
  async dispose(): Promise<void> {
    await this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
