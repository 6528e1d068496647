// Ctrl-C for long commands: the first SIGINT/SIGTERM aborts the work through its AbortSignal so finished work
// is flushed and kept; a second one exits at once (only what was already published is kept, which is always
// consistent). Exit status 130 after an interrupt.
import { AbortError } from '../errors';
import { EXIT } from './exit';
import { statusLineActive } from './progress';

export interface InterruptOptions {
  /** Printed on the first signal (default: "<SIGNAL>: stopping after the current step; ..."). */
  message?: string;
}

export async function withInterrupt<T>(work: (signal: AbortSignal) => Promise<T>, options: InterruptOptions = {}): Promise<T | undefined> {
  const controller = new AbortController();
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) {
      process.stderr.write(`${sig} again: exiting without waiting for the current step\n`);
      process.exit(EXIT.INTERRUPTED);
    }
    interrupted = true;
    // On a terminal the ^C echo sits where the cursor was: a status line is cleared by the write itself (it goes
    // above the bar); after a plain line, a newline keeps the message off the ^C.
    const lead = sig === 'SIGINT' && process.stderr.isTTY && !statusLineActive() ? '\n' : '';
    process.stderr.write(`${lead}${options.message ?? `${sig}: stopping after the current step; finished work is kept (again to quit at once)`}\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const result = await work(controller.signal);
    if (interrupted) process.exitCode = EXIT.INTERRUPTED;
    return result;
  } catch (err) {
    if (interrupted || err instanceof AbortError) {
      process.stderr.write('interrupted: run the same command again to resume\n');
      process.exitCode = EXIT.INTERRUPTED;
      return undefined;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
