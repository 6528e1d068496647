// A checkpoint's identity, as feature stores, probe sets and queue jobs name it.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { ModelError, nonEmptyString } from '../errors';
import { openRegular, withFsErrors } from '../files';

export const MODEL_ID_PREFIX = 'fl1m-sha256:';

/**
 * Identity of a checkpoint file without reading all of a 5 GB archive: sha256 over (size, first MiB, last MiB).
 * A calmkit checkpoint is a zip (torch.jit.save); its central directory sits in the last MiB and holds the
 * CRC-32 and size of every member, so a change to any tensor changes the id even when it sits mid-file.
 */
export function modelId(file: string): string {
  nonEmptyString('file', file);
  // Opening a FIFO would block this (the JS) thread until a writer came: regular files only (openRegular).
  const { fd, size } = withFsErrors(
    () => openRegular(file),
    (reason, cause) => new ModelError('ERR_MODEL_FILE', `cannot open model ${file}: ${reason}`, { input: file, cause }),
  );
  try {
    const MiB = 1 << 20;
    const hash = crypto.createHash('sha256').update(`calmkit-model-id:${size}:`);
    const read = (pos: number, len: number) => {
      const buf = Buffer.alloc(len);
      let got = 0;
      while (got < len) {
        const n = fs.readSync(fd, buf, got, len - got, pos + got);
        if (n === 0) break;
        got += n;
      }
      return buf.subarray(0, got);
    };
    hash.update(read(0, Math.min(MiB, size)));
    if (size > MiB) hash.update(read(Math.max(MiB, size - MiB), Math.min(MiB, size - MiB)));
    return MODEL_ID_PREFIX + hash.digest('hex');
  } finally {
    fs.closeSync(fd);
  }
}

export function isModelId(s: string): boolean {
  return new RegExp(`^${MODEL_ID_PREFIX}[0-9a-f]{64}$`).test(s);
}
