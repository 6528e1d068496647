// From features keyed by clip and a dataset's per-instrument partitions to a trained probe grid. A feature store
// holds one pooled vector per clip ([width]) or, for `pooling: 'segments'`, one [segments, width] matrix per clip;
// partitions name clips by key; the trainer wants one matrix plus row indices.
import { DataError } from '../errors';
import { recipeOfStoreSpec } from '../recipe';
import type { OpenMIC } from '../openmic';
import type { InstrumentPartition, PartitionOptions, SplitPart } from '../openmic';
import { trainProbeGrid, type ProbeSet, type ProbeTask, type TrainProbeGridOptions } from '../probes';
import type { FeatureStore } from '../store';

type TrainingOptions = Omit<TrainProbeGridOptions, 'features' | 'dim' | 'tasks' | 'recipe' | 'manifest' | 'segments' | 'validSegments' | 'missingClips'> & {
  /**
   * Train even when labelled clips of the partitions have no features (default false: DataError
   * ERR_DATA_MISSING_FEATURES naming how many and a few keys). The count goes into the probe set's
   * `info.missingClips`, and its reports say it.
   */
  allowMissing?: boolean;
};

export interface TrainFromStoreOptions extends TrainingOptions {
  dataset: OpenMIC;
  store: FeatureStore;
  partitions?: PartitionOptions;
}

export interface TrainFromStoreResult {
  probes: ProbeSet;
  partitions: InstrumentPartition[];
  /** Labelled clips that have no features in the store (failed or not extracted), left out (only with allowMissing). */
  missing: string[];
}

/** Features of some clips, in memory: one vector per clip ([clips, dim]) or segments ([clips, segments, dim]). */
export interface ClipFeatures {
  keys: readonly string[];
  data: Float32Array;
  dim: number;
  segments?: number;
  validSegments?: Int32Array;
}

export interface TrainFromFeaturesOptions extends TrainingOptions {
  dataset: OpenMIC;
  features: ClipFeatures;
  partitions?: PartitionOptions;
  /** Stored with the probe set as it is (trainFromStore: the store's manifest). */
  manifest?: Record<string, unknown>;
}

/** The refusal of training on partitions whose labelled clips lack features (unless allowMissing). */
function checkMissing(missing: string[], total: number, where: string, allowMissing: boolean | undefined): void {
  if (missing.length === 0 || allowMissing === true) return;
  const shown = missing.slice(0, 5).join(', ');
  throw new DataError(
    'ERR_DATA_MISSING_FEATURES',
    `${missing.length} of the ${total} labelled clips of the partitions have no features in ${where} (${shown}${missing.length > 5 ? ', ...' : ''}): ` +
      'extract them (or repair the store and extract again), or pass allowMissing: true (--allow-missing) to train without them, which the probe set and its report then record',
    { input: where },
  );
}

/** Row indices into the matrix for a split, dropping keys without features. */
function toSplit(part: SplitPart, rowOf: Map<string, number>): { rows: Int32Array; targets: Uint8Array } {
  const rows: number[] = [];
  const targets: number[] = [];
  part.keys.forEach((k, i) => {
    const r = rowOf.get(k);
    if (r !== undefined) {
      rows.push(r);
      targets.push(part.targets[i]!);
    }
  });
  return { rows: Int32Array.from(rows), targets: Uint8Array.from(targets) };
}

function wantedKeys(partitions: InstrumentPartition[]): Set<string> {
  const wanted = new Set<string>();
  for (const p of partitions) for (const s of [p.train, p.val, p.test]) for (const k of s.keys) wanted.add(k);
  return wanted;
}

function tasksOf(partitions: InstrumentPartition[], keys: readonly string[]): ProbeTask[] {
  const rowOf = new Map(keys.map((k, i) => [k, i]));
  return partitions.map((p) => ({ instrument: p.instrument, train: toSplit(p.train, rowOf), val: toSplit(p.val, rowOf), test: toSplit(p.test, rowOf) }));
}

/**
 * Trains the grid on a feature store's clips (a segments store trains attention probes on [segments, width] per
 * clip, zero-padded where clips have fewer segments). The store's recipe goes into the probe set.
 */
export async function trainFromStore(options: TrainFromStoreOptions): Promise<TrainFromStoreResult> {
  const { dataset, store, partitions: partitionOptions, allowMissing, ...train } = options;
  const partitions = dataset.partitions(partitionOptions ?? {});
  const wanted = wantedKeys(partitions);
  // A damaged store whose records cannot say which clips are gone would make "missing" a guess.
  store.assertSound('training on it');
  const available = [...wanted].filter((k) => store.has(k)).sort();
  const missing = [...wanted].filter((k) => !store.has(k)).sort();
  if (!available.length) {
    throw new DataError('ERR_DATA_MISMATCH', `the feature store at ${store.dir} holds none of the ${wanted.size} labelled clips of the dataset`, {
      input: store.dir,
    });
  }
  checkMissing(missing, wanted.size, `the feature store at ${store.dir}`, allowMissing);
  let features: { data: Float32Array; dim: number; segments?: number; validSegments?: Int32Array };
  if (store.spec.pooling === 'segments') {
    const m = store.readSegments(available);
    features = { data: m.data, dim: m.width, segments: m.segments, validSegments: m.validSegments };
  } else {
    const m = store.readMatrix(available);
    features = { data: m.data, dim: m.dim };
  }
  const probes = await trainProbeGrid({
    ...train,
    features: features.data,
    dim: features.dim,
    segments: features.segments,
    validSegments: features.validSegments,
    tasks: tasksOf(partitions, available),
    // The store's spec is the recipe of its features (undefined for a store calmkit's extraction did not make).
    recipe: recipeOfStoreSpec(store.spec, store.dir),
    manifest: { store: store.manifest(), partitions: partitionOptions ?? {}, missing: missing.length },
    missingClips: missing.length,
  });
  return { probes, partitions, missing };
}

/**
 * Trains the grid on features given in memory for the dataset's clips (e.g. the release's VGGish features): the
 * same partitions and protocol as trainFromStore, without a recipe (predictAudio cannot retrace such features).
 */
export async function trainFromFeatures(options: TrainFromFeaturesOptions): Promise<TrainFromStoreResult> {
  const { dataset, features, partitions: partitionOptions, manifest, allowMissing, ...train } = options;
  const partitions = dataset.partitions(partitionOptions ?? {});
  const have = new Set(features.keys);
  const wanted = wantedKeys(partitions);
  const missing = [...wanted].filter((k) => !have.has(k)).sort();
  checkMissing(missing, wanted.size, 'the features given', allowMissing);
  const probes = await trainProbeGrid({
    ...train,
    features: features.data,
    dim: features.dim,
    segments: features.segments,
    validSegments: features.validSegments,
    tasks: tasksOf(partitions, features.keys),
    manifest: { ...manifest, partitions: partitionOptions ?? {}, missing: missing.length },
    missingClips: missing.length,
  });
  return { probes, partitions, missing };
}
