// The build's choice of LibTorch (cmake/CalmkitTorch.cmake): a path that holds no LibTorch is a configure error
// naming it, never a silent fall-back to another LibTorch; the project's .venv torch is found by default.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, tempDir } from './helpers/paths';

function configure(env: NodeJS.ProcessEnv, extra: string[] = []): { status: number | null; out: string } {
  const dir = tempDir('calmkit-cmake-');
  try {
    // Configure only (no build): it stops at the LibTorch check or finishes in seconds.
    const r = spawnSync('cmake', ['-S', ROOT, '-B', dir, '-DCALMKIT_AUDIO=OFF', ...extra], { encoding: 'utf8', env: { ...process.env, ...env } });
    // CMake wraps long messages: compare with whitespace collapsed.
    return { status: r.status, out: (r.stdout + r.stderr).replace(/\s+/g, ' ') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('CALMKIT_TORCH_DIR or Torch_DIR naming a folder without LibTorch is an error naming the path', (t) => {
  const bogus = path.join(ROOT, 'no-libtorch-here');
  const a = configure({ CALMKIT_TORCH_DIR: bogus });
  t.not(a.status, 0);
  t.true(a.out.includes(`CALMKIT_TORCH_DIR is '${bogus}', which holds no LibTorch`), a.out);
  const b = configure({ CALMKIT_TORCH_DIR: '' }, [`-DTorch_DIR=${bogus}`]);
  t.not(b.status, 0);
  t.true(b.out.includes(`Torch_DIR is '${bogus}', which holds no LibTorch`), b.out);
});

test('by default the torch of the project .venv is found: version 2.11.0 with CUDA', (t) => {
  const r = configure({ CALMKIT_TORCH_DIR: '', Torch_DIR: '' });
  t.is(r.status, 0, r.out);
  t.regex(r.out, /calmkit: LibTorch 2\.11\.0 from \.venv \(.*\.venv\/lib\/python3[^/]*\/site-packages\/torch\/share\/cmake\/Torch\), CUDA: ON/);
});
