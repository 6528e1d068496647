// The Markdown tables of benchmarks/RESULTS.md from `calmkit bench --json` reports (any kind, any number), so a
// re-measurement regenerates the tables instead of copying figures by hand:
//   npm run bench -- tables results/*.json
import { readBenchReport, type BenchReport, type ExtractReport, type PipelineReport, type ProbeReport } from '../lib/bench';

const f = (v: number | null | undefined, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
const x = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : `${v.toFixed(2)}x`);
const pct = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : `${(v * 100).toFixed(0)} %`);

function md(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function where(r: BenchReport): string {
  const m = r.machine;
  const load = m.loadAverage ? `, load average ${m.loadAverage.map((v) => v.toFixed(1)).join(' / ')} at the start` : '';
  return `${r.createdAt}, ${m.cpuModel}, ${m.usableCpus} CPUs, ${m.threads} threads, LibTorch ${m.libtorchVersion}, ${m.blas}${load}; \`${r.command}\``;
}

function extract(r: ExtractReport): string {
  const c = r.config as Record<string, unknown>;
  const rows = r.rows.map((row) => [
    `${c.preset}${c.model ? ` (${String(c.model)})` : ''}, ${row.precision}, ${row.tokens} tokens, batch ${row.batch}${row.cpuBufferCache ? '' : ', no buffer cache'}`,
    f(row.clipSeconds.median),
    f(row.encodeSeconds.median),
    f(row.layerSeconds.median, 4),
    `${f(row.blocksGflopPerSecond, 0)} (${pct(row.peakFraction)})`,
    row.reference ? f(row.reference.clipSeconds) : '-',
    row.reference ? x(row.reference.speedup) : '-',
    row.reference ? x(row.reference.cpuSpeedup) : '-',
    row.reference ? x(row.reference.layerCpuSpeedup) : '-',
    row.vsFp32 ? `${row.vsFp32.cosine.toFixed(7)}${row.vsFp32.tokensIdentical ? '' : ' (tokens differ)'}` : '-',
  ]);
  const peaks = r.peaks.map((p) => `${p.dtype} ${p.gflopPerSecond.toFixed(0)} GFLOP/s (${p.kernel}, ${p.size}^3)`).join(', ');
  return [
    `${where(r)}. Layers 1-${c.layers}${Number(c.layersRun) < Number(c.layers) ? ` (${c.layersRun} run, extrapolated)` : ''}, ${c.rounds} rounds after ${c.warmup} warm-up; GEMM peaks: ${peaks}.`,
    '',
    md(
      [
        'row',
        'clip s',
        'encode s',
        'layer s',
        'blocks GFLOP/s (of peak)',
        'eager clip s',
        'vs eager (wall)',
        'vs eager (CPU)',
        'per layer vs eager (CPU)',
        'cosine to fp32',
      ],
      rows,
    ),
  ].join('\n');
}

function probes(r: ProbeReport): string {
  return [
    `${where(r)}.`,
    '',
    md(
      ['row', 's/epoch', 'setup s', 'epochs to target', 'target s', 'steps/s', 'GFLOP/s', 'of the GEMM floor'],
      r.rows.map((row) => [
        row.label,
        f(row.secondsPerEpoch),
        f(row.setupSeconds),
        String(row.targetEpochs),
        f(row.targetSeconds, 1),
        f(row.stepsPerSecond, 1),
        f(row.gflopPerSecond, 1),
        pct(row.floorFraction),
      ]),
    ),
  ].join('\n');
}

function pipeline(r: PipelineReport): string {
  return [
    `${where(r)}.`,
    '',
    md(
      ['row', 'wall s', 'clips/s', 'model s/clip', 'decode s/clip', 'exposed s', 'model busy'],
      r.rows.map((row) => [
        row.label,
        f(row.wallSeconds, 1),
        f(row.clipsPerSecond),
        f(row.modelSecondsPerClip),
        f(row.decodeSecondsPerClip),
        f(row.exposedSeconds, 2),
        pct(row.modelBusyFraction),
      ]),
    ),
  ].join('\n');
}

for (const file of process.argv.slice(2)) {
  const r = readBenchReport(file);
  console.log(`<!-- ${file} -->`);
  console.log(r.kind === 'extract' ? extract(r) : r.kind === 'probes' ? probes(r) : pipeline(r));
  console.log('');
}
