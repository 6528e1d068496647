// Scale-out of extraction on BullMQ and Redis (docs/queue.md), the `calmkit/queue` entry: `addJobs` enqueues one
// job per clip with a deterministic id, `ExtractionWorker` takes jobs, batches them for the model and acknowledges
// a job only after its features (or its failure) are durable in the shared feature store, and `queueStatus`
// reports. The client side is queue-client.ts, the worker queue-worker.ts; this file only re-exports.
//
// Exactly-once results come from two layers: BullMQ gives every job to one worker at a time and hands the
// jobs of a dead worker to another (stalled-job recovery); the store's no-clobber shards and first-shard-wins
// index keep one entry per key even when a job's work is redone after a crash between publish and ack, and a
// worker skips keys the store already holds.
export { QueueError } from '../errors';
export { DEFAULT_QUEUE, jobIdFor, redisConnection, addJobs, queueStatus } from './queue-client';
export type { QueueJobData, QueueJobResult, RedisOptions, AddJobsOptions, AddJobsResult, QueueStatus } from './queue-client';
export { ExtractionWorker } from './queue-worker';
export type { WorkerOptions, WorkerStats } from './queue-worker';
