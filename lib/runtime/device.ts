// The device grammar of the native core (native/core/device.h), shared by the model and the probe trainer:
// `cpu`, `cuda` (the first GPU), `cuda:N`, or `auto` (cuda:0 when LibTorch sees a GPU, else the CPU).
// The core checks it; a malformed name is an ArgumentError, an unavailable device a DeviceError.
export type Device = 'cpu' | 'cuda' | 'auto' | `cuda:${number}`;

/**
 * Where calmkit computes when no device is named: a GPU when LibTorch sees one, else the CPU. The one default of
 * the library (Jukebox.load, trainProbeGrid, ProbeSet.predict, predictAudio, runStudy, the queue's worker) and of
 * the CLI (--device of every command), docs/contracts.md.
 */
export const DEFAULT_DEVICE: Device = 'auto';
