// calmkit's public API. No top-level await: this entry loads from both require() and import.
export * from './errors';
export { loadAudio, decodeAudio, writeAudio, resolveFormatting, MODEL_SAMPLE_RATE, PAPER_TILE_SECONDS, PAPER_UPSAMPLE_FACTOR, FORMATTINGS } from './audio';
export type { AudioContainer, AudioEncoding, WriteAudioOptions, AudioInput, LoadAudioOptions, LoadedAudio, DecodedAudio, Formatting } from './audio';
export { doctor } from './runtime/doctor';
export type { DoctorReport } from './runtime/doctor';
// Data: .npy/.npz, the feature store, OpenMIC-2018, the demo dataset.
export { readNpy, writeNpy, encodeNpy, decodeNpy, readNpyHeader, readNpyRows, NPY_DTYPES } from './formats/npy';
export type { NpyArray, NpyDtype, NpyData, NpyHeader, EncodeNpyOptions } from './formats/npy';
export { readNpz } from './formats/npz';
export type { NpzMember, NpzStringArray, ReadNpzOptions } from './formats/npz';
export { toHalfBits, fromHalfBits, float32ToHalf, halfToFloat32 } from './formats/float16';
export { FeatureStore, StoreWriter } from './store/feature-store';
export type { StoreSpec, StoreDtype, StoreEntry, FailureInfo, FailureRecord, CorruptShard, VerifyReport, WriterOptions, OpenStoreOptions } from './store/feature-store';
export * from './openmic';
export { generateDemoData, planDemoData } from './demo';
export type { DemoDataOptions, DemoDataResult, DemoClip } from './demo';
export { oggVorbisInfo } from './formats/ogg';
export type { OggVorbisInfo } from './formats/ogg';
export { Jukebox, CALM_LAYER } from './model/jukebox';
export { jukeboxTimingBins, jukeboxAttention } from './model/testing';
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
} from './model/jukebox';
export { modelId, isModelId } from './model';
export {
  resolveSettings,
  settingsHash,
  settingsIdentity,
  layerStoreSpec,
  layerDir,
  datasetItems,
  openmicItems,
  fileItems,
  parseShard,
  selectShard,
  LayerStores,
  LayerWriters,
  extractToStore,
} from './extraction';
export type { ExtractionSettings, SettingsInput, WorkItem, Shard, ExtractToStoreOptions, ExtractSummary, PipelineProgress, ClipFailure } from './extraction';
// The BullMQ queue (addJobs, ExtractionWorker, queueStatus) is the 'calmkit/queue' entry: it loads bullmq and
// ioredis, which users of the extractor alone should not pay for.
export {
  trainProbeGrid,
  ProbeSet,
  PAPER_GRID,
  PROBE_THRESHOLD,
  expandGrid,
  binaryMetrics,
  macroMetrics,
} from './probes';
export type {
  ProbeConfig,
  ProbeGrid,
  ProbeSplit,
  ProbeTask,
  ProbeProgress,
  ProbeDevice,
  TrainProbeGridOptions,
  ProbeNet,
  ConfigResult,
  ClassCounts,
  InstrumentResult,
  SkippedInstrument,
  TableRow,
  ProbeTable,
  Predictions,
  PredictOptions,
  ProbeSetInfo,
  BinaryMetrics,
  MacroMetrics,
} from './probes';
export { writeReport, tableMarkdown, tableCsv, tableJson, DEFAULT_FONT_DIR } from './probes/report';
export type { ReportOptions } from './probes/report';
