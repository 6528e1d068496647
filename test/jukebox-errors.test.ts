// Bad checkpoints, bad options and bad audio: each a typed error naming the problem, after which the model and
// the process stay usable. Faulty archives are made from a good one by test/helpers/rewrite_checkpoint.py.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { ArgumentError, AudioError, DeviceError, Jukebox, ModelError } from '../lib';
import { OPENMIC_CLIP, synthAudio, tinyCheckpoint } from './helpers/model';
import { PYTHON } from './helpers/paths';

// See test/jukebox.test.ts: one torch thread keeps a shared 2-core machine responsive.
process.env.CALMKIT_THREADS ??= '1';

const REWRITE = path.join(__dirname, 'helpers', 'rewrite_checkpoint.py');

let dir = '';
let good = '';
let model: Jukebox;

test.before(async () => {
  ({ dir, file: good } = await tinyCheckpoint({ layers: 3 }));
  model = await Jukebox.load(good);
});

test.after.always(() => {
  model?.dispose();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function rewrite(name: string, spec: object): string {
  const out = path.join(dir, name);
  execFileSync(PYTHON, [REWRITE, good, out, JSON.stringify(spec)], { stdio: 'pipe' });
  return out;
}

async function stillWorks(t: import('ava').ExecutionContext): Promise<void> {
  const r = await model.extract({ samples: synthAudio(20000, 2), sampleRate: 44100 }, { layers: [3] });
  t.true(r.layers[3].data.every(Number.isFinite), 'the loaded model still extracts');
}

test('a missing file is ERR_MODEL_FILE', async (t) => {
  const e = await t.throwsAsync(Jukebox.load(path.join(dir, 'nope.pt')), { instanceOf: ModelError });
  t.is(e?.code, 'ERR_MODEL_FILE');
  t.regex(e!.message, /nope\.pt: no such file/);
  await t.throwsAsync(Jukebox.load(dir), { instanceOf: ModelError, message: /is a directory/ });
});

test('truncated and non-TorchScript files are ERR_MODEL_FORMAT', async (t) => {
  const bytes = fs.readFileSync(good);
  const truncated = path.join(dir, 'truncated.pt');
  fs.writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  const text = path.join(dir, 'text.pt');
  fs.writeFileSync(text, 'this is not a model\n');
  for (const f of [truncated, text]) {
    const e = await t.throwsAsync(Jukebox.load(f), { instanceOf: ModelError });
    t.is(e?.code, 'ERR_MODEL_FORMAT');
    // calmkit reads the zip directory itself before LibTorch does (was LibTorch's "not a readable TorchScript
    // archive" message before issue 14).
    t.regex(e!.message, /not a readable checkpoint archive: (no end-of-central-directory record|the file is too short to be a zip archive)/);
  }
  await stillWorks(t);
});

test('missing keys, wrong shapes and wrong dtypes are all listed', async (t) => {
  const bad = rewrite('bad-keys.pt', {
    drop: ['prior.x_emb.weight', 'encoders.2.level_blocks.1.model.0.0.bias'],
    shape: { 'prior.transformer._attn_mods.0.attn.c_attn.w': [128, 95] },
    dtype: { 'prior.transformer._attn_mods.1.mlp.c_fc.w': 'float32', 'y_emb.artist_emb.emb.weight': 'float16' },
  });
  const e = await t.throwsAsync(Jukebox.load(bad), { instanceOf: ModelError });
  t.is(e?.code, 'ERR_MODEL_FORMAT');
  t.regex(e!.message, /5 problems/);
  t.regex(e!.message, /missing key 'prior\.x_emb\.weight'/);
  t.regex(e!.message, /missing key 'encoders\.2\.level_blocks\.1\.model\.0\.0\.bias'/);
  t.regex(e!.message, /'prior\.transformer\._attn_mods\.0\.attn\.c_attn\.w' has shape \(128, 95\), expected \(128, 96\)/);
  t.regex(e!.message, /'prior\.transformer\._attn_mods\.1\.mlp\.c_fc\.w' has dtype float32, expected float16/);
  t.regex(e!.message, /'y_emb\.artist_emb\.emb\.weight' has dtype float16, expected float32/);
  // inspect validates the same way.
  await t.throwsAsync(Jukebox.inspect(bad), { instanceOf: ModelError, message: /5 problems/ });
  await stillWorks(t);
});

test('missing or mistyped hyperparameters are named', async (t) => {
  const bad = rewrite('bad-attrs.pt', { drop_attrs: ['n_ctx'], attrs: { width: 'wide' } });
  const e = await t.throwsAsync(Jukebox.load(bad), { instanceOf: ModelError });
  t.regex(e!.message, /missing attribute 'n_ctx'/);
  t.regex(e!.message, /attribute 'width' should be int/);
  // Hyperparameters that contradict the stored tensors point at the tensors.
  const deeper = rewrite('deeper.pt', { attrs: { depth: 4, full_depth: 4 } });
  await t.throwsAsync(Jukebox.load(deeper), { instanceOf: ModelError, message: /missing key 'prior\.transformer\._attn_mods\.3\.attn\.c_attn\.w'/ });
  const odd = rewrite('odd.pt', { attrs: { blocks: 30 } });
  await t.throwsAsync(Jukebox.load(odd), { instanceOf: ModelError, message: /n_ctx must be a multiple of blocks/ });
});

test('layers out of range and bad options are ArgumentErrors', async (t) => {
  for (const layers of [[0], [4], [1, 2, 99], [1.5]]) {
    const e = await t.throwsAsync(model.extract(OPENMIC_CLIP, { layers }), { instanceOf: ArgumentError });
    t.regex(e!.message, /layer/);
  }
  await t.throwsAsync(model.extract(OPENMIC_CLIP, { pooling: 'max' as 'mean' }), { instanceOf: ArgumentError, message: /pooling/ });
  await t.throwsAsync(model.extract(OPENMIC_CLIP, { windows: 'some' as 'all' }), { instanceOf: ArgumentError, message: /windows/ });
  await t.throwsAsync(model.extract(OPENMIC_CLIP, { pooling: 'segments' }), { instanceOf: ArgumentError, message: /segment length/ });
  await t.throwsAsync(model.extract([]), { instanceOf: ArgumentError });
  // Clips of a batch may differ in length (each runs on its own); a bad one fails the call before any work.
  const mixed = await model.extract([
    { samples: synthAudio(20000), sampleRate: 44100 },
    { samples: synthAudio(30000), sampleRate: 44100 },
  ]);
  t.deepEqual(
    mixed.map((f) => f.tokens.length),
    [Math.floor(20000 / 128), Math.floor(30000 / 128)],
  );
  await t.throwsAsync(model.extract([{ samples: synthAudio(20000), sampleRate: 44100 }, { tokens: new Int32Array([1, 2, 5000]) }]), {
    instanceOf: ArgumentError,
    message: /token 5000/,
  });
  await t.throwsAsync(model.extract({ tokens: new Int32Array([1, 2, 5000]) }), { instanceOf: ArgumentError, message: /token 5000/ });
  await t.throwsAsync(Jukebox.load(good, { precision: 'fp8' as 'fp32' }), { instanceOf: ArgumentError });
  await stillWorks(t);
});

test('empty, too short and NaN audio are AudioErrors', async (t) => {
  await t.throwsAsync(model.extract({ samples: new Float32Array(0), sampleRate: 44100 }), { instanceOf: AudioError });
  const short = await t.throwsAsync(model.extract({ samples: synthAudio(100), sampleRate: 44100 }), { instanceOf: AudioError });
  t.regex(short!.message, /shorter than one token/);
  const nan = synthAudio(20000);
  nan[1234] = Number.NaN;
  const e = await t.throwsAsync(model.extract({ samples: nan, sampleRate: 44100 }), { instanceOf: AudioError });
  t.is(e?.code, 'ERR_AUDIO_NOT_FINITE');
  await t.throwsAsync(model.extract(path.join(dir, 'missing.wav')), { instanceOf: AudioError });
  await stillWorks(t);
});

test('an unavailable device is a DeviceError', async (t) => {
  const e = await t.throwsAsync(Jukebox.load(good, { device: 'cuda' }), { instanceOf: DeviceError });
  t.is(e?.code, 'ERR_DEVICE');
  t.regex(e!.message, /cuda.*(no NVIDIA driver|finds no device|no CUDA)/);
  await t.throwsAsync(Jukebox.load(good, { device: 'cuda:7' }), { instanceOf: DeviceError });
  await t.throwsAsync(Jukebox.load(good, { device: 'tpu' as 'cpu' }), { instanceOf: ArgumentError });
  // LibTorch 2.x has half-precision matrix products on the CPU, so fp16 loads there (1.13's CPU had none).
  const half = await Jukebox.load(good, { precision: 'fp16' });
  t.is(half.info.precision, 'fp16');
  half.dispose();
  const auto = await Jukebox.load(good, { device: 'auto' });
  t.is(auto.info.device, 'cpu');
  auto.dispose();
});

test('model init and info through the CLI', (t) => {
  const out = path.join(dir, 'cli.pt');
  const cli = (...args: string[]) =>
    execFileSync(process.execPath, ['--import=tsx', path.join(__dirname, 'helpers', 'run-model-cli.ts'), ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CALMKIT_THREADS: '1' },
    });
  t.regex(cli('model', 'init', '--preset', 'tiny', '--layers', '2', '--seed', '3', '--out', out), /wrote .*cli\.pt: tiny, 2 layers/);
  const text = cli('model', 'info', out);
  t.regex(text, /prior: width 128, layers 1\.\.2 \(of 6\), heads 2/);
  t.regex(text, /float16: 8 tensors/);
  const json = JSON.parse(cli('model', 'info', out, '--json'));
  t.is(json.depth, 2);
  t.is(json.source, 'random init, seed 3');
  const err = t.throws(() => cli('model', 'info', path.join(dir, 'none.pt'))) as { status?: number; stderr?: Buffer | string };
  t.is(err.status, 1);
  t.regex(String(err.stderr), /ERR_MODEL_FILE/);
});
