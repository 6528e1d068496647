// Helpers shared by the export and reference tests: running the Python tools,
// a small jukebox-shaped configuration, and a minimal .npy reader.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { PYTHON, ROOT } from './paths';

export const PY = PYTHON;
export { ROOT };
export const MAKE_CKPT = path.join(ROOT, 'test', 'reference', 'make_jukebox_ckpt.py');
export const EXPORT = path.join(ROOT, 'scripts', 'export-jukebox.py');
export const REF = path.join(ROOT, 'test', 'reference', 'jukebox_ref.py');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

// The machine has two shared cores and every Python start imports torch (over a
// second of CPU): more than two at once per test file only adds thrashing.
const MAX_PARALLEL = 2;
let running = 0;
const waiting: Array<() => void> = [];

async function slot<T>(work: () => Promise<T>): Promise<T> {
  // A finishing job hands its slot straight to the next waiter, so `running`
  // never overshoots between a release and the waiter resuming.
  if (running >= MAX_PARALLEL) await new Promise<void>((r) => waiting.push(r));
  else running++;
  try {
    return await work();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else running--;
  }
}

export function runPy(args: string[], timeoutMs = 120_000, input?: string): Promise<RunResult> {
  return slot(
    () =>
      new Promise<RunResult>((resolve) => {
        const child = execFile(
          PY,
          args,
          { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, OMP_NUM_THREADS: '1' } },
          (err, stdout, stderr) => {
            const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
            resolve({ code, stdout: String(stdout), stderr: String(stderr) });
          },
        );
        child.stdin?.end(input ?? '');
      }),
  );
}

export async function runOk(args: string[], input?: string): Promise<string> {
  const r = await runPy(args, 120_000, input);
  if (r.code !== 0) {
    throw new Error(`${path.basename(args[0])} exited ${r.code}\n${r.stderr}\n${r.stdout}`);
  }
  return r.stdout;
}

export function tempDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `calmkit-${tag}-`));
}

// A jukebox-shaped model small enough to run in about a second. block_ctx = 256/8 = 32,
// so a 256-token window has 8 blocks and every attention kind has real structure.
export const SMALL = {
  width: 64,
  heads: 2,
  nCtx: 256,
  blocks: 8,
  depthFull: 8,
  mAttn: 0.5,
  mMlp: 1.0,
  bins: 64,
  yBinsGenre: 6,
  yBinsArtist: 7,
  tBins: 16,
  vqDowns: [3, 2, 2],
  vqStrides: [2, 2, 2],
  vqEmbWidth: 16,
  vqLBins: 64,
  vqWidth: 16,
  vqDepth: 2,
};
export const HOP = 128;

/** The hyperparameter flags make_checkpoint.py and export_ref both take, from SMALL. */
function sharedShapeArgs(): string[] {
  const s = SMALL;
  return [
    '--depth-full',
    `${s.depthFull}`,
    '--m-attn',
    `${s.mAttn}`,
    '--m-mlp',
    `${s.mMlp}`,
    '--bins',
    `${s.bins}`,
    '--y-bins-genre',
    `${s.yBinsGenre}`,
    '--y-bins-artist',
    `${s.yBinsArtist}`,
    '--t-bins',
    `${s.tBins}`,
    '--vq-downs',
    s.vqDowns.join(','),
    '--vq-strides',
    s.vqStrides.join(','),
    '--vq-emb-width',
    `${s.vqEmbWidth}`,
    '--vq-l-bins',
    `${s.vqLBins}`,
    '--vq-width',
    `${s.vqWidth}`,
    '--vq-depth',
    `${s.vqDepth}`,
  ];
}

export function makeCkptArgs(out: string, extra: string[] = []): string[] {
  const s = SMALL;
  return [MAKE_CKPT, '--out', out, '--width', `${s.width}`, '--n-ctx', `${s.nCtx}`, ...sharedShapeArgs(), ...extra];
}

export function exportArgs(dir: string, out: string, layers: number, extra: string[] = []): string[] {
  const s = SMALL;
  return [
    EXPORT,
    '--vqvae',
    path.join(dir, 'vqvae.pth.tar'),
    '--prior',
    path.join(dir, 'prior_level_2.pth.tar'),
    '--out',
    out,
    '--layers',
    `${layers}`,
    '--width',
    `${s.width}`,
    '--heads',
    `${s.heads}`,
    '--n-ctx',
    `${s.nCtx}`,
    '--blocks',
    `${s.blocks}`,
    ...sharedShapeArgs(),
    ...extra,
  ];
}

// .npy files are read with the library's own reader (lib/npy.ts).
export { readNpy } from '../../lib/formats/npy';
export type { NpyArray as Npy } from '../../lib/formats/npy';

// Deterministic test audio: a chirp plus noise, peak-normalised, as raw little-endian float32.
export function writeAudio(file: string, samples: number, seed = 1): Float32Array {
  const a = new Float32Array(samples);
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  let peak = 0;
  for (let i = 0; i < samples; i++) {
    const t = i / 44100;
    a[i] = 0.5 * Math.sin(2 * Math.PI * 220 * t * (1 + 4 * t)) + 0.4 * rnd();
    peak = Math.max(peak, Math.abs(a[i]));
  }
  for (let i = 0; i < samples; i++) a[i] /= peak;
  fs.writeFileSync(file, Buffer.from(a.buffer));
  return a;
}
