// The study over the library: features from a store (or from memory) to a trained probe set (train.ts), the
// whole study of the formatting variants, attention and VGGish columns (run.ts) and their side-by-side table
// (compare.ts), and the return trip from new audio to instrument probabilities (predict.ts).
export { runStudy, PAPER_VARIANTS, STUDY_ENTRIES, STUDY_VARIANTS, UNTILED_VARIANT, jukeboxSegmentTimes } from './run';
export type { StudyVariant, StudyEvent, StudyOptions, VariantResult, StudyResult, ColumnKind } from './run';
export { trainFromStore, trainFromFeatures } from './train';
export type { TrainFromStoreOptions, TrainFromStoreResult, TrainFromFeaturesOptions, ClipFeatures } from './train';
export { predictAudio } from './predict';
export type { PredictAudioOptions, AudioPredictions } from './predict';
export { compareVariants, comparisonMarkdown, comparisonCsv } from './compare';
export type { Comparison, ComparisonRow } from './compare';
