// `calmkit doctor`: what calmkit runs on, for bug reports. First every fact that needs no addon (the machine, the
// package, which addon, which torch), then what the loaded addon says; when the addon does not load, what is
// missing and the fix instead, and still exit 0: the report is the product.
import type { Command } from 'commander';
import { CalmkitError } from '../errors';
import { doctor, installFacts, type DoctorReport, type InstallFacts } from '../runtime';

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

function factLines(f: InstallFacts): string[] {
  const lines = [
    `calmkit       ${f.calmkit.version} (${f.calmkit.root}${f.calmkit.installed ? `, in the project ${f.calmkit.project}` : ', a checkout'})`,
    `platform      ${f.platform} (${f.arch}), ${f.cpus} CPUs, ${gib(f.memoryBytes)}${f.glibc ? `, glibc ${f.glibc}` : ''}`,
    `node          ${f.node} (N-API ${f.napiVersion})`,
  ];
  const a = f.addon;
  const what = { source: 'built from source', prebuilt: 'prebuilt', explicit: 'CALMKIT_ADDON_PATH', none: 'none' }[a.kind];
  lines.push(`addon         ${a.file ? `${a.file} (${what})` : 'none found'}`);
  if (a.prebuild)
    lines.push(
      `              built for torch ${a.prebuild.torch} (${a.prebuild.torchBuild}), glibc >= ${a.prebuild.glibc}${a.prebuild.cuda ? ', CPU and CUDA' : ''}`,
    );
  if (f.torch) {
    const t = f.torch.found;
    lines.push(
      `torch         ${t ? `${t.version} at ${t.root} (from ${t.from})${t.cuda ? ', with its CUDA part' : ', CPU only'}` : (f.torch.problem ?? 'not found')}`,
    );
    lines.push(`              looked at: ${f.torch.tried.join('; ')}`);
  }
  return lines;
}

function nativeLines(r: DoctorReport): string[] {
  const lines = [
    `libtorch      built against ${r.libtorch.version}, loaded from ${r.libtorch.dir}${r.libtorch.builtWithCuda ? (r.libtorch.cudaVersion ? `, CUDA ${r.libtorch.cudaVersion}` : ', CUDA part not loaded') : ', CPU only'}`,
    `blas          ${r.blas.name} — ${r.blas.detail}`,
    `threads       ${r.threads.count} (from ${r.threads.source}; CALMKIT_THREADS overrides)`,
    `cpu bf16      ${r.cpuBf16.native ? 'native' : 'not native'} (avx512_bf16 ${r.cpuBf16.avx512Bf16 ? 'yes' : 'no'}, amx_bf16 ${r.cpuBf16.amxBf16 ? 'yes' : 'no'}${r.cpuBf16.isaLimit ? `, ONEDNN_MAX_CPU_ISA=${r.cpuBf16.isaLimit}` : ''}); precision auto -> ${r.cpuBf16.autoPrecision}`,
    `              bf16 matmul: ${r.cpuBf16.matmulKernel}; fused linear: ${r.cpuBf16.linearKernel ?? 'not available'}`,
  ];
  if (r.cpuBf16.onednnIsa) lines.push(`              oneDNN ISA: ${r.cpuBf16.onednnIsa}`);
  if (r.cuda.devices.length) {
    for (const d of r.cuda.devices) {
      lines.push(
        `cuda:${d.index}        ${d.name}, ${gib(d.totalMemory)} total, ${gib(d.freeMemory)} free, sm ${d.computeCapability}; precision auto -> ${d.autoPrecision}`,
      );
    }
  } else {
    lines.push(`cuda          none: ${r.cuda.unavailableReason}`);
  }
  return lines;
}

export function register(program: Command): void {
  program
    .command('doctor')
    .description(
      'what calmkit runs on: platform, Node, addon, torch, BLAS, threads, bf16 on the CPU, CUDA devices; without an addon, what is missing and the fix',
    )
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => {
      let report: DoctorReport | undefined;
      let missing: { code: string; message: string } | undefined;
      try {
        report = doctor();
      } catch (err) {
        // Only a missing addon is reported rather than raised: anything else is a fault of doctor itself.
        if (!(err instanceof CalmkitError && err.code === 'ERR_ADDON_LOAD')) throw err;
        missing = { code: err.code, message: err.message };
      }
      const facts = report?.install ?? installFacts();
      if (opts.json) {
        console.log(JSON.stringify(report ?? { install: facts, addonError: missing }, null, 2));
        return;
      }
      const lines = factLines(facts);
      if (report) lines.push(...nativeLines(report));
      console.log(lines.join('\n'));
      if (missing) {
        // stdout, not stderr: this is the report's last section, and doctor succeeded in making it.
        console.log(`\nmissing       the native addon does not load (${missing.code}), so LibTorch, BLAS, threads and devices are not reported:`);
        console.log(
          missing.message
            .split('\n')
            .map((l) => `  ${l}`)
            .join('\n'),
        );
      }
      for (const w of report?.warnings ?? []) console.error(`WARNING: ${w}`);
    });
}
