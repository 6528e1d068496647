// Synthetic probe problems with a planted linear signal and a known label-noise rate, shared by the probe tests.

/** A small deterministic PRNG (mulberry32) so fixtures do not depend on Math.random. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function normal(r: () => number): number {
  const u = Math.max(r(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

export interface SynthTask {
  instrument: string;
  train: { rows: Int32Array; targets: Uint8Array };
  val: { rows: Int32Array; targets: Uint8Array };
  test: { rows: Int32Array; targets: Uint8Array };
  /** The noise-free rule's decision for each test row: the Bayes-optimal classifier. */
  oracleTest: Uint8Array;
}

export interface SynthSpec {
  instrument: string;
  /** Probability that a label is flipped. */
  flip: number;
  /** Rule: present when w.x > threshold (w a unit vector). */
  threshold?: number;
  train: number;
  val: number;
  test: number;
}

/** Standard-normal features shared by all tasks; each task labels its own random rows by its own rule. */
export function synthProblem(opts: { n: number; dim: number; seed: number; tasks: SynthSpec[] }): { features: Float32Array; dim: number; tasks: SynthTask[] } {
  const r = rng(opts.seed);
  const { n, dim } = opts;
  const features = new Float32Array(n * dim);
  for (let i = 0; i < features.length; i++) features[i] = normal(r);
  const tasks = opts.tasks.map((spec) => {
    const w = Array.from({ length: dim }, () => normal(r));
    const norm = Math.hypot(...w);
    const rows = Int32Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [rows[i], rows[j]] = [rows[j], rows[i]];
    }
    let at = 0;
    const make = (count: number) => {
      const picked = rows.slice(at, at + count);
      at += count;
      const targets = new Uint8Array(count);
      const oracle = new Uint8Array(count);
      picked.forEach((row, k) => {
        let s = 0;
        for (let j = 0; j < dim; j++) s += (w[j] / norm) * features[row * dim + j];
        oracle[k] = s > (spec.threshold ?? 0) ? 1 : 0;
        targets[k] = r() < spec.flip ? 1 - oracle[k] : oracle[k];
      });
      return { rows: picked, targets, oracle };
    };
    const train = make(spec.train);
    const val = make(spec.val);
    const test = make(spec.test);
    return {
      instrument: spec.instrument,
      train: { rows: train.rows, targets: train.targets },
      val: { rows: val.rows, targets: val.targets },
      test: { rows: test.rows, targets: test.targets },
      oracleTest: test.oracle,
    };
  });
  return { features, dim, tasks };
}
