// calmkit's public API. No top-level await: this entry loads from both require() and import.
export * from './errors';
export { loadAudio, decodeAudio, writeAudio, resolveFormatting, MODEL_SAMPLE_RATE, PAPER_TILE_SECONDS, PAPER_UPSAMPLE_FACTOR, FORMATTINGS } from './audio';
export type { AudioContainer, AudioEncoding, WriteAudioOptions, AudioInput, LoadAudioOptions, LoadedAudio, DecodedAudio, Formatting } from './audio';
export { doctor } from './doctor';
export type { DoctorReport } from './doctor';
// Data: .npy/.npz, the feature store, OpenMIC-2018, the demo dataset.
export { readNpy, writeNpy, encodeNpy, decodeNpy, readNpyHeader, readNpyRows, NPY_DTYPES } from './npy';
export type { NpyArray, NpyDtype, NpyData, NpyHeader, EncodeNpyOptions } from './npy';
export { readNpz } from './npz';
export type { NpzMember, NpzStringArray, ReadNpzOptions } from './npz';
export { toHalfBits, fromHalfBits, float32ToHalf, halfToFloat32 } from './float16';
export { FeatureStore, StoreWriter } from './store';
export type { StoreSpec, StoreDtype, StoreEntry, FailureInfo, FailureRecord, CorruptShard, VerifyReport, WriterOptions, OpenStoreOptions } from './store';
export * from './openmic';
export { generateDemoData, planDemoData, OPENMIC_INSTRUMENTS } from './demo-data';
export type { DemoDataOptions, DemoDataResult, DemoClip } from './demo-data';
export { oggVorbisInfo } from './ogg';
export type { OggVorbisInfo } from './ogg';
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
export {
  modelId,
  isModelId,
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
} from './pipeline';
export type { ExtractionSettings, SettingsInput, WorkItem, Shard, ExtractToStoreOptions, ExtractSummary, PipelineProgress, ClipFailure } from './pipeline';
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
