import { OPENMIC, PYTHON } from './helpers/paths';
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataError, type CalmkitErrorCode } from '../lib/errors';
import { OpenMIC, readGururaniSplit, type OpenMICOptions } from '../lib/openmic';
import { Rng } from '../lib/random';

const FIXTURES = OPENMIC;
const TRAIN = fs.readFileSync(path.join(FIXTURES, 'partitions/split01_train.csv'), 'utf8').split('\n').filter(Boolean);
const TEST = fs.readFileSync(path.join(FIXTURES, 'partitions/split01_test.csv'), 'utf8').split('\n').filter(Boolean);
const INSTRUMENTS = Object.keys(JSON.parse(fs.readFileSync(path.join(FIXTURES, 'class-map.json'), 'utf8')));
const GURURANI = path.join(FIXTURES, 'attentionmic-gururani2019/gururani2019_trainval_split_keys.csv');
const HEADER = 'sample_key,instrument,relevance,num_responses';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-openmic-'));
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** A release-layout root with the real class map and split files and the given labels CSV lines. */
function makeRoot(labelLines: string[] | null, extra: (root: string) => void = () => {}): string {
  const root = path.join(tmp, `root${n++}`);
  fs.mkdirSync(path.join(root, 'partitions'), { recursive: true });
  fs.copyFileSync(path.join(FIXTURES, 'class-map.json'), path.join(root, 'class-map.json'));
  for (const f of ['split01_train.csv', 'split01_test.csv']) fs.copyFileSync(path.join(FIXTURES, 'partitions', f), path.join(root, 'partitions', f));
  if (labelLines) fs.writeFileSync(path.join(root, 'openmic-2018-aggregated-labels.csv'), `${[HEADER, ...labelLines].join('\n')}\n`);
  extra(root);
  return root;
}

const NO_AUDIO: OpenMICOptions = { audio: 'ignore' };

/** Seeded labels in the release's style over the first `nTrain`/`nTest` real keys, for a few instruments. */
function syntheticLabels(nTrain: number, nTest: number, instruments: string[], seed = 1): string[] {
  const rng = new Rng(seed);
  const lines: string[] = [];
  for (const key of [...TRAIN.slice(0, nTrain), ...TEST.slice(0, nTest)].sort()) {
    for (const inst of instruments) {
      if (rng.next() < 0.3) continue;
      const conf = 0.2 + 0.8 * rng.next();
      const rel = rng.next() < 0.4 ? 0.5 + conf / 2 : 0.5 - conf / 2;
      lines.push(`${key},${inst},${rel},3`);
    }
  }
  return lines;
}

test('label semantics: > 0.5 present, < 0.5 absent, exactly 0.5 or no row unlabelled', (t) => {
  const [a, b] = [TRAIN[0]!, TEST[0]!];
  const root = makeRoot([`${a},clarinet,0.17104999999999998,3`, `${a},flute,0.9,3`, `${a},piano,0.5,2`, `${b},guitar,1.0,4`, `${b},voice,0.0,3`]);
  const ds = OpenMIC.open(root, NO_AUDIO);
  t.deepEqual(ds.instruments, INSTRUMENTS);
  t.is(ds.target(a, 'clarinet'), 0);
  t.is(ds.target(a, 'flute'), 1);
  t.is(ds.target(a, 'piano'), undefined);
  t.is(ds.target(a, 'organ'), undefined);
  t.is(ds.target(b, 'guitar'), 1);
  t.is(ds.target(b, 6), undefined);
  t.deepEqual(
    ds.labels(a).map((l) => [l.instrument, l.target]),
    [
      ['clarinet', 0],
      ['flute', 1],
    ],
  );
  t.deepEqual(ds.report.unlabelledRows, [{ key: a, instrument: 'piano', line: 4 }]);
  const m = ds.labelMatrix([a]);
  t.is(
    m.yMask.reduce((s, v) => s + v, 0),
    2,
  );
  t.is(m.yTrue[INSTRUMENTS.indexOf('piano')], 0.5);
  const counts = ds.labelCounts();
  t.deepEqual(counts.find((c) => c.instrument === 'flute')!.train, { pos: 1, neg: 0, unlabelled: ds.train.length - 1 });
  t.is(ds.audioPath(a), path.join(root, 'audio', a.slice(0, 3), `${a}.ogg`));
});

test('errata: corrupted tracks are skipped with a report, hand corrections are applied', (t) => {
  const root = makeRoot(['095253_134400,piano,0.2,3', '095263_96000,voice,0.1,3', `${TRAIN[0]},piano,0.9,3`]);
  const ds = OpenMIC.open(root, NO_AUDIO);
  t.is(ds.train.length, 14915 - 8);
  t.is(ds.test.length, 5085 - 2);
  t.is(ds.report.skipped.length, 10);
  t.true(ds.report.skipped.every((s) => s.reason === 'corrupted-source'));
  t.deepEqual(
    ds.report.corrections.map((c) => [c.key, c.action]),
    [
      ['095253_134400', 'overridden'],
      ['095263_96000', 'added'],
      ['113025_99840', 'added'],
    ],
  );
  t.is(ds.report.droppedLabelRows, 2);
  t.false(ds.train.includes('095253_134400'));
  const kept = OpenMIC.open(root, { ...NO_AUDIO, errata: { skipCorrupted: false } });
  t.is(kept.train.length, 14915);
  t.is(kept.target('095253_134400', 'piano'), 1);
  t.is(kept.target('095263_96000', 'mallet_percussion'), 1);
  t.is(kept.target('095263_96000', 'voice'), 0);
  const raw = OpenMIC.open(root, { ...NO_AUDIO, errata: { skipCorrupted: false, applyCorrections: false } });
  t.is(raw.target('095253_134400', 'piano'), 0);
});

test('stratified validation: 15% of each class, seeded and deterministic', (t) => {
  const root = makeRoot(syntheticLabels(600, 150, ['piano', 'drums', 'flute']));
  const ds = OpenMIC.open(root, NO_AUDIO);
  const parts = ds.partitions({ instruments: ['piano', 'drums', 'flute'], seed: 7 });
  for (const p of parts) {
    const labelledTrain = ds.train.filter((k) => ds.target(k, p.instrument) !== undefined);
    const pos = labelledTrain.filter((k) => ds.target(k, p.instrument) === 1).length;
    const neg = labelledTrain.length - pos;
    t.is(p.val.pos, Math.round(0.15 * pos));
    t.is(p.val.neg, Math.round(0.15 * neg));
    t.is(p.train.keys.length + p.val.keys.length, labelledTrain.length);
    const val = new Set(p.val.keys);
    t.false(p.train.keys.some((k) => val.has(k)));
    p.val.keys.forEach((k, i) => {
      t.is(p.val.targets[i], ds.target(k, p.instrument) as number);
    });
    t.deepEqual(
      p.test.keys,
      ds.test.filter((k) => ds.target(k, p.instrument) !== undefined),
    );
    t.is(p.test.pos + p.test.neg, p.test.keys.length);
  }
  const again = ds.partitions({ instruments: ['piano', 'drums', 'flute'], seed: 7 });
  t.deepEqual(
    again.map((p) => p.val.keys),
    parts.map((p) => p.val.keys),
  );
  const other = ds.partitions({ instruments: ['piano', 'drums', 'flute'], seed: 8 });
  t.notDeepEqual(
    other.map((p) => p.val.keys),
    parts.map((p) => p.val.keys),
  );
  const summary = ds.partitionSummary({ seed: 7 });
  t.is(summary.length, 20);
  t.deepEqual(summary.find((s) => s.instrument === 'piano')!.val, { pos: parts[0]!.val.pos, neg: parts[0]!.val.neg });
  t.deepEqual(
    summary.find((s) => s.instrument === 'organ'),
    { instrument: 'organ', train: { pos: 0, neg: 0 }, val: { pos: 0, neg: 0 }, test: { pos: 0, neg: 0 } },
  );
});

test('Gururani 2019 split: 12,678/2,237 over the real train keys, used as the validation fold', (t) => {
  const split = readGururaniSplit(GURURANI);
  t.is(split.train.length, 12678);
  t.is(split.val.length, 2237);
  t.deepEqual([...split.train, ...split.val].sort(), TRAIN);
  const root = makeRoot(syntheticLabels(3000, 100, ['violin', 'cello']));
  const ds = OpenMIC.open(root, NO_AUDIO);
  const val = new Set(split.val);
  for (const p of ds.partitions({ validation: 'gururani2019', gururaniSplit: GURURANI, instruments: ['violin', 'cello'] })) {
    const labelled = ds.train.filter((k) => ds.target(k, p.instrument) !== undefined);
    t.deepEqual(
      p.val.keys,
      labelled.filter((k) => val.has(k)),
    );
    t.deepEqual(
      p.train.keys,
      labelled.filter((k) => !val.has(k)),
    );
  }
  // Without an explicit path the file is looked up under the root.
  t.is(t.throws(() => ds.partitions({ validation: 'gururani2019' }), { instanceOf: DataError })?.code, 'ERR_DATA_NOT_FOUND');
  fs.mkdirSync(path.join(root, 'attentionmic-gururani2019'));
  fs.copyFileSync(GURURANI, path.join(root, 'attentionmic-gururani2019', 'gururani2019_trainval_split_keys.csv'));
  t.is(
    ds.partitions({ validation: 'gururani2019', instruments: ['violin'] })[0]!.val.keys.length,
    ds.train.filter((k) => ds.target(k, 'violin') !== undefined && val.has(k)).length,
  );
});

test('artist-disjoint validation needs metadata and keeps every artist on one side', (t) => {
  const keys = [...TRAIN.slice(0, 800), ...TEST.slice(0, 100)];
  const meta = [
    'track_id,artist_id,album_id,sample_key,start_time',
    ...keys.map((k, i) => `${Number(k.slice(0, 6))},${Math.floor(i / 4) % 150}.0,1.0,${k},${Number(k.split('_')[1]) / 1000}`),
  ];
  const labels = syntheticLabels(800, 100, ['trumpet', 'saxophone']);
  const root = makeRoot(labels, (r) => fs.writeFileSync(path.join(r, 'openmic-2018-metadata.csv'), meta.join('\n')));
  const ds = OpenMIC.open(root, NO_AUDIO);
  t.is(ds.metadata(TRAIN[0]!)!.artistId, '0');
  for (const p of ds.partitions({ validation: 'artist', seed: 3, instruments: ['trumpet', 'saxophone'] })) {
    const artists = (ks: string[]) => new Set(ks.map((k) => ds.metadata(k)!.artistId));
    const trainArtists = artists(p.train.keys);
    t.false([...artists(p.val.keys)].some((a) => trainArtists.has(a)));
    const total = p.train.keys.length + p.val.keys.length;
    t.true(p.val.keys.length > 0.1 * total && p.val.keys.length < 0.2 * total, `${p.val.keys.length} of ${total}`);
    t.true(p.val.pos > 0 && p.val.neg > 0);
  }
  const noMeta = OpenMIC.open(makeRoot(labels), NO_AUDIO);
  t.is(t.throws(() => noMeta.partitions({ validation: 'artist' }), { instanceOf: DataError })?.code, 'ERR_DATA_METADATA');
});

test('openmic-2018.npz: labels and sample_key order from a numpy-written npz, cross-checked with the CSV', (t) => {
  const labels = syntheticLabels(40, 10, ['bass', 'organ']);
  const pyBuild = (root: string, dropOne = false, tamper = false) =>
    execFileSync(PYTHON, [
      '-c',
      `
import numpy as np, csv, json
root = ${JSON.stringify(root)}
keys = sorted(open(root + '/partitions/split01_train.csv').read().split() + open(root + '/partitions/split01_test.csv').read().split())
if ${dropOne ? 'True' : 'False'}: keys = keys[:-1]
classes = json.load(open(root + '/class-map.json'))
idx = {k: i for i, k in enumerate(keys)}
Y_true = np.full((len(keys), len(classes)), 0.5); Y_mask = np.zeros(Y_true.shape, dtype=bool)
for r in csv.DictReader(open(root + '/openmic-2018-aggregated-labels.csv')):
    Y_true[idx[r['sample_key']], classes[r['instrument']]] = float(r['relevance']); Y_mask[idx[r['sample_key']], classes[r['instrument']]] = True
if ${tamper ? 'True' : 'False'}: Y_true[np.argwhere(Y_mask)[0][0], np.argwhere(Y_mask)[0][1]] = 0.99
X = (np.arange(len(keys) * 8, dtype=np.int64) % 256).reshape(len(keys), 2, 4)  # the release's is (n, 10, 128); small here to keep the test light
np.savez(root + '/openmic-2018.npz', X=X, Y_true=Y_true, Y_mask=Y_mask, sample_key=np.array(keys, dtype=object))
`,
    ]);
  const root = makeRoot(labels);
  pyBuild(root);
  const both = OpenMIC.open(root, NO_AUDIO);
  t.deepEqual(both.report.npz, { file: path.join(root, 'openmic-2018.npz'), rows: 20000, checkedAgainstCsv: true });
  // X rows follow the sorted sample_key: row r holds (r * 8 + j) % 256
  const sorted = [...TRAIN, ...TEST].sort();
  const probe = [TEST[3]!, TRAIN[7]!];
  const vg = both.vggishFeatures(probe);
  t.deepEqual(vg.shape, [2, 2, 4]);
  probe.forEach((k, i) => {
    t.is(vg.data[i * 8 + 5], (sorted.indexOf(k) * 8 + 5) % 256);
  });
  // npz only: the labels come from Y_true/Y_mask
  const csvDs = OpenMIC.open(root, { ...NO_AUDIO, npz: 'ignore' });
  fs.rmSync(path.join(root, 'openmic-2018-aggregated-labels.csv'));
  const npzDs = OpenMIC.open(root, NO_AUDIO);
  t.is(npzDs.report.labelSource, 'npz');
  t.is(npzDs.report.labelRows, labels.length);
  for (const k of [...TRAIN.slice(0, 40), ...TEST.slice(0, 10)]) t.deepEqual(npzDs.relevance(k), csvDs.relevance(k));
  const tampered = makeRoot(labels);
  pyBuild(tampered, false, true);
  t.is(t.throws(() => OpenMIC.open(tampered, NO_AUDIO), { instanceOf: DataError })?.code, 'ERR_DATA_NPZ');
  const short = makeRoot(labels);
  pyBuild(short, true);
  const err = t.throws(() => OpenMIC.open(short, NO_AUDIO), { instanceOf: DataError });
  t.is(err?.code, 'ERR_DATA_NPZ');
  t.regex(err!.message, /19999 sample keys, but the split files hold 20000/);
});

// The release ships VGGish features twice: X in openmic-2018.npz (int64 [n, 10, 128], rows by sorted sample_key)
// and one JSON file per clip (vggish/xxx/KEY.json: time_points and features, as in
// test/fixtures/openmic-2018/format-samples-mirdata/vggish/000/000046_3840.json). Both are written here by numpy
// and json.dump in that exact form, for 50 clips, and must read the same.
test('VGGish features from the npz and from the per-clip JSON files agree; short JSON clips are padded and counted', (t) => {
  const root = makeRoot(syntheticLabels(30, 20, ['bass']));
  const keys = [...TRAIN.slice(0, 30), ...TEST.slice(0, 20)].sort();
  execFileSync(PYTHON, [
    '-c',
    `
import numpy as np, json, os
root = ${JSON.stringify(root)}
keys = ${JSON.stringify(keys)}
rng = np.random.default_rng(5)
X = rng.integers(0, 256, size=(len(keys), 10, 128)).astype(int)
np.savez(root + '/openmic-2018.npz', X=X, Y_true=np.full((len(keys), 20), 0.5), Y_mask=np.zeros((len(keys), 20), dtype=bool), sample_key=np.array(keys, dtype=object))
for i, k in enumerate(keys):
    os.makedirs(root + '/vggish/' + k[:3], exist_ok=True)
    frames = 7 if i == 3 else 10
    with open(root + '/vggish/' + k[:3] + '/' + k + '.json', 'w') as f:
        json.dump({'time_points': [round(0.96 * j, 2) for j in range(frames)], 'features': X[i, :frames].tolist()}, f)
`,
  ]);
  const ds = OpenMIC.open(root, { ...NO_AUDIO, npz: 'ignore' });
  t.is(ds.vggishSource(), 'npz');
  const probe = [keys[3]!, keys[0]!, keys[17]!];
  const fromNpz = ds.vggishFeatures(probe);
  const fromJson = ds.vggishFeatures(probe, { source: 'json' });
  t.deepEqual(fromNpz.shape, [3, 10, 128]);
  t.is(fromNpz.source, 'npz');
  t.deepEqual(fromJson.shape, [3, 10, 128]);
  t.deepEqual(Array.from(fromJson.validFrames!), [7, 10, 10]);
  t.deepEqual(fromJson.data.subarray(1280), fromNpz.data.subarray(1280), 'clips 2 and 3 are equal');
  t.deepEqual(fromJson.data.subarray(0, 7 * 128), fromNpz.data.subarray(0, 7 * 128), "the short clip's real frames are equal");
  t.true(
    fromJson.data.subarray(7 * 128, 1280).every((v) => v === 0),
    'and its padding is zero',
  );
  t.true(fromNpz.data.every((v) => Number.isInteger(v) && v >= 0 && v <= 255));
  // Without the npz the JSON files are the source.
  fs.rmSync(path.join(root, 'openmic-2018.npz'));
  t.is(ds.vggishSource(), 'json');
  t.deepEqual(ds.vggishFeatures(probe).data, fromJson.data);
  // A broken file is named.
  fs.writeFileSync(ds.vggishPath(keys[0]!), JSON.stringify({ time_points: [0], features: [[1, 2, 'x']] }));
  const err = t.throws(() => ds.vggishFeatures(probe), { instanceOf: DataError });
  t.is(err?.code, 'ERR_DATA_VGGISH');
  t.true(err!.message.includes(ds.vggishPath(keys[0]!)));
  t.regex(err!.message, /frame 0, value 2 is not a finite number/);
  t.is(t.throws(() => ds.vggishFeatures([TRAIN[40]!]), { instanceOf: DataError })?.code, 'ERR_DATA_NOT_FOUND');
  // And the real sample file of the release reads as 10 x 128 values 0-255.
  const sampleRoot = makeRoot(null, (r) => fs.cpSync(path.join(FIXTURES, 'format-samples-mirdata', 'vggish'), path.join(r, 'vggish'), { recursive: true }));
  fs.writeFileSync(path.join(sampleRoot, 'openmic-2018-aggregated-labels.csv'), `${HEADER}\n`);
  const sample = OpenMIC.open(sampleRoot, NO_AUDIO).vggishFeatures(['000046_3840']);
  t.deepEqual(sample.shape, [1, 10, 128]);
  t.is(sample.data[0], 173);
});

test('bad inputs are typed DataErrors naming the file and line', (t) => {
  const k = TRAIN[5]!;
  const expectError = (lines: string[] | null, code: CalmkitErrorCode, pattern: RegExp, extra?: (r: string) => void, opts: OpenMICOptions = NO_AUDIO) => {
    const root = makeRoot(lines, extra);
    const err = t.throws(() => OpenMIC.open(root, opts), { instanceOf: DataError });
    t.is(err?.code, code, err?.message);
    t.regex(err!.message, pattern);
  };
  expectError([`${k},piano,0.9,3`], 'ERR_DATA_NOT_FOUND', /class-map\.json/, (r) => fs.rmSync(path.join(r, 'class-map.json')));
  expectError([`${k},piano,0.9,3`], 'ERR_DATA_CLASS_MAP', /class-map\.json/, (r) =>
    fs.writeFileSync(path.join(r, 'class-map.json'), '{"piano": 0, "organ": 0}'),
  );
  expectError([`${k},piano,0.9,3`, `${k},kazoo,0.9,3`], 'ERR_DATA_UNKNOWN_INSTRUMENT', /aggregated-labels\.csv:3: unknown instrument 'kazoo'/);
  expectError([`${k},piano,high,3`], 'ERR_DATA_LABEL', /aggregated-labels\.csv:2: relevance 'high'/);
  expectError([`${k},piano,1.5,3`], 'ERR_DATA_LABEL', /:2: relevance '1\.5' is not a number in \[0, 1\]/);
  expectError([`${k},piano,0.7,2.5`], 'ERR_DATA_LABEL', /:2: num_responses/);
  expectError([`${k},piano,0.7,3`, `${k},piano,0.2,3`], 'ERR_DATA_LABEL', /:3: .*already labelled on line 2/);
  expectError([`999999_0,piano,0.7,3`], 'ERR_DATA_LABEL', /:2: '999999_0' is in neither split file/);
  expectError([`${k},piano,0.7,3,extra`], 'ERR_DATA_CSV', /aggregated-labels\.csv/);
  expectError(null, 'ERR_DATA_NOT_FOUND', /no labels/);
  expectError([`${k},piano,0.7,3`], 'ERR_DATA_SPLIT', /split01_test\.csv:\d+: '000046_3840' is also in/, (r) =>
    fs.appendFileSync(path.join(r, 'partitions/split01_test.csv'), '000046_3840\n'),
  );
  expectError([`${k},piano,0.7,3`], 'ERR_DATA_SPLIT', /split01_train\.csv:3: 'not-a-key'/, (r) => {
    const f = path.join(r, 'partitions/split01_train.csv');
    const lines = fs.readFileSync(f, 'utf8').split('\n');
    lines.splice(2, 0, 'not-a-key');
    fs.writeFileSync(f, lines.join('\n'));
  });
  expectError(null, 'ERR_DATA_CSV', /aggregated-labels\.csv:1: the labels CSV lacks column\(s\) relevance/, (r) =>
    fs.writeFileSync(path.join(r, 'openmic-2018-aggregated-labels.csv'), `sample_key,instrument\n${k},piano\n`),
  );
  // Missing audio: an error naming the split file and line, or reported skips.
  const withAudio = (r: string) => fs.symlinkSync(path.join(FIXTURES, 'audio'), path.join(r, 'audio'));
  expectError([`${k},piano,0.7,3`], 'ERR_DATA_MISSING_AUDIO', /split01_train\.csv:2: no audio for '000135_483840'/, withAudio, {});
  const root = makeRoot([`000046_3840,clarinet,0.171,3`], (r) => {
    withAudio(r);
    fs.symlinkSync(path.join(FIXTURES, 'checksums'), path.join(r, 'checksums'));
  });
  const ds = OpenMIC.open(root, { audio: 'skip' });
  t.deepEqual(ds.train, ['000046_3840']);
  t.deepEqual(ds.test, []);
  t.is(ds.report.skipped.filter((s) => s.reason === 'missing-audio').length, 20000 - 10 - 1);
  t.is(ds.target('000046_3840', 'clarinet'), 0);
  t.deepEqual(ds.verifyChecksums(), { checked: 1, mismatched: [], missing: [] }, 'the genuine release clip matches its md5');
});

test('fromFolder: any folder of audio plus a labels CSV and a class map', (t) => {
  const dir = path.join(tmp, 'folder');
  fs.mkdirSync(path.join(dir, 'audio', 'sub'), { recursive: true });
  const keys = ['a1', 'a2', 'b1', 'b2', 'c1', 'c2', 'd1', 'd2'];
  keys.forEach((k, i) => {
    fs.writeFileSync(path.join(dir, 'audio', i % 2 ? 'sub' : '', `${k}.${i % 3 ? 'wav' : 'ogg'}`), '');
  });
  const labels = path.join(dir, 'labels.csv');
  fs.writeFileSync(labels, `${HEADER}\na1,hum,0.9,3\na2,hum,0.1,3\nb1,whistle,0.8,3\nc1,hum,0.5,3\n`);
  const ds = OpenMIC.fromFolder({ audioDir: path.join(dir, 'audio'), labelsCsv: labels, classMap: ['hum', 'whistle'], split: { testFraction: 0.25, seed: 2 } });
  t.deepEqual(ds.instruments, ['hum', 'whistle']);
  t.is(ds.test.length, 2);
  t.is(ds.train.length, 6);
  t.is(ds.target('a1', 'hum'), 1);
  t.is(ds.target('c1', 'hum'), undefined);
  t.is(ds.audioPath('a2'), path.join(dir, 'audio', 'sub', 'a2.wav'));
  t.deepEqual(
    OpenMIC.fromFolder({ audioDir: path.join(dir, 'audio'), labelsCsv: labels, classMap: { hum: 0, whistle: 1 }, split: { testFraction: 0.25, seed: 2 } }).test,
    ds.test,
  );
  const explicit = OpenMIC.fromFolder({
    audioDir: path.join(dir, 'audio'),
    labelsCsv: labels,
    classMap: ['hum', 'whistle'],
    split: { train: ['a1', 'a2', 'b1'], test: ['c1', 'd1'] },
  });
  t.deepEqual(explicit.partitions({ validation: 'none', instruments: ['hum'] })[0]!.train.keys, ['a1', 'a2']);
  fs.appendFileSync(labels, 'zz9,hum,0.9,3\n');
  const err = t.throws(() => OpenMIC.fromFolder({ audioDir: path.join(dir, 'audio'), labelsCsv: labels, classMap: ['hum', 'whistle'] }), {
    instanceOf: DataError,
  });
  t.is(err?.code, 'ERR_DATA_MISSING_AUDIO');
  t.regex(err!.message, /labels\.csv:6: no audio file for 'zz9'/);
  const skipping = OpenMIC.fromFolder({ audioDir: path.join(dir, 'audio'), labelsCsv: labels, classMap: ['hum', 'whistle'], audio: 'skip' });
  t.deepEqual(
    skipping.report.skipped.map((s) => s.key),
    ['zz9'],
  );
  t.is(
    t.throws(() => OpenMIC.fromFolder({ audioDir: path.join(dir, 'audio'), labelsCsv: labels, classMap: ['hum'], audio: 'skip' }), { instanceOf: DataError })
      ?.code,
    'ERR_DATA_UNKNOWN_INSTRUMENT',
  );
});
