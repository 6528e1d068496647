// Shared fixtures for the Jukebox tests: a tiny random checkpoint per test file, and comparisons.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Jukebox } from '../../lib/model/jukebox';
import { GENUINE_CLIP } from './paths';

export const OPENMIC_CLIP = GENUINE_CLIP;

/** Writes a tiny checkpoint (real VQ-VAE shapes, width-128 prior) into a fresh temp dir. */
export async function tinyCheckpoint(options: { layers?: number; seed?: number } = {}): Promise<{ dir: string; file: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-jukebox-'));
  const file = path.join(dir, 'tiny.pt');
  await Jukebox.writeRandomCheckpoint({ preset: 'tiny', layers: options.layers, seed: options.seed ?? 7, out: file });
  return { dir, file };
}

/** max |a - b| / max |b|: the relative error of a against a reference b. */
export function maxRelDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

/** Deterministic test audio: harmonics with a slow sweep and a little noise, peak 1. */
export function synthAudio(n: number, seed = 1): Float32Array {
  let state = seed >>> 0 || 1;
  const rand = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  };
  const out = new Float32Array(n);
  const f0 = 110 * (1 + seed * 0.37);
  let peak = 0;
  for (let i = 0; i < n; i++) {
    const t = i / 44100;
    const ph = 2 * Math.PI * (f0 * t + 20 * t * t);
    out[i] = Math.sin(ph) + 0.5 * Math.sin(3 * ph) * Math.sin(2 * Math.PI * 1.5 * t) + 0.2 * rand();
    peak = Math.max(peak, Math.abs(out[i]));
  }
  for (let i = 0; i < n; i++) out[i] /= peak;
  return out;
}

/** Rows [from, to) of a [T, width] feature, as a copy. */
export function rows(data: Float32Array, width: number, from: number, to: number): Float32Array {
  return data.slice(from * width, to * width);
}

export function meanRows(data: Float32Array, width: number, from: number, to: number): Float32Array {
  const out = new Float32Array(width);
  const acc = new Float64Array(width);
  for (let r = from; r < to; r++) for (let j = 0; j < width; j++) acc[j] += data[r * width + j];
  for (let j = 0; j < width; j++) out[j] = acc[j] / (to - from);
  return out;
}

export { readNpy } from '../../lib/formats/npy';
