// extractToStore, which `calmkit extract`, the queue workers and the study all use to turn clips into
// feature-store entries: decode (on the audio threads) while the previous batch runs through the model.
import { loadAudio } from '../audio';
import { AbortError, CalmkitError, invalidArgument } from '../errors';
import type { Jukebox, JukeboxProgress } from '../model';
import type { LayerStores } from './layer-stores';
import type { ExtractionSettings } from '../recipe';
import type { WorkItem } from './work-items';

export interface ClipFailure {
  key: string;
  input: string;
  code: string;
  message: string;
}

export interface PipelineProgress {
  /** Clips to extract in this run (after skipping those already stored). */
  total: number;
  done: number;
  failed: number;
  skipped: number;
  key?: string;
  /**
   * Inside the native call in flight (its clips, their windows, the blocks of the current window), as the model
   * reports it: progress within a clip, which with the 5B model on a CPU takes minutes. Absent between calls.
   */
  inFlight?: JukeboxProgress;
}

/** How much of the call in flight is done, in clips (0 <= x <= its clips): windows and blocks, counted evenly. */
export function clipsInFlight(p: JukeboxProgress): number {
  if (!(p.windowsTotal > 0) || !(p.clipsTotal > 0)) return 0;
  // At the end of a window blocksDone equals blocksTotal and the window is already in windowsDone.
  const inWindow = p.blocksTotal > 0 && p.blocksDone < p.blocksTotal ? p.blocksDone / p.blocksTotal : 0;
  return Math.min(p.clipsTotal, (p.clipsTotal * (p.windowsDone + inWindow)) / p.windowsTotal);
}

export interface ExtractToStoreOptions {
  model: Jukebox;
  items: readonly WorkItem[];
  stores: LayerStores;
  settings: ExtractionSettings;
  /** Clips per native call (each still runs on its own inside it: batches do not change the features). */
  batchSize?: number;
  /** Clips between durable flushes (default 64); also flushed every `flushSeconds` (default 30). */
  flushEvery?: number;
  flushSeconds?: number;
  writerId?: string;
  signal?: AbortSignal;
  onProgress?: (p: PipelineProgress) => void;
}

export interface ExtractSummary {
  total: number;
  done: number;
  skipped: number;
  failed: ClipFailure[];
  aborted: boolean;
  seconds: number;
  writer: string;
}

export interface Decoded {
  item: WorkItem;
  samples?: Float32Array;
  error?: CalmkitError;
}

/**
 * The front-end's part of extraction for one clip: decoded, fitted and cropped as the settings say, to the samples
 * the model needs (the first window plus the encoder's margin, or everything for windows 'all'). runModel passes
 * them to the model as they are.
 */
export async function decodeForModel(item: WorkItem, settings: ExtractionSettings, model: Jukebox): Promise<Decoded> {
  const cropSamples = settings.windows === 'first' ? model.info.firstWindowSamples : undefined;
  try {
    const audio = await loadAudio(item.input, { formatting: settings.formatting, factor: settings.factor, targetSeconds: settings.targetSeconds, cropSamples });
    return { item, samples: audio.samples };
  } catch (err) {
    return { item, error: asCalmkit(err, item.input) };
  }
}

function asCalmkit(err: unknown, input: string): CalmkitError {
  if (err instanceof CalmkitError) return err;
  return new CalmkitError('ERR_INTERNAL', `${input}: ${(err as Error)?.message ?? String(err)}`, { input, cause: err });
}

export type ClipResult = { key: string; layers: Record<number, { data: Float32Array; shape: number[] }> } | { key: string; error: CalmkitError };

/**
 * Runs decoded clips through the model in one native call (each clip still runs on its own inside it, so the
 * features do not depend on the batch); when the call fails for a reason other than an abort, each clip is
 * retried alone so one bad clip cannot sink its neighbours.
 */
export async function runModel(
  model: Jukebox,
  decoded: readonly Decoded[],
  settings: ExtractionSettings,
  signal?: AbortSignal,
  onProgress?: (p: JukeboxProgress) => void,
): Promise<ClipResult[]> {
  const results = new Map<string, ClipResult>();
  const ready: Decoded[] = [];
  for (const d of decoded) {
    if (d.error || !d.samples) {
      results.set(d.item.key, { key: d.item.key, error: d.error ?? new CalmkitError('ERR_INTERNAL', `${d.item.input}: no samples`) });
    } else {
      ready.push(d);
    }
  }
  const options = {
    layers: settings.layers,
    pooling: settings.pooling,
    segmentTokens: settings.segmentTokens,
    segmentSeconds: settings.segmentSeconds,
    windows: settings.windows,
    signal,
    onProgress,
  };
  const run = async (group: Decoded[]) => {
    // The samples went through the front-end in decodeForModel: they go to the model as they are.
    const feats = await model.extractPrepared(
      group.map((d) => ({ samples: d.samples!, label: d.item.input })),
      options,
    );
    group.forEach((d, i) => {
      const layers: Record<number, { data: Float32Array; shape: number[] }> = {};
      for (const l of settings.layers) layers[l] = { data: feats[i]!.layers[l]!.data, shape: feats[i]!.layers[l]!.shape };
      results.set(d.item.key, { key: d.item.key, layers });
    });
  };
  if (ready.length > 0) {
    try {
      await run(ready);
    } catch (err) {
      if (err instanceof AbortError || signal?.aborted) throw err;
      for (const d of ready) {
        if (ready.length === 1) {
          results.set(d.item.key, { key: d.item.key, error: asCalmkit(err, d.item.input) });
          break;
        }
        try {
          await run([d]);
        } catch (e) {
          if (e instanceof AbortError || signal?.aborted) throw e;
          results.set(d.item.key, { key: d.item.key, error: asCalmkit(e, d.item.input) });
        }
      }
    }
  }
  return decoded.map((d) => results.get(d.item.key)!);
}

/**
 * Extracts every item not yet in the stores. The next batch is decoded (on the audio threads) while the
 * current one runs through the model (on the compute thread). Failures are recorded in the stores and the
 * run goes on. On abort the batch in flight is dropped, everything finished is flushed, and the summary says
 * `aborted`; a later run resumes where this one stopped.
 */
export async function extractToStore(options: ExtractToStoreOptions): Promise<ExtractSummary> {
  const started = Date.now();
  const { model, stores, settings, signal } = options;
  const batchSize = options.batchSize ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw invalidArgument(`batchSize must be a positive integer; got ${batchSize}`, 'batchSize');
  const flushEvery = options.flushEvery ?? 64;
  const flushMs = (options.flushSeconds ?? 30) * 1000;
  stores.refresh();
  const todo = options.items.filter((it) => !stores.has(it.key));
  const skipped = options.items.length - todo.length;
  const writers = stores.writers({ id: options.writerId });
  const failed: ClipFailure[] = [];
  let done = 0;
  let aborted = false;
  let lastFlush = Date.now();
  const progress = (key?: string, inFlight?: JukeboxProgress) =>
    options.onProgress?.({ total: todo.length, done, failed: failed.length, skipped, key, ...(inFlight ? { inFlight } : {}) });
  const onModelProgress = options.onProgress ? (p: JukeboxProgress) => progress(undefined, p) : undefined;
  progress();

  const batches: WorkItem[][] = [];
  for (let i = 0; i < todo.length; i += batchSize) batches.push(todo.slice(i, i + batchSize));
  const decode = (b: WorkItem[]) => Promise.all(b.map((it) => decodeForModel(it, settings, model)));
  try {
    let next = batches.length > 0 ? decode(batches[0]!) : undefined;
    for (let b = 0; b < batches.length; b++) {
      if (signal?.aborted) {
        aborted = true;
        break;
      }
      const decoded = await next!;
      next = b + 1 < batches.length ? decode(batches[b + 1]!) : undefined;
      let results: ClipResult[];
      try {
        results = await runModel(model, decoded, settings, signal, onModelProgress);
      } catch (err) {
        if (err instanceof AbortError || signal?.aborted) {
          aborted = true;
          await next?.catch(() => undefined);
          break;
        }
        throw err;
      }
      for (const r of results) {
        const item = batches[b]!.find((it) => it.key === r.key)!;
        if ('error' in r) {
          failed.push({ key: r.key, input: item.input, code: r.error.code, message: r.error.message });
          writers.fail(r.key, { input: item.input, code: r.error.code, message: r.error.message });
        } else {
          writers.put(r.key, r.layers);
          done++;
        }
        progress(r.key);
      }
      if (writers.pending >= flushEvery || Date.now() - lastFlush >= flushMs) {
        writers.flush({ manifest: true });
        lastFlush = Date.now();
      }
    }
  } finally {
    // Whatever finished is published even when the loop throws; the manifest follows the shards.
    writers.close({ manifest: true });
  }
  return { total: todo.length, done, skipped, failed, aborted, seconds: (Date.now() - started) / 1000, writer: writers.id };
}
