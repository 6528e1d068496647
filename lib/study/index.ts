// The paper's study over the library: features from a store to a trained probe set (train.ts), the whole study
// of both formatting variants (run.ts) and their side-by-side table (compare.ts), and the return trip from new
// audio to instrument probabilities (predict.ts).
export { runStudy, PAPER_VARIANTS } from './run';
export type { StudyVariant, StudyEvent, StudyOptions, VariantResult, StudyResult } from './run';
export { trainFromStore } from './train';
export type { TrainFromStoreOptions, TrainFromStoreResult } from './train';
export { predictAudio } from './predict';
export type { PredictAudioOptions, AudioPredictions } from './predict';
export { compareVariants, comparisonMarkdown, comparisonCsv } from './compare';
export type { Comparison, ComparisonRow } from './compare';
