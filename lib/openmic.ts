// OpenMIC-2018: loaders, label semantics and per-instrument partitions (implementation in lib/openmic/).
export { OpenMIC, CORRUPTED_TRACK_IDS, HAND_CORRECTED_LABELS, RELEASE_FILES } from './openmic/dataset';
export type { OpenMICOptions, FolderOptions, OpenMICReport, SkippedClip, LabelCorrection, LabelCounts, MissingAudio } from './openmic/dataset';
export { buildPartitions, partitionSummary } from './openmic/partitions';
export type { PartitionOptions, ValidationRule, SplitPart, InstrumentPartition, PartitionSummaryRow } from './openmic/partitions';
export { readClassMap, readAggregatedLabels, readKeyList, readMetadata, readGururaniSplit, readChecksums, RELEASE_KEY } from './openmic/files';
export type { LabelRow, MetadataRow } from './openmic/files';
