// Probe metrics against cases computed by hand (sklearn's conventions), including tied scores.
import test from 'ava';
import { binaryMetrics, macroMetrics } from '../lib/probes/metrics';
import { DataError } from '../lib/errors';

const close = (t: { true: (v: boolean, m?: string) => void }, a: number, b: number, what: string) => t.true(Math.abs(a - b) < 1e-9, `${what}: ${a} vs ${b}`);

test('distinct scores: counts, P/R/F1 of both classes, accuracy, AP and ROC-AUC', (t) => {
  const m = binaryMetrics([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1], [1, 1, 0, 1, 0, 1, 0, 0]);
  t.like(m, { n: 8, positives: 4, tp: 3, fp: 1, tn: 3, fn: 1 });
  close(t, m.precision, 0.75, 'precision');
  close(t, m.recall, 0.75, 'recall');
  close(t, m.f1, 0.75, 'f1');
  close(t, m.f1Absent, 0.75, 'f1 absent');
  close(t, m.accuracy, 0.75, 'accuracy');
  // Positives at ranks 1, 2, 4, 6: AP = (1 + 1 + 3/4 + 4/6) / 4.
  close(t, m.averagePrecision, (1 + 1 + 0.75 + 4 / 6) / 4, 'AP');
  // 13 of the 16 (positive, negative) pairs are ordered correctly.
  close(t, m.rocAuc, 13 / 16, 'ROC-AUC');
});

test('ties: a threshold at exactly 0.5 predicts absent; tied scores cross together (AP) and count half (AUC)', (t) => {
  const m = binaryMetrics([0.8, 0.8, 0.5, 0.5, 0.5, 0.2], [1, 0, 1, 1, 0, 0]);
  t.like(m, { tp: 1, fp: 1, fn: 2, tn: 2 });
  close(t, m.precision, 0.5, 'precision');
  close(t, m.recall, 1 / 3, 'recall');
  close(t, m.f1, 0.4, 'f1');
  close(t, m.f1Absent, 4 / 7, 'f1 absent');
  close(t, m.f1PresentAbsentMean, (0.4 + 4 / 7) / 2, 'pos/neg mean');
  close(t, m.accuracy, 0.5, 'accuracy');
  // Distinct thresholds 0.8 (P 1/2, R 1/3), 0.5 (P 3/5, R 1), 0.2 (P 1/2, R 1).
  close(t, m.averagePrecision, (1 / 3) * 0.5 + (2 / 3) * 0.6, 'AP');
  // Pairs: 0.8+ vs {0.8 tie, 0.5, 0.2} = 2.5; each 0.5+ vs {0.8, 0.5 tie, 0.2} = 1.5.
  close(t, m.rocAuc, 5.5 / 9, 'ROC-AUC');
});

test('all scores tied: AP is the prevalence and ROC-AUC one half', (t) => {
  const m = binaryMetrics([0.3, 0.3, 0.3, 0.3], [1, 0, 0, 0]);
  close(t, m.averagePrecision, 0.25, 'AP');
  close(t, m.rocAuc, 0.5, 'AUC');
  t.is(m.precision, 0, 'no predicted positives: precision 0 (sklearn zero_division)');
  t.is(m.f1, 0);
});

test('a single class makes AP and ROC-AUC undefined (NaN), and macro averages skip them', (t) => {
  const one = binaryMetrics([0.9, 0.2], [1, 1]);
  t.true(Number.isNaN(one.averagePrecision));
  t.true(Number.isNaN(one.rocAuc));
  close(t, one.recall, 0.5, 'recall');
  const two = binaryMetrics([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1], [1, 1, 0, 1, 0, 1, 0, 0]);
  const macro = macroMetrics([one, two]);
  t.is(macro.instruments, 2);
  t.is(macro.rankedInstruments, 1);
  close(t, macro.averagePrecision, two.averagePrecision, 'mAP over defined');
  close(t, macro.f1Present, (one.f1 + two.f1) / 2, 'present-class macro F1');
  close(t, macro.f1PresentAbsent, (one.f1PresentAbsentMean + two.f1PresentAbsentMean) / 2, 'present/absent macro F1');
  t.not(macro.f1Present, macro.f1PresentAbsent);
});

test('mismatched lengths are rejected', (t) => {
  // Mismatched lengths are a DataError like every other mismatch (was a plain RangeError before issue 14).
  t.throws(() => binaryMetrics([0.1, 0.2], [1]), { instanceOf: DataError, code: 'ERR_DATA_MISMATCH' });
});
