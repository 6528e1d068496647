// What can be said about calmkit's installation without loading the native addon: the machine, the package, which
// addon would load (a source build, the prebuilt one, none) and, for the prebuilt one, which torch it would run beside.
// `calmkit doctor` prints these first, so it reports what it can even where the addon does not load.
import os from 'node:os';
import { addonBlocker, addonPlan, loadedPlan } from '../addon';
import { calmkitVersion } from './package';

export interface InstallFacts {
  calmkit: { version: string; root: string; installed: boolean; project: string };
  platform: string;
  arch: string;
  node: string;
  napiVersion: string;
  /** The running glibc, null on another C library or platform. */
  glibc: string | null;
  cpus: number;
  memoryBytes: number;
  addon: {
    /** source: built on this machine; prebuilt: shipped in the package; explicit: CALMKIT_ADDON_PATH; none: no addon. */
    kind: 'explicit' | 'source' | 'prebuilt' | 'none';
    file: string | null;
    /** What the prebuilt addon was built for, when it is one. */
    prebuild: { torch: string; torchBuild: string; cuda: boolean; glibc: string } | null;
  };
  /** The LibTorch a prebuilt addon would run beside (null for a source build, which links its own). */
  torch: { found: { root: string; version: string; from: string; cuda: boolean } | null; tried: string[]; problem: string | null } | null;
  /** What stops the addon from loading, as far as can be told without loading it, with the fix. */
  missing: { problem: string; fixes: string[] } | null;
}

export function installFacts(): InstallFacts {
  // Once the addon has loaded (doctor loads it first), its plan: searching again would find the same torch, at the
  // cost of a python3 run where that is how torch was found.
  const plan = loadedPlan() ?? addonPlan();
  const m = plan.manifest;
  const t = plan.torch;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return {
    calmkit: { version: calmkitVersion(), root: plan.root, installed: plan.installed, project: plan.project },
    platform: `${os.type()} ${os.release()}`,
    arch: process.arch,
    node: process.version,
    napiVersion: process.versions.napi ?? 'unknown',
    glibc: header?.glibcVersionRuntime ?? null,
    cpus: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    memoryBytes: os.totalmem(),
    addon: { kind: plan.kind, file: plan.file ?? null, prebuild: m ? { torch: m.torch, torchBuild: m.torchBuild, cuda: m.cuda, glibc: m.glibc } : null },
    torch: t
      ? {
          found: t.found ? { root: t.found.root, version: t.found.version, from: t.found.from, cuda: t.found.cuda } : null,
          tried: t.tried,
          problem: t.problem ?? null,
        }
      : null,
    missing: addonBlocker(plan) ?? null,
  };
}
