// calmkit's public API. No top-level await: this entry loads from both require() and import.
// Other entries: `calmkit/formats` (.npy/.npz, float16, Ogg headers) and `calmkit/queue` (BullMQ scale-out, which
// loads bullmq and ioredis that users of the extractor alone should not pay for).
export {
  CalmkitError,
  ArgumentError,
  AudioError,
  ModelError,
  DeviceError,
  DataError,
  ProbeError,
  QueueError,
  BenchError,
  AbortError,
  DisposedError,
  NativeError,
  errorClassFor,
} from './errors';

// What calmkit runs on.
export { doctor, gemmPeak, calmkitVersion } from './runtime';
export type { AutoPrecision, DoctorReport, GemmPeakOptions, Device } from './runtime';

// The audio front-end.
export { loadAudio, decodeAudio, writeAudio, listAudioFiles, MODEL_SAMPLE_RATE, PAPER_TILE_SECONDS, PAPER_UPSAMPLE_FACTOR, FORMATTINGS, AUDIO_EXTENSIONS } from './audio';
export type { AudioContainer, AudioEncoding, WriteAudioOptions, AudioInput, LoadAudioOptions, LoadedAudio, DecodedAudio, Formatting } from './audio';

// The model.
export { Jukebox, CALM_LAYER, JUKEBOX_PRESETS, PRECISIONS, PRECISION_CHOICES, POOLINGS, WINDOWS, defaultLayers, modelId, isModelId } from './model';
export type {
  JukeboxDevice,
  JukeboxPrecision,
  PrecisionChoice,
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
} from './model';

// Extraction into feature stores, and the recipe of a set of features.
export { resolveSettings, settingsHash, recipeOf, recipeFromStoreSpec, datasetItems, fileItems, LayerStores, extractToStore, RECIPE_VERSION } from './extraction';
export type { ExtractionSettings, SettingsInput, FeatureRecipe, WorkItem, ExtractToStoreOptions, ExtractSummary, PipelineProgress, ClipFailure } from './extraction';
export { FeatureStore, StoreWriter, STORE_DTYPES } from './store';
export type { StoreSpec, StoreDtype, StoreEntry, FailureInfo, FailureRecord, CorruptShard, VerifyReport, WriterOptions, OpenStoreOptions } from './store';

// Datasets.
export * from './openmic';
export { generateDemoData, planDemoData } from './demo';
export type { DemoDataOptions, DemoDataResult, DemoClip } from './demo';

// Probes, and the study's way from stored features to probes and from new audio to probabilities.
export {
  trainProbeGrid,
  ProbeSet,
  PAPER_GRID,
  ATTENTION_GRID,
  PROBE_THRESHOLD,
  MATMUL_PRECISIONS,
  expandGrid,
  configLabel,
  binaryMetrics,
  macroMetrics,
  writeReport,
  tableMarkdown,
  tableCsv,
  tableJson,
  DEFAULT_FONT_DIR,
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
  ProbeLayer,
  ConfigResult,
  ClassCounts,
  InstrumentResult,
  SkippedInstrument,
  TableRow,
  ProbeTable,
  Predictions,
  AttentionPredictions,
  PredictOptions,
  ProbeSetInfo,
  SegmentTimes,
  MatmulPrecision,
  BinaryMetrics,
  MacroMetrics,
  ReportOptions,
} from './probes';
export { trainFromStore, trainFromFeatures, predictAudio } from './study';
export type { TrainFromStoreOptions, TrainFromStoreResult, TrainFromFeaturesOptions, ClipFeatures, PredictAudioOptions, AudioPredictions } from './study';

// Benchmarks (`calmkit bench`, docs/bench.md): the native engine's measurements and the reports' schema.
export { benchExtract, benchProbes, benchPipeline, readBenchReport, checkBenchReport, BENCH_SCHEMA, BENCH_SCHEMA_VERSION, REFERENCE_MODES, PIPELINE_BUSY_GOAL } from './bench';
export type { ExtractBenchOptions, ProbeBenchOptions, PipelineBenchOptions, ReferenceMode, BenchReport, ExtractReport, ProbeReport, PipelineReport, ExtractRow, ProbeRow, PipelineRow, BenchStat, BenchMachine, BenchPeak, BenchKind } from './bench';
