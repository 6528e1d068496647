// Which clips a run covers: every clip of a dataset root (OpenMIC layout or any folder of audio) or a list of
// files, as {key, input} work items, and the disjoint shards that split them between machines.
import fs from 'node:fs';
import path from 'node:path';
import { AUDIO_EXTENSIONS, listAudioFiles } from '../audio';
import { DataError, describeValue, invalidArgument, nonEmptyString } from '../errors';
import { OpenMIC } from '../openmic';

export interface WorkItem {
  key: string;
  /** The audio file. */
  input: string;
}

/**
 * Every clip of a dataset root that has audio, in key order. An OpenMIC release layout (class-map.json) is
 * read through OpenMIC.open (its errata applied: the corrupted FMA tracks are left out); any other folder is
 * scanned for audio files, keyed by file name without extension.
 */
export function datasetItems(root: string): WorkItem[] {
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory())
    throw new DataError('ERR_DATA_NOT_FOUND', `dataset root ${root} is not a directory`, { input: root });
  if (fs.existsSync(path.join(root, 'class-map.json'))) return openmicItems(OpenMIC.open(root, { audio: 'skip', npz: 'ignore' }));
  const files = listAudioFiles(root);
  if (files.length === 0)
    throw new DataError('ERR_DATA_NOT_FOUND', `no audio files under ${root} (looked for ${AUDIO_EXTENSIONS.join(' ')}) and no class-map.json`, { input: root });
  return fileItems(files);
}

/** Every clip of an opened OpenMIC dataset, in key order. */
export function openmicItems(ds: OpenMIC): WorkItem[] {
  // Absolute paths: queue jobs carry them to workers whose working directory is anywhere.
  return ds.keys.map((key) => ({ key, input: path.resolve(ds.audioPath(key)) }));
}

/** Files as work items, key = base name without extension; two files with one key are a DataError. */
export function fileItems(files: readonly string[]): WorkItem[] {
  if (!Array.isArray(files)) throw invalidArgument(`files must be an array of paths; got ${describeValue(files)}`, 'files');
  files.forEach((f, i) => {
    nonEmptyString(`files[${i}]`, f);
  });
  const byKey = new Map<string, string>();
  for (const f of files) {
    const base = path.basename(f);
    const ext = path.extname(base);
    const key = ext ? base.slice(0, -ext.length) : base;
    if (key === '') throw new DataError('ERR_DATA_DUPLICATE_KEY', `cannot derive a sample key from ${f}`, { input: f });
    const prev = byKey.get(key);
    if (prev !== undefined)
      throw new DataError('ERR_DATA_DUPLICATE_KEY', `${prev} and ${f} both have the sample key '${key}' (keys are file names without extension); rename one`, {
        input: f,
      });
    byKey.set(key, path.resolve(f));
  }
  return [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, input]) => ({ key, input }));
}

export interface Shard {
  index: number;
  count: number;
}

/** `i/N` with 0 <= i < N. */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index < count)) throw invalidArgument(`--shard must be i/N with 0 <= i < N; got '${text}'`, '--shard');
  return { index, count };
}

/** The items whose position in key order is i mod N: shards are disjoint, cover everything, and balance. */
export function selectShard<T extends { key: string }>(items: readonly T[], shard: Shard): T[] {
  const sorted = items.slice().sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return sorted.filter((_, i) => i % shard.count === shard.index);
}
