// calmkit as a dependency, the way a consumer gets it: the tarball `npm pack` makes (exactly what a consumer
// needs, no source maps without sources), a fresh project that installs it, typechecks against it under the
// node10, node16, nodenext and bundler resolutions, runs the CLI and the library on a tiny random model, and the
// install step's preflight and the addon-missing message as that project sees them.
//
// The consumer's install does not compile the addon again (2-3 minutes on 2 cores): CALMKIT_ADDON_PATH points it
// at this checkout's build, which the install step checks (it must load) and uses. The build path of the same
// script runs in every `npm ci` of this repository.
import test from 'ava';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PYTHON, ROOT } from './helpers/paths';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-consumer-'));
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ADDON = path.join(ROOT, 'build', 'Release', 'calmkit.node');
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
  return () => (value ??= { v: fn() }).v;
}

// `npm pack` as a release would run it: `prepare` compiles dist/ first, so the tarball holds this code.
const packed = once(() => {
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

  const allowed = [/^package\.json$/, /^README\.md$/, /^CMakeLists\.txt$/, /^cmake\/[\w-]+\.cmake$/, /^native\/(core|napi)\/\w+\.(cpp|h)$/, /^dist\/(lib|bindings)\/.+\.(js|d\.ts)$/, /^scripts\/(install\.js|export-jukebox\.py)$/, /^benchmarks\/reference\/jukebox_eager\.py$/];
  const stray = files.filter((f) => !allowed.some((re) => re.test(f)));
  t.deepEqual(stray, [], 'nothing but the library, its declarations, the native sources and the install step');
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

const runEnv = () => cleanEnv({ CALMKIT_ADDON_PATH: ADDON, CALMKIT_THREADS: '1' });

const installed = once(() => {
  fs.mkdirSync(path.join(consumer, 'src'), { recursive: true });
  // allowScripts: npm 11 asks before running a dependency's install script; a project approves calmkit's.
  // (npm keys the approval of a tarball by its file: spec, and of a registry package by its name.)
  const allowScripts = { calmkit: true, [`file:${packed().tarball}`]: true };
  fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'calmkit-consumer', version: '1.0.0', private: true, allowScripts }, null, 2));
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

test.serial('a fresh project installs the tarball; the install step uses the prebuilt addon and says so', (t) => {
  const { output, seconds } = installed();
  t.log(`npm install of the tarball (+ typescript, @types/node): ${seconds.toFixed(1)} s`);
  t.regex(output, /calmkit: using the native addon at .*calmkit\.node \(CALMKIT_ADDON_PATH\); nothing to build/);
  const here = path.join(consumer, 'node_modules', 'calmkit');
  t.true(fs.existsSync(path.join(here, 'dist', 'lib', 'index.js')));
  t.false(fs.existsSync(path.join(here, 'build')), 'nothing was compiled');
});

for (const name of Object.keys(RESOLUTIONS)) {
  test.serial(`the consumer typechecks under moduleResolution ${name}`, (t) => {
    installed();
    const r = sh(process.execPath, [path.join(consumer, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', `tsconfig.${name}.json`], { cwd: consumer, env: runEnv() });
    t.is(r.code, 0, r.stdout + r.stderr);
  });
}

test.serial(`the consumer typechecks with TypeScript ${OLDEST_TS} under moduleResolution node16`, (t) => {
  installed();
  const r = sh(process.execPath, [path.join(consumer, 'node_modules', 'typescript-oldest', 'bin', 'tsc'), '-p', 'tsconfig.node16.json', '--noEmit'], { cwd: consumer, env: runEnv() });
  t.is(r.code, 0, r.stdout + r.stderr);
});

test.serial('the consumer runs an extraction: npx calmkit model init and extract, and the compiled library code (CJS and ESM)', (t) => {
  installed();
  const env = runEnv();
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
  const bench = sh('npx', ['--no', 'calmkit', 'bench', 'extract', '--preset', 'tiny', '--layers', '2', '--rounds', '1', '--warmup', '0', '--reference', '--json', 'b.json'], { cwd: consumer, env: benchEnv });
  t.is(bench.code, 0, bench.stderr);
  t.regex(bench.stdout, /^reference: eager PyTorch /m);
  const compare = sh('npx', ['--no', 'calmkit', 'bench', 'compare', 'b.json', 'b.json'], { cwd: consumer, env });
  t.is(compare.code, 0, compare.stderr);
  t.regex(compare.stdout, /fp32, 1024 tokens, batch 1\s+clip s\s+\S+\s+\S+\s+1\.00x/);
});

test.serial('without the addon, the library and the CLI tell the consumer what to do in their project', (t) => {
  installed();
  const env = cleanEnv({ CALMKIT_ADDON_PATH: undefined });
  const lib = sh(process.execPath, ['-e', "try { require('calmkit').doctor() } catch (e) { console.log(e.constructor.name, e.code); console.log(e.message); process.exit(3) }"], { cwd: consumer, env });
  t.is(lib.code, 3, lib.stderr);
  t.regex(lib.stdout, /^NativeError ERR_ADDON_LOAD\ncould not load the native addon \(calmkit\.node\)/);
  t.regex(lib.stdout, /npm rebuild calmkit/);
  t.regex(lib.stdout, /npm install-scripts approve calmkit/);
  t.notRegex(lib.stdout, /build:native|scripts\/setup\.sh/);

  const cli = sh('npx', ['--no', 'calmkit', 'doctor'], { cwd: consumer, env });
  t.not(cli.code, 0);
  const first = cli.stderr.split('\n')[0]!;
  t.regex(first, /could not load the native addon/);
  t.is(first.match(/calmkit:/g)?.length ?? 0, 1, `one prefix: ${first}`);
  t.notRegex(cli.stderr, /build:native|scripts\/setup\.sh/);
});

test.serial("the install step's preflight, in the consumer's project, names each missing requirement and the command that provides it", (t) => {
  installed();
  const script = path.join(consumer, 'node_modules', 'calmkit', 'scripts', 'install.js');
  // A machine with none of the build's tools and no torch: an empty PATH and an empty cache folder.
  const bare = path.join(tmp, 'bare');
  fs.mkdirSync(path.join(bare, 'bin'), { recursive: true });
  const env = cleanEnv({ PATH: path.join(bare, 'bin'), XDG_CACHE_HOME: path.join(bare, 'cache'), CALMKIT_PYTHON: undefined, CALMKIT_TORCH_DIR: undefined, Torch_DIR: undefined, CALMKIT_ADDON_PATH: undefined, CXX: undefined });
  const r = sh(process.execPath, [script], { cwd: consumer, env });
  t.is(r.code, 1);
  const out = r.stderr;
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
  const venv = path.join(bare, 'cache', 'calmkit', 'torch-venv');
  t.regex(out, /  - LibTorch \(torch 2\.11\): no Python with torch found/);
  t.true(out.includes(`python3 -m venv ${venv} && ${venv}/bin/pip install torch==2.11.0`), out);
  t.regex(out, /all system packages at once: (sudo )?apt-get install -y cmake g\+\+ make pkg-config libsndfile1-dev libsoxr-dev/);
  t.regex(out, /then: npm rebuild calmkit/);
  t.notRegex(out, /building the native addon|setup\.sh|build:native/, 'nothing is built, and nothing of the repository is named');

  // A CALMKIT_TORCH_DIR that holds no LibTorch is named as such.
  const wrong = sh(process.execPath, [script, '--check'], { cwd: consumer, env: { ...env, CALMKIT_TORCH_DIR: path.join(bare, 'nothing') } });
  t.is(wrong.code, 1);
  t.regex(wrong.stderr, /LibTorch \(torch 2\.11\): CALMKIT_TORCH_DIR is '.*nothing', which holds no LibTorch/);

  // On this machine (the project's set-up) everything is there: the check passes and names the LibTorch.
  const here = sh(process.execPath, [script, '--check'], { cwd: consumer, env: cleanEnv({ CALMKIT_PYTHON: path.join(ROOT, '.venv', 'bin', 'python') }) });
  t.is(here.code, 0, here.stderr);
  t.regex(here.stderr, /ok      LibTorch \(torch 2\.11\): LibTorch 2\.11\.\d+ from CALMKIT_PYTHON/);
  t.notRegex(here.stderr, /MISSING/);
});
