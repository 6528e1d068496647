import { OPENMIC } from './helpers/paths';
import test from 'ava';
import { Command } from 'commander';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { register } from '../lib/cli/demo-data';
import { encodeSmf, noteOff, noteOn } from '../lib/demo/midi';
import { generateDemoData, planDemoData } from '../lib/demo';
import { OPENMIC_INSTRUMENTS } from '../lib/openmic';
import { ArgumentError } from '../lib/errors';
import { oggVorbisInfo } from '../lib/formats/ogg';
import { OpenMIC } from '../lib/openmic';

const FIXTURES = OPENMIC;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calmkit-demo-'));
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));
const md5 = (f: string) => crypto.createHash('md5').update(fs.readFileSync(f)).digest('hex');

// Rendered once through the CLI (as a user would) and once through the API with the same seed.
const viaCli = path.join(tmp, 'cli');
const viaApi = path.join(tmp, 'api');
let cliOutput = '';
let cliProgress = '';
const rendered = (async () => {
  const program = new Command().exitOverride();
  register(program);
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => {
    cliOutput += chunk;
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => {
    cliProgress += chunk;
    return true;
  }) as typeof process.stderr.write;
  try {
    await program.parseAsync(['node', 'calmkit', 'demo-data', '--out', viaCli, '--clips', '6', '--seed', '5']);
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
  }
  return generateDemoData({ out: viaApi, clips: 6, seed: 5 });
})();

test('demo-data renders the exact OpenMIC layout, and OpenMIC.open reads it back', async (t) => {
  const api = await rendered;
  const out = viaCli;
  t.deepEqual(
    JSON.parse(fs.readFileSync(path.join(out, 'class-map.json'), 'utf8')),
    JSON.parse(fs.readFileSync(path.join(FIXTURES, 'class-map.json'), 'utf8')),
  );
  const train = fs.readFileSync(path.join(out, 'partitions/split01_train.csv'), 'utf8').split('\n').filter(Boolean);
  const testKeys = fs.readFileSync(path.join(out, 'partitions/split01_test.csv'), 'utf8').split('\n').filter(Boolean);
  t.deepEqual(train, train.slice().sort());
  t.deepEqual(testKeys, testKeys.slice().sort());
  t.is(train.length + testKeys.length, 6);
  t.true(testKeys.length >= 1 && train.length >= 3);
  const checksums = fs.readFileSync(path.join(out, 'checksums/openmic-2018-audio.csv'), 'utf8').trim().split('\n');
  t.is(checksums[0], ',md5');
  for (const line of checksums.slice(1)) {
    const [key, sum] = line.split(',');
    t.regex(key!, /^\d{6}_\d+$/);
    t.is(Number(key!.split('_')[1]) % 3840, 0);
    const ogg = path.join(out, 'audio', key!.slice(0, 3), `${key}.ogg`);
    t.is(md5(ogg), sum);
    const info = oggVorbisInfo(ogg);
    t.deepEqual([info.channels, info.sampleRate, info.frames], [2, 44100, 441000]);
  }
  const ds = OpenMIC.open(out);
  t.deepEqual([...ds.train], train);
  t.deepEqual(ds.verifyChecksums(), { checked: 6, mismatched: [], missing: [] });
  t.deepEqual(ds.report.skipped, []);
  t.deepEqual(ds.report.unlabelledRows, []);
  for (const clip of api.clips) {
    const present = clip.parts.map((p) => p.instrument);
    const labels = ds.labels(clip.key);
    t.deepEqual(
      labels
        .filter((l) => l.target === 1)
        .map((l) => l.instrument)
        .sort(),
      present.slice().sort(),
    );
    t.is(labels.filter((l) => l.target === 0).length, 1);
    t.is(ds.metadata(clip.key)!.artistId, String(clip.artistId));
    // the MIDI is a format-1 SMF with a conductor track plus one track per instrument
    const mid = fs.readFileSync(path.join(out, 'midi', clip.key.slice(0, 3), `${clip.key}.mid`));
    t.is(mid.toString('latin1', 0, 4), 'MThd');
    t.is(mid.readUInt16BE(8), 1);
    t.is(mid.readUInt16BE(10), present.length + 1);
  }
  // the split is artist-disjoint, like the release's
  const artistsOf = (keys: readonly string[]) => new Set(keys.map((k) => ds.metadata(k)!.artistId));
  const testArtists = artistsOf(ds.test);
  t.false([...artistsOf(ds.train)].some((a) => testArtists.has(a)));
  t.is(ds.partitions({ validation: 'artist' }).length, 20);
  // Progress goes to stderr through the shared display (plain here: not a terminal); its last line is always printed.
  t.regex(cliProgress, /^render: 6\/6 clips in [\d.]+ s/m);
  t.regex(cliOutput, /wrote 6 clips \(\d train \/ \d test\)/);
});

test('same seed: identical MIDI, labels, splits, metadata and audio bytes', async (t) => {
  await rendered;
  const files = (dir: string) => {
    const out: string[] = [];
    const walk = (d: string) =>
      fs.readdirSync(d, { withFileTypes: true }).forEach((e) => {
        e.isDirectory() ? walk(path.join(d, e.name)) : out.push(path.relative(dir, path.join(d, e.name)));
      });
    walk(dir);
    return out.sort();
  };
  const a = files(viaCli);
  t.deepEqual(a, files(viaApi));
  t.false(
    a.some((f) => f.includes('.render-') || f.endsWith('.part')),
    'no scratch left behind',
  );
  // oggenc's random stream serial is pinned, so even the encoded audio is byte-identical.
  for (const f of a) t.is(md5(path.join(viaCli, f)), md5(path.join(viaApi, f)), f);
  const other = planDemoData(6, 6);
  t.notDeepEqual(
    other.clips.map((c) => c.key),
    (await rendered).clips.map((c) => c.key),
  );
});

test('the plan balances instruments and labels like the release (no rendering)', (t) => {
  const { clips } = planDemoData(200, 0);
  t.is(new Set(clips.map((c) => c.key)).size, 200);
  const count = { train: { pos: new Array(20).fill(0), neg: new Array(20).fill(0) }, test: { pos: new Array(20).fill(0), neg: new Array(20).fill(0) } };
  for (const c of clips) {
    t.true(c.parts.length >= 1 && c.parts.length <= 4);
    for (const l of c.labels) {
      t.not(l.relevance, 0.5);
      count[c.split][l.relevance > 0.5 ? 'pos' : 'neg'][OPENMIC_INSTRUMENTS.indexOf(l.instrument)]++;
    }
  }
  // balanced within each split, so probes can be trained and scored for every class
  t.true(
    count.train.pos.every((p) => p >= 10),
    `train positives per class ${count.train.pos}`,
  );
  t.true(
    count.train.neg.every((p) => p >= 6),
    `train negatives per class ${count.train.neg}`,
  );
  t.true(
    count.test.pos.every((p) => p >= 3),
    `test positives per class ${count.test.pos}`,
  );
  t.true(
    count.test.neg.every((p) => p >= 2),
    `test negatives per class ${count.test.neg}`,
  );
  const perClip = clips.reduce((n, c) => n + c.labels.length, 0) / clips.length;
  t.true(perClip > 2 && perClip < 3.2, `labels per clip ${perClip}`);
  const testShare = clips.filter((c) => c.split === 'test').length / 200;
  t.true(testShare > 0.2 && testShare < 0.3, `test share ${testShare}`);
  t.false(
    clips.some((c) => ['071826', '095253'].includes(c.key.slice(0, 6))),
    'errata track ids are never used',
  );
});

test('SMF encoding: variable-length deltas, note-off before note-on at one tick', (t) => {
  const smf = encodeSmf(480, [{ events: [noteOn(200, 0, 60, 100), noteOff(200, 0, 60), noteOn(0, 0, 60, 90)] }], 300);
  const track = Buffer.from(smf).subarray(14);
  t.is(track.toString('latin1', 0, 4), 'MTrk');
  const body = [...track.subarray(8)];
  t.deepEqual(body, [0x00, 0x90, 60, 90, 0x81, 0x48, 0x80, 60, 0, 0x00, 0x90, 60, 100, 0x64, 0xff, 0x2f, 0x00]);
});

test('an existing folder that is not a demo dataset is refused', async (t) => {
  const dir = path.join(tmp, 'precious');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'thesis.tex'), '...');
  await t.throwsAsync(generateDemoData({ out: dir, clips: 2 }), { instanceOf: ArgumentError });
  t.deepEqual(fs.readdirSync(dir), ['thesis.tex']);
});

test('an interrupted or earlier demo folder is replaced cleanly', async (t) => {
  const dir = path.join(tmp, 'again');
  fs.mkdirSync(path.join(dir, 'audio', '999'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'audio', '999', '999999_0.ogg'), 'stale');
  fs.writeFileSync(path.join(dir, 'calmkit-demo-data.json'), JSON.stringify({ generator: 'calmkit demo-data', complete: false }));
  const result = await generateDemoData({ out: dir, clips: 2, seed: 11, jobs: 1 });
  t.false(fs.existsSync(path.join(dir, 'audio', '999')));
  t.is(JSON.parse(fs.readFileSync(path.join(dir, 'calmkit-demo-data.json'), 'utf8')).complete, true);
  t.deepEqual(
    OpenMIC.open(dir).keys,
    result.clips.map((c) => c.key),
  );
});
