// `npm run bench -- install [--source] [--tarball FILE] [--repeats N]`: what installing calmkit costs a consumer.
//
// Packs this checkout (after `npm run prebuild`, so the tarball holds the prebuilt addon) unless --tarball names one,
// then installs it into fresh projects, timing `npm install` end to end:
//   prebuilt  PATH with node, npm, npx and sh only (no compiler, no cmake), torch 2.11.0 in the project's .venv (this
//             checkout's, linked); the install step loads the prebuilt addon and compiles nothing
//   source    (--source) the same tarball with CALMKIT_BUILD_FROM_SOURCE=1 and the full PATH: the fallback build
// and measures node_modules on disk, then again after adding the optional figure renderer (vega, vega-lite,
// @resvg/resvg-js: what every install carried before they became optional). The npm cache is whatever this machine
// has (--prefer-offline): the figures time installing, not downloading. Prints a table and one BENCH_JSON line,
// with the load average before and after (a loaded machine shows there).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const value = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const repeats = Number(value('--repeats') ?? 1);

function sh(cmd: string, argv: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): { code: number | null; out: string; seconds: number } {
  const started = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 256 * 2 ** 20, timeout: 3_600_000, ...options });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`, seconds };
}

function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  for (const k of ['CALMKIT_ADDON_PATH', 'CALMKIT_TORCH_DIR', 'CALMKIT_PYTHON', 'CALMKIT_BUILD_FROM_SOURCE', 'CALMKIT_SKIP_BUILD']) delete env[k];
  env.CALMKIT_INSTALL_NO_TTY = '1';
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Bytes under a folder (files' sizes, links not followed): what `du --apparent-size -sb` says. */
function treeBytes(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) total += fs.statSync(p).size;
    }
  };
  walk(dir);
  return total;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-bench-install-'));
const MiB = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;

function tarball(): string {
  const given = value('--tarball');
  if (given) return path.resolve(given);
  const pre = sh(process.execPath, [path.join(ROOT, 'scripts', 'prebuild.js')], { cwd: ROOT, env: cleanEnv({}) });
  if (pre.code !== 0) throw new Error(`npm run prebuild failed:\n${pre.out}`);
  const r = sh('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: ROOT, env: cleanEnv({}) });
  if (r.code !== 0) throw new Error(`npm pack failed:\n${r.out}`);
  const entry = (JSON.parse(r.out.slice(r.out.indexOf('['), r.out.lastIndexOf(']') + 1)) as { filename: string }[])[0]!;
  return path.join(tmp, entry.filename);
}

/** node, npm, npx and sh: a consumer's PATH without compiler, cmake, make or python3. */
function bareTools(): string {
  const dir = path.join(tmp, 'tools');
  fs.mkdirSync(dir, { recursive: true });
  const which = (name: string) => {
    for (const d of (process.env.PATH ?? '').split(path.delimiter)) if (d && fs.existsSync(path.join(d, name))) return fs.realpathSync(path.join(d, name));
    throw new Error(`${name} is not on PATH`);
  };
  if (!fs.existsSync(path.join(dir, 'node'))) {
    fs.symlinkSync(process.execPath, path.join(dir, 'node'));
    for (const name of ['npm', 'npx', 'sh']) fs.symlinkSync(which(name), path.join(dir, name));
  }
  return dir;
}

interface Run {
  mode: 'prebuilt' | 'source';
  seconds: number;
  nodeModulesMiB: number;
  withRendererMiB?: number;
  compiled: boolean;
  loads: boolean;
}

function install(mode: Run['mode'], file: string, n: number): Run {
  const project = path.join(tmp, `${mode}-${n}`);
  fs.mkdirSync(project);
  fs.writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ name: `bench-${mode}`, version: '1.0.0', private: true, allowScripts: { calmkit: true, [`file:${file}`]: true } }),
  );
  fs.symlinkSync(fs.realpathSync(path.join(ROOT, '.venv')), path.join(project, '.venv'));
  const env = mode === 'prebuilt' ? cleanEnv({ PATH: bareTools() }) : cleanEnv({ CALMKIT_BUILD_FROM_SOURCE: '1' });
  const r = sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', file], { cwd: project, env });
  if (r.code !== 0) throw new Error(`${mode}: npm install failed:\n${r.out}`);
  const compiled = fs.existsSync(path.join(project, 'node_modules', 'calmkit', 'build', 'Release', 'calmkit.node'));
  const check = sh(process.execPath, ['-e', "console.log(require('calmkit').doctor().addonPath)"], {
    cwd: project,
    env: cleanEnv({ PATH: bareTools(), CALMKIT_THREADS: '1' }),
  });
  const run: Run = {
    mode,
    seconds: Math.round(r.seconds * 10) / 10,
    nodeModulesMiB: MiB(treeBytes(path.join(project, 'node_modules'))),
    compiled,
    loads: check.code === 0,
  };
  if (mode === 'prebuilt') {
    const add = sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', 'vega@^5.33.1', 'vega-lite@^5.23.0', '@resvg/resvg-js@^2.6.2'], {
      cwd: project,
      env,
    });
    if (add.code === 0) run.withRendererMiB = MiB(treeBytes(path.join(project, 'node_modules')));
  }
  return run;
}

function main(): void {
  const load = () => os.loadavg().map((x) => Math.round(x * 100) / 100);
  const loadBefore = load();
  const file = tarball();
  const tarballMiB = MiB(fs.statSync(file).size);
  const runs: Run[] = [];
  for (let i = 0; i < repeats; i++) runs.push(install('prebuilt', file, i));
  if (flag('--source')) runs.push(install('source', file, 0));
  const loadAfter = load();
  console.log(
    `calmkit install (${path.basename(file)}, ${tarballMiB} MiB packed), ${os.cpus()[0]?.model ?? 'cpu'} x ${os.availableParallelism?.() ?? os.cpus().length}, load ${loadBefore.join(' ')} -> ${loadAfter.join(' ')}`,
  );
  console.log('mode      seconds  node_modules MiB  + renderer MiB  compiled  loads');
  for (const r of runs) {
    console.log(
      `${r.mode.padEnd(9)} ${String(r.seconds).padStart(7)}  ${String(r.nodeModulesMiB).padStart(16)}  ${String(r.withRendererMiB ?? '-').padStart(14)}  ${String(r.compiled).padEnd(8)}  ${r.loads}`,
    );
  }
  console.log(
    `BENCH_JSON ${JSON.stringify({
      bench: 'install',
      tarball: path.basename(file),
      tarballMiB,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.availableParallelism?.() ?? os.cpus().length,
      loadBefore,
      loadAfter,
      npm: sh('npm', ['--version']).out.trim(),
      node: process.version,
      runs,
    })}`,
  );
  if (!flag('--keep')) fs.rmSync(tmp, { recursive: true, force: true });
  else console.log(`kept ${tmp}`);
}

main();
