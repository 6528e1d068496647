#!/usr/bin/env node
// `npm run prebuild`: the prebuilt addon the npm package ships, from a clean checkout (after `bash scripts/setup.sh
// && npm ci`), into prebuilds/<platform>-<arch>/ (node-gyp-build's layout; git-ignored, packed by `npm pack`):
//
//   calmkit.napi.glibc.node   the addon: the same object files as build/Release/calmkit.node (CMake target
//                             calmkit_prebuilt), linked with no rpath and no DT_NEEDED on LibTorch's CUDA part
//   lib/                      the audio libraries it needs (libsndfile with its codecs, libsoxr, libdeflate), copied
//                             from this machine with their copyright files (lib/licenses/): a consumer needs no -dev
//                             package and no compiler
//   calmkit.json              what it was built for: torch 2.11.0, the newest glibc symbol it needs, the libraries in
//                             the order bindings/torch.ts opens them (leaves first)
//
// Built against PyPI's torch 2.11.0 (the .venv scripts/setup.sh makes, or CALMKIT_TORCH_DIR): its Linux wheel is the
// CUDA build, so the addon carries the CUDA hooks and runs on the CPU and on CUDA; at load it runs beside any torch
// 2.11.0 (CUDA or CPU-only wheel) the machine has.
//
// `node scripts/prebuild.js --check` (npm's prepublishOnly) refuses to publish without the staged addon of this version.
//
// Plain JavaScript, like install.js: it runs where nothing is compiled yet. Linux only (readelf, ldd, dpkg).

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const TORCH = '2.11.0';
const TARGET = `${process.platform}-${process.arch}`;
const OUT = path.join(ROOT, 'prebuilds', TARGET);
const ADDON = 'calmkit.napi.glibc.node';

// Libraries every glibc Linux has (the C library's own, the C++ runtime), and LibTorch's, which the machine's torch
// provides (libgomp included: LibTorch bundles its own, and one OpenMP runtime must serve the process).
const SYSTEM = /^(ld-linux[\w.-]*|linux-vdso|libc|libm|libdl|libpthread|librt|libutil|libresolv|libmvec|libstdc\+\+|libgcc_s)\.so[\d.]*$/;
const FROM_TORCH = /^(libtorch[\w]*|libc10[\w]*|libgomp)\.so[\d.]*$/;

function fail(message) {
  process.stderr.write(`prebuild: ${message}\n`);
  process.exit(1);
}

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, ...options });
  if (r.error) fail(`${cmd} did not run: ${r.error.message}`);
  return r;
}

// npm runs a script named `prebuild` before `npm run build` too (its pre-hook convention), with the same
// environment; only npm's own command line tells the two apart. As a hook this does nothing: `npm run build` stays
// the contributor's build against whatever LibTorch they use.
function isHookOfBuild() {
  if (process.env.npm_lifecycle_event !== 'prebuild') return false;
  try {
    const ppidOf = (pid) =>
      Number(
        fs
          .readFileSync(`/proc/${pid}/stat`, 'utf8')
          .replace(/^.*\) /, '')
          .split(' ')[1],
      );
    for (let pid = process.ppid, i = 0; pid > 1 && i < 4; pid = ppidOf(pid), i++) {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const at = argv.findIndex((a) => a === 'run' || a === 'run-script');
      if (at >= 0) return argv[at + 1] !== 'prebuild';
    }
  } catch {
    // no /proc: assume the explicit `npm run prebuild`
  }
  return false;
}

function torchRoot() {
  const dir = process.env.CALMKIT_TORCH_DIR;
  if (dir) {
    const p = path.resolve(dir);
    for (const root of [p, path.resolve(p, '..', '..', '..')]) if (fs.existsSync(path.join(root, 'lib', 'libtorch_cpu.so'))) return root;
    fail(`CALMKIT_TORCH_DIR is '${dir}', which holds no LibTorch`);
  }
  const lib = path.join(ROOT, '.venv', 'lib');
  const py = fs.existsSync(lib) ? fs.readdirSync(lib).filter((n) => n.startsWith('python3')) : [];
  for (const n of py) {
    const root = path.join(lib, n, 'site-packages', 'torch');
    if (fs.existsSync(path.join(root, 'lib', 'libtorch_cpu.so'))) return root;
  }
  fail("no .venv with torch: run bash scripts/setup.sh first (it installs PyPI's torch==2.11.0 into .venv)");
}

/** DT_NEEDED entries of an ELF file. */
function needed(file) {
  const r = run('readelf', ['-d', file]);
  return [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
}

/** soname -> path for everything the dynamic loader resolves for `file` (ldd: the whole closure). */
function resolved(file) {
  const r = run('ldd', [file]);
  const map = new Map();
  for (const m of r.stdout.matchAll(/^\s*(\S+) => (\/\S+) \(/gm)) map.set(m[1], m[2]);
  return map;
}

/** The newest GLIBC_x.y symbol version a file needs. */
function glibcNeeded(file) {
  const r = run('readelf', ['-V', '-W', file]);
  let best = '2.2.5';
  for (const m of r.stdout.matchAll(/Name: GLIBC_(\d+\.\d+(?:\.\d+)?)/g)) if (newer(m[1], best)) best = m[1];
  return best;
}

function newer(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] || 0) !== (y[i] || 0)) return (x[i] || 0) > (y[i] || 0);
  return false;
}

/** The copyright file of the Debian package that owns `file`, if dpkg knows it. */
function copyrightOf(file) {
  const r = spawnSync('dpkg', ['-S', fs.realpathSync(file)], { encoding: 'utf8' });
  const pkg = r.status === 0 ? r.stdout.split(':')[0].trim() : '';
  const copyright = pkg ? `/usr/share/doc/${pkg}/copyright` : '';
  return copyright && fs.existsSync(copyright) ? { pkg, copyright } : undefined;
}

/** `--check` (npm's prepublishOnly): a release must carry the prebuilt addon of its own version. */
function checkStaged() {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(OUT, 'calmkit.json'), 'utf8'));
  } catch {
    fail(`no prebuilt addon in ${path.relative(ROOT, OUT)}/: run npm run prebuild before publishing`);
  }
  if (manifest.calmkit !== pkg.version)
    fail(`the prebuilt addon in ${path.relative(ROOT, OUT)}/ is calmkit ${manifest.calmkit}'s, not ${pkg.version}'s: run npm run prebuild`);
  if (!fs.existsSync(path.join(OUT, manifest.addon))) fail(`${path.relative(ROOT, OUT)}/${manifest.addon} is missing: run npm run prebuild`);
  process.stderr.write(`prebuild: ${path.relative(ROOT, OUT)}/ holds calmkit ${manifest.calmkit}'s addon for torch ${manifest.torch}\n`);
}

function main() {
  if (process.argv.includes('--check')) return checkStaged();
  if (isHookOfBuild()) {
    process.stderr.write('prebuild: skipped (npm runs it before `npm run build`); `npm run prebuild` makes the prebuilt addon\n');
    return;
  }
  if (TARGET !== 'linux-x64') fail(`prebuilt addons are made for linux-x64 only; this is ${TARGET}`);

  const root = torchRoot();
  const versionPy = fs.readFileSync(path.join(root, 'version.py'), 'utf8');
  const torchBuild = (/__version__\s*=\s*'([^']+)'/.exec(versionPy) || [])[1] || 'unknown';
  if (torchBuild.split('+')[0] !== TORCH) fail(`the torch at ${root} is ${torchBuild}; the prebuilt addon is built against torch ${TORCH} (PyPI's wheel)`);
  if (!fs.existsSync(path.join(root, 'lib', 'libtorch_cuda.so'))) {
    fail(
      `the torch at ${root} (${torchBuild}) has no CUDA part: the prebuilt addon is built against PyPI's CUDA wheel, so that it runs on the CPU and on CUDA`,
    );
  }

  // The same build folder as `npm run build:native`: from a clean checkout it compiles the core once; after a build
  // it only links the prebuilt target.
  process.stderr.write(`prebuild: building the prebuilt addon against torch ${torchBuild} (${root})\n`);
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [ROOT] });
  const env = { ...process.env, CALMKIT_TORCH_DIR: root };
  const build = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build', '--target', 'calmkit_prebuilt'], { cwd: ROOT, env, stdio: 'inherit' });
  if (build.status !== 0) fail(`the build failed (cmake-js exit ${build.status})`);
  const built = path.join(ROOT, 'build', 'prebuilt', 'calmkit.node');
  if (!fs.existsSync(built)) fail(`the build made no ${built}`);

  const stillNeeded = needed(built);
  const cuda = stillNeeded.filter((n) => /cuda/.test(n));
  if (cuda.length) fail(`${built} needs ${cuda.join(', ')}: the prebuilt addon must not (it loads beside CPU-only torches too)`);

  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(path.join(OUT, 'lib', 'licenses'), { recursive: true });
  const addon = path.join(OUT, ADDON);
  fs.copyFileSync(built, addon);

  // The bundled libraries: the addon's closure minus the system's and LibTorch's.
  const closure = resolved(built);
  const bundle = new Map();
  for (const [soname, file] of closure) if (!SYSTEM.test(soname) && !FROM_TORCH.test(soname)) bundle.set(soname, file);
  // Leaves first: a library after every bundled library it needs.
  const order = [];
  const visit = (soname, seen = new Set()) => {
    if (order.includes(soname) || seen.has(soname)) return;
    seen.add(soname);
    for (const dep of needed(bundle.get(soname))) if (bundle.has(dep)) visit(dep, seen);
    order.push(soname);
  };
  for (const soname of [...bundle.keys()].sort()) visit(soname);
  const notices = [];
  let glibc = glibcNeeded(built);
  for (const soname of order) {
    const file = bundle.get(soname);
    fs.copyFileSync(fs.realpathSync(file), path.join(OUT, 'lib', soname));
    const g = glibcNeeded(file);
    if (newer(g, glibc)) glibc = g;
    const c = copyrightOf(file);
    if (c) {
      fs.copyFileSync(c.copyright, path.join(OUT, 'lib', 'licenses', `${c.pkg}.copyright`));
      notices.push(`${soname}: Debian package ${c.pkg}`);
    } else {
      notices.push(`${soname}: ${fs.realpathSync(file)} (no Debian package found; see its upstream licence)`);
    }
  }
  fs.writeFileSync(
    path.join(OUT, 'lib', 'licenses', 'README'),
    'The shared libraries in this folder are copied unmodified from the Debian system the prebuilt calmkit addon was\n' +
      'built on, each under its own licence (the copyright files here). libsndfile, its codecs and libsoxr are LGPL:\n' +
      'replace any of them with your own build of the same soname to use it instead.\n\n' +
      notices.join('\n') +
      '\n',
  );

  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const manifest = {
    addon: ADDON,
    calmkit: pkg.version,
    napi: 8,
    torch: TORCH,
    torchBuild,
    cuda: true,
    glibc,
    libraries: order.map((s) => `lib/${s}`),
  };
  fs.writeFileSync(path.join(OUT, 'calmkit.json'), `${JSON.stringify(manifest, null, 2)}\n`);

  // It loads the way a consumer's calmkit loads it: through the loader, with no LD_LIBRARY_PATH (needs dist/).
  const loader = path.join(ROOT, 'dist', 'bindings', 'index.js');
  if (fs.existsSync(loader)) {
    const checkEnv = { ...process.env, CALMKIT_ADDON_PATH: addon, CALMKIT_TORCH_DIR: root };
    delete checkEnv.LD_LIBRARY_PATH;
    const r = spawnSync(process.execPath, ['-e', `const b = require(${JSON.stringify(loader)}); b.loadAddon(); console.log(b.binding().doctor().torchDir)`], {
      encoding: 'utf8',
      env: checkEnv,
    });
    if (r.status !== 0) fail(`the staged addon does not load: ${(r.stderr || '').trim()}`);
    process.stderr.write(`prebuild: it loads beside ${r.stdout.trim()}\n`);
  } else {
    process.stderr.write('prebuild: dist/ not built yet (npm run build:ts), so the load check is skipped\n');
  }
  const size = (f) => fs.statSync(f).size;
  const libBytes = order.reduce((s, n) => s + size(path.join(OUT, 'lib', n)), 0);
  process.stderr.write(
    `prebuild: ${path.relative(ROOT, OUT)}/: ${ADDON} (${(size(addon) / 2 ** 20).toFixed(1)} MiB), ${order.length} libraries (${(libBytes / 2 ** 20).toFixed(1)} MiB), ` +
      `torch ${TORCH}, glibc >= ${glibc}\n`,
  );
}

main();
