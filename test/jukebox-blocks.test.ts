// Building blocks without a model or Python: the three attention kinds (who may influence whom), in both
// implementations (batched products, and LibTorch's fused attention of the CPU bf16 path), and the
// timing-conditioning bins for the real 5B hyperparameters (docs/jukebox-spec.md 3.2, 3.4).
import test from 'ava';
import { ArgumentError } from '../lib/errors';
import { jukeboxAttention, jukeboxTimingBins } from '../lib/model/testing';

const B = 1,
  H = 2,
  T = 24,
  D = 4,
  BC = 4; // 6 blocks of 4
const SHAPE: [number, number, number, number] = [B, H, T, D];

function random(n: number, seed: number): Float32Array {
  let s = seed;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

/** Adds `delta` to every feature of position p in every head. */
function perturb(x: Float32Array, p: number, delta = 0.75): Float32Array {
  const y = x.slice();
  for (let h = 0; h < H; h++) for (let j = 0; j < D; j++) y[(h * T + p) * D + j] += delta;
  return y;
}

/** Output positions whose vectors differ between a and b, in any head. */
function changedPositions(a: Float32Array, b: Float32Array): number[] {
  const out: number[] = [];
  for (let t = 0; t < T; t++) {
    let changed = false;
    for (let h = 0; h < H && !changed; h++) for (let j = 0; j < D; j++) if (a[(h * T + t) * D + j] !== b[(h * T + t) * D + j]) changed = true;
    if (changed) out.push(t);
  }
  return out;
}

const block = (t: number) => Math.floor(t / BC);
const residue = (t: number) => t % BC;
const range = (n: number) => [...Array(n).keys()];

// What a key/value at position p may influence, per kind.
const MAY_SEE: Record<'row' | 'column' | 'prev', (query: number, key: number) => boolean> = {
  row: (i, p) => block(i) === block(p) && i >= p,
  column: (i, p) => residue(i) === residue(p) && block(i) >= block(p),
  prev: (i, p) => block(i) === block(p) + 1,
};

const q = random(B * H * T * D, 1),
  k = random(B * H * T * D, 2),
  v = random(B * H * T * D, 3);

for (const impl of ['batched', 'fused'] as const) {
  for (const kind of ['row', 'column', 'prev'] as const) {
    test(`${kind} attention (${impl}): a key/value at p changes exactly the outputs allowed to see it`, (t) => {
      const base = jukeboxAttention(q, k, v, SHAPE, kind, BC, impl);
      for (const p of range(T)) {
        const out = jukeboxAttention(q, perturb(k, p), perturb(v, p), SHAPE, kind, BC, impl);
        const expected = range(T).filter((i) => MAY_SEE[kind](i, p));
        t.deepEqual(changedPositions(base, out), expected, `perturbing position ${p}`);
      }
    });

    test(`${kind} attention (${impl}): a query at p changes only output p`, (t) => {
      const base = jukeboxAttention(q, k, v, SHAPE, kind, BC, impl);
      for (const p of [0, 5, 13, 23]) {
        const out = jukeboxAttention(perturb(q, p), k, v, SHAPE, kind, BC, impl);
        // A query that sees a single key (the first of a row or column) gets weight 1 whatever it is, and the
        // first block of a previous-block layer averages zero values whatever its queries are.
        const seesOne = (kind === 'row' && residue(p) === 0) || (kind === 'column' && block(p) === 0);
        const expected = seesOne || (kind === 'prev' && block(p) === 0) ? [] : [p];
        t.deepEqual(changedPositions(base, out), expected, `perturbing query ${p}`);
      }
    });
  }
}

for (const kind of ['row', 'column', 'prev'] as const) {
  test(`${kind} attention: the fused implementation computes the batched one's values (within 1e-6)`, (t) => {
    // Two batches of 3 heads, 12 blocks: the fused path merges batch and heads, which must not mix them.
    const shape: [number, number, number, number] = [2, 3, 48, 5];
    const n = shape.reduce((a, b) => a * b);
    const [qq, kk, vv] = [random(n, 4), random(n, 5), random(n, 6)];
    const a = jukeboxAttention(qq, kk, vv, shape, kind, 4, 'batched');
    const b = jukeboxAttention(qq, kk, vv, shape, kind, 4, 'fused');
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    t.true(worst < 1e-6, `max |fused - batched| = ${worst}`);
  });
}

test('previous-block attention: the first block sees a zero block, so its output is 0', (t) => {
  const out = jukeboxAttention(q, k, v, SHAPE, 'prev', BC);
  for (let h = 0; h < H; h++) for (let i = 0; i < BC * D; i++) t.is(out[h * T * D + i], 0);
});

test("row attention at the first position of a block returns that position's value", (t) => {
  const out = jukeboxAttention(q, k, v, SHAPE, 'row', BC);
  for (const p of [0, 4, 8]) for (let j = 0; j < D; j++) t.true(Math.abs(out[p * D + j] - v[p * D + j]) < 1e-6);
});

test('attention rejects a length that is not a multiple of the block', (t) => {
  const e = t.throws(() => jukeboxAttention(q, k, v, [B, H, T, D], 'row', 5));
  t.is((e as { code?: string }).code, 'ERR_INVALID_ARGUMENT');
  const e2 = t.throws(() => jukeboxAttention(q, k, v, [B, H, T, D], 'diagonal' as 'row', 4));
  t.is((e2 as { code?: string }).code, 'ERR_INVALID_ARGUMENT');
  const e3 = t.throws(() => jukeboxAttention(q, k, v, [B, H, T, D], 'row', 4, 'flash' as 'fused'));
  t.is((e3 as { code?: string }).code, 'ERR_INVALID_ARGUMENT');
});

test('timing bins for the 5B hyperparameters match the spec table', (t) => {
  const bins = jukeboxTimingBins();
  t.is(bins.total, 0);
  t.is(bins.absolute.length, 8192);
  t.is(bins.relative.length, 8192);
  const at = (ts: number[], arr: Int32Array) => ts.map((x) => arr[x]);
  t.deepEqual(at([0, 166, 167, 1614, 1615, 8074, 8075, 8191], bins.relative), [0, 0, 1, 9, 9, 48, 48, 49]);
  t.deepEqual(at([0, 1614, 1615, 3229, 3230, 4844, 4845, 6459, 6460, 8074, 8075, 8191], bins.absolute), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
  // Changes of the absolute bin, exactly where the spec says.
  const changes = range(8191)
    .filter((x) => bins.absolute[x + 1] !== bins.absolute[x])
    .map((x) => x + 1);
  t.deepEqual(changes, [1615, 3230, 4845, 6460, 8075]);
  // The float32 computation agrees with the exact rationals at every position (spec 3.2).
  for (let x = 0; x < 8192; x++) {
    if (bins.relative[x] !== Math.floor((8 * x) / 1335) || bins.absolute[x] !== Math.floor((16384 * x) / 26460000)) {
      t.fail(`position ${x}: relative ${bins.relative[x]}, absolute ${bins.absolute[x]}`);
      return;
    }
  }
});

test('timing bins follow other hyperparameters (tiny window, later offset)', (t) => {
  const tiny = jukeboxTimingBins({ nCtx: 1024 });
  t.is(tiny.absolute.length, 1024);
  t.is(tiny.absolute[1023], 0); // 131072 samples: far below the first absolute bin (206,718 samples)
  t.is(tiny.relative[1023], Math.floor((128 * 131072 * 1023) / (2734080 * 1024)));
  const later = jukeboxTimingBins({ offset: 441000 * 5 });
  t.true(later.absolute[0] > 0);
  t.true(later.relative[0] > 0);
});

test('timing bins reject impossible hyperparameters', (t) => {
  t.throws(() => jukeboxTimingBins({ nCtx: 1e30 }), { instanceOf: ArgumentError, message: /nCtx/ });
  t.throws(() => jukeboxTimingBins({ hop: 1.5 }), { instanceOf: ArgumentError, message: /hop/ });
  t.throws(() => jukeboxTimingBins({ minDuration: 700 }), { instanceOf: ArgumentError, message: /minDuration/ });
});
