// Repeated work does not grow resident memory: in one process, after a warm-up, many loadAudio calls of a clip
// tiled to 62 s, extractions, model loads and probe trainings each leave RSS within 5 % of where it was.
// (loadAudio used to grow it 11-14 % over 300 calls: glibc kept the freed 11 MB buffers in its arenas once its
// dynamic mmap threshold had risen past them; the addon now fixes the threshold, native/napi/module.cpp.)
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
    const out = execFileSync(process.execPath, ['--expose-gc', '--import=tsx', path.join(__dirname, 'helpers', 'leak-child.ts'), file, clip], {
      encoding: 'utf8',
      env: { ...process.env, CALMKIT_THREADS: '1' },
      maxBuffer: 1 << 20,
    });
    const phases = JSON.parse(out) as { name: string; rounds: number; before: number; after: number; growth: number }[];
    t.is(phases.length, 4);
    for (const p of phases) {
      t.log(`${p.name}: ${p.rounds} rounds, RSS ${(p.before / 1e6).toFixed(1)} -> ${(p.after / 1e6).toFixed(1)} MB (${(p.growth * 100).toFixed(2)} %)`);
      t.true(p.growth < 0.05, `${p.name}: RSS grew ${(p.growth * 100).toFixed(1)} % over ${p.rounds} rounds`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
