// Building blocks of the model exposed for tests and experiments (the addon's `_`-prefixed exports): not part
// of the public API.
import { binding } from '../addon';
import { nativeSync } from '../errors';

/** Timing-conditioning bins (spec 3.2) for the 5B's label, or for other hyperparameters. */
export function jukeboxTimingBins(hparams?: Parameters<ReturnType<typeof binding>['_jukeboxTimingBins']>[0]): {
  total: number;
  absolute: Int32Array;
  relative: Int32Array;
} {
  return nativeSync(() => binding()._jukeboxTimingBins(hparams));
}

/**
 * One of the three block-attention kinds on q, k, v of shape [B, H, T, d] (float32), scale 1/sqrt(d); a
 * building block exposed for tests and experiments. `impl`: `batched` (jukebox's order of operations, the fp32
 * path) or `fused` (LibTorch's scaled_dot_product_attention, the CPU bf16 path).
 */
export function jukeboxAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  shape: [number, number, number, number],
  kind: 'row' | 'column' | 'prev',
  blockCtx: number,
  impl: 'batched' | 'fused' = 'batched',
): Float32Array {
  return nativeSync(() => binding()._jukeboxAttention(q, k, v, shape, kind, blockCtx, impl));
}
