// Extraction throughput, calmkit against the eager PyTorch reference: a thin driver over `calmkit bench extract`
// (lib/bench -> the native engine, native/core/bench_extract.cpp), kept so `npm run bench -- extract` goes on
// working. It takes the CLI's flags (see `calmkit bench extract --help`) plus the old ones: --config NAME is
// --preset NAME, and the reference runs unless --no-reference. Prints the table and one BENCH_JSON line (the
// report, schema calmkit-bench).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildProgram } from '../lib/cli/main';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const out: string[] = [];
  let reference = true;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--config') out.push('--preset', args[++i]!);
    else if (args[i] === '--no-reference') reference = false;
    else out.push(args[i]!);
  }
  if (reference && !out.includes('--reference')) out.push('--reference');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-bench-extract-'));
  try {
    const json = path.join(dir, 'report.json');
    await buildProgram().parseAsync(['node', 'calmkit', 'bench', 'extract', ...out, '--json', json]);
    if (fs.existsSync(json)) console.log(`BENCH_JSON ${JSON.stringify({ benchmark: 'extract', ...JSON.parse(fs.readFileSync(json, 'utf8')) })}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
