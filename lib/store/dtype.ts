// What a store holds, as types: its spec and the dtypes it stores features in, and the one function that rounds
// values the way a store does (a float16 store returns every value rounded to the nearest half).
import { float32ToHalf, halfToFloat32, type NpyDtype } from '../formats';

/** How features are stored: float16 halves the size and rounds each value to the nearest half. */
export const STORE_DTYPES = ['float32', 'float16'] as const;
export type StoreDtype = (typeof STORE_DTYPES)[number];

/** The numpy dtype of a store's shards. */
export const DTYPES: Record<StoreDtype, NpyDtype> = { float32: '<f4', float16: '<f2' };

/** What the features are. Two stores (or a store and a run) with different specs must never mix. */
export interface StoreSpec {
  model: { id: string; hash?: string };
  layers: number[];
  pooling: string;
  formatting: string;
  dtype: StoreDtype;
  /** Any further settings that change the features (sample rate, crop, ...); compared like the rest. */
  extra?: Record<string, string | number | boolean | null>;
}

/**
 * `values` as a store of `dtype` returns them after a write and a read: float32 as they are (the same array),
 * float16 rounded to the nearest half (round to nearest even, numpy's) in a new array.
 */
export function asStored(values: Float32Array, dtype: StoreDtype): Float32Array {
  return dtype === 'float16' ? halfToFloat32(float32ToHalf(values)) : values;
}
