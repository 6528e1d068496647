// The side-by-side table of the two formatting variants (the paper's concatenation vs upsampling).
import type { TableRow } from '../probes';

export interface ComparisonRow {
  instrument: string;
  /** Test F1 of the present class per variant (NaN where the instrument was not trained). */
  f1: Record<string, number>;
  /** f1[b] - f1[a] for the first two variants. */
  difference: number;
}

export interface Comparison {
  variants: string[];
  rows: ComparisonRow[];
  macro: Record<string, number>;
  macroDifference: number;
}

export function compareVariants(tables: { name: string; rows: TableRow[]; macroF1: number }[]): Comparison {
  const names = tables.map((t) => t.name);
  const instruments: string[] = [];
  for (const t of tables) for (const r of t.rows) if (!instruments.includes(r.instrument)) instruments.push(r.instrument);
  const rows = instruments.map((instrument) => {
    const f1: Record<string, number> = {};
    for (const t of tables) f1[t.name] = t.rows.find((r) => r.instrument === instrument)?.f1 ?? NaN;
    return { instrument, f1, difference: names.length > 1 ? f1[names[1]] - f1[names[0]] : NaN };
  });
  const macro = Object.fromEntries(tables.map((t) => [t.name, t.macroF1]));
  return { variants: names, rows, macro, macroDifference: names.length > 1 ? macro[names[1]] - macro[names[0]] : NaN };
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '—');
const signed = (x: number) => (Number.isFinite(x) ? (x >= 0 ? '+' : '') + x.toFixed(3) : '—');

export function comparisonMarkdown(c: Comparison): string {
  const [a, b] = c.variants;
  const head = `| instrument | ${c.variants.map((v) => `F1 ${v}`).join(' | ')} | ${b ? `${b} − ${a}` : ''} |`;
  const sep = `|---|${c.variants.map(() => '---:').join('|')}|---:|`;
  const body = c.rows.map((r) => `| ${r.instrument} | ${c.variants.map((v) => fmt(r.f1[v])).join(' | ')} | ${signed(r.difference)} |`);
  const macro = `| **macro (present-class F1)** | ${c.variants.map((v) => `**${fmt(c.macro[v])}**`).join(' | ')} | **${signed(c.macroDifference)}** |`;
  return [head, sep, ...body, macro].join('\n') + '\n';
}

export function comparisonCsv(c: Comparison): string {
  const lines = [['instrument', ...c.variants.map((v) => `f1_${v}`), 'difference'].join(',')];
  for (const r of c.rows) lines.push([r.instrument, ...c.variants.map((v) => String(r.f1[v])), String(r.difference)].join(','));
  lines.push(['macro', ...c.variants.map((v) => String(c.macro[v])), String(c.macroDifference)].join(','));
  return lines.join('\n') + '\n';
}
