// The figure renderer is optional (vega, vega-lite and @resvg/resvg-js are optional peer dependencies): without it
// writeReport writes the tables and nothing else, without resvg the figures as SVG only, and the CLI's note names
// the npm command that adds what is missing. Run in child processes that hide the packages as an install without
// them would (helpers/hide-modules.cjs).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, tempDir } from './helpers/paths';

function report(hide: string[]): { files: string[]; missing: string[]; note: string | null; dir: string } {
  const dir = tempDir('calmkit-report-optional-');
  const r = spawnSync(
    process.execPath,
    ['--require', path.join(ROOT, 'test', 'helpers', 'hide-modules.cjs'), '--import=tsx', path.join(ROOT, 'test', 'helpers', 'report-child.ts'), dir],
    { encoding: 'utf8', env: { ...process.env, CALMKIT_TEST_HIDE_MODULES: hide.join(',') }, timeout: 120_000 },
  );
  if (r.status !== 0) throw new Error(`report child failed (${r.status}): ${r.stderr}`);
  return { ...(JSON.parse(r.stdout.trim().split('\n').pop()!) as { files: string[]; missing: string[]; note: string | null }), dir };
}

test('without vega and vega-lite: the tables only, and a note with the npm command', (t) => {
  const r = report(['vega', 'vega-lite', '@resvg/resvg-js']);
  try {
    t.deepEqual(r.files, ['table.csv', 'table.json', 'table.md']);
    t.deepEqual(fs.readdirSync(r.dir).sort(), r.files, 'nothing else, no temporary files');
    t.deepEqual(r.missing, ['vega', 'vega-lite', '@resvg/resvg-js']);
    t.is(r.note, 'report: figures not rendered: the renderer is optional; add it with: npm install vega vega-lite @resvg/resvg-js');
  } finally {
    fs.rmSync(r.dir, { recursive: true, force: true });
  }
});

test('without @resvg/resvg-js: the figures as SVG, no PNG', (t) => {
  const r = report(['@resvg/resvg-js']);
  try {
    t.true(r.files.includes('curves-val-loss.svg') && r.files.includes('test-probabilities.svg'), r.files.join(', '));
    t.false(r.files.some((f) => f.endsWith('.png')));
    t.is(r.note, 'report: figures as SVG only (no PNG): the renderer is optional; add it with: npm install @resvg/resvg-js');
  } finally {
    fs.rmSync(r.dir, { recursive: true, force: true });
  }
});

test('with the renderer installed (this checkout has it as devDependencies): every figure, no note', (t) => {
  const r = report([]);
  try {
    t.deepEqual(r.missing, []);
    t.is(r.note, null);
    t.true(r.files.includes('curves-val-loss.png') && r.files.includes('curves-val-loss.svg'));
  } finally {
    fs.rmSync(r.dir, { recursive: true, force: true });
  }
});
