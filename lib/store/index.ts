// The feature store: features keyed by sample key in numpy-readable shards, safe with many writers, every value
// proven by its checksum (docs/store.md). Its durable atomic file writes are lib/files.ts.
export { FeatureStore, StoreWriter, STORE_DTYPES, asStored } from './feature-store';
export { canonicalJson } from './canonical-json';
export type {
  StoreSpec,
  StoreDtype,
  StoreEntry,
  FailureInfo,
  FailureRecord,
  CorruptShard,
  VerifyReport,
  VerifyOptions,
  ShardStatus,
  UpgradeReport,
  WriterOptions,
  OpenStoreOptions,
} from './feature-store';
