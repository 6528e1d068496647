// Repeated work does not grow resident memory: in one process, after a warm-up, 300 loadAudio calls of a clip
// tiled to 62 s, extractions, model loads and probe trainings each keep RSS's peak and floor within 5 % of where
// they were (test/helpers/leak-child.ts says how it is measured without forcing GC). glibc's rising mmap
// threshold kept freed 11 MB clip buffers resident in its arenas; the addon fixes the threshold at 4 MiB
// (runtime::configureMemory), which lowered loadAudio's resident floor by about 50 MB here.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { writeAudio } from '../lib';
import { synthAudio, tinyCheckpoint } from './helpers/model';

test('resident memory stays flat over repeated loads, extractions, loadAudio calls and trainings', async (t) => {
  const { dir, file } = await tinyCheckpoint({ layers: 2 });
  try {
    const clip = path.join(dir, 'clip.ogg');
    // A 10 s stereo clip at 44.1 kHz, as OpenMIC's are.
    const mono = synthAudio(441000, 6);
    const stereo = new Float32Array(mono.length * 2);
    for (let i = 0; i < mono.length; i++) stereo[2 * i] = stereo[2 * i + 1] = mono[i]! * 0.8;
    await writeAudio(clip, { interleaved: stereo, channels: 2, sampleRate: 44100, container: 'ogg' });
    const out = execFileSync(process.execPath, ['--import=tsx', path.join(__dirname, 'helpers', 'leak-child.ts'), file, clip], {
      encoding: 'utf8',
      env: { ...process.env, CALMKIT_THREADS: '1' },
      maxBuffer: 1 << 20,
    });
    const phases = JSON.parse(out) as { name: string; rounds: number; peak: number[]; floor: number[]; peakGrowth: number; floorGrowth: number }[];
    t.is(phases.length, 4);
    const mb = (x: number) => (x / 1e6).toFixed(0);
    for (const p of phases) {
      t.log(`${p.name}: ${p.rounds} rounds, RSS peak ${mb(p.peak[0]!)} -> ${mb(p.peak[1]!)} MB, floor ${mb(p.floor[0]!)} -> ${mb(p.floor[1]!)} MB`);
      t.true(p.peakGrowth < 0.05, `${p.name}: peak RSS grew ${(p.peakGrowth * 100).toFixed(1)} % over ${p.rounds} rounds`);
      t.true(p.floorGrowth < 0.05, `${p.name}: floor RSS grew ${(p.floorGrowth * 100).toFixed(1)} % over ${p.rounds} rounds`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
