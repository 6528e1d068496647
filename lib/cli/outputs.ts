// Every output path of a command, checked before any work starts: calmkit writes only where nothing is, into an
// empty folder, or over one of its own artefacts of the same kind (which it resumes or replaces); anything else is
// ArgumentError ERR_OUTPUT_EXISTS naming the flag and the path, and the CLI exits 2 (main.ts). A location that cannot
// be written (a read-only folder, a file where a folder must be) fails here too, not after hours of training.
//
// One helper for every command (train, report, extract, worker, study, model init, demo-data, and whatever comes):
// each names its outputs and their kinds; the kinds are recognised by their formats.
import fs from 'node:fs';
import path from 'node:path';
import { ArgumentError } from '../errors';
import { Jukebox } from '../model';
import { isProbeFileHead, PROBE_FILE_MAGIC_BYTES } from '../probes';
import { DEMO_DESCRIPTION } from '../demo';
import { STUDY_ENTRIES } from '../study';

/** What a command writes at a path. */
export type OutputKind =
  /** A probe-set file (`train --out`): starts with the probe file's magic. */
  | 'probe-set'
  /** A Jukebox checkpoint (`model init --out`): one Jukebox.inspect accepts. */
  | 'checkpoint'
  /** A report folder (`report --out`, `train --report`): table.json with rows, macro and notes. */
  | 'report'
  /** A root of feature stores (`extract --out`, `worker --store`): its layer-<L> folders are feature stores. */
  | 'store-root'
  /** A study folder (`study --out`): only the study's columns and comparison files. */
  | 'study'
  /** A demo dataset (`demo-data --out`): calmkit-demo-data.json. */
  | 'demo-data';

export interface OutputPath {
  /** The flag that named it, for the message: '--out', '--report', '--store'. */
  flag: string;
  path: string;
  kind: OutputKind;
}

const FOLDER_KINDS: ReadonlySet<OutputKind> = new Set(['report', 'store-root', 'study', 'demo-data']);

const WHAT: Record<OutputKind, string> = {
  'probe-set': 'a calmkit probe set',
  checkpoint: 'a calmkit Jukebox checkpoint',
  report: 'a calmkit report folder',
  'store-root': 'a folder of calmkit feature stores',
  study: 'a calmkit study folder',
  'demo-data': 'a calmkit demo dataset',
};

// What `calmkit study` writes at the top of its folder, from lib/study.
const STUDY_NAMES: ReadonlySet<string> = new Set(STUDY_ENTRIES);

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

function isFeatureStore(dir: string): boolean {
  return (readJson(path.join(dir, 'store.json')) as { format?: unknown } | undefined)?.format === 'calmkit-feature-store';
}

function isEmptyDir(dir: string): boolean {
  return fs.readdirSync(dir).length === 0;
}

/** Whether the existing folder `dir` is calmkit's of this kind; a reason when it is not. */
function folderIsOurs(dir: string, kind: OutputKind): string | undefined {
  const entries = fs.readdirSync(dir, { withFileTypes: true });
  if (entries.length === 0) return undefined;
  switch (kind) {
    case 'report': {
      const t = readJson(path.join(dir, 'table.json')) as Record<string, unknown> | undefined;
      return t && Array.isArray(t.rows) && t.macro && typeof t.macro === 'object' && Array.isArray(t.notes) ? undefined : 'it holds no calmkit table.json';
    }
    case 'store-root': {
      // Only its layer-<L> folders are written; each must be empty or a feature store.
      const bad = entries.filter(
        (e) => /^layer-\d+$/.test(e.name) && !(e.isDirectory() && (isEmptyDir(path.join(dir, e.name)) || isFeatureStore(path.join(dir, e.name)))),
      );
      return bad.length ? `${path.join(dir, bad[0]!.name)} is not a calmkit feature store` : undefined;
    }
    case 'study': {
      const other = entries.filter((e) => !STUDY_NAMES.has(e.name));
      return other.length ? `it holds ${other[0]!.name}, which a study does not write` : undefined;
    }
    case 'demo-data':
      return fs.existsSync(path.join(dir, DEMO_DESCRIPTION)) ? undefined : `it has no ${DEMO_DESCRIPTION}`;
    default:
      return 'it is a folder';
  }
}

/** Whether the existing file is calmkit's of this kind; a reason when it is not. */
async function fileIsOurs(file: string, kind: OutputKind): Promise<string | undefined> {
  if (kind === 'probe-set') {
    const head = Buffer.alloc(PROBE_FILE_MAGIC_BYTES);
    const fd = fs.openSync(file, 'r');
    try {
      fs.readSync(fd, head, 0, head.length, 0);
    } finally {
      fs.closeSync(fd);
    }
    return isProbeFileHead(head) ? undefined : 'it does not start like a probe set file';
  }
  if (kind === 'checkpoint') {
    try {
      // The archive's directory and keys only: fast even for a 5 GB checkpoint.
      await Jukebox.inspect(file, { verifyWeights: false });
      return undefined;
    } catch (err) {
      return `it does not read as one (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`;
    }
  }
  return 'it is a file';
}

function refuse(o: OutputPath, why: string): ArgumentError {
  return new ArgumentError(
    'ERR_OUTPUT_EXISTS',
    `${o.flag} ${o.path} exists and is not ${WHAT[o.kind]} (${why}); calmkit will not write over it: choose another path, or move it away`,
    { input: o.path },
  );
}

/** fs.statSync, or undefined where nothing is (ENOENT, or ENOTDIR: a file on the way). */
function statOf(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** The nearest folder that exists at or above `p`; a file on the way is an error. */
function nearestExistingFolder(o: OutputPath, p: string): string {
  let dir = p;
  for (;;) {
    const st = statOf(dir);
    if (st) {
      if (!st.isDirectory()) {
        throw new ArgumentError(
          'ERR_OUTPUT_EXISTS',
          `${o.flag} ${o.path}: ${dir} exists and is a file, so calmkit cannot make a folder there; choose another path`,
          { input: o.path },
        );
      }
      return dir;
    }
    const up = path.dirname(dir);
    if (up === dir) return dir;
    dir = up;
  }
}

/** Checks one output; throws ArgumentError ERR_OUTPUT_EXISTS (or the fs error of a folder it cannot write). */
export async function checkOutput(o: OutputPath): Promise<void> {
  const p = path.resolve(o.path);
  const st = statOf(p);
  const folderKind = FOLDER_KINDS.has(o.kind);
  if (st) {
    if (st.isDirectory()) {
      if (!folderKind) throw refuse(o, `it is a folder, and ${o.flag} names the file to write`);
      const why = folderIsOurs(p, o.kind);
      if (why) throw refuse(o, why);
    } else {
      if (folderKind) throw refuse(o, `it is a file, and ${o.flag} names a folder`);
      if (!st.isFile()) throw refuse(o, 'it is not a regular file');
      const why = await fileIsOurs(p, o.kind);
      if (why) throw refuse(o, why);
    }
  }
  // Where it will be created (or replaced, atomically, through a temp file beside it) must be writable now.
  const folder = st?.isDirectory() ? p : nearestExistingFolder(o, path.dirname(p));
  fs.accessSync(folder, fs.constants.W_OK | fs.constants.X_OK);
}

/** Checks every output of a command, in order, before it starts any work. */
export async function checkOutputs(outputs: (OutputPath | undefined | false)[]): Promise<void> {
  for (const o of outputs) if (o) await checkOutput(o);
}
