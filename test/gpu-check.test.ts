// scripts/gpu-check.py in its CPU mode (tiny shapes): every step of the GPU check runs here, so the script that
// a GPU session runs in one go cannot rot. It reuses the addon's configured build folder (no second build).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PYTHON, ROOT, tempDir } from './helpers/paths';

test('gpu-check --device cpu: build, correctness, throughput, reference and grid all report', (t) => {
  const out = tempDir('calmkit-gpu-check-');
  try {
    const r = spawnSync(PYTHON, [path.join(ROOT, 'scripts', 'gpu-check.py'), '--device', 'cpu', '--out', out, '--build-dir', path.join(ROOT, 'build')], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, CALMKIT_THREADS: '1' },
    });
    const report = JSON.parse(fs.readFileSync(path.join(out, 'gpu-check.json'), 'utf8'));
    t.deepEqual(report.errors, {}, r.stdout + r.stderr);
    t.is(r.status, 0);
    t.regex(r.stdout, /calmkit GPU check on cpu/);
    t.true(fs.statSync(path.join(out, 'gpu-check.log')).size > 0);
    t.regex(report.doctor, /libtorch: 2\.11\.0/);
    t.true(report.gemm.fp32Tflops > 0 && report.gemm.bf16Tflops > 0);
    t.like(report.correctness, { tokensIdenticalToCpu: true, fp32Within1e5: true, halfPrecisionCosineAtLeast0999: true, batchInvariant: true });
    const runs = report.bench.map((b: { precision: string; tokens: number; batch: number }) => `${b.precision}/${b.tokens}/${b.batch}`).sort();
    t.deepEqual(runs, ['bf16/1024/1', 'bf16/1024/2', 'bf16/430/1', 'bf16/430/2', 'fp16/1024/1', 'fp16/1024/2', 'fp16/430/1', 'fp16/430/2', 'fp32/1024/1', 'fp32/1024/2', 'fp32/430/1', 'fp32/430/2']);
    for (const b of report.bench) {
      t.true(b.clipsPerSecond > 0 && b.peakMemoryBytes > 0, JSON.stringify(b));
      if (b.batch === 1) t.true(b.tokensIdentical && b.cosine > 0.999, JSON.stringify(b));
    }
    t.true(report.reference.secondsPerClip > 0 && report.reference.layers === 6);
    t.true(report.grid.probes === 108 && report.grid.seconds800 > 0);
    t.deepEqual(Object.keys(report.goals).sort(), ['bf16ClipsPerSecond', 'bf16Cosine', 'gridSeconds', 'speedupOverEager']);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
