// How the CLI ends: its exit codes (the README's table) and the one line it prints for an error. A CalmkitError
// is one line, `calmkit: CODE: message`, with no stack and nothing from LibTorch (the native side strips that);
// `--verbose` or CALMKIT_DEBUG=1 adds the stack and the chain of causes.
import { CalmkitError } from '../errors';
import { explainFsError, isSystemError } from '../files';

export const EXIT = {
  OK: 0,
  /** Any error: bad flags (commander's usage errors too), a CalmkitError, anything unexpected. */
  ERROR: 1,
  /** The command ran, but some of its clips or files failed (each is listed); the rest is done and kept. */
  SOME_FAILED: 2,
  /**
   * An output path that is not calmkit's of the right kind (ERR_OUTPUT_EXISTS, outputs.ts): refused before any work,
   * nothing written. The same 2 as SOME_FAILED: the command did not do all it was asked, and nothing was lost.
   */
  OUTPUT_REFUSED: 2,
  /** Interrupted (Ctrl-C or SIGTERM): finished work is kept; run the same command again to resume. */
  INTERRUPTED: 130,
} as const;

/** The exit code for an error that ends a command. */
export function exitCodeFor(err: unknown): number {
  return err instanceof CalmkitError && err.code === 'ERR_OUTPUT_EXISTS' ? EXIT.OUTPUT_REFUSED : EXIT.ERROR;
}

/** Whether errors should show their stacks: `--verbose` anywhere on the command line, or CALMKIT_DEBUG=1. */
export function verboseErrors(argv: readonly string[] = process.argv, env: NodeJS.ProcessEnv = process.env): boolean {
  return argv.includes('--verbose') || (env.CALMKIT_DEBUG !== undefined && env.CALMKIT_DEBUG !== '' && env.CALMKIT_DEBUG !== '0');
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

/** The text the CLI prints for `err`: one line, or with `verbose` the line followed by stacks and causes. */
export function formatError(err: unknown, verbose: boolean): string {
  let line: string;
  if (err instanceof CalmkitError) line = `calmkit: ${err.code}: ${oneLine(err.message)}`;
  else if (isSystemError(err)) line = `calmkit: ${err.code}: ${err.path ? `${err.path}: ` : ''}${explainFsError(err)}`;
  else if (err instanceof Error)
    line = `calmkit: internal error: ${oneLine(err.message)}${verbose ? '' : ' (run with --verbose or CALMKIT_DEBUG=1 for the stack)'}`;
  else line = `calmkit: internal error: ${oneLine(String(err))}`;
  if (!verbose) return line;
  const parts = [line];
  let e: unknown = err;
  for (let depth = 0; e instanceof Error && depth < 8; depth++) {
    parts.push(depth === 0 ? (e.stack ?? '') : `caused by: ${e.stack ?? e.message}`);
    e = e.cause;
  }
  return parts.join('\n');
}
