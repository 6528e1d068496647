// The stores of a run: one feature store per layer, `<root>/layer-<L>/` (a store entry has one shape, and the
// study reads one layer as one [N, width] matrix), and writers that publish every layer together.
//
// A clip counts as done only when every requested layer's store holds it; a crash between two layers' flushes
// just redoes that clip for the layers that lack it (put() skips the others), so no store ever holds a partial
// or duplicated entry.
import path from 'node:path';
import { CalmkitError } from '../errors';
import { FeatureStore, type StoreWriter } from '../store';
import { layerStoreSpec, type ExtractionSettings } from '../recipe';

export function layerDir(root: string, layer: number): string {
  return path.join(root, `layer-${layer}`);
}

/** The per-layer stores of one settings identity under one root. */
export class LayerStores {
  readonly root: string;
  readonly settings: ExtractionSettings;
  readonly stores: ReadonlyMap<number, FeatureStore>;

  private constructor(root: string, settings: ExtractionSettings, stores: Map<number, FeatureStore>) {
    this.root = root;
    this.settings = settings;
    this.stores = stores;
  }

  /** Opens (creating with `create`) `<root>/layer-<L>/` for each layer; a store with other settings is a DataError. */
  static open(root: string, settings: ExtractionSettings, options: { create?: boolean } = {}): LayerStores {
    const stores = new Map<number, FeatureStore>();
    for (const layer of settings.layers) {
      const spec = layerStoreSpec(settings, layer);
      stores.set(layer, FeatureStore.open(layerDir(root, layer), options.create ? { create: spec } : { expect: spec }));
    }
    return new LayerStores(root, settings, stores);
  }

  /** In every layer's store (as of the last refresh). */
  has(key: string): boolean {
    for (const s of this.stores.values()) if (!s.has(key)) return false;
    return true;
  }

  refresh(): void {
    for (const s of this.stores.values()) s.refresh();
  }

  writers(options: { id?: string; shardSize?: number } = {}): LayerWriters {
    return new LayerWriters(this, options);
  }

  updateManifests(): void {
    for (const s of this.stores.values()) s.updateManifest();
  }
}

/** One writer per layer store, all with the same writer id; flushing publishes one shard per layer. */
export class LayerWriters {
  readonly id: string;
  private readonly writers: Map<number, StoreWriter>;
  private buffered = 0;

  constructor(stores: LayerStores, options: { id?: string; shardSize?: number }) {
    this.writers = new Map();
    let id: string | undefined = options.id;
    for (const [layer, store] of stores.stores) {
      // Automatic flushes stay off (huge shardSize): the caller decides when a shard is published, so that
      // "flushed" means "durable in every layer".
      const w = store.writer({ id, shardSize: Number.MAX_SAFE_INTEGER });
      id = w.id;
      this.writers.set(layer, w);
    }
    this.id = id!;
  }

  /** Entries buffered since the last flush. */
  get pending(): number {
    return this.buffered;
  }

  put(key: string, layers: Record<number, { data: Float32Array; shape: number[] }>): void {
    for (const [layer, w] of this.writers) {
      const f = layers[layer];
      if (!f) throw new CalmkitError('ERR_INTERNAL', `features of '${key}' lack layer ${layer}`, { input: key });
      w.put(key, f.data, f.shape);
    }
    this.buffered++;
  }

  fail(key: string, info: { input?: string; code: string; message: string }): void {
    for (const w of this.writers.values()) w.fail(key, info);
    this.buffered++;
  }

  /** Publishes what is buffered, durably (fsynced shard + sidecar, no-clobber links) in every layer. */
  flush(options: { manifest?: boolean } = {}): void {
    for (const w of this.writers.values()) w.flush({ manifest: options.manifest ?? false });
    this.buffered = 0;
  }

  close(options: { manifest?: boolean } = {}): void {
    for (const w of this.writers.values()) w.close({ manifest: options.manifest ?? true });
    this.buffered = 0;
  }
}
