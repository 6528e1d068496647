// `calmkit queue add|status|model-id`: extraction jobs on a BullMQ queue in Redis (docs/queue.md); the workers
// that take them are `calmkit worker` (worker.ts).
import type { Command } from 'commander';
import { addJobs, DEFAULT_QUEUE, queueStatus, type QueueStatus } from '../extraction/queue';
import { isModelId, Jukebox, modelId } from '../model';
import { addSettingsOptions, integer, positiveNumber, settingsFromOptions, workItems, type SettingsOptions } from './options';

interface AddOptions extends SettingsOptions {
  dataset?: string;
  model: string;
  redis: string;
  queue: string;
  shard?: string;
  attempts: number;
  retryFailed?: boolean;
}

function formatStatus(s: QueueStatus): string {
  const c = s.counts;
  const lines = [
    `queue ${s.queue}: ${c.waiting} waiting, ${c.active} active, ${c.completed} completed, ${c.failed} failed, ${c.delayed} delayed` +
      (c.prioritized || c.paused ? `, ${c.prioritized} prioritized, ${c.paused} paused` : ''),
    `throughput: ${s.throughput.completed} completed in the last ${s.throughput.windowMinutes} min (${s.throughput.perMinute.toFixed(1)}/min)`,
    ...Object.entries(s.throughput.byWorker)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([w, t]) => `  ${w}: ${t.completed} (${t.perMinute.toFixed(1)}/min)`),
  ];
  if (s.failed.length) {
    lines.push(`failed jobs${s.failed.length < c.failed ? ` (first ${s.failed.length} of ${c.failed})` : ''}:`);
    for (const f of s.failed) lines.push(`  ${f.key ?? f.id} (${f.input ?? '?'}), ${f.attemptsMade} attempt(s): ${f.failedReason}`);
  }
  return lines.join('\n');
}

export function register(program: Command): void {
  const queue = program.command('queue').description('extraction jobs on a BullMQ queue in Redis (see `calmkit worker`)');

  const add = queue
    .command('add')
    .description('enqueue one job per clip; idempotent per (clip, model, settings): adding again adds nothing')
    .argument('[files...]', 'audio files (key = file name without extension); or use --dataset')
    .option('--dataset <root>', 'dataset root: OpenMIC-2018 layout, or any folder of audio files (paths must be valid on the workers)')
    .requiredOption('--model <id|file>', `checkpoint file, or its id (${'fl1m-sha256:<64 hex>'}, printed by \`calmkit queue model-id\`)`)
    .requiredOption('--redis <url>', 'redis://host:port[/db]')
    .option('--queue <name>', 'queue name', DEFAULT_QUEUE)
    .option('--shard <i/N>', 'only the clips whose index in key order is i mod N')
    .option('--attempts <n>', 'attempts for errors other than bad audio (which fail at once)', integer('--attempts', { min: 1 }), 3)
    .option('--retry-failed', 'put failed jobs of these clips back to waiting');
  addSettingsOptions(add).action(async (files: string[], opts: AddOptions) => {
    const items = workItems(opts.dataset, files, opts.shard);
    let model: { id: string; path?: string; preset?: string };
    let modelLayers: number | undefined;
    if (isModelId(opts.model)) model = { id: opts.model };
    else {
      const info = await Jukebox.inspect(opts.model);
      model = { id: modelId(opts.model), path: opts.model, preset: info.preset };
      modelLayers = info.depth;
    }
    const settings = settingsFromOptions(model, opts, modelLayers);
    const r = await addJobs({ redis: opts.redis, queue: opts.queue, items, settings, attempts: opts.attempts, retryFailed: opts.retryFailed });
    process.stdout.write(
      `queue ${opts.queue}: added ${r.added} job(s), ${r.existing} already queued` +
        (opts.retryFailed ? `, ${r.retried} failed job(s) retried` : '') +
        ` (settings ${r.settingsHash})\n`,
    );
  });

  queue
    .command('status')
    .description('job counts, throughput over the last minutes (overall and per worker), failed jobs with their errors')
    .requiredOption('--redis <url>', 'redis://host:port[/db]')
    .option('--queue <name>', 'queue name', DEFAULT_QUEUE)
    .option('--minutes <n>', 'throughput window', positiveNumber('--minutes'), 5)
    .option('--failed <n>', 'failed jobs to list', integer('--failed', { min: 0 }), 100)
    .option('--json', 'print JSON')
    .action(async (opts: { redis: string; queue: string; minutes: number; failed: number; json?: boolean }) => {
      const s = await queueStatus({ redis: opts.redis, queue: opts.queue, windowMinutes: opts.minutes, failedLimit: opts.failed });
      process.stdout.write(`${opts.json ? JSON.stringify(s, null, 2) : formatStatus(s)}\n`);
    });

  queue
    .command('model-id')
    .description('the id of a checkpoint, as jobs and stores name it (sha256 of size, first and last MiB)')
    .argument('<file>', 'checkpoint')
    .action((file: string) => {
      process.stdout.write(`${modelId(file)}\n`);
    });
}
