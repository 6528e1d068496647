// The shape of the TypeScript, checked (docs/architecture.md, "The rooms"; docs/contracts.md, "Conventions"):
// - bindings/ is a leaf (it imports nothing from lib/), and in lib/ only addon.ts imports it;
// - across the folders of lib/ a file imports another folder only through its face: the folder's index.ts, or a
//   package entry of package.json's "exports" (calmkit/queue, calmkit/formats);
// - nothing but lib/cli/ imports lib/cli/;
// - a folder's index.ts only re-exports;
// - the folders of lib/ (and its ground files) import each other without a cycle.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { ROOT } from './helpers/paths';

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? filesUnder(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const SOURCES = [...filesUnder(path.join(ROOT, 'lib')), ...filesUnder(path.join(ROOT, 'bindings'))];

interface Import {
  from: string; // repository-relative module (the file without .ts)
  to: string; // repository-relative module, without extension (a folder's index as the folder/index)
  line: number;
}

// Static imports and re-exports (`import ... from`, `export ... from`) and dynamic import('...'), relative only.
const SPECIFIER = /(?:^|\n)[ \t]*(?:import|export)\b[^'";]*?\bfrom\s*['"](\.[^'"]*)['"]|\bimport\(\s*['"](\.[^'"]*)['"]\s*\)/g;

function resolveModule(fromFile: string, spec: string): string {
  const abs = path.resolve(path.dirname(fromFile), spec);
  if (fs.existsSync(`${abs}.ts`)) return path.relative(ROOT, abs);
  if (fs.existsSync(path.join(abs, 'index.ts'))) return path.relative(ROOT, path.join(abs, 'index'));
  return path.relative(ROOT, abs);
}

function importsOf(file: string): Import[] {
  const text = fs.readFileSync(file, 'utf8');
  const out: Import[] = [];
  for (const m of text.matchAll(SPECIFIER)) {
    const spec = m[1] ?? m[2]!;
    const line = text.slice(0, m.index).split('\n').length;
    out.push({ from: path.relative(ROOT, file).replace(/\.ts$/, ''), to: resolveModule(file, spec), line });
  }
  return out;
}

const IMPORTS = SOURCES.flatMap(importsOf);
const where = (i: Import) => `${i.from}:${i.line} imports ${i.to}`;

/** The room of a module: its folder under lib/ ('lib/store'), 'lib' for a ground file, or 'bindings'. */
function room(module: string): string {
  const parts = module.split('/');
  if (parts[0] === 'bindings') return 'bindings';
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : 'lib';
}

/** package.json's "exports" targets, as modules (dist/lib/x.js -> lib/x). */
function packageEntries(): Set<string> {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, string | { default?: string }> };
  const out = new Set<string>();
  for (const target of Object.values(pkg.exports)) {
    const file = typeof target === 'string' ? target : target.default;
    if (file?.startsWith('./dist/lib/')) out.add(file.slice('./dist/'.length).replace(/\.js$/, ''));
  }
  return out;
}

test('the scan sees the imports it checks (a test that reads nothing would pass anything)', (t) => {
  t.true(SOURCES.length > 50);
  t.true(IMPORTS.length > 200);
  t.true(IMPORTS.some((i) => i.from === 'lib/addon' && i.to === 'bindings/index'));
});

test('bindings/ is a leaf and only lib/addon.ts imports it', (t) => {
  const up = IMPORTS.filter((i) => i.from.startsWith('bindings/') && !i.to.startsWith('bindings/'));
  t.deepEqual(up.map(where), [], 'bindings/ imports only bindings/');
  const direct = IMPORTS.filter((i) => i.from.startsWith('lib/') && i.to.startsWith('bindings/') && i.from !== 'lib/addon');
  t.deepEqual(direct.map(where), [], 'lib/ reaches the addon through lib/addon.ts');
});

test('across the folders of lib/, a folder is imported only through its face (index.ts or a package entry)', (t) => {
  const entries = packageEntries();
  t.true(entries.has('lib/extraction/queue') && entries.has('lib/formats/index'));
  const bad = IMPORTS.filter((i) => {
    if (!i.to.startsWith('lib/') || room(i.to) === 'lib' || room(i.to) === room(i.from)) return false;
    return !i.to.endsWith('/index') && !entries.has(i.to);
  });
  t.deepEqual(bad.map(where), []);
});

test('nothing but lib/cli/ imports lib/cli/', (t) => {
  const bad = IMPORTS.filter((i) => room(i.to) === 'lib/cli' && room(i.from) !== 'lib/cli');
  t.deepEqual(bad.map(where), []);
});

test("a folder's index.ts only re-exports", (t) => {
  for (const file of SOURCES.filter(
    (f) => f.endsWith('index.ts') && path.dirname(f) !== path.join(ROOT, 'bindings') && path.dirname(f) !== path.join(ROOT, 'lib'),
  )) {
    const code = fs
      .readFileSync(file, 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .split('\n')
      .map((l) => l.replace(/\/\/.*$/, '').trim())
      .join('\n');
    // Every statement is an export ... from '...'.
    const statements = code
      .split(';')
      .map((s) => s.trim())
      .filter(Boolean);
    const other = statements.filter((s) => !/^export\s+(type\s+)?(\*|\{[\s\S]*\})\s+from\s+'[^']+'$/.test(s));
    t.deepEqual(other, [], path.relative(ROOT, file));
  }
});

test('the rooms of lib/ import each other without a cycle', (t) => {
  const edges = new Map<string, Set<string>>();
  for (const i of IMPORTS) {
    if (!i.from.startsWith('lib/') || !i.to.startsWith('lib/')) continue;
    const [a, b] = [room(i.from) === 'lib' ? i.from : room(i.from), room(i.to) === 'lib' ? i.to : room(i.to)];
    if (a === b) continue;
    if (!edges.has(a)) edges.set(a, new Set());
    edges.get(a)!.add(b);
  }
  // Depth-first search for a back edge; the cycle found is reported as a path.
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (n: string, trail: string[]) => {
    state.set(n, 'open');
    for (const m of edges.get(n) ?? []) {
      if (state.get(m) === 'open') cycles.push([...trail, n, m].slice(trail.indexOf(m) >= 0 ? trail.indexOf(m) : trail.length).join(' -> '));
      else if (!state.has(m)) visit(m, [...trail, n]);
    }
    state.set(n, 'done');
  };
  for (const n of edges.keys()) if (!state.has(n)) visit(n, []);
  t.deepEqual(cycles, []);
});
