// `calmkit extract`: features of a dataset or of files into per-layer feature stores, resumable and
// interruptible (docs/queue.md describes the stores and settings; lib/extraction does the work).
import type { Command } from 'commander';
import { extractToStore, LayerStores, settingsHash } from '../extraction';
import { Jukebox } from '../model';
import type { Device } from '../runtime/device';
import { withInterrupt } from './interrupt';
import { addSettingsOptions, DEVICE_HELP, integer, settingsFromOptions, workItems, type SettingsOptions } from './options';
import { createProgress } from './progress';

interface ExtractOptions extends SettingsOptions {
  dataset?: string;
  model: string;
  out: string;
  shard?: string;
  batch: number;
  device: Device;
  flushEvery: number;
}

export function register(program: Command): void {
  const cmd = program
    .command('extract')
    .description('extract Jukebox features of a dataset or of audio files into per-layer feature stores (<out>/layer-<L>/); resumable')
    .argument('[files...]', 'audio files (key = file name without extension); or use --dataset')
    .option('--dataset <root>', 'dataset root: OpenMIC-2018 layout (every clip with audio), or any folder of audio files')
    .requiredOption('--model <file>', 'calmkit Jukebox checkpoint')
    .requiredOption('--out <dir>', 'output root; stores go to <out>/layer-<L>/')
    .option('--shard <i/N>', 'only the clips whose index in key order is i mod N')
    .option('--batch <n>', 'clips per forward pass', integer('--batch', { min: 1 }), 1)
    .option('--device <device>', DEVICE_HELP, 'cpu')
    .option('--flush-every <n>', 'clips between durable flushes (work lost on a crash is at most this)', integer('--flush-every', { min: 1 }), 64);
  addSettingsOptions(cmd, { withAuto: true }).action(async (files: string[], opts: ExtractOptions) => {
    const items = workItems(opts.dataset, files, opts.shard);
    await withInterrupt(
      async (signal) => {
        await using model = await Jukebox.load(opts.model, { device: opts.device, precision: opts.precision, signal });
        const settings = settingsFromOptions({ id: model.id, path: opts.model, preset: model.info.preset, precision: model.info.precision }, opts, model.info.depth);
        const stores = LayerStores.open(opts.out, settings, { create: true });
        const progress = createProgress('extract', items.length, 'clips');
        process.stderr.write(`extract: ${items.length} clips, settings ${settingsHash(settings)} (layers ${settings.layers.join(',')}, ${settings.pooling}, ${settings.formatting}), stores under ${opts.out}\n`);
        let summary;
        try {
          summary = await extractToStore({
            model,
            items,
            stores,
            settings,
            batchSize: opts.batch,
            flushEvery: opts.flushEvery,
            signal,
            onProgress: (p) => {
              progress.setTotal(p.total);
              progress.update(p.done + p.failed, { failed: p.failed });
            },
          });
        } finally {
          progress.stop();
        }
        const lines = [
          `extract: ${summary.done} extracted, ${summary.skipped} already in the store, ${summary.failed.length} failed, in ${summary.seconds.toFixed(1)} s` +
            (summary.done > 0 ? ` (${(summary.done / summary.seconds).toFixed(2)} clips/s)` : '') +
            (summary.aborted ? `; interrupted with ${summary.total - summary.done - summary.failed.length} left` : ''),
          ...summary.failed.map((f) => `  failed ${f.key} (${f.input}): ${f.code}: ${f.message}`),
        ];
        process.stdout.write(lines.join('\n') + '\n');
        if (!summary.aborted && summary.failed.length > 0) process.exitCode = 2;
      },
      { message: 'calmkit extract: interrupted; flushing finished clips (they are kept; rerun to resume)' },
    );
  });
}
