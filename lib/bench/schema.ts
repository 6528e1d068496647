// The benchmark report, schema "calmkit-bench" version 1: what `calmkit bench --json`, `calmkit-core bench` and
// scripts/gpu-check.py write (the documents of kinds extract and probes are made by the native engine,
// native/core/bench*.cpp; pipeline reports here). Every number's unit is in its name: ...Seconds, ...Bytes,
// ...GflopPerSecond, ...PerSecond, ...Fraction (0..1), ...Flops... (FLOPs); a *Seconds object is a BenchStat.
// checkBenchReport is what `compare` reads files through: a file that is not such a report is a BenchError
// naming the file and the field, never a TypeError halfway through a table.
import fs from 'node:fs';
import { BenchError, nonEmptyString } from '../errors';

export const BENCH_SCHEMA = 'calmkit-bench';
export const BENCH_SCHEMA_VERSION = 1;
export const BENCH_KINDS = ['extract', 'probes', 'pipeline'] as const;
export type BenchKind = (typeof BENCH_KINDS)[number];

/** Repeated measurements of one quantity, in the unit of the field holding it. */
export interface BenchStat {
  median: number | null;
  min: number | null;
  max: number | null;
  samples: number[];
}

export interface BenchMachine {
  cpuModel: string;
  /** The CPU flags that place a figure: avx2, fma, avx512f, avx512_bf16, amx_bf16, ... (those present). */
  cpuFlags: string[];
  logicalCpus: number;
  usableCpus: number;
  memoryBytes: number;
  os?: string;
  /** 1, 5 and 15-minute load averages when the run started: on a shared machine, how busy it was. */
  loadAverage?: number[];
  libtorchVersion: string;
  libtorchCuda: string | null;
  blas: string;
  blasDetail: string;
  threads: number;
  threadsSource: string;
  interopThreads: number;
  cpuBf16: { native: boolean; avx512Bf16: boolean; amxBf16: boolean; matmulKernel: string; onednnIsa: string; isaLimit: string };
  cpuBufferCache: boolean;
  gpus: { index: number; name: string; memoryBytes: number; computeCapability: string; driverCuda: string }[];
  cudaUnavailableReason: string | null;
  /** Added by the Node host. */
  node?: string;
}

export interface BenchPeak {
  dtype: 'float32' | 'bfloat16' | 'float16';
  device: string;
  /** What reached it: torch.mm, or the packed oneDNN linear the CPU bf16 blocks run on. */
  kernel: string;
  /** The square product (m = n = k) that reached it. */
  size: number;
  gflopPerSecond: number;
}

export interface ExtractRow {
  label: string;
  precision: 'fp32' | 'bf16' | 'fp16';
  tokens: number;
  batch: number;
  /** Whether calmkit's CPU buffer cache was on for this row (`--cpu-buffer-cache on,off` compares both). */
  cpuBufferCache: boolean;
  blockKernels: string;
  /** The model ready on the device from the weights (a checkpoint: read, checked and built). */
  loadSeconds: number;
  loadRssGrowthBytes: number;
  /** Per clip: the whole clip to the reported layer (extrapolated when blocks were sampled). */
  clipSeconds: BenchStat;
  encodeSeconds: BenchStat;
  embedSeconds: BenchStat;
  /** One transformer block, the mean over the blocks run. */
  layerSeconds: BenchStat;
  blocksSeconds: BenchStat;
  poolSeconds: BenchStat;
  clipSecondsMeasured?: BenchStat;
  blocksSecondsMeasured?: BenchStat;
  layerSecondsByKind: { row: number | null; column: number | null; prev: number | null };
  layerSecondsEach: (number | null)[];
  /** With --profile: each step inside the passes, wall and this process's CPU seconds per clip. */
  profileSeconds?: Record<string, number>;
  profileCpuSeconds?: Record<string, number>;
  clipsPerSecond: number;
  tokensPerSecond: number;
  priorFlopsPerClip: number;
  encoderFlopsPerClip: number;
  blocksGflopPerSecond: number;
  clipGflopPerSecond: number;
  peakDtype: string;
  peakGflopPerSecond: number;
  /** blocksGflopPerSecond over the same dtype's GEMM peak: the roofline. */
  peakFraction: number;
  /** This process's CPU seconds (all threads) per clip, to the reported layer; on a shared machine the work without the wait. */
  cpuSecondsPerClip: number;
  encodeCpuSeconds: BenchStat;
  layerCpuSeconds: BenchStat;
  coresUsed: number;
  rssBeforeBytes: number;
  peakRssBytes: number;
  peakDeviceBytes: number | null;
  vsFp32: { layer: number; cosine: number; maxRelDifference: number; tokensIdentical: boolean } | null;
  /** The eager reference doing the same work at this precision, per clip; speedup > 1: calmkit is faster. */
  reference: {
    mode: string;
    clipSecondsMeasured: BenchStat;
    encodeSeconds: number;
    layerSeconds: number;
    clipSeconds: number;
    speedup: number;
    layerSpeedup: number;
    /** The same in CPU seconds of each process (all threads): steadier than wall time on a shared machine. */
    encodeCpuSeconds: number | null;
    layerCpuSeconds: number | null;
    cpuSecondsPerClip: number | null;
    cpuSpeedup: number | null;
    layerCpuSpeedup: number | null;
  } | null;
}

export interface ProbeRow {
  label: string;
  matmulPrecision: string;
  mode: string;
  device: string;
  dim: number;
  probes: number;
  stacks: number;
  secondsAtEpochs: Record<string, number>;
  secondsPerEpoch: number;
  setupSeconds: number;
  targetEpochs: number;
  targetSeconds: number;
  stepsPerEpoch: number;
  stepsPerSecond: number;
  flopsPerEpoch: number;
  testFlops: number;
  gflopPerSecond: number;
  peakDtype: string;
  peakGflopPerSecond: number;
  floorSecondsPerEpoch: number;
  /** The products' time at the GEMM peak over the measured epoch time. */
  floorFraction: number;
  meanSelectedValAccuracy: number;
}

export interface PipelineRow {
  label: string;
  precision: string;
  layers: number;
  batch: number;
  clips: number;
  failed: number;
  wallSeconds: number;
  clipsPerSecond: number;
  /** The model's thread busy (encoder, blocks, pooling of every clip) over the wall time. */
  modelBusySeconds: number;
  modelBusyFraction: number;
  modelSecondsPerClip: number;
  /** Decoding and fitting, summed over the front-end's threads. */
  decodeSeconds: number;
  decodeSecondsPerClip: number;
  /** Wall time the model was not busy: the front-end and the store where they were not hidden. */
  exposedSeconds: number;
  goalModelBusyFraction: number;
  goalMet: boolean;
}

interface ReportBase {
  schema: typeof BENCH_SCHEMA;
  schemaVersion: number;
  createdAt: string;
  calmkitVersion: string;
  host: string;
  command: string;
  machine: BenchMachine;
  config: Record<string, unknown>;
  peaks: BenchPeak[];
  notes: string[];
}

export interface ExtractReport extends ReportBase {
  kind: 'extract';
  rows: ExtractRow[];
  reference: {
    status: string;
    crossCheck?: { tokens: number; layer: number; tokenAgreement: number; maxRelDifference: number; cosine: number; agrees: boolean };
    python?: string;
    torch?: string;
    rows: {
      mode: string;
      precision: string;
      tokens: number;
      clipSecondsMeasured: BenchStat;
      encodeSeconds: number;
      layerSeconds: number;
      clipSeconds: number;
    }[];
    peakRssBytes?: number;
  };
}

export interface ProbeReport extends ReportBase {
  kind: 'probes';
  rows: ProbeRow[];
}

export interface PipelineReport extends ReportBase {
  kind: 'pipeline';
  rows: PipelineRow[];
}

export type BenchReport = ExtractReport | ProbeReport | PipelineReport;

// ---- checking a document -------------------------------------------------------------------------------------

type FieldType = 'string' | 'number' | 'number?' | 'boolean' | 'stat' | 'object' | 'object?' | 'array';

const MACHINE: Record<string, FieldType> = {
  cpuModel: 'string',
  cpuFlags: 'array',
  logicalCpus: 'number',
  usableCpus: 'number',
  memoryBytes: 'number',
  libtorchVersion: 'string',
  blas: 'string',
  threads: 'number',
  gpus: 'array',
};

const ROWS: Record<BenchKind, Record<string, FieldType>> = {
  extract: {
    label: 'string',
    precision: 'string',
    tokens: 'number',
    batch: 'number',
    loadSeconds: 'number?',
    clipSeconds: 'stat',
    encodeSeconds: 'stat',
    layerSeconds: 'stat',
    blocksSeconds: 'stat',
    poolSeconds: 'stat',
    clipsPerSecond: 'number?',
    tokensPerSecond: 'number?',
    blocksGflopPerSecond: 'number?',
    peakGflopPerSecond: 'number?',
    peakFraction: 'number?',
    peakRssBytes: 'number',
    peakDeviceBytes: 'number?',
    vsFp32: 'object?',
    reference: 'object?',
  },
  probes: {
    label: 'string',
    matmulPrecision: 'string',
    mode: 'string',
    dim: 'number',
    probes: 'number',
    secondsPerEpoch: 'number?',
    targetSeconds: 'number?',
    stepsPerSecond: 'number?',
    gflopPerSecond: 'number?',
    peakGflopPerSecond: 'number?',
    floorFraction: 'number?',
  },
  pipeline: {
    label: 'string',
    precision: 'string',
    clips: 'number',
    wallSeconds: 'number',
    clipsPerSecond: 'number?',
    modelBusySeconds: 'number',
    modelBusyFraction: 'number?',
    decodeSeconds: 'number',
  },
};

function typeOk(v: unknown, t: FieldType): boolean {
  switch (t) {
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'number?':
      return v === null || (typeof v === 'number' && Number.isFinite(v));
    case 'boolean':
      return typeof v === 'boolean';
    case 'array':
      return Array.isArray(v);
    case 'object':
      return typeof v === 'object' && v !== null && !Array.isArray(v);
    case 'object?':
      return v === null || (typeof v === 'object' && !Array.isArray(v));
    case 'stat': {
      if (typeof v !== 'object' || v === null) return false;
      const s = v as Record<string, unknown>;
      return (
        ['median', 'min', 'max'].every((k) => typeOk(s[k], 'number?')) && Array.isArray(s.samples) && (s.samples as unknown[]).every((x) => typeOk(x, 'number'))
      );
    }
  }
}

function describe(t: FieldType): string {
  return {
    string: 'a string',
    number: 'a number',
    'number?': 'a number or null',
    boolean: 'true or false',
    stat: 'a {median, min, max, samples} object',
    object: 'an object',
    'object?': 'an object or null',
    array: 'an array',
  }[t];
}

function fail(source: string, message: string): never {
  throw new BenchError('ERR_BENCH_FILE', `${source}: ${message}`, { input: source });
}

function checkFields(obj: Record<string, unknown>, spec: Record<string, FieldType>, where: string, source: string): void {
  for (const [k, t] of Object.entries(spec)) {
    if (!typeOk(obj[k], t)) fail(source, `${where}${k} must be ${describe(t)}; got ${JSON.stringify(obj[k])?.slice(0, 60) ?? 'nothing'}`);
  }
}

/**
 * `value` as a BenchReport, or a BenchError (ERR_BENCH_FILE) naming `source` and the first field that is not what
 * the schema says: another schema, a newer version, a missing or mistyped field, a damaged row.
 */
export function checkBenchReport(value: unknown, source: string): BenchReport {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(source, 'not a calmkit benchmark report (the JSON is not an object)');
  const doc = value as Record<string, unknown>;
  if (doc.schema !== BENCH_SCHEMA)
    fail(
      source,
      `not a calmkit benchmark report (schema ${JSON.stringify(doc.schema)}, expected "${BENCH_SCHEMA}"; write one with calmkit bench ... --json FILE)`,
    );
  if (doc.schemaVersion !== BENCH_SCHEMA_VERSION) {
    fail(
      source,
      `schema version ${JSON.stringify(doc.schemaVersion)}; this calmkit reads version ${BENCH_SCHEMA_VERSION}` +
        (typeof doc.schemaVersion === 'number' && doc.schemaVersion > BENCH_SCHEMA_VERSION ? ' (the file was written by a newer calmkit)' : ''),
    );
  }
  if (!(BENCH_KINDS as readonly unknown[]).includes(doc.kind)) fail(source, `kind must be ${BENCH_KINDS.join(', ')}; got ${JSON.stringify(doc.kind)}`);
  checkFields(
    doc,
    { createdAt: 'string', host: 'string', command: 'string', machine: 'object', config: 'object', peaks: 'array', rows: 'array', notes: 'array' },
    '',
    source,
  );
  checkFields(doc.machine as Record<string, unknown>, MACHINE, 'machine.', source);
  (doc.peaks as unknown[]).forEach((p, i) => {
    if (!typeOk(p, 'object')) fail(source, `peaks[${i}] must be an object`);
    checkFields(p as Record<string, unknown>, { dtype: 'string', kernel: 'string', gflopPerSecond: 'number' }, `peaks[${i}].`, source);
  });
  const spec = ROWS[doc.kind as BenchKind];
  (doc.rows as unknown[]).forEach((r, i) => {
    if (!typeOk(r, 'object')) fail(source, `rows[${i}] must be an object`);
    checkFields(r as Record<string, unknown>, spec, `rows[${i}].`, source);
  });
  if (doc.kind === 'extract' && !typeOk(doc.reference, 'object')) fail(source, 'reference must be an object');
  return doc as unknown as BenchReport;
}

/** Reads and checks a report file (`calmkit bench compare`). */
export function readBenchReport(file: string): BenchReport {
  nonEmptyString('file', file);
  let text: string;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) fail(file, 'not a regular file');
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof BenchError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new BenchError('ERR_BENCH_FILE', `${file}: cannot be read (${e.code ?? e.message})`, { input: file, cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    fail(file, `not JSON (${(err as Error).message}); a damaged or truncated report?`);
  }
  return checkBenchReport(value, file);
}
