// What a set of features IS. The extraction settings (one definition, one checker, the paper's defaults filled
// in) and the recipe: the versioned record of everything that changes the numbers, written into every feature
// store (as the store's spec) and every probe set, and read back by the exact inverse of that writing, so that
// predicting from audio can retrace the path the training features took.
import crypto from 'node:crypto';
import { FORMATTINGS, resolveFormatting, type Formatting } from './audio';
import { DataError, describeValue, invalidArgument, ModelError, oneOf, optionsObject } from './errors';
import { DEFAULT_PRECISION, PRECISIONS, resolveExtractOptions, type JukeboxPooling, type JukeboxPrecision, type JukeboxWindows } from './model';
import { canonicalJson, STORE_DTYPES, type StoreDtype, type StoreSpec } from './store';

/** The version of the FeatureRecipe record this calmkit writes and reads. */
export const RECIPE_VERSION = 1;

/**
 * How a set of features was made: everything that changes their numbers, and nothing else (not the device, not
 * where the model file lies). Version 1. A later feature that changes the numbers adds an optional field, so a
 * record without it still reads as what it was; a change of meaning bumps `version`.
 */
export interface FeatureRecipe {
  version: typeof RECIPE_VERSION;
  /** The checkpoint's identity (modelId). */
  model: { id: string };
  /** fp16/bf16 change the features materially. */
  precision: JukeboxPrecision;
  /** 1-based, sorted, distinct. A feature store's recipe has one layer. */
  layers: number[];
  pooling: JukeboxPooling;
  /** Segments pooling: exactly one of the two. */
  segmentTokens?: number;
  segmentSeconds?: number;
  /** With the paper's defaults filled in (tile/pad: targetSeconds 62, upsample: factor 6.2). */
  formatting: Formatting;
  factor?: number;
  targetSeconds?: number;
  windows: JukeboxWindows;
  /** How the features are stored (float16 rounds them). */
  dtype: StoreDtype;
}

/** What a run is asked for: a recipe's fields, with the model also described (`path`, `preset`: not identity). */
export interface ExtractionSettings extends Omit<FeatureRecipe, 'version' | 'model'> {
  /** `path` and `preset` describe, `id` identifies (only the id enters the hash: paths differ per machine). */
  model: { id: string; path?: string; preset?: string };
}

export interface SettingsInput {
  model: { id: string; path?: string; preset?: string };
  precision?: JukeboxPrecision;
  layers?: number[];
  pooling?: JukeboxPooling;
  segmentTokens?: number;
  segmentSeconds?: number;
  formatting?: Formatting;
  factor?: number;
  targetSeconds?: number;
  windows?: JukeboxWindows;
  dtype?: StoreDtype;
  /** Depth of the checkpoint, when known: layers are checked against it and the default is clamped to it. */
  modelLayers?: number;
}

/** Validates settings and fills in defaults, so that equal runs get equal settings (and hashes). */
export function resolveSettings(input: SettingsInput): ExtractionSettings {
  if (!input?.model || typeof input.model.id !== 'string' || input.model.id === '') throw invalidArgument('settings need model.id');
  // A recipe records what the features are: `auto` is what a device would pick, so it is resolved first.
  if ((input.precision as string) === 'auto')
    throw invalidArgument("precision 'auto' cannot be part of a recipe: load the model with it and record the loaded model's info.precision", 'precision');
  const precision = oneOf('precision', PRECISIONS, input.precision ?? DEFAULT_PRECISION);
  const model = input.modelLayers !== undefined ? { depth: input.modelLayers, name: `model ${input.model.path ?? input.model.id}` } : undefined;
  const extract = resolveExtractOptions(input, model);
  const formatting = oneOf('formatting', FORMATTINGS, input.formatting ?? 'tile');
  const fitted = resolveFormatting({ formatting, factor: input.factor, targetSeconds: input.targetSeconds });
  const dtype = oneOf('dtype', STORE_DTYPES, input.dtype ?? 'float32');
  const out: ExtractionSettings = {
    model: { id: input.model.id },
    precision,
    layers: extract.layers,
    pooling: extract.pooling,
    formatting,
    windows: extract.windows,
    dtype,
  };
  if (input.model.path !== undefined) out.model.path = input.model.path;
  if (input.model.preset !== undefined) out.model.preset = input.model.preset;
  if (extract.segmentTokens !== undefined) out.segmentTokens = extract.segmentTokens;
  if (extract.segmentSeconds !== undefined) out.segmentSeconds = extract.segmentSeconds;
  if (fitted.factor !== undefined) out.factor = fitted.factor;
  if (fitted.targetSeconds !== undefined) out.targetSeconds = fitted.targetSeconds;
  return out;
}

/** @internal What the hash covers: the settings minus descriptive fields (model path and preset). */
export function settingsIdentity(s: ExtractionSettings | FeatureRecipe): Record<string, unknown> {
  const o = optionsObject('settings', s);
  if (o.model === null || typeof o.model !== 'object' || typeof o.model.id !== 'string') {
    throw invalidArgument(`settings.model must be { id: string, ... }; got ${describeValue(o.model)}`, 'settings');
  }
  const { version: _version, ...rest } = s as FeatureRecipe;
  return { ...rest, model: { id: s.model.id } };
}

/** 24 hex digits (96 bits) of sha256 over the canonical identity: stable across machines and key order. */
export function settingsHash(s: ExtractionSettings | FeatureRecipe): string {
  return crypto
    .createHash('sha256')
    .update(`calmkit-settings-v1:${canonicalJson(settingsIdentity(s))}`)
    .digest('hex')
    .slice(0, 24);
}

/** The recipe of the features a run with these settings makes. */
export function recipeOf(settings: ExtractionSettings): FeatureRecipe {
  const recipe = { version: RECIPE_VERSION, ...settingsIdentity(settings) } as FeatureRecipe;
  return JSON.parse(canonicalJson(recipe)) as FeatureRecipe;
}

/**
 * A recipe read from a file, checked: the right version, and exactly what resolveSettings makes of it (every
 * value allowed, every default filled in, nothing extra). DataError ERR_DATA_RECIPE naming `label` otherwise.
 */
export function checkRecipe(value: unknown, label: string): FeatureRecipe {
  const fail = (why: string): never => {
    throw new DataError('ERR_DATA_RECIPE', `${label}: not a calmkit feature recipe: ${why}`, { input: label });
  };
  const r = value as FeatureRecipe;
  if (!r || typeof r !== 'object') fail('not an object');
  if (r.version !== RECIPE_VERSION)
    fail(
      `version ${String(r.version)} (this calmkit reads version ${RECIPE_VERSION}${typeof r.version === 'number' && r.version > RECIPE_VERSION ? '; it was written by a newer calmkit' : ''})`,
    );
  let resolved: ExtractionSettings;
  try {
    resolved = resolveSettings(r as SettingsInput);
  } catch (err) {
    return fail((err as Error).message);
  }
  const recipe = recipeOf(resolved);
  if (canonicalJson(recipe) !== canonicalJson(r)) fail(`${canonicalJson(r)} is not in its resolved form ${canonicalJson(recipe)}`);
  return recipe;
}

// --- the recipe in a feature store's spec -------------------------------------------------------------------
//
// A store's spec keeps the layout it has had since the first stores (model id, layers, pooling, formatting,
// dtype, and the rest flat in `extra` with the settings hash), so stores written before the recipe existed are
// read, compared and resumed unchanged. A version other than 1 would be written as `extra.recipe`.

const EXTRA_FIELDS = ['precision', 'windows', 'segmentTokens', 'segmentSeconds', 'factor', 'targetSeconds'] as const;

/** The spec of the feature store that holds features made by `recipe`. */
export function storeSpecOf(recipe: FeatureRecipe): StoreSpec {
  const extra: Record<string, string | number> = { precision: recipe.precision, windows: recipe.windows, settings: settingsHash(recipe) };
  for (const f of EXTRA_FIELDS) if (recipe[f] !== undefined) extra[f] = recipe[f]!;
  return { model: { id: recipe.model.id }, layers: recipe.layers.slice(), pooling: recipe.pooling, formatting: recipe.formatting, dtype: recipe.dtype, extra };
}

/** The spec of one layer's store of a run. It never depends on the other layers the run asked for. */
export function layerStoreSpec(settings: ExtractionSettings, layer: number): StoreSpec {
  return storeSpecOf(recipeOf({ ...settings, layers: [layer] }));
}

/**
 * The recipe a feature store's spec records: the exact inverse of storeSpecOf (storeSpecOf(recipe) gives the
 * same spec back, settings hash included). DataError ERR_DATA_RECIPE naming `label` for a spec that calmkit's
 * extraction did not write (or that was edited).
 */
export function recipeFromStoreSpec(spec: StoreSpec, label = 'feature store spec'): FeatureRecipe {
  const fail = (why: string): never => {
    throw new DataError('ERR_DATA_RECIPE', `${label}: ${why}`, { input: label });
  };
  const extra = spec?.extra ?? {};
  if (extra.recipe !== undefined && extra.recipe !== RECIPE_VERSION) {
    fail(`recipe version ${String(extra.recipe)} (this calmkit reads version ${RECIPE_VERSION}; the store was written by a newer calmkit)`);
  }
  if (typeof extra.settings !== 'string') fail('the spec records no extraction settings (a store not made by calmkit extract?)');
  const candidate: Record<string, unknown> = {
    version: RECIPE_VERSION,
    model: { id: spec.model?.id },
    layers: spec.layers,
    pooling: spec.pooling,
    formatting: spec.formatting,
    dtype: spec.dtype,
  };
  for (const f of EXTRA_FIELDS) if (extra[f] !== undefined) candidate[f] = extra[f];
  const recipe = checkRecipe(candidate, label);
  const again = storeSpecOf(recipe);
  if (canonicalJson(again) !== canonicalJson(spec)) {
    fail(
      `the spec does not match the recipe it records (settings hash ${String(extra.settings)}, recomputed ${String(again.extra?.settings)}; an edited or foreign store.json?)`,
    );
  }
  return recipe;
}

/** A store spec's recipe, or undefined when the store was not made by calmkit's extraction (no settings recorded). */
export function recipeOfStoreSpec(spec: StoreSpec, label?: string): FeatureRecipe | undefined {
  return typeof spec?.extra?.settings === 'string' ? recipeFromStoreSpec(spec, label) : undefined;
}

/** The settings a recipe was made with, as a run would ask for them (the model described by `model`, if given). */
export function settingsOfRecipe(recipe: FeatureRecipe, model?: { path?: string; preset?: string }): ExtractionSettings {
  const { version: _version, ...rest } = recipe;
  return { ...rest, layers: recipe.layers.slice(), model: { id: recipe.model.id, ...model } };
}

/** Something a recipe (or extraction settings) asks of a model that the model does not give. */
export interface ModelMismatch {
  field: 'model' | 'precision' | 'layers';
  /** What the recipe asks for, and what the model has, in words ("fp32", "layers 36", "1..6"). */
  wanted: string;
  has: string;
}

/**
 * Whether `model` can make the features `recipe` describes: the same checkpoint (by id), the same precision (when the
 * model is loaded: `precision` given) and every layer within its depth (when `depth` is given). The one test of "does
 * this model serve this recipe", for predictAudio and the queue's worker.
 */
export function modelMismatches(
  recipe: { model: { id: string }; precision: JukeboxPrecision; layers: readonly number[] },
  model: { id: string; precision?: JukeboxPrecision; depth?: number },
): ModelMismatch[] {
  const out: ModelMismatch[] = [];
  if (recipe.model.id !== model.id) out.push({ field: 'model', wanted: recipe.model.id, has: model.id });
  if (model.precision !== undefined && model.precision !== recipe.precision) out.push({ field: 'precision', wanted: recipe.precision, has: model.precision });
  const deep = model.depth === undefined ? [] : recipe.layers.filter((l) => l > model.depth!);
  if (deep.length) out.push({ field: 'layers', wanted: `layers ${deep.join(',')}`, has: `1..${model.depth}` });
  return out;
}

/**
 * A ModelError unless `model` (at `path`) serves `recipe`: ERR_MODEL_MISMATCH for another checkpoint or layers it does
 * not have, ERR_MODEL_PRECISION for a loaded model at another precision. `what` names the recipe's holder (a probe
 * set).
 */
export function checkModelServes(
  recipe: { model: { id: string }; precision: JukeboxPrecision; layers: readonly number[] },
  model: { id: string; path: string; precision?: JukeboxPrecision; depth?: number },
  what: string,
): void {
  const m = modelMismatches(recipe, model)[0];
  if (!m) return;
  const input = { input: model.path };
  if (m.field === 'model')
    throw new ModelError('ERR_MODEL_MISMATCH', `${what} was trained on features of model ${m.wanted}; ${model.path} is model ${m.has}`, input);
  if (m.field === 'precision') {
    throw new ModelError(
      'ERR_MODEL_PRECISION',
      `${what} was trained on features made at precision ${m.wanted}; the model ${model.path} runs at ${m.has} (load it with precision '${m.wanted}')`,
      input,
    );
  }
  throw new ModelError('ERR_MODEL_MISMATCH', `${what} was trained on features of ${m.wanted}; the model ${model.path} has layers ${m.has}`, input);
}
