// The probe-set file: a JSON header plus raw typed-array blobs, checksummed (written atomically by ProbeSet.save).
//
// Layout (little-endian):
//   "CALMKIT-PROBES\n\0" (16 bytes) | u32 format | u32 header bytes | header JSON (UTF-8) | blobs | sha256 (32 bytes)
// The header is the probe set's state with every typed array replaced by {"$blob": i}; header.blobs[i] gives its
// type, offset (from the start of the blob area, 8-byte aligned) and element count. The sha256 covers
// everything before it, so truncation and bit flips are both caught before any field is trusted.
import crypto from 'node:crypto';
import { ProbeError } from '../errors';

const MAGIC = Buffer.from('CALMKIT-PROBES\n\0', 'latin1');

/** How many bytes isProbeFileHead needs. */
export const PROBE_FILE_MAGIC_BYTES = MAGIC.length;

/** Whether a file's first bytes are a probe set's magic (what the CLI checks before it writes over a file). */
export function isProbeFileHead(head: Uint8Array): boolean {
  return head.length >= MAGIC.length && MAGIC.equals(head.subarray(0, MAGIC.length));
}
/**
 * Container formats: 1 for the paper's probes; 2, the same layout, for sets with attention probes (nets with an
 * `attention` layer), which a calmkit that predates them must refuse rather than read as MLPs. Files are
 * written in the lowest format that holds them, so sets of MLP probes stay readable by older calmkits.
 */
export const PROBE_FILE_FORMAT = 2;
const READABLE_FORMATS = [1, 2];

type Typed = Float32Array | Uint8Array | Int32Array;
const TYPES: Record<string, { ctor: { new (buf: ArrayBuffer, off: number, len: number): Typed; BYTES_PER_ELEMENT: number } }> = {
  f32: { ctor: Float32Array },
  u8: { ctor: Uint8Array },
  i32: { ctor: Int32Array },
};

interface BlobRef {
  type: keyof typeof TYPES;
  offset: number;
  length: number;
}

function typeOf(v: Typed): keyof typeof TYPES {
  if (v instanceof Float32Array) return 'f32';
  if (v instanceof Int32Array) return 'i32';
  return 'u8';
}

/** JSON cannot hold NaN or Infinity; they travel as tagged strings. */
function encodeNumber(v: number): unknown {
  if (Number.isFinite(v)) return v;
  return { $num: String(v) };
}

function splitBlobs(value: unknown, blobs: Typed[]): unknown {
  if (value instanceof Float32Array || value instanceof Uint8Array || value instanceof Int32Array) {
    blobs.push(value);
    return { $blob: blobs.length - 1 };
  }
  if (typeof value === 'number') return encodeNumber(value);
  if (Array.isArray(value)) return value.map((v) => splitBlobs(v, blobs));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = splitBlobs(v, blobs);
    return out;
  }
  return value;
}

function joinBlobs(value: unknown, blobs: Typed[], used: Set<number>): unknown {
  if (Array.isArray(value)) return value.map((v) => joinBlobs(v, blobs, used));
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.$blob === 'number') {
      const b = blobs[o.$blob];
      if (!b) throw new Error(`reference to missing blob ${o.$blob}`);
      // Each array is written once: a blob used twice would let two probes share weights.
      if (used.has(o.$blob)) throw new Error(`blob ${o.$blob} is used twice`);
      used.add(o.$blob);
      return b;
    }
    if (typeof o.$num === 'string') return Number(o.$num);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o)) out[k] = joinBlobs(v, blobs, used);
    return out;
  }
  return value;
}

const align8 = (n: number) => (n + 7) & ~7;

/** Serialises `state` (plain data and typed arrays) into the probe-set container. */
export function encodeProbeFile(state: unknown, format: 1 | 2 = 1): Buffer {
  const blobs: Typed[] = [];
  const body = splitBlobs(state, blobs);
  const refs: BlobRef[] = [];
  let offset = 0;
  for (const b of blobs) {
    refs.push({ type: typeOf(b), offset, length: b.length });
    offset = align8(offset + b.byteLength);
  }
  const header = Buffer.from(JSON.stringify({ blobs: refs, body }), 'utf8');
  const headStart = MAGIC.length + 8;
  const blobStart = align8(headStart + header.length);
  const total = blobStart + offset + 32;
  const out = Buffer.alloc(total);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(format, MAGIC.length);
  out.writeUInt32LE(header.length, MAGIC.length + 4);
  header.copy(out, headStart);
  blobs.forEach((b, i) => {
    Buffer.from(b.buffer, b.byteOffset, b.byteLength).copy(out, blobStart + refs[i]!.offset);
  });
  crypto
    .createHash('sha256')
    .update(out.subarray(0, total - 32))
    .digest()
    .copy(out, total - 32);
  return out;
}

/** Parses a probe-set container; any inconsistency is a ProbeError ERR_PROBE_FILE naming `label`. */
export function decodeProbeFile(buf: Buffer, label: string): unknown {
  const fail = (why: string): never => {
    throw new ProbeError('ERR_PROBE_FILE', `${label} is not a valid calmkit probe set: ${why}`, { input: label });
  };
  if (buf.length < MAGIC.length + 8 + 32 || !isProbeFileHead(buf)) fail('wrong magic or too short');
  const format = buf.readUInt32LE(MAGIC.length);
  if (!READABLE_FORMATS.includes(format)) fail(`format ${format} is not supported (this calmkit reads formats ${READABLE_FORMATS.join(' and ')})`);
  const digest = crypto
    .createHash('sha256')
    .update(buf.subarray(0, buf.length - 32))
    .digest();
  if (!digest.equals(buf.subarray(buf.length - 32))) fail('checksum mismatch (truncated or corrupted)');
  const headerLength = buf.readUInt32LE(MAGIC.length + 4);
  const headStart = MAGIC.length + 8;
  if (headStart + headerLength > buf.length - 32) fail('header runs past the end of the file');
  let header: { blobs: BlobRef[]; body: unknown };
  try {
    header = JSON.parse(buf.subarray(headStart, headStart + headerLength).toString('utf8'));
  } catch (err) {
    return fail(`header is not JSON (${(err as Error).message})`);
  }
  if (!header || !Array.isArray(header.blobs)) fail('header has no blob table');
  const blobStart = align8(headStart + headerLength);
  // The blobs lie in the blob area in table order without overlapping (as encodeProbeFile lays them out).
  let end = 0;
  const blobs = header.blobs.map((ref, i) => {
    const t = TYPES[ref?.type];
    if (!t || !Number.isInteger(ref.offset) || !Number.isInteger(ref.length) || ref.offset < 0 || ref.length < 0) {
      return fail(`blob ${i} has a bad descriptor`);
    }
    const start = blobStart + ref.offset;
    const bytes = ref.length * t.ctor.BYTES_PER_ELEMENT;
    if (start + bytes > buf.length - 32) fail(`blob ${i} runs past the end of the file`);
    if (ref.offset < end) fail(`blob ${i} overlaps the blob before it (offset ${ref.offset} < ${end})`);
    end = ref.offset + bytes;
    // Copy into a fresh, aligned buffer: the file buffer may be pooled or unaligned.
    const copy = new ArrayBuffer(bytes);
    new Uint8Array(copy).set(buf.subarray(start, start + bytes));
    return new t.ctor(copy, 0, ref.length);
  });
  try {
    return joinBlobs(header.body, blobs, new Set());
  } catch (err) {
    return fail((err as Error).message);
  }
}
