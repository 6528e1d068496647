// What several commands print the same way: Table I of a probe set, and one progress display per phase of a
// long command (extraction, then each stack of probes).
import { clipsInFlight, type PipelineProgress } from '../extraction';
import { missingFigurePackages, type ProbeSet } from '../probes';
import type { StudyEvent } from '../study';
import { createProgress, type Progress, type ProgressUpdate } from './progress';

/**
 * An extraction's progress as the display shows it: clips finished (or failed) plus the part of the clips in
 * flight that is done, and a note on what the current clip is doing (its window and block).
 */
export function extractionUpdate(p: PipelineProgress): { done: number; extra: ProgressUpdate } {
  const finished = p.done + p.failed;
  const f = p.inFlight;
  if (!f) return { done: finished, extra: { failed: p.failed } };
  const where: string[] = [];
  // Windows are per clip only when the call holds one clip; with several, the window count spans the batch.
  if (f.clipsTotal === 1 && f.windowsTotal > 1) where.push(`window ${Math.min(f.windowsDone + 1, f.windowsTotal)}/${f.windowsTotal}`);
  if (f.blocksTotal > 0) where.push(`block ${f.blocksDone < f.blocksTotal ? f.blocksDone : 0}/${f.blocksTotal}`);
  const clip = `clip ${Math.min(finished + f.clipsDone + 1, p.total)}`;
  return { done: finished + clipsInFlight(f), extra: { failed: p.failed, note: where.length ? `${clip}: ${where.join(', ')}` : clip } };
}

/** One progress display per phase of a long command (extraction of a variant, each stack of probes). */
export function phaseProgress(): { onEvent: (e: StudyEvent) => void; stop: () => void } {
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
        const line = `${e.variant ? `[${e.variant}] ` : ''}${e.message}`;
        if (bar) bar.log(line);
        else process.stderr.write(`${line}\n`);
      } else if (e.phase === 'extract') {
        switchTo(`x:${e.variant}`, `extract ${e.variant}`, e.progress.total, 'clip');
        const u = extractionUpdate(e.progress);
        bar!.setTotal(e.progress.total);
        bar!.update(u.done, u.extra);
      } else {
        const p = e.progress;
        switchTo(`t:${e.variant}:${p.stack}`, `train ${e.variant} (stack ${p.stack + 1}/${p.stacks}, ${p.probes} probes)`, p.epochs, 'epoch');
        bar!.update(p.epoch);
      }
    },
    stop() {
      bar?.stop();
      bar = undefined;
      current = '';
    },
  };
}

/**
 * A line for a report written without (some of) its figures: the renderer's packages are optional dependencies.
 * Undefined when every figure was rendered.
 */
export function figureNote(): string | undefined {
  const missing = missingFigurePackages();
  if (missing.length === 0) return undefined;
  const which = missing.includes('vega') || missing.includes('vega-lite') ? 'figures not rendered' : 'figures as SVG only (no PNG)';
  return `report: ${which}: the renderer is optional; add it with: npm install ${missing.join(' ')}`;
}

/** Table I on stdout: per instrument the selected config and its test metrics, then the macro F1s. */
export function printTable(probes: ProbeSet): void {
  const t = probes.table();
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '—');
  const arch = (r: (typeof t.rows)[number]) => (r.attention ? `attention ${JSON.stringify(r.hidden)}` : JSON.stringify(r.hidden));
  const width = Math.max(11, ...t.rows.map((r) => arch(r).length));
  console.log(`instrument          ${'hidden'.padEnd(width)} drop  l2      valLoss  P      R      F1     acc    AP     AUC`);
  for (const r of t.rows) {
    console.log(
      `${r.instrument.padEnd(19)} ${arch(r).padEnd(width)} ${String(r.dropout).padEnd(5)} ${String(r.l2).padEnd(7)} ` +
        `${f(r.valLoss)}    ${f(r.precision)}  ${f(r.recall)}  ${f(r.f1)}  ${f(r.accuracy)}  ${f(r.averagePrecision)}  ${f(r.rocAuc)}`,
    );
  }
  console.log(`macro F1 (present class) ${f(t.macro.f1Present)}; macro F1 (present/absent averaged) ${f(t.macro.f1PresentAbsent)}`);
  for (const s of probes.skipped) console.log(`skipped ${s.instrument}: ${s.reason}`);
}
