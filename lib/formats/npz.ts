// NumPy .npz archives (a zip of .npy members, stored or deflated), read with fflate. Object arrays are
// accepted only when they are arrays of str, through the restricted pickle reader in ./pickle.
import fs from 'node:fs';
import { unzipSync } from 'fflate';
import { DataError } from '../errors';
import { decodeNpy, npyHeaderLength, type NpyArray } from './npy';
import { unpickleStringArray } from './pickle';

export interface NpzStringArray {
  dtype: '|O';
  shape: number[];
  values: string[];
}

export type NpzMember = NpyArray | NpzStringArray;

export interface ReadNpzOptions {
  /** Member names (without `.npy`) to decode; the others are never inflated. Default: all. */
  names?: string[];
}

/**
 * Reads members of an .npz file. The archive is read into memory once (the OpenMIC npz is ~0.2 GB, mostly
 * `X`), but members not asked for are neither inflated nor decoded.
 */
export function readNpz(file: string, options: ReadNpzOptions = {}): Map<string, NpzMember> {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new DataError('ERR_DATA_NOT_FOUND', `cannot read ${file}: ${(err as Error).message}`, { input: file, cause: err });
  }
  const wanted = options.names ? new Set(options.names.map((n) => `${n}.npy`)) : undefined;
  let members: Record<string, Uint8Array>;
  try {
    members = unzipSync(bytes, { filter: (f) => (wanted ? wanted.has(f.name) : f.name.endsWith('.npy')) });
  } catch (err) {
    throw new DataError('ERR_DATA_NPZ', `${file}: not a readable zip/npz archive: ${(err as Error).message}`, { input: file, cause: err });
  }
  const out = new Map<string, NpzMember>();
  for (const [member, data] of Object.entries(members)) {
    const name = `${file}:${member}`;
    out.set(member.replace(/\.npy$/, ''), decodeMember(data, name));
  }
  if (options.names) {
    const missing = options.names.filter((n) => !out.has(n));
    if (missing.length > 0) throw new DataError('ERR_DATA_NPZ', `${file}: missing array(s) ${missing.join(', ')}`, { input: file });
  }
  return out;
}

function decodeMember(data: Uint8Array, name: string): NpzMember {
  const headerLen = npyHeaderLength(data.subarray(0, 12), name);
  const headerText = Buffer.from(data.buffer, data.byteOffset, Math.min(headerLen, data.byteLength)).toString('latin1');
  if (/'descr'\s*:\s*'\|O'/.test(headerText)) {
    const shapeMatch = /'shape'\s*:\s*\(([^)]*)\)/.exec(headerText);
    const shape = (shapeMatch?.[1] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .map(Number);
    const arr = unpickleStringArray(data.subarray(headerLen), name);
    const count = shape.reduce((a, b) => a * b, 1);
    if (count !== arr.values.length)
      throw new DataError('ERR_DATA_NPZ', `${name}: header shape (${shape.join(', ')}) but ${arr.values.length} pickled values`, { input: name });
    return { dtype: '|O', shape, values: arr.values };
  }
  return decodeNpy(data, name);
}
