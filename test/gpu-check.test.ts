// scripts/gpu-check.py in its CPU mode (tiny shapes): every step of the GPU check runs here, so the script that
// a GPU session runs in one go cannot rot. It reuses the addon's configured build folder (no second build).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { checkBenchReport, type ExtractReport, type ProbeReport } from '../lib/bench';
import { PYTHON, ROOT, tempDir } from './helpers/paths';

test('gpu-check --device cpu: build, correctness, the benchmark engine with the reference, and the grid all report', (t) => {
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
    t.like(report.correctness, { tokensIdenticalToCpu: true, fp32Within1e5: true, halfPrecisionCosineAtLeast0999: true, batchInvariant: true });
    // The throughput figures are the benchmark engine's report (schema calmkit-bench), the one `calmkit bench` writes.
    const extract = checkBenchReport(JSON.parse(fs.readFileSync(path.join(out, 'bench-extract.json'), 'utf8')), 'bench-extract.json') as ExtractReport;
    t.deepEqual(report.extract, JSON.parse(JSON.stringify(extract)));
    t.is(extract.host, 'calmkit-core');
    const runs = extract.rows.map((b) => `${b.precision}/${b.tokens}/${b.batch}`).sort();
    t.deepEqual(runs, [
      'bf16/1024/1',
      'bf16/1024/2',
      'bf16/430/1',
      'bf16/430/2',
      'fp16/1024/1',
      'fp16/1024/2',
      'fp16/430/1',
      'fp16/430/2',
      'fp32/1024/1',
      'fp32/1024/2',
      'fp32/430/1',
      'fp32/430/2',
    ]);
    for (const b of extract.rows) {
      t.true(b.clipsPerSecond > 0 && b.peakRssBytes > 0 && b.peakFraction > 0, b.label);
      if (b.precision !== 'fp32') t.true(b.vsFp32!.tokensIdentical && b.vsFp32!.cosine > 0.999, b.label);
      // The eager reference ran in the same rounds, at every precision.
      t.true(b.reference !== null && b.reference.speedup > 0, b.label);
    }
    t.is(extract.reference.status, 'ran');
    t.true(extract.reference.crossCheck!.agrees);
    t.deepEqual(extract.peaks.map((p) => p.dtype).sort(), ['bfloat16', 'float16', 'float32']);
    const probes = checkBenchReport(JSON.parse(fs.readFileSync(path.join(out, 'bench-probes.json'), 'utf8')), 'bench-probes.json') as ProbeReport;
    t.true(probes.rows[0]!.probes === 108 && probes.rows[0]!.targetSeconds > 0);
    t.deepEqual(Object.keys(report.goals).sort(), ['bf16ClipsPerSecond', 'bf16Cosine', 'gridSeconds', 'speedupOverEager']);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
