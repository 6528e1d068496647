// Where the prebuilt addon's LibTorch comes from (bindings/torch.ts): CALMKIT_TORCH_DIR, then CALMKIT_PYTHON's torch,
// then the project's .venv, then python3's torch; a set CALMKIT_TORCH_DIR or CALMKIT_PYTHON that gives none is an
// error, never a fall-back; another torch version is one error naming both versions and the two ways out. Fake
// torch folders (a version.py and an empty lib/libtorch_cpu.so: nothing is loaded here) stand for torches of other
// versions; the real one is the project's (.venv).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { addonBlocker, type AddonPlan } from '../bindings';
import { baseVersion, findTorch, projectDir, versionAtLeast, type PrebuildManifest } from '../bindings/torch';
import { PYTHON, ROOT, tempDir } from './helpers/paths';

const tmp = tempDir('calmkit-loader-');
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));

function fakeTorch(dir: string, version: string, cuda = false): string {
  fs.mkdirSync(path.join(dir, 'lib'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'share', 'cmake', 'Torch'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'lib', 'libtorch_cpu.so'), '');
  if (cuda) fs.writeFileSync(path.join(dir, 'lib', 'libtorch_cuda.so'), '');
  fs.writeFileSync(path.join(dir, 'version.py'), `__version__ = '${version}'\n`);
  return dir;
}

// A project with calmkit in node_modules, and a PATH holding only what a test puts there.
const project = path.join(tmp, 'project');
const pkgRoot = path.join(project, 'node_modules', 'calmkit');
fs.mkdirSync(pkgRoot, { recursive: true });
const bin = path.join(tmp, 'bin');
fs.mkdirSync(bin);
const bare = { PATH: bin } as NodeJS.ProcessEnv;
const other = fakeTorch(path.join(tmp, 'torch-2.10'), '2.10.0+cpu');

// python3 on that PATH: the project's Python with torch 2.11.0 (a wrapper: a symlink would lose the venv).
function putPython3(): void {
  fs.writeFileSync(path.join(bin, 'python3'), `#!/bin/sh\nexec '${PYTHON}' "$@"\n`, { mode: 0o755 });
}

const manifest: PrebuildManifest = {
  addon: 'calmkit.napi.glibc.node',
  calmkit: '0.1.0',
  napi: 8,
  torch: '2.11.0',
  torchBuild: '2.11.0+cu130',
  cuda: true,
  glibc: '2.34',
  libraries: [],
};
const plan = (torch: ReturnType<typeof findTorch>): AddonPlan => ({
  kind: 'prebuilt',
  file: path.join(pkgRoot, 'prebuilds', 'linux-x64', manifest.addon),
  manifest,
  torch,
  installed: true,
  root: pkgRoot,
  project,
});

test.serial('versions: the local part does not count; dotted comparison', (t) => {
  t.is(baseVersion('2.11.0+cu130'), '2.11.0');
  t.is(baseVersion('2.11.0'), '2.11.0');
  t.true(versionAtLeast('2.36', '2.34'));
  t.true(versionAtLeast('2.34', '2.34'));
  t.false(versionAtLeast('2.31', '2.34'));
  t.true(versionAtLeast('2.4', '2.3.9'));
  t.is(projectDir(pkgRoot), project);
  t.is(projectDir(ROOT), ROOT, "calmkit's own checkout is its own project");
});

test.serial('nothing anywhere: no torch, and every place looked at is named', (t) => {
  const s = findTorch(pkgRoot, bare);
  t.is(s.found, undefined);
  t.is(s.problem, undefined);
  t.deepEqual(s.tried, [`${path.join(project, '.venv')} (none)`, 'python3 (not on PATH)']);
  const b = addonBlocker(plan(s))!;
  t.regex(b.problem, /the prebuilt addon needs torch 2\.11\.0 \(LibTorch\), and none was found \(looked at: .*\.venv \(none\); python3 \(not on PATH\)\)/);
  t.true(b.fixes[0]!.includes(`python3 -m venv ${path.join(project, '.venv')} && ${path.join(project, '.venv')}/bin/pip install torch==2.11.0`), b.fixes[0]);
  t.regex(b.fixes[0]!, /about 4\.7 GB on disk .*nothing to rebuild/);
  t.regex(b.fixes[1]!, /CALMKIT_PYTHON=.* or CALMKIT_TORCH_DIR=/);
  t.notRegex(b.fixes.join('\n'), /npm rebuild/, 'a prebuild needs no rebuild once torch is there');
});

test.serial("python3's torch, then the project's .venv, then CALMKIT_PYTHON, then CALMKIT_TORCH_DIR: each wins over the ones after it", (t) => {
  // python3 on PATH is the project's Python with torch 2.11.0.
  putPython3();
  try {
    const viaPython3 = findTorch(pkgRoot, bare);
    t.regex(viaPython3.found?.from ?? '', /^python3 \(/);
    t.is(baseVersion(viaPython3.found!.version), '2.11.0');
    t.is(addonBlocker(plan(viaPython3)), undefined, 'the right version: nothing in the way');

    const venvTorch = fakeTorch(path.join(project, '.venv', 'lib', 'python3.11', 'site-packages', 'torch'), '2.11.0+cpu');
    const viaVenv = findTorch(pkgRoot, bare);
    t.is(viaVenv.found?.from, "the project's .venv");
    t.is(viaVenv.found?.root, venvTorch);
    t.is(viaVenv.found?.version, '2.11.0+cpu');
    t.false(viaVenv.found!.cuda);

    const viaPython = findTorch(pkgRoot, { ...bare, CALMKIT_PYTHON: PYTHON });
    t.is(viaPython.found?.from, `CALMKIT_PYTHON (${PYTHON})`);
    t.true(viaPython.found!.cuda || !fs.existsSync(path.join(viaPython.found!.libDir, 'libtorch_cuda.so')));

    // A share/cmake/Torch folder names its LibTorch too.
    const viaDir = findTorch(pkgRoot, { ...bare, CALMKIT_PYTHON: PYTHON, CALMKIT_TORCH_DIR: path.join(other, 'share', 'cmake', 'Torch') });
    t.is(viaDir.found?.from, 'CALMKIT_TORCH_DIR');
    t.is(viaDir.found?.root, other);
  } finally {
    fs.rmSync(path.join(bin, 'python3'));
    fs.rmSync(path.join(project, '.venv'), { recursive: true, force: true });
  }
});

test.serial('a set CALMKIT_TORCH_DIR or CALMKIT_PYTHON that gives no torch is an error, not a fall-back to the next place', (t) => {
  putPython3();
  try {
    const dir = findTorch(pkgRoot, { ...bare, CALMKIT_TORCH_DIR: path.join(tmp, 'nothing') });
    t.is(dir.found, undefined, 'python3 has torch, and still it is not used');
    t.regex(dir.problem!, /^CALMKIT_TORCH_DIR is '.*nothing', which holds no LibTorch/);
    t.regex(addonBlocker(plan(dir))!.fixes[0]!, /^Point CALMKIT_TORCH_DIR at a torch 2\.11\.0 folder .* or unset it/);

    const missing = findTorch(pkgRoot, { ...bare, CALMKIT_PYTHON: path.join(tmp, 'no', 'python') });
    t.is(missing.found, undefined);
    t.is(missing.problem, `CALMKIT_PYTHON is '${path.join(tmp, 'no', 'python')}', which does not exist`);
    const b = addonBlocker(plan(missing))!;
    t.regex(b.problem, /needs torch 2\.11\.0, and CALMKIT_PYTHON is .*, which does not exist/);
    t.regex(b.fixes[0]!, /^Point CALMKIT_PYTHON at a Python with torch 2\.11\.0 .* or unset it/);

    // A real Python without torch: a fresh venv.
    const venv = path.join(tmp, 'venv-without-torch');
    const made = spawnSync(PYTHON, ['-m', 'venv', '--without-pip', venv], { encoding: 'utf8' });
    t.is(made.status, 0, made.stderr);
    const python = path.join(venv, 'bin', 'python');
    const noTorch = findTorch(pkgRoot, { ...bare, CALMKIT_PYTHON: python });
    t.is(noTorch.found, undefined);
    t.is(noTorch.problem, `CALMKIT_PYTHON is '${python}', which has no torch installed`);
  } finally {
    fs.rmSync(path.join(bin, 'python3'));
  }
});

test.serial('another torch version: one error naming both versions and the two ways out', (t) => {
  const s = findTorch(pkgRoot, { ...bare, CALMKIT_TORCH_DIR: other });
  const b = addonBlocker(plan(s))!;
  t.regex(b.problem, /the prebuilt addon is built for torch 2\.11\.0, and the torch found is 2\.10\.0\+cpu \(.*torch-2\.10, from CALMKIT_TORCH_DIR\)/);
  t.regex(b.problem, /no stable|changes between versions/);
  t.is(b.fixes.length, 2);
  t.regex(b.fixes[0]!, /^Install torch 2\.11\.0: .*pip install torch==2\.11\.0/);
  t.regex(b.fixes[1]!, /build calmkit from source against the torch you have: CALMKIT_BUILD_FROM_SOURCE=1 npm rebuild calmkit --foreground-scripts/);

  // python3's torch of another version: the fix names that Python's pip.
  const py = fakeTorch(path.join(tmp, 'py-2.9'), '2.9.1');
  const s2 = { found: { root: py, libDir: path.join(py, 'lib'), version: '2.9.1', from: 'python3 (/usr/bin/python3)', cuda: false }, tried: [] };
  t.regex(addonBlocker(plan(s2))!.fixes[0]!, /^Install torch 2\.11\.0: \/usr\/bin\/python3 -m pip install torch==2\.11\.0, or /);
});

test.serial('a glibc older than the prebuild needs, or no prebuild at all: build from source, worded for a dependency', (t) => {
  const old = {
    ...plan(findTorch(pkgRoot, { ...bare, CALMKIT_TORCH_DIR: other })),
    mismatch: 'the prebuilt addon needs glibc 2.99 or newer; this machine has 2.36',
  };
  const b = addonBlocker(old)!;
  t.regex(b.problem, /glibc 2\.99/);
  t.regex(b.fixes[0]!, /^Build calmkit from source .*CALMKIT_BUILD_FROM_SOURCE=1 npm rebuild calmkit --foreground-scripts/);
  const none = addonBlocker({ kind: 'none', notFound: 'No native build was found', installed: true, root: pkgRoot, project })!;
  t.regex(none.problem, /no native addon \(calmkit\.node\) for .*: no prebuilt one in this package and no source build/);
  t.regex(none.fixes[0]!, /npm rebuild calmkit --foreground-scripts/);
  const checkout = addonBlocker({ kind: 'none', notFound: 'No native build was found', installed: false, root: ROOT, project: ROOT })!;
  t.regex(checkout.fixes[0]!, /npm run build:native/);
});
