// The progress display as a person sees it: `calmkit extract` under a pseudo-terminal of 120 columns (Python's
// pty module, test/helpers/pty_run.py), its output replayed into a terminal emulator (@xterm/headless, xterm.js
// without a browser) to get the screen. Header, status line and summary must each be intact on their own line,
// the status line must show progress inside a clip (windows, blocks) with an ETA, and Ctrl-C must leave a clean
// screen. Plus the plain lines for logs, in-process.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Terminal } from '@xterm/headless';
import { createProgress, formatRate, plural } from '../lib/cli/progress';
import { CLI, makeDataset, tinyModel } from './helpers/extract-fixtures';
import { PYTHON, ROOT } from './helpers/paths';

const COLS = 120;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ck-tty-'));
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));

const setup = (async () => {
  const model = await tinyModel(tmp);
  const dataset = path.join(tmp, 'ds');
  // 8 s clips, every window: about three windows of six blocks each per clip, so progress inside a clip shows.
  await makeDataset(dataset, 4, [], 8);
  return { model, dataset };
})();

interface PtyRun {
  output: Buffer;
  code: number | null;
  signal: number | null;
  interruptedAt: number | null;
  timedOut: boolean;
}

function extractUnderPty(out: string, model: string, dataset: string, interruptOn?: string): PtyRun {
  // A person's terminal: no CI, no plain-progress switch.
  const env: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm-256color', CALMKIT_THREADS: '1' };
  delete env.CI;
  delete env.CALMKIT_PLAIN_PROGRESS;
  delete env.CALMKIT_PROGRESS_INTERVAL_MS;
  const args = [path.join(ROOT, 'test', 'helpers', 'pty_run.py'), '--cols', String(COLS), '--rows', '40', '--timeout', '240'];
  if (interruptOn) args.push('--interrupt-on', interruptOn);
  args.push(
    '--',
    process.execPath,
    '--import=tsx',
    CLI,
    'extract',
    '--dataset',
    dataset,
    '--model',
    model,
    '--out',
    out,
    '--layers',
    '3,6',
    '--windows',
    'all',
    '--formatting',
    'none',
  );
  const r = spawnSync(PYTHON, args, { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (r.status !== 0) throw new Error(`pty_run.py failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout) as Omit<PtyRun, 'output'> & { output: string };
  return { ...j, output: Buffer.from(j.output, 'base64') };
}

/** The screen (scrollback included) after the terminal has processed `bytes`: one string per row, right-trimmed. */
async function screen(bytes: Buffer): Promise<string[]> {
  const term = new Terminal({ cols: COLS, rows: 40, scrollback: 1000, allowProposedApi: true });
  await new Promise<void>((resolve) => term.write(bytes, resolve));
  const buf = term.buffer.active;
  const rows: string[] = [];
  for (let i = 0; i < buf.length; i++) rows.push(buf.getLine(i)?.translateToString(true) ?? '');
  while (rows.length && rows[rows.length - 1] === '') rows.pop();
  term.dispose();
  return rows;
}

const STATUS = /^extract [█░]{24} \d\/4 clips/;

test.serial('on a terminal: header, a status line with windows, blocks and an ETA, then the summary, each on its own line', async (t) => {
  const { model, dataset } = await setup;
  const out = path.join(tmp, 'o1');
  const run = extractUnderPty(out, model, dataset);
  t.false(run.timedOut);
  t.is(run.code, 0, run.output.toString());
  const text = run.output.toString('utf8');

  // Progress inside a clip: the window and block of the clip in flight, and an ETA as soon as anything is done.
  // Which window of clip 1 is first drawn depends on the machine's load: the display redraws at most ten times a
  // second with the latest update, and on a busy machine a clip's events reach the JS thread in bursts (seen: the
  // first line drawn for clip 1 was its window 2). Any of its windows shows the clip's progress.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the status line ends with the terminal's erase-line escape
  t.regex(text, /extract [█░]{24} 0\/4 clips \| (?:[^|]+ \| )?ETA [^|]+ \| clip 1: window \d+\/\d+, block \d\/6\x1b\[K/);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: as above
  t.regex(text, /\| ETA (?:\d+[hm])?\d+[ms]? \| clip [2-4]: window \d+\/\d+, block \d\/6\x1b\[K/);

  // Mid-run, the screen is the two header lines and the status line below them, whole.
  const mid = text.lastIndexOf('clip 3: window 2/');
  t.true(mid > 0);
  const drawn = text.indexOf('\x1b[K', mid) + 3;
  const midScreen = await screen(run.output.subarray(0, Buffer.byteLength(text.slice(0, drawn))));
  t.is(midScreen.length, 3, midScreen.join('\n'));
  t.is(midScreen[0], `extract: loading ${model} (auto, fp32)`);
  t.regex(midScreen[1]!, new RegExp(`^extract: 4 clips, settings [0-9a-f]{24} \\(layers 3,6, mean, none\\), stores under ${out}$`));
  t.regex(midScreen[2]!, STATUS);
  t.true(midScreen[2]!.length <= COLS - 3, 'the status line leaves room for the ^C echo');

  // At the end the status line is gone and the summary stands where it was.
  const end = await screen(run.output);
  t.is(end.length, 3, end.join('\n'));
  t.deepEqual(end.slice(0, 2), midScreen.slice(0, 2));
  t.regex(end[2]!, /^extract: 4 extracted, 0 already in the store, 0 failed, in [\d.]+ s \((?:[\d.]+ clips\/s|[\d.]+ s\/clip|\w+\/clip)\)$/);
});

test.serial('Ctrl-C on a terminal: the notice above the status line, then the summary; no ^C or bar left over', async (t) => {
  const { model, dataset } = await setup;
  const out = path.join(tmp, 'o2');
  const run = extractUnderPty(out, model, dataset, 'clip 2: window 2/');
  t.false(run.timedOut);
  t.not(run.interruptedAt, null, 'Ctrl-C was typed');
  t.is(run.code, 130, run.output.toString());
  const end = await screen(run.output);
  t.is(end.length, 4, end.join('\n'));
  t.is(end[0], `extract: loading ${model} (auto, fp32)`);
  t.regex(end[1]!, /^extract: 4 clips, settings [0-9a-f]{24} \(layers 3,6, mean, none\), stores under /);
  t.is(end[2], 'calmkit extract: interrupted; flushing finished clips (they are kept; rerun to resume)');
  t.regex(end[3]!, /^extract: 1 extracted, 0 already in the store, 0 failed, in [\d.]+ s \(.+\); interrupted with 3 clips left$/);
  for (const row of end) t.notRegex(row, /\^C|█|░/);
});

// --- plain lines (logs, CI) ------------------------------------------------------------------------------------

function capturePlain(fn: () => void, env: Record<string, string>): string[] {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  const write = process.stderr.write.bind(process.stderr);
  let captured = '';
  process.stderr.write = ((chunk: string) => {
    captured += chunk;
    return true;
  }) as typeof process.stderr.write;
  try {
    fn();
  } finally {
    process.stderr.write = write;
    process.env = saved;
  }
  return captured.split('\n').filter(Boolean);
}

test('plain mode, interval 0: a line per finished unit (not per step inside one), failures in words, a final line', (t) => {
  const lines = capturePlain(
    () => {
      const p = createProgress('extract', 3, 'clip');
      p.update(0);
      p.update(0.5, { note: 'clip 1: block 3/6' });
      p.update(1);
      p.update(1.5, { note: 'clip 2: block 3/6' });
      p.update(2, { failed: 1 });
      p.update(3, { failed: 1 });
      p.stop();
    },
    { CALMKIT_PLAIN_PROGRESS: '1', CALMKIT_PROGRESS_INTERVAL_MS: '0' },
  );
  t.is(lines.length, 4, lines.join('\n'));
  t.is(lines[0], 'extract: 0/3 clips, ETA ?');
  t.regex(lines[1]!, /^extract: 1\/3 clips, ETA \d+s$/);
  t.regex(lines[2]!, /^extract: 2\/3 clips \(1 failed\), ETA \d+s$/);
  t.regex(lines[3]!, /^extract: 3\/3 clips \(1 failed\) in [\d.]+ s$/);
});

test('plain mode with an interval: the first line, then none until the interval passes, and always the last', (t) => {
  const lines = capturePlain(
    () => {
      const p = createProgress('render', 1, 'clip');
      p.update(0);
      p.update(0.5);
      p.update(1);
      p.stop();
    },
    { CALMKIT_PLAIN_PROGRESS: '1', CALMKIT_PROGRESS_INTERVAL_MS: '60000' },
  );
  t.deepEqual(
    lines.map((l) => l.replace(/[\d.]+ s$/, 'T s')),
    ['render: 0/1 clip, ETA ?', 'render: 1/1 clip in T s'],
  );
});

test('plain mode: stop() before the end says where it stopped', (t) => {
  const lines = capturePlain(
    () => {
      const p = createProgress('extract', 5, 'clip');
      p.update(2);
      p.stop();
    },
    { CALMKIT_PLAIN_PROGRESS: '1', CALMKIT_PROGRESS_INTERVAL_MS: '60000' },
  );
  t.regex(lines[lines.length - 1]!, /^extract: stopped at 2\/5 clips after [\d.]+ s$/);
});

test('counts and rates read as words: 1 clip, 3 clips, a rate per second or seconds per clip', (t) => {
  t.is(plural(1, 'clip'), '1 clip');
  t.is(plural(0, 'clip'), '0 clips');
  t.is(plural(3, 'epoch'), '3 epochs');
  t.is(formatRate(5, 2, 'clip'), '2.50 clips/s');
  t.is(formatRate(1000, 3, 'clip'), '333 clips/s');
  t.is(formatRate(1, 4.2, 'clip'), '4.2 s/clip');
  t.is(formatRate(2, 370, 'clip'), '3m05s/clip');
});
