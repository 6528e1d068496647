// `npm run demo`, the README's main job on built-in defaults: a tiny random-weight Jukebox, about 200 demo clips
// rendered in the OpenMIC layout, and the paper's whole study on them (both formatting variants, extraction,
// the 540-probe grid each, Table I each, the side-by-side table). Everything is kept under one folder and the
// run resumes where it stopped.
//   npm run demo -- [--out DIR] [--clips N] [--epochs N]
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { Jukebox } from '../lib/model/jukebox';
import { generateDemoData } from '../lib/demo/generate';
import { createProgress } from '../lib/cli/progress';

async function main(): Promise<void> {
  const o = new Command()
    .option('--out <dir>', 'demo folder', process.env.CALMKIT_DEMO_DIR ?? 'calmkit-demo')
    .option('--clips <n>', 'demo clips', (v) => Number(v), 200)
    .option('--epochs <n>', 'probe epochs', (v) => Number(v), 800)
    .parse(process.argv)
    .opts<{ out: string; clips: number; epochs: number }>();
  const out = path.resolve(o.out);
  fs.mkdirSync(out, { recursive: true });
  const started = Date.now();

  const model = path.join(out, 'jukebox-tiny.pt');
  if (!fs.existsSync(model)) {
    console.error(`demo: writing a tiny random-weight Jukebox checkpoint to ${model}`);
    await Jukebox.writeRandomCheckpoint({ preset: 'tiny', seed: 0, out: model });
  }
  const dataset = path.join(out, 'openmic-demo');
  if (!fs.existsSync(path.join(dataset, 'partitions', 'split01_test.csv'))) {
    const bar = createProgress('render', o.clips, 'clip');
    await generateDemoData({ out: dataset, clips: o.clips, seed: 0, onProgress: (p) => bar.update(p.done) });
    bar.stop();
  }
  // The study is the CLI's own command, so the demo exercises exactly what a user runs.
  const { main: cli } = await import('../lib/cli/main');
  await cli([process.argv[0], 'calmkit', 'study', '--dataset', dataset, '--model', model, '--out', path.join(out, 'study'), '--epochs', String(o.epochs)]);
  console.error(`demo: finished in ${((Date.now() - started) / 1000).toFixed(0)} s; report in ${path.join(out, 'study')}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
