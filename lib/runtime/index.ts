// What calmkit runs on: the platform, the addon, LibTorch, BLAS, threads, CUDA devices.
export { doctor } from './doctor';
export type { DoctorReport } from './doctor';
