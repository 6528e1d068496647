// The CLI prints one line for an error (no stack, nothing from LibTorch) and exits with the documented code;
// --verbose or CALMKIT_DEBUG=1 shows the stack and causes.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { runCli } from './helpers/extract-fixtures';
import { tinyCheckpoint } from './helpers/model';

let dir = '';
let model = '';
let clip = '';

test.before(async () => {
  ({ dir, file: model } = await tinyCheckpoint({ layers: 1 }));
  clip = path.join(dir, 'clip.wav');
  const { writeAudio } = await import('../lib');
  const samples = new Float32Array(44100).map((_, i) => Math.sin(i / 10));
  await writeAudio(clip, { interleaved: samples, channels: 1, sampleRate: 44100 });
});

test.after.always(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.trim() !== '');
}

test('extract into a path that is a file: one line naming it, refused before any work (exit 2)', async (t) => {
  const file = path.join(dir, 'not-a-dir');
  fs.writeFileSync(file, 'x');
  const r = await runCli(['extract', clip, '--model', model, '--out', file, '--layers', '1', '--formatting', 'none']);
  t.is(r.code, 2, r.stderr);
  const errors = lines(r.stderr).filter((l) => l.startsWith('calmkit:'));
  t.is(errors.length, 1, r.stderr);
  t.regex(
    errors[0]!,
    /^calmkit: ERR_OUTPUT_EXISTS: --out .*not-a-dir exists and is not a folder of calmkit feature stores \(it is a file, and --out names a folder\)/,
  );
  t.notRegex(r.stderr, /\n\s+at /, 'no stack');
  t.is(fs.readFileSync(file, 'utf8'), 'x');
});

test('model init into a missing folder: one line, no LibTorch internals', async (t) => {
  const r = await runCli(['model', 'init', '--preset', 'tiny', '--layers', '1', '--out', '/nonexistent/dir/x.pt']);
  t.is(r.code, 1);
  t.deepEqual(lines(r.stderr), ['calmkit: ERR_MODEL_FILE: /nonexistent/dir/x.pt: cannot write the checkpoint: the folder /nonexistent/dir does not exist']);
});

test('a damaged model: one line; --verbose and CALMKIT_DEBUG=1 add the stack', async (t) => {
  const bad = path.join(dir, 'bad.pt');
  fs.writeFileSync(bad, fs.readFileSync(model).subarray(0, 5000));
  const plain = await runCli(['model', 'info', bad]);
  t.is(plain.code, 1);
  t.is(lines(plain.stderr).length, 1, plain.stderr);
  t.regex(plain.stderr, /^calmkit: ERR_MODEL_FORMAT: .*bad\.pt: not a readable checkpoint archive: no end-of-central-directory record/);
  const verbose = await runCli(['model', 'info', bad, '--verbose']);
  t.is(verbose.code, 1);
  t.regex(verbose.stderr, /^calmkit: ERR_MODEL_FORMAT: /);
  t.regex(verbose.stderr, /\n\s+at /, 'the stack');
  const debug = await runCli(['model', 'info', bad], { ...process.env, CALMKIT_THREADS: '1', CALMKIT_DEBUG: '1' });
  t.regex(debug.stderr, /\n\s+at /, 'the stack');
});

test('some clips failing is exit 2, the rest kept', async (t) => {
  const broken = path.join(dir, 'broken.wav');
  fs.writeFileSync(broken, 'RIFF not really');
  const out = path.join(dir, 'out2');
  const r = await runCli(['extract', clip, broken, '--model', model, '--out', out, '--layers', '1', '--formatting', 'none']);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stdout, /1 extracted, 0 already in the store, 1 failed/);
});
