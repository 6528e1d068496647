// Progress for long CLI commands: a cli-progress bar on a TTY, plain lines when not a TTY or in CI
// (log files and CI output stay readable).
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, info?: Record<string, string | number>): void;
  setTotal(total: number): void;
  log(line: string): void;
  stop(): void;
}

/** Plain mode prints a line at most this often (and always the last one); CALMKIT_PROGRESS_INTERVAL_MS sets it. */
function plainIntervalMs(): number {
  const v = Number(process.env.CALMKIT_PROGRESS_INTERVAL_MS);
  return Number.isFinite(v) && v >= 0 ? v : 2000;
}

export function plainProgressWanted(): boolean {
  return !process.stderr.isTTY || !!process.env.CI || process.env.CALMKIT_PLAIN_PROGRESS === '1';
}

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** A progress display for `total` units of `unit`; rate and ETA are computed here. */
export function createProgress(label: string, total: number, unit = 'items'): Progress {
  const started = Date.now();
  let lastPlain = 0;
  let current = 0;
  let tot = total;
  const rateOf = (done: number) => done / Math.max(1e-3, (Date.now() - started) / 1000);
  if (plainProgressWanted()) {
    const interval = plainIntervalMs();
    return {
      update(done, info) {
        current = done;
        const now = Date.now();
        if (now - lastPlain < interval && done < tot) return;
        lastPlain = now;
        const rate = rateOf(done);
        const extra = info ? ' ' + Object.entries(info).map(([k, v]) => `${k}=${v}`).join(' ') : '';
        process.stderr.write(`${label}: ${done}/${tot} ${unit} (${rate.toFixed(2)} ${unit}/s, ETA ${formatEta((tot - done) / rate)})${extra}\n`);
      },
      setTotal(t) {
        tot = t;
      },
      log(line) {
        process.stderr.write(line + '\n');
      },
      stop() {
        if (current < tot) process.stderr.write(`${label}: stopped at ${current}/${tot} ${unit}\n`);
      },
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_h}{extra}`,
      hideCursor: true,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { rate: '0.00', eta_h: '?', extra: '' });
  return {
    update(done, info) {
      current = done;
      const rate = rateOf(done);
      const extra = info ? ' | ' + Object.entries(info).map(([k, v]) => `${k}=${v}`).join(' ') : '';
      bar.update(done, { rate: rate.toFixed(2), eta_h: formatEta((tot - done) / rate), extra });
    },
    setTotal(t) {
      tot = t;
      bar.setTotal(t);
    },
    log(line) {
      process.stderr.write('\n' + line + '\n');
    },
    stop() {
      bar.stop();
    },
  };
}
