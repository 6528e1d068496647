// The thin, private loader of the native addon. The public API lives in lib/; nothing outside lib/ should
// import this file. One clear multi-line error when the addon cannot be loaded.
import fs from 'node:fs';
import path from 'node:path';
import type { RawBinding } from './raw';

export type { RawBinding } from './raw';

export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        if (JSON.parse(fs.readFileSync(pj, 'utf8')).name === 'calmkit') return dir;
      } catch {
        // keep walking up
      }
    }
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..');
}

let cached: { binding: RawBinding; path: string } | undefined;

export function addonPath(): string {
  return loadAddon().path;
}

// libgomp reads its settings once, when LibTorch loads it with the addon. Its default spin-waiting turns two
// threads into a 3-30x slowdown whenever another process shares the cores (seen here); passive waiting costs
// microseconds per parallel region on an idle machine. A user's own setting wins.
function defaultOpenMpSettings(): void {
  if (process.env.OMP_WAIT_POLICY === undefined) process.env.OMP_WAIT_POLICY = 'PASSIVE';
}

export function loadAddon(): { binding: RawBinding; path: string } {
  if (cached) return cached;
  defaultOpenMpSettings();
  const root = packageRoot();
  const tried: string[] = [];
  const explicit = process.env.CALMKIT_ADDON_PATH;
  let lastError: unknown;
  if (explicit) {
    tried.push(`CALMKIT_ADDON_PATH=${explicit}`);
    try {
      cached = { binding: require(explicit) as RawBinding, path: explicit };
      return cached;
    } catch (err) {
      lastError = err;
    }
  } else {
    try {
      // node-gyp-build looks in build/Release, build/Debug and prebuilds/<platform>-<arch>.
      const nodeGypBuild = require('node-gyp-build') as { (dir: string): unknown; resolve(dir: string): string };
      tried.push(`node-gyp-build in ${root} (build/Release, build/Debug, prebuilds/${process.platform}-${process.arch})`);
      const resolved = nodeGypBuild.resolve(root);
      cached = { binding: require(resolved) as RawBinding, path: resolved };
      return cached;
    } catch (err) {
      lastError = err;
    }
  }
  const reason = lastError instanceof Error ? lastError.message.split('\n')[0] : String(lastError);
  const e = new Error(
    [
      'calmkit: could not load the native addon (calmkit.node).',
      `Tried: ${tried.join('; ')}.`,
      `Reason: ${reason}`,
      'To fix:',
      '  1. Install the system libraries: sudo bash scripts/setup.sh (libtorch-dev, libopenblas0-openmp, libsndfile1-dev, libsoxr-dev, cmake).',
      '  2. Build the addon: npm run build:native (set CALMKIT_TORCH_DIR to use another LibTorch, e.g. a CUDA one).',
      '  3. If the addon was built against another LibTorch, make sure that LibTorch\'s lib/ is on LD_LIBRARY_PATH.',
      '  Or point CALMKIT_ADDON_PATH at a calmkit.node you built elsewhere.',
    ].join('\n'),
  );
  (e as Error & { code: string }).code = 'ERR_ADDON_LOAD';
  throw e;
}

export function binding(): RawBinding {
  return loadAddon().binding;
}
