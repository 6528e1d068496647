// `calmkit study`: the study end to end on an OpenMIC-layout dataset (lib/study/run.ts does the work): the
// formatting variants, attention over the best variant's segments, the VGGish baseline when the dataset has it.
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { invalidArgument } from '../errors';
import type { PrecisionChoice } from '../model';
import { ATTENTION_GRID, type ProbeGrid } from '../probes';
import { STORE_DTYPES, type StoreDtype } from '../store';
import { STUDY_VARIANTS, runStudy } from '../study';
import { withInterrupt } from './interrupt';
import {
  addAllowMissingFlag,
  addPrecisionOption,
  addTrainingFlags,
  choice,
  gridSpec,
  integer,
  positiveNumber,
  trainingOptions,
  type TrainingFlags,
} from './options';
import { figureNote, phaseProgress } from './output';
import { checkOutputs } from './outputs';

interface StudyFlags extends TrainingFlags {
  dataset: string;
  model: string;
  out: string;
  layer?: number;
  variants?: string;
  precision: PrecisionChoice;
  extractBatch: number;
  attention: boolean;
  attentionVariant?: string;
  segmentSeconds: number;
  segmentDtype: StoreDtype;
  attentionGrid?: ProbeGrid;
  attentionEpochs?: number;
  vggish: boolean;
  allowMissing?: boolean;
}

export function register(program: Command): void {
  addTrainingFlags(
    addPrecisionOption(
      addAllowMissingFlag(
        program
          .command('study')
          .description(
            'the study: concatenation, upsampling and the untiled clip (extraction, the 540-probe grid each, Table I each), attention probes over the segments of the best of them, ' +
              "the release's VGGish features when the dataset has them, and the side-by-side F1 table with each column's extraction cost",
          )
          .requiredOption('--dataset <root>', 'OpenMIC-layout dataset')
          .requiredOption('--model <file>', 'a calmkit Jukebox checkpoint')
          .requiredOption('--out <dir>', 'study folder (resumable)')
          .option('--layer <n>', 'layer (default 36, or the model depth if smaller)', integer('--layer', { min: 1 }))
          .option('--variants <names>', `comma-separated subset of ${STUDY_VARIANTS.map((v) => v.name).join(',')}`)
          .option('--extract-batch <n>', 'clips per forward pass', integer('--extract-batch', { min: 1 }), 1)
          .option('--no-attention', 'leave out the attention column')
          .option('--attention-variant <name>', 'the variant whose segments the attention probes read (default: the lowest mean validation loss)')
          .option('--segment-seconds <s>', 'segment length of the attention column', positiveNumber('--segment-seconds'), 1)
          .option(
            '--segment-dtype <dtype>',
            `how the segments are stored: ${STORE_DTYPES.join(' | ')} (float16 halves the store)`,
            choice('--segment-dtype', STORE_DTYPES),
            'float32',
          )
          .option(
            '--attention-grid <spec>',
            "attention grid, e.g. 'hidden=[128] dropout=0.5' (default: hidden [128];[512] x the paper's dropouts and L2s)",
            (v) => gridSpec(v, ATTENTION_GRID),
          )
          .option('--attention-epochs <n>', 'epochs of the attention probes (default: --epochs)', integer('--attention-epochs', { min: 1 }))
          .option('--no-vggish', "leave out the columns of the release's VGGish features"),
      ),
      { withAuto: true, note: "the prior's arithmetic, part of every column's features" },
    ),
  ).action(async (o: StudyFlags) => {
    const names = o.variants ? o.variants.split(',').map((s) => s.trim()) : STUDY_VARIANTS.map((v) => v.name);
    const variants = names.map((n) => {
      const v = STUDY_VARIANTS.find((x) => x.name === n);
      if (!v) throw invalidArgument(`unknown variant '${n}'; known: ${STUDY_VARIANTS.map((x) => x.name).join(', ')}`, '--variants');
      return v;
    });
    if (o.attentionVariant !== undefined && !names.includes(o.attentionVariant)) {
      throw invalidArgument(`--attention-variant '${o.attentionVariant}' is not among the variants (${names.join(', ')})`, '--attention-variant');
    }
    await checkOutputs([{ flag: '--out', path: o.out, kind: 'study' }]);
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
          attention: o.attention,
          attentionVariant: o.attentionVariant,
          segmentSeconds: o.segmentSeconds,
          segmentDtype: o.segmentDtype,
          attentionGrid: o.attentionGrid,
          attentionEpochs: o.attentionEpochs,
          vggish: o.vggish ? 'auto' : 'off',
          allowMissing: o.allowMissing === true,
          signal,
          onEvent: progress.onEvent,
        });
        progress.stop();
        for (const v of result.variants) {
          const how = v.variant ? ` (${v.variant.formatting}${v.kind === 'attention' ? ', segments' : ''})` : '';
          const extracted = v.extracted ? `extracted ${v.extracted.done}, reused ${v.extracted.skipped}, failed ${v.extracted.failed}; ` : '';
          console.log(`\n== ${v.name}${how}: ${extracted}macro F1 ${v.macroF1.toFixed(3)}`);
          console.log(`   Table I: ${path.join(v.reportDir, 'table.md')}`);
        }
        console.log(`\n${fs.readFileSync(result.files[0]!, 'utf8')}`);
        console.log(`study report: ${path.resolve(o.out)}`);
        const note = figureNote();
        if (note) console.error(note);
      } finally {
        progress.stop();
      }
    });
  });
}
