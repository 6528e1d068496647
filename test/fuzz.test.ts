// The libFuzzer targets (native/fuzz/, built with clang, ASan and UBSan into build-fuzz/) run clean for a short
// run: the checkpoint archive reader and loader on mutations of micro calmkit checkpoints, the audio decoder
// front-end on mutations of short WAV, FLAC and Ogg files, and the feature store's parsers (TypeScript, driven in a
// Node child with V8's coverage as libFuzzer's counters) on mutations of a small store's files; the inputs they
// once crashed on (test/fixtures/fuzz/) stay fixed. Cost: about 30 s per target, plus the build of build-fuzz when it is missing
// or stale (.ci/run builds it before the suite; a first build takes some minutes on 2 cores). The long run is
// in docs/contracts.md, "Fuzzing".
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { FeatureStore, writeAudio } from '../lib';
import { PYTHON, ROOT, tempDir } from './helpers/paths';

const BUILD = path.join(ROOT, 'build-fuzz');
const SECONDS = Number(process.env.CALMKIT_FUZZ_SECONDS ?? '30');
const FIXTURES = path.join(__dirname, 'fixtures', 'fuzz');

let dir = '';

test.before(async () => {
  dir = tempDir('calmkit-fuzz-');
  // Configure once, then an incremental build (nothing to do when .ci/run built it).
  if (!fs.existsSync(path.join(BUILD, 'CMakeCache.txt'))) {
    execFileSync('cmake', ['-S', ROOT, '-B', BUILD, '-DCALMKIT_FUZZ=ON', '-DCMAKE_CXX_COMPILER=clang++'], { stdio: 'pipe' });
  }
  execFileSync('cmake', ['--build', BUILD], { stdio: 'pipe', maxBuffer: 64 << 20 });
  fs.mkdirSync(path.join(dir, 'archive'));
  execFileSync(PYTHON, [path.join(__dirname, 'helpers', 'fuzz_seeds.py'), path.join(dir, 'archive')], { stdio: 'pipe' });
  fs.mkdirSync(path.join(dir, 'audio'));
  const x = new Float32Array(2000).map((_, i) => Math.sin(i / 5) * 0.5);
  const seeds = [
    ['a.wav', 'wav', 1, 44100],
    ['b.flac', 'flac', 2, 22050],
    ['c.ogg', 'ogg', 1, 16000],
  ] as const;
  for (const [name, container, channels, sampleRate] of seeds) {
    const tmp = path.join(dir, `${name}.tmp`);
    const data = channels === 2 ? new Float32Array(x.length * 2).map((_, i) => x[i >> 1]!) : x;
    await writeAudio(tmp, { interleaved: data, channels, sampleRate, container });
    // fuzz_audio takes its two option bytes (formatting, target/crop/normalise) before the stream.
    fs.writeFileSync(path.join(dir, 'audio', name), Buffer.concat([Buffer.from([1, 3]), fs.readFileSync(tmp)]));
    fs.rmSync(tmp);
  }
  // The store's files, each behind the byte that picks its parser (fuzz-store-child.ts), as written and resealed.
  fs.mkdirSync(path.join(dir, 'store-seeds'));
  const store = FeatureStore.open(path.join(dir, 'store'), {
    create: { model: { id: 'm' }, layers: [36], pooling: 'segments', formatting: 'tile', dtype: 'float16' },
  });
  const w = store.writer({ id: 'w', shardSize: 3 });
  for (let i = 0; i < 5; i++) w.put(`k${i}`, [i, i + 1, i + 2, i + 3], [2, 2]);
  w.fail('bad', { input: '/a/bad.ogg', code: 'ERR_AUDIO_DECODE', message: 'no audio' });
  w.close();
  for (const [selector, file] of [
    [0, 'store.json'],
    [2, 'shards/w-000000.json'],
    [3, 'manifest.json'],
  ] as const) {
    const bytes = fs.readFileSync(path.join(dir, 'store', file));
    fs.writeFileSync(path.join(dir, 'store-seeds', `${selector}-as-written`), Buffer.concat([Buffer.from([selector]), bytes]));
    // Bit 2: the child seals what follows `{` anew, so mutations of the JSON get past the checksum.
    fs.writeFileSync(path.join(dir, 'store-seeds', `${selector}-resealed`), Buffer.concat([Buffer.from([selector | 4, 0x7b]), bytes.subarray(20)]));
  }
});

test.after.always(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const ENV = { ...process.env, ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=0', UBSAN_OPTIONS: 'print_stacktrace=1' };
const COMMON = ['-rss_limit_mb=3072', '-max_len=65536', '-timeout=25'];

for (const [target, seeds, regression] of [
  ['fuzz_archive', 'archive', 'archive-null-read'],
  ['fuzz_audio', 'audio', 'audio-huge-frame-claim'],
] as const) {
  test.serial(`${target}: a ${SECONDS} s run finds nothing, and its past findings stay fixed`, (t) => {
    t.timeout(20 * 60_000);
    const bin = path.join(BUILD, target);
    const fixed = spawnSync(bin, [...COMMON, path.join(FIXTURES, regression)], { env: ENV, encoding: 'utf8' });
    t.is(fixed.status, 0, fixed.stderr.slice(-3000));
    const corpus = path.join(dir, `${seeds}-corpus`);
    fs.mkdirSync(corpus);
    const artifacts = path.join(dir, `${seeds}-artifacts`) + path.sep;
    fs.mkdirSync(artifacts);
    const run = spawnSync(bin, [...COMMON, `-max_total_time=${SECONDS}`, `-artifact_prefix=${artifacts}`, corpus, path.join(dir, seeds)], {
      env: ENV,
      encoding: 'utf8',
      maxBuffer: 256 << 20,
    });
    const done = /Done (\d+) runs in (\d+) second/.exec(run.stderr);
    t.log(done ? `${done[1]} runs in ${done[2]} s` : run.stderr.slice(-2000));
    t.is(run.status, 0, run.stderr.slice(-4000));
    t.deepEqual(fs.readdirSync(artifacts), [], 'no crash, leak, timeout or out-of-memory input');
    t.true(done !== null && Number(done[1]) > 100, 'the fuzzer ran');
  });
}

test.serial(`fuzz_store: a ${SECONDS} s run of the feature store's parsers finds nothing`, (t) => {
  t.timeout(20 * 60_000);
  const corpus = path.join(dir, 'store-corpus');
  fs.mkdirSync(corpus);
  const artifacts = path.join(dir, 'store-artifacts') + path.sep;
  fs.mkdirSync(artifacts);
  const env = { ...ENV, CALMKIT_FUZZ_NODE: process.execPath, CALMKIT_FUZZ_STORE_CHILD: path.join(__dirname, 'helpers', 'fuzz-store-child.ts') };
  const run = spawnSync(
    path.join(BUILD, 'fuzz_store'),
    ['-max_len=65536', '-timeout=25', `-max_total_time=${SECONDS}`, `-artifact_prefix=${artifacts}`, corpus, path.join(dir, 'store-seeds')],
    {
      env,
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 256 << 20,
    },
  );
  const done = /Done (\d+) runs in (\d+) second/.exec(run.stderr);
  const features = /DONE +cov: \d+ ft: (\d+)/.exec(run.stderr);
  t.log(done ? `${done[1]} runs in ${done[2]} s, ${features?.[1]} coverage features` : run.stderr.slice(-2000));
  t.is(run.status, 0, run.stderr.slice(-4000));
  t.deepEqual(fs.readdirSync(artifacts), [], 'no contract broken, no crash, no hang');
  t.true(done !== null && Number(done[1]) > 100, 'the fuzzer ran');
  // The TypeScript's coverage reaches libFuzzer: far more features than the C++ harness's own handful of edges.
  t.true(Number(features?.[1]) > 50, `${features?.[1]} features`);
});
