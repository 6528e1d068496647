// OpenMIC-2018: the class map, loaders, label semantics and per-instrument partitions.
export { OPENMIC_INSTRUMENTS } from './instruments';
export { OpenMIC, CORRUPTED_TRACK_IDS, HAND_CORRECTED_LABELS, RELEASE_FILES } from './dataset';
export type { OpenMICOptions, FolderOptions, OpenMICReport, SkippedClip, LabelCorrection, LabelCounts, MissingAudio } from './dataset';
export { buildPartitions, partitionSummary, VALIDATION_RULES } from './partitions';
export type { PartitionOptions, ValidationRule, SplitPart, InstrumentPartition, PartitionSummaryRow } from './partitions';
export { readClassMap, readAggregatedLabels, readKeyList, readMetadata, readGururaniSplit, readChecksums, RELEASE_KEY } from './files';
export type { LabelRow, MetadataRow } from './files';
