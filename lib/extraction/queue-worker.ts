// The queue's worker (docs/queue.md): `ExtractionWorker` takes jobs, batches them for the model and acknowledges a
// job only after its features (or its failure) are durable in the shared feature store.
//
// Exactly-once results come from two layers: BullMQ gives every job to one worker at a time and hands the
// jobs of a dead worker to another (stalled-job recovery); the store's no-clobber shards and first-shard-wins
// index keep one entry per key even when a job's work is redone after a crash between publish and ack, and a
// worker skips keys the store already holds.
import os from 'node:os';
import crypto from 'node:crypto';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { AudioError, CalmkitError, DataError } from '../errors';
import { Jukebox, modelId, type JukeboxDevice, type PrecisionChoice } from '../model';
import { LayerStores, type LayerWriters } from './layer-stores';
import { modelMismatches, resolveSettings, settingsHash, type ExtractionSettings } from '../recipe';
import { decodeForModel, runModel, type Decoded } from './run';
import { checkQueueName, DEFAULT_QUEUE, redisConnection, type QueueJobData, type QueueJobResult } from './queue-client';

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
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
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
    this.log(
      `worker ${this.id}: model ${o.model} (${this.modelId.slice(0, 24)}...), ${this.model.info.device}/${this.model.info.precision}, batch ${this.batch}, concurrency ${concurrency}, store ${o.store}`,
    );
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
    if (hash !== data.settingsHash)
      throw new UnrecoverableError(`ERR_QUEUE_JOB: job ${job.id} (${data.key}): its settings hash to ${hash}, not the ${data.settingsHash} it names`);
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
      this.log(
        `worker ${this.id}: stopped: ${stats.completed} done (${stats.skipped} already stored), ${stats.failed} failed in ${stats.seconds.toFixed(1)} s (${stats.rate.toFixed(2)} clips/s)`,
      );
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
