// Run-to-run, thread-count and one-at-a-time reproducibility of the CPU probe trainer across separate processes: the same planted
// attention grid trained in child processes that differ in the process-wide thread count (CALMKIT_THREADS), the
// stack's `threads` option and the place of the features in memory must give the same bits. Before the fix a
// one-thread stack in a two-thread process ran on two threads whenever the trainer landed on a libuv worker that
// had not run a parallel loop yet (ATen's once-per-thread init reset the stack's thread count, OpenMP's and
// oneMKL's), so its products split their sums differently, and the same run gave other bits on a reused worker.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import test from 'ava';

const CHILD = path.join(__dirname, 'helpers', 'probe-hash-child.ts');

function hashOf(env: { CALMKIT_THREADS: string }, args: { threads: number; offset: number }): string {
  const out = execFileSync(process.execPath, ['--import=tsx', CHILD, '20', '600', String(args.offset), String(args.threads)], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  return out.trim();
}

test('separate processes train the same attention probes to the same bits on any thread count and any feature alignment', (t) => {
  const reference = hashOf({ CALMKIT_THREADS: '1' }, { threads: 0, offset: 0 });
  t.regex(reference, /^[0-9a-f]{64}$/);
  const runs = [
    { env: { CALMKIT_THREADS: '1' }, args: { threads: 0, offset: 0 }, what: 'the same process settings again' },
    { env: { CALMKIT_THREADS: '2' }, args: { threads: 0, offset: 0 }, what: 'two process threads, a one-thread stack (auto)' },
    { env: { CALMKIT_THREADS: '2' }, args: { threads: 1, offset: 0 }, what: 'two process threads, threads: 1' },
    { env: { CALMKIT_THREADS: '2' }, args: { threads: 2, offset: 0 }, what: 'two process threads, threads: 2' },
    { env: { CALMKIT_THREADS: '2' }, args: { threads: 0, offset: 4 }, what: 'features 4 bytes into a buffer' },
    { env: { CALMKIT_THREADS: '2' }, args: { threads: 0, offset: 36 }, what: 'features 36 bytes into a buffer' },
  ];
  for (const r of runs) t.is(hashOf(r.env, r.args), reference, r.what);
});

// One probe at a time (a lone probe gets the stack's threads) against the stack (each probe on one thread): at
// 4800-d oneMKL split the lone probe's 64 x 4800 x 512 products over two threads and cut their sums elsewhere
// (before the fix: test probabilities 1.2e-7 apart after 2 epochs here, weights 1.0e-6; reported 4.3e-4 after
// `calmkit-core probe-grid --instruments 1 --epochs 1`). Now every product is oneMKL's one-thread kernel and the modes agree bit for bit.
test('one probe at a time trains to the same bits as the stack at 4800-d with two threads', (t) => {
  const out = execFileSync(process.execPath, ['--import=tsx', path.join(__dirname, 'helpers', 'probe-modes-child.ts')], {
    env: { ...process.env, CALMKIT_THREADS: '2' },
    encoding: 'utf8',
  });
  const d = JSON.parse(out) as { stacks: number[]; probabilities: number; valLoss: number; weights: number };
  t.deepEqual(d.stacks, [1, 2]);
  t.is(d.probabilities, 0, 'test probabilities');
  t.is(d.valLoss, 0, 'validation losses');
  t.is(d.weights, 0, 'weights');
});
