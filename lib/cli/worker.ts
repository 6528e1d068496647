// `calmkit worker`: takes extraction jobs from the queue and writes features into a shared store; SIGTERM/SIGINT
// stop it gracefully (docs/queue.md).
import type { Command } from 'commander';
import { DEFAULT_QUEUE, ExtractionWorker } from '../extraction/queue';
import type { PrecisionChoice } from '../model';
import type { Device } from '../runtime';
import { addDeviceOption, addPrecisionOption, integer } from './options';
import { checkOutputs } from './outputs';
import { createProgress, plainProgressWanted } from './progress';

interface WorkerCliOptions {
  redis: string;
  queue: string;
  model: string;
  device: Device;
  precision: PrecisionChoice;
  store: string;
  concurrency?: number;
  batch?: number;
  batchWait: number;
  lockDuration: number;
  stalledInterval: number;
  maxStalled: number;
  progressSeconds: number;
}

export function register(program: Command): void {
  const cmd = program
    .command('worker')
    .description('take extraction jobs from the queue and write features into a shared store; SIGTERM/SIGINT stop it gracefully')
    .requiredOption('--redis <url>', 'redis://host:port[/db]')
    .option('--queue <name>', 'queue name', DEFAULT_QUEUE)
    .requiredOption('--model <file>', 'checkpoint (jobs must name its id)')
    .requiredOption('--store <dir>', 'store root (features go to <dir>/layer-<L>/); shared by all workers');
  addPrecisionOption(addDeviceOption(cmd), { withAuto: true, note: 'jobs must ask for the precision it resolves to' })
    .option('--batch <n>', 'clips per forward pass (default 1 on cpu, 8 on cuda)', integer('--batch', { min: 1 }))
    .option('--concurrency <n>', 'jobs held at once (default 2 x batch)', integer('--concurrency', { min: 1 }))
    .option('--batch-wait <ms>', 'longest wait for a partial batch to fill', integer('--batch-wait', { min: 0 }), 200)
    .option(
      '--lock-duration <ms>',
      "job lock lifetime; a dead worker's jobs return to the queue after about this",
      integer('--lock-duration', { min: 1000 }),
      60_000,
    )
    .option('--stalled-interval <ms>', 'how often to look for stalled jobs', integer('--stalled-interval', { min: 100 }), 30_000)
    .option('--max-stalled <n>', 'stalls a job may survive before it fails', integer('--max-stalled', { min: 0 }), 2)
    .option('--progress-seconds <s>', 'seconds between progress lines (0: none)', integer('--progress-seconds', { min: 0 }), 10)
    .action(async (opts: WorkerCliOptions) => {
      await checkOutputs([{ flag: '--store', path: opts.store, kind: 'store-root' }]);
      // On a terminal a status line counts the clips; in a log the worker prints a line every --progress-seconds.
      const live = !plainProgressWanted() && opts.progressSeconds > 0;
      const worker = await ExtractionWorker.start({
        redis: opts.redis,
        queue: opts.queue,
        model: opts.model,
        device: opts.device,
        precision: opts.precision,
        store: opts.store,
        batch: opts.batch,
        concurrency: opts.concurrency,
        batchWaitMs: opts.batchWait,
        lockDurationMs: opts.lockDuration,
        stalledIntervalMs: opts.stalledInterval,
        maxStalledCount: opts.maxStalled,
        progressSeconds: live ? 0 : opts.progressSeconds,
      });
      const status = live ? createProgress(`worker ${worker.id}`, undefined, 'clip') : undefined;
      const poll = status
        ? setInterval(() => {
            const s = worker.getStats();
            status.update(s.completed + s.failed, { failed: s.failed, note: s.skipped ? `${s.skipped} already stored` : undefined });
          }, 500)
        : undefined;
      // A worker is a service: SIGTERM/SIGINT stop it gracefully (taken jobs finish, exit 0), which is not an
      // interrupted piece of work, so this is not withInterrupt's exit 130. A second signal leaves at once.
      await new Promise<void>((resolve) => {
        let signals = 0;
        const stop = (sig: NodeJS.Signals) => {
          signals++;
          if (signals > 1) {
            // A second signal: leave now. Taken jobs are not lost: their locks lapse and others redo them.
            process.stderr.write(`worker ${worker.id}: ${sig} again: exiting without finishing taken jobs\n`);
            process.exit(130);
          }
          if (poll) clearInterval(poll);
          status?.stop();
          worker.close().then(
            () => resolve(),
            (err) => {
              process.stderr.write(`worker ${worker.id}: error while stopping: ${(err as Error).message}\n`);
              process.exitCode = 1;
              resolve();
            },
          );
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}
