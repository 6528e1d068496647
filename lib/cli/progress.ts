// Progress for every long CLI command (extract, study, train, demo-data, worker, the demo), one renderer:
//
// - On a terminal: one status line at the bottom (label, bar, count, what the unit in flight is doing, rate,
//   ETA), redrawn in place. While it is up, every line written to stderr or to a terminal stdout (the command's
//   header, log lines, the Ctrl-C notice, other code's messages) is printed above it: the status line is cleared
//   first and drawn again below. stop() clears it, so the summary that follows starts on a clean line.
// - Off a terminal, with CI set or CALMKIT_PLAIN_PROGRESS=1: plain lines, at most one per
//   CALMKIT_PROGRESS_INTERVAL_MS (default 2000 ms; 0 prints a line for every finished unit), and always the last.
//
// Written here instead of with cli-progress (which this replaced): the bar has to share the terminal with the
// header, log lines, the Ctrl-C notice and the summary, and cli-progress cannot print above a SingleBar (its
// MultiBar.log holds lines until its next timed redraw), which is how headers and summaries landed on the bar's
// line. What a status line needs is a carriage return, ESC[K (erase to the end of the line) and the width.

export interface ProgressUpdate {
  /** Units that failed (part of `done`): shown as "N failed". */
  failed?: number;
  /** What the unit in flight is doing, e.g. "clip 4: window 2/6, block 17/36". */
  note?: string;
}

export interface Progress {
  /** `done` units of the total; may be fractional (a unit part-way), the count shown is the whole units. */
  update(done: number, extra?: ProgressUpdate): void;
  setTotal(total: number): void;
  /** A line above the status line (a plain line off a terminal). */
  log(line: string): void;
  /** Ends the display: the status line is cleared; in plain mode the last state is printed if it was not. */
  stop(): void;
}

/** Plain mode prints a line at most this often (and always the last one); CALMKIT_PROGRESS_INTERVAL_MS sets it. */
function plainIntervalMs(): number {
  const raw = process.env.CALMKIT_PROGRESS_INTERVAL_MS;
  const v = raw === undefined || raw === '' ? NaN : Number(raw);
  return Number.isFinite(v) && v >= 0 ? v : 2000;
}

export function plainProgressWanted(): boolean {
  return !process.stderr.isTTY || !!process.env.CI || process.env.CALMKIT_PLAIN_PROGRESS === '1';
}

/** "1 clip", "3 clips", "0 clips". */
export function plural(n: number, unit: string): string {
  return `${n} ${n === 1 ? unit : pluralOf(unit)}`;
}

// The units counted here (clip, epoch, item) all take an s.
function pluralOf(unit: string): string {
  return `${unit}s`;
}

/** 45s, 3m05s, 2h07m; "?" when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** "2.50 clips/s", "12.3 clips/s", "333 clips/s", or "4.2 s/clip" and "3m05s/clip" when slower than one a second. */
export function formatRate(units: number, seconds: number, unit: string): string {
  if (!(units > 0) || !(seconds > 0)) return `- ${pluralOf(unit)}/s`;
  const rate = units / seconds;
  if (rate >= 1) return `${rate.toFixed(rate >= 100 ? 0 : rate >= 10 ? 1 : 2)} ${pluralOf(unit)}/s`;
  const per = seconds / units;
  return per < 60 ? `${per.toFixed(1)} s/${unit}` : `${formatDuration(per)}/${unit}`;
}

// --- the terminal status line -------------------------------------------------------------------------------

type Write = (chunk: unknown, ...rest: unknown[]) => boolean;

function endsWithNewline(chunk: unknown): boolean {
  if (typeof chunk === 'string') return chunk.endsWith('\n');
  if (chunk instanceof Uint8Array) return chunk.length > 0 && chunk[chunk.length - 1] === 0x0a;
  return true;
}

function isEmpty(chunk: unknown): boolean {
  return (typeof chunk === 'string' || chunk instanceof Uint8Array) && chunk.length === 0;
}

/**
 * The one status line on stderr. Room is left at the end of the line: the terminal echoes "^C" at the cursor
 * when Ctrl-C is pressed, and two characters past the last column would wrap and leave a stale status line.
 */
class StatusLine {
  private text = '';
  private shown = false;
  /** Someone wrote part of a line (no newline yet): drawing now would run into it. */
  private midLine = false;
  private readonly restores: (() => void)[] = [];
  private readonly rawWrite: (s: string) => void;
  private readonly onExit = () => this.clear();
  private readonly onResize = () => this.draw();

  constructor(private readonly out: NodeJS.WriteStream) {
    const original = out.write as unknown as Write;
    this.rawWrite = (s) => void original.call(out, s);
    this.hook(out);
    if (process.stdout !== out && process.stdout.isTTY) this.hook(process.stdout);
    process.once('exit', this.onExit);
    out.on('resize', this.onResize);
  }

  private hook(stream: NodeJS.WriteStream): void {
    const original = stream.write as unknown as Write;
    const hooked: Write = (chunk, ...rest) => {
      if (isEmpty(chunk)) return original.call(stream, chunk, ...rest);
      this.clear();
      const ok = original.call(stream, chunk, ...rest);
      this.midLine = !endsWithNewline(chunk);
      this.draw();
      return ok;
    };
    (stream as unknown as { write: Write }).write = hooked;
    this.restores.push(() => {
      if ((stream as unknown as { write: Write }).write === hooked) (stream as unknown as { write: Write }).write = original;
    });
  }

  set(text: string): void {
    this.text = text;
    this.draw();
  }

  private draw(): void {
    if (this.midLine || this.text === '') return;
    const width = Math.max(10, (this.out.columns || 80) - 3);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this replaces (a label must not move the cursor)
    const chars = Array.from(this.text.replace(/[\u0000-\u001f\u007f]/g, ' '));
    const line = chars.length > width ? `${chars.slice(0, width - 1).join('')}…` : chars.join('');
    this.rawWrite(`\r${line}\x1b[K`);
    this.shown = true;
  }

  clear(): void {
    if (!this.shown) return;
    this.rawWrite('\r\x1b[K');
    this.shown = false;
  }

  end(): void {
    this.clear();
    this.text = '';
    for (const restore of this.restores.splice(0)) restore();
    process.off('exit', this.onExit);
    this.out.off('resize', this.onResize);
  }
}

let activeStatus: StatusLine | undefined;

/** Whether a status line is on the terminal now (lines written to stderr go above it). */
export function statusLineActive(): boolean {
  return activeStatus !== undefined;
}

// --- the display --------------------------------------------------------------------------------------------

const BAR_WIDTH = 24;

function bar(fraction: number): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * BAR_WIDTH);
  return '█'.repeat(filled) + '░'.repeat(BAR_WIDTH - filled);
}

/**
 * A progress display for `total` units (`unit` singular: "clip", "epoch"); `total` undefined counts without a
 * bar or ETA (a worker serving a queue). Its clock starts here: create it once loading is over, so the rate and
 * the ETA measure the work alone.
 */
export function createProgress(label: string, total: number | undefined, unit = 'item'): Progress {
  const started = Date.now();
  let tot = total;
  let done = 0;
  let extra: ProgressUpdate = {};
  const seconds = () => (Date.now() - started) / 1000;
  const finished = () => tot !== undefined && done >= tot;
  const count = () => (tot === undefined ? plural(Math.floor(done), unit) : `${Math.floor(done)}/${tot} ${tot === 1 ? unit : pluralOf(unit)}`);
  const failed = () => (extra.failed ? ` (${extra.failed} failed)` : '');
  // A rate or an ETA from less than a unit's worth of a second is noise: shown once there is something to go on.
  const rate = () => (done > 0 && seconds() >= 0.5 ? [formatRate(done, seconds(), unit)] : []);
  const eta = () => (tot === undefined ? [] : [`ETA ${done > 0 ? formatDuration(((tot - done) * seconds()) / done) : '?'}`]);
  const summary = () =>
    `${count()}${failed()} in ${seconds().toFixed(1)} s${rate()
      .map((r) => ` (${r})`)
      .join('')}`;

  if (plainProgressWanted()) {
    const interval = plainIntervalMs();
    let lastLine = 0;
    let printedWhole = -1;
    let printedFinal = false;
    const line = () =>
      finished() ? `${label}: ${summary()}` : [`${label}: ${count()}${failed()}`, ...rate(), ...eta()].join(', ') + (extra.note ? `; ${extra.note}` : '');
    const print = () => {
      lastLine = Date.now();
      printedWhole = Math.floor(done);
      printedFinal = finished();
      process.stderr.write(`${line()}\n`);
    };
    return {
      update(d, e) {
        done = d;
        extra = e ?? {};
        if (finished()) {
          if (!printedFinal) print();
        } else if (interval === 0 ? Math.floor(done) !== printedWhole : Date.now() - lastLine >= interval) {
          // Interval 0: a line for every finished unit (not for every step inside one).
          print();
        }
      },
      setTotal(t) {
        tot = t;
      },
      log(l) {
        process.stderr.write(`${l}\n`);
      },
      stop() {
        if (!finished() && tot !== undefined) process.stderr.write(`${label}: stopped at ${count()}${failed()} after ${seconds().toFixed(1)} s\n`);
      },
    };
  }

  activeStatus?.end();
  const status = new StatusLine(process.stderr);
  activeStatus = status;
  let lastDraw = 0;
  let pending: NodeJS.Timeout | undefined;
  const text = () => {
    const head = tot === undefined ? `${label}: ${count()}${failed()}` : `${label} ${bar(done / Math.max(tot, 1e-9))} ${count()}${failed()}`;
    const tail = tot === undefined ? [`${formatDuration(seconds())} elapsed`] : eta();
    // The note last: on a narrow terminal it is what gets cut, not the rate or the ETA.
    return [head, ...rate(), ...tail, ...(extra.note ? [extra.note] : [])].join(' | ');
  };
  const draw = () => {
    if (pending) clearTimeout(pending);
    pending = undefined;
    lastDraw = Date.now();
    if (activeStatus === status) status.set(text());
  };
  // At most ten redraws a second, and one a second without updates so the rate and the ETA stay current.
  const tick = setInterval(draw, 1000).unref();
  draw();
  return {
    update(d, e) {
      done = d;
      extra = e ?? {};
      const wait = 100 - (Date.now() - lastDraw);
      if (wait <= 0) draw();
      else pending ??= setTimeout(draw, wait).unref();
    },
    setTotal(t) {
      tot = t;
    },
    log(l) {
      process.stderr.write(`${l}\n`);
    },
    stop() {
      clearInterval(tick);
      if (pending) clearTimeout(pending);
      pending = undefined;
      if (activeStatus === status) {
        status.end();
        activeStatus = undefined;
      }
    },
  };
}
