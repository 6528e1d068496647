// CalmkitErrorCode cannot drift: the exported list of codes equals the set of codes the sources can raise, read
// from the C++ core and the glue (every "ERR_..." string literal under native/) and from lib/ and bindings/ (every
// 'ERR_...' literal; a literal ending in '_' is a family prefix of errors.ts, not a code). A new code in either
// language without its entry, or an entry nothing raises any more, fails here.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { CALMKIT_ERROR_CODES, CalmkitError, NativeError, errorClassFor, fromNative, isCalmkitErrorCode, type CalmkitErrorCode } from '../lib/errors';
import { ROOT } from './helpers/paths';

function files(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p, ext));
    else if (ext.test(e.name)) out.push(p);
  }
  return out;
}

// The list itself is not a use: without this cut every listed code would count as raised.
const LIST = /export const CALMKIT_ERROR_CODES = \[[^\]]*\] as const;/;

function codesIn(list: string[], literal: RegExp): Map<string, string> {
  const found = new Map<string, string>();
  for (const f of list) {
    for (const m of fs.readFileSync(f, 'utf8').replace(LIST, '').matchAll(literal)) {
      const code = m[1]!;
      if (!code.endsWith('_') && !found.has(code)) found.set(code, path.relative(ROOT, f));
    }
  }
  return found;
}

const nativeCodes = codesIn(files(path.join(ROOT, 'native'), /\.(h|cpp)$/), /"(ERR_[A-Z0-9_]+)"/g);
const tsCodes = codesIn([...files(path.join(ROOT, 'lib'), /\.ts$/), ...files(path.join(ROOT, 'bindings'), /\.ts$/)], /'(ERR_[A-Z0-9_]+)'/g);

test('CALMKIT_ERROR_CODES is exactly the codes the core and lib can raise', (t) => {
  const raised = new Map([...nativeCodes, ...tsCodes]);
  const listed = new Set<string>(CALMKIT_ERROR_CODES);
  const unlisted = [...raised].filter(([c]) => !listed.has(c)).map(([c, f]) => `${c} (${f})`);
  const unraised = [...listed].filter((c) => !raised.has(c));
  t.deepEqual(unlisted, [], 'raised but missing from CALMKIT_ERROR_CODES (lib/errors.ts)');
  t.deepEqual(unraised, [], 'listed but raised nowhere');
  t.true(nativeCodes.size >= 18 && tsCodes.size >= 40, `the scan found the codes (${nativeCodes.size} native, ${tsCodes.size} TypeScript)`);
  t.is(new Set(CALMKIT_ERROR_CODES).size, CALMKIT_ERROR_CODES.length, 'no code twice');
  t.regex(fs.readFileSync(path.join(ROOT, 'lib', 'errors.ts'), 'utf8'), LIST, 'the list is where the scan cuts it out');
});

test("every code of the C++ core maps onto its family's class, so a native failure reaches JS typed", (t) => {
  // ERR_ABORTED becomes an AbortError in fromNative; ERR_INTERNAL is a NativeError by design.
  for (const code of nativeCodes.keys()) {
    if (code === 'ERR_ABORTED' || code === 'ERR_INTERNAL') continue;
    t.not(errorClassFor(code), NativeError, `${code} has a family in CODE_FAMILIES`);
  }
});

test('a code from the addon outside the list becomes ERR_INTERNAL and keeps the original code in its message', (t) => {
  t.true(isCalmkitErrorCode('ERR_MODEL_FILE'));
  t.false(isCalmkitErrorCode('ERR_SOMETHING_NEW'));
  const known = fromNative(Object.assign(new Error('m.pt: not a checkpoint'), { code: 'ERR_MODEL_FILE' }));
  t.is(known.code, 'ERR_MODEL_FILE');
  const unknown = fromNative(Object.assign(new Error('what happened'), { code: 'ERR_SOMETHING_NEW' }));
  t.true(unknown instanceof CalmkitError);
  t.is(unknown.code satisfies CalmkitErrorCode, 'ERR_INTERNAL');
  t.is(unknown.message, 'ERR_SOMETHING_NEW: what happened');
});
