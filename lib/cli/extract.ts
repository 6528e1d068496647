// `calmkit extract`: features of a dataset or of files into per-layer feature stores, resumable and
// interruptible (docs/queue.md describes the stores and settings; lib/extraction does the work).
import type { Command } from 'commander';
import { extractToStore, LayerStores, settingsHash } from '../extraction';
import { Jukebox } from '../model';
import type { Device } from '../runtime';
import { withInterrupt } from './interrupt';
import { addDeviceOption, addSettingsOptions, integer, settingsFromOptions, workItems, type SettingsOptions } from './options';
import { extractionUpdate } from './output';
import { createProgress, formatRate, plural } from './progress';
import { EXIT } from './exit';
import { checkOutputs } from './outputs';

interface ExtractOptions extends SettingsOptions {
  dataset?: string;
  model: string;
  out: string;
  shard?: string;
  batch: number;
  device: Device;
  flushEvery: number;
  verifyWeights: boolean;
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
    .option('--flush-every <n>', 'clips between durable flushes (work lost on a crash is at most this)', integer('--flush-every', { min: 1 }), 64)
    .option('--no-verify-weights', "skip the checkpoint's CRC-32 and NaN/Inf checks (a file you trust)");
  addSettingsOptions(addDeviceOption(cmd), { withAuto: true }).action(async (files: string[], opts: ExtractOptions) => {
    await checkOutputs([{ flag: '--out', path: opts.out, kind: 'store-root' }]);
    const items = workItems(opts.dataset, files, opts.shard);
    await withInterrupt(
      async (signal) => {
        process.stderr.write(`extract: loading ${opts.model} (${opts.device}, ${opts.precision})\n`);
        await using model = await Jukebox.load(opts.model, { device: opts.device, precision: opts.precision, verifyWeights: opts.verifyWeights, signal });
        const settings = settingsFromOptions(
          { id: model.id, path: opts.model, preset: model.info.preset, precision: model.info.precision },
          opts,
          model.info.depth,
        );
        const stores = LayerStores.open(opts.out, settings, { create: true });
        process.stderr.write(
          `extract: ${plural(items.length, 'clip')}, settings ${settingsHash(settings)} (layers ${settings.layers.join(',')}, ${settings.pooling}, ${settings.formatting}), stores under ${opts.out}\n`,
        );
        // Created after loading: the rate and the ETA measure extraction alone.
        const progress = createProgress('extract', items.length, 'clip');
        let summary: Awaited<ReturnType<typeof extractToStore>>;
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
              const u = extractionUpdate(p);
              progress.setTotal(p.total);
              progress.update(u.done, u.extra);
            },
          });
        } finally {
          progress.stop();
        }
        const left = summary.total - summary.done - summary.failed.length;
        const lines = [
          `extract: ${summary.done} extracted, ${summary.skipped} already in the store, ${summary.failed.length} failed, in ${summary.seconds.toFixed(1)} s` +
            (summary.done > 0 ? ` (${formatRate(summary.done, summary.seconds, 'clip')})` : '') +
            (summary.aborted ? `; interrupted with ${plural(left, 'clip')} left` : ''),
          ...summary.failed.map((f) => `  failed ${f.key} (${f.input}): ${f.code}: ${f.message}`),
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
        if (!summary.aborted && summary.failed.length > 0) process.exitCode = EXIT.SOME_FAILED;
      },
      { message: 'calmkit extract: interrupted; flushing finished clips (they are kept; rerun to resume)' },
    );
  });
}
