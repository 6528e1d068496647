// calmkit's public API. No top-level await: this entry loads from both require() and import.
export * from './errors';
export { loadAudio, decodeAudio, resolveFormatting, MODEL_SAMPLE_RATE, PAPER_TILE_SECONDS, PAPER_UPSAMPLE_FACTOR, FORMATTINGS } from './audio';
export type { AudioInput, LoadAudioOptions, LoadedAudio, DecodedAudio, Formatting } from './audio';
export { doctor } from './doctor';
export type { DoctorReport } from './doctor';
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
