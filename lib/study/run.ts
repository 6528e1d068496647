// The whole study of the paper on one OpenMIC-layout dataset: for each formatting variant (concatenation to
// 62 s, 6.2x upsampling), extract layer-L mean features into a feature store, train the 27-config probe grid
// per instrument, write Table I and the figures; then a side-by-side table of test F1 per instrument.
// Every step resumes: stores skip extracted clips, and a probe set whose inputs are unchanged is reused.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AbortError } from '../errors';
import { defaultLayers, Jukebox, type PrecisionChoice } from '../model';
import type { Device } from '../runtime/device';
import { OpenMIC, type PartitionOptions } from '../openmic';
import { openmicItems, LayerStores, resolveSettings, type PipelineProgress, extractToStore } from '../extraction';
import { PAPER_GRID, ProbeSet, type ProbeGrid, type ProbeProgress } from '../probes';
import { writeReport } from '../probes/report';
import { atomicReplace } from '../store/fsatomic';
import type { Formatting } from '../audio';
import { compareVariants, comparisonCsv, comparisonMarkdown, type Comparison } from './compare';
import { trainFromStore } from './train';

export interface StudyVariant {
  name: string;
  formatting: Formatting;
  factor?: number;
  targetSeconds?: number;
}

/** The paper's two ways of fitting a 10 s clip to Jukebox's 23.78 s window. */
export const PAPER_VARIANTS: readonly StudyVariant[] = Object.freeze([
  { name: 'concatenation', formatting: 'tile', targetSeconds: 62 },
  { name: 'upsampling', formatting: 'upsample', factor: 6.2 },
]);

export type StudyEvent =
  | { phase: 'extract'; variant: string; progress: PipelineProgress }
  | { phase: 'train'; variant: string; progress: ProbeProgress }
  | { phase: 'log'; variant?: string; message: string };

export interface StudyOptions {
  /** An OpenMIC-layout dataset root. */
  dataset: string;
  /** A calmkit Jukebox checkpoint. */
  model: string;
  /** The study folder: one sub-folder per variant plus the comparison. */
  out: string;
  variants?: readonly StudyVariant[];
  /** Default: 36, or the checkpoint's depth if it has fewer layers. */
  layer?: number;
  partitions?: PartitionOptions;
  epochs?: number;
  batchSize?: number;
  seed?: number;
  grid?: ProbeGrid;
  /** Standardise features with each instrument's train mean/std (jukemir's default; default true). */
  standardize?: boolean;
  device?: Device;
  /** Default `fp32`; `auto` resolves when the model loads, and the stores record the precision it resolved to. */
  precision?: PrecisionChoice;
  /** Clips per forward pass. */
  extractBatch?: number;
  signal?: AbortSignal;
  onEvent?: (e: StudyEvent) => void;
}

export interface VariantResult {
  variant: StudyVariant;
  featuresDir: string;
  probesFile: string;
  reportDir: string;
  extracted: { done: number; skipped: number; failed: number };
  reusedProbes: boolean;
  macroF1: number;
  reportFiles: string[];
}

export interface StudyResult {
  out: string;
  layer: number;
  variants: VariantResult[];
  comparison: Comparison;
  files: string[];
}

function trainingKey(parts: unknown): string {
  return crypto.createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

export async function runStudy(options: StudyOptions): Promise<StudyResult> {
  const variants = options.variants ?? PAPER_VARIANTS;
  const log = (message: string, variant?: string) => options.onEvent?.({ phase: 'log', variant, message });
  const checkAbort = () => {
    if (options.signal?.aborted) throw new AbortError('the study was interrupted; run it again to resume');
  };
  fs.mkdirSync(options.out, { recursive: true });
  const dataset = OpenMIC.open(options.dataset, { audio: 'skip', npz: 'ignore' });
  const items = openmicItems(dataset);
  const model = await Jukebox.load(options.model, { device: options.device ?? 'auto', precision: options.precision ?? 'fp32', signal: options.signal });
  try {
    const layer = options.layer ?? defaultLayers(model.info.depth)[0]!;
    const id = model.id;
    const results: VariantResult[] = [];
    const tables: { name: string; rows: ReturnType<ProbeSet['table']>['rows']; macroF1: number }[] = [];
    for (const variant of variants) {
      checkAbort();
      const dir = path.join(options.out, variant.name);
      const settings = resolveSettings({
        model: { id, path: options.model, preset: model.info.preset },
        precision: model.info.precision,
        layers: [layer],
        pooling: 'mean',
        formatting: variant.formatting,
        factor: variant.factor,
        targetSeconds: variant.targetSeconds,
        modelLayers: model.info.depth,
      });
      const stores = LayerStores.open(path.join(dir, 'features'), settings, { create: true });
      log(`extracting layer ${layer} (${variant.formatting}) for ${items.length} clips`, variant.name);
      const summary = await extractToStore({
        model,
        items,
        stores,
        settings,
        batchSize: options.extractBatch,
        signal: options.signal,
        onProgress: (progress) => options.onEvent?.({ phase: 'extract', variant: variant.name, progress }),
      });
      if (summary.aborted) throw new AbortError('the study was interrupted during extraction; run it again to resume');
      for (const f of summary.failed) log(`skipped ${f.key}: ${f.code}: ${f.message}`, variant.name);
      const store = stores.stores.get(layer)!;
      store.refresh();
      const probesFile = path.join(dir, 'probes.calmkit-probes.json');
      const keyFile = probesFile + '.inputs';
      const training = {
        epochs: options.epochs ?? 800,
        batchSize: options.batchSize ?? 64,
        seed: options.seed ?? 0,
        grid: options.grid ?? PAPER_GRID,
        standardize: options.standardize ?? true,
      };
      const key = trainingKey({ settings: store.spec, keys: store.keys(), partitions: options.partitions ?? {}, training });
      let probes: ProbeSet;
      let reusedProbes = false;
      if (fs.existsSync(probesFile) && fs.existsSync(keyFile) && fs.readFileSync(keyFile, 'utf8') === key) {
        probes = await ProbeSet.load(probesFile);
        reusedProbes = true;
        log(`reusing ${probesFile} (same features, partitions and training options)`, variant.name);
      } else {
        checkAbort();
        const trained = await trainFromStore({
          dataset,
          store,
          partitions: options.partitions,
          ...training,
          device: options.device ?? 'auto',
          signal: options.signal,
          onProgress: (progress) => options.onEvent?.({ phase: 'train', variant: variant.name, progress }),
        });
        probes = trained.probes;
        if (trained.missing.length) log(`${trained.missing.length} labelled clips have no features and were left out`, variant.name);
        await probes.save(probesFile);
        atomicReplace(keyFile, key);
      }
      const reportDir = path.join(dir, 'report');
      const reportFiles = await writeReport(probes, reportDir);
      const table = probes.table();
      tables.push({ name: variant.name, rows: table.rows, macroF1: table.macro.f1Present });
      results.push({
        variant,
        featuresDir: stores.root,
        probesFile,
        reportDir,
        extracted: { done: summary.done, skipped: summary.skipped, failed: summary.failed.length },
        reusedProbes,
        macroF1: table.macro.f1Present,
        reportFiles,
      });
    }
    return finish(options.out, layer, results, compareVariants(tables));
  } finally {
    model.dispose();
  }
}

function finish(out: string, layer: number, variants: VariantResult[], comparison: Comparison): StudyResult {
  const files = [path.join(out, 'comparison.md'), path.join(out, 'comparison.csv'), path.join(out, 'comparison.json')];
  atomicReplace(files[0], `# Test F1 per instrument, layer ${layer}\n\n` + comparisonMarkdown(comparison));
  atomicReplace(files[1], comparisonCsv(comparison));
  atomicReplace(files[2], JSON.stringify({ layer, ...comparison }, null, 2) + '\n');
  return { out, layer, variants, comparison, files };
}
