// `calmkit train`: the probe grid per instrument on stored features; writes a probe set (with the store's recipe,
// so `calmkit predict` can retrace it) and optionally its report.
import type { Command } from 'commander';
import { OpenMIC } from '../openmic';
import { writeReport } from '../probes';
import { FeatureStore } from '../store';
import { trainFromStore } from '../study';
import { withInterrupt } from './interrupt';
import { addAllowMissingFlag, addTrainingFlags, trainingOptions, type TrainingFlags } from './options';
import { figureNote, phaseProgress, printTable } from './output';
import { checkOutputs } from './outputs';

export function register(program: Command): void {
  addTrainingFlags(
    addAllowMissingFlag(
      program
        .command('train')
        .description('train the probe grid per instrument on stored features; writes a probe set and its report')
        .requiredOption('--dataset <root>', 'OpenMIC-layout dataset (labels, class map, partitions)')
        .requiredOption('--features <dir>', 'a feature store (one layer: e.g. OUT/layer-36); a segments store trains attention probes')
        .requiredOption('--out <file>', 'the probe set file to write')
        .option('--report <dir>', 'also write Table I and the figures here'),
    ),
  ).action(async (o: TrainingFlags & { dataset: string; features: string; out: string; report?: string; allowMissing?: boolean }) => {
    await checkOutputs([{ flag: '--out', path: o.out, kind: 'probe-set' }, o.report !== undefined && { flag: '--report', path: o.report, kind: 'report' }]);
    await withInterrupt(async (signal) => {
      const dataset = OpenMIC.open(o.dataset, { audio: 'skip', npz: 'ignore' });
      const store = FeatureStore.open(o.features);
      const progress = phaseProgress();
      const options = trainingOptions(o);
      // A segments store trains attention probes: --grid then gives the attention grid's axes (default ATTENTION_GRID).
      if (store.spec.pooling === 'segments' && options.grid) options.grid = { ...options.grid, attention: true };
      try {
        const { probes, missing } = await trainFromStore({
          dataset,
          store,
          ...options,
          allowMissing: o.allowMissing === true,
          signal,
          onProgress: (p) => progress.onEvent({ phase: 'train', variant: 'probes', progress: p }),
        });
        progress.stop();
        if (missing.length)
          console.error(`${missing.length} labelled clips have no features in ${o.features}: trained without them (--allow-missing; the probe set records it)`);
        await probes.save(o.out);
        printTable(probes);
        console.log(`probe set: ${o.out}`);
        if (o.report) {
          const files = await writeReport(probes, o.report, { allowMissing: o.allowMissing === true });
          console.log(`report: ${o.report} (${files.length} files)`);
          const note = figureNote();
          if (note) console.error(note);
        }
      } finally {
        progress.stop();
      }
    });
  });
}
