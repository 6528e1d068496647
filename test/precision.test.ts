// Precision on the CPU (docs/contracts.md, README "Precision"): `auto` resolves at load to the fastest precision
// the CPU runs natively, as doctor reports it from oneDNN's own log; bf16 features stay within cosine 0.9999 of
// fp32 with identical tokens, on the fast path this CPU takes (oneDNN, packed weights) and on the portable one
// (forced here by capping oneDNN below AVX-512, as on a CPU without it). Any x86-64 runs both halves.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ArgumentError, Jukebox, doctor } from '../lib';
import { writeAudio } from '../lib/audio';
import { layerDir, recipeFromStoreSpec, resolveSettings } from '../lib/extraction';
import { FeatureStore } from '../lib/store';
import { runCli } from './helpers/extract-fixtures';
import type { PrecisionRun } from './helpers/precision-child';
import { synthAudio, tinyCheckpoint } from './helpers/model';
import { ROOT } from './helpers/paths';

const ckpt = tinyCheckpoint({ seed: 5 });
test.after.always(async () => fs.rmSync((await ckpt).dir, { recursive: true, force: true }));

function childRun(file: string, env: Record<string, string | undefined>): PrecisionRun {
  const out = execFileSync(process.execPath, ['--import=tsx', path.join(ROOT, 'test', 'helpers', 'precision-child.ts'), file], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  return JSON.parse(out) as PrecisionRun;
}

function bytes(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function cosine(a: number[], b: number[]): number {
  let ab = 0,
    aa = 0,
    bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

/**
 * bf16 against fp32: identical tokens, and every clip's every layer within the stated cosine. Each block's own
 * contribution (the change of the pooled stream across it) is held to cosine 0.999 as well: the stream is mostly
 * the embeddings, so a wrong block could hide in the first test (a missing 1/1.702 in the MLP scores 0.995 and
 * 0.95 on the two).
 */
function checkBf16(t: import('ava').ExecutionContext, run: PrecisionRun, what: string): void {
  t.is(run.features.bf16.length, 3);
  let worst = 1;
  let worstUpdate = 1;
  run.features.fp32.forEach((ref, i) => {
    const mine = run.features.bf16[i]!;
    t.deepEqual(mine.tokens, ref.tokens, `${what}, clip ${i}: the encoder runs in fp32 in every precision`);
    const layers = Object.keys(ref.layers)
      .map(Number)
      .sort((a, b) => a - b);
    for (const l of layers) {
      worst = Math.min(worst, cosine(mine.layers[l]!, ref.layers[l]!));
      if (l === layers[0]) continue;
      const update = (x: Record<string, number[]>) => x[l]!.map((v, j) => v - x[l - 1]![j]!);
      worstUpdate = Math.min(worstUpdate, cosine(update(mine.layers), update(ref.layers)));
    }
  });
  t.true(worst >= 0.9999, `${what}: lowest cosine ${worst}`);
  t.true(worstUpdate >= 0.999, `${what}: lowest cosine of one block's update ${worstUpdate}`);
}

test('auto: the precision doctor names for this CPU, decided by the kernels oneDNN reports', async (t) => {
  const { file } = await ckpt;
  const d = doctor().cpuBf16;
  const onednn = d.matmulKernel.startsWith('oneDNN ');
  const bf16Isa = /bfloat16|AMX/.test(d.onednnIsa ?? '');
  t.is(d.native, onednn && bf16Isa, `${d.matmulKernel}; ${d.onednnIsa}`);
  t.is(d.autoPrecision, d.native ? 'bf16' : 'fp32');
  // Native bf16 arithmetic needs the instructions: a CPU without them never gets bf16.
  if (!d.avx512Bf16 && !d.amxBf16) t.false(d.native);
  await using model = await Jukebox.load(file, { precision: 'auto' });
  t.is(model.info.precision, d.autoPrecision, 'the loaded model reports the concrete precision');
});

test('bf16 features against fp32 on the path this CPU takes: tokens identical, cosine >= 0.9999 at every layer', async (t) => {
  const { file } = await ckpt;
  const run = childRun(file, {});
  t.is(run.fp32Kernels, 'aten');
  // The fused oneDNN path runs wherever its bf16 kernels exist; doctor names the kernel it took.
  t.is(run.bf16Kernels, run.cpuBf16.linearKernel ? 'onednn-packed' : 'aten');
  checkBf16(t, run, `bf16 (${run.bf16Kernels})`);
});

test('a CPU without oneDNN bf16 kernels (ONEDNN_MAX_CPU_ISA=AVX2): auto is fp32, and bf16 still runs (portable path) within the cosine', async (t) => {
  const { file } = await ckpt;
  const run = childRun(file, { ONEDNN_MAX_CPU_ISA: 'AVX2', DNNL_MAX_CPU_ISA: undefined });
  t.false(run.cpuBf16.native);
  t.is(run.cpuBf16.isaLimit, 'AVX2');
  t.regex(run.cpuBf16.matmulKernel, /^ATen built-in gemm/);
  t.is(run.cpuBf16.linearKernel, null);
  t.is(run.auto, 'fp32');
  t.is(run.bf16Kernels, 'aten');
  checkBf16(t, run, 'bf16 (portable path)');
});

test("bf16: a clip's features are the same bytes alone and in a batch", async (t) => {
  const { file } = await ckpt;
  await using model = await Jukebox.load(file, { precision: 'bf16' });
  const n = model.info.windowSamples + model.info.encoderMarginSamples;
  const clips = [synthAudio(n, 31), synthAudio(Math.round(n / 3), 32), synthAudio(n, 33)].map((samples) => ({ samples, sampleRate: 44100 }));
  const layers = [2, model.info.depth];
  const together = await model.extract(clips, { layers });
  for (const [i, clip] of clips.entries()) {
    const alone = await model.extract(clip, { layers });
    for (const l of layers) t.deepEqual(bytes(together[i]!.layers[l]!.data), bytes(alone.layers[l]!.data), `clip ${i}, layer ${l}`);
  }
});

test('auto never enters a recipe: extract --precision auto records the concrete precision; queue add and resolveSettings refuse auto', async (t) => {
  const { dir, file } = await ckpt;
  const audio = path.join(dir, 'clip.wav');
  await writeAudio(audio, { interleaved: synthAudio(44100 * 4, 41), channels: 1, sampleRate: 44100 });
  const out = path.join(dir, 'auto-store');
  const r = await runCli(['extract', audio, '--model', file, '--out', out, '--layers', '2', '--precision', 'auto']);
  t.is(r.code, 0, r.stderr);
  const recipe = recipeFromStoreSpec(FeatureStore.open(layerDir(out, 2)).spec);
  t.is(recipe.precision, doctor().cpuBf16.autoPrecision);
  const q = await runCli(['queue', 'add', audio, '--model', file, '--redis', 'redis://127.0.0.1:1', '--precision', 'auto']);
  t.not(q.code, 0);
  t.regex(q.stderr, /--precision must be fp32, fp16 or bf16/);
  const e = t.throws(() => resolveSettings({ model: { id: 'm' }, precision: 'auto' as 'fp32' }), { instanceOf: ArgumentError });
  t.regex(e!.message, /precision 'auto' cannot be part of a recipe/);
});
