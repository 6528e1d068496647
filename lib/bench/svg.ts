// `calmkit bench --svg FILE`: a roofline-style picture of a report, written by hand (no charting dependency): one
// bar per row, the achieved GFLOP/s filled inside the outline of its dtype's GEMM peak measured in the same run,
// with the fraction written beside it. A pipeline report shows the model's busy fraction against the 95 % goal.
import { machineLine } from './format';
import type { BenchReport } from './schema';

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const COLORS: Record<string, string> = { fp32: '#4c72b0', float32: '#4c72b0', bf16: '#dd8452', bfloat16: '#dd8452', fp16: '#55a868', float16: '#55a868' };

interface Bar {
  label: string;
  value: number;
  limit: number;
  color: string;
  note: string;
}

function bars(r: BenchReport): { title: string; unit: string; bars: Bar[]; goal?: number } {
  if (r.kind === 'extract') {
    return {
      title: "calmkit bench extract: the blocks' GFLOP/s inside their dtype's GEMM peak (same run, same device)",
      unit: 'GFLOP/s',
      bars: r.rows.map((x) => ({
        label: x.label,
        value: x.blocksGflopPerSecond,
        limit: x.peakGflopPerSecond,
        color: COLORS[x.precision] ?? '#888',
        note:
          `${x.blocksGflopPerSecond.toFixed(0)} of ${x.peakGflopPerSecond.toFixed(0)} ${x.peakDtype} (${(x.peakFraction * 100).toFixed(0)}%)` +
          (x.reference ? `, ${x.reference.speedup.toFixed(2)}x eager` : ''),
      })),
    };
  }
  if (r.kind === 'probes') {
    return {
      title: "calmkit bench probes: the grid's product GFLOP/s inside the GEMM peak",
      unit: 'GFLOP/s',
      bars: r.rows.map((x) => ({
        label: x.label,
        value: x.gflopPerSecond,
        limit: x.peakGflopPerSecond,
        color: COLORS[x.matmulPrecision] ?? '#888',
        note: `${x.gflopPerSecond.toFixed(0)} of ${x.peakGflopPerSecond.toFixed(0)} ${x.peakDtype} (${(x.floorFraction * 100).toFixed(0)}% of the floor)`,
      })),
    };
  }
  return {
    title: 'calmkit bench pipeline: the share of wall time the model is busy',
    unit: 'fraction of wall time',
    goal: r.rows[0]?.goalModelBusyFraction,
    bars: r.rows.map((x) => ({
      label: x.label,
      value: x.modelBusyFraction,
      limit: 1,
      color: COLORS[x.precision] ?? '#888',
      note: `${(x.modelBusyFraction * 100).toFixed(1)}% busy, ${x.clipsPerSecond.toFixed(3)} clips/s`,
    })),
  };
}

/** The report as an SVG document. */
export function reportSvg(r: BenchReport): string {
  const { title, unit, bars: rows, goal } = bars(r);
  const W = 980,
    left = 300,
    barW = 420,
    rowH = 34,
    top = 70;
  const H = top + rows.length * rowH + 50;
  const max = Math.max(1e-9, ...rows.map((b) => Math.max(b.value || 0, b.limit || 0))) * 1.05;
  const x = (v: number) => left + (Math.max(0, v) / max) * barW;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="12" y="22" font-size="14" font-weight="bold">${esc(title)}</text>`,
    `<text x="12" y="42" fill="#555">${esc(machineLine(r.machine).slice(0, 160))}</text>`,
    `<text x="12" y="58" fill="#555">${esc(`${r.createdAt} · ${r.host}`)}</text>`,
  ];
  rows.forEach((b, i) => {
    const y = top + i * rowH;
    out.push(`<text x="${left - 8}" y="${y + 19}" text-anchor="end">${esc(b.label)}</text>`);
    out.push(`<rect x="${left}" y="${y + 6}" width="${(x(b.limit) - left).toFixed(1)}" height="20" fill="#f2f2f2" stroke="#999" stroke-dasharray="3,2"/>`);
    out.push(`<rect x="${left}" y="${y + 6}" width="${(x(b.value) - left).toFixed(1)}" height="20" fill="${b.color}"/>`);
    out.push(`<text x="${Math.max(x(b.value), x(b.limit)) + 6}" y="${y + 20}" fill="#333">${esc(b.note)}</text>`);
  });
  const axisY = top + rows.length * rowH + 8;
  out.push(`<line x1="${left}" y1="${axisY}" x2="${left + barW}" y2="${axisY}" stroke="#333"/>`);
  // Ticks at a round step (1, 2 or 5 x a power of ten), about five of them.
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  for (let v = 0; v <= max; v += step) {
    out.push(`<line x1="${x(v)}" y1="${axisY}" x2="${x(v)}" y2="${axisY + 4}" stroke="#333"/>`);
    out.push(
      `<text x="${x(v)}" y="${axisY + 16}" text-anchor="middle" fill="#333">${unit === 'GFLOP/s' ? String(Math.round(v)) : `${Math.round(v * 100)}%`}</text>`,
    );
  }
  out.push(
    `<text x="${left + barW / 2}" y="${axisY + 32}" text-anchor="middle" fill="#333">${esc(unit)}${unit === 'GFLOP/s' ? " (dashed: the dtype's GEMM peak)" : ''}</text>`,
  );
  if (goal !== undefined) {
    out.push(`<line x1="${x(goal)}" y1="${top}" x2="${x(goal)}" y2="${axisY}" stroke="#c44e52" stroke-width="1.5"/>`);
    out.push(`<text x="${x(goal) + 4}" y="${top - 4}" fill="#c44e52">goal ${(goal * 100).toFixed(0)}%</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
