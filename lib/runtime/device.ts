// The device grammar of the native core (native/core/device.h), shared by the model and the probe trainer:
// `cpu`, `cuda` (the first GPU), `cuda:N`, or `auto` (cuda:0 when LibTorch sees a GPU, else the CPU).
// The core checks it; a malformed name is an ArgumentError, an unavailable device a DeviceError.
export type Device = 'cpu' | 'cuda' | 'auto' | `cuda:${number}`;
