// The end-to-end benchmark: audio files to a feature store the way `calmkit extract` does it (decode, fit, encode,
// blocks, pooling, write), with the front-end decoding the next clip while the model runs the current one. What it
// measures is whether the front-end hides behind the model: the fraction of the wall time the model's thread is
// busy (the addon's compute pool, executorStats), against the goal of 95 %.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binding } from '../addon';
import {
  abortError,
  booleanArg,
  functionArg,
  integerArg,
  invalidArgument,
  nonEmptyString,
  nativeSync,
  oneOf,
  optional,
  optionsObject,
  signalArg,
} from '../errors';
import { datasetItems, decodeForModel, extractToStore, LayerStores, resolveSettings, runModel } from '../extraction';
import { DEFAULT_PRECISION, Jukebox, JUKEBOX_PRESETS, PRECISION_CHOICES, type JukeboxPreset, type PrecisionChoice } from '../model';
import { calmkitVersion, DEFAULT_DEVICE, type Device } from '../runtime';
import type { BenchCommon } from './engine';
import { BENCH_SCHEMA, BENCH_SCHEMA_VERSION, checkBenchReport, type BenchMachine, type PipelineReport, type PipelineRow } from './schema';

/** The fraction of wall time the model should be busy at the 5B shapes: the front-end hidden behind it. */
export const PIPELINE_BUSY_GOAL = 0.95;

export interface PipelineBenchOptions extends BenchCommon {
  /** An OpenMIC-2018 root or any folder of audio files. */
  dataset: string;
  /** A checkpoint; or random weights at `preset` (default 5b) cut to `layers`, written to a temporary file. */
  model?: string;
  preset?: JukeboxPreset;
  layers?: number;
  seed?: number;
  precision?: PrecisionChoice;
  device?: Device;
  /** At most this many clips of the dataset (default all). */
  clips?: number;
  /** Clips per native call (default 1). */
  batch?: number;
  /** Keep the store written (default: a temporary folder, removed). */
  out?: string;
  verifyWeights?: boolean;
}

function machine(): BenchMachine {
  const m = JSON.parse(nativeSync(() => binding().benchMachine())) as BenchMachine;
  m.node = process.version;
  return m;
}

export async function benchPipeline(options: PipelineBenchOptions): Promise<PipelineReport> {
  const o = optionsObject('options', options);
  const dataset = nonEmptyString('dataset', o.dataset);
  const modelFile = optional(o, 'model', nonEmptyString);
  const preset = optional(o, 'preset', (n, v) => oneOf(n, JUKEBOX_PRESETS, v));
  if (modelFile !== undefined && preset !== undefined) throw invalidArgument('give a preset or a model file, not both', 'model');
  const layers = optional(o, 'layers', (n, v) => integerArg(n, v, { min: 1, max: 4096 }));
  const seed = optional(o, 'seed', (n, v) => integerArg(n, v, { min: 0 })) ?? 0;
  const precision = optional(o, 'precision', (n, v) => oneOf(n, PRECISION_CHOICES, v)) ?? DEFAULT_PRECISION;
  const device = (optional(o, 'device', nonEmptyString) ?? DEFAULT_DEVICE) as Device;
  const limit = optional(o, 'clips', (n, v) => integerArg(n, v, { min: 1 }));
  const batch = optional(o, 'batch', (n, v) => integerArg(n, v, { min: 1, max: 256 })) ?? 1;
  const out = optional(o, 'out', nonEmptyString);
  const verifyWeights = optional(o, 'verifyWeights', booleanArg) ?? true;
  const signal = signalArg('signal', o.signal);
  const onLine = functionArg<(line: string) => void>('onLine', o.onLine) ?? (() => undefined);
  const command = optional(o, 'command', nonEmptyString) ?? ['calmkit', ...process.argv.slice(2)].join(' ');

  const all = datasetItems(dataset);
  if (all.length < 2)
    throw invalidArgument(`${dataset}: the pipeline benchmark needs at least 2 audio files (one warms the model up); found ${all.length}`, 'dataset');
  const items = limit !== undefined ? all.slice(0, limit + 1) : all;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-bench-pipeline-'));
  const startMachine = machine();
  try {
    let file = modelFile;
    const notes: string[] = [];
    if (file === undefined) {
      file = path.join(work, 'model.pt');
      onLine(`writing a random-weight ${preset ?? '5b'} checkpoint${layers ? ` cut to ${layers} layers` : ''}`);
      await Jukebox.writeRandomCheckpoint({ preset: preset ?? '5b', layers, seed, out: file });
      notes.push(`random weights at the ${preset ?? '5b'} shapes (seed ${seed}), written to a temporary checkpoint and loaded as extract does`);
    }
    if (signal?.aborted) throw abortError('the pipeline benchmark was aborted', signal);
    await using model = await Jukebox.load(file, { device, precision, verifyWeights, signal });
    const depth = layers !== undefined && modelFile !== undefined ? layers : model.info.depth;
    const settings = resolveSettings({
      model: { id: model.id, path: file, preset: model.info.preset },
      modelLayers: model.info.depth,
      precision: model.info.precision,
      layers: [depth],
    });
    // The first clip warms the model up (kernels, thread pools) and is not counted.
    const [warm, ...timed] = items;
    onLine(`warm-up: ${warm!.key}`);
    await runModel(model, [await decodeForModel(warm!, settings, model)], settings, signal);
    const storeRoot = out ?? path.join(work, 'store');
    const stores = LayerStores.open(storeRoot, settings, { create: true });
    const before = binding().executorStats();
    const t0 = performance.now();
    const summary = await extractToStore({
      model,
      items: timed,
      stores,
      settings,
      batchSize: batch,
      signal,
      onProgress: (p) => {
        if (p.key !== undefined) onLine(`${p.done + p.failed}/${p.total}: ${p.key}`);
      },
    });
    const wall = (performance.now() - t0) / 1000;
    const after = binding().executorStats();
    if (summary.aborted) throw abortError('the pipeline benchmark was aborted', signal);
    const busy = after.compute.busySeconds - before.compute.busySeconds;
    const decode = after.audio.busySeconds - before.audio.busySeconds;
    const clips = summary.done + summary.failed.length;
    const row: PipelineRow = {
      label: `${model.info.precision}, layers 1-${depth}, batch ${batch}, ${clips} clips`,
      precision: model.info.precision,
      layers: depth,
      batch,
      clips: summary.done,
      failed: summary.failed.length,
      wallSeconds: wall,
      clipsPerSecond: summary.done / wall,
      modelBusySeconds: busy,
      modelBusyFraction: busy / wall,
      modelSecondsPerClip: busy / Math.max(1, clips),
      decodeSeconds: decode,
      decodeSecondsPerClip: decode / Math.max(1, clips),
      exposedSeconds: Math.max(0, wall - busy),
      goalModelBusyFraction: PIPELINE_BUSY_GOAL,
      goalMet: busy / wall >= PIPELINE_BUSY_GOAL,
    };
    if (summary.failed.length) notes.push(`${summary.failed.length} clips failed: ${summary.failed.map((f) => `${f.key} (${f.code})`).join(', ')}`);
    notes.push(
      "model busy: the seconds the addon's compute thread spent in extraction calls (encoder, blocks, pooling); decode: the front-end's threads, summed",
    );
    const report: PipelineReport = {
      schema: BENCH_SCHEMA,
      schemaVersion: BENCH_SCHEMA_VERSION,
      kind: 'pipeline',
      createdAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      calmkitVersion: calmkitVersion(),
      host: `calmkit ${calmkitVersion()} (Node ${process.version})`,
      command,
      machine: startMachine,
      config: {
        device: model.info.device,
        dataset,
        model: modelFile ?? null,
        preset: model.info.preset,
        width: model.info.width,
        nCtx: model.info.nCtx,
        layers: depth,
        precision: model.info.precision,
        batch,
        formatting: settings.formatting,
        pooling: settings.pooling,
        warmupClips: 1,
      },
      peaks: [],
      rows: [row],
      notes,
    };
    return checkBenchReport(report, 'the pipeline benchmark') as PipelineReport;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
