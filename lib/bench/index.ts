// Benchmarks for the performance engineer: extraction and the probe grid measured by the native engine (the
// same code calmkit-core and scripts/gpu-check.py run), the end-to-end pipeline, and reports in one schema.
export { benchExtract, benchProbes, REFERENCE_MODES } from './engine';
export type { ExtractBenchOptions, ProbeBenchOptions, ReferenceMode, BenchCommon } from './engine';
export { benchPipeline, PIPELINE_BUSY_GOAL } from './pipeline';
export type { PipelineBenchOptions } from './pipeline';
export { BENCH_SCHEMA, BENCH_SCHEMA_VERSION, BENCH_KINDS, checkBenchReport, readBenchReport } from './schema';
export type {
  BenchReport,
  ExtractReport,
  ProbeReport,
  PipelineReport,
  ExtractRow,
  ProbeRow,
  PipelineRow,
  BenchStat,
  BenchMachine,
  BenchPeak,
  BenchKind,
} from './schema';
export { formatReport, formatComparison, compareReports, machineLine } from './format';
export type { Comparison } from './format';
export { reportSvg } from './svg';
export { findReference, referenceScript } from './reference';
export type { ReferenceFound } from './reference';
