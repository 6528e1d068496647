// doctor(): what calmkit runs on. Asked for in every bug report. The part that needs no addon is installFacts()
// (install-facts.ts); doctor() adds what the loaded addon and LibTorch say.
import os from 'node:os';
import { addonPath, binding } from '../addon';
import { native, nativeSync } from '../errors';
import { installFacts, type InstallFacts } from './install-facts';

/** What `precision: 'auto'` resolves to on a device. */
export type AutoPrecision = 'fp32' | 'bf16';

export interface DoctorReport {
  platform: string;
  arch: string;
  node: string;
  napiVersion: string;
  cpus: number;
  memoryBytes: number;
  addonPath: string;
  /** Which addon loaded and, for the prebuilt one, the torch it found (what `installFacts()` says). */
  install: InstallFacts;
  /** `version`: the LibTorch the addon was built against; `dir`: the folder libtorch_cpu was loaded from. */
  libtorch: { version: string; dir: string; builtWithCuda: boolean; cudaVersion: string | null };
  blas: { name: string; detail: string; isReference: boolean };
  threads: { count: number; source: string; interop: number };
  /**
   * bf16 on this CPU. `avx512Bf16`/`amxBf16`: the CPUID flags. `matmulKernel`/`linearKernel`: what LibTorch ran a
   * bf16 matrix product and the fused linear of the bf16 fast path with, read from oneDNN's own log ("oneDNN
   * brg_matmul:avx10_1_512_amx" is AMX tiles; "ATen built-in gemm" means no oneDNN bf16 kernel: very slow).
   * `native`: those products run on bf16 instructions, so `precision: 'auto'` picks bf16 (`autoPrecision`).
   * `isaLimit`: ONEDNN_MAX_CPU_ISA when set.
   */
  cpuBf16: {
    avx512Bf16: boolean;
    amxBf16: boolean;
    native: boolean;
    matmulKernel: string;
    linearKernel: string | null;
    onednnIsa: string | null;
    isaLimit: string | null;
    basis: string;
    autoPrecision: AutoPrecision;
  };
  cuda: {
    devices: { index: number; name: string; totalMemory: number; freeMemory: number; computeCapability: string; autoPrecision: AutoPrecision }[];
    unavailableReason: string | null;
  };
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
    warnings.push("OpenBLAS is the pthread variant: its threads do not follow torch's setting. Prefer libopenblas0-openmp.");
  }
  return {
    platform: `${os.type()} ${os.release()}`,
    arch: process.arch,
    node: process.version,
    napiVersion: process.versions.napi ?? 'unknown',
    cpus: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    memoryBytes: os.totalmem(),
    addonPath: addonPath(),
    install: installFacts(),
    libtorch: { version: raw.torchVersion, dir: raw.torchDir, builtWithCuda: raw.builtWithCuda, cudaVersion: raw.cudaVersion || null },
    blas: raw.blas,
    threads: { count: raw.threads, source: raw.threadsSource, interop: raw.interopThreads },
    cpuBf16: {
      avx512Bf16: raw.cpuBf16.avx512Bf16,
      amxBf16: raw.cpuBf16.amxBf16,
      native: raw.cpuBf16.native,
      matmulKernel: raw.cpuBf16.matmulKernel,
      linearKernel: raw.cpuBf16.linearKernel || null,
      onednnIsa: raw.cpuBf16.onednnIsa || null,
      isaLimit: raw.cpuBf16.isaLimit || null,
      basis: raw.cpuBf16.basis,
      autoPrecision: raw.autoPrecisionCpu as AutoPrecision,
    },
    cuda: {
      devices: raw.cudaDevices.map((d) => ({ ...d, autoPrecision: d.autoPrecision as AutoPrecision })),
      unavailableReason: raw.cudaDevices.length ? null : raw.cudaUnavailableReason,
    },
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
