// The libFuzzer targets (native/fuzz/, built with clang, ASan and UBSan into build-fuzz/) run clean for a short
// run: the checkpoint archive reader and loader on mutations of micro calmkit checkpoints, and the audio decoder
// front-end on mutations of short WAV, FLAC and Ogg files; the inputs they once crashed on
// (test/fixtures/fuzz/) stay fixed. Cost: about 30 s per target, plus the build of build-fuzz when it is missing
// or stale (.ci/run builds it before the suite; a first build takes some minutes on 2 cores). The long run is
// in docs/contracts.md, "Fuzzing".
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { writeAudio } from '../lib';
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
