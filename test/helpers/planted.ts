// The planted problem for attention probes: segment features in which an instrument is audible only in a short
// part of each clip where it plays, so the mean over the clip dilutes it. Shared by test/probes-planted.test.ts and
// benchmarks/attention.ts.
//
// Every clip is S segments of `dim` standard-normal values. Each instrument has a unit direction u; in a clip
// where it is present, `run` consecutive segments at a random place get `strength * u` added (run = S: it plays
// throughout). Absent clips get nothing. The mean over segments therefore carries strength * run / S of signal
// against noise of 1 / sqrt(S), while the segments that hold the instrument carry all of it.
import { normal, rng } from './probe-data';

export interface PlantedSpec {
  clips: number;
  segments: number;
  dim: number;
  instruments: number;
  /** Consecutive segments in which a present instrument is audible (segments: throughout). */
  run: number;
  strength: number;
  /** Fraction of clips where an instrument is present. */
  positiveRate?: number;
  seed: number;
  /** Split fractions: train, validation; the rest is test. */
  train?: number;
  val?: number;
}

export interface PlantedSplit {
  rows: Int32Array;
  targets: Uint8Array;
}

export interface PlantedProblem {
  /** [clips, segments, dim] row-major. */
  segments: Float32Array;
  /** The mean over each clip's segments: [clips, dim]. */
  means: Float32Array;
  dim: number;
  S: number;
  tasks: { instrument: string; train: PlantedSplit; val: PlantedSplit; test: PlantedSplit }[];
  /** Per instrument and clip, the first segment where it plays (-1: absent). */
  onsets: Int32Array[];
}

export function plantedProblem(spec: PlantedSpec): PlantedProblem {
  const r = rng(spec.seed);
  const { clips, segments: S, dim } = spec;
  const x = new Float32Array(clips * S * dim);
  for (let i = 0; i < x.length; i++) x[i] = normal(r);
  const order = Int32Array.from({ length: clips }, (_, i) => i);
  for (let i = clips - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const nTrain = Math.round(clips * (spec.train ?? 0.6));
  const nVal = Math.round(clips * (spec.val ?? 0.15));
  const parts = [order.subarray(0, nTrain), order.subarray(nTrain, nTrain + nVal), order.subarray(nTrain + nVal)];
  const tasks: PlantedProblem['tasks'] = [];
  const onsets: Int32Array[] = [];
  for (let k = 0; k < spec.instruments; k++) {
    const u = Array.from({ length: dim }, () => normal(r));
    const norm = Math.hypot(...u);
    const onset = new Int32Array(clips).fill(-1);
    const present = new Uint8Array(clips);
    for (let c = 0; c < clips; c++) {
      if (r() >= (spec.positiveRate ?? 0.4)) continue;
      present[c] = 1;
      const at = Math.floor(r() * (S - spec.run + 1));
      onset[c] = at;
      for (let s = at; s < at + spec.run; s++) {
        for (let j = 0; j < dim; j++) x[(c * S + s) * dim + j] += (spec.strength * u[j]!) / norm;
      }
    }
    const split = (rows: Int32Array): PlantedSplit => {
      const sorted = Int32Array.from(rows).sort();
      return { rows: sorted, targets: Uint8Array.from(sorted, (c) => present[c]!) };
    };
    tasks.push({ instrument: `instrument${k}`, train: split(parts[0]!), val: split(parts[1]!), test: split(parts[2]!) });
    onsets.push(onset);
  }
  const means = new Float32Array(clips * dim);
  for (let c = 0; c < clips; c++) {
    for (let j = 0; j < dim; j++) {
      let sum = 0;
      for (let s = 0; s < S; s++) sum += x[(c * S + s) * dim + j]!;
      means[c * dim + j] = sum / S;
    }
  }
  return { segments: x, means, dim, S, tasks, onsets };
}
