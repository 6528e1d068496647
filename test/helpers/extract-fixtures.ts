// Fixtures for the extraction and queue tests: small OpenMIC-layout datasets of synthesised clips (plus bad
// files), a tiny checkpoint, the CLI as a child process, store snapshots, and a private redis-server.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { writeAudio } from '../../lib/audio';
import { OPENMIC_INSTRUMENTS } from '../../lib/openmic';
import { Jukebox } from '../../lib/model/jukebox';
import { FeatureStore } from '../../lib/store/feature-store';
import { ROOT } from './paths';

export const CLI = path.join(ROOT, 'lib', 'cli', 'main.ts');

/** One model thread per process: tests run several CLI processes on a 2-core machine. */
// A progress line per clip: tests that interrupt a run wait for the first finished clip, however fast it goes.
export const CHILD_ENV = { ...process.env, CALMKIT_THREADS: '1', CALMKIT_PLAIN_PROGRESS: '1', CALMKIT_PROGRESS_INTERVAL_MS: '0' };

export async function tinyModel(dir: string): Promise<string> {
  const file = path.join(dir, 'tiny.pt');
  await Jukebox.writeRandomCheckpoint({ preset: 'tiny', seed: 7, out: file });
  return file;
}

export type BadKind = 'empty' | 'truncated' | 'text';

/**
 * An OpenMIC release layout (class map, split files, labels, audio/<xxx>/<key>.ogg) with `good` clips of
 * `seconds` each (different tones per clip) and the given bad files. Returns the keys.
 */
export async function makeDataset(root: string, good: number, bad: BadKind[] = [], seconds = 1): Promise<{ good: string[]; bad: Record<string, BadKind> }> {
  fs.mkdirSync(path.join(root, 'partitions'), { recursive: true });
  fs.writeFileSync(path.join(root, 'class-map.json'), JSON.stringify(Object.fromEntries(OPENMIC_INSTRUMENTS.map((n, i) => [n, i]))));
  const goodKeys: string[] = [];
  const badKeys: Record<string, BadKind> = {};
  const audioPath = (key: string) => path.join(root, 'audio', key.slice(0, 3), `${key}.ogg`);
  let firstGood: Buffer | undefined;
  for (let c = 0; c < good; c++) {
    const key = `${String(200100 + c * 7)}_${3840 * (c % 5)}`;
    const n = Math.round(44100 * seconds);
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = 0.3 * Math.sin((2 * Math.PI * (180 + 37 * c) * i) / 44100) + 0.1 * Math.sin((2 * Math.PI * (1100 + 91 * c) * i) / 44100);
    fs.mkdirSync(path.dirname(audioPath(key)), { recursive: true });
    await writeAudio(audioPath(key), { interleaved: x, channels: 1, sampleRate: 44100 });
    firstGood ??= fs.readFileSync(audioPath(key));
    goodKeys.push(key);
  }
  bad.forEach((kind, b) => {
    const key = `${String(300100 + b * 3)}_0`;
    fs.mkdirSync(path.dirname(audioPath(key)), { recursive: true });
    if (kind === 'empty') fs.writeFileSync(audioPath(key), '');
    else if (kind === 'truncated') fs.writeFileSync(audioPath(key), firstGood!.subarray(0, Math.floor(firstGood!.length / 2)));
    else fs.writeFileSync(audioPath(key), 'this is not audio\n');
    badKeys[key] = kind;
  });
  const all = [...goodKeys, ...Object.keys(badKeys)].sort();
  const test = all.filter((_, i) => i % 4 === 3);
  const train = all.filter((_, i) => i % 4 !== 3);
  fs.writeFileSync(path.join(root, 'partitions', 'split01_train.csv'), `${train.join('\n')}\n`);
  fs.writeFileSync(path.join(root, 'partitions', 'split01_test.csv'), `${test.join('\n')}\n`);
  fs.writeFileSync(
    path.join(root, 'openmic-2018-aggregated-labels.csv'),
    `sample_key,instrument,relevance,num_responses\n${all.map((k, i) => `${k},${OPENMIC_INSTRUMENTS[i % 20]},0.9,3`).join('\n')}\n`,
  );
  return { good: goodKeys.sort(), bad: badKeys };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A CLI process whose output is collected; `done` settles when it exits. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = CHILD_ENV): { child: ChildProcess; done: Promise<CliResult>; output: () => string } {
  const child = spawn(process.execPath, ['--import=tsx', CLI, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done, output: () => stdout + stderr };
}

export function runCli(args: string[], env?: NodeJS.ProcessEnv): Promise<CliResult> {
  return spawnCli(args, env).done;
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60_000, everyMs = 100): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Keys and the exact bytes of every entry of one layer store. */
export function snapshot(dir: string): { keys: string[]; bytes: Map<string, string>; store: FeatureStore } {
  const store = FeatureStore.open(dir);
  const keys = store.keys();
  const bytes = new Map<string, string>();
  for (const k of keys) {
    const { data, shape } = store.get(k);
    bytes.set(k, `${shape.join('x')}:${Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64')}`);
  }
  return { keys, bytes, store };
}

/** Published shards (.npy with a sidecar) of a store directory, as a writer would have left them. */
export function publishedShards(dir: string): number {
  try {
    const names = fs.readdirSync(path.join(dir, 'shards'));
    return names.filter((n) => n.endsWith('.npy') && names.includes(n.replace(/\.npy$/, '.json'))).length;
  } catch {
    return 0;
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A private redis-server on 127.0.0.1 with an fsync-always AOF in `dir` (so a restart keeps every job). */
export class RedisServer {
  readonly port: number;
  readonly dir: string;
  private child: ChildProcess | undefined;
  log = '';

  constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
        '--protected-mode',
        'yes',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.child = child;
    let ready = false;
    child.stdout!.on('data', (d: Buffer) => {
      this.log += d.toString();
      if (/Ready to accept connections/.test(this.log)) ready = true;
    });
    child.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
    await waitFor(`redis-server on port ${this.port}`, () => ready || child.exitCode !== null, 20_000, 50);
    if (!ready) throw new Error(`redis-server did not start: ${this.log}`);
  }

  /** SIGTERM (Redis flushes its AOF and exits) and wait for the exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}
