// calmkit's public API. No top-level await: this entry loads from both require() and import.
export * from './errors';
export { loadAudio, decodeAudio, writeAudio, resolveFormatting, MODEL_SAMPLE_RATE, PAPER_TILE_SECONDS, PAPER_UPSAMPLE_FACTOR, FORMATTINGS } from './audio';
export type { AudioContainer, AudioEncoding, WriteAudioOptions, AudioInput, LoadAudioOptions, LoadedAudio, DecodedAudio, Formatting } from './audio';
export { doctor } from './doctor';
export type { DoctorReport } from './doctor';
export { Jukebox, CALM_LAYER, jukeboxTimingBins, jukeboxAttention } from './jukebox';
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
