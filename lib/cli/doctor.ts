// `calmkit doctor`: what calmkit runs on, for bug reports.
import type { Command } from 'commander';
import { doctor } from '../runtime';

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

export function register(program: Command): void {
  program
    .command('doctor')
    .description('what calmkit runs on: platform, Node, addon, LibTorch, BLAS, threads, bf16 on the CPU, CUDA devices')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => {
      const r = doctor();
      if (opts.json) {
        console.log(JSON.stringify(r, null, 2));
        return;
      }
      const lines = [
        `platform      ${r.platform} (${r.arch}), ${r.cpus} CPUs, ${gib(r.memoryBytes)}`,
        `node          ${r.node} (N-API ${r.napiVersion})`,
        `addon         ${r.addonPath}`,
        `libtorch      ${r.libtorch.version} (${r.libtorch.dir})${r.libtorch.builtWithCuda ? `, compiled with CUDA ${r.libtorch.cudaVersion}` : ', CPU only'}`,
        `blas          ${r.blas.name} — ${r.blas.detail}`,
        `threads       ${r.threads.count} (from ${r.threads.source}; CALMKIT_THREADS overrides)`,
        `cpu bf16      ${r.cpuBf16.native ? 'native' : 'not native'} (avx512_bf16 ${r.cpuBf16.avx512Bf16 ? 'yes' : 'no'}, amx_bf16 ${r.cpuBf16.amxBf16 ? 'yes' : 'no'}${r.cpuBf16.isaLimit ? `, ONEDNN_MAX_CPU_ISA=${r.cpuBf16.isaLimit}` : ''}); precision auto -> ${r.cpuBf16.autoPrecision}`,
        `              bf16 matmul: ${r.cpuBf16.matmulKernel}; fused linear: ${r.cpuBf16.linearKernel ?? 'not available'}`,
      ];
      if (r.cpuBf16.onednnIsa) lines.push(`              oneDNN ISA: ${r.cpuBf16.onednnIsa}`);
      if (r.cuda.devices.length) {
        for (const d of r.cuda.devices) {
          lines.push(`cuda:${d.index}        ${d.name}, ${gib(d.totalMemory)} total, ${gib(d.freeMemory)} free, sm ${d.computeCapability}; precision auto -> ${d.autoPrecision}`);
        }
      } else {
        lines.push(`cuda          none: ${r.cuda.unavailableReason}`);
      }
      console.log(lines.join('\n'));
      for (const w of r.warnings) console.error(`WARNING: ${w}`);
    });
}
