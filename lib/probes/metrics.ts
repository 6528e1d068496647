// Binary classification metrics of one instrument's probe, with sklearn's conventions: precision, recall and F1
// are 0 when undefined (no predicted / no actual positives); AP and ROC-AUC are NaN when the split holds a
// single class. A clip is predicted present when P(present) > threshold, like a logit > 0 and like sklearn's
// predict() on predict_proba (ties at exactly 0.5 go to "absent").
import { DataError, describeValue, invalidArgument, numberArg } from '../errors';

export interface BinaryMetrics {
  /** Rows evaluated, and how many of them are positive. */
  n: number;
  positives: number;
  tp: number;
  fp: number;
  tn: number;
  fn: number;
  /** Of the present class, at the threshold. */
  precision: number;
  recall: number;
  f1: number;
  /** F1 of the absent class, at the threshold. */
  f1Absent: number;
  /** (f1 + f1Absent) / 2: the per-instrument "macro avg" F1 of sklearn's classification_report. */
  f1PresentAbsentMean: number;
  accuracy: number;
  /** sklearn average_precision_score: sum over distinct thresholds of (R_k - R_k-1) * P_k. */
  averagePrecision: number;
  /** Area under the ROC curve; tied scores count one half (trapezoids over distinct thresholds). */
  rocAuc: number;
}

function ratio(num: number, den: number): number {
  return den === 0 ? 0 : num / den;
}

function f1Of(precision: number, recall: number): number {
  return precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
}

/** Indices of `scores` by descending score; ties keep their original order (ties are grouped later). */
function descendingOrder(scores: ArrayLike<number>): Int32Array {
  const order = Int32Array.from({ length: scores.length }, (_, i) => i);
  order.sort((a, b) => scores[b]! - scores[a]! || a - b);
  return order;
}

/** Average precision and ROC-AUC from one descending sweep over distinct score values. */
function rankingMetrics(scores: ArrayLike<number>, targets: ArrayLike<number>, positives: number): { ap: number; auc: number } {
  const n = scores.length;
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return { ap: NaN, auc: NaN };
  const order = descendingOrder(scores);
  let tp = 0;
  let fp = 0;
  let ap = 0;
  let auc = 0;
  let prevRecall = 0;
  let prevFpr = 0;
  let prevTpr = 0;
  for (let i = 0; i < n; ) {
    const s = scores[order[i]!];
    // Every row with this exact score crosses the threshold together.
    while (i < n && scores[order[i]!] === s) {
      if (targets[order[i]!]) tp++;
      else fp++;
      i++;
    }
    const recall = tp / positives;
    ap += (recall - prevRecall) * (tp / (tp + fp));
    prevRecall = recall;
    const tpr = recall;
    const fpr = fp / negatives;
    auc += ((fpr - prevFpr) * (tpr + prevTpr)) / 2;
    prevFpr = fpr;
    prevTpr = tpr;
  }
  return { ap, auc };
}

/** An array or typed array of numbers, else an ArgumentError naming it. */
function numberList(name: string, v: unknown): void {
  const ok = Array.isArray(v)
    ? v.every((x) => typeof x === 'number')
    : ArrayBuffer.isView(v) && !(v instanceof DataView) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array);
  if (!ok) throw invalidArgument(`${name} must be an array or typed array of numbers; got ${describeValue(v)}`, name);
}

/** All metrics of one instrument's test (or validation) predictions. */
export function binaryMetrics(probabilities: ArrayLike<number>, targets: ArrayLike<number>, threshold = 0.5): BinaryMetrics {
  numberList('probabilities', probabilities);
  numberList('targets', targets);
  numberArg('threshold', threshold);
  if (probabilities.length !== targets.length) {
    throw new DataError('ERR_DATA_MISMATCH', `binaryMetrics: ${probabilities.length} probabilities but ${targets.length} targets`);
  }
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  for (let i = 0; i < targets.length; i++) {
    const predicted = probabilities[i]! > threshold;
    if (targets[i]) {
      if (predicted) tp++;
      else fn++;
    } else if (predicted) fp++;
    else tn++;
  }
  const n = targets.length;
  const positives = tp + fn;
  const precision = ratio(tp, tp + fp);
  const recall = ratio(tp, tp + fn);
  const f1 = f1Of(precision, recall);
  const f1Absent = f1Of(ratio(tn, tn + fn), ratio(tn, tn + fp));
  const { ap, auc } = rankingMetrics(probabilities, targets, positives);
  return {
    n,
    positives,
    tp,
    fp,
    tn,
    fn,
    precision,
    recall,
    f1,
    f1Absent,
    f1PresentAbsentMean: (f1 + f1Absent) / 2,
    accuracy: ratio(tp + tn, n),
    averagePrecision: ap,
    rocAuc: auc,
  };
}

export interface MacroMetrics {
  /** Instruments averaged. */
  instruments: number;
  precision: number;
  recall: number;
  /** Mean over instruments of the present-class F1 (the OpenMIC baseline's 0.705-style figure). */
  f1Present: number;
  /** Mean over instruments of (present F1 + absent F1) / 2 (the Lerch-lab "macro" F1, 0.784-style). */
  f1PresentAbsent: number;
  accuracy: number;
  /** Mean AP (mAP) and ROC-AUC over the instruments where they are defined; see `rankedInstruments`. */
  averagePrecision: number;
  rocAuc: number;
  rankedInstruments: number;
}

function mean(values: number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
}

/** Unweighted means over instruments. */
export function macroMetrics(perInstrument: BinaryMetrics[]): MacroMetrics {
  if (!Array.isArray(perInstrument) || perInstrument.some((m) => m === null || typeof m !== 'object')) {
    throw invalidArgument(`perInstrument must be an array of BinaryMetrics; got ${describeValue(perInstrument)}`, 'perInstrument');
  }
  const ranked = perInstrument.filter((m) => Number.isFinite(m.averagePrecision) && Number.isFinite(m.rocAuc));
  return {
    instruments: perInstrument.length,
    precision: mean(perInstrument.map((m) => m.precision)),
    recall: mean(perInstrument.map((m) => m.recall)),
    f1Present: mean(perInstrument.map((m) => m.f1)),
    f1PresentAbsent: mean(perInstrument.map((m) => m.f1PresentAbsentMean)),
    accuracy: mean(perInstrument.map((m) => m.accuracy)),
    averagePrecision: mean(ranked.map((m) => m.averagePrecision)),
    rocAuc: mean(ranked.map((m) => m.rocAuc)),
    rankedInstruments: ranked.length,
  };
}
