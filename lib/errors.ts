// The CalmkitError family. Every error calmkit throws carries a stable `code`; the native codes are defined in
// native/core/error.h and map onto classes by family prefix (CODE_FAMILIES below).

/**
 * Every code calmkit raises, from the C++ core (native/core/error.h) and from lib/. test/error-codes.test.ts reads
 * both sources and fails when this list and what they can raise differ, so the union cannot drift.
 */
export const CALMKIT_ERROR_CODES = [
  'ERR_ABORTED',
  'ERR_ADDON_LOAD',
  'ERR_AUDIO_DECODE',
  'ERR_AUDIO_EMPTY',
  'ERR_AUDIO_IS_DIRECTORY',
  'ERR_AUDIO_NOT_FINITE',
  'ERR_AUDIO_NOT_FOUND',
  'ERR_AUDIO_UNREADABLE',
  'ERR_BENCH_FILE',
  'ERR_BENCH_MISMATCH',
  'ERR_BENCH_WRITE',
  'ERR_DATA_AUDIO_FORMAT',
  'ERR_DATA_CLASS_MAP',
  'ERR_DATA_CSV',
  'ERR_DATA_DEMO_TOOL',
  'ERR_DATA_DUPLICATE_KEY',
  'ERR_DATA_LABEL',
  'ERR_DATA_METADATA',
  'ERR_DATA_MISMATCH',
  'ERR_DATA_MISSING_AUDIO',
  'ERR_DATA_MISSING_FEATURES',
  'ERR_DATA_NOT_FINITE',
  'ERR_DATA_NOT_FOUND',
  'ERR_DATA_NPY_CORRUPT',
  'ERR_DATA_NPY_DTYPE',
  'ERR_DATA_NPY_FORMAT',
  'ERR_DATA_NPY_RANGE',
  'ERR_DATA_NPY_TRUNCATED',
  'ERR_DATA_NPZ',
  'ERR_DATA_PICKLE',
  'ERR_DATA_RECIPE',
  'ERR_DATA_SINGLE_CLASS',
  'ERR_DATA_SPLIT',
  'ERR_DATA_STORE_CORRUPT',
  'ERR_DATA_STORE_IO',
  'ERR_DATA_STORE_KEY',
  'ERR_DATA_STORE_NOT_FOUND',
  'ERR_DATA_STORE_SHAPE',
  'ERR_DATA_STORE_SPEC',
  'ERR_DATA_STUDY_IO',
  'ERR_DATA_UNKNOWN_INSTRUMENT',
  'ERR_DATA_VGGISH',
  'ERR_DEVICE',
  'ERR_DISPOSED',
  'ERR_INTERNAL',
  'ERR_INVALID_ARGUMENT',
  'ERR_MODEL_DISPOSED',
  'ERR_MODEL_FILE',
  'ERR_MODEL_FORMAT',
  'ERR_MODEL_MISMATCH',
  'ERR_MODEL_PRECISION',
  'ERR_OUTPUT_EXISTS',
  'ERR_PROBE',
  'ERR_PROBE_FILE',
  'ERR_PROBE_RECIPE',
  'ERR_PROBE_REPORT',
  'ERR_QUEUE_NAME',
  'ERR_QUEUE_REDIS',
  'ERR_QUEUE_REDIS_URL',
] as const;

/** The stable codes of calmkit's errors (CalmkitError.code). */
export type CalmkitErrorCode = (typeof CALMKIT_ERROR_CODES)[number];

const KNOWN_CODES: ReadonlySet<string> = new Set(CALMKIT_ERROR_CODES);

/** Whether `code` is one of calmkit's codes. */
export function isCalmkitErrorCode(code: unknown): code is CalmkitErrorCode {
  return typeof code === 'string' && KNOWN_CODES.has(code);
}

export class CalmkitError extends Error {
  readonly code: CalmkitErrorCode;
  /** The input (path, key, option) the error is about, when there is one. */
  readonly input?: string;
  constructor(code: CalmkitErrorCode, message: string, options?: { input?: string; cause?: unknown }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.code = code;
    if (options?.input !== undefined) this.input = options.input;
  }
}

/** Bad argument or option value (ranges, types, unknown names). */
export class ArgumentError extends CalmkitError {}
/** An audio input that cannot be used: missing, a directory, unreadable, not audio, empty, NaN. */
export class AudioError extends CalmkitError {}
/** A checkpoint that cannot be used: missing, truncated, not TorchScript, missing keys, wrong shapes. */
export class ModelError extends CalmkitError {}
/** A device that is not available (e.g. cuda without a CUDA build or GPU). */
export class DeviceError extends CalmkitError {}
/** Problems with datasets, labels, partitions and feature stores. */
export class DataError extends CalmkitError {}
/** Probe training and probe-set files. */
export class ProbeError extends CalmkitError {}
/** The extraction queue: bad Redis URLs or queue names, malformed jobs, jobs a worker cannot serve. */
export class QueueError extends CalmkitError {}
/** Benchmark reports that cannot be read or compared (`calmkit bench compare`): not JSON, another schema, damaged. */
export class BenchError extends CalmkitError {}
/** A call cancelled through its AbortSignal. */
export class AbortError extends CalmkitError {
  constructor(message = 'the operation was aborted', options?: { input?: string; cause?: unknown }) {
    super('ERR_ABORTED', message, options);
  }
}
/**
 * The AbortError for work cancelled through `signal`. The signal's reason is its `cause` (for
 * AbortSignal.timeout(), a TimeoutError), and a reason other than a plain abort is named in the message.
 */
export function abortError(message: string, signal?: AbortSignal, input?: string): AbortError {
  const reason: unknown = signal?.aborted ? signal.reason : undefined;
  const why = reason instanceof Error && reason.name !== 'AbortError' && reason.message ? ` (${reason.name}: ${reason.message})` : '';
  return new AbortError(message + why, { input, cause: reason });
}

/** Use of an object after dispose(). */
export class DisposedError extends CalmkitError {
  constructor(what: string) {
    super('ERR_DISPOSED', `${what} has been disposed`);
  }
}
/** The native addon could not be loaded, or failed unexpectedly. */
export class NativeError extends CalmkitError {}

type ErrorClass = new (code: CalmkitErrorCode, message: string, options?: { input?: string; cause?: unknown }) => CalmkitError;

// Codes map to classes by family prefix, so a new ERR_DATA_* or ERR_AUDIO_* code needs no table entry.
const CODE_FAMILIES: [prefix: string, cls: ErrorClass][] = [
  ['ERR_INVALID_ARGUMENT', ArgumentError],
  ['ERR_OUTPUT_', ArgumentError],
  ['ERR_AUDIO_', AudioError],
  ['ERR_MODEL_', ModelError],
  ['ERR_DEVICE', DeviceError],
  ['ERR_PROBE', ProbeError],
  ['ERR_DATA_', DataError],
  ['ERR_QUEUE_', QueueError],
  ['ERR_BENCH_', BenchError],
  ['ERR_ADDON_LOAD', NativeError],
  ['ERR_INTERNAL', NativeError],
];

/** The CalmkitError class for a code (NativeError for unknown codes). */
export function errorClassFor(code: string): ErrorClass {
  return CODE_FAMILIES.find(([prefix]) => code.startsWith(prefix))?.[1] ?? NativeError;
}

/**
 * Turns an error from the addon (an Error with a `code`) into its CalmkitError class. An abort names the reason
 * of `signal`, the signal that cancelled the call (see abortError).
 */
export function fromNative(err: unknown, input?: string, signal?: AbortSignal): CalmkitError {
  if (err instanceof CalmkitError) return err;
  const e = err as { code?: unknown; message?: unknown };
  // A code the addon raises is one of the list (test/error-codes.test.ts); anything else is a failure calmkit did
  // not foresee, and its own code, if any, stays in the message.
  const code: CalmkitErrorCode = isCalmkitErrorCode(e?.code) ? e.code : 'ERR_INTERNAL';
  const raw = typeof e?.message === 'string' ? e.message : String(err);
  const message = code === 'ERR_INTERNAL' && typeof e?.code === 'string' && e.code !== 'ERR_INTERNAL' ? `${e.code}: ${raw}` : raw;
  if (code === 'ERR_ABORTED') return signal?.aborted ? abortError(message, signal, input) : new AbortError(message, { input, cause: err });
  const Cls = errorClassFor(code);
  return new Cls(code, message, { input, cause: err });
}

/** Awaits a native promise and rethrows its failure as a CalmkitError (an abort with `signal`'s reason). */
export async function native<T>(p: () => Promise<T>, input?: string, signal?: AbortSignal): Promise<T> {
  try {
    return await p();
  } catch (err) {
    throw fromNative(err, input, signal);
  }
}

/** Calls a synchronous native function, rethrowing as a CalmkitError. */
export function nativeSync<T>(fn: () => T, input?: string): T {
  try {
    return fn();
  } catch (err) {
    throw fromNative(err, input);
  }
}

// --- argument checks: one wording for every bad option ----------------------------------------------------

/** An ArgumentError (ERR_INVALID_ARGUMENT) about `input` (an option name, a flag, a value). */
export function invalidArgument(message: string, input?: string): ArgumentError {
  return new ArgumentError('ERR_INVALID_ARGUMENT', message, input !== undefined ? { input } : undefined);
}

/** "a, b or c": how a list of allowed values reads in a message. */
export function orList(values: readonly string[]): string {
  return values.length < 2 ? values.join('') : `${values.slice(0, -1).join(', ')} or ${values[values.length - 1]}`;
}

/** `value` when it is one of `values`, else an ArgumentError: "<name> must be a, b or c; got 'x'". */
export function oneOf<T extends string>(name: string, values: readonly T[], value: unknown): T {
  if (typeof value === 'string' && (values as readonly string[]).includes(value)) return value as T;
  throw invalidArgument(`${name} must be ${orList(values)}; got '${String(value)}'`, name);
}

// --- type checks of public arguments: every public function runs these before it uses an argument, so a wrong
// type is an ArgumentError naming the argument, never a TypeError from deep inside ---------------------------

/** How a value reads in a message: its type, and the value itself when short. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  switch (typeof value) {
    case 'string':
      return value.length > 60 ? `a string of ${value.length} characters` : `'${value}'`;
    case 'number':
    case 'bigint':
    case 'boolean':
    case 'undefined':
      return String(value);
    case 'symbol':
      return 'a symbol';
    case 'function':
      return 'a function';
    default:
      return 'an object';
  }
}

/** `value` as an options object: undefined gives {}; anything but a plain object (null, an array, 42) is an ArgumentError. */
export function optionsObject<T extends object>(name: string, value: T | undefined): T {
  if (value === undefined) return {} as T;
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw invalidArgument(`${name} must be an object; got ${describeValue(value)}`, name);
  return value;
}

/** A non-empty string (a path, a key, a name). */
export function nonEmptyString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalidArgument(`${name} must be a non-empty string; got ${describeValue(value)}`, name);
  if (value.includes('\0')) throw invalidArgument(`${name} must not contain a NUL character`, name);
  return value;
}

/** An integer in [min, max] (max defaults to Number.MAX_SAFE_INTEGER), or undefined when optional and absent. */
export function integerArg(name: string, value: unknown, range: { min: number; max?: number }): number {
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < range.min || value > max) {
    throw invalidArgument(`${name} must be an integer in ${range.min}..${max}; got ${describeValue(value)}`, name);
  }
  return value;
}

/** A finite number in [min, max]. */
export function numberArg(name: string, value: unknown, range: { min?: number; max?: number } = {}): number {
  const min = range.min ?? -Number.MAX_VALUE;
  const max = range.max ?? Number.MAX_VALUE;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw invalidArgument(
      `${name} must be a finite number${range.min !== undefined || range.max !== undefined ? ` in [${min}, ${max}]` : ''}; got ${describeValue(value)}`,
      name,
    );
  }
  return value;
}

export function booleanArg(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalidArgument(`${name} must be true or false; got ${describeValue(value)}`, name);
  return value;
}

/** An optional callback. */
export function functionArg<F extends (...args: never[]) => unknown>(name: string, value: unknown): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw invalidArgument(`${name} must be a function; got ${describeValue(value)}`, name);
  return value as F;
}

/** An optional AbortSignal. */
export function signalArg(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw invalidArgument(`${name} must be an AbortSignal; got ${describeValue(value)}`, name);
  return value;
}

/** Every listed optional field of `o` has the given check applied when present (undefined means absent). */
export function optional<T>(o: object, key: string, check: (name: string, value: unknown) => T): T | undefined {
  const v = (o as Record<string, unknown>)[key];
  return v === undefined ? undefined : check(key, v);
}
