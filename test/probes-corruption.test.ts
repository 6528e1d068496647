// A probe set proves itself at load (issue 23): random truncations and bit flips are the checksum's (the file's
// sha256); files with valid framing whose numbers cannot be right (NaN or infinite weights, biases or means, a zero
// standard deviation, a blob table whose arrays share bytes, one blob used by two probes, two entries for one
// instrument) are ProbeError ERR_PROBE_FILE naming the problem; a FIFO, a folder or a symlink loop is refused
// without blocking; a full disk on save or report is a typed error naming the path, and the old file stays whole.
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { ProbeError, ProbeSet, trainProbeGrid, writeReport } from '../lib';
import { decodeProbeFile, encodeProbeFile } from '../lib/probes/file';
import { Rng } from '../lib/random';
import { synthProblem } from './helpers/probe-data';
import { tempDir } from './helpers/paths';

const dir = tempDir('calmkit-probe-corrupt-');
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));

const p = synthProblem({
  n: 200,
  dim: 6,
  seed: 9,
  tasks: [
    { instrument: 'organ', flip: 0.1, train: 60, val: 20, test: 30 },
    { instrument: 'piano', flip: 0.1, train: 60, val: 20, test: 30 },
  ],
});
let good = '';
let goodBytes = Buffer.alloc(0);

test.before(async () => {
  const set = await trainProbeGrid({ features: p.features, dim: p.dim, tasks: p.tasks, grid: { hidden: [[], [4]], dropout: [0.25], l2: [0] }, epochs: 2 });
  good = path.join(dir, 'good.calmkit-probes');
  await set.save(good);
  goodBytes = fs.readFileSync(good);
});

/** The good file with its header JSON edited and the container rebuilt around it (valid framing and checksum). */
function rebuild(name: string, edit: (header: any) => void): string {
  const headerLength = goodBytes.readUInt32LE(20);
  const header = JSON.parse(goodBytes.subarray(24, 24 + headerLength).toString('utf8'));
  edit(header);
  const text = Buffer.from(JSON.stringify(header), 'utf8');
  const align8 = (n: number) => (n + 7) & ~7;
  const blobs = goodBytes.subarray(align8(24 + headerLength), goodBytes.length - 32);
  const out = Buffer.alloc(align8(24 + text.length) + blobs.length + 32);
  goodBytes.copy(out, 0, 0, 20);
  out.writeUInt32LE(text.length, 20);
  text.copy(out, 24);
  blobs.copy(out, align8(24 + text.length));
  crypto
    .createHash('sha256')
    .update(out.subarray(0, out.length - 32))
    .digest()
    .copy(out, out.length - 32);
  const f = path.join(dir, name);
  fs.writeFileSync(f, out);
  return f;
}

async function loadError(file: string): Promise<ProbeError | undefined> {
  try {
    await ProbeSet.load(file);
    return undefined;
  } catch (err) {
    if (!(err instanceof ProbeError)) throw err;
    return err;
  }
}

test('random bit flips and truncations: ERR_PROBE_FILE naming the file, never a set with other numbers', async (t) => {
  const rng = new Rng('probe-corpus');
  for (let k = 0; k < 60; k++) {
    const bytes = Buffer.from(goodBytes);
    const cut = k % 3 === 2;
    const damaged = cut ? bytes.subarray(0, rng.int(0, bytes.length - 1)) : bytes;
    if (!cut) damaged[rng.int(0, bytes.length - 1)]! ^= 1 << rng.int(0, 7);
    const f = path.join(dir, `flip${k}`);
    fs.writeFileSync(f, damaged);
    const err = await loadError(f);
    t.is(err?.code, 'ERR_PROBE_FILE', `case ${k}`);
    t.true(err!.message.includes(f));
  }
});

/** Re-encodes the good set's state after `edit`, with a valid checksum: only load's checks stand in the way. */
function forged(name: string, edit: (state: any) => void, format: 1 | 2 = 1): string {
  const state = decodeProbeFile(goodBytes, 'good') as any;
  edit(state);
  const f = path.join(dir, name);
  fs.writeFileSync(f, encodeProbeFile(state, format));
  return f;
}

test('valid framing, impossible numbers: each refused with what is wrong', async (t) => {
  const cases: [string, (s: any) => void, RegExp][] = [
    ['nan-weight', (s) => (s.instruments[0].net.layers[0].weight[2] = NaN), /'organ'.*NaN or infinite weight/],
    ['inf-bias', (s) => (s.instruments[1].net.layers[0].bias[0] = Infinity), /'piano'.*NaN or infinite weight or bias/],
    ['nan-mean', (s) => (s.instruments[0].net.mean[1] = NaN), /mean has a NaN/],
    ['zero-std', (s) => (s.instruments[1].net.std[3] = 0), /standard deviations must be positive/],
    ['negative-std', (s) => (s.instruments[1].net.std[0] = -1), /standard deviations must be positive/],
    ['short-mean', (s) => (s.instruments[0].net.mean = s.instruments[0].net.mean.subarray(1)), /must have 6 values/],
    ['linear-nan', (s) => (s.instruments[0].linear.net.layers[0].weight[0] = NaN), /linear probe of 'organ'/],
    ['two-organs', (s) => (s.instruments[1].instrument = 'organ'), /instrument 'organ' has two entries/],
  ];
  for (const [name, edit, why] of cases) {
    const err = await loadError(forged(name, edit));
    t.is(err?.code, 'ERR_PROBE_FILE', name);
    t.regex(err!.message, why, name);
  }
  // Two probes sharing bytes: piano's mean made a second reference to organ's blob.
  const shared = rebuild('shared', (h) => {
    h.body.instruments[1].net.mean = h.body.instruments[0].net.mean;
  });
  t.regex((await loadError(shared))!.message, /blob \d+ is used twice/);
  // A blob table whose ranges overlap: blob 1 moved onto blob 0's bytes.
  const overlap = rebuild('overlap', (h) => {
    h.blobs[1].offset = h.blobs[0].offset;
  });
  t.regex((await loadError(overlap))!.message, /blob 1 overlaps the blob before it/);
  // The good one still loads: the checks refuse only what is wrong.
  t.is((await ProbeSet.load(good)).instruments.length, 2);
});

test('a FIFO, a folder or a symlink loop in place of a probe set: refused at once', async (t) => {
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  t.regex((await loadError(fifo))!.message, /FIFO/);
  fs.mkdirSync(path.join(dir, 'folder'));
  t.regex((await loadError(path.join(dir, 'folder')))!.message, /folder/);
  fs.symlinkSync('loop', path.join(dir, 'loop'));
  t.regex((await loadError(path.join(dir, 'loop')))!.message, /symlink loop/);
});

test('a full disk on save and report: typed errors naming the path; the saved set stays whole', async (t) => {
  const disk = path.join(dir, 'disk');
  fs.mkdirSync(disk);
  const set = await ProbeSet.load(good);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${Math.ceil((goodBytes.length * 1.5) / 4096) * 4096}`, 'tmpfs', disk]).status === 0;
  if (mounted) t.teardown(() => spawnSync('umount', [disk]));
  const file = path.join(disk, 'set.calmkit-probes');
  await set.save(file);
  if (!mounted) {
    // No mount allowed (not root, or a sandbox): every write from here on fails as on a full disk.
    t.log('tmpfs not mountable here: ENOSPC injected into fs.writeSync');
    const real = fs.writeSync;
    (fs as { writeSync: unknown }).writeSync = () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    };
    t.teardown(() => ((fs as { writeSync: unknown }).writeSync = real));
  } else t.log('a tmpfs one and a half probe sets big');
  const err = await t.throwsAsync(set.save(path.join(disk, 'second.calmkit-probes')), { instanceOf: ProbeError });
  t.is(err?.code, 'ERR_PROBE_FILE');
  t.regex(err!.message, /second\.calmkit-probes: no space left on the device/);
  t.deepEqual(fs.readFileSync(file), goodBytes, 'the saved set is untouched');
  const report = await t.throwsAsync(writeReport(set, path.join(disk, 'report'), { png: false }), { instanceOf: ProbeError });
  t.is(report?.code, 'ERR_PROBE_REPORT');
  t.true(report!.message.includes(path.join(disk, 'report')), report!.message);
});
