// A model is loaded and proven sound, or refused with a ModelError naming the file and the tensor, record or
// attribute: damaged zip records (empty, cut short, bytes changed, size fields altered), non-finite weights,
// hyperparameters whose derived quantities overflow, and paths that are not regular files. Each case here once
// loaded (and then crashed, hung or gave NaN features); damaged archives are made by
// test/helpers/damage_checkpoint.py from a good tiny checkpoint.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { AudioError, Jukebox, loadAudio, ModelError } from '../lib';
import { synthAudio, tinyCheckpoint } from './helpers/model';
import { PYTHON } from './helpers/paths';

process.env.CALMKIT_THREADS ??= '1';

const DAMAGE = path.join(__dirname, 'helpers', 'damage_checkpoint.py');
const REWRITE = path.join(__dirname, 'helpers', 'rewrite_checkpoint.py');
const CLIP = { samples: synthAudio(20000, 3), sampleRate: 44100 };

let dir = '';
let good = '';

const POS = 'prior.pos_emb.pos_emb';
const QKV = 'prior.transformer._attn_mods.0.attn.c_attn.w';

// Every damaged archive, made in one Python run (a torch start costs seconds).
const DAMAGES: Record<string, object> = {
  'empty-pos.pt': { empty: POS },
  'cut-qkv.pt': { cut: [QKV, 1000] },
  'flip-qkv.pt': { flip: [QKV, 777] },
  'flip-pkl.pt': { flip_record: ['/data.pkl', 40] },
  'size-pos.pt': { size_field: [POS, -4] },
  'nan-qkv.pt': { value: [QKV, 130, 'nan'] },
  'inf-ln.pt': { value: ['prior.transformer._attn_mods.1.ln_0.weight', 7, 'inf'] },
  'nan-pos.pt': { value: [POS, 128 * 3 + 1, 'nan'] },
  'inf-conv.pt': { value: ['encoders.2.level_blocks.0.model.0.0.weight', 0, '-inf'] },
  'nan-codebook.pt': { row: ['bottleneck.level_blocks.2.k', 5, 'nan'] },
};

test.before(async () => {
  ({ dir, file: good } = await tinyCheckpoint({ layers: 2 }));
  const jobs = Object.fromEntries(Object.entries(DAMAGES).map(([name, op]) => [path.join(dir, name), op]));
  execFileSync(PYTHON, [DAMAGE, good, JSON.stringify(jobs)], { stdio: 'pipe' });
});

test.after.always(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function damaged(name: keyof typeof DAMAGES & string): string {
  return path.join(dir, name);
}

async function refused(t: import('ava').ExecutionContext, file: string, pattern: RegExp): Promise<void> {
  const e = await t.throwsAsync(Jukebox.load(file), { instanceOf: ModelError });
  t.is(e?.code, 'ERR_MODEL_FORMAT', e?.message);
  t.true(e!.message.startsWith(file), `the message names the file: ${e?.message}`);
  t.regex(e!.message, pattern);
  t.notRegex(e!.message, /Exception raised from|frame #|inline_container/);
}

test('an empty tensor record is refused (it used to load and then crash extract with SIGSEGV)', async (t) => {
  await refused(t, damaged('empty-pos.pt'), /'prior\.pos_emb\.pos_emb': its data record is empty or was not read whole/);
});

test('a tensor record cut short is refused, naming the tensor and both sizes', async (t) => {
  await refused(
    t,
    damaged('cut-qkv.pt'),
    /'prior\.transformer\._attn_mods\.0\.attn\.c_attn\.w': its data record '[^']+' holds 1000 bytes; float16 \(128, 96\) needs 24576/,
  );
});

test('changed bytes inside a tensor record fail its CRC-32, naming the tensor', async (t) => {
  await refused(
    t,
    damaged('flip-qkv.pt'),
    /'prior\.transformer\._attn_mods\.0\.attn\.c_attn\.w': its data record '[^']+' is damaged \(its bytes do not match the archive's CRC-32\)/,
  );
  // The opt-out for trusted files skips the CRC (and so loads the altered bytes): it is what it says.
  const trusted = await Jukebox.load(path.join(dir, 'flip-qkv.pt'), { verifyWeights: false });
  trusted.dispose();
  t.pass();
});

test('changed bytes in the pickle are refused before the loader parses them', async (t) => {
  await refused(t, damaged('flip-pkl.pt'), /record '[^']+\/data\.pkl' is damaged: its bytes do not match the CRC-32/);
});

test('altered zip size fields are refused', async (t) => {
  // torch.jit.save writes data descriptors, so the local header has no sizes to compare: the record's size against
  // its tensor's shape catches it.
  await refused(t, damaged('size-pos.pt'), /'prior\.pos_emb\.pos_emb': its data record '[^']+' holds 524284 bytes; float32 \(1024, 128\) needs 524288/);
});

test('NaN or Inf in a weight is refused, naming the tensor and the first bad element', async (t) => {
  const cases: [string, RegExp][] = [
    ['nan-qkv.pt', /'prior\.transformer\._attn_mods\.0\.attn\.c_attn\.w' holds 1 non-finite value \(NaN at \[1, 34\]\)/],
    ['inf-ln.pt', /'prior\.transformer\._attn_mods\.1\.ln_0\.weight' holds 1 non-finite value \(Inf at \[7\]\)/],
    ['nan-pos.pt', /'prior\.pos_emb\.pos_emb' holds 1 non-finite value \(NaN at \[3, 1\]\)/],
    ['inf-conv.pt', /'encoders\.2\.level_blocks\.0\.model\.0\.0\.weight' holds 1 non-finite value \(Inf at \[0, 0, 0\]\)/],
    ['nan-codebook.pt', /'bottleneck\.level_blocks\.2\.k' holds 64 non-finite values \(NaN at \[5, 0\] first\)/],
  ];
  for (const [name, pattern] of cases) await refused(t, damaged(name), pattern);
  // inspect proves the same.
  await t.throwsAsync(Jukebox.inspect(path.join(dir, 'nan-pos.pt')), { instanceOf: ModelError, message: /non-finite/ });
});

test('hyperparameters whose derived quantities overflow are refused at load, naming them', async (t) => {
  const deep = path.join(dir, 'deep-vq.pt');
  execFileSync(PYTHON, [REWRITE, good, deep, JSON.stringify({ attrs: { vq_depth: 20, vq_dilation_growth_rate: 16 } })], { stdio: 'pipe' });
  await refused(t, deep, /vq_dilation_growth_rate 16 \*\* \(vq_depth 20 - 1\) makes a dilation beyond 2\^31 samples/);
  const wide = path.join(dir, 'durations.pt');
  execFileSync(PYTHON, [REWRITE, good, wide, JSON.stringify({ attrs: { max_duration: 1e300, t_bins: -5 } })], { stdio: 'pipe' });
  const e = await t.throwsAsync(Jukebox.load(wide), { instanceOf: ModelError });
  t.regex(e!.message, /max_duration is .* outside/);
  t.regex(e!.message, /t_bins is -5, outside 1\.\.1048576/);
});

test.serial('paths that are not regular files are refused at once with the reason', async (t) => {
  const fifo = path.join(dir, 'model.fifo');
  execFileSync('mkfifo', [fifo]);
  const loop = path.join(dir, 'loop.pt');
  fs.symlinkSync(loop, loop);
  const started = Date.now();
  // A FIFO with no writer used to hold the load (and every later load) forever.
  await t.throwsAsync(Jukebox.load(fifo), {
    instanceOf: ModelError,
    code: 'ERR_MODEL_FILE',
    message: /model\.fifo: is a FIFO \(named pipe\), not a regular file/,
  });
  await t.throwsAsync(Jukebox.load(loop), { instanceOf: ModelError, code: 'ERR_MODEL_FILE', message: /loop\.pt: symlink loop/ });
  await t.throwsAsync(Jukebox.load('/dev/zero'), { instanceOf: ModelError, code: 'ERR_MODEL_FILE', message: /is a device/ });
  await t.throwsAsync(Jukebox.load(dir), { instanceOf: ModelError, code: 'ERR_MODEL_FILE', message: /is a directory/ });
  // The audio front-end says the same of its inputs.
  await t.throwsAsync(loadAudio(fifo), { instanceOf: AudioError, code: 'ERR_AUDIO_UNREADABLE', message: /is a FIFO/ });
  await t.throwsAsync(loadAudio(loop), { instanceOf: AudioError, message: /symlink loop/ });
  t.true(Date.now() - started < 10_000, 'refused at once');
  const model = await Jukebox.load(good);
  const f = await model.extract(CLIP, { layers: [2] });
  t.true(f.layers[2].data.every(Number.isFinite));
  model.dispose();
});

test.serial('a load never waits behind an extraction (loads have their own threads)', async (t) => {
  const model = await Jukebox.load(good);
  // Every window of a long clip: several seconds of compute on the single compute thread.
  const long = { samples: synthAudio(44100 * 40, 5), sampleRate: 44100 };
  let extractDone = 0;
  const running = model.extract(long, { layers: [2], windows: 'all' }).then(() => (extractDone = Date.now()));
  await new Promise((r) => setTimeout(r, 200));
  const other = await Jukebox.load(good);
  const loadDone = Date.now();
  other.dispose();
  await running;
  model.dispose();
  t.true(loadDone < extractDone, `the load finished ${extractDone - loadDone} ms before the extraction`);
});
