// Batch invariance (docs/contracts.md): a clip's features are the same bytes whether it runs alone or in a batch
// of any size beside any other clips, for every layer, every pooling and both window modes. The clips differ in
// length (one and two windows, a short one) and in kind (audio and tokens), which the API allows in one batch.
import test from 'ava';
import fs from 'node:fs';
import { Jukebox, type JukeboxExtractOptions, type JukeboxFeatures, type JukeboxInput } from '../lib/model/jukebox';
import { synthAudio, tinyCheckpoint } from './helpers/model';

const ckpt = tinyCheckpoint({ seed: 11 });
const loaded = ckpt.then((c) => Jukebox.load(c.file));
test.after.always(async () => {
  (await loaded).dispose();
  fs.rmSync((await ckpt).dir, { recursive: true, force: true });
});

function clips(model: Jukebox): JukeboxInput[] {
  const { windowSamples, encoderMarginSamples } = model.info;
  const tokens = new Int32Array(700);
  for (let i = 0; i < tokens.length; i++) tokens[i] = (i * 37 + 11) % model.info.bins;
  return [
    { samples: synthAudio(windowSamples + encoderMarginSamples, 1), sampleRate: 44100 },
    { samples: synthAudio(Math.round(windowSamples * 0.55), 2), sampleRate: 44100 },
    { samples: synthAudio(Math.round(windowSamples * 1.6), 3), sampleRate: 44100 },
    { tokens },
    { samples: synthAudio(windowSamples + 3 * encoderMarginSamples, 4), sampleRate: 44100 },
  ];
}

function bytes(a: Float32Array | Int32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Every clip's features when the clips run in batches of `size`, starting at `offset` (so neighbours vary). */
async function inBatches(model: Jukebox, inputs: JukeboxInput[], size: number, offset: number, options: JukeboxExtractOptions): Promise<JukeboxFeatures[]> {
  const order = inputs.map((_, i) => (i + offset) % inputs.length);
  const out: JukeboxFeatures[] = new Array(inputs.length);
  for (let at = 0; at < order.length; at += size) {
    const idx = order.slice(at, at + size);
    const feats = await model.extract(
      idx.map((i) => inputs[i]!),
      options,
    );
    idx.forEach((i, k) => {
      out[i] = feats[k]!;
    });
  }
  return out;
}

const modes: [string, JukeboxExtractOptions][] = [
  ['mean, first window', { pooling: 'mean', windows: 'first' }],
  ['mean, all windows', { pooling: 'mean', windows: 'all' }],
  ['segments of 100 tokens, all windows', { pooling: 'segments', segmentTokens: 100, windows: 'all' }],
  ['raw activations, all windows', { pooling: 'none', windows: 'all' }],
];

for (const [name, mode] of modes) {
  test(`${name}: batches of 1, 2, 3 and 4 give identical bytes`, async (t) => {
    const model = await loaded;
    const inputs = clips(model);
    const options = { ...mode, layers: [1, 2, 3, 4, 5, 6] };
    const alone = await inBatches(model, inputs, 1, 0, options);
    if (mode.windows === 'all')
      t.true(
        alone.some((f) => f.windows === 2),
        'a clip spans two windows',
      );
    for (const [size, offset] of [
      [2, 1],
      [3, 2],
      [4, 3],
      [5, 0],
    ] as const) {
      const batched = await inBatches(model, inputs, size, offset, options);
      inputs.forEach((_, i) => {
        t.true(bytes(batched[i]!.tokens).equals(bytes(alone[i]!.tokens)), `batch ${size}: clip ${i} tokens`);
        t.is(batched[i]!.windows, alone[i]!.windows);
        for (const layer of options.layers) {
          const a = batched[i]!.layers[layer]!;
          const b = alone[i]!.layers[layer]!;
          t.deepEqual(a.shape, b.shape);
          t.true(bytes(a.data).equals(bytes(b.data)), `batch ${size}: clip ${i} layer ${layer}`);
        }
      });
    }
  });
}

test('progress counts clips and windows over the whole batch', async (t) => {
  const model = await loaded;
  const inputs = clips(model);
  const seen: { clipsDone: number; clipsTotal: number; windowsDone: number; windowsTotal: number }[] = [];
  const feats = await model.extract(inputs, { windows: 'all', layers: [2], onProgress: (p) => seen.push(p) });
  const windows = feats.reduce((n, f) => n + f.windows, 0);
  const last = seen[seen.length - 1]!;
  t.deepEqual(last, { ...last, clipsDone: inputs.length, clipsTotal: inputs.length, windowsDone: windows, windowsTotal: windows });
  t.true(seen.every((p, i) => i === 0 || (p.windowsDone >= seen[i - 1]!.windowsDone && p.clipsDone >= seen[i - 1]!.clipsDone)));
});
