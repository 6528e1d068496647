// Where LibTorch is when calmkit loads (not where it was when the addon was built), and opening it for the prebuilt
// addon. Part of bindings/, the leaf: it imports nothing from lib/, and its failures are plain values the loader
// words into one error (index.ts).
//
// The prebuilt calmkit.node (npm run prebuild: scripts/prebuild.js) carries no rpath: it needs libtorch, libtorch_cpu,
// libc10 and libgomp by soname. openTorch() opens those by absolute path, with the CUDA part where the torch has one,
// then the audio libraries the package bundles, before the addon; glibc then satisfies the addon's DT_NEEDED entries
// by soname from the objects already loaded, so no LD_LIBRARY_PATH is needed. Node's process.dlopen does the opening
// (a documented API taking dlopen flags): on a library that is not an addon it loads it, finds no module, reports
// "Module did not self-register" and dlclose()s it; RTLD_NODELETE keeps it loaded through that dlclose. That spares a
// second native binary (a loader addon that would call dlopen itself) and the compiler that would need.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The LibTorch found, and how. */
export interface TorchLocation {
  /** The torch package folder (.../site-packages/torch) or a LibTorch root: it holds lib/libtorch_cpu.so. */
  root: string;
  libDir: string;
  /** As the torch names itself: '2.11.0+cu130', '2.11.0+cpu', '2.11.0'. */
  version: string;
  /** Where it was found: 'CALMKIT_TORCH_DIR', 'CALMKIT_PYTHON (/usr/bin/python3.11)', "the project's .venv", 'python3 (/usr/bin/python3)'. */
  from: string;
  /** Whether the torch has a CUDA part (lib/libtorch_cuda.so). */
  cuda: boolean;
}

/** The result of the search: the LibTorch, or why there is none. */
export interface TorchSearch {
  found?: TorchLocation;
  /** Every place looked at, in order, with what was there. */
  tried: string[];
  /** A setting that names something unusable (CALMKIT_TORCH_DIR, CALMKIT_PYTHON): an error, never a fall-back. */
  problem?: string;
}

/** The version without its local part: '2.11.0+cu130' -> '2.11.0'. */
export function baseVersion(version: string): string {
  return version.split('+')[0]!;
}

/** The torch's own version, from the files a torch package (version.py) or a LibTorch zip (build-version) holds. */
export function torchVersion(root: string): string {
  try {
    const m = /__version__\s*=\s*['"]([^'"]+)['"]/.exec(fs.readFileSync(path.join(root, 'version.py'), 'utf8'));
    if (m) return m[1]!;
  } catch {
    // not a torch package: a LibTorch root
  }
  try {
    const v = fs.readFileSync(path.join(root, 'build-version'), 'utf8').trim();
    if (v) return v;
  } catch {
    // no build-version either
  }
  try {
    const text = fs.readFileSync(path.join(root, 'share', 'cmake', 'Torch', 'TorchConfigVersion.cmake'), 'utf8');
    const m = /set\(PACKAGE_VERSION "([^"]+)"\)/.exec(text);
    if (m) return m[1]!;
  } catch {
    // nothing says
  }
  return 'unknown';
}

/** A LibTorch root from a path that is one (or a torch package folder), or its share/cmake/Torch folder. */
export function torchRootOf(candidate: string): string | undefined {
  const p = path.resolve(candidate);
  for (const root of [p, path.resolve(p, '..', '..', '..')]) {
    if (fs.existsSync(path.join(root, 'lib', 'libtorch_cpu.so')) || fs.existsSync(path.join(root, 'lib', 'libtorch_cpu.dylib'))) return root;
  }
  return undefined;
}

function location(root: string, from: string): TorchLocation {
  const libDir = path.join(root, 'lib');
  return { root, libDir, version: torchVersion(root), from, cuda: fs.existsSync(path.join(libDir, 'libtorch_cuda.so')) };
}

/** The torch package folder of a Python, found without importing torch (which takes seconds). */
function pythonTorch(python: string): { root?: string; error?: string } {
  const r = spawnSync(python, ['-c', "import importlib.util as u; s = u.find_spec('torch'); print(s.submodule_search_locations[0] if s else '')"], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.error) return { error: (r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `does not run (${r.error.message})` };
  if (r.status !== 0) return { error: `does not run (exit ${r.status}: ${(r.stderr || '').trim().split('\n').pop()})` };
  const dir = r.stdout.trim();
  if (!dir) return {};
  const root = torchRootOf(dir);
  return root ? { root } : { error: `has a torch at ${dir} without its libraries (no lib/libtorch_cpu.so)` };
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * The project calmkit is installed in: the folder above the first node_modules in calmkit's path (where
 * `npm install calmkit` ran), or calmkit's own checkout.
 */
export function projectDir(packageRoot: string): string {
  const parts = packageRoot.split(path.sep);
  const at = parts.indexOf('node_modules');
  return at > 0 ? parts.slice(0, at).join(path.sep) || path.sep : packageRoot;
}

/** The torch inside a virtual environment, found by its layout (no Python started). */
function venvTorch(venv: string): string | undefined {
  const lib = path.join(venv, 'lib');
  let names: string[];
  try {
    names = fs
      .readdirSync(lib)
      .filter((n) => /^python3/.test(n))
      .sort();
  } catch {
    return undefined;
  }
  for (const n of names) {
    const root = torchRootOf(path.join(lib, n, 'site-packages', 'torch'));
    if (root) return root;
  }
  return undefined;
}

/**
 * Where the LibTorch is, first found wins: CALMKIT_TORCH_DIR; the torch of CALMKIT_PYTHON; the project's .venv;
 * the torch of python3. A set CALMKIT_TORCH_DIR or CALMKIT_PYTHON that gives no LibTorch is a problem, not a
 * reason to look further: the person asked for that one.
 */
export function findTorch(packageRoot: string, env: NodeJS.ProcessEnv = process.env): TorchSearch {
  const tried: string[] = [];
  const dir = env.CALMKIT_TORCH_DIR;
  if (dir) {
    tried.push(`CALMKIT_TORCH_DIR=${dir}`);
    const root = torchRootOf(dir);
    if (!root)
      return {
        tried,
        problem: `CALMKIT_TORCH_DIR is '${dir}', which holds no LibTorch (no lib/libtorch_cpu.so there, nor three folders up from a share/cmake/Torch)`,
      };
    return { found: location(root, 'CALMKIT_TORCH_DIR'), tried };
  }
  const python = env.CALMKIT_PYTHON;
  if (python) {
    tried.push(`CALMKIT_PYTHON=${python}`);
    const r = pythonTorch(python);
    if (r.root) return { found: location(r.root, `CALMKIT_PYTHON (${python})`), tried };
    return { tried, problem: `CALMKIT_PYTHON is '${python}', which ${r.error ?? 'has no torch installed'}` };
  }
  const venv = path.join(projectDir(packageRoot), '.venv');
  const fromVenv = venvTorch(venv);
  tried.push(`${venv}${fromVenv ? '' : fs.existsSync(venv) ? ' (no torch in it)' : ' (none)'}`);
  if (fromVenv) return { found: location(fromVenv, "the project's .venv"), tried };
  const python3 = onPath('python3', env);
  if (!python3) {
    tried.push('python3 (not on PATH)');
    return { tried };
  }
  const r = pythonTorch(python3);
  tried.push(`python3 (${python3}${r.root ? '' : r.error ? `: ${r.error}` : ': no torch'})`);
  if (r.root) return { found: location(r.root, `python3 (${python3})`), tried };
  return { tried };
}

/** What `npm run prebuild` records beside the prebuilt addon (prebuilds/<platform>-<arch>/calmkit.json). */
export interface PrebuildManifest {
  /** The addon's file name in the folder. */
  addon: string;
  calmkit: string;
  napi: number;
  /** The torch it was built against: its base version must equal the machine's ('2.11.0'). */
  torch: string;
  /** The full version of that torch ('2.11.0+cu130'). */
  torchBuild: string;
  /** Compiled with the CUDA hooks: it runs on CUDA where the torch has its CUDA part. */
  cuda: boolean;
  /** The newest glibc symbol version the addon and its bundled libraries need ('2.34'). */
  glibc: string;
  /** Bundled shared libraries (the audio codecs), relative to the folder, in the order they are opened. */
  libraries: string[];
}

export function prebuildDir(packageRoot: string): string {
  return path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`);
}

/** The prebuild manifest in `dir`, or undefined when there is none (or it is not one). */
export function readPrebuildManifest(dir: string): PrebuildManifest | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, 'calmkit.json'), 'utf8')) as PrebuildManifest;
    return typeof m.addon === 'string' && typeof m.torch === 'string' && Array.isArray(m.libraries) ? m : undefined;
  } catch {
    return undefined;
  }
}

/** The running glibc ('2.36'), or undefined on another C library. */
export function glibcVersion(): string | undefined {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime;
}

/** a >= b for dotted versions ('2.36' >= '2.34'). */
export function versionAtLeast(a: string, b: string): boolean {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

/** Why the prebuild cannot run on this machine at all (another C library, too old a glibc), or undefined. */
export function prebuildMismatch(m: PrebuildManifest): string | undefined {
  const glibc = glibcVersion();
  if (process.platform === 'linux' && !glibc) return 'the prebuilt addon is for glibc; this Linux has another C library (musl?)';
  if (glibc && !versionAtLeast(glibc, m.glibc)) return `the prebuilt addon needs glibc ${m.glibc} or newer; this machine has ${glibc}`;
  const napi = Number(process.versions.napi ?? 0);
  if (napi < m.napi) return `the prebuilt addon needs N-API ${m.napi}; Node ${process.versions.node} has ${napi}`;
  return undefined;
}

/** The LibTorch shared objects to open, in order: the CPU part, then the CUDA part where this torch has one. */
export function torchLibraries(t: TorchLocation): string[] {
  const names = ['libc10.so', 'libtorch_cpu.so', 'libtorch.so'];
  if (t.cuda) names.push('libc10_cuda.so', 'libtorch_cuda.so');
  return names.map((n) => path.join(t.libDir, n));
}

// glibc's (and musl's) value in <dlfcn.h>; Node's os.constants.dlopen does not list it.
const RTLD_NODELETE = 0x1000;

/** Opens one shared library by absolute path, process-wide and for good; the dynamic loader's message on failure. */
export function openLibrary(file: string): string | undefined {
  const flags = os.constants.dlopen;
  try {
    process.dlopen({ exports: {} } as NodeJS.Module, file, flags.RTLD_NOW | flags.RTLD_GLOBAL | RTLD_NODELETE);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // Loaded, and not an addon: what a plain library gives (see the file's head).
    if (/did not self-register/.test(message)) return undefined;
    return message.split('\n')[0];
  }
  return undefined;
}

/** Opens LibTorch and the bundled libraries, in that order; the first failure, naming the file, or undefined. */
export function openTorch(t: TorchLocation, bundled: string[]): { file: string; reason: string } | undefined {
  for (const file of [...torchLibraries(t), ...bundled]) {
    const reason = openLibrary(file);
    if (reason !== undefined) return { file, reason };
  }
  return undefined;
}
