// Across thread counts bit-identity is not promised; the tolerance is (docs/contracts.md, README): given the same
// tokens, layer means within 1e-5 relative; from audio, at least 99 % of the tokens agree (oneDNN splits the
// encoder's convolutions differently, which can flip a VQ code at a near-tie). Measured: 0 and 1 token in 6,144.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { maxRelDiff, tinyCheckpoint } from './helpers/model';
import { ROOT } from './helpers/paths';

const LAYERS = [1, 3, 6];
type Run = { audio: Clip[]; tokens: Clip[] };
type Clip = { tokens: number[]; layers: Record<string, number[]> };

function extract(file: string, threads: number): Run {
  const out = execFileSync(process.execPath, ['--import=tsx', path.join(ROOT, 'test', 'helpers', 'features-child.ts'), file, LAYERS.join(',')], {
    cwd: ROOT,
    env: { ...process.env, CALMKIT_THREADS: String(threads) },
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  return JSON.parse(out) as Run;
}

test('1 and 2 threads: layer means within 1e-5 given the tokens, 99 % of the tokens equal from audio', async (t) => {
  const { dir, file } = await tinyCheckpoint({ seed: 3 });
  try {
    const [one, two] = [extract(file, 1), extract(file, 2)];
    for (const [i, clip] of one.tokens.entries()) {
      t.deepEqual(two.tokens[i]!.tokens, clip.tokens);
      for (const l of LAYERS) {
        const d = maxRelDiff(Float32Array.from(two.tokens[i]!.layers[l]!), Float32Array.from(clip.layers[l]!));
        t.true(d <= 1e-5, `tokens clip ${i}, layer ${l}: ${d}`);
      }
    }
    let same = 0;
    let total = 0;
    for (const [i, clip] of one.audio.entries()) {
      const other = two.audio[i]!.tokens;
      t.is(other.length, clip.tokens.length);
      clip.tokens.forEach((tok, k) => {
        same += tok === other[k] ? 1 : 0;
      });
      total += clip.tokens.length;
    }
    t.true(same / total >= 0.99, `${same} of ${total} tokens agree`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
