import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataError } from '../lib/errors';
import { fromHalfBits, toHalfBits } from '../lib/formats/float16';
import { decodeNpy, encodeNpy, readNpy, readNpyHeader, readNpyRows, writeNpy } from '../lib/formats/npy';
import { readNpz } from '../lib/formats/npz';
import { unpickleStringArray } from '../lib/formats/pickle';
import { PYTHON as PY } from './helpers/paths';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-npy-'));
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));

function py(code: string): string {
  return execFileSync(PY, ['-c', code], { encoding: 'utf8', cwd: tmp });
}

test('numpy-written files of every dtype decode exactly', (t) => {
  py(`
import numpy as np
np.save('f4.npy', np.arange(24, dtype='<f4').reshape(2, 3, 4) / 7)
np.save('f8.npy', np.array([[1.5, -2.25], [1e300, 0.0]]))
np.save('i8.npy', np.array([-(2**62), 5, 2**40], dtype='<i8'))
np.save('i4.npy', np.array([[-7, 8]], dtype='<i4'))
np.save('u1.npy', np.array([0, 255, 17], dtype='u1'))
np.save('b1.npy', np.array([True, False, True]))
np.save('scalar.npy', np.float32(3.5))
np.save('empty.npy', np.zeros((0, 5), dtype='<f4'))
`);
  const f4 = readNpy(path.join(tmp, 'f4.npy'));
  t.deepEqual(f4.shape, [2, 3, 4]);
  t.is(f4.dtype, '<f4');
  t.is((f4.data as Float32Array)[8], Math.fround(8 / 7));
  t.deepEqual(Array.from(readNpy(path.join(tmp, 'f8.npy')).data as Float64Array), [1.5, -2.25, 1e300, 0]);
  t.deepEqual(Array.from(readNpy(path.join(tmp, 'i8.npy')).data as BigInt64Array), [-(2n ** 62n), 5n, 2n ** 40n]);
  t.deepEqual(Array.from(readNpy(path.join(tmp, 'i4.npy')).data as Int32Array), [-7, 8]);
  t.deepEqual(Array.from(readNpy(path.join(tmp, 'u1.npy')).data as Uint8Array), [0, 255, 17]);
  const b1 = readNpy(path.join(tmp, 'b1.npy'));
  t.is(b1.dtype, '|b1');
  t.deepEqual(Array.from(b1.data as Uint8Array), [1, 0, 1]);
  const scalar = readNpy(path.join(tmp, 'scalar.npy'));
  t.deepEqual(scalar.shape, []);
  t.deepEqual(Array.from(scalar.data as Float32Array), [3.5]);
  t.deepEqual(readNpy(path.join(tmp, 'empty.npy')).shape, [0, 5]);
});

test('our files load in numpy with the same values, and start data 64-byte aligned', (t) => {
  const values = Float32Array.from({ length: 60 }, (_, i) => Math.sin(i) * 1000);
  writeNpy(path.join(tmp, 'ours_f4.npy'), values, { dtype: '<f4', shape: [3, 4, 5] });
  writeNpy(path.join(tmp, 'ours_f2.npy'), values, { dtype: '<f2', shape: [12, 5] });
  writeNpy(path.join(tmp, 'ours_i8.npy'), [1, -2, 3], { dtype: '<i8' });
  writeNpy(path.join(tmp, 'ours_i4.npy'), [1, -2], { dtype: '<i4', shape: [1, 2] });
  writeNpy(path.join(tmp, 'ours_u1.npy'), [9, 200], { dtype: '|u1' });
  writeNpy(path.join(tmp, 'ours_b1.npy'), [1, 0, 0], { dtype: '|b1' });
  fs.writeFileSync(path.join(tmp, 'ours.json'), JSON.stringify(Array.from(values)));
  const out = py(`
import numpy as np, json
v = np.array(json.load(open('ours.json')), dtype=np.float32)
a = np.load('ours_f4.npy'); assert a.dtype == np.float32 and a.shape == (3, 4, 5) and (a.ravel() == v).all()
h = np.load('ours_f2.npy'); assert h.dtype == np.float16 and h.shape == (12, 5)
assert (h.ravel().view(np.uint16) == v.astype(np.float16).view(np.uint16)).all()
assert np.load('ours_i8.npy').tolist() == [1, -2, 3] and np.load('ours_i8.npy').dtype == np.int64
assert np.load('ours_i4.npy').tolist() == [[1, -2]]
assert np.load('ours_u1.npy').tolist() == [9, 200]
b = np.load('ours_b1.npy'); assert b.dtype == np.bool_ and b.tolist() == [True, False, False]
print('ok')
`);
  t.is(out.trim(), 'ok');
  for (const f of ['ours_f4.npy', 'ours_f2.npy', 'ours_b1.npy']) t.is(readNpyHeader(path.join(tmp, f)).dataOffset % 64, 0);
});

test('float16 conversion matches numpy on every half and on awkward floats', (t) => {
  // All 65,536 bit patterns widen exactly like numpy; a spread of float32 values (ties, subnormals,
  // overflow edge) narrows to numpy's bits.
  const probes = new Float32Array(4000);
  for (let i = 0; i < 2000; i++) probes[i] = (i - 1000) * 32.9771;
  for (let i = 2000; i < 4000; i++) probes[i] = Math.fround(2 ** (-26 + (i - 2000) / 40) * (i % 2 ? 1 : -1));
  probes[0] = 65519.99;
  probes[1] = 65520;
  probes[2] = 2 ** -25;
  probes[3] = 2 ** -25 * 1.0001;
  probes[4] = 1 + 2 ** -11; // a tie: rounds to even (1.0)
  probes[5] = 1 + 3 * 2 ** -11; // a tie: rounds up to even
  probes[6] = NaN;
  fs.writeFileSync(path.join(tmp, 'probes.f32'), Buffer.from(probes.buffer));
  py(`
import numpy as np, warnings
warnings.simplefilter('ignore')  # the overflow probes are meant to overflow
np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32).tofile('widen.f32')
np.fromfile('probes.f32', dtype=np.float32).astype(np.float16).view(np.uint16).tofile('narrow.u16')
`);
  const widen = new Float32Array(fs.readFileSync(path.join(tmp, 'widen.f32')).buffer.slice(0));
  let bad = 0;
  for (let h = 0; h < 65536; h++) {
    const ours = Math.fround(fromHalfBits(h));
    if (!(Object.is(ours, widen[h]) || (Number.isNaN(ours) && Number.isNaN(widen[h]!)))) bad++;
  }
  t.is(bad, 0);
  const narrow = new Uint16Array(fs.readFileSync(path.join(tmp, 'narrow.u16')).buffer.slice(0));
  const mismatches: string[] = [];
  for (let i = 0; i < probes.length; i++) if (toHalfBits(probes[i]!) !== narrow[i]) mismatches.push(`${probes[i]}: ${toHalfBits(probes[i]!)} vs ${narrow[i]}`);
  t.deepEqual(mismatches.slice(0, 5), []);
});

test('row ranges are read without loading the file and agree with numpy slicing', (t) => {
  py(`
import numpy as np
np.save('m.npy', np.arange(50 * 7, dtype='<f4').reshape(50, 7))
np.save('m16.npy', (np.arange(20 * 3, dtype='<f4').reshape(20, 3) / 3).astype(np.float16))
`);
  const rows = readNpyRows(path.join(tmp, 'm.npy'), 10, 13);
  t.deepEqual(rows.shape, [3, 7]);
  t.deepEqual(
    Array.from(rows.data as Float32Array),
    Array.from({ length: 21 }, (_, i) => 70 + i),
  );
  t.deepEqual(readNpyRows(path.join(tmp, 'm.npy'), 50, 50).shape, [0, 7]);
  const h = readNpyRows(path.join(tmp, 'm16.npy'), 19, 20);
  t.is((h.data as Float32Array)[2], fromHalfBits(toHalfBits(59 / 3)));
  const err = t.throws(() => readNpyRows(path.join(tmp, 'm.npy'), 40, 51), { instanceOf: DataError });
  t.is(err?.code, 'ERR_DATA_NPY_RANGE');
});

test('truncated, corrupt and unsupported files are DataErrors naming the file', (t) => {
  const good = encodeNpy(new Float32Array(40), { dtype: '<f4', shape: [10, 4] });
  const cut = path.join(tmp, 'cut.npy');
  fs.writeFileSync(cut, good.subarray(0, good.length - 3));
  for (const fn of [() => readNpy(cut), () => readNpyRows(cut, 0, 1), () => readNpyHeader(cut)]) {
    const err = t.throws(fn, { instanceOf: DataError });
    t.is(err?.code, 'ERR_DATA_NPY_TRUNCATED');
    t.true(err!.message.includes(cut));
  }
  const junk = path.join(tmp, 'junk.npy');
  fs.writeFileSync(junk, 'hello, this is not numpy at all');
  t.is(t.throws(() => readNpy(junk), { instanceOf: DataError })?.code, 'ERR_DATA_NPY_FORMAT');
  const long = Buffer.concat([good, Buffer.from([1, 2, 3, 4])]);
  t.is(t.throws(() => decodeNpy(long, 'long.npy'), { instanceOf: DataError })?.code, 'ERR_DATA_NPY_CORRUPT');
  py(`import numpy as np; np.save('c16.npy', np.zeros(3, dtype=np.complex64)); np.save('f.npy', np.asfortranarray(np.zeros((2, 3), dtype='<f4')))`);
  t.is(t.throws(() => readNpy(path.join(tmp, 'c16.npy')), { instanceOf: DataError })?.code, 'ERR_DATA_NPY_DTYPE');
  t.regex(t.throws(() => readNpy(path.join(tmp, 'f.npy')), { instanceOf: DataError })!.message, /Fortran/);
  t.is(t.throws(() => readNpy(path.join(tmp, 'absent.npy')), { instanceOf: DataError })?.code, 'ERR_DATA_NOT_FOUND');
});

test('npz with an object-array sample_key reads without unpickling in general', (t) => {
  py(`
import numpy as np
keys = np.array(sorted(['000046_3840', '000135_483840', '155311_7680']), dtype=object)
np.savez('a.npz', sample_key=keys, Y_true=np.array([[0.5, 0.9], [0.1, 0.5], [0.5, 0.5]]), Y_mask=np.array([[False, True], [True, False], [False, False]]))
np.savez_compressed('c.npz', sample_key=keys, X=np.arange(3 * 10 * 4).reshape(3, 10, 4))
big = np.array(['k%05d' % i for i in range(2500)], dtype=object)
np.save('big.npy', big, allow_pickle=True)
import pickle
class Evil:
    def __reduce__(self):
        return (print, ('pwned',))
np.save('evil.npy', np.array([Evil()], dtype=object), allow_pickle=True)
`);
  const a = readNpz(path.join(tmp, 'a.npz'));
  const sk = a.get('sample_key')!;
  t.is(sk.dtype, '|O');
  t.deepEqual((sk as { values: string[] }).values, ['000046_3840', '000135_483840', '155311_7680']);
  t.deepEqual(Array.from(a.get('Y_mask')!.dtype === '|b1' ? (a.get('Y_mask') as { data: Uint8Array }).data : []), [0, 1, 1, 0, 0, 0]);
  const c = readNpz(path.join(tmp, 'c.npz'), { names: ['sample_key'] });
  t.deepEqual([...c.keys()], ['sample_key']);
  const bigBytes = fs.readFileSync(path.join(tmp, 'big.npy'));
  const start = bigBytes.indexOf(0x0a) + 1;
  const big = unpickleStringArray(bigBytes.subarray(start), 'big.npy');
  t.is(big.values.length, 2500);
  t.is(big.values[2499], 'k02499');
  const evil = fs.readFileSync(path.join(tmp, 'evil.npy'));
  const err = t.throws(() => unpickleStringArray(evil.subarray(evil.indexOf(0x0a) + 1), 'evil.npy'), { instanceOf: DataError });
  t.is(err?.code, 'ERR_DATA_PICKLE');
  t.regex(err!.message, /refuses global builtins\.print|not allowed/);
  t.is(t.throws(() => readNpz(path.join(tmp, 'a.npz'), { names: ['X'] }), { instanceOf: DataError })?.code, 'ERR_DATA_NPZ');
});
