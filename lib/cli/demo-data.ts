// `calmkit demo-data --out DIR [--clips N] [--seed S] [--jobs J]`: renders a synthetic OpenMIC-layout dataset.
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { generateDemoData } from '../demo';
import { integer } from './options';

export function register(program: Command): void {
  program
    .command('demo-data')
    .description('render a synthetic dataset in the exact OpenMIC-2018 layout (fluidsynth + oggenc)')
    .requiredOption('--out <dir>', 'output folder (created; an existing non-demo folder is refused)')
    .option('--clips <n>', 'number of 10 s clips', integer('--clips', { min: 2 }), 200)
    .option('--seed <s>', 'seed: same seed, same MIDI, labels, splits and audio', integer('--seed', { min: 0 }), 0)
    .option('--jobs <j>', 'concurrent renders (default: min(2, CPUs))', integer('--jobs', { min: 1 }))
    .option('--soundfont <sf2>', 'General MIDI SoundFont (default: CALMKIT_SOUNDFONT or FluidR3_GM)')
    .action(async (opts: { out: string; clips: number; seed: number; jobs?: number; soundfont?: string }) => {
      // A live bar only on a terminal; logs and CI get one plain line per 10 % instead.
      const interactive = Boolean(process.stdout.isTTY) && !process.env.CI;
      const bar = interactive ? new cliProgress.SingleBar({ format: 'rendering {bar} {value}/{total} clips | {eta_formatted} left', hideCursor: true }, cliProgress.Presets.shades_classic) : undefined;
      bar?.start(opts.clips, 0);
      let lastDecile = -1;
      try {
        const result = await generateDemoData({
          out: opts.out,
          clips: opts.clips,
          seed: opts.seed,
          jobs: opts.jobs,
          soundfont: opts.soundfont,
          onProgress: ({ done, total, elapsedMs }) => {
            if (bar) bar.update(done);
            else {
              const decile = Math.floor((done * 10) / total);
              if (decile !== lastDecile || done === total) {
                lastDecile = decile;
                process.stdout.write(`rendered ${done}/${total} clips (${(elapsedMs / 1000).toFixed(1)} s)\n`);
              }
            }
          },
        });
        bar?.stop();
        process.stdout.write(
          `wrote ${result.clips.length} clips (${result.train.length} train / ${result.test.length} test) to ${result.out} in ${result.renderSeconds.toFixed(1)} s ` +
            `(${(result.clips.length / result.renderSeconds).toFixed(2)} clips/s)\n`,
        );
      } catch (err) {
        bar?.stop();
        throw err;
      }
    });
}
