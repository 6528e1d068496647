// Extraction runs: what the features are (the recipe), which clips a run covers, the per-layer stores, and the
// loop that fills them. The BullMQ queue is apart (extraction/queue.ts, the `calmkit/queue` entry).
export {
  resolveSettings,
  settingsHash,
  recipeOf,
  checkRecipe,
  storeSpecOf,
  recipeFromStoreSpec,
  recipeOfStoreSpec,
  settingsOfRecipe,
  RECIPE_VERSION,
} from '../recipe';
export type { ExtractionSettings, SettingsInput, FeatureRecipe } from '../recipe';
export { datasetItems, openmicItems, fileItems, parseShard, selectShard } from './work-items';
export type { WorkItem, Shard } from './work-items';
export { LayerStores, LayerWriters, layerDir } from './layer-stores';
export { extractToStore, decodeForModel, runModel, clipsInFlight } from './run';
export type { ExtractToStoreOptions, ExtractSummary, PipelineProgress, ClipFailure, Decoded, ClipResult } from './run';
