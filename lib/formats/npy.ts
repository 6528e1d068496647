// NumPy .npy files (format versions 1.0/2.0/3.0), C order, little-endian, a fixed set of dtypes.
// Our own reader/writer so that feature stores and openmic-2018.npz need no Python; the header is padded so
// that the data starts on a 64-byte boundary, as numpy itself does, which lets us read row ranges of a
// 2-D array straight from disk with one positioned read.
import fs from 'node:fs';
import { DataError, type CalmkitErrorCode } from '../errors';
import { float32ToHalf, halfToFloat32 } from './float16';

export type NpyDtype = '<f8' | '<f4' | '<f2' | '<i8' | '<i4' | '|u1' | '|b1';

export const NPY_DTYPES: readonly NpyDtype[] = ['<f8', '<f4', '<f2', '<i8', '<i4', '|u1', '|b1'];

const ITEM_SIZE: Record<NpyDtype, number> = { '<f8': 8, '<f4': 4, '<f2': 2, '<i8': 8, '<i4': 4, '|u1': 1, '|b1': 1 };
// numpy spells one-byte types with either byte-order mark depending on version and how the dtype was made.
const DTYPE_ALIASES: Record<string, NpyDtype> = {
  '<u1': '|u1',
  '|i1': '|u1',
  '<b1': '|b1',
  '=f4': '<f4',
  '=f8': '<f8',
  '=f2': '<f2',
  '=i8': '<i8',
  '=i4': '<i4',
};

/**
 * What a decoded array holds: float types decode to Float32Array/Float64Array (float16 is widened to
 * Float32Array), <i8 to BigInt64Array, <i4 to Int32Array, u1/b1 to Uint8Array.
 */
export type NpyData = Float64Array | Float32Array | BigInt64Array | Int32Array | Uint8Array;

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  data: NpyData;
}

export interface NpyHeader {
  dtype: NpyDtype;
  shape: number[];
  /** Byte offset of the first element. */
  dataOffset: number;
  version: [number, number];
}

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

export function itemSize(dtype: NpyDtype): number {
  return ITEM_SIZE[dtype];
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function formatError(name: string, why: string, code: CalmkitErrorCode = 'ERR_DATA_NPY_FORMAT'): DataError {
  return new DataError(code, `${name}: not a usable .npy file: ${why}`, { input: name });
}

// --- header -------------------------------------------------------------------------------------------

/** Builds the header bytes (magic through the newline) for an array, padded to a multiple of 64 bytes. */
export function encodeNpyHeader(dtype: NpyDtype, shape: readonly number[]): Buffer {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new DataError('ERR_DATA_NPY_FORMAT', `npy shape must be non-negative integers; got [${shape.join(', ')}]`);
  }
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${dtype}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  for (const version of [1, 2] as const) {
    const prefix = 6 + 2 + (version === 1 ? 2 : 4);
    const unpadded = prefix + dict.length + 1;
    const total = Math.ceil(unpadded / 64) * 64;
    const headerLen = total - prefix;
    if (version === 1 && headerLen > 0xffff) continue;
    const buf = Buffer.alloc(total, 0x20);
    MAGIC.copy(buf, 0);
    buf[6] = version;
    buf[7] = 0;
    if (version === 1) buf.writeUInt16LE(headerLen, 8);
    else buf.writeUInt32LE(headerLen, 8);
    buf.write(dict, prefix, 'latin1');
    buf[total - 1] = 0x0a;
    return buf;
  }
  throw new DataError('ERR_DATA_NPY_FORMAT', 'npy header too long');
}

/** Parses the Python-literal header dict numpy writes; only the three keys numpy emits are accepted. */
function parseHeaderDict(text: string, name: string): { descr: string; fortran: boolean; shape: number[] } {
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) throw formatError(name, `cannot parse header ${JSON.stringify(text.trim())}`);
  const dims = shape[1]!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const parsed = dims.map((d) => (/^\d+L?$/.test(d) ? Number.parseInt(d, 10) : NaN));
  if (parsed.some((d) => !Number.isSafeInteger(d))) throw formatError(name, `bad shape (${shape[1]})`);
  return { descr: descr[1]!, fortran: fortran[1] === 'True', shape: parsed };
}

/**
 * Parses a header from the first bytes of a file. `head` must hold at least the whole header; when it may
 * not (a positioned read of a prefix), call `npyHeaderLength` first.
 */
export function decodeNpyHeader(head: Uint8Array, name = '<buffer>'): NpyHeader {
  const buf = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (buf.length < 10) throw formatError(name, `only ${buf.length} bytes`, 'ERR_DATA_NPY_TRUNCATED');
  if (!buf.subarray(0, 6).equals(MAGIC)) throw formatError(name, 'bad magic (not an .npy file)');
  const major = buf[6]!;
  const minor = buf[7]!;
  if (major < 1 || major > 3) throw formatError(name, `unsupported format version ${major}.${minor}`);
  const lenBytes = major === 1 ? 2 : 4;
  if (buf.length < 8 + lenBytes) throw formatError(name, 'header truncated', 'ERR_DATA_NPY_TRUNCATED');
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const dataOffset = 8 + lenBytes + headerLen;
  if (buf.length < dataOffset) throw formatError(name, 'header truncated', 'ERR_DATA_NPY_TRUNCATED');
  const text = buf.toString(major === 3 ? 'utf8' : 'latin1', 8 + lenBytes, dataOffset);
  const dict = parseHeaderDict(text, name);
  const dtype = (NPY_DTYPES as readonly string[]).includes(dict.descr) ? (dict.descr as NpyDtype) : DTYPE_ALIASES[dict.descr];
  if (!dtype) throw formatError(name, `unsupported dtype '${dict.descr}' (supported: ${NPY_DTYPES.join(', ')})`, 'ERR_DATA_NPY_DTYPE');
  if (dict.fortran && dict.shape.filter((d) => d > 1).length > 1) throw formatError(name, 'Fortran-ordered arrays are not supported');
  return { dtype, shape: dict.shape, dataOffset, version: [major, minor] };
}

/** Bytes needed to hold the whole header, from the first 12 bytes of the file. */
export function npyHeaderLength(first12: Uint8Array, name = '<buffer>'): number {
  const buf = Buffer.from(first12.buffer, first12.byteOffset, first12.byteLength);
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC))
    throw formatError(
      name,
      buf.length < 10 ? `only ${buf.length} bytes` : 'bad magic (not an .npy file)',
      buf.length < 10 ? 'ERR_DATA_NPY_TRUNCATED' : 'ERR_DATA_NPY_FORMAT',
    );
  const major = buf[6]!;
  if (major === 1) return 10 + buf.readUInt16LE(8);
  if (buf.length < 12) throw formatError(name, 'header truncated', 'ERR_DATA_NPY_TRUNCATED');
  return 12 + buf.readUInt32LE(8);
}

// --- element conversion ---------------------------------------------------------------------------------

/** Decodes raw little-endian element bytes into the dtype's JS array (copies, so alignment never matters). */
export function decodeElements(dtype: NpyDtype, bytes: Uint8Array, count: number): NpyData {
  const n = count * ITEM_SIZE[dtype];
  const copy = new Uint8Array(n);
  copy.set(bytes.subarray(0, n));
  switch (dtype) {
    case '<f8':
      return new Float64Array(copy.buffer, 0, count);
    case '<f4':
      return new Float32Array(copy.buffer, 0, count);
    case '<f2':
      return halfToFloat32(new Uint16Array(copy.buffer, 0, count));
    case '<i8':
      return new BigInt64Array(copy.buffer, 0, count);
    case '<i4':
      return new Int32Array(copy.buffer, 0, count);
    case '|u1':
    case '|b1':
      return copy;
  }
}

/** Encodes JS values as the dtype's little-endian bytes. Accepts any numeric typed array or number[]. */
export function encodeElements(dtype: NpyDtype, data: ArrayLike<number> | BigInt64Array): Uint8Array {
  const count = data.length;
  switch (dtype) {
    case '<f8':
      return new Uint8Array(Float64Array.from(data as ArrayLike<number>).buffer);
    case '<f4':
      return new Uint8Array((data instanceof Float32Array ? data.slice() : Float32Array.from(data as ArrayLike<number>)).buffer);
    case '<f2':
      return new Uint8Array(float32ToHalf(data as ArrayLike<number>).buffer);
    case '<i8': {
      if (data instanceof BigInt64Array) return new Uint8Array(data.slice().buffer);
      const out = new BigInt64Array(count);
      for (let i = 0; i < count; i++) out[i] = BigInt(Math.trunc((data as ArrayLike<number>)[i]!));
      return new Uint8Array(out.buffer);
    }
    case '<i4':
      return new Uint8Array(Int32Array.from(data as ArrayLike<number>).buffer);
    case '|u1':
      return Uint8Array.from(data as ArrayLike<number>);
    case '|b1':
      return Uint8Array.from(data as ArrayLike<number>, (v) => (v ? 1 : 0));
  }
}

// --- whole arrays -----------------------------------------------------------------------------------------

export interface EncodeNpyOptions {
  dtype: NpyDtype;
  shape?: number[];
}

/** The bytes of a complete .npy file. The shape defaults to 1-D; its size must equal data.length. */
export function encodeNpy(data: ArrayLike<number> | BigInt64Array, options: EncodeNpyOptions): Buffer {
  const shape = options.shape ?? [data.length];
  if (product(shape) !== data.length) {
    throw new DataError('ERR_DATA_NPY_FORMAT', `npy shape [${shape.join(', ')}] holds ${product(shape)} elements but ${data.length} were given`);
  }
  const header = encodeNpyHeader(options.dtype, shape);
  return Buffer.concat([header, encodeElements(options.dtype, data)]);
}

/** Decodes a complete .npy file held in memory. */
export function decodeNpy(bytes: Uint8Array, name = '<buffer>'): NpyArray {
  const header = decodeNpyHeader(bytes, name);
  const count = product(header.shape);
  const need = header.dataOffset + count * ITEM_SIZE[header.dtype];
  if (bytes.byteLength < need) throw formatError(name, `truncated: ${bytes.byteLength} bytes, the header promises ${need}`, 'ERR_DATA_NPY_TRUNCATED');
  if (bytes.byteLength > need) throw formatError(name, `${bytes.byteLength - need} trailing bytes after the data`, 'ERR_DATA_NPY_CORRUPT');
  return { dtype: header.dtype, shape: header.shape, data: decodeElements(header.dtype, bytes.subarray(header.dataOffset), count) };
}

export function readNpy(file: string): NpyArray {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new DataError('ERR_DATA_NOT_FOUND', `cannot read ${file}: ${(err as Error).message}`, { input: file, cause: err });
  }
  return decodeNpy(bytes, file);
}

/** Writes a .npy file (not atomically; the feature store adds atomicity on top). */
export function writeNpy(file: string, data: ArrayLike<number> | BigInt64Array, options: EncodeNpyOptions): void {
  fs.writeFileSync(file, encodeNpy(data, options));
}

// --- partial reads -----------------------------------------------------------------------------------------

function preadExactly(fd: number, length: number, position: number, name: string): Buffer {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = fs.readSync(fd, buf, got, length - got, position + got);
    if (n === 0) throw formatError(name, `truncated: wanted ${length} bytes at offset ${position}, file ends after ${got}`, 'ERR_DATA_NPY_TRUNCATED');
    got += n;
  }
  return buf;
}

/** Reads and validates the header of a file on disk, checking that the file is exactly as long as promised. */
export function readNpyHeaderFd(fd: number, name: string): NpyHeader & { fileSize: number } {
  const fileSize = fs.fstatSync(fd).size;
  const first = preadExactly(fd, Math.min(12, fileSize), 0, name);
  const len = npyHeaderLength(first, name);
  if (fileSize < len) throw formatError(name, 'header truncated', 'ERR_DATA_NPY_TRUNCATED');
  const header = decodeNpyHeader(preadExactly(fd, len, 0, name), name);
  const need = header.dataOffset + product(header.shape) * ITEM_SIZE[header.dtype];
  if (fileSize < need) throw formatError(name, `truncated: ${fileSize} bytes, the header promises ${need}`, 'ERR_DATA_NPY_TRUNCATED');
  if (fileSize > need) throw formatError(name, `${fileSize - need} trailing bytes after the data`, 'ERR_DATA_NPY_CORRUPT');
  return { ...header, fileSize };
}

export function readNpyHeader(file: string): NpyHeader & { fileSize: number } {
  const fd = openForRead(file);
  try {
    return readNpyHeaderFd(fd, file);
  } finally {
    fs.closeSync(fd);
  }
}

function openForRead(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (err) {
    throw new DataError('ERR_DATA_NOT_FOUND', `cannot open ${file}: ${(err as Error).message}`, { input: file, cause: err });
  }
}

/**
 * Rows [start, end) of a 2-D (or higher: rows are the first axis) array, read with one positioned read and
 * without loading the rest of the file.
 */
export function readNpyRows(file: string, start: number, end: number): NpyArray {
  const fd = openForRead(file);
  try {
    const header = readNpyHeaderFd(fd, file);
    if (header.shape.length < 1) throw formatError(file, 'a 0-d array has no rows');
    const rows = header.shape[0]!;
    if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= rows)) {
      throw new DataError('ERR_DATA_NPY_RANGE', `${file}: row range [${start}, ${end}) is outside [0, ${rows})`, { input: file });
    }
    const rowElems = product(header.shape.slice(1));
    const rowBytes = rowElems * ITEM_SIZE[header.dtype];
    const bytes = preadExactly(fd, (end - start) * rowBytes, header.dataOffset + start * rowBytes, file);
    return { dtype: header.dtype, shape: [end - start, ...header.shape.slice(1)], data: decodeElements(header.dtype, bytes, (end - start) * rowElems) };
  } finally {
    fs.closeSync(fd);
  }
}
