// The side-by-side table of the study's columns: test F1 per instrument for each way of making features (the
// paper's concatenation vs upsampling first, then the untiled clip, attention, VGGish), each column's macro F1
// and its difference from the first column, and what each column's extraction cost per clip.
import type { TableRow } from '../probes';

export interface ComparisonRow {
  instrument: string;
  /** Test F1 of the present class per column (NaN where the instrument was not trained). */
  f1: Record<string, number>;
  /** f1[b] - f1[a] for the first two columns (the paper's comparison). */
  difference: number;
}

export interface Comparison {
  variants: string[];
  rows: ComparisonRow[];
  macro: Record<string, number>;
  /** macro[b] - macro[a] for the first two columns. */
  macroDifference: number;
  /** Every column's macro F1 minus the first column's. */
  macroVsFirst: Record<string, number>;
  /** Extraction seconds per clip of each column (absent for features calmkit did not extract, e.g. VGGish). */
  extractionSecondsPerClip: Record<string, number | null>;
}

export function compareVariants(tables: { name: string; rows: TableRow[]; macroF1: number }[], costs: Record<string, number | undefined> = {}): Comparison {
  const names = tables.map((t) => t.name);
  const instruments: string[] = [];
  for (const t of tables) for (const r of t.rows) if (!instruments.includes(r.instrument)) instruments.push(r.instrument);
  const rows = instruments.map((instrument) => {
    const f1: Record<string, number> = {};
    for (const t of tables) f1[t.name] = t.rows.find((r) => r.instrument === instrument)?.f1 ?? NaN;
    return { instrument, f1, difference: names.length > 1 ? f1[names[1]!]! - f1[names[0]!]! : NaN };
  });
  const macro = Object.fromEntries(tables.map((t) => [t.name, t.macroF1]));
  const macroVsFirst = Object.fromEntries(names.map((n) => [n, macro[n]! - macro[names[0]!]!]));
  const extractionSecondsPerClip = Object.fromEntries(names.map((n) => [n, costs[n] ?? null]));
  return {
    variants: names,
    rows,
    macro,
    macroDifference: names.length > 1 ? macro[names[1]!]! - macro[names[0]!]! : NaN,
    macroVsFirst,
    extractionSecondsPerClip,
  };
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '—');
const signed = (x: number) => (Number.isFinite(x) ? (x >= 0 ? '+' : '') + x.toFixed(3) : '—');

export function comparisonMarkdown(c: Comparison): string {
  const [a, b] = c.variants;
  const head = `| instrument | ${c.variants.map((v) => `F1 ${v}`).join(' | ')} | ${b ? `${b} − ${a}` : ''} |`;
  const sep = `|---|${c.variants.map(() => '---:').join('|')}|---:|`;
  const body = c.rows.map((r) => `| ${r.instrument} | ${c.variants.map((v) => fmt(r.f1[v]!)).join(' | ')} | ${signed(r.difference)} |`);
  const macro = `| **macro (present-class F1)** | ${c.variants.map((v) => `**${fmt(c.macro[v]!)}**`).join(' | ')} | **${signed(c.macroDifference)}** |`;
  const lines = [head, sep, ...body, macro];
  if (c.variants.length > 2) lines.push(`| macro − ${a} | ${c.variants.map((v) => (v === a ? '' : signed(c.macroVsFirst[v]!))).join(' | ')} | |`);
  const cost = (v: string) => {
    const s = c.extractionSecondsPerClip?.[v];
    return s === null || s === undefined ? 'n/a' : s.toFixed(s < 1 ? 3 : 2);
  };
  lines.push(`| extraction s/clip | ${c.variants.map(cost).join(' | ')} | |`);
  return `${lines.join('\n')}\n`;
}

export function comparisonCsv(c: Comparison): string {
  const lines = [['instrument', ...c.variants.map((v) => `f1_${v}`), 'difference'].map(csvCell).join(',')];
  for (const r of c.rows) lines.push([r.instrument, ...c.variants.map((v) => String(r.f1[v])), String(r.difference)].join(','));
  lines.push(['macro', ...c.variants.map((v) => String(c.macro[v])), String(c.macroDifference)].join(','));
  lines.push(['extraction_seconds_per_clip', ...c.variants.map((v) => String(c.extractionSecondsPerClip?.[v] ?? '')), ''].join(','));
  return `${lines.join('\n')}\n`;
}

function csvCell(s: string): string {
  return /[",\n ()]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
