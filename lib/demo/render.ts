// MIDI -> 44.1 kHz stereo PCM (fluidsynth) -> exactly 441,000 frames -> Ogg Vorbis (oggenc), one clip at a
// time; callers run several at once. Raw s16 output avoids parsing WAV, and oggenc reads raw PCM on stdin.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { DataError } from '../errors';

export const DEMO_SAMPLE_RATE = 44100;
export const DEMO_FRAMES = 441000;
export const DEFAULT_SOUNDFONT = '/usr/share/sounds/sf2/FluidR3_GM.sf2';

export interface RenderTools {
  fluidsynth: string;
  oggenc: string;
  soundfont: string;
}

function run(cmd: string, args: string[], stdin?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [stdin ? 'pipe' : 'ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d) => {
      if (err.length < 4000) err += d;
    });
    child.on('error', (e) => reject(new DataError('ERR_DATA_DEMO_TOOL', `cannot run ${cmd}: ${e.message}`, { input: cmd, cause: e })));
    child.on('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new DataError('ERR_DATA_DEMO_TOOL', `${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${err.trim()}`, { input: cmd }));
    });
    if (stdin) {
      child.stdin!.on('error', () => {}); // a dying encoder reports through its exit status
      child.stdin!.end(stdin);
    }
  });
}

/**
 * Renders `midiFile` to `oggFile` (via `rawFile` as scratch). fluidsynth and oggenc are deterministic for the
 * same input (oggenc's stream serial number, normally random, is pinned with `serial`), so the same MIDI
 * gives the same .ogg bytes on the same tool versions.
 */
export async function renderClip(tools: RenderTools, midiFile: string, rawFile: string, oggFile: string, serial: number): Promise<void> {
  // dynamic-sample-loading reads only the samples a MIDI file uses: ~0.25 s per render instead of ~0.9 s
  // spent loading the whole 148 MB SoundFont; the audio is bit-identical.
  await run(tools.fluidsynth, [
    '-ni',
    '-q',
    '-g',
    '0.5',
    '-o',
    'synth.dynamic-sample-loading=1',
    '-o',
    'synth.cpu-cores=1',
    '-T',
    'raw',
    '-O',
    's16',
    '-E',
    'little',
    '-r',
    String(DEMO_SAMPLE_RATE),
    '-F',
    rawFile,
    tools.soundfont,
    midiFile,
  ]);
  const rendered = fs.readFileSync(rawFile);
  const bytes = DEMO_FRAMES * 2 * 2;
  const pcm = Buffer.alloc(bytes);
  rendered.copy(pcm, 0, 0, Math.min(bytes, rendered.length));
  fs.rmSync(rawFile, { force: true });
  const tmp = `${oggFile}.part`;
  // -q 3 is ~112 kb/s, the release's nominal bitrate.
  await run(tools.oggenc, ['-Q', '-r', '-B', '16', '-C', '2', '-R', String(DEMO_SAMPLE_RATE), '-q', '3', '--serial', String(serial), '-o', tmp, '-'], pcm);
  fs.renameSync(tmp, oggFile);
}
