// IEEE 754 binary16 <-> binary32 in plain JS. Written here rather than taken from npm because it is ~40 lines
// and the store needs exactly numpy's behaviour: round-to-nearest-even, overflow to +-inf, NaN kept NaN,
// gradual underflow through the subnormals (test/npy.test.ts checks all 65,536 halves against numpy).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The binary16 bit pattern nearest to `value` (ties to even), as numpy's astype(float16) gives. */
export function toHalfBits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return mant !== 0 ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00;
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: the value is m * 2^-24 with m = full >> shift, rounded on the dropped bits.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const full = mant | 0x800000;
    let m = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (m & 1) === 1)) m++;
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, up to 0x7c00 = inf: exactly what rounding should do.
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

/** The value of a binary16 bit pattern. */
export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m !== 0 ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

// The parameter types are written out so the declarations read `Uint16Array`, not TypeScript 5.7's generic
// `Uint16Array<ArrayBuffer>`, which older compilers in consumers' projects reject.
export function float32ToHalf(src: ArrayLike<number>, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) dst[i] = toHalfBits(src[i]!);
  return dst;
}

// Every half's value, built on first use: reading float16 stores of segment features decodes billions of
// halves, and a table lookup is several times faster than fromHalfBits (same values: the table is made by it).
let halfTable: Float32Array | undefined;

export function halfToFloat32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = fromHalfBits(h);
  }
  const table = halfTable;
  for (let i = 0; i < src.length; i++) dst[i] = table[src[i]!]!;
  return dst;
}
