// `calmkit report`: Table I (Markdown, CSV, JSON) and the figures (SVG, PNG) of a probe set.
import path from 'node:path';
import type { Command } from 'commander';
import { ProbeSet, writeReport } from '../probes';
import { addAllowMissingFlag } from './options';
import { figureNote, printTable } from './output';
import { checkOutputs } from './outputs';

export function register(program: Command): void {
  addAllowMissingFlag(
    program
      .command('report')
      .description('write Table I (Markdown, CSV, JSON) and the figures (SVG, PNG) of a probe set')
      .requiredOption('--probes <file>', 'a probe set')
      .requiredOption('--out <dir>', 'where to write'),
  ).action(async (o: { probes: string; out: string; allowMissing?: boolean }) => {
    await checkOutputs([{ flag: '--out', path: o.out, kind: 'report' }]);
    const probes = await ProbeSet.load(o.probes);
    const files = await writeReport(probes, o.out, { allowMissing: o.allowMissing === true });
    printTable(probes);
    console.log(`report: ${o.out} (${files.map((f) => path.basename(f)).join(', ')})`);
    const note = figureNote();
    if (note) console.error(note);
  });
}
