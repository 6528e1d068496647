// benchExtract and benchProbes: the native benchmark engine (native/core/bench.h) through the addon, with options
// checked here, progress lines, cancellation through an AbortSignal, and the report checked against the schema
// before it is handed out.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binding } from '../addon';
import type { RawBenchOrigin } from '../addon';
import {
  abortError,
  booleanArg,
  functionArg,
  integerArg,
  invalidArgument,
  native,
  nonEmptyString,
  numberArg,
  oneOf,
  optional,
  optionsObject,
  signalArg,
} from '../errors';
import { JUKEBOX_PRESETS, PRECISION_CHOICES, type JukeboxPreset, type PrecisionChoice } from '../model';
import { MATMUL_PRECISIONS, type MatmulPrecision } from '../probes';
import { calmkitVersion, DEFAULT_DEVICE, type Device } from '../runtime';
import { findReference } from './reference';
import { checkBenchReport, type ExtractReport, type ProbeReport } from './schema';

/** The eager reference's ways: the same work as calmkit at each precision, and the original code's own (fp32). */
export const REFERENCE_MODES = ['same-work', 'jukemirlib'] as const;
export type ReferenceMode = (typeof REFERENCE_MODES)[number];

export interface BenchCommon {
  /** The command line to record in the report (default: this process's). */
  command?: string;
  signal?: AbortSignal;
  /** One line per finished measurement. */
  onLine?: (line: string) => void;
}

export interface ExtractBenchOptions extends BenchCommon {
  /** Random weights at these shapes, drawn in memory (default 5b); or `model`, a checkpoint file. */
  preset?: JukeboxPreset;
  model?: string;
  /** The clip is reported to this layer (default: the preset's depth, 36 for 5b; or the checkpoint's). */
  layers?: number;
  /** Run only this many blocks and extrapolate the rest per attention kind (said so in the report). */
  sampleLayers?: number;
  precisions?: PrecisionChoice[];
  batches?: number[];
  /** Tokens per clip (default a full window, n_ctx; 3445 is an untiled 10 s clip). */
  tokens?: number[];
  device?: Device;
  rounds?: number;
  warmup?: number;
  seed?: number;
  verifyWeights?: boolean;
  /** Also time each step inside the blocks (profileSeconds per row). */
  profile?: boolean;
  /** Run the eager PyTorch reference in the same rounds: true is ['same-work']. */
  reference?: boolean | ReferenceMode[];
  /** Diagnostic: rows with calmkit's CPU buffer cache on and off, interleaved (default: as configured). */
  bufferCache?: ('on' | 'off')[];
}

export interface ProbeBenchOptions extends BenchCommon {
  dim?: number;
  instruments?: number;
  clips?: number;
  /** Multiplies OpenMIC-2018's per-class counts (quick runs). */
  scale?: number;
  /** Two or more epoch counts (default [1, 2]): a line through their times gives the cost of an epoch. */
  epochs?: number[];
  matmulPrecisions?: MatmulPrecision[];
  device?: Device;
  mode?: 'vectorised' | 'one-at-a-time' | 'batched';
  segments?: number;
  rounds?: number;
  targetEpochs?: number;
}

function origin(command: string | undefined): RawBenchOrigin {
  return {
    command: command ?? ['calmkit', ...process.argv.slice(2)].join(' '),
    host: `calmkit ${calmkitVersion()} (Node ${process.version})`,
    calmkitVersion: calmkitVersion(),
  };
}

function intList(name: string, value: unknown, range: { min: number; max?: number }): number[] {
  if (!Array.isArray(value) || value.length === 0) throw invalidArgument(`${name} must be a non-empty array of integers`, name);
  return value.map((v, i) => integerArg(`${name}[${i}]`, v, range));
}

async function runNative(
  start: (control: ReturnType<ReturnType<typeof binding>['control']>, onLine?: (l: string) => void) => Promise<string>,
  common: BenchCommon,
  what: string,
): Promise<unknown> {
  const signal = signalArg('signal', common.signal);
  const onLine = functionArg<(line: string) => void>('onLine', common.onLine);
  if (signal?.aborted) throw abortError(`${what} was aborted`, signal);
  const control = binding().control();
  const cancel = () => binding().cancel(control);
  signal?.addEventListener('abort', cancel, { once: true });
  try {
    return JSON.parse(await native(() => start(control, onLine), undefined, signal));
  } finally {
    signal?.removeEventListener('abort', cancel);
  }
}

/** Extraction throughput at a preset's real shapes (or a checkpoint's), against the GEMM peak and the reference. */
export async function benchExtract(options?: ExtractBenchOptions): Promise<ExtractReport> {
  const o = optionsObject('options', options);
  const modes: ReferenceMode[] =
    o.reference === undefined || o.reference === false
      ? []
      : o.reference === true
        ? ['same-work']
        : Array.isArray(o.reference)
          ? o.reference.map((m) => oneOf('reference', REFERENCE_MODES, m))
          : (() => {
              throw invalidArgument(`reference must be true, false or a list of ${REFERENCE_MODES.join(', ')}`, 'reference');
            })();
  const raw = {
    ...origin(optional(o, 'command', nonEmptyString)),
    preset: optional(o, 'preset', (n, v) => oneOf(n, JUKEBOX_PRESETS, v)),
    model: optional(o, 'model', nonEmptyString),
    layers: optional(o, 'layers', (n, v) => integerArg(n, v, { min: 1, max: 4096 })),
    sampleLayers: optional(o, 'sampleLayers', (n, v) => integerArg(n, v, { min: 1, max: 4096 })),
    precisions: optional(o, 'precisions', (n, v) => {
      if (!Array.isArray(v) || v.length === 0) throw invalidArgument(`${n} must be a non-empty array`, n);
      return v.map((p, i) => oneOf(`${n}[${i}]`, PRECISION_CHOICES, p));
    }),
    batches: optional(o, 'batches', (n, v) => intList(n, v, { min: 1, max: 256 })),
    tokens: optional(o, 'tokens', (n, v) => intList(n, v, { min: 1, max: 1 << 20 })),
    device: optional(o, 'device', nonEmptyString) ?? DEFAULT_DEVICE,
    rounds: optional(o, 'rounds', (n, v) => integerArg(n, v, { min: 1, max: 1e6 })),
    warmup: optional(o, 'warmup', (n, v) => integerArg(n, v, { min: 0, max: 1e6 })),
    seed: optional(o, 'seed', (n, v) => integerArg(n, v, { min: 0 })),
    verifyWeights: optional(o, 'verifyWeights', booleanArg),
    profile: optional(o, 'profile', booleanArg),
    bufferCache: optional(o, 'bufferCache', (n, v) => {
      if (!Array.isArray(v) || v.length === 0) throw invalidArgument(`${n} must be a non-empty array of 'on' and 'off'`, n);
      return v.map((m, i) => oneOf(`${n}[${i}]`, ['on', 'off'] as const, m));
    }),
  };
  if (raw.model !== undefined && raw.preset !== undefined) throw invalidArgument('give a preset or a model file, not both', 'model');
  let workDir: string | undefined;
  let reference: { referencePython?: string; referenceScript?: string; referenceAbsent?: string; referenceJukemirlib?: boolean; workDir?: string } = {
    referenceAbsent: 'not asked for (--reference)',
  };
  if (modes.length > 0) {
    const found = findReference();
    if (found.python) {
      workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-bench-'));
      reference = { referencePython: found.python, referenceScript: found.script, referenceJukemirlib: modes.includes('jukemirlib'), workDir };
    } else {
      reference = { referenceAbsent: found.absent };
    }
  }
  try {
    const doc = await runNative((control, onLine) => binding().benchExtract({ ...raw, ...reference }, control, onLine), o, 'the extraction benchmark');
    const report = checkBenchReport(doc, 'the benchmark engine') as ExtractReport;
    report.machine.node = process.version;
    return report;
  } finally {
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  }
}

/** The probe grid's throughput on a synthetic OpenMIC-sized problem, extrapolated to the paper's 800 epochs. */
export async function benchProbes(options?: ProbeBenchOptions): Promise<ProbeReport> {
  const o = optionsObject('options', options);
  const raw = {
    ...origin(optional(o, 'command', nonEmptyString)),
    dim: optional(o, 'dim', (n, v) => integerArg(n, v, { min: 1, max: 1 << 20 })),
    instruments: optional(o, 'instruments', (n, v) => integerArg(n, v, { min: 1, max: 20 })),
    clips: optional(o, 'clips', (n, v) => integerArg(n, v, { min: 1, max: 1e8 })),
    scale: optional(o, 'scale', (n, v) => numberArg(n, v, { min: 1e-6, max: 1e3 })),
    epochs: optional(o, 'epochs', (n, v) => intList(n, v, { min: 1, max: 1e6 })),
    matmulPrecisions: optional(o, 'matmulPrecisions', (n, v) => {
      if (!Array.isArray(v) || v.length === 0) throw invalidArgument(`${n} must be a non-empty array`, n);
      return v.map((p, i) => oneOf(`${n}[${i}]`, MATMUL_PRECISIONS, p));
    }),
    device: optional(o, 'device', nonEmptyString) ?? DEFAULT_DEVICE,
    mode: optional(o, 'mode', (n, v) => oneOf(n, ['vectorised', 'one-at-a-time', 'batched'] as const, v)),
    segments: optional(o, 'segments', (n, v) => integerArg(n, v, { min: 0, max: 4096 })),
    rounds: optional(o, 'rounds', (n, v) => integerArg(n, v, { min: 1, max: 1e6 })),
    targetEpochs: optional(o, 'targetEpochs', (n, v) => integerArg(n, v, { min: 1, max: 1e9 })),
  };
  const doc = await runNative((control, onLine) => binding().benchProbes(raw, control, onLine), o, 'the probe benchmark');
  const report = checkBenchReport(doc, 'the benchmark engine') as ProbeReport;
  report.machine.node = process.version;
  return report;
}
