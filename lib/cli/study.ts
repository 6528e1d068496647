// `calmkit study`: the paper's study end to end on an OpenMIC-layout dataset (lib/study/run.ts does the work).
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { invalidArgument } from '../errors';
import { PRECISION_CHOICES, type PrecisionChoice } from '../model';
import { PAPER_VARIANTS, runStudy } from '../study';
import { withInterrupt } from './interrupt';
import { addTrainingFlags, choice, integer, trainingOptions, type TrainingFlags } from './options';
import { phaseProgress } from './output';

export function register(program: Command): void {
  addTrainingFlags(
    program
      .command('study')
      .description("the paper's study: both formatting variants, extraction, the 540-probe grid each, Table I each, and the side-by-side F1 table")
      .requiredOption('--dataset <root>', 'OpenMIC-layout dataset')
      .requiredOption('--model <file>', 'a calmkit Jukebox checkpoint')
      .requiredOption('--out <dir>', 'study folder (resumable)')
      .option('--layer <n>', 'layer (default 36, or the model depth if smaller)', integer('--layer', { min: 1 }))
      .option('--variants <names>', `comma-separated subset of ${PAPER_VARIANTS.map((v) => v.name).join(',')}`)
      .option('--precision <p>', `${PRECISION_CHOICES.join(' | ')} (auto: the device's fastest native precision)`, choice('--precision', PRECISION_CHOICES), 'fp32')
      .option('--extract-batch <n>', 'clips per forward pass', integer('--extract-batch', { min: 1 }), 1),
  ).action(async (o: TrainingFlags & { dataset: string; model: string; out: string; layer?: number; variants?: string; precision: PrecisionChoice; extractBatch: number }) => {
    const names = o.variants ? o.variants.split(',').map((s) => s.trim()) : PAPER_VARIANTS.map((v) => v.name);
    const variants = names.map((n) => {
      const v = PAPER_VARIANTS.find((x) => x.name === n);
      if (!v) throw invalidArgument(`unknown variant '${n}'; known: ${PAPER_VARIANTS.map((x) => x.name).join(', ')}`, '--variants');
      return v;
    });
    await withInterrupt(async (signal) => {
      const progress = phaseProgress();
      try {
        const result = await runStudy({
          dataset: o.dataset,
          model: o.model,
          out: o.out,
          variants,
          layer: o.layer,
          ...trainingOptions(o),
          precision: o.precision,
          extractBatch: o.extractBatch,
          signal,
          onEvent: progress.onEvent,
        });
        progress.stop();
        for (const v of result.variants) {
          console.log(`\n== ${v.variant.name} (${v.variant.formatting}): extracted ${v.extracted.done}, reused ${v.extracted.skipped}, failed ${v.extracted.failed}; macro F1 ${v.macroF1.toFixed(3)}`);
          console.log(`   Table I: ${path.join(v.reportDir, 'table.md')}`);
        }
        console.log(`\n${fs.readFileSync(result.files[0], 'utf8')}`);
        console.log(`study report: ${path.resolve(o.out)}`);
      } finally {
        progress.stop();
      }
    });
  });
}
