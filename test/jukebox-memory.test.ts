// Loading keeps the weights as stored: one copy in host memory, no fp32 copy of the fp16 projections.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { Jukebox } from '../lib';

process.env.CALMKIT_THREADS ??= '1';

test('loading adds about one copy of the checkpoint to resident memory', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-jukebox-mem-'));
  try {
    const file = path.join(dir, 'small6.pt');
    // 'small' has wide layers, so the weights dominate everything else that loading allocates.
    await Jukebox.writeRandomCheckpoint({ preset: 'small', layers: 6, out: file });
    // A fresh process: this one's allocator still holds the memory that writing the checkpoint used.
    const out = execFileSync(process.execPath, ['--import=tsx', path.join(__dirname, 'helpers', 'load-rss.ts'), file], {
      encoding: 'utf8',
      env: { ...process.env, CALMKIT_THREADS: '1' },
    });
    const { delta, fileBytes, nCtx, width } = JSON.parse(out) as { delta: number; fileBytes: number; nCtx: number; width: number };
    // Beyond the weights, loading builds the [n_ctx, width] float32 timing conditioning; allow 40 MB for the rest.
    const limit = fileBytes + nCtx * width * 4 + 40e6;
    t.true(delta < limit, `loading added ${(delta / 1e6).toFixed(1)} MB for a ${(fileBytes / 1e6).toFixed(1)} MB file (limit ${(limit / 1e6).toFixed(1)} MB)`);
    t.true(delta > fileBytes * 0.8, 'the measurement sees the weights at all');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
