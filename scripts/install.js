#!/usr/bin/env node
// calmkit's install step: npm runs it when calmkit is installed (and on `npm rebuild calmkit`). It builds the
// native addon (build/Release/calmkit.node) with cmake-js against a LibTorch that is already on the machine.
//
//   node scripts/install.js           preflight, then the build, then a check that the addon loads
//   node scripts/install.js --check   the preflight alone: what the build needs, what is missing, how to get it
//
// Plain JavaScript rather than TypeScript: it runs before anything is compiled (in calmkit's own checkout `npm ci`
// runs it before `prepare` builds dist/), with nothing but Node and cmake-js.
//
// What it does not do: download LibTorch. A consumer's `npm install` fetching about 2.6 GB from PyPI behind their
// back would be slow, surprising and fragile (offline machines, proxies); the preflight names the one command
// that installs torch where this script looks for it (a venv in the user's cache folder), and the next
// `npm rebuild calmkit` finds it there.
//
// Environment: CALMKIT_TORCH_DIR (or Torch_DIR) names the LibTorch; CALMKIT_PYTHON a Python whose torch to use;
// CALMKIT_ADDON_PATH an already built calmkit.node to use instead of building (checked, not copied);
// CALMKIT_SKIP_BUILD=1 installs without the addon (calmkit/formats works without it; build later with
// `npm rebuild calmkit`).
'use strict';

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const TESTED_TORCH = '2.11';
const MIN_CMAKE = [3, 18];

// --- telling the person at the terminal -----------------------------------------------------------------------

// npm runs a dependency's install script with its output captured (shown only when the script fails), so
// `npm install` would say nothing for minutes. The few lines that matter (what is built, how long, the result)
// also go straight to the terminal when there is one and npm is not already showing the output
// (--foreground-scripts). In CI there is no terminal and they are in the captured log only.
let tty;
function openTty() {
  if (tty !== undefined) return tty;
  tty = null;
  if (process.stderr.isTTY || process.env.CI || process.env.CALMKIT_INSTALL_NO_TTY === '1') return tty;
  try {
    tty = fs.openSync('/dev/tty', 'w');
  } catch {
    tty = null;
  }
  return tty;
}

function say(line) {
  process.stderr.write(line + '\n');
  const fd = openTty();
  if (fd !== null) {
    try {
      // From the start of a cleared line: npm's spinner sits at the cursor, with no newline after it.
      fs.writeSync(fd, `\r\x1b[K${line}\n`);
    } catch {
      // The terminal went away: the captured log still has the line.
    }
  }
}

function duration(ms) {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

// --- the preflight --------------------------------------------------------------------------------------------

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000, ...options });
  return { ok: !r.error && r.status === 0, stdout: (r.stdout || '').trim(), stderr: (r.stderr || '').trim(), error: r.error };
}

function onPath(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
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

/** apt, dnf or brew: which package names and command to suggest. */
function packageManager() {
  if (onPath('apt-get')) return 'apt';
  if (onPath('dnf')) return 'dnf';
  if (onPath('brew')) return 'brew';
  return 'apt';
}

const PACKAGES = {
  cmake: { apt: 'cmake', dnf: 'cmake', brew: 'cmake' },
  compiler: { apt: 'g++', dnf: 'gcc-c++', brew: null },
  make: { apt: 'make', dnf: 'make', brew: null },
  'pkg-config': { apt: 'pkg-config', dnf: 'pkgconf-pkg-config', brew: 'pkg-config' },
  libsndfile: { apt: 'libsndfile1-dev', dnf: 'libsndfile-devel', brew: 'libsndfile' },
  libsoxr: { apt: 'libsoxr-dev', dnf: 'soxr-devel', brew: 'libsoxr' },
  venv: { apt: 'python3-venv', dnf: 'python3', brew: 'python' },
};

function installCommand(pm, names) {
  const sudo = process.getuid && process.getuid() === 0 ? '' : 'sudo ';
  if (pm === 'brew') return `brew install ${names.join(' ')}`;
  if (pm === 'dnf') return `${sudo}dnf install -y ${names.join(' ')}`;
  return `${sudo}apt-get install -y ${names.join(' ')}`;
}

function systemFix(pm, key) {
  const name = PACKAGES[key][pm];
  if (name) return installCommand(pm, [name]);
  return pm === 'brew' ? 'xcode-select --install' : installCommand(pm, [PACKAGES[key].apt]);
}

function versionAtLeast(text, min) {
  const m = /(\d+)\.(\d+)/.exec(text);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > min[0] || (a === min[0] && b >= min[1]);
}

function userCacheDir() {
  return process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
}

/** The venv the preflight tells people to make; looked for on every run, so no variable is needed after it. */
function cacheVenv() {
  return path.join(userCacheDir(), 'calmkit', 'torch-venv');
}

/** A folder holding TorchConfig.cmake, from a LibTorch root or the folder itself; undefined when neither. */
function torchConfigDir(candidate) {
  if (fs.existsSync(path.join(candidate, 'TorchConfig.cmake')) || fs.existsSync(path.join(candidate, 'torch-config.cmake'))) return candidate;
  const nested = path.join(candidate, 'share', 'cmake', 'Torch');
  return fs.existsSync(path.join(nested, 'TorchConfig.cmake')) ? nested : undefined;
}

function torchVersion(configDir) {
  try {
    const text = fs.readFileSync(path.join(configDir, 'TorchConfigVersion.cmake'), 'utf8');
    const m = /set\(PACKAGE_VERSION "([^"]+)"\)/.exec(text);
    return m ? m[1] : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The torch package folder of a Python, found without importing torch (which takes seconds). */
function pythonTorch(python) {
  const r = run(python, ['-c', "import importlib.util as u; s = u.find_spec('torch'); print(s.submodule_search_locations[0] if s else '')"]);
  if (!r.ok || !r.stdout) return undefined;
  return torchConfigDir(path.join(r.stdout, 'share', 'cmake', 'Torch')) ? path.join(r.stdout, 'share', 'cmake', 'Torch') : undefined;
}

/**
 * Where the LibTorch is, in this order: CALMKIT_TORCH_DIR or Torch_DIR; the .venv of calmkit's own checkout
 * (scripts/setup.sh makes it); CALMKIT_PYTHON's torch; the venv in the user's cache folder; python3's torch.
 */
function findTorch() {
  const tried = [];
  for (const name of ['CALMKIT_TORCH_DIR', 'Torch_DIR']) {
    const value = process.env[name];
    if (!value) continue;
    const dir = torchConfigDir(path.resolve(value));
    if (!dir) return { error: `${name} is '${value}', which holds no LibTorch (no TorchConfig.cmake there or under share/cmake/Torch)`, tried: [`${name}=${value}`] };
    return { dir, from: name, version: torchVersion(dir), tried: [`${name}=${value}`] };
  }
  const pythons = [];
  const ownVenv = path.join(ROOT, '.venv', 'bin', 'python');
  if (fs.existsSync(ownVenv)) pythons.push({ python: ownVenv, from: "calmkit's .venv" });
  if (process.env.CALMKIT_PYTHON) pythons.push({ python: process.env.CALMKIT_PYTHON, from: 'CALMKIT_PYTHON' });
  const cached = path.join(cacheVenv(), 'bin', 'python');
  if (fs.existsSync(cached)) pythons.push({ python: cached, from: cacheVenv() });
  for (const name of ['python3', 'python']) {
    const p = onPath(name);
    if (p) {
      pythons.push({ python: p, from: name });
      break;
    }
  }
  for (const { python, from } of pythons) {
    tried.push(`${from} (${python})`);
    const dir = pythonTorch(python);
    if (dir) return { dir, from, version: torchVersion(dir), tried };
  }
  return { tried };
}

/** Every requirement of the build: what it is, whether it is there, and what provides it when it is not. */
function preflight() {
  const pm = packageManager();
  const checks = [];
  const add = (what, ok, detail, fix) => checks.push({ what, ok, detail, fix });

  const [major, minor] = process.versions.node.split('.').map(Number);
  add('Node >= 20.17', major > 20 || (major === 20 && minor >= 17), `Node ${process.versions.node}`, 'install Node 20.17 or later (e.g. from your distribution or nvm)');

  const cmake = run('cmake', ['--version']);
  const cmakeVersion = cmake.ok ? cmake.stdout.split('\n')[0].replace(/^cmake version\s*/, '') : '';
  add(
    `cmake >= ${MIN_CMAKE.join('.')}`,
    cmake.ok && versionAtLeast(cmakeVersion, MIN_CMAKE),
    cmake.ok ? `cmake ${cmakeVersion}` : 'cmake not found on PATH',
    systemFix(pm, 'cmake'),
  );

  const compiler = process.env.CXX ? onPath(process.env.CXX) || (fs.existsSync(process.env.CXX) ? process.env.CXX : undefined) : onPath('c++') || onPath('g++') || onPath('clang++');
  add('a C++17 compiler', !!compiler, compiler ? compiler : process.env.CXX ? `CXX=${process.env.CXX} not found` : 'no c++, g++ or clang++ on PATH', systemFix(pm, 'compiler'));

  const builder = onPath('ninja') || onPath('make');
  add('make (or ninja)', !!builder, builder || 'neither make nor ninja on PATH', systemFix(pm, 'make'));

  const pkgConfig = run('pkg-config', ['--version']);
  add('pkg-config', pkgConfig.ok, pkgConfig.ok ? `pkg-config ${pkgConfig.stdout}` : 'pkg-config not found on PATH', systemFix(pm, 'pkg-config'));
  for (const [key, module] of [
    ['libsndfile', 'sndfile'],
    ['libsoxr', 'soxr'],
  ]) {
    const found = pkgConfig.ok ? run('pkg-config', ['--modversion', module]) : { ok: false };
    add(
      `${key} (headers)`,
      found.ok,
      found.ok ? `${key} ${found.stdout}` : pkgConfig.ok ? `pkg-config knows no '${module}'` : 'not checked: pkg-config is missing',
      systemFix(pm, key),
    );
  }

  const torch = findTorch();
  const venv = cacheVenv();
  const torchFix = torch.error
    ? 'point CALMKIT_TORCH_DIR at <torch>/share/cmake/Torch (python3 -c "import torch;print(torch.utils.cmake_prefix_path)" prints <torch>/share/cmake), or unset it'
    : `${onPath('python3') && run('python3', ['-c', 'import venv, ensurepip']).ok ? '' : `${systemFix(pm, 'venv')} && `}python3 -m venv ${venv} && ${venv}/bin/pip install torch==2.11.0   ` +
      `(about 2.6 GB with its CUDA libraries; a CPU-only torch 2.11 wheel is much smaller and works too), then: npm rebuild calmkit`;
  add(
    'LibTorch (torch 2.11)',
    !!torch.dir,
    torch.dir ? `LibTorch ${torch.version} from ${torch.from} (${torch.dir})` : torch.error || `no Python with torch found (tried: ${torch.tried.join(', ') || 'no Python on PATH'})`,
    torchFix,
  );
  return { checks, torch, pm };
}

function printPreflight({ checks, torch, pm }) {
  const missing = checks.filter((c) => !c.ok);
  for (const c of checks) process.stderr.write(`  ${c.ok ? 'ok     ' : 'MISSING'} ${c.what}: ${c.detail}\n`);
  if (torch.dir && !torch.version.startsWith(TESTED_TORCH)) {
    process.stderr.write(`  note: calmkit is built and tested with torch ${TESTED_TORCH}; LibTorch ${torch.version} may not compile or behave the same\n`);
  }
  if (missing.length === 0) return true;
  say(`calmkit: cannot build the native addon: ${missing.length} requirement${missing.length > 1 ? 's are' : ' is'} missing:`);
  for (const c of missing) say(`  - ${c.what}: ${c.detail}\n      fix: ${c.fix}`);
  const system = missing.filter((c) => c.what !== 'LibTorch (torch 2.11)' && !c.what.startsWith('Node')).map((c) => c.fix);
  if (system.length > 1 && pm !== 'brew') {
    const names = [...new Set(system.flatMap((f) => f.replace(/^(sudo )?(apt-get|dnf) install -y /, '').split(' ')))];
    say(`  all system packages at once: ${installCommand(pm, names)}`);
  }
  say('  then: npm rebuild calmkit   (or set CALMKIT_SKIP_BUILD=1 to install without the addon; calmkit/formats works without it)');
  return false;
}

// --- the build ------------------------------------------------------------------------------------------------

/** Loads a calmkit.node in a child process, so a bad binary fails there and not in npm. */
function addonLoads(file, env = process.env) {
  const r = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', file], { encoding: 'utf8', env, timeout: 120_000 });
  if (!r.error && r.status === 0) return { ok: true };
  const why = (r.stderr || String(r.error || '')).split('\n').find((l) => /Error|error:|cannot open/.test(l)) || (r.stderr || '').trim().split('\n')[0] || `exit ${r.status}`;
  return { ok: false, why: why.trim() };
}

/** cmake-js, its output passed on; on the terminal side channel, a line every 30 s on how far compiling is. */
function build(torchDir) {
  return new Promise((resolve) => {
    const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [ROOT] });
    const env = { ...process.env, CALMKIT_TORCH_DIR: torchDir };
    const child = spawn(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let step = '';
    const started = Date.now();
    const watch = (stream, out) =>
      stream.on('data', (d) => {
        out.write(d);
        const text = d.toString();
        const ninja = [...text.matchAll(/\[(\d+)\/(\d+)\]/g)].pop();
        const make = [...text.matchAll(/\[\s*(\d+)%\]/g)].pop();
        if (ninja) step = `${ninja[1]} of ${ninja[2]} build steps`;
        else if (make) step = `${make[1]}%`;
      });
    watch(child.stdout, process.stdout);
    watch(child.stderr, process.stderr);
    const heartbeat = openTty() !== null ? setInterval(() => say(`calmkit: still compiling (${duration(Date.now() - started)}${step ? `, ${step}` : ''})`), 30_000) : undefined;
    child.on('close', (code, signal) => {
      if (heartbeat) clearInterval(heartbeat);
      resolve({ code, signal });
    });
    child.on('error', (err) => {
      if (heartbeat) clearInterval(heartbeat);
      resolve({ code: 1, signal: null, error: err });
    });
  });
}

async function main() {
  const checkOnly = process.argv.includes('--check');
  if (!checkOnly && process.env.CALMKIT_SKIP_BUILD === '1') {
    say('calmkit: CALMKIT_SKIP_BUILD=1: the native addon is not built (calmkit/formats works without it; build it later with: npm rebuild calmkit)');
    return 0;
  }
  if (!checkOnly && process.env.CALMKIT_ADDON_PATH) {
    const file = path.resolve(process.env.CALMKIT_ADDON_PATH);
    const loads = addonLoads(file);
    if (!loads.ok) {
      say(`calmkit: CALMKIT_ADDON_PATH is ${file}, which does not load: ${loads.why}`);
      say('  unset CALMKIT_ADDON_PATH to build the addon here, or point it at a calmkit.node built for this machine');
      return 1;
    }
    say(`calmkit: using the native addon at ${file} (CALMKIT_ADDON_PATH); nothing to build. Keep CALMKIT_ADDON_PATH set when calmkit runs.`);
    return 0;
  }

  const report = preflight();
  if (checkOnly) {
    process.stderr.write('calmkit: what building the native addon needs:\n');
    return printPreflight(report) ? 0 : 1;
  }
  if (!report.checks.every((c) => c.ok)) return printPreflight(report) ? 0 : 1;

  const { torch } = report;
  say(
    `calmkit: building the native addon (C++, a few minutes) against LibTorch ${torch.version} from ${torch.from}; ` +
      '`npm install --foreground-scripts` shows the compiler output',
  );
  const started = Date.now();
  const result = await build(torch.dir);
  const took = duration(Date.now() - started);
  if (result.code !== 0) {
    say(`calmkit: the native build failed after ${took} (cmake-js ${result.error ? result.error.message : result.signal ? `killed by ${result.signal}` : `exit ${result.code}`}); the output above says why.`);
    say('  `node node_modules/calmkit/scripts/install.js --check` lists what the build needs; rebuild with: npm rebuild calmkit --foreground-scripts');
    return 1;
  }
  const addon = path.join(ROOT, 'build', 'Release', 'calmkit.node');
  const loads = addonLoads(addon);
  if (!loads.ok) {
    say(`calmkit: built ${addon} in ${took}, but it does not load: ${loads.why}`);
    return 1;
  }
  say(`calmkit: built the native addon in ${took}: ${addon} (LibTorch ${torch.version} from ${torch.dir}; the addon loads it from there, so keep it)`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    say(`calmkit: install failed: ${err && err.stack ? err.stack : err}`);
    process.exitCode = 1;
  },
);
