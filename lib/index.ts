// calmkit's public face: what users call. No top-level await: this entry loads from both require() and import.
// Everything else stays reachable through its folder's entry (package.json "exports"): `calmkit/model`,
// `calmkit/extraction`, `calmkit/store`, `calmkit/openmic`, `calmkit/probes`, `calmkit/study`, `calmkit/runtime`,
// `calmkit/demo`, `calmkit/formats` (.npy/.npz, float16, Ogg headers; no addon) and `calmkit/queue` (BullMQ
// scale-out, which loads bullmq and ioredis that users of the extractor alone should not pay for).

// Errors: one family, stable codes.
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
  CALMKIT_ERROR_CODES,
} from './errors';
export type { CalmkitErrorCode } from './errors';

// What calmkit runs on.
export { doctor, calmkitVersion, DEFAULT_DEVICE } from './runtime';
export type { DoctorReport, Device } from './runtime';

// The audio front-end.
export { loadAudio, decodeAudio, writeAudio, listAudioFiles, FORMATTINGS, AUDIO_EXTENSIONS } from './audio';
export type { AudioInput, LoadAudioOptions, LoadedAudio, DecodedAudio, Formatting } from './audio';

// The model.
export { Jukebox, CALM_LAYER, PRECISIONS, DEFAULT_PRECISION, POOLINGS, WINDOWS, modelId } from './model';
export type {
  JukeboxPrecision,
  PrecisionChoice,
  JukeboxPooling,
  JukeboxWindows,
  JukeboxLoadOptions,
  JukeboxInfo,
  JukeboxInput,
  JukeboxProgress,
  JukeboxExtractOptions,
  LayerFeatures,
  JukeboxFeatures,
  JukeboxChunk,
} from './model';

// Extraction into feature stores, and the recipe of a set of features.
export { extractToStore, resolveSettings, datasetItems, fileItems } from './extraction';
export type { ExtractionSettings, FeatureRecipe, WorkItem, ExtractToStoreOptions, ExtractSummary } from './extraction';
export { FeatureStore } from './store';
export type { StoreSpec, VerifyReport } from './store';

// Datasets.
export { OpenMIC, OPENMIC_INSTRUMENTS } from './openmic';
export type { OpenMICOptions, PartitionOptions, InstrumentPartition } from './openmic';
export { generateDemoData } from './demo';
export type { DemoDataOptions, DemoDataResult } from './demo';

// Probes: the grid, the trained set, its report.
export { trainProbeGrid, ProbeSet, PAPER_GRID, ATTENTION_GRID, TRAINING_DEFAULTS, writeReport } from './probes';
export type {
  ProbeConfig,
  ProbeGrid,
  ProbeSplit,
  ProbeTask,
  ProbeProgress,
  TrainProbeGridOptions,
  ProbeNet,
  Predictions,
  PredictOptions,
  ProbeTable,
  TableRow,
  MatmulPrecision,
} from './probes';

// The study: stored features to probes, new audio to probabilities, the whole comparison.
export { runStudy, trainFromStore, trainFromFeatures, predictAudio } from './study';
export type { StudyOptions, StudyResult, TrainFromStoreOptions, TrainFromFeaturesOptions, PredictAudioOptions, AudioPredictions } from './study';

// Benchmarks (`calmkit bench`, docs/bench.md): the engine's measurements; the reports' schema is calmkit/bench.
export { benchExtract, benchProbes, benchPipeline, readBenchReport } from './bench';
export type { ExtractBenchOptions, ProbeBenchOptions, PipelineBenchOptions, BenchReport } from './bench';
