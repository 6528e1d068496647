// `calmkit audio`: what the front-end makes of audio files.
import type { Command } from 'commander';
import { decodeAudio, FORMATTINGS, loadAudio, type Formatting } from '../audio';
import { choice, positiveNumber } from './options';
import { EXIT } from './exit';

export function register(program: Command): void {
  program
    .command('audio')
    .description('decode audio files and show what the front-end makes of them (mono, 44.1 kHz, normalised, fitted)')
    .argument('<files...>', 'audio files (WAV, FLAC, Ogg Vorbis, MP3)')
    .option('--formatting <mode>', FORMATTINGS.join(' | '), choice('--formatting', FORMATTINGS), 'none')
    .option('--factor <x>', 'tile/upsample factor (upsample default 6.2)', positiveNumber('--factor'))
    .option('--target-seconds <s>', 'tile/pad target duration (default 62)', positiveNumber('--target-seconds'))
    .option('--json', 'print JSON lines')
    .action(async (files: string[], opts: { formatting: Formatting; factor?: number; targetSeconds?: number; json?: boolean }) => {
      let failed = 0;
      for (const file of files) {
        try {
          const src = await decodeAudio(file);
          const out = await loadAudio(file, { formatting: opts.formatting, factor: opts.factor, targetSeconds: opts.targetSeconds });
          const row = {
            file,
            format: src.format,
            channels: src.channels,
            sampleRate: src.sampleRate,
            frames: src.frames,
            seconds: src.frames / src.sampleRate,
            prepared: { samples: out.samples.length, seconds: out.durationSeconds, formatting: opts.formatting },
          };
          if (opts.json) console.log(JSON.stringify(row));
          else
            console.log(
              `${file}: ${src.format}, ${src.channels} ch, ${src.sampleRate} Hz, ${src.frames} frames (${row.seconds.toFixed(3)} s)` +
                ` -> ${out.samples.length} mono samples at 44100 Hz (${out.durationSeconds.toFixed(3)} s, ${opts.formatting})`,
            );
        } catch (err) {
          failed++;
          const e = err as { code?: string; message?: string };
          console.error(`${file}: ${e.code ?? 'ERROR'}: ${e.message}`);
        }
      }
      if (failed) process.exitCode = EXIT.SOME_FAILED;
    });
}
