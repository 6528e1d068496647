// `calmkit bench extract|probes|pipeline|compare`: the performance engineer's command. The measurements are the
// native engine's (lib/bench, native/core/bench.h), the same calmkit-core and scripts/gpu-check.py run; this file
// turns flags into options, prints the table, and writes --json (schema calmkit-bench) and --svg.
import type { Command } from 'commander';
import {
  benchExtract,
  benchPipeline,
  benchProbes,
  formatComparison,
  formatReport,
  readBenchReport,
  REFERENCE_MODES,
  reportSvg,
  type BenchReport,
  type ReferenceMode,
} from '../bench';
import { BenchError } from '../errors';
import { atomicReplace } from '../files';
import { DEFAULT_PRECISION, JUKEBOX_PRESETS, PRECISION_CHOICES, type JukeboxPreset, type PrecisionChoice } from '../model';
import { MATMUL_PRECISIONS, type MatmulPrecision } from '../probes';
import type { Device } from '../runtime';
import { withInterrupt } from './interrupt';
import { addDeviceOption, addPrecisionOption, choice, commaList, integer, positiveNumber } from './options';

interface OutputFlags {
  json?: string;
  svg?: string;
}

function writeOutputs(report: BenchReport, o: OutputFlags): void {
  const write = (file: string, text: string) => {
    try {
      atomicReplace(file, text);
    } catch (err) {
      throw new BenchError('ERR_BENCH_WRITE', `${file}: cannot be written (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, {
        input: file,
        cause: err,
      });
    }
    process.stderr.write(`bench: wrote ${file}\n`);
  };
  if (o.json) write(o.json, `${JSON.stringify(report, null, 1)}\n`);
  if (o.svg) write(o.svg, reportSvg(report));
}

function addOutputFlags(cmd: Command): Command {
  return cmd
    .option('--json <file>', 'write the report as JSON (schema calmkit-bench, version 1)')
    .option('--svg <file>', 'write a roofline-style picture: achieved against the GEMM peak per row');
}

const line = (s: string) => process.stderr.write(`bench: ${s}\n`);

async function run(work: (signal: AbortSignal) => Promise<BenchReport>, o: OutputFlags): Promise<void> {
  await withInterrupt(
    async (signal) => {
      const report = await work(signal);
      process.stdout.write(`${formatReport(report)}\n`);
      writeOutputs(report, o);
    },
    { message: 'calmkit bench: interrupted; stopping after the current pass (nothing is written)' },
  );
}

function referenceModes(v: string | boolean | undefined): ReferenceMode[] | undefined {
  if (v === undefined || v === false) return undefined;
  if (v === true) return ['same-work'];
  return commaList('--reference', choice('--reference', REFERENCE_MODES))(v);
}

export function register(program: Command): void {
  const bench = program.command('bench').description('benchmark calmkit on this machine: extraction, the probe grid, the whole pipeline; compare two reports');

  interface ExtractFlags extends OutputFlags {
    preset?: JukeboxPreset;
    model?: string;
    layers?: number;
    sampleLayers?: number;
    precision: PrecisionChoice[];
    batch: number[];
    tokens?: number[];
    device: Device;
    rounds: number;
    warmup: number;
    seed: number;
    reference?: string | boolean;
    profile?: boolean;
    cpuBufferCache?: ('on' | 'off')[];
    verifyWeights: boolean;
  }
  addOutputFlags(
    addDeviceOption(bench.command('extract'))
      .description(
        "extraction per stage (load, encoder, each block, pooling, whole clip) at a preset's real shapes with random weights drawn in memory, against the GEMM peak; --reference adds eager PyTorch in the same rounds",
      )
      .option('--preset <name>', `${JUKEBOX_PRESETS.join(' | ')} (default 5b): random weights at these shapes, no file`, choice('--preset', JUKEBOX_PRESETS))
      .option('--model <file>', 'a calmkit checkpoint instead of random weights')
      .option('--layers <n>', "the clip to this layer; all its blocks run (default: the preset's depth, 36 for 5b)", integer('--layers', { min: 1, max: 4096 }))
      .option(
        '--sample-layers <k>',
        'run only k blocks and extrapolate to --layers per attention kind (said so in the report)',
        integer('--sample-layers', { min: 1, max: 4096 }),
      )
      .option('--precision <list>', `${PRECISION_CHOICES.join(',')}, comma-separated`, commaList('--precision', choice('--precision', PRECISION_CHOICES)), [
        DEFAULT_PRECISION,
      ] as PrecisionChoice[])
      .option('--batch <list>', 'clips per call, comma-separated (e.g. 1,4)', commaList('--batch', integer('--batch', { min: 1, max: 256 })), [1])
      .option(
        '--tokens <list>',
        'tokens per clip, comma-separated (default n_ctx: 8192 is a full window, 3445 an untiled 10 s clip)',
        commaList('--tokens', integer('--tokens', { min: 1 })),
      )
      .option('--rounds <n>', 'timed rounds (rows interleaved in each)', integer('--rounds', { min: 1 }), 3)
      .option('--warmup <n>', 'untimed rounds first', integer('--warmup', { min: 0 }), 1)
      .option('--seed <n>', 'seed of the random weights', integer('--seed', { min: 0 }), 0)
      .option('--reference [modes]', `also the eager PyTorch reference (CALMKIT_PYTHON), interleaved: ${REFERENCE_MODES.join(',')} (default same-work)`)
      .option('--profile', 'also time each step inside the blocks')
      .option(
        '--cpu-buffer-cache <list>',
        "on,off: rows with calmkit's CPU buffer cache and without it, interleaved (a diagnostic)",
        commaList('--cpu-buffer-cache', choice('--cpu-buffer-cache', ['on', 'off'] as const)),
      )
      .option('--no-verify-weights', "with --model: skip the checkpoint's CRC-32 and NaN/Inf checks"),
  ).action(async (o: ExtractFlags) => {
    await run(
      (signal) =>
        benchExtract({
          preset: o.model ? o.preset : (o.preset ?? '5b'),
          model: o.model,
          layers: o.layers,
          sampleLayers: o.sampleLayers,
          precisions: o.precision,
          batches: o.batch,
          tokens: o.tokens,
          device: o.device,
          rounds: o.rounds,
          warmup: o.warmup,
          seed: o.seed,
          profile: o.profile ?? false,
          bufferCache: o.cpuBufferCache,
          verifyWeights: o.verifyWeights,
          reference: referenceModes(o.reference),
          signal,
          onLine: line,
        }),
      o,
    );
  });

  interface ProbeFlags extends OutputFlags {
    dim: number;
    instruments: number;
    clips: number;
    scale: number;
    epochs: number[];
    probePrecision: MatmulPrecision[];
    mode: 'vectorised' | 'one-at-a-time' | 'batched';
    segments: number;
    device: Device;
    rounds: number;
  }
  addOutputFlags(
    addDeviceOption(bench.command('probes'))
      .description(
        "the probe grid's throughput on a synthetic OpenMIC-sized problem: steps/s, seconds per epoch, the paper's 800 epochs extrapolated, against the GEMM floor",
      )
      .option('--dim <n>', 'feature width', integer('--dim', { min: 1 }), 4800)
      .option('--instruments <n>', 'instruments (OpenMIC-2018 has 20)', integer('--instruments', { min: 1, max: 20 }), 20)
      .option('--clips <n>', 'synthetic clips', integer('--clips', { min: 1 }), 20000)
      .option('--scale <x>', "multiplies OpenMIC's per-class counts (quick runs)", positiveNumber('--scale'), 1)
      .option(
        '--epochs <list>',
        "two or more epoch counts; a line through their times gives an epoch's cost",
        commaList('--epochs', integer('--epochs', { min: 1 })),
        [1, 2],
      )
      .option(
        '--probe-precision <list>',
        `${MATMUL_PRECISIONS.join(',')}, comma-separated`,
        commaList('--probe-precision', choice('--probe-precision', MATMUL_PRECISIONS)),
        ['fp32'] as MatmulPrecision[],
      )
      .option('--mode <mode>', 'vectorised | one-at-a-time | batched', choice('--mode', ['vectorised', 'one-at-a-time', 'batched'] as const), 'vectorised')
      .option('--segments <n>', "attention probes on this many segments per clip (0: the paper's grid)", integer('--segments', { min: 0 }), 0)
      .option('--rounds <n>', 'times each epoch count is trained', integer('--rounds', { min: 1 }), 1),
  ).action(async (o: ProbeFlags) => {
    await run(
      (signal) =>
        benchProbes({
          dim: o.dim,
          instruments: o.instruments,
          clips: o.clips,
          scale: o.scale,
          epochs: o.epochs,
          matmulPrecisions: o.probePrecision,
          mode: o.mode,
          segments: o.segments,
          device: o.device,
          rounds: o.rounds,
          signal,
          onLine: line,
        }),
      o,
    );
  });

  interface PipelineFlags extends OutputFlags {
    dataset: string;
    model?: string;
    preset?: JukeboxPreset;
    layers?: number;
    precision: PrecisionChoice;
    device: Device;
    clips?: number;
    batch: number;
    seed: number;
  }
  addOutputFlags(
    addPrecisionOption(addDeviceOption(bench.command('pipeline')), { withAuto: true, note: "of the prior's blocks" })
      .description(
        'audio files to a feature store end to end (decode, fit, encode, blocks, pooling, write) with the front-end overlapped: clips/s and the share of time the model is busy',
      )
      .requiredOption('--dataset <dir>', 'an OpenMIC-2018 root or a folder of audio files (the first clip warms up)')
      .option('--model <file>', 'a calmkit checkpoint (default: random weights at --preset, written to a temporary file)')
      .option('--preset <name>', `${JUKEBOX_PRESETS.join(' | ')} (default 5b)`, choice('--preset', JUKEBOX_PRESETS))
      .option('--layers <n>', 'the deepest layer extracted (with --preset: the checkpoint is cut to it)', integer('--layers', { min: 1, max: 4096 }))
      .option('--clips <n>', 'at most this many clips after the warm-up one', integer('--clips', { min: 1 }))
      .option('--batch <n>', 'clips per model call', integer('--batch', { min: 1, max: 256 }), 1)
      .option('--seed <n>', 'seed of the random weights', integer('--seed', { min: 0 }), 0),
  ).action(async (o: PipelineFlags) => {
    await run(
      (signal) =>
        benchPipeline({
          dataset: o.dataset,
          model: o.model,
          preset: o.model ? o.preset : (o.preset ?? '5b'),
          layers: o.layers,
          precision: o.precision,
          device: o.device,
          clips: o.clips,
          batch: o.batch,
          seed: o.seed,
          signal,
          onLine: line,
        }),
      o,
    );
  });

  bench
    .command('compare')
    .description("two reports of one kind side by side (from --json), each figure with B's speed-up over A")
    .argument('<a>', 'the first report (A)')
    .argument('<b>', 'the second report (B)')
    .action((a: string, b: string) => {
      const ra = readBenchReport(a);
      const rb = readBenchReport(b);
      process.stdout.write(`${formatComparison(ra, rb, a, b)}\n`);
    });
}
