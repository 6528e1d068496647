// A child process that extracts a fixed set of clips with the thread count of its environment (CALMKIT_THREADS)
// and prints the tokens and layer means as JSON: the thread-count tolerance test compares two of them.
import { Jukebox } from '../../lib/model/jukebox';
import { synthAudio } from './model';

(async () => {
  const [file, layersArg] = process.argv.slice(2);
  const layers = layersArg!.split(',').map(Number);
  const model = await Jukebox.load(file!);
  const n = model.info.windowSamples + model.info.encoderMarginSamples;
  const audio = [1, 2, 3, 4].map((seed) => ({ samples: synthAudio(n, seed), sampleRate: 44100 }));
  const tokens = [5, 6].map((seed) => ({ tokens: Int32Array.from({ length: model.info.nCtx }, (_, i) => (i * (seed * 7 + 3) + seed) % model.info.bins) }));
  const run = async (inputs: typeof audio | typeof tokens) =>
    (await model.extract(inputs, { layers })).map((f) => ({
      tokens: Array.from(f.tokens),
      layers: Object.fromEntries(layers.map((l) => [l, Array.from(f.layers[l]!.data)])),
    }));
  process.stdout.write(JSON.stringify({ threads: process.env.CALMKIT_THREADS, audio: await run(audio), tokens: await run(tokens) }));
  model.dispose();
})().catch((e) => {
  process.stderr.write(String(e?.stack ?? e));
  process.exit(1);
});
