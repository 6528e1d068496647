import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
/** The real OpenMIC-2018 files the suite reads (CC BY 4.0; attribution in its NOTICE.md), kept in the repository. */
export const OPENMIC = path.join(ROOT, 'test', 'fixtures', 'openmic-2018');
export const GENUINE_CLIP = path.join(OPENMIC, 'audio', '000', '000046_3840.ogg');
export const EMPTY_WAV = path.join(OPENMIC, 'empty.wav');
/** The project's Python (scripts/setup.sh: .venv with PyPI's torch 2.11 and numpy); CALMKIT_PYTHON overrides. */
export const PYTHON = process.env.CALMKIT_PYTHON ?? path.join(ROOT, '.venv', 'bin', 'python');

export function tempDir(prefix = 'calmkit-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
