// The feature store: features keyed by sample key in numpy-readable shards, safe with many writers
// (docs/store.md). Its durable atomic file writes are lib/files.ts.
export { FeatureStore, StoreWriter, STORE_DTYPES } from './feature-store';
export { canonicalJson } from './canonical-json';
export type { StoreSpec, StoreDtype, StoreEntry, FailureInfo, FailureRecord, CorruptShard, VerifyReport, WriterOptions, OpenStoreOptions } from './feature-store';
