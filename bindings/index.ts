// The thin, private loader of the native addon. The public API lives in lib/; nothing outside lib/ should
// import this file. One clear multi-line error when the addon cannot be loaded.
import fs from 'node:fs';
import path from 'node:path';
import { NativeError } from '../lib/errors';
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
  throw new NativeError('ERR_ADDON_LOAD', addonLoadMessage(root, tried, lastError, explicit), { cause: lastError });
}

/**
 * What to do when calmkit.node cannot be loaded, worded for where calmkit is: installed in a project's
 * node_modules (the usual case: nothing of calmkit's repository is there) or a checkout of calmkit itself.
 */
export function addonLoadMessage(root: string, tried: string[], error: unknown, explicit?: string): string {
  const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
  const installed = root.split(path.sep).includes('node_modules');
  const built = fs.existsSync(path.join(root, 'build', 'Release', 'calmkit.node'));
  const steps = installed
    ? [
        built
          ? '  - The addon is built but does not load: if the LibTorch it was built against moved or was removed, rebuild it: npm rebuild calmkit'
          : '  - Build it: npm rebuild calmkit --foreground-scripts. Its install step names each missing requirement (cmake, a C++ compiler, pkg-config, libsndfile, libsoxr, LibTorch) with the command that installs it.',
        '  - npm may have skipped calmkit\'s install script (npm 11+ asks before running dependencies\' install scripts): npm install-scripts approve calmkit, then npm rebuild calmkit.',
        '  - Another LibTorch: CALMKIT_TORCH_DIR=<folder with TorchConfig.cmake> npm rebuild calmkit.',
        '  - Or point CALMKIT_ADDON_PATH at a calmkit.node built elsewhere for this platform.',
      ]
    : [
        built
          ? '  - The addon is built but does not load: rebuild it against the LibTorch that is there now: npm run build:native'
          : '  - Build it: npm run build:native (after bash scripts/setup.sh, which installs the system packages and the .venv with torch).',
        '  - Another LibTorch: CALMKIT_TORCH_DIR=<folder with TorchConfig.cmake> npm run build:native.',
        '  - Or point CALMKIT_ADDON_PATH at a calmkit.node built elsewhere.',
      ];
  const fixes = explicit ? [`  - CALMKIT_ADDON_PATH is set (${explicit}): point it at a calmkit.node built for this machine, or unset it to load calmkit's own build.`] : steps;
  return [
    `could not load the native addon (calmkit.node) for Node ${process.versions.node} on ${process.platform}-${process.arch}.`,
    `Tried: ${tried.join('; ')}.`,
    `Reason: ${reason}`,
    'To fix:',
    ...fixes,
  ].join('\n');
}

export function binding(): RawBinding {
  return loadAddon().binding;
}
