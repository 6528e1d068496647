// `calmkit demo-data --out DIR [--clips N] [--seed S] [--jobs J]`: renders a synthetic OpenMIC-layout dataset.
import type { Command } from 'commander';
import { generateDemoData } from '../demo';
import { integer } from './options';
import { checkOutputs } from './outputs';
import { createProgress, formatRate, plural } from './progress';

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
      await checkOutputs([{ flag: '--out', path: opts.out, kind: 'demo-data' }]);
      const progress = createProgress('render', opts.clips, 'clip');
      let result: Awaited<ReturnType<typeof generateDemoData>>;
      try {
        result = await generateDemoData({
          out: opts.out,
          clips: opts.clips,
          seed: opts.seed,
          jobs: opts.jobs,
          soundfont: opts.soundfont,
          onProgress: ({ done }) => progress.update(done),
        });
      } finally {
        progress.stop();
      }
      process.stdout.write(
        `wrote ${plural(result.clips.length, 'clip')} (${result.train.length} train / ${result.test.length} test) to ${result.out} in ${result.renderSeconds.toFixed(1)} s ` +
          `(${formatRate(result.clips.length, result.renderSeconds, 'clip')})\n`,
      );
    });
}
