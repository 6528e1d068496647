// The Node side of native/fuzz/fuzz_store.cpp: reads inputs ([u32 length][bytes]) on stdin, runs the feature
// store's parsers (lib/store/format.ts) on each, and answers on fd 3 with a verdict and V8's block coverage of the
// parsers since the last input ([u8 verdict][u32 n][n x u32 ids]), which the target hands to libFuzzer.
//
// The input's first byte picks the parser (bits 0-1: store.json, a float32 sidecar, a float16 sidecar, the
// manifest) and, with bit 2, seals the rest with a valid CRC-32 first, so that mutations reach past the checksum
// into the structure checks. Verdict 0: a checked value, or DataError ERR_DATA_STORE_CORRUPT naming the file.
// Verdict 1: anything else, or a value that breaks the parser's own promises (printed on stderr).
import fs from 'node:fs';
import inspector from 'node:inspector';
import { DataError } from '../../lib/errors';
import { crc32 } from '../../lib/store/checksum';
import { SHARD_RE, encodeSidecar, parseManifest, parseSidecar, parseStoreJson } from '../../lib/store/format';

const session = new inspector.Session();
session.connect();
// An in-thread inspector session answers synchronously.
function post<T>(method: string, params?: object): T {
  let result: T | undefined;
  let error: Error | null = null;
  session.post(method, params, (e, r) => {
    error = e;
    result = r as T;
  });
  if (error) throw error;
  return result!;
}
post('Profiler.enable');
post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });

type Coverage = { result: { url: string; functions: { ranges: { startOffset: number; endOffset: number; count: number }[] }[] }[] };

/** Covered blocks of format.ts since the last call, as ids (range and a log2 bucket of its count). */
function coverage(): number[] {
  const ids: number[] = [];
  for (const script of post<Coverage>('Profiler.takePreciseCoverage').result) {
    if (!script.url.includes('lib/store/format')) continue;
    for (const f of script.functions) {
      for (const r of f.ranges) {
        if (r.count === 0) continue;
        let h = 0x811c9dc5;
        for (const v of [r.startOffset, r.endOffset, Math.min(8, Math.floor(Math.log2(r.count)))]) h = Math.imul(h ^ v, 0x01000193) >>> 0;
        ids.push(h);
      }
    }
  }
  return ids;
}

function check(input: Buffer): string | undefined {
  const which = input.length > 0 ? input[0]! & 3 : 0;
  let body = input.subarray(1);
  if (input.length > 0 && input[0]! & 4 && body[0] === 0x7b) {
    const rest = body.subarray(1);
    body = Buffer.concat([Buffer.from(`{"crc32":"${crc32(rest).toString(16).padStart(8, '0')}",`), rest]);
  }
  const label = ['store.json', 'shards/f4.json', 'shards/f2.json', 'manifest.json'][which]!;
  try {
    if (which === 0) {
      const { spec } = parseStoreJson(body, label);
      if (typeof spec.model.id !== 'string' || !Array.isArray(spec.layers)) return 'parseStoreJson returned a spec without model.id or layers';
    } else if (which === 3) {
      for (const [name, s] of parseManifest(body, label).shards) {
        if (!SHARD_RE.test(name) || !s.keys.every((k) => typeof k === 'string')) return `parseManifest returned shard ${name}`;
      }
    } else {
      const dtype = which === 1 ? '<f4' : '<f2';
      const s = parseSidecar(body, label, dtype);
      let row = 0;
      for (const e of s.entries) {
        if (e.row !== row || e.shape[e.shape.length - 1] !== s.dim || e.rows * s.dim !== e.shape.reduce((a, b) => a * b, 1))
          return `entry ${e.key} breaks the tiling`;
        row += e.rows;
      }
      if (row !== s.rows) return 'the entries do not cover the rows';
      // What it returns, written again, reads back the same.
      if (s.version === 2) {
        const again = parseSidecar(Buffer.from(encodeSidecar(s)), label, dtype);
        if (JSON.stringify(again) !== JSON.stringify(s)) return 'a parsed sidecar does not survive encodeSidecar and parseSidecar';
      }
    }
    return undefined;
  } catch (err) {
    if (err instanceof DataError && err.code === 'ERR_DATA_STORE_CORRUPT' && err.message.includes(label)) return undefined;
    return `not a DataError naming ${label}: ${(err as Error)?.stack ?? String(err)}`;
  }
}

function readExactly(n: number): Buffer {
  const buf = Buffer.alloc(n);
  let got = 0;
  while (got < n) {
    let r: number;
    try {
      r = fs.readSync(0, buf, got, n - got, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      throw err;
    }
    if (r === 0) process.exit(0);
    got += r;
  }
  return buf;
}

coverage();
fs.writeSync(3, 'R');
for (;;) {
  const input = readExactly(readExactly(4).readUInt32LE(0));
  const problem = check(input);
  if (problem) process.stderr.write(`fuzz-store-child: ${problem}\ninput (base64): ${input.toString('base64')}\n`);
  const ids = coverage();
  const out = Buffer.alloc(5 + ids.length * 4);
  out[0] = problem ? 1 : 0;
  out.writeUInt32LE(ids.length, 1);
  ids.forEach((id, i) => {
    out.writeUInt32LE(id, 5 + i * 4);
  });
  fs.writeSync(3, out);
}
