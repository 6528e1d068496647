// A child process for the precision tests: what `auto` resolves to and what doctor says about bf16 here (the
// environment may cap oneDNN's instruction set: ONEDNN_MAX_CPU_ISA), and the pooled features of a few clips in
// fp32 and in bf16, as JSON.
import { Jukebox } from '../../lib/model/jukebox';
import { doctor } from '../../lib/runtime';
import { synthAudio } from './model';

export type PrecisionRun = {
  cpuBf16: ReturnType<typeof doctor>['cpuBf16'];
  auto: string;
  bf16Kernels: string;
  fp32Kernels: string;
  /** Per precision, per clip: tokens and the mean of every layer. */
  features: Record<'fp32' | 'bf16', { tokens: number[]; layers: Record<string, number[]> }[]>;
};

(async () => {
  const [file] = process.argv.slice(2);
  const auto = await Jukebox.load(file!, { precision: 'auto' });
  const out: Partial<PrecisionRun> = { cpuBf16: doctor().cpuBf16, auto: auto.info.precision, features: { fp32: [], bf16: [] } };
  auto.dispose();
  const { windowSamples, encoderMarginSamples, depth } = (await Jukebox.inspect(file!)) as {
    windowSamples: number;
    encoderMarginSamples: number;
    depth: number;
  };
  const layers = Array.from({ length: depth }, (_, i) => i + 1);
  // A full window, a short clip (not a whole number of attention blocks) and a clip of two windows.
  const clips = [windowSamples + encoderMarginSamples, Math.round(windowSamples * 0.45) + 77, Math.round(windowSamples * 1.5)].map((n, i) => ({
    samples: synthAudio(n, 20 + i),
    sampleRate: 44100,
  }));
  for (const precision of ['fp32', 'bf16'] as const) {
    const model = await Jukebox.load(file!, { precision });
    if (precision === 'bf16') out.bf16Kernels = model.info.blockKernels;
    else out.fp32Kernels = model.info.blockKernels;
    for (const f of await model.extract(clips, { layers, windows: 'all' })) {
      out.features![precision].push({ tokens: Array.from(f.tokens), layers: Object.fromEntries(layers.map((l) => [l, Array.from(f.layers[l]!.data)])) });
    }
    model.dispose();
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => {
  process.stderr.write(String(e?.stack ?? e));
  process.exit(1);
});
