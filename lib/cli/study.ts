// train, predict, report and study: the second half of the CLI, over lib/study and lib/probes.
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { ArgumentError, DataError } from '../errors';
import { Jukebox, type JukeboxFeatures } from '../model/jukebox';
import { OpenMIC, type PartitionOptions, type ValidationRule } from '../openmic';
import { PAPER_GRID, ProbeSet, type ProbeGrid } from '../probes';
import { writeReport } from '../probes/report';
import { FeatureStore } from '../store/feature-store';
import { PAPER_VARIANTS, runStudy, trainFromStore, type StudyEvent } from '../study';
import { createProgress, type Progress } from './progress';
import { withInterrupt } from './interrupt';

const int = (what: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ArgumentError('ERR_INVALID_ARGUMENT', `${what} must be a non-negative integer; got '${v}'`, { input: what });
  return n;
};

function parseGrid(text?: string): ProbeGrid | undefined {
  if (!text) return undefined;
  // "hidden=[];[512];[512,256] dropout=0.25,0.5 l2=0,1e-4"
  const grid: ProbeGrid = { ...PAPER_GRID };
  for (const part of text.split(/\s+/).filter(Boolean)) {
    const [k, v] = part.split('=');
    if (k === 'hidden') grid.hidden = v.split(';').map((h) => JSON.parse(h) as number[]);
    else if (k === 'dropout') grid.dropout = v.split(',').map(Number);
    else if (k === 'l2') grid.l2 = v.split(',').map(Number);
    else throw new ArgumentError('ERR_INVALID_ARGUMENT', `--grid: unknown key '${k}' (hidden, dropout, l2)`, { input: '--grid' });
  }
  return grid;
}

interface TrainingFlags {
  epochs: number;
  batch: number;
  seed: number;
  validation: ValidationRule;
  valFraction?: number;
  gururani?: string;
  standardize: boolean;
  device: 'cpu' | 'cuda' | 'auto';
  grid?: string;
}

function addTrainingFlags(cmd: Command): Command {
  return cmd
    .option('--epochs <n>', 'epochs per probe', int('--epochs'), 800)
    .option('--batch <n>', 'batch size (balanced positives/negatives)', int('--batch'), 64)
    .option('--seed <n>', 'seed of sampling, dropout and the validation split', int('--seed'), 0)
    .option('--validation <rule>', 'stratified | gururani2019 | artist | none', 'stratified')
    .option('--val-fraction <f>', 'validation share of split01 train (stratified/artist)', parseFloat)
    .option('--gururani <csv>', 'gururani2019_trainval_split_keys.csv (for --validation gururani2019)')
    .option('--no-standardize', 'do not standardise features (default: train mean/std, as jukemir)')
    .option('--grid <spec>', "grid, e.g. 'hidden=[];[512] dropout=0.5 l2=0,1e-4' (default: the paper's 27 configs)")
    .option('--device <device>', 'cpu | cuda | auto', 'auto');
}

/** The training options `train` and `study` share, from their common flags. */
function trainingOptions(f: TrainingFlags) {
  return {
    partitions: partitionOptions(f),
    epochs: f.epochs,
    batchSize: f.batch,
    seed: f.seed,
    grid: parseGrid(f.grid),
    standardize: f.standardize,
    device: f.device,
  };
}

function partitionOptions(f: TrainingFlags): PartitionOptions {
  const p: PartitionOptions = { validation: f.validation, seed: f.seed };
  if (f.valFraction !== undefined) p.valFraction = f.valFraction;
  if (f.gururani) p.gururaniSplit = f.gururani;
  return p;
}

/** One progress display per phase of a long command; plain lines off a TTY. */
function studyProgress(): { onEvent: (e: StudyEvent) => void; stop: () => void } {
  let bar: Progress | undefined;
  let current = '';
  const switchTo = (id: string, label: string, total: number, unit: string) => {
    if (current === id) return;
    bar?.stop();
    bar = createProgress(label, total, unit);
    current = id;
  };
  return {
    onEvent(e) {
      if (e.phase === 'log') {
        if (bar) bar.log(`${e.variant ? `[${e.variant}] ` : ''}${e.message}`);
        else console.error(`${e.variant ? `[${e.variant}] ` : ''}${e.message}`);
      } else if (e.phase === 'extract') {
        switchTo(`x:${e.variant}`, `extract ${e.variant}`, e.progress.total, 'clips');
        bar!.setTotal(e.progress.total);
        bar!.update(e.progress.done + e.progress.failed, { failed: e.progress.failed, skipped: e.progress.skipped });
      } else {
        const p = e.progress;
        switchTo(`t:${e.variant}:${p.stack}`, `train ${e.variant} (stack ${p.stack + 1}/${p.stacks}, ${p.probes} probes)`, p.epochs, 'epochs');
        bar!.update(p.epoch);
      }
    },
    stop() {
      bar?.stop();
    },
  };
}

function printTable(probes: ProbeSet): void {
  const t = probes.table();
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '—');
  console.log('instrument          hidden      drop  l2      valLoss  P      R      F1     acc    AP     AUC');
  for (const r of t.rows) {
    console.log(
      `${r.instrument.padEnd(19)} ${JSON.stringify(r.hidden).padEnd(11)} ${String(r.dropout).padEnd(5)} ${String(r.l2).padEnd(7)} ` +
        `${f(r.valLoss)}    ${f(r.precision)}  ${f(r.recall)}  ${f(r.f1)}  ${f(r.accuracy)}  ${f(r.averagePrecision)}  ${f(r.rocAuc)}`,
    );
  }
  console.log(`macro F1 (present class) ${f(t.macro.f1Present)}; macro F1 (present/absent averaged) ${f(t.macro.f1PresentAbsent)}`);
  for (const s of probes.skipped) console.log(`skipped ${s.instrument}: ${s.reason}`);
}

export function register(program: Command): void {
  addTrainingFlags(
    program
      .command('train')
      .description('train the probe grid per instrument on stored features; writes a probe set and its report')
      .requiredOption('--dataset <root>', 'OpenMIC-layout dataset (labels, class map, partitions)')
      .requiredOption('--features <dir>', 'a feature store (one layer: e.g. OUT/layer-36)')
      .requiredOption('--out <file>', 'the probe set file to write')
      .option('--report <dir>', 'also write Table I and the figures here'),
  ).action(async (o: TrainingFlags & { dataset: string; features: string; out: string; report?: string }) => {
    await withInterrupt(async (signal) => {
      const dataset = OpenMIC.open(o.dataset, { audio: 'skip', npz: 'ignore' });
      const store = FeatureStore.open(o.features);
      const progress = studyProgress();
      try {
        const { probes, missing } = await trainFromStore({
          dataset,
          store,
          ...trainingOptions(o),
          signal,
          onProgress: (p) => progress.onEvent({ phase: 'train', variant: 'probes', progress: p }),
        });
        progress.stop();
        if (missing.length) console.error(`${missing.length} labelled clips have no features in ${o.features} and were left out`);
        await probes.save(o.out);
        printTable(probes);
        console.log(`probe set: ${o.out}`);
        if (o.report) {
          const files = await writeReport(probes, o.report);
          console.log(`report: ${o.report} (${files.length} files)`);
        }
      } finally {
        progress.stop();
      }
    });
  });

  program
    .command('predict')
    .description('instrument probabilities for audio files, with a trained probe set and its model')
    .argument('<audio...>', 'audio files')
    .requiredOption('--model <file>', 'the Jukebox checkpoint the probes were trained on')
    .requiredOption('--probes <file>', 'a probe set (calmkit train / study)')
    .option('--json', 'print JSON')
    .option('--device <device>', 'cpu | cuda | auto', 'auto')
    .action(async (files: string[], o: { model: string; probes: string; json?: boolean; device: 'cpu' | 'cuda' | 'auto' }) => {
      const probes = await ProbeSet.load(o.probes);
      const spec = (probes.info.manifest as { store?: { spec?: { layers?: number[]; pooling?: string; formatting?: string; extra?: Record<string, number> } } } | undefined)?.store?.spec;
      if (!spec?.layers?.length || spec.pooling !== 'mean') {
        throw new DataError('ERR_DATA_MISMATCH', `${o.probes} does not record mean-pooled features of one layer; cannot tell how to extract`, { input: o.probes });
      }
      const layer = spec.layers[0];
      await using model = await Jukebox.load(o.model, { device: o.device });
      const rows: Record<string, unknown>[] = [];
      let failed = 0;
      for (const file of files) {
        try {
          const f = (await model.extract(file, {
            layers: [layer],
            pooling: 'mean',
            formatting: spec.formatting as never,
            factor: spec.extra?.factor,
            targetSeconds: spec.extra?.targetSeconds,
          })) as JukeboxFeatures;
          const feats = f.layers[layer].data;
          const pred = await probes.predict(feats, 1);
          rows.push({ file, ...Object.fromEntries(pred.instruments.map((name, i) => [name, pred.probabilities[i]])) });
          if (!o.json) {
            const present = pred.instruments.filter((_, i) => pred.present[i]);
            console.log(`${file}: ${present.length ? present.join(', ') : '(no instrument above threshold)'}`);
            for (let i = 0; i < pred.instruments.length; i++) {
              console.log(`  ${pred.instruments[i].padEnd(18)} ${pred.probabilities[i].toFixed(3)}${pred.present[i] ? '  present' : ''}`);
            }
          }
        } catch (err) {
          failed++;
          const e = err as { code?: string; message?: string };
          console.error(`${file}: ${e.code ?? 'ERROR'}: ${e.message}`);
        }
      }
      if (o.json) console.log(JSON.stringify(rows, null, 2));
      if (failed) process.exitCode = 1;
    });

  program
    .command('report')
    .description('write Table I (Markdown, CSV, JSON) and the figures (SVG, PNG) of a probe set')
    .requiredOption('--probes <file>', 'a probe set')
    .requiredOption('--out <dir>', 'where to write')
    .action(async (o: { probes: string; out: string }) => {
      const probes = await ProbeSet.load(o.probes);
      const files = await writeReport(probes, o.out);
      printTable(probes);
      console.log(`report: ${o.out} (${files.map((f) => path.basename(f)).join(', ')})`);
    });

  addTrainingFlags(
    program
      .command('study')
      .description("the paper's study: both formatting variants, extraction, the 540-probe grid each, Table I each, and the side-by-side F1 table")
      .requiredOption('--dataset <root>', 'OpenMIC-layout dataset')
      .requiredOption('--model <file>', 'a calmkit Jukebox checkpoint')
      .requiredOption('--out <dir>', 'study folder (resumable)')
      .option('--layer <n>', 'layer (default 36, or the model depth if smaller)', int('--layer'))
      .option('--variants <names>', `comma-separated subset of ${PAPER_VARIANTS.map((v) => v.name).join(',')}`)
      .option('--precision <p>', 'fp32 | bf16 | fp16', 'fp32')
      .option('--extract-batch <n>', 'clips per forward pass', int('--extract-batch'), 1),
  ).action(async (o: TrainingFlags & { dataset: string; model: string; out: string; layer?: number; variants?: string; precision: 'fp32'; extractBatch: number }) => {
    const names = o.variants ? o.variants.split(',').map((s) => s.trim()) : PAPER_VARIANTS.map((v) => v.name);
    const variants = names.map((n) => {
      const v = PAPER_VARIANTS.find((x) => x.name === n);
      if (!v) throw new ArgumentError('ERR_INVALID_ARGUMENT', `unknown variant '${n}'; known: ${PAPER_VARIANTS.map((x) => x.name).join(', ')}`, { input: '--variants' });
      return v;
    });
    await withInterrupt(async (signal) => {
      const progress = studyProgress();
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
