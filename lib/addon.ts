// The native addon as lib/ sees it. bindings/ (a leaf: it imports nothing from lib/) loads it and, when it cannot,
// throws a plain Error with code ERR_ADDON_LOAD; here that becomes a NativeError, so every caller of the library
// gets a CalmkitError. Every file of lib/ reaches the addon through this one.
import * as bindings from '../bindings';
import type { RawBinding } from '../bindings';
import { NativeError } from './errors';

export { packageRoot, addonPlan, addonBlocker, loadedPlan } from '../bindings';
export type { AddonPlan, PrebuildManifest, TorchLocation, TorchSearch } from '../bindings';
// The raw surface's types (bindings/raw.ts), for the files of lib/ that hand values to it.
export type * from '../bindings/raw';

/** The NativeError (ERR_ADDON_LOAD) for a failure of bindings' loader; anything else as it is. */
export function addonLoadError(err: unknown): unknown {
  if (err instanceof Error && (err as Error & { code?: unknown }).code === 'ERR_ADDON_LOAD')
    return new NativeError('ERR_ADDON_LOAD', err.message, { cause: err });
  return err;
}

/** The loaded addon; a NativeError (ERR_ADDON_LOAD) with the fix when it cannot be loaded. */
export function binding(): RawBinding {
  try {
    return bindings.binding();
  } catch (err) {
    throw addonLoadError(err);
  }
}

/** The calmkit.node file in use (loading it first). */
export function addonPath(): string {
  try {
    return bindings.addonPath();
  } catch (err) {
    throw addonLoadError(err);
  }
}
