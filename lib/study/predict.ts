// The return trip: instrument probabilities for new audio from a probe set and its model. The probe set's recipe
// says how its training features were made; the audio takes the same path (decodeForModel + runModel, as in
// extraction), with the model the recipe names at the recorded precision, so the probes see features of the
// kind they were trained on.
import { DataError, ProbeError, invalidArgument } from '../errors';
import { checkModelServes, settingsOfRecipe, type FeatureRecipe } from '../recipe';
import { decodeForModel, runModel, type ClipFailure } from '../extraction';
import { Jukebox, modelId } from '../model';
import { asStored } from '../store';
import { PROBE_THRESHOLD, ProbeSet, type Predictions } from '../probes';
import type { Device } from '../runtime';

export interface PredictAudioOptions {
  /** Where the model runs when it is given as a path, and where the probes run. Default DEFAULT_DEVICE (`auto`). */
  device?: Device;
  /**
   * Clips per forward pass (default 1, as `calmkit extract`; clips of a pass share its length after fitting).
   * With 1, the features are the bits extraction stored for the same clips.
   */
  batchSize?: number;
  /** A subset of the trained instruments (default: all). */
  instruments?: string[];
  signal?: AbortSignal;
  onProgress?: (p: { done: number; failed: number; total: number }) => void;
}

export interface AudioPredictions extends Predictions {
  /** The audio files predicted, in the row order of `probabilities` and `clips` (failed files are left out). */
  inputs: string[];
  /** Files that could not be decoded or run, with why (`key` is the file's position in the inputs). */
  failed: ClipFailure[];
  /** The recipe the features were made by: the probe set's. */
  recipe: FeatureRecipe;
}

/**
 * P(present) per instrument for audio files, through the extraction path the probe set's features took.
 *
 * `probes` is a ProbeSet or its file; `model` a loaded Jukebox or a checkpoint file (loaded on `device` at the
 * recorded precision, and disposed afterwards). Refuses, before any audio is read:
 * - a probe set without a recipe: ProbeError ERR_PROBE_RECIPE;
 * - a model other than the one the features came from: ModelError ERR_MODEL_MISMATCH, naming both ids;
 * - a loaded model at another precision: ModelError ERR_MODEL_PRECISION, naming both.
 * Files that cannot be read or run are listed in `failed`; the others are predicted.
 */
export async function predictAudio(
  probes: ProbeSet | string,
  model: Jukebox | string,
  files: string | readonly string[],
  options: PredictAudioOptions = {},
): Promise<AudioPredictions> {
  const set = typeof probes === 'string' ? await ProbeSet.load(probes) : probes;
  const where = typeof probes === 'string' ? probes : 'the probe set';
  const recipe = set.info.recipe;
  if (!recipe) {
    throw new ProbeError(
      'ERR_PROBE_RECIPE',
      `${where} does not record how its features were made (trained on features from elsewhere); predict from features with probes.predict()`,
      {
        input: typeof probes === 'string' ? probes : undefined,
      },
    );
  }
  const inputs = typeof files === 'string' ? [files] : [...files];
  if (inputs.length === 0 || inputs.some((f) => typeof f !== 'string' || f === ''))
    throw invalidArgument('files must be one or more audio file paths', 'files');
  const batchSize = options.batchSize ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw invalidArgument(`batchSize must be a positive integer; got ${batchSize}`, 'batchSize');

  const path = typeof model === 'string' ? model : model.path;
  if (typeof model === 'string') checkModelServes(recipe, { id: modelId(model), path }, where);
  else checkModelServes(recipe, { id: model.id, path, precision: model.info.precision, depth: model.info.depth }, where);
  const jukebox =
    typeof model === 'string' ? await Jukebox.load(model, { device: options.device, precision: recipe.precision, signal: options.signal }) : model;
  try {
    const settings = settingsOfRecipe(recipe, { path });
    const rows: Float32Array[] = [];
    const predicted: string[] = [];
    const failed: ClipFailure[] = [];
    for (let i = 0; i < inputs.length; i += batchSize) {
      const items = inputs.slice(i, i + batchSize).map((input, k) => ({ key: String(i + k), input }));
      const decoded = await Promise.all(items.map((item) => decodeForModel(item, settings, jukebox)));
      const results = await runModel(jukebox, decoded, settings, options.signal);
      results.forEach((r, k) => {
        const input = items[k]!.input;
        if ('error' in r) {
          failed.push({ key: r.key, input, code: r.error.code, message: r.error.message });
          return;
        }
        rows.push(asStored(r.layers[recipe.layers[0]!]!.data, recipe.dtype));
        predicted.push(input);
      });
      options.onProgress?.({ done: predicted.length, failed: failed.length, total: inputs.length });
    }
    const dim = set.info.dim;
    const attention = set.info.segments !== undefined;
    // Attention probes read [segments, dim] per clip: clips of other lengths have other segment counts, padded to
    // the longest of the call.
    const odd = rows.findIndex((r) => (attention ? r.length % dim !== 0 || r.length === 0 : r.length !== dim));
    if (odd >= 0) {
      throw new DataError(
        'ERR_DATA_MISMATCH',
        `the features of ${predicted[odd]} have ${rows[odd]!.length} values; the probes take ${attention ? 'segments of ' : ''}${dim} (the recipe and the probes disagree)`,
        {
          input: predicted[odd],
        },
      );
    }
    const counts = Int32Array.from(rows, (r) => r.length / dim);
    const segments = attention ? Math.max(1, ...counts) : 1;
    const features = new Float32Array(rows.length * segments * dim);
    rows.forEach((r, k) => {
      features.set(r, k * segments * dim);
    });
    const padded = counts.some((c) => c < segments);
    const empty: Predictions = {
      instruments: options.instruments ?? set.instruments,
      n: 0,
      probabilities: new Float32Array(0),
      present: new Uint8Array(0),
      threshold: PROBE_THRESHOLD,
      clips: [],
    };
    const predictions = rows.length
      ? await set.predict(features, {
          n: rows.length,
          instruments: options.instruments,
          device: options.device,
          ...(attention ? { segments, ...(padded ? { validSegments: counts } : {}) } : {}),
        })
      : empty;
    return { ...predictions, inputs: predicted, failed, recipe };
  } finally {
    if (jukebox !== model) jukebox.dispose();
  }
}
