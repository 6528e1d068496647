// The Jukebox extractor end to end on a tiny random checkpoint: info, layer taps, batching, short inputs,
// windows, pooling, streaming, progress, cancellation and disposal.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { AbortError, DisposedError, Jukebox, type JukeboxChunk } from '../lib';
import { OPENMIC_CLIP, maxRelDiff, meanRows, readNpy, rows, synthAudio, tinyCheckpoint } from './helpers/model';

// One torch thread: on a shared 2-core machine two OpenMP threads lose far more to each other's descheduling
// than they gain (the addon reads this when it loads, on first use).
process.env.CALMKIT_THREADS ??= '1';

let file = '';
let dir = '';
let model: Jukebox;
const W = 128; // tiny width
const N_CTX = 1024;

test.before(async () => {
  ({ file, dir } = await tinyCheckpoint());
  model = await Jukebox.load(file);
});

test.after.always(() => {
  model?.dispose();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function randomTokens(n: number, seed: number): Int32Array {
  let s = seed;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = s % 2048;
  }
  return out;
}

test('info: hyperparameters, storage dtypes and where it runs', (t) => {
  const info = model.info;
  t.is(info.preset, 'tiny');
  t.is(info.width, W);
  t.is(info.depth, 6);
  t.is(info.nCtx, N_CTX);
  t.is(info.hop, 128);
  t.is(info.blockCtx, 32);
  t.is(info.windowSamples, N_CTX * 128);
  t.is(info.device, 'cpu');
  t.is(info.precision, 'fp32');
  t.deepEqual(info.vqvae.downsT, [3, 2, 2]);
  t.is(info.vqvae.codebookSize, 2048);
  const f16 = info.dtypes.find((d) => d.dtype === 'float16');
  // Four projection weights per block are stored in half precision, as jukebox's fp16_params.
  t.is(f16?.tensors, 4 * 6);
  t.is(
    info.bytes,
    info.dtypes.reduce((n, d) => n + d.bytes, 0),
  );
  t.true(info.fileBytes > info.bytes * 0.9);
});

test('the genuine OpenMIC clip end to end with tile and upsample formatting', async (t) => {
  const tile = await model.extract(OPENMIC_CLIP, { formatting: 'tile', layers: [3, 6] });
  const up = await model.extract(OPENMIC_CLIP, { formatting: 'upsample', layers: [3, 6] });
  for (const r of [tile, up]) {
    t.is(r.tokens.length, N_CTX);
    t.is(r.windows, 1);
    t.deepEqual(r.layers[6].shape, [W]);
    t.true(r.layers[6].data.every(Number.isFinite));
    t.true(new Set(r.tokens).size > 5, 'a real clip uses many codes');
  }
  // 10 s tiled starts like the clip itself; upsampled is the clip slowed 6.2x: different tokens and features.
  t.notDeepEqual(Array.from(tile.tokens.slice(0, 100)), Array.from(up.tokens.slice(0, 100)));
  t.true(maxRelDiff(tile.layers[6].data, up.layers[6].data) > 1e-3);
  const plain = await model.extract(OPENMIC_CLIP, { layers: [6] });
  t.deepEqual(plain.tokens, tile.tokens, 'tiling does not change the first window of a 10 s clip');
});

test('several layers from one pass equal separate passes', async (t) => {
  const audio = { samples: synthAudio(150000, 3), sampleRate: 44100 };
  const all = await model.extract(audio, { layers: [6, 1, 4] });
  t.deepEqual(Object.keys(all.layers).map(Number), [1, 4, 6]);
  for (const layer of [1, 4, 6]) {
    const one = await model.extract(audio, { layers: [layer] });
    t.deepEqual(one.layers[layer].data, all.layers[layer].data, `layer ${layer}`);
  }
  t.true(maxRelDiff(all.layers[1].data, all.layers[6].data) > 1e-4, 'layers differ');
});

test('a batch of 2 equals two singles', async (t) => {
  const a = { samples: synthAudio(140000, 4), sampleRate: 44100 };
  const b = { samples: synthAudio(140000, 5), sampleRate: 44100 };
  const batch = await model.extract([a, b], { layers: [2, 6] });
  t.is(batch.length, 2);
  for (const [i, input] of [a, b].entries()) {
    const single = await model.extract(input, { layers: [2, 6] });
    t.deepEqual(batch[i].tokens, single.tokens);
    for (const layer of [2, 6]) t.true(maxRelDiff(batch[i].layers[layer].data, single.layers[layer].data) < 1e-5, `clip ${i} layer ${layer}`);
  }
  t.notDeepEqual(batch[0].tokens, batch[1].tokens);
});

test('short inputs run on their own tokens: outputs equal the first L rows of a full window', async (t) => {
  const tokens = randomTokens(N_CTX, 11);
  const full = await model.extract({ tokens }, { layers: [1, 2, 3, 6], pooling: 'none' });
  t.deepEqual(full.layers[6].shape, [N_CTX, W]);
  for (const L of [1, 31, 64, 100, 777]) {
    const short = await model.extract({ tokens: tokens.slice(0, L) }, { layers: [1, 2, 3, 6], pooling: 'none' });
    for (const layer of [1, 2, 3, 6]) {
      t.deepEqual(short.layers[layer].shape, [L, W]);
      t.true(maxRelDiff(short.layers[layer].data, rows(full.layers[layer].data, W, 0, L)) < 1e-5, `L=${L} layer ${layer}`);
    }
    // Mean pooling covers the real L tokens only.
    const pooled = await model.extract({ tokens: tokens.slice(0, L) }, { layers: [6] });
    t.true(maxRelDiff(pooled.layers[6].data, meanRows(short.layers[6].data, W, 0, L)) < 1e-5, `mean over L=${L}`);
  }
});

test('the prior is causal: a token changes only later positions', async (t) => {
  const tokens = randomTokens(N_CTX, 12);
  const p = 500;
  const changed = tokens.slice();
  changed[p] = (changed[p] + 1) % 2048;
  const a = await model.extract({ tokens }, { layers: [6], pooling: 'none' });
  const b = await model.extract({ tokens: changed }, { layers: [6], pooling: 'none' });
  // Token p enters the stream at position p + 1 (shifted right behind the start vector).
  t.deepEqual(rows(a.layers[6].data, W, 0, p + 1), rows(b.layers[6].data, W, 0, p + 1));
  t.notDeepEqual(rows(a.layers[6].data, W, p + 1, p + 2), rows(b.layers[6].data, W, p + 1, p + 2));
});

test('windows: all covers every token; its first window equals the first-window run', async (t) => {
  const first = await model.extract(OPENMIC_CLIP, { layers: [2] });
  const all = await model.extract(OPENMIC_CLIP, { layers: [2], windows: 'all' });
  t.is(all.windows, 4); // 10 s = 3445 tokens = 3 x 1024 + 373
  t.is(all.tokens.length, 3445);
  t.deepEqual(all.layers[2].shape, [4, W]);
  // The first-window run encodes a cropped signal; the margin keeps its tokens equal to the whole signal's.
  t.deepEqual(all.tokens.slice(0, N_CTX), first.tokens);
  t.true(maxRelDiff(rows(all.layers[2].data, W, 0, 1), first.layers[2].data) < 1e-6);
});

test('segments pooling equals means of the raw rows; seconds convert to tokens', async (t) => {
  const audio = { samples: synthAudio(N_CTX * 128 + 30000, 6), sampleRate: 44100 };
  const raw = await model.extract(audio, { layers: [5], pooling: 'none' });
  const seg = await model.extract(audio, { layers: [5], pooling: 'segments', segmentTokens: 100 });
  t.is(seg.segmentTokens, 100);
  t.deepEqual(seg.layers[5].shape, [11, W]); // 10 of 100 tokens and one of 24
  for (let s = 0; s < 11; s++) {
    const expected = meanRows(raw.layers[5].data, W, s * 100, Math.min(N_CTX, (s + 1) * 100));
    t.true(maxRelDiff(rows(seg.layers[5].data, W, s, s + 1), expected) < 1e-5, `segment ${s}`);
  }
  const bySeconds = await model.extract(audio, { layers: [5], pooling: 'segments', segmentSeconds: 1 });
  t.is(bySeconds.segmentTokens, 345); // round(44100 / 128)
  t.deepEqual(bySeconds.layers[5].shape, [3, W]);
  const mean = await model.extract(audio, { layers: [5] });
  t.true(maxRelDiff(mean.layers[5].data, meanRows(raw.layers[5].data, W, 0, N_CTX)) < 1e-5);
});

test('stream yields raw chunks window after window, matching extract', async (t) => {
  const chunks: JukeboxChunk[] = [];
  for await (const c of model.stream(OPENMIC_CLIP, { layers: [1, 3], windows: 'all' })) chunks.push(c);
  t.deepEqual(
    chunks.map((c) => `${c.window}:${c.layer}`),
    ['0:1', '0:3', '1:1', '1:3', '2:1', '2:3', '3:1', '3:3'],
  );
  t.deepEqual(
    chunks.map((c) => c.start),
    [0, 0, 1024, 1024, 2048, 2048, 3072, 3072],
  );
  t.deepEqual(
    chunks.filter((c) => c.layer === 3).map((c) => c.shape[0]),
    [1024, 1024, 1024, 373],
  );
  const whole = await model.extract(OPENMIC_CLIP, { layers: [3], windows: 'all', pooling: 'none' });
  const joined = new Float32Array(3445 * W);
  for (const c of chunks.filter((x) => x.layer === 3)) joined.set(c.data, c.start * W);
  t.deepEqual(joined, whole.layers[3].data);
});

test('stream holds back while the consumer is slow, and breaking out cancels it', async (t) => {
  const seen: number[] = [];
  const it = model.stream(OPENMIC_CLIP, { layers: [1], windows: 'all', onProgress: (p) => seen.push(p.windowsDone) })[Symbol.asyncIterator]();
  const first = await it.next();
  t.false(first.done);
  await new Promise((r) => setTimeout(r, 700));
  // At most two chunks may wait unconsumed: the fourth window cannot have been finished yet.
  t.true(Math.max(0, ...seen) < 4, `windows done while waiting: ${Math.max(0, ...seen)}`);
  await it.return?.();
  // The model is still usable after a cancelled stream.
  const r = await model.extract(OPENMIC_CLIP, { layers: [1] });
  t.is(r.tokens.length, N_CTX);
});

test('a stream left before its first chunk cancels cleanly', async (t) => {
  const it = model.stream(OPENMIC_CLIP, { layers: [6], windows: 'all' })[Symbol.asyncIterator]();
  const pending = it.next();
  await it.return?.();
  t.deepEqual(await pending, { value: undefined, done: true });
  const r = await model.extract({ tokens: randomTokens(64, 3) }, { layers: [1] });
  t.deepEqual(r.layers[1].shape, [W]);
});

test('progress reports layers and windows; abort rejects with AbortError and the model stays usable', async (t) => {
  const events: { windowsDone: number; blocksDone: number }[] = [];
  await model.extract(OPENMIC_CLIP, { layers: [4], windows: 'all', onProgress: (p) => events.push(p) });
  t.true(events.length >= 4 * 3);
  t.deepEqual(events[events.length - 1], { clipsDone: 1, clipsTotal: 1, windowsDone: 4, windowsTotal: 4, blocksDone: 4, blocksTotal: 4 } as never);

  const ac = new AbortController();
  const err = await t.throwsAsync(
    model.extract(OPENMIC_CLIP, { layers: [6], windows: 'all', signal: ac.signal, onProgress: (p) => p.blocksDone >= 2 && ac.abort() }),
  );
  t.true(err instanceof AbortError);
  t.is((err as AbortError).code, 'ERR_ABORTED');
  const pre = new AbortController();
  pre.abort();
  await t.throwsAsync(model.extract(OPENMIC_CLIP, { signal: pre.signal }), { instanceOf: AbortError });
  const r = await model.extract(OPENMIC_CLIP, { layers: [6] });
  t.true(r.layers[6].data.every(Number.isFinite));
});

test('an abort keeps its reason: a timeout in the middle of a pass, and one that fired before the call', async (t) => {
  // What AbortSignal.timeout() aborts with, raised at a known point of the pass (a timer would race the clip).
  const timeout = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
  const ac = new AbortController();
  const err = await t.throwsAsync(
    model.extract(OPENMIC_CLIP, { layers: [6], windows: 'all', signal: ac.signal, onProgress: (p) => p.blocksDone >= 2 && ac.abort(timeout) }),
    {
      instanceOf: AbortError,
    },
  );
  t.is(err!.cause, timeout);
  t.regex(err!.message, /\(TimeoutError: The operation was aborted due to timeout\)$/);
  const fired = AbortSignal.timeout(1);
  await new Promise((r) => setTimeout(r, 20));
  const early = await t.throwsAsync(model.extract(OPENMIC_CLIP, { signal: fired }), { instanceOf: AbortError });
  t.is((early!.cause as Error).name, 'TimeoutError');
  // A plain abort() names no reason in the message, and still carries it.
  const plain = new AbortController();
  plain.abort();
  const e = await t.throwsAsync(model.extract(OPENMIC_CLIP, { signal: plain.signal }), { instanceOf: AbortError });
  t.is(e!.message, 'extraction was aborted');
  t.is((e!.cause as Error).name, 'AbortError');
});

test('bf16 on the CPU runs and stays close to fp32', async (t) => {
  const fast = await Jukebox.load(file, { precision: 'bf16' });
  t.is(fast.info.precision, 'bf16');
  const audio = { samples: synthAudio(N_CTX * 128, 8), sampleRate: 44100 };
  const a = await fast.extract(audio, { layers: [6] });
  const b = await model.extract(audio, { layers: [6] });
  t.deepEqual(a.tokens, b.tokens, 'the encoder runs in fp32 in every precision');
  t.true(maxRelDiff(a.layers[6].data, b.layers[6].data) < 5e-2);
  fast.dispose();
});

test('dispose: later use throws DisposedError; asyncDispose disposes', async (t) => {
  const m = await Jukebox.load(file);
  await m[Symbol.asyncDispose]();
  t.true(m.disposed);
  t.throws(() => m.info, { instanceOf: DisposedError });
  await t.throwsAsync(m.extract(OPENMIC_CLIP), { instanceOf: DisposedError });
  t.notThrows(() => m.dispose(), 'dispose twice is harmless');
});

test("calmkit-core extract writes tokens.npy and layer{L}.npy equal to the addon's features", async (t) => {
  const tool = path.join(__dirname, '..', 'build', 'calmkit-core');
  t.true(fs.existsSync(tool), `${tool} is missing: build with npx cmake-js compile --out build`);
  const samples = synthAudio(N_CTX * 128 + 25000, 9);
  const out = fs.mkdtempSync(path.join(dir, 'tool-'));
  const raw = path.join(out, 'audio.f32');
  fs.writeFileSync(raw, Buffer.from(samples.buffer));
  execFileSync(tool, ['extract', file, raw, '--out', out, '--layers', '2,5', '--pooling', 'segments:300'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CALMKIT_THREADS: '1' },
  });
  const ours = await model.extract({ samples, sampleRate: 44100 }, { layers: [2, 5], pooling: 'segments', segmentTokens: 300, normalise: false });
  const tokens = readNpy(path.join(out, 'tokens.npy'));
  t.deepEqual(tokens.shape, [N_CTX]);
  t.deepEqual(Array.from(tokens.data as BigInt64Array, Number), Array.from(ours.tokens));
  for (const layer of [2, 5]) {
    const f = readNpy(path.join(out, `layer${layer}.npy`));
    t.deepEqual(f.shape, [4, W]);
    t.deepEqual(f.data, ours.layers[layer].data);
  }
});

test('stream: pooled modes yield one chunk per clip and layer; failures reject the read', async (t) => {
  const audio = { samples: synthAudio(60000, 10), sampleRate: 44100 };
  const chunks: JukeboxChunk[] = [];
  for await (const c of model.stream([audio, audio], { layers: [2, 4], pooling: 'mean' })) chunks.push(c);
  t.deepEqual(
    chunks.map((c) => `${c.clip}:${c.layer}`),
    ['0:2', '0:4', '1:2', '1:4'],
  );
  t.deepEqual(chunks[0].shape, [1, W]);
  t.deepEqual(chunks[0].data, chunks[2].data);
  const it = model.stream(audio, { layers: [9] })[Symbol.asyncIterator]();
  await t.throwsAsync(it.next(), { message: /layer 9 is out of range/ });
  t.deepEqual(await it.next(), { value: undefined, done: true });
});
