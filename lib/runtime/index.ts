// What calmkit runs on: the platform, the addon, LibTorch, BLAS, threads, CUDA devices; the device grammar;
// the package's own root and version.
export { doctor, gemmPeak } from './doctor';
export type { AutoPrecision, DoctorReport, GemmPeakOptions } from './doctor';
export { installFacts } from './install-facts';
export type { InstallFacts } from './install-facts';
export type { Device } from './device';
export { DEFAULT_DEVICE } from './device';
export { packageRoot, calmkitVersion } from './package';
