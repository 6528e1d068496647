// doctor(): what calmkit runs on. Asked for in every bug report.
import os from 'node:os';
import { addonPath, binding } from '../../bindings';
import { nativeSync } from '../errors';

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
