// The thin, private loader of the native addon. The public API lives in lib/; nothing outside lib/ should import
// this file, and it imports nothing from lib/ (a leaf): when the addon cannot be loaded it throws a plain Error with
// `code` 'ERR_ADDON_LOAD' and a multi-line message with the fix, which lib/addon.ts turns into a NativeError.
//
// Which addon: CALMKIT_ADDON_PATH when set; else node-gyp-build's choice: a source build (build/Release, made by the
// install step's fallback or `npm run build:native`; it finds its LibTorch through its rpath), else the prebuilt
// addon for this platform (prebuilds/<platform>-<arch>/), which runs beside the machine's torch 2.11.0: found and
// opened first (torch.ts).
import fs from 'node:fs';
import path from 'node:path';
import type { RawBinding } from './raw';
import {
  baseVersion,
  findTorch,
  openTorch,
  prebuildDir,
  prebuildMismatch,
  projectDir,
  readPrebuildManifest,
  type PrebuildManifest,
  type TorchLocation,
  type TorchSearch,
} from './torch';

export type { RawBinding } from './raw';
export type { PrebuildManifest, TorchLocation, TorchSearch } from './torch';

export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        if (JSON.parse(fs.readFileSync(pj, 'utf8')).name === 'calmkit') return dir;
      } catch {
        // keep walking up
      }
    }
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..');
}

/** Which addon calmkit would load here and what it needs, found without loading anything. */
export interface AddonPlan {
  /** explicit: CALMKIT_ADDON_PATH; source: a source build; prebuilt: the prebuild; none: no addon at all. */
  kind: 'explicit' | 'source' | 'prebuilt' | 'none';
  /** The calmkit.node file (absent for 'none'). */
  file?: string;
  /** What node-gyp-build said when it found no addon. */
  notFound?: string;
  /** The prebuild's manifest ('prebuilt', and 'explicit' when CALMKIT_ADDON_PATH names a prebuild). */
  manifest?: PrebuildManifest;
  /** Why the prebuild cannot run on this machine (glibc, N-API), when it cannot. */
  mismatch?: string;
  /** Where the LibTorch is: searched for a prebuild only (a source build links its own). */
  torch?: TorchSearch;
  /** calmkit is a dependency in a project's node_modules (else: calmkit's own checkout). */
  installed: boolean;
  root: string;
  project: string;
}

/** Which addon would be loaded, and for a prebuild where its LibTorch is. */
export function addonPlan(env: NodeJS.ProcessEnv = process.env): AddonPlan {
  const root = packageRoot();
  const base = { root, installed: root.split(path.sep).includes('node_modules'), project: projectDir(root) };
  let plan: AddonPlan;
  const explicit = env.CALMKIT_ADDON_PATH;
  if (explicit) {
    const file = path.resolve(explicit);
    const manifest = readPrebuildManifest(path.dirname(file));
    plan = { ...base, kind: 'explicit', file, manifest: manifest && manifest.addon === path.basename(file) ? manifest : undefined };
  } else {
    try {
      // node-gyp-build looks in build/Release, build/Debug and prebuilds/<platform>-<arch>, in that order.
      const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
      const file = nodeGypBuild.resolve(root);
      const prebuilt = path.dirname(file) === prebuildDir(root);
      plan = { ...base, kind: prebuilt ? 'prebuilt' : 'source', file, manifest: prebuilt ? readPrebuildManifest(prebuildDir(root)) : undefined };
    } catch (err) {
      plan = { ...base, kind: 'none', notFound: (err instanceof Error ? err.message : String(err)).split('\n')[0] };
    }
  }
  if (plan.manifest) {
    plan.mismatch = prebuildMismatch(plan.manifest);
    plan.torch = findTorch(root, env);
  }
  return plan;
}

let cached: { binding: RawBinding; path: string; plan: AddonPlan } | undefined;

/** The plan the loaded addon came from (undefined before a load succeeded): what a second addonPlan() would search for again. */
export function loadedPlan(): AddonPlan | undefined {
  return cached?.plan;
}

export function addonPath(): string {
  return loadAddon().path;
}

// libgomp reads its settings once, when LibTorch loads it with the addon. Its default spin-waiting turns two
// threads into a 3-30x slowdown whenever another process shares the cores (seen here); passive waiting costs
// microseconds per parallel region on an idle machine. A user's own setting wins.
function defaultOpenMpSettings(): void {
  if (process.env.OMP_WAIT_POLICY === undefined) process.env.OMP_WAIT_POLICY = 'PASSIVE';
}

/** The error the loader throws: a plain Error (bindings/ is a leaf) with a stable code; lib/ wraps it. */
export interface AddonLoadError extends Error {
  code: 'ERR_ADDON_LOAD';
  /** The one-line problem and the fix lines, as the message has them. */
  problem: string;
  fixes: string[];
}

function addonLoadError(problem: string, fixes: string[], cause?: unknown): AddonLoadError {
  const err = new Error(addonLoadMessage(problem, fixes), cause !== undefined ? { cause } : undefined) as AddonLoadError;
  err.code = 'ERR_ADDON_LOAD';
  err.problem = problem;
  err.fixes = fixes;
  return err;
}

export function loadAddon(): { binding: RawBinding; path: string; plan: AddonPlan } {
  if (cached) return cached;
  defaultOpenMpSettings();
  const plan = addonPlan();
  const blocker = addonBlocker(plan);
  if (blocker) throw addonLoadError(blocker.problem, blocker.fixes);
  const file = plan.file!;
  if (plan.manifest) {
    const t = plan.torch!.found!;
    const failed = openTorch(
      t,
      plan.manifest.libraries.map((l) => path.join(path.dirname(file), l)),
    );
    if (failed) {
      const { problem, fixes } = openFailure(failed, t, plan);
      throw addonLoadError(problem, fixes);
    }
  }
  try {
    cached = { binding: require(file) as RawBinding, path: file, plan };
    return cached;
  } catch (err) {
    const { problem, fixes } = requireFailure(err, plan);
    throw addonLoadError(problem, fixes, err);
  }
}

export function binding(): RawBinding {
  return loadAddon().binding;
}

// --- what to do: worded for where calmkit is (a dependency in a project, or its own checkout) and each step one
// that works from the state the person is in (calmkit installed, nothing rolled back) ------------------------------

const TORCH = '2.11.0';

/** How to install the torch a prebuild needs, in the project calmkit is installed in. */
function installTorchFix(plan: AddonPlan): string {
  const venv = path.join(plan.project, '.venv');
  return (
    `Install torch ${TORCH} where calmkit looks for it, e.g. in this project: python3 -m venv ${venv} && ${venv}/bin/pip install torch==${TORCH} ` +
    '(about 4.7 GB on disk with its CUDA libraries; nothing to rebuild: calmkit finds it on its next start).'
  );
}

const POINT_AT_TORCH = `Or point calmkit at a torch ${TORCH} you have: CALMKIT_PYTHON=<a python with torch ${TORCH}> or CALMKIT_TORCH_DIR=<its torch folder or a LibTorch ${TORCH} root>.`;

function buildFromSourceFix(plan: AddonPlan): string {
  return plan.installed
    ? 'Or build calmkit from source against the torch you have: CALMKIT_BUILD_FROM_SOURCE=1 npm rebuild calmkit --foreground-scripts ' +
        '(needs cmake, a C++17 compiler, pkg-config and the libsndfile and libsoxr headers; node node_modules/calmkit/scripts/install.js --check lists what is missing).'
    : 'Or build from source against the torch you have: CALMKIT_TORCH_DIR=<its torch folder> npm run build:native.';
}

/** What stops the planned addon from loading before anything is opened, or undefined. */
export function addonBlocker(plan: AddonPlan): { problem: string; fixes: string[] } | undefined {
  if (plan.kind === 'none') {
    const problem = `no native addon (calmkit.node) for ${process.platform}-${process.arch}: no prebuilt one in this package and no source build (${plan.notFound ?? 'not found'})`;
    const fixes = plan.installed
      ? [
          'Build it from source: npm rebuild calmkit --foreground-scripts. Its install step names each missing requirement (cmake, a C++ compiler, pkg-config, libsndfile, libsoxr, LibTorch) with the command that installs it.',
          "If npm skipped calmkit's install step (npm 11 runs a dependency's install script only once the project approves it), approve it first: npm install-scripts approve calmkit.",
          'Or point CALMKIT_ADDON_PATH at a calmkit.node built elsewhere for this platform.',
        ]
      : [
          'Build it: npm run build:native (after bash scripts/setup.sh, which installs the system packages and the .venv with torch).',
          'Or point CALMKIT_ADDON_PATH at a calmkit.node built elsewhere.',
        ];
    return { problem, fixes };
  }
  if (plan.kind === 'explicit' && !fs.existsSync(plan.file!)) {
    return {
      problem: `CALMKIT_ADDON_PATH is ${plan.file}, which does not exist`,
      fixes: ["Point CALMKIT_ADDON_PATH at a calmkit.node built for this machine, or unset it to load calmkit's own addon."],
    };
  }
  if (plan.kind === 'prebuilt' && !plan.manifest) {
    return {
      problem: `the prebuilt addon ${plan.file} has no calmkit.json beside it (the package is damaged)`,
      fixes: ['Reinstall calmkit: npm install calmkit --force.'],
    };
  }
  if (!plan.manifest) return undefined;
  const m = plan.manifest;
  if (plan.mismatch) return { problem: `${plan.mismatch}`, fixes: [buildFromSourceFix(plan).replace(/^Or build/, 'Build')] };
  const search = plan.torch!;
  if (search.problem) {
    return {
      problem: `the prebuilt addon needs torch ${m.torch}, and ${search.problem}`,
      fixes: [
        /^CALMKIT_PYTHON/.test(search.problem)
          ? `Point CALMKIT_PYTHON at a Python with torch ${m.torch} (or pip install torch==${m.torch} into that one), or unset it to let calmkit look in the project's .venv and python3.`
          : `Point CALMKIT_TORCH_DIR at a torch ${m.torch} folder (python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))' prints it) or a LibTorch root, or unset it to let calmkit look further.`,
      ],
    };
  }
  if (!search.found) {
    return {
      problem: `the prebuilt addon needs torch ${m.torch} (LibTorch), and none was found (looked at: ${search.tried.join('; ')})`,
      fixes: [installTorchFix(plan), POINT_AT_TORCH],
    };
  }
  const t = search.found;
  if (baseVersion(t.version) !== m.torch) {
    return {
      problem:
        `the prebuilt addon is built for torch ${m.torch}, and the torch found is ${t.version} (${t.root}, from ${t.from}); ` +
        "LibTorch's C++ interface changes between versions, so the addon runs only beside the one it was built for",
      fixes: [
        `Install torch ${m.torch}: ${/^python3|^CALMKIT_PYTHON/.test(t.from) ? `${pythonOf(t.from)} -m pip install torch==${m.torch}, or ` : ''}${installTorchFix(plan).replace(/^Install torch [\d.]+ where calmkit looks for it, e\.g\. /, '')}`,
        buildFromSourceFix(plan),
      ],
    };
  }
  return undefined;
}

/** The Python named in a TorchLocation's `from` ('python3 (/usr/bin/python3)' -> '/usr/bin/python3'). */
function pythonOf(from: string): string {
  return /\(([^)]+)\)/.exec(from)?.[1] ?? 'python3';
}

function openFailure(failed: { file: string; reason: string }, t: TorchLocation, plan: AddonPlan): { problem: string; fixes: string[] } {
  const inTorch = failed.file.startsWith(t.libDir + path.sep);
  return {
    problem: `opening ${failed.file} failed: ${failed.reason}`,
    fixes: inTorch
      ? [
          `The torch at ${t.root} (from ${t.from}) is incomplete: reinstall it (pip install --force-reinstall torch==${TORCH}, which also brings its CUDA libraries), or install it afresh as below.`,
          installTorchFix(plan),
        ]
      : ['The package is damaged: reinstall calmkit (npm install calmkit --force).', buildFromSourceFix(plan)],
  };
}

function requireFailure(err: unknown, plan: AddonPlan): { problem: string; fixes: string[] } {
  const reason = err instanceof Error ? err.message.split('\n')[0]! : String(err);
  const problem = `loading ${plan.file} failed: ${reason}`;
  if (plan.kind === 'explicit')
    return {
      problem,
      fixes: [`CALMKIT_ADDON_PATH is set (${plan.file}): point it at a calmkit.node built for this machine, or unset it to load calmkit's own addon.`],
    };
  if (plan.manifest) return { problem, fixes: [buildFromSourceFix(plan).replace(/^Or build/, 'Build')] };
  return {
    problem,
    fixes: plan.installed
      ? [
          'The addon was built from source and does not load: if the LibTorch it was built against moved or was removed, rebuild it: CALMKIT_BUILD_FROM_SOURCE=1 npm rebuild calmkit --foreground-scripts.',
          `Or remove the source build (rm -r ${path.join(plan.root, 'build')}) to use the prebuilt addon with torch ${TORCH}.`,
        ]
      : [
          'The addon is built but does not load: rebuild it against the LibTorch that is there now: npm run build:native.',
          'Another LibTorch: CALMKIT_TORCH_DIR=<folder with TorchConfig.cmake> npm run build:native.',
        ],
  };
}

/** The message of ERR_ADDON_LOAD: what is wrong, then one line per way out. */
export function addonLoadMessage(problem: string, fixes: string[]): string {
  return [
    `could not load the native addon (calmkit.node) for Node ${process.versions.node} on ${process.platform}-${process.arch}: ${problem}.`,
    'To fix:',
    ...fixes.map((f) => `  - ${f}`),
  ].join('\n');
}
