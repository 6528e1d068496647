#!/usr/bin/env node
// calmkit's install step: npm runs it when calmkit is installed (and on `npm rebuild calmkit`).
//
// As a dependency, with a prebuilt addon for this platform (prebuilds/<platform>-<arch>/, made by `npm run prebuild`):
// nothing is compiled. The step only says whether the prebuilt addon loads here beside the machine's torch 2.11.0
// (found at load, not at install: bindings/torch.ts) and, when it does not, what to do; it never fails the install,
// so npm never rolls calmkit back and every fix line works from the state it leaves (calmkit installed).
// Building from source is the fallback: CALMKIT_BUILD_FROM_SOURCE=1 (or npm's `--build-from-source`, which npm 11
// still passes on, with a warning that npm 12 will not), or no prebuild that runs here (another platform, an older
// glibc). Then it checks what the build needs (the preflight), builds with cmake-js against the torch it finds, and
// checks that the addon loads. In calmkit's own checkout (`npm ci`) it always builds from source, as before.
//
//   node scripts/install.js           the above
//   node scripts/install.js --check   the preflight alone: what building from source needs, what is missing, how to get it
//
// Plain JavaScript rather than TypeScript: it runs before anything is compiled (in calmkit's own checkout `npm ci`
// runs it before `prepare` builds dist/), with nothing but Node and cmake-js. As a dependency it uses the package's
// compiled loader (dist/bindings), so the install step and the library find the same torch.
//
// What it does not do: download LibTorch. A consumer's `npm install` fetching about 2.6 GB from PyPI (4.7 GB once
// unpacked) behind their back would be slow, surprising and fragile (offline machines, proxies); the fix lines name
// the one command that installs torch where calmkit looks for it.
//
// Environment: CALMKIT_TORCH_DIR names the LibTorch; CALMKIT_PYTHON a Python whose torch to use;
// CALMKIT_BUILD_FROM_SOURCE=1 builds from source even where a prebuilt addon exists; CALMKIT_ADDON_PATH an already
// built calmkit.node to use instead (checked, not copied); CALMKIT_SKIP_BUILD=1 builds nothing.

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const TESTED_TORCH = '2.11';
/** calmkit is a dependency in a project (else: its own checkout, where `npm ci` builds from source). */
const INSTALLED = ROOT.split(path.sep).includes('node_modules');
/** The package's compiled loader (in the tarball; in a checkout only once `npm run build:ts` has run). */
const LOADER = path.join(ROOT, 'dist', 'bindings', 'index.js');
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
  process.stderr.write(`${line}\n`);
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

/**
 * The LibTorch to build against. As a dependency: the one the library would load (dist/bindings/torch.js: CALMKIT_TORCH_DIR,
 * CALMKIT_PYTHON's torch, the project's .venv, python3's torch). In calmkit's own checkout: what
 * cmake/CalmkitTorch.cmake takes (CALMKIT_TORCH_DIR or Torch_DIR, else the checkout's .venv).
 */
function findTorch() {
  if (INSTALLED && fs.existsSync(LOADER)) {
    const { findTorch: search } = require(path.join(ROOT, 'dist', 'bindings', 'torch.js'));
    const s = search(ROOT);
    if (s.problem) return { error: s.problem, tried: s.tried };
    if (!s.found) return { tried: s.tried };
    return { dir: s.found.root, from: s.found.from, version: s.found.version, tried: s.tried };
  }
  for (const name of ['CALMKIT_TORCH_DIR', 'Torch_DIR']) {
    const value = process.env[name];
    if (!value) continue;
    const dir = torchConfigDir(path.resolve(value));
    if (!dir)
      return { error: `${name} is '${value}', which holds no LibTorch (no TorchConfig.cmake there or under share/cmake/Torch)`, tried: [`${name}=${value}`] };
    return { dir, from: name, version: torchVersion(dir), tried: [`${name}=${value}`] };
  }
  const lib = path.join(ROOT, '.venv', 'lib');
  const pythons = fs.existsSync(lib) ? fs.readdirSync(lib).filter((n) => n.startsWith('python3')) : [];
  for (const n of pythons) {
    const dir = torchConfigDir(path.join(lib, n, 'site-packages', 'torch'));
    if (dir) return { dir, from: "calmkit's .venv", version: torchVersion(dir), tried: [path.join(ROOT, '.venv')] };
  }
  return { tried: [`${path.join(ROOT, '.venv')} (no torch in it: bash scripts/setup.sh makes it)`] };
}

/** The project calmkit is installed in: where a .venv for its torch belongs. */
function projectDir() {
  const parts = ROOT.split(path.sep);
  const at = parts.indexOf('node_modules');
  return at > 0 ? parts.slice(0, at).join(path.sep) || path.sep : ROOT;
}

/** Every requirement of the build: what it is, whether it is there, and what provides it when it is not. */
function preflight() {
  const pm = packageManager();
  const checks = [];
  const add = (what, ok, detail, fix) => checks.push({ what, ok, detail, fix });

  const [major, minor] = process.versions.node.split('.').map(Number);
  add(
    'Node >= 20.17',
    major > 20 || (major === 20 && minor >= 17),
    `Node ${process.versions.node}`,
    'install Node 20.17 or later (e.g. from your distribution or nvm)',
  );

  const cmake = run('cmake', ['--version']);
  const cmakeVersion = cmake.ok ? cmake.stdout.split('\n')[0].replace(/^cmake version\s*/, '') : '';
  add(
    `cmake >= ${MIN_CMAKE.join('.')}`,
    cmake.ok && versionAtLeast(cmakeVersion, MIN_CMAKE),
    cmake.ok ? `cmake ${cmakeVersion}` : 'cmake not found on PATH',
    systemFix(pm, 'cmake'),
  );

  const compiler = process.env.CXX
    ? onPath(process.env.CXX) || (fs.existsSync(process.env.CXX) ? process.env.CXX : undefined)
    : onPath('c++') || onPath('g++') || onPath('clang++');
  add(
    'a C++17 compiler',
    !!compiler,
    compiler ? compiler : process.env.CXX ? `CXX=${process.env.CXX} not found` : 'no c++, g++ or clang++ on PATH',
    systemFix(pm, 'compiler'),
  );

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
  const venv = path.join(projectDir(), '.venv');
  const torchFix = torch.error
    ? /^CALMKIT_PYTHON/.test(torch.error)
      ? 'point CALMKIT_PYTHON at a Python with torch 2.11.0, or unset it'
      : 'point CALMKIT_TORCH_DIR at a torch folder or LibTorch root (python3 -c "import torch, os; print(os.path.dirname(torch.__file__))" prints it), or unset it'
    : `${onPath('python3') && run('python3', ['-c', 'import venv, ensurepip']).ok ? '' : `${systemFix(pm, 'venv')} && `}python3 -m venv ${venv} && ${venv}/bin/pip install torch==2.11.0   ` +
      '(about 4.7 GB on disk with its CUDA libraries; a CPU-only torch 2.11 wheel is much smaller and works too)';
  add(
    'LibTorch (torch 2.11)',
    !!torch.dir,
    torch.dir
      ? `LibTorch ${torch.version} from ${torch.from} (${torch.dir})`
      : torch.error || `no Python with torch found (tried: ${torch.tried.join(', ') || 'no Python on PATH'})`,
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
  say(`  then: ${rebuildCommand()}`);
  return false;
}

// --- the build ------------------------------------------------------------------------------------------------

/** Loads a calmkit.node in a child process, so a bad binary fails there and not in npm. */
function addonLoads(file, env = process.env) {
  const r = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', file], { encoding: 'utf8', env, timeout: 120_000 });
  if (!r.error && r.status === 0) return { ok: true };
  const why =
    (r.stderr || String(r.error || '')).split('\n').find((l) => /Error|error:|cannot open/.test(l)) ||
    (r.stderr || '').trim().split('\n')[0] ||
    `exit ${r.status}`;
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
    const heartbeat =
      openTty() !== null ? setInterval(() => say(`calmkit: still compiling (${duration(Date.now() - started)}${step ? `, ${step}` : ''})`), 30_000) : undefined;
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

/** The command that runs this step again the same way, worded for where calmkit is. */
function rebuildCommand() {
  if (!INSTALLED) return 'npm run build:native';
  // The variable rather than npm's --build-from-source: npm 11 warns that unknown flags stop working in npm 12.
  return buildFromSourceRequested() ? 'CALMKIT_BUILD_FROM_SOURCE=1 npm rebuild calmkit --foreground-scripts' : 'npm rebuild calmkit --foreground-scripts';
}

/** `npm install --build-from-source` (npm passes the flag as npm_config_build_from_source) or CALMKIT_BUILD_FROM_SOURCE=1. */
function buildFromSourceRequested() {
  const flag = process.env.npm_config_build_from_source;
  return (flag !== undefined && flag !== '' && flag !== 'false') || process.env.CALMKIT_BUILD_FROM_SOURCE === '1';
}

/**
 * Loads the addon the way the library does (the package's loader: CALMKIT_ADDON_PATH, a source build or the prebuilt
 * addon beside the machine's torch), in a child process so a bad binary fails there and not in npm. On failure, the
 * loader's whole message: the problem and the fix lines.
 */
function loaderCheck(env = process.env) {
  const script =
    'const b = require(process.argv[1]); try { const a = b.loadAddon(); console.log(a.path) } catch (e) { console.error(e.message); process.exit(3) }';
  const r = spawnSync(process.execPath, ['-e', script, LOADER], { encoding: 'utf8', env, timeout: 120_000 });
  if (!r.error && r.status === 0) return { ok: true, file: r.stdout.trim() };
  return { ok: false, message: r.status === 3 ? r.stderr.trim() : (r.stderr || String(r.error || '')).trim().split('\n')[0] || `exit ${r.status}` };
}

/** The prebuilt addon for this platform, when the package has one that can run here (manifest and glibc). */
function usablePrebuild() {
  const dir = path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`);
  if (!fs.existsSync(path.join(dir, 'calmkit.json'))) return { why: `calmkit has no prebuilt addon for ${process.platform}-${process.arch}` };
  if (!fs.existsSync(LOADER)) return { why: 'the package has no compiled loader (dist/)' };
  const torchTs = require(path.join(ROOT, 'dist', 'bindings', 'torch.js'));
  const manifest = torchTs.readPrebuildManifest(dir);
  if (!manifest) return { why: `${dir}/calmkit.json is not a prebuild manifest` };
  const mismatch = torchTs.prebuildMismatch(manifest);
  return mismatch ? { why: mismatch } : { manifest };
}

async function buildFromSource(why) {
  const report = preflight();
  if (!report.checks.every((c) => c.ok)) {
    if (why) say(`calmkit: ${why}, so the native addon is built from source here; it needs:`);
    printPreflight(report);
    return false;
  }
  const { torch } = report;
  say(
    `calmkit: ${why ? `${why}: ` : ''}building the native addon from source (C++, several minutes) against LibTorch ${torch.version} from ${torch.from}; ` +
      '`npm install --foreground-scripts` shows the compiler output',
  );
  const started = Date.now();
  const result = await build(torch.dir);
  const took = duration(Date.now() - started);
  if (result.code !== 0) {
    say(
      `calmkit: the native build failed after ${took} (cmake-js ${result.error ? result.error.message : result.signal ? `killed by ${result.signal}` : `exit ${result.code}`}); the output above says why.`,
    );
    say(
      `  ${INSTALLED ? 'node node_modules/calmkit/scripts/install.js --check' : 'node scripts/install.js --check'} lists what the build needs; build again with: ${rebuildCommand()}`,
    );
    return false;
  }
  const addon = path.join(ROOT, 'build', 'Release', 'calmkit.node');
  const loads = addonLoads(addon);
  if (!loads.ok) {
    say(`calmkit: built ${addon} in ${took}, but it does not load: ${loads.why}`);
    return false;
  }
  say(`calmkit: built the native addon in ${took}: ${addon} (LibTorch ${torch.version} from ${torch.dir}; the addon loads it from there, so keep it)`);
  return true;
}

// Without the addon calmkit still installs: calmkit/formats and calmkit/queue work, and the first native call throws
// ERR_ADDON_LOAD with the same fix lines. A failed step therefore ends the install successfully as a dependency
// (npm would otherwise roll calmkit back, and no `npm rebuild calmkit` could follow); in calmkit's own checkout a
// failed build fails `npm ci`.
const STILL_INSTALLED =
  '  calmkit is installed all the same: calmkit/formats and calmkit/queue work now, and the first call that needs the addon throws ERR_ADDON_LOAD with these lines.';

async function main() {
  const checkOnly = process.argv.includes('--check');
  if (checkOnly) {
    process.stderr.write('calmkit: what building the native addon from source needs:\n');
    return printPreflight(preflight()) ? 0 : 1;
  }
  if (process.env.CALMKIT_SKIP_BUILD === '1') {
    say(`calmkit: CALMKIT_SKIP_BUILD=1: nothing is built or checked (calmkit/formats works without the addon; build it later with: ${rebuildCommand()})`);
    return 0;
  }
  if (process.env.CALMKIT_ADDON_PATH) {
    const file = path.resolve(process.env.CALMKIT_ADDON_PATH);
    const loads = fs.existsSync(LOADER) ? loaderCheck() : addonLoads(file);
    if (!loads.ok) {
      say(`calmkit: CALMKIT_ADDON_PATH is ${file}, which does not load: ${loads.message || loads.why}`);
      say("  unset CALMKIT_ADDON_PATH to use calmkit's own addon, or point it at a calmkit.node built for this machine");
      return 1;
    }
    say(`calmkit: using the native addon at ${file} (CALMKIT_ADDON_PATH); nothing to build. Keep CALMKIT_ADDON_PATH set when calmkit runs.`);
    return 0;
  }
  if (!INSTALLED) return (await buildFromSource()) ? 0 : 1;

  const prebuild = buildFromSourceRequested() ? { why: 'building from source was asked for' } : usablePrebuild();
  if (prebuild.manifest) {
    const m = prebuild.manifest;
    const loads = loaderCheck();
    if (loads.ok) {
      const { findTorch: search } = require(path.join(ROOT, 'dist', 'bindings', 'torch.js'));
      const t = search(ROOT).found;
      say(
        `calmkit: using the prebuilt addon for ${process.platform}-${process.arch} (torch ${m.torch}; found ${t ? `${t.version} from ${t.from}` : 'at load'}); nothing to compile`,
      );
      return 0;
    }
    say(
      `calmkit: the prebuilt addon for ${process.platform}-${process.arch} does not load here yet: ${loads.message.replace(/^could not load the native addon \(calmkit\.node\)[^:]*: /, '')}`,
    );
    say(STILL_INSTALLED);
    return 0;
  }
  if (!(await buildFromSource(prebuild.why))) say(STILL_INSTALLED);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    say(`calmkit: install failed: ${err?.stack ? err.stack : err}`);
    process.exitCode = 1;
  },
);
