// The human side of benchmark reports: the table `calmkit bench` prints, and `calmkit bench compare`'s
// side-by-side table of two reports with the ratio of each figure.
import { BenchError } from '../errors';
import type { BenchMachine, BenchReport, BenchStat, ExtractReport, ExtractRow, PipelineReport, ProbeReport } from './schema';

function fmt(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a !== 0 && (a < 10 ** -digits || a >= 1e6)) return v.toExponential(2);
  return v.toFixed(a >= 100 ? Math.max(0, digits - 3) : a >= 10 ? Math.max(0, digits - 2) : digits);
}

function pct(v: number | null | undefined): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '-' : `${(v * 100).toFixed(0)}%`;
}

function gib(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined || bytes < 0 ? '-' : (bytes / 2 ** 30).toFixed(2);
}

function med(s: BenchStat | undefined | null): number | null {
  return s ? s.median : null;
}

/** Columns padded to their widest cell; numbers right-aligned. */
export function table(head: string[], rows: string[][]): string {
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join('  ');
  return [line(head), line(width.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** One line about the machine: CPU, cores, memory, LibTorch, BLAS, threads, GPU, and how loaded it was. */
export function machineLine(m: BenchMachine): string {
  const flags = m.cpuFlags.filter((f) => ['avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'avx512_fp16'].includes(f));
  const gpu = m.gpus.length
    ? `; ${m.gpus.map((g) => `${g.name} (${gib(g.memoryBytes)} GiB, sm ${g.computeCapability}, driver CUDA ${g.driverCuda || '?'})`).join(', ')}`
    : '; no GPU';
  const load = m.loadAverage ? `; load ${m.loadAverage.map((x) => x.toFixed(2)).join(' ')} on ${m.usableCpus} CPUs` : '';
  return `${m.cpuModel} [${flags.join(' ')}], ${m.usableCpus} of ${m.logicalCpus} CPUs, ${gib(m.memoryBytes)} GiB; LibTorch ${m.libtorchVersion}${m.libtorchCuda ? ` (CUDA ${m.libtorchCuda})` : ''}, ${m.blas}, ${m.threads} threads${gpu}${load}`;
}

function extractText(r: ExtractReport): string {
  const c = r.config as Record<string, unknown>;
  const layers = Number(c.layers),
    run = Number(c.layersRun);
  const lines = [
    `calmkit bench extract: ${c.model ? `model ${String(c.model)}` : `preset ${String(c.preset)}`} (width ${c.width}, n_ctx ${c.nCtx}), ` +
      `layers 1-${layers}${run < layers ? ` (blocks 1-${run} run, the rest extrapolated)` : ''}, ${c.device}, ${c.rounds} rounds after ${c.warmup} warm-up`,
    `machine: ${machineLine(r.machine)}`,
    `GEMM peaks: ${r.peaks.map((p) => `${p.dtype} ${fmt(p.gflopPerSecond, 4)} GFLOP/s (${p.kernel}, ${p.size}^3)`).join('; ')}`,
    '',
  ];
  const head = [
    'row',
    'load s',
    'encode s',
    'layer s',
    'pool s',
    'clip s',
    'clips/s',
    'tokens/s',
    'GFLOP/s',
    'of peak',
    'RSS GiB',
    'dev GiB',
    'cos fp32',
    'tokens',
    'vs ref',
    'vs ref CPU',
  ];
  const rows = r.rows.map((x: ExtractRow) => [
    x.label,
    fmt(x.loadSeconds),
    fmt(med(x.encodeSeconds)),
    fmt(med(x.layerSeconds)),
    fmt(med(x.poolSeconds)),
    fmt(med(x.clipSeconds)),
    fmt(x.clipsPerSecond),
    fmt(x.tokensPerSecond, 4),
    fmt(x.blocksGflopPerSecond, 4),
    pct(x.peakFraction),
    gib(x.peakRssBytes),
    gib(x.peakDeviceBytes),
    x.vsFp32 ? x.vsFp32.cosine.toFixed(7) : '-',
    x.vsFp32 ? (x.vsFp32.tokensIdentical ? 'same' : 'DIFFER') : '-',
    x.reference ? `${x.reference.speedup.toFixed(2)}x` : '-',
    x.reference?.cpuSpeedup ? `${x.reference.cpuSpeedup.toFixed(2)}x` : '-',
  ]);
  lines.push(table(head, rows));
  const ref = r.reference;
  lines.push('');
  if (ref.status === 'ran') {
    const cc = ref.crossCheck;
    lines.push(
      `reference: eager PyTorch ${ref.torch ?? ''} (${ref.python}), same device, same rounds` +
        (cc
          ? `; fp32 cross-check at layer ${cc.layer}: max difference ${cc.maxRelDifference.toExponential(1)} of the largest value, tokens ${(cc.tokenAgreement * 100).toFixed(1)}% equal`
          : ''),
    );
    lines.push(
      "vs ref: the reference's clip time over calmkit's (> 1: calmkit faster); vs ref CPU: the same in CPU seconds of each process, steadier on a shared machine",
    );
    lines.push(
      table(
        ['reference row', 'encode s', 'layer s', 'clip s', 'calmkit clip s', 'calmkit x'],
        ref.rows.map((rr) => {
          const mine =
            r.rows.find((x) => x.precision === rr.precision && x.tokens === rr.tokens && x.batch === 1) ??
            r.rows.find((x) => x.precision === rr.precision && x.tokens === rr.tokens);
          const mineClip = mine ? med(mine.clipSeconds) : null;
          return [
            `${rr.mode}, ${rr.precision}, ${rr.tokens} tokens`,
            fmt(rr.encodeSeconds),
            fmt(rr.layerSeconds),
            fmt(rr.clipSeconds),
            fmt(mineClip),
            mineClip ? `${(rr.clipSeconds / mineClip).toFixed(2)}x` : '-',
          ];
        }),
      ),
    );
  } else {
    lines.push(`reference: ${ref.status}`);
  }
  for (const n of r.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

function probesText(r: ProbeReport): string {
  const c = r.config as Record<string, unknown>;
  const lines = [
    `calmkit bench probes: ${c.instruments} instruments x ${c.configs} configs at ${c.dim}-d, ${c.mode}, ${c.device}, epochs ${(c.epochs as number[]).join(' and ')} -> ${c.targetEpochs}`,
    `machine: ${machineLine(r.machine)}`,
    `GEMM peaks: ${r.peaks.map((p) => `${p.dtype} ${fmt(p.gflopPerSecond, 4)} GFLOP/s (${p.kernel}, ${p.size}^3)`).join('; ')}`,
    '',
  ];
  const head = ['row', 'stacks', 's/epoch', 'setup s', `${c.targetEpochs} epochs s`, 'steps/s', 'GFLOP/s', 'floor s/epoch', 'of floor'];
  lines.push(
    table(
      head,
      r.rows.map((x) => [
        x.label,
        String(x.stacks),
        fmt(x.secondsPerEpoch),
        fmt(x.setupSeconds),
        fmt(x.targetSeconds, 4),
        fmt(x.stepsPerSecond, 4),
        fmt(x.gflopPerSecond, 4),
        fmt(x.floorSecondsPerEpoch),
        pct(x.floorFraction),
      ]),
    ),
  );
  for (const n of r.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

function pipelineText(r: PipelineReport): string {
  const c = r.config as Record<string, unknown>;
  const lines = [
    `calmkit bench pipeline: ${c.dataset} -> store, ${c.preset} (width ${c.width}), layers 1-${c.layers}, ${c.precision}, ${c.device}`,
    `machine: ${machineLine(r.machine)}`,
    '',
  ];
  lines.push(
    table(
      ['row', 'wall s', 'clips/s', 'model s/clip', 'decode s/clip', 'exposed s', 'model busy', 'goal'],
      r.rows.map((x) => [
        x.label,
        fmt(x.wallSeconds),
        fmt(x.clipsPerSecond),
        fmt(x.modelSecondsPerClip),
        fmt(x.decodeSecondsPerClip),
        fmt(x.exposedSeconds),
        pct(x.modelBusyFraction),
        `${pct(x.goalModelBusyFraction)} ${x.goalMet ? 'met' : 'NOT met'}`,
      ]),
    ),
  );
  for (const n of r.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

/** The table `calmkit bench` prints for a report. */
export function formatReport(r: BenchReport): string {
  if (r.kind === 'extract') return extractText(r);
  if (r.kind === 'probes') return probesText(r);
  return pipelineText(r);
}

// ---- compare --------------------------------------------------------------------------------------------------

interface Metric {
  name: string;
  get: (row: never) => number | null | undefined;
  /** Lower is better (times, memory): the ratio column then says how many times faster B is. */
  lowerIsBetter: boolean;
  show?: (v: number | null | undefined) => string;
}

const METRICS: Record<BenchReport['kind'], Metric[]> = {
  extract: [
    { name: 'clip s', get: (x: ExtractRow) => med(x.clipSeconds), lowerIsBetter: true },
    { name: 'layer s', get: (x: ExtractRow) => med(x.layerSeconds), lowerIsBetter: true },
    { name: 'encode s', get: (x: ExtractRow) => med(x.encodeSeconds), lowerIsBetter: true },
    { name: 'clips/s', get: (x: ExtractRow) => x.clipsPerSecond, lowerIsBetter: false },
    { name: 'GFLOP/s', get: (x: ExtractRow) => x.blocksGflopPerSecond, lowerIsBetter: false },
    { name: 'of peak', get: (x: ExtractRow) => x.peakFraction, lowerIsBetter: false, show: pct },
    { name: 'peak RSS GiB', get: (x: ExtractRow) => x.peakRssBytes / 2 ** 30, lowerIsBetter: true },
  ] as Metric[],
  probes: [
    { name: 's/epoch', get: (x: ProbeReport['rows'][number]) => x.secondsPerEpoch, lowerIsBetter: true },
    { name: 'target s', get: (x: ProbeReport['rows'][number]) => x.targetSeconds, lowerIsBetter: true },
    { name: 'steps/s', get: (x: ProbeReport['rows'][number]) => x.stepsPerSecond, lowerIsBetter: false },
    { name: 'of floor', get: (x: ProbeReport['rows'][number]) => x.floorFraction, lowerIsBetter: false, show: pct },
  ] as Metric[],
  pipeline: [
    { name: 'clips/s', get: (x: PipelineReport['rows'][number]) => x.clipsPerSecond, lowerIsBetter: false },
    { name: 'model s/clip', get: (x: PipelineReport['rows'][number]) => x.modelSecondsPerClip, lowerIsBetter: true },
    { name: 'model busy', get: (x: PipelineReport['rows'][number]) => x.modelBusyFraction, lowerIsBetter: false, show: pct },
  ] as Metric[],
};

function article(word: string): string {
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}

function rowKey(kind: BenchReport['kind'], row: Record<string, unknown>): string {
  if (kind === 'extract') return `${row.precision}, ${row.tokens} tokens, batch ${row.batch}${row.cpuBufferCache === false ? ', no buffer cache' : ''}`;
  if (kind === 'probes') return `${row.matmulPrecision} products, ${row.mode}, ${row.dim}-d`;
  return `${row.precision}, layers 1-${row.layers}, batch ${row.batch}`;
}

export interface Comparison {
  kind: BenchReport['kind'];
  rows: { key: string; metric: string; a: number | null; b: number | null; ratio: number | null; better: 'a' | 'b' | 'same' | null }[];
  onlyInA: string[];
  onlyInB: string[];
}

/**
 * Rows of two reports of one kind matched by what they measured (precision, tokens, batch; ...). The ratio is B's
 * speed over A's: for times A / B, for rates B / A, so above 1 always means B is better.
 */
export function compareReports(a: BenchReport, b: BenchReport): Comparison {
  if (a.kind !== b.kind)
    throw new BenchError(
      'ERR_BENCH_MISMATCH',
      `cannot compare ${article(a.kind)} ${a.kind} report with ${article(b.kind)} ${b.kind} report (both must come from the same calmkit bench command)`,
    );
  const out: Comparison = { kind: a.kind, rows: [], onlyInA: [], onlyInB: [] };
  const byKey = (r: BenchReport) => new Map((r.rows as unknown as Record<string, unknown>[]).map((row) => [rowKey(r.kind, row), row]));
  const ra = byKey(a),
    rb = byKey(b);
  for (const [key, rowA] of ra) {
    const rowB = rb.get(key);
    if (!rowB) {
      out.onlyInA.push(key);
      continue;
    }
    for (const m of METRICS[a.kind]) {
      const va = (m.get as (row: unknown) => number | null | undefined)(rowA) ?? null;
      const vb = (m.get as (row: unknown) => number | null | undefined)(rowB) ?? null;
      const ratio = va !== null && vb !== null && va !== 0 && vb !== 0 ? (m.lowerIsBetter ? va / vb : vb / va) : null;
      out.rows.push({ key, metric: m.name, a: va, b: vb, ratio, better: ratio === null ? null : Math.abs(ratio - 1) < 0.02 ? 'same' : ratio > 1 ? 'b' : 'a' });
    }
  }
  for (const key of rb.keys()) if (!ra.has(key)) out.onlyInB.push(key);
  return out;
}

/** compare's table: each matched row's figures for A and B and B's speed-up (>1: B better). */
export function formatComparison(a: BenchReport, b: BenchReport, fileA: string, fileB: string): string {
  const c = compareReports(a, b);
  const lines = [
    `A: ${fileA} (${a.createdAt}, ${a.host})`,
    `   ${machineLine(a.machine)}`,
    `B: ${fileB} (${b.createdAt}, ${b.host})`,
    `   ${machineLine(b.machine)}`,
    '',
  ];
  const show = (name: string, v: number | null) => (METRICS[c.kind].find((m) => m.name === name)?.show ?? ((x: number | null | undefined) => fmt(x, 4)))(v);
  lines.push(
    table(
      ['row', 'figure', 'A', 'B', 'B vs A'],
      c.rows.map((r) => [
        r.key,
        r.metric,
        show(r.metric, r.a),
        show(r.metric, r.b),
        r.ratio === null ? '-' : `${r.ratio.toFixed(2)}x${r.better === 'b' ? ' better' : r.better === 'a' ? ' worse' : ''}`,
      ]),
    ),
  );
  if (c.onlyInA.length) lines.push(`only in A: ${c.onlyInA.join('; ')}`);
  if (c.onlyInB.length) lines.push(`only in B: ${c.onlyInB.join('; ')}`);
  if (!c.rows.length) lines.push('no row of A measured what a row of B did (precision, tokens and batch must match)');
  return lines.join('\n');
}
