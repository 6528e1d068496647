// Reads what an Ogg Vorbis file says about itself (channels, rate, length) from its page headers, without
// decoding: the identification header is the first packet, and the last page's granule position is the
// number of PCM frames. Used to validate renders and dataset clips without the native addon.
import fs from 'node:fs';
import { DataError } from '../errors';

export interface OggVorbisInfo {
  channels: number;
  sampleRate: number;
  /** PCM frames per channel (granule position of the last page). */
  frames: number;
  nominalBitrate: number;
  serial: number;
  pages: number;
}

export function oggVorbisInfo(file: string): OggVorbisInfo {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    throw new DataError('ERR_DATA_NOT_FOUND', `cannot read ${file}: ${(err as Error).message}`, { input: file, cause: err });
  }
  const bad = (why: string) => new DataError('ERR_DATA_AUDIO_FORMAT', `${file}: not a valid Ogg Vorbis file (${why})`, { input: file });
  let pos = 0;
  let pages = 0;
  let lastGranule = -1n;
  let ident: Buffer | undefined;
  let serial = -1;
  while (pos < buf.length) {
    if (pos + 27 > buf.length || buf.toString('latin1', pos, pos + 4) !== 'OggS') throw bad(`no page at byte ${pos}`);
    const granule = buf.readBigInt64LE(pos + 6);
    const nSegs = buf[pos + 26]!;
    if (pos + 27 + nSegs > buf.length) throw bad('truncated page header');
    let bodyLen = 0;
    for (let i = 0; i < nSegs; i++) bodyLen += buf[pos + 27 + i]!;
    const body = pos + 27 + nSegs;
    if (body + bodyLen > buf.length) throw bad(`truncated page at byte ${pos}`);
    if (pages === 0) {
      serial = buf.readUInt32LE(pos + 14);
      ident = buf.subarray(body, body + bodyLen);
    }
    if (granule >= 0n) lastGranule = granule;
    pages++;
    pos = body + bodyLen;
  }
  if (!ident || ident.length < 30 || ident[0] !== 1 || ident.toString('latin1', 1, 7) !== 'vorbis')
    throw bad('first packet is not a Vorbis identification header');
  return {
    channels: ident[11]!,
    sampleRate: ident.readUInt32LE(12),
    nominalBitrate: ident.readInt32LE(20),
    frames: Number(lastGranule),
    serial,
    pages,
  };
}
