// Where the benchmark finds the eager PyTorch reference: the script shipped with the package
// (benchmarks/reference/jukebox_eager.py) and a Python that imports torch and numpy: CALMKIT_PYTHON, else the
// project's .venv beside the package, else python3. Its absence is a sentence for the report, not an error.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../runtime';

export interface ReferenceFound {
  /** The Python to run the reference with; undefined when none was found. */
  python?: string;
  /** The script's path. */
  script: string;
  /** torch's version in that Python. */
  torch?: string;
  /** Why no reference can run, said in the report. */
  absent?: string;
}

/** The reference script shipped in the package (package.json "files"). */
export function referenceScript(): string {
  return path.join(packageRoot(), 'benchmarks', 'reference', 'jukebox_eager.py');
}

function torchVersion(python: string): { version?: string; error?: string } {
  const r = spawnSync(python, ['-c', 'import numpy, torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) return { error: (r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : r.error.message };
  if (r.status !== 0) return { error: (r.stderr || '').trim().split('\n').pop() || `exit ${r.status}` };
  return { version: r.stdout.trim() };
}

export function findReference(env: NodeJS.ProcessEnv = process.env): ReferenceFound {
  const script = referenceScript();
  if (!fs.existsSync(script)) return { script, absent: `the reference script is not at ${script}` };
  const given = env.CALMKIT_PYTHON;
  const candidates = given ? [given] : [path.join(packageRoot(), '.venv', 'bin', 'python'), 'python3'];
  const tried: string[] = [];
  for (const python of candidates) {
    if (python.includes(path.sep) && !fs.existsSync(python)) {
      tried.push(`${python}: not found`);
      continue;
    }
    const t = torchVersion(python);
    if (t.version) return { python, script, torch: t.version };
    tried.push(`${python}: ${t.error}`);
  }
  return { script, absent: `no Python with torch and numpy (${tried.join('; ')}); set CALMKIT_PYTHON to one` };
}
