// Report artifacts of a probe set: the paper's Table I (Markdown, CSV, JSON) and charts (SVG + PNG) of the
// validation curves, the test-probability histograms, the linear probes' weights and, for attention probes, where
// in the clip they look. Charts are vega-lite specs
// rendered headlessly by vega (no browser, no canvas) and rasterised by resvg with the DejaVu fonts.
//
// The renderer is optional: vega, vega-lite and @resvg/resvg-js (27 MB of the 68 MB calmkit's dependencies weighed)
// are optional peer dependencies, loaded on first use. Without them the tables are written and the figures are not
// (missingFigurePackages() says which are missing; the CLI prints the npm command that adds them).
import fs from 'node:fs';
import path from 'node:path';
import { ArgumentError, DataError, ProbeError } from '../errors';
import { atomicReplace, explainFsError, isSystemError } from '../files';
import { configLabel } from './grid';
import type { ProbeSet, ProbeTable, TableRow } from './probe-set';

export const DEFAULT_FONT_DIR = '/usr/share/fonts/truetype/dejavu';
const FONT = 'DejaVu Sans';

export interface ReportOptions {
  /** Also rasterise every chart to PNG (default true). */
  png?: boolean;
  /** Font files for the PNGs (default: DejaVu Sans regular and bold from DEFAULT_FONT_DIR, else system fonts). */
  fontFiles?: string[];
  /** Points kept per training curve (default 200): long runs are thinned evenly, always keeping the last epoch. */
  maxCurvePoints?: number;
  /** Most feature columns shown per linear probe (default 480): wider features are averaged in equal bins. */
  maxWeightColumns?: number;
  /** PNG scale factor (default 1.5). */
  pngScale?: number;
  /** Attention probes: present test clips per instrument in the attention figure (default 3). */
  attentionClips?: number;
  /**
   * Report a probe set trained without some labelled clips (trained with allowMissing; `set.missingClips` > 0).
   * Default false: DataError ERR_DATA_MISSING_FEATURES. The report then says how many were left out.
   */
  allowMissing?: boolean;
}

const fmt = (v: number, digits = 3) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');
const hiddenLabel = (h: number[], attention?: boolean) => configLabel({ hidden: h, attention: attention ? true : undefined });

function tableNotes(missingClips = 0): string[] {
  const missing =
    missingClips > 0
      ? [
          `${missingClips} labelled clip${missingClips === 1 ? '' : 's'} of the partitions had no features and ${missingClips === 1 ? 'was' : 'were'} left out (trained with --allow-missing): every split, the test split included, lacks ${missingClips === 1 ? 'it' : 'them'}, so these figures are not over the full test set.`,
        ]
      : [];
  return [
    ...missing,
    'Selection: per instrument, the config with the lowest validation loss (BCE on the natural validation split).',
    'Test metrics at a fixed threshold: present when P(present) > 0.5. Precision, recall and F1 are of the present class.',
    'Macro rows are unweighted means over instruments. "Macro F1 (present class)" averages the present-class F1 (as the OpenMIC baseline reports, 0.705 for its random forest); "Macro F1 (present/absent averaged)" averages per instrument (F1 present + F1 absent) / 2 first (sklearn "macro avg", as in the Lerch-lab papers, 0.784 for the same forest). They are not interchangeable.',
    'AP and ROC-AUC are undefined (n/a) for an instrument whose test split has one class; their macro means skip such instruments.',
  ];
}

/** Table I as Markdown; `missingClips` (ProbeSet.missingClips) adds the note that says clips were left out. */
export function tableMarkdown(table: ProbeTable, missingClips = 0): string {
  const head = ['Instrument', 'Hidden', 'L2', 'Dropout', 'Val loss', 'Val acc', 'Precision', 'Recall', 'F1', 'Accuracy', 'AP', 'ROC-AUC'];
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const m = table.macro;
  const lines = [
    line(head),
    line(head.map((_, i) => (i < 2 ? '---' : '---:'))),
    ...table.rows.map((r) =>
      line([
        r.instrument,
        hiddenLabel(r.hidden, r.attention),
        String(r.l2),
        String(r.dropout),
        fmt(r.valLoss, 4),
        fmt(r.valAccuracy),
        fmt(r.precision),
        fmt(r.recall),
        fmt(r.f1),
        fmt(r.accuracy),
        fmt(r.averagePrecision),
        fmt(r.rocAuc),
      ]),
    ),
    line([
      '**Macro (present class)**',
      '',
      '',
      '',
      '',
      '',
      fmt(m.precision),
      fmt(m.recall),
      `**${fmt(m.f1Present)}**`,
      fmt(m.accuracy),
      fmt(m.averagePrecision),
      fmt(m.rocAuc),
    ]),
    line(['**Macro F1 (present/absent averaged)**', '', '', '', '', '', '', '', `**${fmt(m.f1PresentAbsent)}**`, '', '', '']),
  ];
  return `${lines.join('\n')}\n\n${tableNotes(missingClips)
    .map((n) => `- ${n}`)
    .join('\n')}\n`;
}

function csvCell(v: string | number): string {
  const s = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : v;
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function tableCsv(table: ProbeTable): string {
  const cols: (keyof TableRow)[] = [
    'instrument',
    'hidden',
    'l2',
    'dropout',
    'valLoss',
    'valAccuracy',
    'precision',
    'recall',
    'f1',
    'accuracy',
    'averagePrecision',
    'rocAuc',
    'f1PresentAbsent',
    'testPositives',
    'testNegatives',
  ];
  const rows = table.rows.map((r) => cols.map((c) => csvCell(c === 'hidden' ? hiddenLabel(r.hidden, r.attention) : (r[c] as string | number))).join(','));
  const m = table.macro;
  const macro = (name: string, v: Partial<Record<keyof TableRow, number>>) => cols.map((c) => csvCell(c === 'instrument' ? name : (v[c] ?? ''))).join(',');
  return `${[
    cols.join(','),
    ...rows,
    macro('MACRO', {
      precision: m.precision,
      recall: m.recall,
      f1: m.f1Present,
      accuracy: m.accuracy,
      averagePrecision: m.averagePrecision,
      rocAuc: m.rocAuc,
      f1PresentAbsent: m.f1PresentAbsent,
    }),
    macro('MACRO_F1_PRESENT_ABSENT', { f1: m.f1PresentAbsent }),
  ].join('\n')}\n`;
}

export function tableJson(set: ProbeSet): string {
  const table = set.table();
  const clean = (v: unknown): unknown => (typeof v === 'number' && !Number.isFinite(v) ? null : v);
  return `${JSON.stringify({ rows: table.rows, macro: table.macro, skipped: set.skipped, missingClips: set.missingClips, notes: tableNotes(set.missingClips) }, (_k, v) => clean(v), 2)}\n`;
}

// ---- charts -----------------------------------------------------------------------------------------

type VlSpec = Record<string, unknown>;

function thin(length: number, max: number): number[] {
  if (length <= max) return Array.from({ length }, (_, i) => i);
  const out = new Set<number>();
  for (let k = 0; k < max; k++) out.add(Math.round((k * (length - 1)) / (max - 1)));
  return [...out];
}

/** One small panel per instrument, five to a row, each with its own y scale. */
function perInstrumentPanels(
  title: string | { text: string; subtitle: string },
  values: Record<string, unknown>[],
  mark: unknown,
  encoding: Record<string, unknown>,
): VlSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    data: { values },
    facet: { field: 'instrument', type: 'nominal', title: null },
    columns: 5,
    spec: { width: 170, height: 110, mark, encoding },
    resolve: { scale: { y: 'independent' } },
  };
}

function curvesSpec(set: ProbeSet, metric: 'valLoss' | 'valAccuracy', maxPoints: number): VlSpec {
  const values: Record<string, unknown>[] = [];
  for (const r of set.results) {
    r.configs.forEach((c, k) => {
      const series = c[metric];
      for (const e of thin(series.length, maxPoints)) {
        if (!Number.isFinite(series[e])) continue;
        values.push({
          instrument: r.instrument,
          config: k,
          architecture: hiddenLabel(c.config.hidden, c.config.attention),
          selected: k === r.selected,
          epoch: e + 1,
          value: series[e],
        });
      }
    });
  }
  const title = metric === 'valLoss' ? 'Validation loss (BCE)' : 'Validation accuracy';
  return perInstrumentPanels(
    `${title} per epoch; thick line = selected config`,
    values,
    { type: 'line', clip: true },
    {
      x: { field: 'epoch', type: 'quantitative', title: 'epoch' },
      y: { field: 'value', type: 'quantitative', title: metric === 'valLoss' ? 'loss' : 'accuracy', scale: { zero: false } },
      detail: { field: 'config', type: 'nominal' },
      color: { field: 'architecture', type: 'nominal', title: 'hidden layers' },
      strokeWidth: { condition: { test: 'datum.selected', value: 2.5 }, value: 0.6 },
      opacity: { condition: { test: 'datum.selected', value: 1 }, value: 0.35 },
    },
  );
}

function histogramSpec(set: ProbeSet): VlSpec {
  const values: Record<string, unknown>[] = [];
  for (const r of set.results) {
    const probs = r.configs[r.selected]!.testProbabilities;
    probs.forEach((p, i) => {
      values.push({ instrument: r.instrument, probability: p, label: r.testTargets[i] ? 'present' : 'absent' });
    });
  }
  return perInstrumentPanels('Predicted P(present) on test, selected probe per instrument (threshold 0.5)', values, 'bar', {
    x: { field: 'probability', type: 'quantitative', bin: { extent: [0, 1], step: 0.05 }, title: 'P(present)' },
    y: { aggregate: 'count', type: 'quantitative', title: 'test clips', stack: true },
    color: { field: 'label', type: 'nominal', title: 'truth', scale: { domain: ['absent', 'present'], range: ['#9aa5b1', '#d6604d'] } },
  });
}

function linearWeightsSpec(set: ProbeSet, maxColumns: number): VlSpec | undefined {
  const values: Record<string, unknown>[] = [];
  const dim = set.info.dim;
  const per = Math.ceil(dim / Math.min(dim, maxColumns));
  for (const r of set.results) {
    if (!r.linear) continue;
    const w = r.linear.net.layers[0]!.weight;
    for (let start = 0; start < dim; start += per) {
      let sum = 0;
      const end = Math.min(dim, start + per);
      for (let k = start; k < end; k++) sum += w[k]!;
      values.push({ instrument: r.instrument, feature: start, featureEnd: end, weight: sum / (end - start) });
    }
  }
  if (values.length === 0) return undefined;
  const standardized = set.info.options.standardize ? 'standardised ' : '';
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `Weights of the best zero-hidden-layer probe per instrument on ${standardized}features${per > 1 ? ` (mean of ${per} columns per cell)` : ''}`,
    data: { values },
    width: 900,
    height: { step: 16 },
    mark: 'rect',
    encoding: {
      x: { field: 'feature', type: 'quantitative', title: 'feature column', scale: { domain: [0, dim], nice: false } },
      x2: { field: 'featureEnd' },
      y: { field: 'instrument', type: 'nominal', title: null },
      color: { field: 'weight', type: 'quantitative', scale: { scheme: 'redblue', domainMid: 0, reverse: true }, title: 'weight' },
    },
  };
}

/**
 * Where the selected attention probe of each instrument looks: for up to `clips` present test clips (those it is
 * most sure of), its softmax weight on every segment, over the segments' time spans (info.segmentTimes) or their
 * indices.
 */
function attentionSpec(set: ProbeSet, clips: number): VlSpec | undefined {
  const S = set.info.segments;
  if (S === undefined) return undefined;
  const times = set.info.segmentTimes;
  const span = (s: number): [number, number] => times?.spans[s] ?? [s, s + 1];
  const values: Record<string, unknown>[] = [];
  for (const r of set.results) {
    const w = r.testAttention;
    if (!w) continue;
    const probs = r.configs[r.selected]!.testProbabilities;
    const present = Array.from(r.testTargets.keys()).filter((i) => r.testTargets[i] === 1);
    present.sort((a, b) => probs[b]! - probs[a]! || a - b);
    present.slice(0, clips).forEach((i) => {
      const clip = `#${i + 1} (P ${probs[i]!.toFixed(2)})`;
      for (let s = 0; s < S; s++) {
        const [start, end] = span(s);
        values.push({ instrument: r.instrument, clip, start, end, weight: w[i * S + s] });
      }
    });
  }
  if (values.length === 0) return undefined;
  return perInstrumentPanels(
    {
      text: `Attention weights of the selected probe on its ${clips} surest present test clips per instrument (a clip's weights sum to 1)`,
      subtitle: `x: ${times?.axis ?? 'segment index'}; rows: test clip number and P(present)`,
    },
    values,
    'rect',
    {
      x: { field: 'start', type: 'quantitative', title: times ? 'seconds' : 'segment', scale: { nice: false } },
      x2: { field: 'end' },
      y: { field: 'clip', type: 'nominal', title: null, axis: { labelLimit: 150 } },
      color: { field: 'weight', type: 'quantitative', title: 'weight', scale: { scheme: 'viridis', zero: true } },
    },
  );
}

function defaultFonts(): string[] {
  return ['DejaVuSans.ttf', 'DejaVuSans-Bold.ttf'].map((f) => path.join(DEFAULT_FONT_DIR, f)).filter((f) => fs.existsSync(f));
}

/** The npm packages that render the figures (optional peer dependencies of calmkit). */
export const FIGURE_PACKAGES: readonly string[] = Object.freeze(['vega', 'vega-lite', '@resvg/resvg-js']);

function resolvable(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
}

/** Which of FIGURE_PACKAGES cannot be loaded here: none, and writeReport renders every figure as SVG and PNG. */
export function missingFigurePackages(): string[] {
  return FIGURE_PACKAGES.filter((name) => !resolvable(name));
}

async function renderChart(spec: VlSpec, base: string, opts: Required<Pick<ReportOptions, 'png' | 'pngScale'>> & { fontFiles: string[] }): Promise<string[]> {
  // Loaded on first use: charts are optional and vega is large.
  const vega = await import('vega');
  const vl = await import('vega-lite');
  const compiled = vl.compile({ ...spec, config: { font: FONT, background: 'white' } } as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  atomicReplace(`${base}.svg`, svg);
  const files = [`${base}.svg`];
  if (opts.png) {
    const { Resvg } = await import('@resvg/resvg-js');
    const png = new Resvg(svg, {
      fitTo: { mode: 'zoom', value: opts.pngScale },
      font: { fontFiles: opts.fontFiles, loadSystemFonts: opts.fontFiles.length === 0, defaultFontFamily: FONT },
    })
      .render()
      .asPng();
    atomicReplace(`${base}.png`, png);
    files.push(`${base}.png`);
  }
  return files;
}

/**
 * Writes Table I (table.md, table.csv, table.json) and the charts (curves-val-loss, curves-val-accuracy,
 * test-probabilities, linear-weights when the grid has linear probes, attention-weights for attention probes;
 * .svg and .png) into `dir`. Every file is written atomically. Without vega and vega-lite the charts are left out,
 * without @resvg/resvg-js their PNGs (missingFigurePackages()).
 * Returns the paths written.
 */
export async function writeReport(set: ProbeSet, dir: string, options: ReportOptions = {}): Promise<string[]> {
  if (set.missingClips > 0 && options.allowMissing !== true) {
    throw new DataError(
      'ERR_DATA_MISSING_FEATURES',
      `the probe set was trained without ${set.missingClips} labelled clip${set.missingClips === 1 ? '' : 's'} that had no features, so its test metrics are not over the whole test split; pass allowMissing: true (--allow-missing) to report it anyway (the report says so)`,
    );
  }
  try {
    return await writeReportFiles(set, dir, options);
  } catch (err) {
    // A full disk, a read-only folder, a file in the way: a ProbeError naming the path, never a bare ENOSPC.
    if (isSystemError(err))
      throw new ProbeError('ERR_PROBE_REPORT', `cannot write the report to ${dir}: ${err.path ? `${err.path}: ` : ''}${explainFsError(err)}`, {
        input: err.path ?? dir,
        cause: err,
      });
    throw err;
  }
}

async function writeReportFiles(set: ProbeSet, dir: string, options: ReportOptions): Promise<string[]> {
  const maxCurvePoints = options.maxCurvePoints ?? 200;
  const maxWeightColumns = options.maxWeightColumns ?? 480;
  if (!Number.isInteger(maxCurvePoints) || maxCurvePoints < 2) throw new ArgumentError('ERR_INVALID_ARGUMENT', 'maxCurvePoints must be an integer >= 2');
  if (!Number.isInteger(maxWeightColumns) || maxWeightColumns < 1)
    throw new ArgumentError('ERR_INVALID_ARGUMENT', 'maxWeightColumns must be a positive integer');
  fs.mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const put = (name: string, text: string) => {
    const f = path.join(dir, name);
    atomicReplace(f, text);
    files.push(f);
  };
  const table = set.table();
  put('table.md', tableMarkdown(table, set.missingClips));
  put('table.csv', tableCsv(table));
  put('table.json', tableJson(set));

  const missing = missingFigurePackages();
  if (missing.includes('vega') || missing.includes('vega-lite')) return files;
  const render = {
    png: (options.png ?? true) && !missing.includes('@resvg/resvg-js'),
    pngScale: options.pngScale ?? 1.5,
    fontFiles: options.fontFiles ?? defaultFonts(),
  };
  files.push(...(await renderChart(curvesSpec(set, 'valLoss', maxCurvePoints), path.join(dir, 'curves-val-loss'), render)));
  files.push(...(await renderChart(curvesSpec(set, 'valAccuracy', maxCurvePoints), path.join(dir, 'curves-val-accuracy'), render)));
  files.push(...(await renderChart(histogramSpec(set), path.join(dir, 'test-probabilities'), render)));
  const weights = linearWeightsSpec(set, maxWeightColumns);
  if (weights) files.push(...(await renderChart(weights, path.join(dir, 'linear-weights'), render)));
  const attention = attentionSpec(set, options.attentionClips ?? 3);
  if (attention) files.push(...(await renderChart(attention, path.join(dir, 'attention-weights'), render)));
  return files;
}
