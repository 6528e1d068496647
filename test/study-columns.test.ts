// The study's columns in isolation: where a Jukebox segment lies in time for each formatting, and the comparison
// table with its differences and extraction costs. The whole study runs in test/study-cli.test.ts.
import test from 'ava';
import { resolveSettings } from '../lib/extraction';
import { compareVariants, comparisonCsv, comparisonMarkdown, jukeboxSegmentTimes } from '../lib/study';
import type { TableRow } from '../lib/probes';

// The 5B model's geometry: 128 samples a token at 44.1 kHz, 8192 tokens a window (23.78 s).
const FIVE_B = { hop: 128, sampleRate: 44100, nCtx: 8192 };
const settings = (formatting: 'tile' | 'upsample' | 'none', extra: Record<string, number> = {}) =>
  resolveSettings({ model: { id: 'm' }, layers: [36], pooling: 'segments', segmentSeconds: 1, formatting, ...extra });

const near = (a: [number, number] | undefined, b: [number, number]) => !!a && Math.abs(a[0] - b[0]) < 1e-12 && Math.abs(a[1] - b[1]) < 1e-12;

test('segment times: 345-token segments in seconds of the clip (untiled, upsampled) or of the input (tiled)', (t) => {
  const second = (345 * 128) / 44100; // 1 s rounds to 345 tokens
  const tile = jukeboxSegmentTimes(settings('tile'), FIVE_B, 24);
  t.is(tile.spans.length, 24);
  t.true(near(tile.spans[1], [second, 2 * second]));
  t.true(near(tile.spans[23], [23 * second, (8192 * 128) / 44100]), 'the last segment ends with the window');
  t.regex(tile.axis, /seconds of the input \(the clip tiled to 62 s, so it repeats\)/);
  const up = jukeboxSegmentTimes(settings('upsample'), FIVE_B, 24);
  t.true(Math.abs(up.spans[23]![1] - (8192 * 128) / 44100 / 6.2) < 1e-12, 'the window holds the first 3.84 s of the clip');
  t.regex(up.axis, /seconds of the clip \(upsampled 6.2x: the window holds its first 3.84 s\)/);
  const none = jukeboxSegmentTimes(settings('none'), FIVE_B, 10);
  t.true(near(none.spans[9], [9 * second, 10 * second]));
  t.is(none.axis, 'seconds of the clip');
  const tokens = jukeboxSegmentTimes(resolveSettings({ model: { id: 'm' }, pooling: 'segments', segmentTokens: 100, formatting: 'none' }), FIVE_B, 2);
  t.true(near(tokens.spans[1], [(100 * 128) / 44100, (200 * 128) / 44100]));
});

const row = (instrument: string, f1: number): TableRow => ({
  instrument,
  hidden: [],
  dropout: 0.5,
  l2: 0,
  valLoss: 0.5,
  valAccuracy: 0.5,
  precision: f1,
  recall: f1,
  f1,
  accuracy: f1,
  averagePrecision: f1,
  rocAuc: f1,
  f1PresentAbsent: f1,
  testPositives: 1,
  testNegatives: 1,
});

test("the comparison: every column, the paper's difference, each column against the first, extraction costs", (t) => {
  const c = compareVariants(
    [
      { name: 'concatenation', rows: [row('piano', 0.5), row('violin', 0.7)], macroF1: 0.6 },
      { name: 'upsampling', rows: [row('piano', 0.4)], macroF1: 0.4 },
      { name: 'untiled', rows: [row('piano', 0.75), row('violin', 0.75)], macroF1: 0.75 },
      { name: 'vggish (mean)', rows: [row('piano', 0.25), row('violin', 0.5)], macroF1: 0.375 },
    ],
    { concatenation: 2, upsampling: 2.5, untiled: 0.5 },
  );
  t.deepEqual(c.variants, ['concatenation', 'upsampling', 'untiled', 'vggish (mean)']);
  t.is(c.rows[0]!.difference, 0.4 - 0.5);
  t.true(Number.isNaN(c.rows[1]!.f1.upsampling!), 'an instrument a column did not train is NaN');
  t.deepEqual(c.macroVsFirst, { concatenation: 0, upsampling: 0.4 - 0.6, untiled: 0.75 - 0.6, 'vggish (mean)': 0.375 - 0.6 });
  t.deepEqual(c.extractionSecondsPerClip, { concatenation: 2, upsampling: 2.5, untiled: 0.5, 'vggish (mean)': null });
  const md = comparisonMarkdown(c);
  t.regex(md, /\| instrument \| F1 concatenation \| F1 upsampling \| F1 untiled \| F1 vggish \(mean\) \| upsampling − concatenation \|/);
  t.regex(md, /\| macro − concatenation \| {2}\| -0\.200 \| \+0\.150 \| -0\.225 \| \|/);
  t.regex(md, /\| extraction s\/clip \| 2\.00 \| 2\.50 \| 0\.500 \| n\/a \| \|/);
  const csv = comparisonCsv(c).split('\n');
  t.is(csv[0], 'instrument,f1_concatenation,f1_upsampling,f1_untiled,"f1_vggish (mean)",difference');
  t.is(csv[4], 'extraction_seconds_per_clip,2,2.5,0.5,,');
});
