// From a feature store and a dataset's per-instrument partitions to a trained probe grid. The store holds one
// pooled vector per clip; partitions name clips by key; the trainer wants one matrix plus row indices.
import { DataError } from '../errors';
import { recipeOfStoreSpec } from '../extraction/recipe';
import type { OpenMIC } from '../openmic';
import type { InstrumentPartition, PartitionOptions, SplitPart } from '../openmic';
import { trainProbeGrid, type ProbeSet, type ProbeTask, type TrainProbeGridOptions } from '../probes';
import type { FeatureStore } from '../store/feature-store';

export interface TrainFromStoreOptions extends Omit<TrainProbeGridOptions, 'features' | 'dim' | 'tasks' | 'recipe' | 'manifest'> {
  dataset: OpenMIC;
  store: FeatureStore;
  partitions?: PartitionOptions;
}

export interface TrainFromStoreResult {
  probes: ProbeSet;
  partitions: InstrumentPartition[];
  /** Labelled clips that have no features in the store (failed or not extracted), left out of training. */
  missing: string[];
}

/** Row indices into the matrix for a split, dropping keys without features. */
function toSplit(part: SplitPart, rowOf: Map<string, number>): { rows: Int32Array; targets: Uint8Array } {
  const rows: number[] = [];
  const targets: number[] = [];
  part.keys.forEach((k, i) => {
    const r = rowOf.get(k);
    if (r !== undefined) {
      rows.push(r);
      targets.push(part.targets[i]);
    }
  });
  return { rows: Int32Array.from(rows), targets: Uint8Array.from(targets) };
}

export async function trainFromStore(options: TrainFromStoreOptions): Promise<TrainFromStoreResult> {
  const { dataset, store, partitions: partitionOptions, ...train } = options;
  const partitions = dataset.partitions(partitionOptions ?? {});
  const wanted = new Set<string>();
  for (const p of partitions) for (const s of [p.train, p.val, p.test]) for (const k of s.keys) wanted.add(k);
  const available = [...wanted].filter((k) => store.has(k)).sort();
  const missing = [...wanted].filter((k) => !store.has(k)).sort();
  if (!available.length) {
    throw new DataError('ERR_DATA_MISMATCH', `the feature store at ${store.dir} holds none of the ${wanted.size} labelled clips of the dataset`, {
      input: store.dir,
    });
  }
  const matrix = store.readMatrix(available);
  const rowOf = new Map(available.map((k, i) => [k, i]));
  const tasks: ProbeTask[] = partitions.map((p) => ({
    instrument: p.instrument,
    train: toSplit(p.train, rowOf),
    val: toSplit(p.val, rowOf),
    test: toSplit(p.test, rowOf),
  }));
  const probes = await trainProbeGrid({
    ...train,
    features: matrix.data,
    dim: matrix.dim,
    tasks,
    // The store's spec is the recipe of its features (undefined for a store calmkit's extraction did not make).
    recipe: recipeOfStoreSpec(store.spec, store.dir),
    manifest: { store: store.manifest(), partitions: partitionOptions ?? {}, missing: missing.length },
  });
  return { probes, partitions, missing };
}
