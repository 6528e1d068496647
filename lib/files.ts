// Durable, atomic file publication on local and shared (NFS-like) filesystems. Readers must never see a
// partial file: content is written to a temp file in the destination's filesystem, fsynced, then made visible
// by one rename (replace) or one link (no-clobber), and the directory entry is fsynced.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Temp names carry host, pid and randomness so writers on different machines never collide. */
export function tempName(base: string): string {
  return `${base}.${os.hostname().replace(/[^A-Za-z0-9_-]/g, '_')}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
}

/** Creates `file` exclusively (fails if it exists), writes all of `data`, fsyncs and closes it. */
export function writeDurableExclusive(file: string, data: Uint8Array | string): void {
  const fd = fs.openSync(file, 'wx');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.byteLength) off += fs.writeSync(fd, buf, off, buf.byteLength - off);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** fsync of a directory makes a rename/link inside it durable; some filesystems refuse it, which is harmless. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // EISDIR/EINVAL/EPERM on filesystems without directory fsync: nothing more we can do.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Atomically replaces `file` with `data` (temp file in the same directory, fsync, rename, fsync dir). */
export function atomicReplace(file: string, data: Uint8Array | string): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, tempName(`.${path.basename(file)}`));
  try {
    writeDurableExclusive(tmp, data);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(dir);
}

/**
 * Makes the durable temp file `tmp` visible as `final` only if `final` does not exist yet; returns false
 * (leaving `tmp` in place) when it does. link(2) is atomic and no-clobber on POSIX filesystems including
 * NFS; where hard links are unsupported we fall back to an exclusive-create check plus rename.
 */
export function publishNoClobber(tmp: string, final: string): boolean {
  try {
    fs.linkSync(tmp, final);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw err;
    // Fallback: reserve the name with O_EXCL, then rename over our own reservation.
    try {
      fs.closeSync(fs.openSync(final, 'wx'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
    fs.renameSync(tmp, final);
    fsyncDir(path.dirname(final));
    return true;
  }
  fs.rmSync(tmp, { force: true });
  fsyncDir(path.dirname(final));
  return true;
}

/** True for a Node system error (it has an errno `code` such as ENOTDIR), the kind fs calls throw. */
export function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}

/** What a system error from an fs call means for `target`, in words ("a parent of it is a file, not a folder"). */
export function explainFsError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOTDIR':
      return 'a part of the path is a file, not a folder';
    case 'EEXIST':
      return err.syscall === 'mkdir' ? 'a file of that name is in the way of a folder' : 'it already exists';
    case 'ENOENT':
      return 'no such file or folder';
    case 'EISDIR':
      return 'it is a folder, not a file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOSPC':
      return 'no space left on the device';
    case 'EROFS':
      return 'the filesystem is read-only';
    case 'ENAMETOOLONG':
      return 'the path is too long';
    case 'ELOOP':
      return 'symlink loop (too many levels of symbolic links)';
    case 'EMFILE':
    case 'ENFILE':
      return 'too many open files';
    case 'EDQUOT':
      return 'disk quota exceeded';
    case 'EIO':
      return 'input/output error (a failing disk or network filesystem)';
    case NOT_REGULAR:
      return err.message;
    default:
      return `${err.code}: ${err.message.replace(/^[A-Z]+: /, '')}`;
  }
}

/** The reason an fs call failed, in words: explainFsError's for a system error, else the error's message. */
export function fsReason(err: unknown): string {
  if (isSystemError(err)) return explainFsError(err);
  return err instanceof Error ? err.message : String(err);
}

/** The names in a folder, or none where it cannot be listed (missing, not a folder): for sweeps that may find nothing. */
export function namesIn(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Runs `fn`; a system error it throws becomes `wrap(reason)` (a typed CalmkitError naming the target), anything
 * else passes through. Where calmkit writes files, so a path that cannot be written is never a raw EEXIST.
 */
export function withFsErrors<T>(fn: () => T, wrap: (reason: string, cause: NodeJS.ErrnoException) => Error): T {
  try {
    return fn();
  } catch (err) {
    if (isSystemError(err)) throw wrap(explainFsError(err), err);
    throw err;
  }
}

/** The code of the error openRegular throws for a path that exists but is no regular file (its message says what it is). */
export const NOT_REGULAR = 'ENOTREGULAR';

function notRegularReason(st: fs.Stats): string {
  if (st.isDirectory()) return 'it is a folder, not a file';
  if (st.isFIFO()) return 'it is a FIFO (named pipe), not a regular file';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'it is a device, not a regular file';
  if (st.isSocket()) return 'it is a socket, not a regular file';
  return 'it is not a regular file';
}

function notRegularError(file: string, st: fs.Stats): NodeJS.ErrnoException {
  const err = new Error(notRegularReason(st)) as NodeJS.ErrnoException;
  // A directory keeps its errno (EISDIR); a FIFO, device or socket has none, so it gets a code of our own.
  err.code = st.isDirectory() ? 'EISDIR' : NOT_REGULAR;
  err.syscall = 'open';
  err.path = file;
  return err;
}

/**
 * Opens `file` for reading only if it is a regular file, and never blocks: a FIFO would block open() and read()
 * forever, a directory or a device is not data (the native loaders' rule, core/files.cpp). stat first, then an
 * O_NONBLOCK open, then fstat of what was opened (the path may have been swapped in between). Throws the fs
 * error (ENOENT, ELOOP, EACCES ...) or one with code EISDIR / NOT_REGULAR; `withFsErrors` words either.
 */
export function openRegular(file: string): { fd: number; size: number } {
  const st = fs.statSync(file);
  if (!st.isFile()) throw notRegularError(file, st);
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  try {
    const opened = fs.fstatSync(fd);
    if (!opened.isFile()) throw notRegularError(file, opened);
    return { fd, size: opened.size };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** The whole of a regular file (openRegular's rules), read with positioned reads up to the size fstat gave. */
export function readRegularFile(file: string): Buffer {
  const { fd, size } = openRegular(file);
  try {
    const buf = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const n = fs.readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    return got === size ? buf : buf.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Why `file` cannot be read as a regular file (a FIFO would block a read forever, a directory or device is not
 * data), or undefined when it can: stat before any open, as the native loaders do.
 */
export function notRegularFile(file: string): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    return isSystemError(err) ? explainFsError(err) : String(err);
  }
  return st.isFile() ? undefined : notRegularReason(st);
}
