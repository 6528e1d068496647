// What several commands print the same way: Table I of a probe set, and one progress display per phase of a
// long command (extraction, then each stack of probes).
import type { ProbeSet } from '../probes';
import type { StudyEvent } from '../study';
import { createProgress, type Progress } from './progress';

/** One progress display per phase of a long command; plain lines off a TTY. */
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
