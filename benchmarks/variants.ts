// What each of the study's ways of making features costs per clip, on one model: the paper's concatenation (tile
// to 62 s), upsampling (6.2x), the untiled clip (the 10 s clip as a 3,445-token short input) and the segment
// means the attention column reads (the same forward pass as its variant, pooled into 1 s segments).
//   npm run bench -- variants [--preset demo|5b|small|tiny] [--layers N] [--clips 3] [--rounds 2] [--device cpu|cuda]
// Each row times the whole extraction of a 10 s 44.1 kHz stereo WAV (decode, fit, encode, the blocks, pooling)
// and, from the same clip's tokens, the blocks alone; clips run one after another, interleaved across the variants
// after a warm-up, and the median per clip is reported. With the 5B shapes on a CPU use few layers: the per-layer
// cost is measured and a 36-layer estimate printed (front-end + encoder + 36 x one layer's blocks).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeAudio } from '../lib/audio';
import { Jukebox, type JukeboxPreset } from '../lib/model/jukebox';
import type { JukeboxExtractOptions } from '../lib/model/jukebox';
import { interleaved, machine, parseArgs, report } from './harness';

interface Variant {
  name: string;
  options: Partial<JukeboxExtractOptions>;
}

const VARIANTS: Variant[] = [
  { name: 'concatenation (tile 62 s)', options: { formatting: 'tile', targetSeconds: 62 } },
  { name: 'upsampling (6.2x)', options: { formatting: 'upsample', factor: 6.2 } },
  { name: 'untiled (none)', options: { formatting: 'none' } },
  { name: 'concatenation, 1 s segments', options: { formatting: 'tile', targetSeconds: 62, pooling: 'segments', segmentSeconds: 1 } },
];

/** A 10 s stereo clip with some spectral life: two detuned partials under slow envelopes and a little noise. */
function clip(seed: number): Float32Array {
  const n = 441_000;
  const x = new Float32Array(2 * n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const t = i / 44100;
    const v =
      0.3 * Math.sin(2 * Math.PI * (196 + 20 * seed) * t) * (0.6 + 0.4 * Math.sin(2 * Math.PI * 0.3 * t)) +
      0.2 * Math.sin(2 * Math.PI * 523 * t) * Math.sin(2 * Math.PI * 0.7 * t) +
      0.03 * (s / 2 ** 32 - 0.5);
    x[2 * i] = v;
    x[2 * i + 1] = 0.9 * v;
  }
  return x;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const preset = String(args.preset ?? 'demo') as JukeboxPreset;
  const layers = args.layers !== undefined ? Number(args.layers) : undefined;
  const clips = Number(args.clips ?? 3);
  const rounds = Number(args.rounds ?? 2);
  const device = String(args.device ?? 'cpu') as 'cpu' | 'cuda';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-bench-variants-'));
  try {
    const ckpt = path.join(dir, `${preset}.pt`);
    await Jukebox.writeRandomCheckpoint({ preset, layers, seed: 0, out: ckpt });
    const files: string[] = [];
    for (let k = 0; k < clips; k++) {
      const f = path.join(dir, `clip${k}.wav`);
      await writeAudio(f, { interleaved: clip(k + 1), channels: 2, sampleRate: 44100 });
      files.push(f);
    }
    await using model = await Jukebox.load(ckpt, { device });
    const layer = model.info.depth;
    const tokensOf = new Map<string, Int32Array>();
    const contenders = VARIANTS.flatMap((v) => [
      {
        name: v.name,
        run: async () => {
          const t0 = process.hrtime.bigint();
          for (const f of files) {
            const out = await model.extract(f, { layers: [layer], ...v.options });
            tokensOf.set(`${v.name}|${f}`, out.tokens);
          }
          return Number(process.hrtime.bigint() - t0) / 1e9 / files.length;
        },
      },
      {
        name: `${v.name} [blocks only]`,
        run: async () => {
          const t0 = process.hrtime.bigint();
          for (const f of files)
            await model.extract(
              { tokens: tokensOf.get(`${v.name}|${f}`)! },
              { layers: [layer], ...v.options, formatting: undefined, targetSeconds: undefined, factor: undefined },
            );
          return Number(process.hrtime.bigint() - t0) / 1e9 / files.length;
        },
      },
    ]);
    const times = await interleaved(contenders, rounds, 1);
    const info = model.info;
    const rows = VARIANTS.map((v) => {
      const whole = times[v.name]!.median;
      const blocks = times[`${v.name} [blocks only]`]!.median;
      const tokens = tokensOf.get(`${v.name}|${files[0]}`)!.length;
      const row: Record<string, string | number> = {
        variant: v.name,
        tokens,
        's/clip': whole.toFixed(3),
        'blocks s/clip': blocks.toFixed(3),
        'front-end + encoder s/clip': (whole - blocks).toFixed(3),
      };
      if (preset === '5b') row['36-layer estimate s/clip'] = (whole - blocks + (36 * blocks) / layer).toFixed(1);
      return row;
    });
    const tile = times[VARIANTS[0]!.name]!.median;
    const untiled = times[VARIANTS[2]!.name]!.median;
    report(
      'variants',
      {
        machine: machine(device),
        model: { preset, layers: layer, nCtx: info.nCtx, width: info.width, hop: info.hop, sampleRate: info.sampleRate },
        clips,
        rounds,
        variants: Object.fromEntries(
          VARIANTS.map((v) => [
            v.name,
            {
              secondsPerClip: times[v.name]!.median,
              blocksSecondsPerClip: times[`${v.name} [blocks only]`]!.median,
              tokens: tokensOf.get(`${v.name}|${files[0]}`)!.length,
              samples: times[v.name]!.samples,
            },
          ]),
        ),
        untiledSpeedupOverConcatenation: tile / untiled,
      },
      rows,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
