#!/usr/bin/env node
// native/'s C++ style (.clang-format): `--check` fails on any file clang-format would change, `--write` rewrites
// them. A script rather than a shell glob so the file list (every .cpp/.h under native/) is the same in every shell.
// Plain JS: it runs before dist/ exists.

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
// The version whose output the tree is formatted with (Debian 12's); another major formats differently.
const PINNED_MAJOR = 14;

function sources(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.(cpp|h)$/.test(e.name)) out.push(path.relative(ROOT, p));
  }
  return out.sort();
}

function findClangFormat() {
  for (const bin of [process.env.CALMKIT_CLANG_FORMAT, `clang-format-${PINNED_MAJOR}`, 'clang-format'].filter(Boolean)) {
    const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return { bin, major: Number(/version (\d+)/.exec(r.stdout)?.[1]) };
  }
  return null;
}

const mode = process.argv[2];
if (mode !== '--check' && mode !== '--write') {
  console.error('usage: node scripts/clang-format.js --check|--write');
  process.exit(2);
}
const cf = findClangFormat();
if (!cf) {
  console.error('clang-format: not found; install it with `bash scripts/setup.sh` (Debian: apt-get install clang-format)');
  process.exit(1);
}
if (cf.major !== PINNED_MAJOR) {
  console.error(
    `clang-format: ${cf.bin} is version ${cf.major}, the tree is formatted with ${PINNED_MAJOR}; set CALMKIT_CLANG_FORMAT to a clang-format-${PINNED_MAJOR}`,
  );
  process.exit(1);
}
const files = sources(path.join(ROOT, 'native'));
const args = mode === '--check' ? ['--dry-run', '-Werror', ...files] : ['-i', ...files];
const r = spawnSync(cf.bin, args, { cwd: ROOT, encoding: 'utf8' });
if (r.status !== 0) {
  const bad = [...new Set(r.stderr.match(/^[^:\n]+\.(?:cpp|h)(?=:\d+:\d+: error)/gm) ?? [])];
  process.stderr.write(bad.length ? `clang-format: ${bad.length} file(s) not formatted (npm run format):\n  ${bad.join('\n  ')}\n` : r.stderr);
  process.exit(1);
}
console.log(`clang-format: ${files.length} native files ${mode === '--check' ? 'formatted' : 'rewritten'}`);
