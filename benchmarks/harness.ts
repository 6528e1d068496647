// The shared benchmark harness: machine facts, a GEMM peak measured in the same run, interleaved timing with
// warm-up and medians, peak RSS, and output as a human table plus ONE machine-readable JSON line
// (prefixed `BENCH_JSON `) per benchmark.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { doctor, gemmPeak as measureGemm } from '../lib/runtime';

/** The project's Python with torch for the references (scripts/setup.sh's .venv); CALMKIT_PYTHON overrides. */
export const PYTHON = process.env.CALMKIT_PYTHON ?? path.resolve(__dirname, '..', '.venv', 'bin', 'python');

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  libtorch: string;
  blas: string;
  threads: number;
  device: string;
}

export function machine(device = 'cpu'): Machine {
  const d = doctor();
  const gpu = d.cuda.devices[0];
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: d.cpus,
    memoryGiB: Math.round((d.memoryBytes / 2 ** 30) * 10) / 10,
    node: d.node,
    libtorch: d.libtorch.version + (d.libtorch.builtWithCuda ? ` (CUDA ${d.libtorch.cudaVersion})` : ' (CPU)'),
    blas: d.blas.name,
    threads: d.threads.count,
    device: device === 'cuda' && gpu ? `cuda:${gpu.index} ${gpu.name}` : 'cpu',
  };
}

/** GFLOP/s of a large matrix product on this machine, now (best of `repeats`). */
export async function gemmPeak(opts: { m?: number; n?: number; k?: number; dtype?: string; device?: string; repeats?: number } = {}): Promise<number> {
  return measureGemm({ m: 1024, n: 4800, k: 1200, repeats: 5, ...opts } as Parameters<typeof measureGemm>[0]);
}

export function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Peak resident set size of this process so far, in bytes (VmHWM). */
export function peakRss(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
  } catch {
    return process.memoryUsage().rss;
  }
}

export interface Contender {
  name: string;
  /** Runs one measured unit of work; returns seconds it took (measured inside, so set-up is excluded). */
  run(): Promise<number>;
}

/**
 * Times several contenders on the same work, interleaved (A B A B ...) so drift in the machine's state hits
 * all of them alike, after `warmup` untimed rounds. Returns the per-contender samples and medians (seconds).
 */
export async function interleaved(contenders: Contender[], rounds: number, warmup = 1): Promise<Record<string, { samples: number[]; median: number }>> {
  for (let w = 0; w < warmup; w++) for (const c of contenders) await c.run();
  const samples: Record<string, number[]> = Object.fromEntries(contenders.map((c) => [c.name, []]));
  for (let r = 0; r < rounds; r++) for (const c of contenders) samples[c.name].push(await c.run());
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, { samples: v, median: median(v) }]));
}

export function parseArgs(argv: string[]): Record<string, string | boolean> {
  const out: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const [k, v] = a.slice(2).split('=', 2);
    if (v !== undefined) out[k] = v;
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out[k] = argv[++i];
    else out[k] = true;
  }
  return out;
}

/** Prints a table of rows (first row's keys are the columns) and the JSON line. */
export function report(name: string, result: Record<string, unknown>, rows: Record<string, string | number>[]): void {
  if (rows.length) {
    const cols = Object.keys(rows[0]);
    const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padEnd(width[i])).join('  ');
    console.log(line(cols));
    console.log(line(width.map((w) => '-'.repeat(w))));
    for (const r of rows) console.log(line(cols.map((c) => String(r[c]))));
  }
  console.log(`BENCH_JSON ${JSON.stringify({ benchmark: name, time: new Date().toISOString(), ...result })}`);
}
