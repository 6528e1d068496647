// File formats calmkit reads and writes, by hand and without native code: .npy/.npz (with a restricted pickle
// reader for string arrays), IEEE float16, and the Ogg Vorbis header. The `calmkit/formats` entry.
export {
  readNpy,
  writeNpy,
  encodeNpy,
  decodeNpy,
  readNpyHeader,
  readNpyRows,
  NPY_DTYPES,
  encodeNpyHeader,
  decodeNpyHeader,
  encodeElements,
  itemSize,
} from './npy';
export type { NpyArray, NpyDtype, NpyData, NpyHeader, EncodeNpyOptions } from './npy';
export { readNpz } from './npz';
export type { NpzMember, NpzStringArray, ReadNpzOptions } from './npz';
export { toHalfBits, fromHalfBits, float32ToHalf, halfToFloat32 } from './float16';
export { oggVorbisInfo } from './ogg';
export type { OggVorbisInfo } from './ogg';
