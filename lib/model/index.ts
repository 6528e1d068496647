// The Jukebox model: a calmkit checkpoint loaded on a device (the Jukebox facade) and a checkpoint's identity.
export { Jukebox, CALM_LAYER } from './jukebox';
export type {
  JukeboxDevice,
  JukeboxPrecision,
  JukeboxPooling,
  JukeboxLoadOptions,
  JukeboxInfo,
  JukeboxCheckpointInfo,
  JukeboxInput,
  JukeboxProgress,
  JukeboxExtractOptions,
  LayerFeatures,
  JukeboxFeatures,
  JukeboxChunk,
} from './jukebox';
export { modelId, isModelId, MODEL_ID_PREFIX } from './checkpoint-id';
