// Runs lib/cli/model.ts alone (lib/cli/main.ts, which registers every topic, belongs to the integrator).
import { Command } from 'commander';
import { CalmkitError } from '../../lib/errors';
import { register } from '../../lib/cli/model';

const program = new Command('calmkit').exitOverride();
register(program);
program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CalmkitError) {
    process.stderr.write(`calmkit: ${err.code}: ${err.message}\n`);
    process.exit(1);
  }
  const e = err as { exitCode?: number; message?: string };
  if (typeof e.exitCode === 'number') process.exit(e.exitCode);
  process.stderr.write(`calmkit: ${e.message ?? String(err)}\n`);
  process.exit(1);
});
