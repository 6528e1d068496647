// The feature store's checksum: CRC-32 as zip, gzip and PNG define it (so numpy users can check a shard with
// Python's zlib.crc32). The same values come from two implementations: libdeflate's PCLMUL CRC in the native addon
// (about 14 GB/s here, against 5 GB/s for node:zlib's table-driven one), used whenever the addon loads, and
// node:zlib otherwise, so a store stays readable, and proven, where the addon was never built.
import zlib from 'node:zlib';
import { binding } from '../addon';

type Ranges = (bytes: Uint8Array, starts: Float64Array, lengths: Float64Array) => Uint32Array;

let nativeRanges: Ranges | null | undefined;

function native(): Ranges | null {
  if (nativeRanges === undefined) {
    try {
      const b = binding();
      nativeRanges = typeof b.crc32Ranges === 'function' ? b.crc32Ranges.bind(b) : null;
    } catch {
      // No addon (CALMKIT_SKIP_BUILD, a failed build): node:zlib computes the same values.
      nativeRanges = null;
    }
  }
  return nativeRanges;
}

/** Which implementation checks entries in this process: 'libdeflate' (the addon) or 'node:zlib'. */
export function checksumImplementation(): 'libdeflate' | 'node:zlib' {
  return native() ? 'libdeflate' : 'node:zlib';
}

/** CRC-32 of `bytes` (a string is taken as its UTF-8 bytes). */
export function crc32(bytes: Uint8Array | string): number {
  return zlib.crc32(bytes) >>> 0;
}

/** CRC-32 of bytes[starts[i], starts[i] + lengths[i]) for every i, in one native call where the addon loads. */
export function crc32Ranges(bytes: Uint8Array, starts: Float64Array, lengths: Float64Array): Uint32Array {
  const fast = native();
  if (fast) return fast(bytes, starts, lengths);
  const out = new Uint32Array(starts.length);
  for (let i = 0; i < starts.length; i++) out[i] = zlib.crc32(bytes.subarray(starts[i]!, starts[i]! + lengths[i]!)) >>> 0;
  return out;
}

/** @internal Tests: forget the choice, so the next call tries the addon again (or, with `off`, never). */
export function _resetChecksum(mode?: 'off'): void {
  nativeRanges = mode === 'off' ? null : undefined;
}
