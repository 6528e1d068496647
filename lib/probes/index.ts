// Instrument probes: the grid (grid.ts), training it for every instrument at once (train.ts), the resulting
// probe set with predict/save/load (probe-set.ts, file.ts), metrics and the report.
export { PAPER_GRID, ATTENTION_GRID, expandGrid, configLabel } from './grid';
export type { ProbeConfig, ProbeGrid } from './grid';
export { trainProbeGrid, resolveTrainingOptions, TRAINING_DEFAULTS } from './train';
export type { ProbeSplit, ProbeTask, ProbeProgress, TrainProbeGridOptions, ResolvedTrainingOptions } from './train';
export { ProbeSet, PROBE_THRESHOLD, MATMUL_PRECISIONS } from './probe-set';
export type {
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
} from './probe-set';
export type { Device as ProbeDevice } from '../runtime';
export { binaryMetrics, macroMetrics } from './metrics';
export type { BinaryMetrics, MacroMetrics } from './metrics';
export { writeReport, tableMarkdown, tableCsv, tableJson, DEFAULT_FONT_DIR, FIGURE_PACKAGES, missingFigurePackages } from './report';
export { isProbeFileHead, PROBE_FILE_MAGIC_BYTES } from './file';
export type { ReportOptions } from './report';
