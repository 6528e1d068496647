// The Jukebox model: a calmkit checkpoint loaded on a device (the Jukebox facade), the extraction options it takes
// (their allowed values, defaults and checker), and a checkpoint's identity.
export { Jukebox, CALM_LAYER, JUKEBOX_PRESETS, segmentTokensOf } from './jukebox';
export { PRECISIONS, PRECISION_CHOICES, DEFAULT_PRECISION, POOLINGS, WINDOWS, defaultLayers, resolveExtractOptions } from './options';
export type { PrecisionChoice } from './options';
export type {
  JukeboxDevice,
  JukeboxPrecision,
  JukeboxPooling,
  JukeboxWindows,
  JukeboxPreset,
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
