// What proving every value costs a feature store read (issue 23): readMatrix of a mean store and readSegments of a
// float16 segments store, whole and as a few hundred scattered clips, with the store's checksums checked on every
// read; and, in the same rounds, the checksum work alone (CRC-32 of every entry, over the same 8 MiB read chunks
// right after they are read), so its share of the read is measured, not inferred.
//   npm run bench -- store-read [--mean-clips 20000] [--width 4800] [--seg-clips 2000] [--segments 23]
//                               [--rounds 5] [--subset 200] [--before LIBDIR] [--dir DIR]
// --before LIBDIR: also time a calmkit lib/ of another commit on the same data written by it (e.g. the lib before
// checksums: `git archive 9575d33 lib | tar -x -C /tmp/before` then `--before /tmp/before/lib`), interleaved.
// Wall and CPU seconds are both printed: on a shared machine CPU seconds move less.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { itemSize } from '../lib/formats';
import { entryRuns } from '../lib/store/maintenance';
import { crc32Ranges, checksumImplementation } from '../lib/store/checksum';
import { interleaved, machine, median, parseArgs, report } from './harness';

import type { FeatureStore } from '../lib/store/feature-store';

type StoreModule = typeof import('../lib/store/feature-store');
type Store = FeatureStore;

const args = parseArgs(process.argv.slice(2));
const meanClips = Number(args['mean-clips'] ?? 20000);
const width = Number(args.width ?? 4800);
const segClips = Number(args['seg-clips'] ?? 2000);
const segments = Number(args.segments ?? 23);
const rounds = Number(args.rounds ?? 5);
const subsetSize = Number(args.subset ?? 200);
const root = fs.mkdtempSync(path.join(typeof args.dir === 'string' ? args.dir : os.tmpdir(), 'calmkit-bench-store-'));

function build(lib: StoreModule, dir: string, kind: 'mean' | 'segments'): void {
  const spec = {
    model: { id: 'bench' },
    layers: [36],
    pooling: kind,
    formatting: 'tile',
    dtype: kind === 'mean' ? ('float32' as const) : ('float16' as const),
  };
  const store = lib.FeatureStore.open(dir, { create: spec });
  const w = store.writer({ id: 'bench', shardSize: 256 });
  const shape = kind === 'mean' ? [width] : [segments, width];
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let c = 0; c < (kind === 'mean' ? meanClips : segClips); c++) {
    for (let i = 0; i < v.length; i++) v[i] = Math.sin(c * 0.37 + i * 0.011) * 3;
    w.put(`k${String(c).padStart(6, '0')}`, v, shape);
  }
  w.close();
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** The checksum work of a whole-store read: each chunk (entryRuns, as verify reads) of every shard read, then CRC-32 of its entries (timed alone). */
function checksumWork(store: Store): { seconds: number; cpu: number } {
  let seconds = 0;
  let cpu = 0;
  let buf = new Uint8Array(0);
  for (const { name, sidecar } of store.state.shards) {
    const { fd, dataOffset } = store.openShard(name);
    const rowBytes = sidecar.dim * itemSize(sidecar.dtype);
    try {
      for (const { run, first, bytes } of entryRuns(sidecar.entries, rowBytes)) {
        if (buf.length < bytes) buf = new Uint8Array(bytes);
        fs.readSync(fd, buf, 0, bytes, dataOffset + first * rowBytes);
        const starts = Float64Array.from(run, (e) => (e.row - first) * rowBytes);
        const lengths = Float64Array.from(run, (e) => e.rows * rowBytes);
        const c0 = cpuSeconds();
        const t0 = process.hrtime.bigint();
        crc32Ranges(buf, starts, lengths);
        seconds += Number(process.hrtime.bigint() - t0) / 1e9;
        cpu += cpuSeconds() - c0;
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return { seconds, cpu };
}

async function main(): Promise<void> {
  const libs: [string, StoreModule][] = [['after', await import('../lib/store/feature-store')]];
  if (typeof args.before === 'string') libs.push(['before', (await import(path.resolve(args.before, 'store', 'feature-store'))) as StoreModule]);
  const t0 = Date.now();
  for (const [label, lib] of libs) for (const kind of ['mean', 'segments'] as const) build(lib, path.join(root, `${label}-${kind}`), kind);
  const buildSeconds = (Date.now() - t0) / 1000;
  const results: Record<string, unknown> = {};
  const rows: Record<string, string | number>[] = [];
  for (const kind of ['mean', 'segments'] as const) {
    const stores = libs.map(([label, lib]) => [label, lib.FeatureStore.open(path.join(root, `${label}-${kind}`))] as const);
    const keys = stores[0]![1].keys();
    const subset = keys.filter((_, i) => (i * 7919) % keys.length < subsetSize).slice(0, subsetSize);
    const cpu: Record<string, number[]> = {};
    const contenders = stores.flatMap(([label, store]) =>
      (['all', 'subset'] as const).map((which) => ({
        name: `${label} ${which}`,
        run: async () => {
          const ks = which === 'all' ? keys : subset;
          const c0 = cpuSeconds();
          const start = process.hrtime.bigint();
          const m = kind === 'mean' ? store.readMatrix(ks) : store.readSegments(ks);
          const s = Number(process.hrtime.bigint() - start) / 1e9;
          cpu[`${label} ${which}`] ??= [];
          cpu[`${label} ${which}`]!.push(cpuSeconds() - c0);
          if (m.data.length === 0) throw new Error('nothing read');
          return s;
        },
      })),
    );
    const crcSamples: { seconds: number; cpu: number }[] = [];
    contenders.push({
      name: 'checksums alone',
      run: async () => {
        const w = checksumWork(stores[0]![1] as Store);
        crcSamples.push(w);
        return w.seconds;
      },
    });
    const timed = await interleaved(contenders, rounds, 1);
    const cpuMedian = (name: string) => median(cpu[name]!.slice(-rounds));
    const crcWall = median(crcSamples.slice(-rounds).map((w) => w.seconds));
    const crcCpu = median(crcSamples.slice(-rounds).map((w) => w.cpu));
    const bytes = stores[0]![1].state.shards.reduce((n, s) => n + (s.sidecar.bytes ?? 0), 0);
    const entry: Record<string, unknown> = { clips: keys.length, storedBytes: bytes, checksumSeconds: crcWall, checksumCpuSeconds: crcCpu };
    for (const [label] of stores) {
      for (const which of ['all', 'subset'] as const) {
        const name = `${label} ${which}`;
        entry[`${label}${which === 'all' ? 'All' : 'Subset'}`] = { wallMedian: timed[name]!.median, cpuMedian: cpuMedian(name), samples: timed[name]!.samples };
        rows.push({
          store: kind,
          read: name,
          clips: which === 'all' ? keys.length : subset.length,
          'wall s': timed[name]!.median.toFixed(3),
          'cpu s': cpuMedian(name).toFixed(3),
        });
      }
    }
    const share = crcCpu / cpuMedian('after all');
    entry.checksumShareOfReadCpu = share;
    entry.checksumShareOfReadWall = crcWall / timed['after all']!.median;
    if (libs.length > 1) {
      entry.afterOverBeforeWall = timed['after all']!.median / timed['before all']!.median;
      entry.afterOverBeforeCpu = cpuMedian('after all') / cpuMedian('before all');
    }
    rows.push({ store: kind, read: 'checksums alone (whole store)', clips: keys.length, 'wall s': crcWall.toFixed(3), 'cpu s': crcCpu.toFixed(3) });
    results[kind] = entry;
  }
  fs.rmSync(root, { recursive: true, force: true });
  const load = os.loadavg()[0];
  report(
    'store-read',
    { machine: machine(), loadAverage1m: load, checksum: checksumImplementation(), rounds, width, segments, buildSeconds, ...results },
    rows,
  );
  for (const kind of ['mean', 'segments'] as const) {
    const e = results[kind] as Record<string, number>;
    console.log(
      `${kind}: checksums ${(100 * e.checksumShareOfReadCpu!).toFixed(1)} % of the read's CPU time (${(100 * e.checksumShareOfReadWall!).toFixed(1)} % of its wall time)` +
        (e.afterOverBeforeCpu ? `; after/before ${e.afterOverBeforeCpu.toFixed(3)} (CPU), ${e.afterOverBeforeWall!.toFixed(3)} (wall)` : ''),
    );
  }
}

main().catch((err) => {
  fs.rmSync(root, { recursive: true, force: true });
  console.error(err);
  process.exit(1);
});
