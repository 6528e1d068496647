// `calmkit extract`: features of a dataset or of files into per-layer feature stores, resumable and
// interruptible (docs/queue.md describes the stores and settings; lib/pipeline.ts does the work).
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { AbortError, ArgumentError } from '../errors';
import { Jukebox, type JukeboxDevice, type JukeboxPooling, type JukeboxPrecision } from '../model/jukebox';
import type { Formatting } from '../audio';
import {
  datasetItems,
  extractToStore,
  fileItems,
  LayerStores,
  parseShard,
  resolveSettings,
  selectShard,
  settingsHash,
  type ExtractionSettings,
  type WorkItem,
} from '../extraction';
import { modelId } from '../model';
import type { StoreDtype } from '../store/feature-store';
import { createProgress } from './progress';

export function intArg(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

export function positiveNumber(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
    return n;
  };
}

export function layerList(v: string): number[] {
  const parts = v.split(',').map((s) => s.trim()).filter(Boolean);
  const out = parts.map((p) => Number(p));
  if (out.length === 0 || !out.every((n, i) => /^\d+$/.test(parts[i]!) && n >= 1)) throw new InvalidArgumentError('--layers must be 1-based layer numbers, comma-separated (e.g. 36 or 12,24,36)');
  return out;
}

export function choice<T extends string>(name: string, values: readonly T[]) {
  return (v: string): T => {
    if (!(values as readonly string[]).includes(v)) throw new InvalidArgumentError(`${name} must be one of ${values.join(', ')}`);
    return v as T;
  };
}

/** The feature-settings options shared by `extract` and `queue add`. */
export function addSettingsOptions(cmd: Command): Command {
  return cmd
    .option('--layers <list>', '1-based layers, comma-separated (default 36, or the model\'s last layer if shallower)', layerList)
    .option('--pooling <mode>', 'mean | segments | none', choice('--pooling', ['mean', 'segments', 'none'] as const), 'mean')
    .option('--segment-tokens <k>', 'segments pooling: tokens per segment', intArg('--segment-tokens', 1))
    .option('--segment-seconds <s>', 'segments pooling: seconds per segment', positiveNumber('--segment-seconds'))
    .option('--formatting <mode>', 'tile | upsample | pad | none', choice('--formatting', ['tile', 'upsample', 'pad', 'none'] as const), 'tile')
    .option('--factor <x>', 'tile/pad/upsample factor (upsample default 6.2)', positiveNumber('--factor'))
    .option('--target-seconds <s>', 'tile/pad target length (default 62)', positiveNumber('--target-seconds'))
    .option('--windows <which>', 'first (jukemir) | all', choice('--windows', ['first', 'all'] as const), 'first')
    .option('--dtype <dtype>', 'stored dtype: float32 | float16', choice('--dtype', ['float32', 'float16'] as const), 'float32')
    .option('--precision <p>', 'fp32 | bf16 | fp16 (part of the settings: features differ)', choice('--precision', ['fp32', 'bf16', 'fp16'] as const), 'fp32');
}

/** The settings flags as commander parses them: the pipeline's settings, model and layers aside. */
export type SettingsOptions = Omit<ExtractionSettings, 'model' | 'layers'> & { layers?: number[] };

export function settingsFromOptions(model: { id: string; path?: string; preset?: string }, opts: SettingsOptions, modelLayers?: number): ExtractionSettings {
  return resolveSettings({
    model,
    modelLayers,
    precision: opts.precision,
    layers: opts.layers,
    pooling: opts.pooling,
    segmentTokens: opts.segmentTokens,
    segmentSeconds: opts.segmentSeconds,
    formatting: opts.formatting,
    factor: opts.factor,
    targetSeconds: opts.targetSeconds,
    windows: opts.windows,
    dtype: opts.dtype,
  });
}

/** The work list of `--dataset ROOT` or FILES..., one of the two. */
export function workItems(dataset: string | undefined, files: string[], shard?: string): WorkItem[] {
  if ((dataset === undefined) === (files.length === 0)) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'give either --dataset ROOT or audio FILES (not both, not neither)');
  const items = dataset !== undefined ? datasetItems(dataset) : fileItems(files);
  return shard ? selectShard(items, parseShard(shard)) : items;
}

interface ExtractOptions extends SettingsOptions {
  dataset?: string;
  model: string;
  out: string;
  shard?: string;
  batch: number;
  device: JukeboxDevice;
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
    .option('--batch <n>', 'clips per forward pass', intArg('--batch', 1), 1)
    .option('--device <device>', 'cpu | cuda | auto', 'cpu')
    .option('--flush-every <n>', 'clips between durable flushes (work lost on a crash is at most this)', intArg('--flush-every', 1), 64);
  addSettingsOptions(cmd).action(async (files: string[], opts: ExtractOptions) => {
    const items = workItems(opts.dataset, files, opts.shard);
    const model = await Jukebox.load(opts.model, { device: opts.device, precision: opts.precision });
    const settings = settingsFromOptions({ id: modelId(opts.model), path: opts.model, preset: model.info.preset }, opts, model.info.depth);
    const stores = LayerStores.open(opts.out, settings, { create: true });
    const controller = new AbortController();
    let interrupted = false;
    const onSignal = () => {
      if (interrupted) {
        // A second Ctrl-C: leave at once. Only what was already published is kept, which is always consistent.
        process.stderr.write('calmkit extract: interrupted again; exiting without flushing\n');
        process.exit(130);
      }
      interrupted = true;
      process.stderr.write('\ncalmkit extract: interrupted; flushing finished clips (they are kept; rerun to resume)\n');
      controller.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const progress = createProgress('extract', items.length, 'clips');
    process.stderr.write(`extract: ${items.length} clips, settings ${settingsHash(settings)} (layers ${settings.layers.join(',')}, ${settings.pooling}, ${settings.formatting}), stores under ${opts.out}\n`);
    try {
      const summary = await extractToStore({
        model,
        items,
        stores,
        settings,
        batchSize: opts.batch,
        flushEvery: opts.flushEvery,
        signal: controller.signal,
        onProgress: (p) => {
          progress.setTotal(p.total);
          progress.update(p.done + p.failed, { failed: p.failed });
        },
      });
      progress.stop();
      const lines = [
        `extract: ${summary.done} extracted, ${summary.skipped} already in the store, ${summary.failed.length} failed, in ${summary.seconds.toFixed(1)} s` +
          (summary.done > 0 ? ` (${(summary.done / summary.seconds).toFixed(2)} clips/s)` : '') +
          (summary.aborted ? `; interrupted with ${summary.total - summary.done - summary.failed.length} left` : ''),
        ...summary.failed.map((f) => `  failed ${f.key} (${f.input}): ${f.code}: ${f.message}`),
      ];
      process.stdout.write(lines.join('\n') + '\n');
      if (summary.aborted) process.exitCode = 130;
      else if (summary.failed.length > 0) process.exitCode = 2;
    } catch (err) {
      progress.stop();
      if (err instanceof AbortError) process.exitCode = 130;
      else throw err;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      model.dispose();
    }
  });
}
