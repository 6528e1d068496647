// doctor(): what calmkit runs on. Asked for in every bug report.
import os from 'node:os';
import { addonPath, binding } from '../../bindings';
import { native, nativeSync } from '../errors';

export interface DoctorReport {
  platform: string;
  arch: string;
  node: string;
  napiVersion: string;
  cpus: number;
  memoryBytes: number;
  addonPath: string;
  libtorch: { version: string; dir: string; builtWithCuda: boolean; cudaVersion: string | null };
  blas: { name: string; detail: string; isReference: boolean };
  threads: { count: number; source: string; interop: number };
  cuda: { devices: { index: number; name: string; totalMemory: number; freeMemory: number; computeCapability: string }[]; unavailableReason: string | null };
  warnings: string[];
}

export function doctor(): DoctorReport {
  const raw = nativeSync(() => binding().doctor());
  const warnings: string[] = [];
  if (raw.blas.isReference) {
    warnings.push(
      `The reference (netlib) BLAS is in use (${raw.blas.detail}): matrix products run about 30x slower. ` +
        'Install libopenblas0-openmp (sudo apt-get install libopenblas0-openmp).',
    );
  } else if (raw.blas.name.includes('pthread')) {
    warnings.push('OpenBLAS is the pthread variant: its threads do not follow torch\'s setting. Prefer libopenblas0-openmp.');
  }
  return {
    platform: `${os.type()} ${os.release()}`,
    arch: process.arch,
    node: process.version,
    napiVersion: process.versions.napi ?? 'unknown',
    cpus: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    memoryBytes: os.totalmem(),
    addonPath: addonPath(),
    libtorch: { version: raw.torchVersion, dir: raw.torchDir, builtWithCuda: raw.builtWithCuda, cudaVersion: raw.cudaVersion || null },
    blas: raw.blas,
    threads: { count: raw.threads, source: raw.threadsSource, interop: raw.interopThreads },
    cuda: { devices: raw.cudaDevices, unavailableReason: raw.cudaDevices.length ? null : raw.cudaUnavailableReason },
    warnings,
  };
}

export interface GemmPeakOptions {
  /** The product [m, k] x [k, n] (default 1024 x 1024 x 1024). */
  m?: number;
  n?: number;
  k?: number;
  dtype?: 'float32' | 'float16' | 'bfloat16';
  device?: string;
  /** Timed repeats after a warm-up; the best counts (default 5). */
  repeats?: number;
}

/** Measured matrix-product throughput of this machine in GFLOP/s: the peak a benchmark's figures are read against. */
export function gemmPeak(options: GemmPeakOptions = {}): Promise<number> {
  return native(() => binding().gemmPeak(options));
}
