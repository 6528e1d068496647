// calmkit as a dependency, the way a consumer gets it: the tarball `npm pack` makes (exactly what a consumer needs:
// the library, its declarations, the prebuilt addon for linux-x64 with its audio libraries, the sources for the
// fallback build, LICENSE), installed into fresh projects on a PATH with no compiler and no cmake. A CommonJS project
// (install step approved, torch in the project's .venv) typechecks against it under the node10, node16, nodenext and
// bundler resolutions and runs the CLI and the library; its features are bit-identical to this checkout's source
// build. An ESM project (install step not approved: npm 11's default) runs an extraction with CALMKIT_PYTHON's torch,
// and shows each failure path and its next step: no torch, another torch, a bad CALMKIT_PYTHON, doctor without the
// addon, the install step without torch, the source build's preflight.
//
// `npm run prebuild` stages the prebuilt addon (prebuilds/linux-x64/); the first test runs it, which after a build
// only links and copies.
import test from 'ava';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Jukebox } from '../lib';
import { addonPath } from '../lib/addon';
import { PYTHON, ROOT } from './helpers/paths';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-consumer-'));
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));

const PREBUILDS = path.join(ROOT, 'prebuilds', 'linux-x64');
const VENV = fs.realpathSync(path.join(ROOT, '.venv'));
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: Record<string, string | { types: string; default: string }>;
  typesVersions: Record<string, Record<string, string[]>>;
};
const versionOf = (name: string) => (JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;

/** The environment of a person's shell: none of the npm_* variables `npm test` sets, no terminal side channel. */
function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  env.CALMKIT_INSTALL_NO_TTY = '1';
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

function sh(cmd: string, args: string[], options: SpawnSyncOptions = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, timeout: 300_000, ...options });
  return { code: r.status, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

interface PackEntry {
  filename: string;
  files: { path: string; size: number }[];
  size: number;
  unpackedSize: number;
}

function once<T>(fn: () => T): () => T {
  let value: { v: T } | undefined;
  return () => {
    value ??= { v: fn() };
    return value.v;
  };
}

// `npm run prebuild`: the prebuilt addon, staged into prebuilds/linux-x64/ (links and copies after a build).
const prebuilt = once(() => {
  const r = sh(process.execPath, [path.join(ROOT, 'scripts', 'prebuild.js')], { cwd: ROOT, env: cleanEnv(), timeout: 1_800_000 });
  if (r.code !== 0) throw new Error(`npm run prebuild failed:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(fs.readFileSync(path.join(PREBUILDS, 'calmkit.json'), 'utf8')) as {
    addon: string;
    torch: string;
    torchBuild: string;
    glibc: string;
    libraries: string[];
  };
});

// `npm pack` as a release would run it: `prepare` compiles dist/ first, so the tarball holds this code.
const packed = once(() => {
  prebuilt();
  const r = sh('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: ROOT, env: cleanEnv() });
  if (r.code !== 0) throw new Error(`npm pack failed: ${r.stderr}`);
  const entry = (JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as PackEntry[])[0]!;
  return { entry, tarball: path.join(tmp, entry.filename), files: entry.files.map((f) => f.path).sort() };
});

test.serial('the tarball holds exactly what a consumer needs (npm pack --dry-run --json)', (t) => {
  const { files: packedFiles } = packed();
  const r = sh('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, env: cleanEnv() });
  t.is(r.code, 0, r.stderr);
  const dry = (JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as PackEntry[])[0]!;
  const files = dry.files.map((f) => f.path).sort();
  t.deepEqual(files, packedFiles, 'the dry run lists what the real pack packed');

  const allowed = [
    /^package\.json$/,
    /^README\.md$/,
    /^LICENSE$/,
    /^CMakeLists\.txt$/,
    /^cmake\/[\w-]+\.cmake$/,
    /^native\/(core|napi)\/\w+\.(cpp|h)$/,
    /^dist\/(lib|bindings)\/.+\.(js|d\.ts)$/,
    /^scripts\/(install\.js|export-jukebox\.py)$/,
    /^benchmarks\/reference\/jukebox_eager\.py$/,
    /^prebuilds\/linux-x64\/(calmkit\.napi\.glibc\.node|calmkit\.json|lib\/lib[\w+-]+\.so[.\d]*|lib\/licenses\/[\w.+-]+)$/,
  ];
  const stray = files.filter((f) => !allowed.some((re) => re.test(f)));
  t.deepEqual(stray, [], 'nothing but the library, its declarations, the prebuilt addon, the native sources, the install step and the licence');
  const manifest = prebuilt();
  for (const f of [manifest.addon, 'calmkit.json', ...manifest.libraries, 'lib/licenses/README'])
    t.true(files.includes(`prebuilds/linux-x64/${f}`), `${f} is packed`);
  t.true(files.includes('LICENSE'));
  t.false(files.some((f) => f.startsWith('dist/benchmarks') || f.startsWith('dist/test') || f.endsWith('.map') || /(^|\/)test\//.test(f)));

  // What package.json points at is there: main, types, every export and typesVersions target, the CLI.
  const targets = [pkg.main, pkg.types, ...Object.values(pkg.bin), ...Object.values(pkg.typesVersions['*']!).flat()];
  for (const e of Object.values(pkg.exports)) if (typeof e !== 'string') targets.push(e.types, e.default);
  for (const target of targets) t.true(files.includes(target.replace(/^\.\//, '')), `${target} is packed`);

  // Every module the shipped JavaScript requires by a relative path is shipped too, and every .js has its .d.ts.
  const js = files.filter((f) => f.endsWith('.js') && f.startsWith('dist/'));
  for (const f of js) {
    t.true(files.includes(f.replace(/\.js$/, '.d.ts')), `${f} has declarations`);
    const source = fs.readFileSync(path.join(ROOT, f), 'utf8');
    for (const m of source.matchAll(/require\("(\.{1,2}\/[^"]+)"\)/g)) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(f), m[1]!));
      const resolved = [target, `${target}.js`, `${target}/index.js`, `${target}.json`].find((c) => files.includes(c));
      t.truthy(resolved, `${f} requires ${m[1]}, which is packed`);
    }
  }
  // The native build's inputs: every source the CMakeLists globs for the core and the addon.
  for (const dir of ['native/core', 'native/napi']) {
    for (const name of fs.readdirSync(path.join(ROOT, dir))) t.true(files.includes(`${dir}/${name}`), `${dir}/${name} is packed`);
  }
  t.log(`${files.length} files, ${(dry.size / 1024).toFixed(0)} KiB packed, ${(dry.unpackedSize / 1024).toFixed(0)} KiB unpacked`);
});

test.serial('the registry sees a consumer README with absolute links, and the package names its repository', (t) => {
  const pj = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  t.regex(String((pj.repository as { url?: string } | undefined)?.url), /^git\+https:\/\/github\.com\/[\w-]+\/[\w-]+\.git$/);
  t.regex(String(pj.homepage), /^https:\/\//);
  t.true(Array.isArray(pj.keywords) && (pj.keywords as string[]).length >= 5);
  t.regex(fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8'), /^MIT License/);
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  // The tarball has none of the repository's docs, so a relative link would be dead on the registry's page.
  const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
  t.true(links.length > 5, 'the README links to the docs');
  t.deepEqual(
    links.filter((l) => !/^https?:\/\//.test(l) && !l.startsWith('#')),
    [],
    'every link is absolute',
  );
  // The consumer's view first: installing comes before anything a contributor needs.
  const install = readme.indexOf('npm install calmkit');
  t.true(install > 0 && install < 1500, `npm install calmkit within the first lines (at ${install})`);
  t.true(install < readme.indexOf('scripts/setup.sh'), "before the contributors' set-up");
});

// --- a consumer project ----------------------------------------------------------------------------------------

const consumer = path.join(tmp, 'consumer');

const CONSUMER_TS = `// A package that depends on calmkit: every documented entry, \`await using\` on the model and the worker,
// AbortSignal.timeout(), the error classes.
import { AbortError, CalmkitError, Jukebox, type JukeboxFeatures } from 'calmkit';
import { readNpy } from 'calmkit/formats';
import { ExtractionWorker, type WorkerOptions } from 'calmkit/queue';

export async function extractOne(model: string, clip: string): Promise<JukeboxFeatures> {
  await using jukebox = await Jukebox.load(model, { device: 'cpu' });
  // \`return await\`: the model is disposed when the block ends, so the extraction must be finished by then.
  return await jukebox.extract(clip, { layers: [2], signal: AbortSignal.timeout(120_000) });
}

export async function serve(options: WorkerOptions): Promise<number> {
  await using worker = await ExtractionWorker.start(options);
  return worker.getStats().completed;
}

export function isAbort(e: unknown): e is AbortError {
  return e instanceof AbortError && e instanceof CalmkitError && e.code === 'ERR_ABORTED';
}

export const firstShape = (file: string): number[] => readNpy(file).shape;
`;

const MAIN_TS = `import { Jukebox } from 'calmkit';
import { extractOne, isAbort } from './consumer';

async function run(): Promise<void> {
  const [model, clip] = process.argv.slice(2) as [string, string];
  const features = await extractOne(model, clip);
  // A timeout that has fired: the AbortError keeps the signal's reason as its cause.
  let cause: unknown;
  try {
    await using jukebox = await Jukebox.load(model);
    await jukebox.extract(clip, { signal: AbortSignal.timeout(0) });
  } catch (e) {
    if (isAbort(e)) cause = e.cause;
  }
  console.log(JSON.stringify({ shape: features.layers[2]!.shape, cause: (cause as Error | undefined)?.name }));
}

void run();
`;

const ESM_MTS = `import { Jukebox, type JukeboxInfo } from 'calmkit';
import { toHalfBits } from 'calmkit/formats';
import type { QueueJobData } from 'calmkit/queue';

export async function info(model: string): Promise<JukeboxInfo> {
  await using jukebox = await Jukebox.load(model);
  return jukebox.info;
}
export const half: number = toHalfBits(1.5);
export type Job = QueueJobData;
const model = process.argv[2];
if (model) console.log(JSON.stringify({ depth: (await info(model)).depth }));
`;

/** The four ways TypeScript resolves packages, each with the lib and types calmkit's declarations need. */
const RESOLUTIONS: Record<string, { module: string; moduleResolution: string; files: string[] }> = {
  node10: { module: 'commonjs', moduleResolution: 'node10', files: ['src/consumer.ts', 'src/main.ts'] },
  node16: { module: 'node16', moduleResolution: 'node16', files: ['src/consumer.ts', 'src/main.ts', 'src/esm.mts'] },
  nodenext: { module: 'nodenext', moduleResolution: 'nodenext', files: ['src/consumer.ts', 'src/main.ts', 'src/esm.mts'] },
  bundler: { module: 'esnext', moduleResolution: 'bundler', files: ['src/consumer.ts', 'src/main.ts'] },
};

function writeWav(file: string, seconds: number): void {
  const rate = 44100;
  const n = Math.round(rate * seconds);
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) data.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 220 * i) / rate)), i * 2);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  fs.writeFileSync(file, Buffer.concat([header, data]));
}

const OLDEST_TS = '5.2.2';

/** The programs on the consumers' PATH: node, npm, npx and sh, and no compiler, cmake, make or python3. */
const tools = once(() => {
  const dir = path.join(tmp, 'tools');
  fs.mkdirSync(dir);
  const which = (name: string) => {
    for (const d of (process.env.PATH ?? '').split(path.delimiter)) {
      const f = path.join(d, name);
      if (d && fs.existsSync(f)) return fs.realpathSync(f);
    }
    throw new Error(`${name} is not on PATH`);
  };
  fs.symlinkSync(process.execPath, path.join(dir, 'node'));
  for (const name of ['npm', 'npx', 'sh']) fs.symlinkSync(which(name), path.join(dir, name));
  return dir;
});

/** A consumer's shell: the bare PATH, none of calmkit's settings, one model thread. */
const runEnv = (extra: Record<string, string | undefined> = {}) =>
  cleanEnv({
    PATH: tools(),
    CALMKIT_ADDON_PATH: undefined,
    CALMKIT_TORCH_DIR: undefined,
    CALMKIT_PYTHON: undefined,
    CALMKIT_BUILD_FROM_SOURCE: undefined,
    CALMKIT_THREADS: '1',
    ...extra,
  });

const installed = once(() => {
  fs.mkdirSync(path.join(consumer, 'src'), { recursive: true });
  // allowScripts: npm 11 asks before running a dependency's install script; a project approves calmkit's.
  // (npm keys the approval of a tarball by its file: spec, and of a registry package by its name.)
  const allowScripts = { calmkit: true, [`file:${packed().tarball}`]: true };
  fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'calmkit-consumer', version: '1.0.0', private: true, allowScripts }, null, 2));
  // torch 2.11.0 in the project's .venv, where the prebuilt addon looks for it (this checkout's, linked).
  fs.symlinkSync(VENV, path.join(consumer, '.venv'));
  const started = Date.now();
  const r = sh(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      '--foreground-scripts',
      packed().tarball,
      `typescript@${versionOf('typescript')}`,
      `@types/node@${versionOf('@types/node')}`,
      // The oldest compiler the README promises (the first with \`await using\`), beside the current one.
      `typescript-oldest@npm:typescript@${OLDEST_TS}`,
    ],
    { cwd: consumer, env: runEnv() },
  );
  if (r.code !== 0) throw new Error(`npm install of the tarball failed:\n${r.stdout}\n${r.stderr}`);
  fs.writeFileSync(path.join(consumer, 'src', 'consumer.ts'), CONSUMER_TS);
  fs.writeFileSync(path.join(consumer, 'src', 'main.ts'), MAIN_TS);
  fs.writeFileSync(path.join(consumer, 'src', 'esm.mts'), ESM_MTS);
  for (const [name, o] of Object.entries(RESOLUTIONS)) {
    const compilerOptions = {
      strict: true,
      target: 'ES2022',
      module: o.module,
      moduleResolution: o.moduleResolution,
      // What calmkit's declarations need from a consumer (README: "use calmkit from your package").
      lib: ['ES2022', 'ESNext.Disposable'],
      types: ['node'],
      skipLibCheck: false,
      esModuleInterop: true,
      ...(name === 'node16' ? { outDir: 'out' } : { noEmit: true }),
    };
    fs.writeFileSync(path.join(consumer, `tsconfig.${name}.json`), JSON.stringify({ compilerOptions, files: o.files }, null, 2));
  }
  return { output: r.stdout + r.stderr, seconds: (Date.now() - started) / 1000 };
});

test.serial('with no compiler and no cmake on PATH, a fresh project installs the tarball and the prebuilt addon, compiling nothing', (t) => {
  for (const tool of ['cmake', 'c++', 'g++', 'gcc', 'cc', 'clang++', 'make', 'ninja', 'python3']) {
    t.false(fs.existsSync(path.join(tools(), tool)), `${tool} is not on the consumer's PATH`);
  }
  const { output, seconds } = installed();
  // Measured, not asserted (a timed test would fail on a loaded machine): benchmarks/install.ts has the figures.
  t.log(`npm install of the tarball (+ typescript, @types/node): ${seconds.toFixed(1)} s`);
  t.regex(output, /calmkit: using the prebuilt addon for linux-x64 \(torch 2\.11\.0; found 2\.11\.0\S* from the project's \.venv\); nothing to compile/);
  const here = path.join(consumer, 'node_modules', 'calmkit');
  t.true(fs.existsSync(path.join(here, 'dist', 'lib', 'index.js')));
  t.true(fs.existsSync(path.join(here, 'prebuilds', 'linux-x64', 'calmkit.napi.glibc.node')));
  t.false(fs.existsSync(path.join(here, 'build')), 'nothing was compiled');
  t.false(fs.existsSync(path.join(consumer, 'node_modules', 'vega')), 'the figure renderer is an optional peer: not installed');
});

for (const name of Object.keys(RESOLUTIONS)) {
  test.serial(`the consumer typechecks under moduleResolution ${name}`, (t) => {
    installed();
    const r = sh(process.execPath, [path.join(consumer, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', `tsconfig.${name}.json`], {
      cwd: consumer,
      env: runEnv(),
    });
    t.is(r.code, 0, r.stdout + r.stderr);
  });
}

test.serial(`the consumer typechecks with TypeScript ${OLDEST_TS} under moduleResolution node16`, (t) => {
  installed();
  const r = sh(process.execPath, [path.join(consumer, 'node_modules', 'typescript-oldest', 'bin', 'tsc'), '-p', 'tsconfig.node16.json', '--noEmit'], {
    cwd: consumer,
    env: runEnv(),
  });
  t.is(r.code, 0, r.stdout + r.stderr);
});

test.serial('the consumer runs an extraction: npx calmkit model init and extract, and the compiled library code (CJS and ESM)', (t) => {
  installed();
  const env = runEnv();
  t.false('LD_LIBRARY_PATH' in env && !!env.LD_LIBRARY_PATH, 'LibTorch is found without LD_LIBRARY_PATH');
  const init = sh('npx', ['--no', 'calmkit', 'model', 'init', '--preset', 'tiny', '--out', 'm.pt'], { cwd: consumer, env });
  t.is(init.code, 0, init.stderr);
  writeWav(path.join(consumer, 'clip.wav'), 2);
  const extract = sh('npx', ['--no', 'calmkit', 'extract', 'clip.wav', '--model', 'm.pt', '--out', 'features', '--layers', '2'], { cwd: consumer, env });
  t.is(extract.code, 0, extract.stderr);
  t.regex(extract.stdout, /^extract: 1 extracted, 0 already in the store, 0 failed/m);
  t.regex(extract.stderr, /^extract: 1 clip, settings /m);
  t.true(fs.existsSync(path.join(consumer, 'features', 'layer-2', 'manifest.json')));

  // tsc -p tsconfig.node16.json emits out/ (CommonJS for .ts, ESM for .mts); the typecheck test ran it already.
  if (!fs.existsSync(path.join(consumer, 'out', 'main.js'))) {
    const tsc = sh(process.execPath, [path.join(consumer, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.node16.json'], { cwd: consumer, env });
    t.is(tsc.code, 0, tsc.stdout);
  }
  const cjs = sh(process.execPath, ['out/main.js', 'm.pt', 'clip.wav'], { cwd: consumer, env });
  t.is(cjs.code, 0, cjs.stderr);
  t.deepEqual(JSON.parse(cjs.stdout.trim()), { shape: [128], cause: 'TimeoutError' });
  const esm = sh(process.execPath, ['out/esm.mjs', 'm.pt'], { cwd: consumer, env });
  t.is(esm.code, 0, esm.stderr);
  t.deepEqual(JSON.parse(esm.stdout.trim()), { depth: 6 });

  // The performance engineer's command ships too, the eager reference's script with it.
  const benchEnv = { ...env, CALMKIT_PYTHON: PYTHON };
  const bench = sh(
    'npx',
    ['--no', 'calmkit', 'bench', 'extract', '--preset', 'tiny', '--layers', '2', '--rounds', '1', '--warmup', '0', '--reference', '--json', 'b.json'],
    { cwd: consumer, env: benchEnv },
  );
  t.is(bench.code, 0, bench.stderr);
  t.regex(bench.stdout, /^reference: eager PyTorch /m);
  const compare = sh('npx', ['--no', 'calmkit', 'bench', 'compare', 'b.json', 'b.json'], { cwd: consumer, env });
  t.is(compare.code, 0, compare.stderr);
  t.regex(compare.stdout, /fp32, 1024 tokens, batch 1\s+clip s\s+\S+\s+\S+\s+1\.00x/);
});

// The features of the prebuilt addon are the source build's, bit for bit: the same object files, linked twice.
const EXTRACT_JS = `const { Jukebox } = require('calmkit');
(async () => {
  const m = await Jukebox.load(process.argv[2], { device: 'cpu' });
  const f = await m.extract(process.argv[3], { layers: [1, 2], pooling: 'none' });
  const out = { addon: require('calmkit').doctor().addonPath, layers: {} };
  for (const [l, v] of Object.entries(f.layers)) out.layers[l] = { shape: v.shape, bytes: Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength).toString('base64') };
  m.dispose();
  console.log(JSON.stringify(out));
})();
`;

test.serial("the prebuilt addon's features are bit-identical to the source build's", async (t) => {
  installed();
  const model = path.join(consumer, 'm.pt');
  const clip = path.join(consumer, 'clip.wav');
  if (!fs.existsSync(model))
    t.is(sh('npx', ['--no', 'calmkit', 'model', 'init', '--preset', 'tiny', '--out', 'm.pt'], { cwd: consumer, env: runEnv() }).code, 0);
  if (!fs.existsSync(clip)) writeWav(clip, 2);
  fs.writeFileSync(path.join(consumer, 'extract.cjs'), EXTRACT_JS);
  const r = sh(process.execPath, ['extract.cjs', model, clip], { cwd: consumer, env: runEnv() });
  t.is(r.code, 0, r.stderr);
  const prebuiltOut = JSON.parse(r.stdout.trim()) as { addon: string; layers: Record<string, { shape: number[]; bytes: string }> };
  t.is(prebuiltOut.addon, path.join(consumer, 'node_modules', 'calmkit', 'prebuilds', 'linux-x64', 'calmkit.napi.glibc.node'));

  // This process: the checkout's source build (build/Release), one thread as in the consumer.
  t.is(addonPath(), path.join(ROOT, 'build', 'Release', 'calmkit.node'));
  const m = await Jukebox.load(model, { device: 'cpu' });
  try {
    const f = await m.extract(clip, { layers: [1, 2], pooling: 'none' });
    for (const l of [1, 2]) {
      const v = f.layers[l]!;
      t.deepEqual(prebuiltOut.layers[l]!.shape, v.shape);
      t.true(v.data.length > 10_000, 'raw rows, not one pooled vector');
      t.is(prebuiltOut.layers[l]!.bytes, Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength).toString('base64'), `layer ${l}: the same bits`);
    }
  } finally {
    m.dispose();
  }
});

// --- an ESM project that did not approve calmkit's install step, and every failure path --------------------------

const esm = path.join(tmp, 'esm');

const ESM_EXTRACT = `import { Jukebox } from 'calmkit';
import { toHalfBits } from 'calmkit/formats';
const [model, clip] = process.argv.slice(2);
// Plain JavaScript on Node 20 has no \`await using\`: dispose() by hand.
const m = await Jukebox.load(model, { device: 'cpu' });
try {
  const f = await m.extract(clip, { layers: [2] });
  console.log(JSON.stringify({ shape: f.layers[2].shape, half: toHalfBits(1.5) }));
} finally {
  m.dispose();
}
`;

const esmInstalled = once(() => {
  fs.mkdirSync(esm, { recursive: true });
  fs.writeFileSync(path.join(esm, 'package.json'), JSON.stringify({ name: 'calmkit-esm', version: '1.0.0', private: true, type: 'module' }, null, 2));
  const r = sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', packed().tarball], { cwd: esm, env: runEnv() });
  if (r.code !== 0) throw new Error(`npm install of the tarball failed:\n${r.stdout}\n${r.stderr}`);
  fs.writeFileSync(path.join(esm, 'extract.mjs'), ESM_EXTRACT);
  return r.stdout + r.stderr;
});

/** Runs `code` (CommonJS) in the ESM project; its stdout. */
function inEsm(code: string, env: NodeJS.ProcessEnv) {
  return sh(process.execPath, ['--input-type=commonjs', '-e', code], { cwd: esm, env });
}

const FIRST_NATIVE_CALL = `
const formats = require('calmkit/formats'); const queue = require('calmkit/queue'); const calmkit = require('calmkit');
console.log('loaded', typeof formats.readNpy, typeof queue.ExtractionWorker, typeof calmkit.Jukebox);
calmkit.loadAudio('clip.wav').then(() => console.log('native ok'), (e) => { console.log(e.constructor.name, e.code); console.log(e.message); process.exit(3) });
`;

test.serial('an ESM project, install step not approved, CALMKIT_PYTHON naming the torch: an extraction runs', (t) => {
  esmInstalled();
  writeWav(path.join(esm, 'clip.wav'), 2);
  const model = path.join(esm, 'm.pt');
  const init = sh('npx', ['--no', 'calmkit', 'model', 'init', '--preset', 'tiny', '--out', model], { cwd: esm, env: runEnv({ CALMKIT_PYTHON: PYTHON }) });
  t.is(init.code, 0, init.stderr);
  const r = sh(process.execPath, ['extract.mjs', model, 'clip.wav'], { cwd: esm, env: runEnv({ CALMKIT_PYTHON: PYTHON }) });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout.trim()), { shape: [128], half: 0x3e00 });
});

test.serial(
  'no torch anywhere: calmkit still loads, calmkit/formats and calmkit/queue work, the first native call says how to get torch, and that works',
  (t) => {
    esmInstalled();
    if (!fs.existsSync(path.join(esm, 'clip.wav'))) writeWav(path.join(esm, 'clip.wav'), 2);
    const r = inEsm(FIRST_NATIVE_CALL, runEnv());
    t.is(r.code, 3, r.stderr);
    const [loaded, kind, ...message] = r.stdout.trim().split('\n');
    t.is(loaded, 'loaded function function function');
    t.is(kind, 'NativeError ERR_ADDON_LOAD');
    const text = message.join('\n');
    t.regex(text, /^could not load the native addon \(calmkit\.node\) .*: the prebuilt addon needs torch 2\.11\.0 \(LibTorch\), and none was found/);
    const venv = path.join(esm, '.venv');
    t.true(text.includes(`python3 -m venv ${venv} && ${venv}/bin/pip install torch==2.11.0`), text);
    t.regex(text, /about 4\.7 GB on disk/);
    t.notRegex(text, /npm rebuild|build:native|setup\.sh/, 'nothing to rebuild, and nothing of the repository named');

    // The fix's end state (a .venv with torch 2.11.0 in the project; here linked rather than downloaded): the same
    // install now works, with nothing rebuilt.
    fs.symlinkSync(VENV, venv);
    try {
      const again = inEsm(FIRST_NATIVE_CALL, runEnv());
      t.is(again.code, 0, again.stdout + again.stderr);
      t.regex(again.stdout, /native ok/);
    } finally {
      fs.rmSync(venv);
    }
  },
);

test.serial('another torch version, or a CALMKIT_PYTHON without torch: one error with the ways out', (t) => {
  esmInstalled();
  const old = path.join(tmp, 'torch-2.10');
  fs.mkdirSync(path.join(old, 'lib'), { recursive: true });
  fs.writeFileSync(path.join(old, 'lib', 'libtorch_cpu.so'), '');
  fs.writeFileSync(path.join(old, 'version.py'), "__version__ = '2.10.0+cu128'\n");
  const wrong = inEsm(FIRST_NATIVE_CALL, runEnv({ CALMKIT_TORCH_DIR: old }));
  t.is(wrong.code, 3, wrong.stderr);
  t.regex(wrong.stdout, /the prebuilt addon is built for torch 2\.11\.0, and the torch found is 2\.10\.0\+cu128/);
  t.regex(wrong.stdout, /- Install torch 2\.11\.0: /);
  t.regex(wrong.stdout, /- Or build calmkit from source against the torch you have: CALMKIT_BUILD_FROM_SOURCE=1 npm rebuild calmkit --foreground-scripts/);

  const missing = inEsm(FIRST_NATIVE_CALL, runEnv({ CALMKIT_PYTHON: path.join(tmp, 'no-such-python') }));
  t.is(missing.code, 3);
  t.regex(missing.stdout, /CALMKIT_PYTHON is '.*no-such-python', which does not exist/);
  t.regex(missing.stdout, /Point CALMKIT_PYTHON at a Python with torch 2\.11\.0 .* or unset it/);
});

test.serial('doctor without the addon: exit 0, every fact it can, then what is missing and the fix', (t) => {
  esmInstalled();
  const r = sh('npx', ['--no', 'calmkit', 'doctor'], { cwd: esm, env: runEnv() });
  t.is(r.code, 0, r.stderr);
  const out = r.stdout;
  t.regex(out, /^calmkit {7}0\.\d+\.\d+ \(.*node_modules\/calmkit, in the project .*esm\)$/m);
  t.regex(out, /^platform {6}Linux .*glibc \d+\.\d+/m);
  t.regex(out, /^node {10}v\d+/m);
  t.regex(out, /^addon {9}.*prebuilds\/linux-x64\/calmkit\.napi\.glibc\.node \(prebuilt\)$/m);
  t.regex(out, /built for torch 2\.11\.0 \(2\.11\.0\+\w+\), glibc >= 2\.\d+, CPU and CUDA/);
  t.regex(out, /^torch {9}not found$/m);
  t.regex(out, /^missing {7}the native addon does not load \(ERR_ADDON_LOAD\)/m);
  t.regex(out, /pip install torch==2\.11\.0/);
  const json = sh('npx', ['--no', 'calmkit', 'doctor', '--json'], { cwd: esm, env: runEnv() });
  t.is(json.code, 0, json.stderr);
  const doc = JSON.parse(json.stdout) as { install: { addon: { kind: string }; torch: { found: unknown } }; addonError: { code: string } };
  t.is(doc.install.addon.kind, 'prebuilt');
  t.is(doc.install.torch.found, null);
  t.is(doc.addonError.code, 'ERR_ADDON_LOAD');

  // With torch: the whole report, the loaded LibTorch's folder included.
  const full = sh('npx', ['--no', 'calmkit', 'doctor'], { cwd: esm, env: runEnv({ CALMKIT_PYTHON: PYTHON }) });
  t.is(full.code, 0, full.stderr);
  t.regex(full.stdout, /^torch {9}2\.11\.0\S* at .* \(from CALMKIT_PYTHON/m);
  t.regex(full.stdout, /^libtorch {6}built against 2\.11\.0, loaded from .*torch\/lib/m);
  t.notRegex(full.stdout, /^missing/m);
});

test.serial('the install step without torch: says what to do, and leaves calmkit installed (exit 0: npm rolls nothing back)', (t) => {
  esmInstalled();
  const script = path.join(esm, 'node_modules', 'calmkit', 'scripts', 'install.js');
  const r = sh(process.execPath, [script], { cwd: esm, env: runEnv() });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /calmkit: the prebuilt addon for linux-x64 does not load here yet: the prebuilt addon needs torch 2\.11\.0/);
  t.regex(r.stderr, /pip install torch==2\.11\.0/);
  t.regex(r.stderr, /calmkit is installed all the same: calmkit\/formats and calmkit\/queue work now/);
  const ok = sh(process.execPath, [script], { cwd: esm, env: runEnv({ CALMKIT_PYTHON: PYTHON }) });
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stderr, /calmkit: using the prebuilt addon for linux-x64 \(torch 2\.11\.0; found 2\.11\.0\S* from CALMKIT_PYTHON/);
});

test.serial(
  "building from source, asked for on a machine without the build's tools: each requirement, the command that provides it, and calmkit stays installed",
  (t) => {
    esmInstalled();
    const script = path.join(esm, 'node_modules', 'calmkit', 'scripts', 'install.js');
    // No build tools and no torch: an empty PATH.
    const bare = path.join(tmp, 'bare');
    fs.mkdirSync(bare, { recursive: true });
    const env = runEnv({ PATH: bare, CALMKIT_BUILD_FROM_SOURCE: '1', CXX: undefined });
    const r = sh(process.execPath, [script], { cwd: esm, env });
    t.is(r.code, 0, 'a dependency install never fails: npm would roll calmkit back');
    const out = r.stderr;
    t.regex(out, /calmkit: building from source was asked for, so the native addon is built from source here; it needs:/);
    t.regex(out, /calmkit: cannot build the native addon: 7 requirements are missing:/);
    for (const [what, fix] of [
      ['cmake >= 3.18', 'cmake'],
      ['a C\\+\\+17 compiler', 'g\\+\\+'],
      ['make \\(or ninja\\)', 'make'],
      ['pkg-config', 'pkg-config'],
      ['libsndfile \\(headers\\)', 'libsndfile1-dev'],
      ['libsoxr \\(headers\\)', 'libsoxr-dev'],
    ]) {
      t.regex(out, new RegExp(`  - ${what}: .*\\n      fix: (sudo )?apt-get install -y ${fix}\\n`), what);
    }
    const venv = path.join(esm, '.venv');
    t.regex(out, / {2}- LibTorch \(torch 2\.11\): no Python with torch found/);
    t.true(out.includes(`python3 -m venv ${venv} && ${venv}/bin/pip install torch==2.11.0`), out);
    t.regex(out, /all system packages at once: (sudo )?apt-get install -y cmake g\+\+ make pkg-config libsndfile1-dev libsoxr-dev/);
    t.regex(out, /then: CALMKIT_BUILD_FROM_SOURCE=1 npm rebuild calmkit --foreground-scripts/);
    t.regex(out, /calmkit is installed all the same/);
    t.notRegex(out, /building the native addon from source \(|setup\.sh|build:native/, 'nothing is built, and nothing of the repository is named');

    // --check: the same preflight, and its exit status says whether a build could run.
    const wrong = sh(process.execPath, [script, '--check'], { cwd: esm, env: { ...env, CALMKIT_TORCH_DIR: path.join(bare, 'nothing') } });
    t.is(wrong.code, 1);
    t.regex(wrong.stderr, /LibTorch \(torch 2\.11\): CALMKIT_TORCH_DIR is '.*nothing', which holds no LibTorch/);
    const here = sh(process.execPath, [script, '--check'], { cwd: esm, env: cleanEnv({ CALMKIT_PYTHON: PYTHON }) });
    t.is(here.code, 0, here.stderr);
    t.regex(here.stderr, /ok {6}LibTorch \(torch 2\.11\): LibTorch 2\.11\.\d+\S* from CALMKIT_PYTHON/);
    t.notRegex(here.stderr, /MISSING/);
  },
);
