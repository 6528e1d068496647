// Child of test/report-optional.test.ts: trains a tiny probe set, writes its report into argv[2] and prints the
// files written and the CLI's note about figures (JSON), with whatever packages the parent hid.
import path from 'node:path';
import { figureNote } from '../../lib/cli/output';
import { trainProbeGrid, writeReport } from '../../lib';
import { missingFigurePackages } from '../../lib/probes';
import { synthProblem } from './probe-data';

async function main(): Promise<void> {
  const p = synthProblem({ n: 120, dim: 8, seed: 4, tasks: [{ instrument: 'piano', flip: 0.1, train: 60, val: 20, test: 30 }] });
  const set = await trainProbeGrid({ features: p.features, dim: p.dim, tasks: p.tasks, epochs: 2, grid: { hidden: [[]], dropout: [0.5], l2: [0] } });
  const files = await writeReport(set, process.argv[2]!);
  console.log(JSON.stringify({ files: files.map((f) => path.basename(f)).sort(), missing: missingFigurePackages(), note: figureNote() ?? null }));
}

void main();
