// Report artifacts: Table I in three formats and the charts as SVG and PNG.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { trainProbeGrid, writeReport } from '../lib';
import { synthProblem } from './helpers/probe-data';

test('writeReport writes Table I (md/csv/json) with both macro F1s, and every chart as SVG and PNG', async (t) => {
  const p = synthProblem({
    n: 500,
    dim: 40,
    seed: 2,
    tasks: ['accordion', 'banjo', 'voice'].map((instrument) => ({ instrument, flip: 0.1, train: 150, val: 50, test: 80 })),
  });
  const set = await trainProbeGrid({ features: p.features, dim: p.dim, tasks: p.tasks, epochs: 3, grid: { hidden: [[], [8]], dropout: [0.25, 0.5], l2: [0] } });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-probe-report-'));
  const files = await writeReport(set, dir, { maxWeightColumns: 16 });
  const names = files.map((f) => path.basename(f)).sort();
  t.deepEqual(names, [
    'curves-val-accuracy.png',
    'curves-val-accuracy.svg',
    'curves-val-loss.png',
    'curves-val-loss.svg',
    'linear-weights.png',
    'linear-weights.svg',
    'table.csv',
    'table.json',
    'table.md',
    'test-probabilities.png',
    'test-probabilities.svg',
  ]);
  t.deepEqual(fs.readdirSync(dir).sort(), names, 'no temporary files left');

  const md = fs.readFileSync(path.join(dir, 'table.md'), 'utf8');
  t.regex(md, /\| banjo \| \[\d*(, \d+)*\] \|/);
  t.regex(md, /Macro \(present class\)/);
  t.regex(md, /Macro F1 \(present\/absent averaged\)/);
  const csv = fs.readFileSync(path.join(dir, 'table.csv'), 'utf8').trim().split('\n');
  t.is(csv.length, 1 + 3 + 2);
  t.true(csv[0].startsWith('instrument,hidden,l2,dropout,valLoss,valAccuracy,precision,recall,f1,accuracy,averagePrecision,rocAuc'));
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'table.json'), 'utf8'));
  t.is(json.rows.length, 3);
  t.is(json.macro.f1Present, set.table().macro.f1Present);

  for (const f of files.filter((x) => x.endsWith('.svg'))) {
    const svg = fs.readFileSync(f, 'utf8');
    t.true(svg.startsWith('<svg') && svg.includes('</svg>'), f);
  }
  const svg = fs.readFileSync(path.join(dir, 'test-probabilities.svg'), 'utf8');
  t.true(svg.includes('voice') && svg.includes('P(present)'));
  for (const f of files.filter((x) => x.endsWith('.png'))) {
    const png = fs.readFileSync(f);
    t.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], f);
    t.true(png.readUInt32BE(16) > 200, `${f} has a real width`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});
