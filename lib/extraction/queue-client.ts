// The queue's client side (docs/queue.md): the job format and its deterministic ids, the Redis connection,
// `addJobs` (one job per clip) and `queueStatus`. What a worker does with the jobs is queue-worker.ts.
import { Queue, type ConnectionOptions } from 'bullmq';
import { CalmkitError, QueueError } from '../errors';
import { settingsHash, type ExtractionSettings } from '../recipe';
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
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new QueueError('ERR_QUEUE_REDIS_URL', `'${url}': the scheme must be redis:// or rediss://`, { input: url });
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

export function checkQueueName(name: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(name))
    throw new QueueError('ERR_QUEUE_NAME', `queue name '${name}' may use only letters, digits, '_', '.', '-'`, { input: name });
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
