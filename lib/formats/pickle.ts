// A restricted reader for ONE kind of pickle: a numpy object ndarray whose elements are strings, as np.save
// writes for `sample_key` in openmic-2018.npz. General unpickling executes arbitrary callables, so this is
// not a pickle implementation: it is a small stack machine over the opcodes such a pickle uses (protocols 2-5,
// written by Python 2 or 3), it never calls anything, GLOBAL may only name numpy's _reconstruct/ndarray/dtype,
// and the result must have exactly the shape of "ndarray reconstructed with an object dtype and a list of
// str". Anything else is a DataError.
import { DataError } from '../errors';

const ALLOWED_GLOBALS = new Set(['numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct', 'numpy.ndarray', 'numpy.dtype']);

class Global {
  constructor(readonly name: string) {}
}
/** A call that a real unpickler would make; we only record it and check its shape afterwards. */
class Reduced {
  state: unknown = undefined;
  constructor(
    readonly fn: Global,
    readonly args: unknown[],
  ) {}
}
const MARK = Symbol('mark');
type Value = unknown;

export interface PickledStringArray {
  shape: number[];
  values: string[];
}

/** Decodes the pickle of a numpy object array of str; `name` appears in errors. */
export function unpickleStringArray(bytes: Uint8Array, name = '<pickle>'): PickledStringArray {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (why: string): never => {
    throw new DataError('ERR_DATA_PICKLE', `${name}: not a pickled numpy array of strings (${why})`, { input: name });
  };
  const stack: Value[] = [];
  const memo = new Map<number, Value>();
  let pos = 0;
  const need = (n: number) => {
    if (pos + n > buf.length) fail(`truncated at byte ${pos}`);
  };
  const u8 = () => {
    need(1);
    return buf[pos++]!;
  };
  const u16 = () => {
    need(2);
    const v = buf.readUInt16LE(pos);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = buf.readUInt32LE(pos);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = buf.readBigUInt64LE(pos);
    pos += 8;
    if (v > BigInt(buf.length)) fail('length out of range');
    return Number(v);
  };
  const bytesOf = (n: number) => {
    need(n);
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const line = () => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated line');
    const s = buf.toString('latin1', pos, end);
    pos = end + 1;
    return s;
  };
  const pop = (): Value => {
    if (stack.length === 0) fail('stack underflow');
    return stack.pop();
  };
  const popMark = (): Value[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) fail('no MARK');
    const items = stack.slice(i + 1);
    stack.length = i;
    return items;
  };
  const global = (module: string, qual: string) => {
    const full = `${module}.${qual}`;
    if (!ALLOWED_GLOBALS.has(full)) fail(`refuses global ${full}`);
    return new Global(full);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80:
        u8();
        break; // PROTO
      case 0x95:
        u64();
        break; // FRAME: framing only groups bytes; content follows inline
      case 0x63: {
        const m = line();
        const q = line();
        stack.push(global(m, q));
        break;
      } // GLOBAL
      case 0x93: {
        const q = pop();
        const m = pop();
        if (typeof m !== 'string' || typeof q !== 'string') fail('bad STACK_GLOBAL');
        stack.push(global(m as string, q as string));
        break;
      }
      case 0x4b:
        stack.push(u8());
        break; // BININT1
      case 0x4d:
        stack.push(u16());
        break; // BININT2
      case 0x4a: {
        need(4);
        stack.push(buf.readInt32LE(pos));
        pos += 4;
        break;
      } // BININT
      case 0x8a: {
        // LONG1 (small ints only: numpy writes none, Python 2 may)
        const n = u8();
        if (n > 6) fail('LONG1 too large');
        const b = bytesOf(n);
        stack.push(n === 0 ? 0 : b.readIntLE(0, n));
        break;
      }
      case 0x4e:
        stack.push(null);
        break; // NONE
      case 0x88:
        stack.push(true);
        break; // NEWTRUE
      case 0x89:
        stack.push(false);
        break; // NEWFALSE
      case 0x29:
        stack.push([]);
        break; // EMPTY_TUPLE
      case 0x85:
        stack.push([pop()]);
        break; // TUPLE1
      case 0x86: {
        const b = pop();
        const a = pop();
        stack.push([a, b]);
        break;
      } // TUPLE2
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push([a, b, c]);
        break;
      } // TUPLE3
      case 0x28:
        stack.push(MARK);
        break; // MARK
      case 0x74:
        stack.push(popMark());
        break; // TUPLE
      case 0x5d:
        stack.push({ list: [] as Value[] });
        break; // EMPTY_LIST
      case 0x6c:
        stack.push({ list: popMark() });
        break; // LIST
      case 0x61: {
        const v = pop();
        const l = stack[stack.length - 1] as { list?: Value[] };
        if (!l?.list) fail('APPEND to a non-list');
        l.list!.push(v);
        break;
      }
      case 0x65: {
        const items = popMark();
        const l = stack[stack.length - 1] as { list?: Value[] };
        if (!l?.list) fail('APPENDS to a non-list');
        for (const v of items) l.list!.push(v);
        break;
      }
      case 0x71:
        memo.set(u8(), stack[stack.length - 1]);
        break; // BINPUT
      case 0x72:
        memo.set(u32(), stack[stack.length - 1]);
        break; // LONG_BINPUT
      case 0x94:
        memo.set(memo.size, stack[stack.length - 1]);
        break; // MEMOIZE
      case 0x68: {
        const k = u8();
        if (!memo.has(k)) fail('bad BINGET');
        stack.push(memo.get(k));
        break;
      }
      case 0x6a: {
        const k = u32();
        if (!memo.has(k)) fail('bad LONG_BINGET');
        stack.push(memo.get(k));
        break;
      }
      case 0x8c:
        stack.push(bytesOf(u8()).toString('utf8'));
        break; // SHORT_BINUNICODE
      case 0x58:
        stack.push(bytesOf(u32()).toString('utf8'));
        break; // BINUNICODE
      case 0x8d:
        stack.push(bytesOf(u64()).toString('utf8'));
        break; // BINUNICODE8
      // Python 2 str (and bytes in protocol 3+): numpy loads these with encoding='latin1'.
      case 0x55:
        stack.push({ bytes: bytesOf(u8()).toString('latin1') });
        break; // SHORT_BINSTRING
      case 0x54:
        stack.push({ bytes: bytesOf(u32()).toString('latin1') });
        break; // BINSTRING
      case 0x43:
        stack.push({ bytes: bytesOf(u8()).toString('latin1') });
        break; // SHORT_BINBYTES
      case 0x42:
        stack.push({ bytes: bytesOf(u32()).toString('latin1') });
        break; // BINBYTES
      case 0x52: {
        const args = pop();
        const fn = pop();
        if (!(fn instanceof Global) || !Array.isArray(args)) fail('bad REDUCE');
        stack.push(new Reduced(fn as Global, args as unknown[]));
        break;
      }
      case 0x62: {
        const state = pop();
        const obj = stack[stack.length - 1];
        if (!(obj instanceof Reduced)) fail('BUILD on a non-object');
        (obj as Reduced).state = state;
        break;
      }
      case 0x2e: {
        // STOP
        if (stack.length !== 1) fail('stack not empty at STOP');
        return checkArray(stack[0], fail);
      }
      default:
        fail(`opcode 0x${op.toString(16)} at byte ${pos - 1} is not allowed`);
    }
  }
}

function checkArray(top: Value, fail: (why: string) => never): PickledStringArray {
  // _reconstruct(ndarray, (0,), b'b') with state (version, shape, dtype, is_fortran, list)
  if (!(top instanceof Reduced) || !top.fn.name.endsWith('multiarray._reconstruct')) fail('top object is not an ndarray');
  const arr = top as Reduced;
  if (!(arr.args[0] instanceof Global) || (arr.args[0] as Global).name !== 'numpy.ndarray') fail('not an ndarray');
  const state = arr.state;
  if (!Array.isArray(state) || state.length !== 5) fail('unexpected ndarray state');
  const [, shape, dtype, , data] = state as unknown[];
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && (d as number) >= 0)) fail('bad shape');
  if (!(dtype instanceof Reduced) || dtype.fn.name !== 'numpy.dtype') fail('bad dtype');
  const dtypeName = (dtype as Reduced).args[0];
  if (dtypeName !== 'O8' && (dtypeName as { bytes?: string })?.bytes !== 'O8') fail(`dtype is not object (${JSON.stringify(dtypeName)})`);
  const list = (data as { list?: Value[] })?.list;
  if (!list) fail('data is not a list');
  const values = list!.map((v) =>
    typeof v === 'string' ? v : typeof (v as { bytes?: unknown })?.bytes === 'string' ? (v as { bytes: string }).bytes : fail('an element is not a string'),
  );
  const count = (shape as number[]).reduce((a, b) => a * b, 1);
  if (count !== values.length) fail(`shape holds ${count} elements, the list ${values.length}`);
  return { shape: shape as number[], values };
}
