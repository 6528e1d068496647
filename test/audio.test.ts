import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ArgumentError, AUDIO_EXTENSIONS, AudioError, datasetItems, decodeAudio, listAudioFiles, loadAudio, writeAudio } from '../lib';
import { EMPTY_WAV, GENUINE_CLIP, OPENMIC, tempDir } from './helpers/paths';
import { interleave, maxAbsDiff, peakFrequency, reference, sine } from './helpers/signal';

const dir = tempDir('calmkit-audio-');

test('the genuine OpenMIC clip matches its checksum and decodes to 2 ch, 44100 Hz, 441000 frames', async (t) => {
  const csv = fs.readFileSync(path.join(OPENMIC, 'checksums', 'openmic-2018-audio.csv'), 'utf8');
  const row = csv.split('\n').find((l) => l.startsWith('000046_3840,'));
  t.truthy(row, 'checksum row present');
  const md5 = crypto.createHash('md5').update(fs.readFileSync(GENUINE_CLIP)).digest('hex');
  t.is(md5, row!.split(',')[1].trim());
  const d = await decodeAudio(GENUINE_CLIP);
  t.is(d.channels, 2);
  t.is(d.sampleRate, 44100);
  t.is(d.frames, 441000);
  t.is(d.interleaved.length, 882000);
  const loaded = await loadAudio(GENUINE_CLIP);
  t.is(loaded.samples.length, 441000);
  t.is(loaded.sourceChannels, 2);
  t.is(loaded.sampleRate, 44100);
  t.is(loaded.durationSeconds, 10);
  let peak = 0;
  for (const v of loaded.samples) peak = Math.max(peak, Math.abs(v));
  t.is(peak, 1, 'peak-normalised');
});

test('decoding from an in-memory buffer equals decoding the file', async (t) => {
  const fromFile = await loadAudio(GENUINE_CLIP);
  const fromBuffer = await loadAudio(fs.readFileSync(GENUINE_CLIP));
  t.is(fromBuffer.samples.length, fromFile.samples.length);
  t.is(maxAbsDiff(fromBuffer.samples, fromFile.samples), 0);
});

const FREQ = 1000;
const AMP = 0.5;
for (const rate of [22050, 48000]) {
  for (const [container, encoding] of [
    ['wav', 'float'],
    ['flac', 'pcm24'],
    ['ogg', 'pcm16'],
  ] as const) {
    test(`${container} at ${rate} Hz: exact resampled length, spectral peak within 1 Hz`, async (t) => {
      const seconds = 2;
      const file = path.join(dir, `sine-${rate}.${container}`);
      const x = sine(FREQ, rate, seconds, AMP);
      await writeAudio(file, { interleaved: x, channels: 1, sampleRate: rate, encoding });
      const d = await decodeAudio(file);
      t.is(d.sampleRate, rate);
      t.is(d.channels, 1);
      if (container !== 'ogg') t.is(d.frames, x.length);
      const out = await loadAudio(file);
      // ceil(n * 44100 / rate): librosa's convention, exact for these rates.
      t.is(out.samples.length, Math.ceil((d.frames * 44100) / rate));
      t.is(out.sourceSampleRate, rate);
      const f = peakFrequency(out.samples, 44100);
      t.true(Math.abs(f - FREQ) < 1, `peak at ${f.toFixed(3)} Hz`);
    });
  }
}

test('mp3 decodes (libsndfile MPEG) with the sine where it belongs', async (t) => {
  const file = path.join(dir, 'sine.mp3');
  await writeAudio(file, { interleaved: sine(440, 44100, 2, 0.5), channels: 1, sampleRate: 44100 });
  const out = await loadAudio(file);
  // MP3 lengths include encoder padding.
  t.true(out.samples.length >= 88200 && out.samples.length < 88200 + 4096, `${out.samples.length} samples`);
  t.true(Math.abs(peakFrequency(out.samples, 44100) - 440) < 1);
});

test('mono mixing and peak normalisation are exact', async (t) => {
  const left = sine(440, 44100, 0.5, 0.3);
  const right = sine(660, 44100, 0.5, 0.2);
  const inter = interleave([left, right]);
  const file = path.join(dir, 'stereo.wav');
  await writeAudio(file, { interleaved: inter, channels: 2, sampleRate: 44100, encoding: 'float' });
  const out = await loadAudio(file);
  const expected = reference.normalise(reference.mono(inter, 2));
  t.is(out.samples.length, expected.length);
  t.is(maxAbsDiff(out.samples, expected), 0);
  const raw = await loadAudio(file, { normalise: false });
  t.is(maxAbsDiff(raw.samples, reference.mono(inter, 2)), 0);
});

test('silence stays silence', async (t) => {
  const out = await loadAudio({ samples: new Float32Array(1000), sampleRate: 44100 });
  t.is(out.samples.length, 1000);
  t.true(out.samples.every((v) => v === 0));
});

test('tile, pad and crop are sample-exact against the TS reference', async (t) => {
  const clip = sine(300, 44100, 0.1, 0.7); // 4410 samples
  const base = reference.normalise(clip);
  const tiled = await loadAudio({ samples: clip, sampleRate: 44100 }, { formatting: 'tile', targetSeconds: 0.25 });
  t.is(tiled.samples.length, 11025);
  t.is(maxAbsDiff(tiled.samples, reference.tile(base, 11025)), 0);
  const byFactor = await loadAudio({ samples: clip, sampleRate: 44100 }, { formatting: 'tile', factor: 6.2 });
  t.is(byFactor.samples.length, Math.round(4410 * 6.2));
  t.is(maxAbsDiff(byFactor.samples, reference.tile(base, Math.round(4410 * 6.2))), 0);
  const padded = await loadAudio({ samples: clip, sampleRate: 44100 }, { formatting: 'pad', targetSeconds: 0.2 });
  t.is(maxAbsDiff(padded.samples, reference.pad(base, 8820)), 0);
  const cropped = await loadAudio({ samples: clip, sampleRate: 44100 }, { formatting: 'tile', targetSeconds: 0.25, cropSamples: 5000 });
  t.is(maxAbsDiff(cropped.samples, reference.crop(reference.tile(base, 11025), 5000)), 0);
  // The paper's default: tile a 10 s clip to 62 s.
  const paper = await loadAudio(GENUINE_CLIP, { formatting: 'tile' });
  t.is(paper.samples.length, 62 * 44100);
  const once = await loadAudio(GENUINE_CLIP);
  t.is(maxAbsDiff(paper.samples.subarray(441000 * 6, 441000 * 6 + 100), once.samples.subarray(0, 100)), 0);
});

test('upsample: factor x the samples, played at 44.1 kHz (pitch and tempo divided by the factor)', async (t) => {
  const clip = sine(2000, 44100, 0.5, 0.5);
  const up = await loadAudio({ samples: clip, sampleRate: 44100 }, { formatting: 'upsample', factor: 6.2 });
  t.is(up.samples.length, Math.ceil(22050 * 6.2));
  t.is(up.sampleRate, 44100);
  t.true(Math.abs(peakFrequency(up.samples, 44100) - 2000 / 6.2) < 1);
  // Same as declaring the source rate divided by the factor and resampling to 44.1 kHz.
  const declared = await loadAudio({ samples: clip, sampleRate: 44100 / 2 }, {});
  const up2 = await loadAudio({ samples: clip, sampleRate: 44100 }, { formatting: 'upsample', factor: 2 });
  t.is(up2.samples.length, declared.samples.length);
  t.true(maxAbsDiff(up2.samples, declared.samples) < 1e-6);
  const crop = await loadAudio({ samples: clip, sampleRate: 44100 }, { formatting: 'upsample', factor: 6.2, cropSamples: 1000 });
  t.is(maxAbsDiff(crop.samples, up.samples.subarray(0, 1000)), 0);
});

async function rejectsWith(
  t: import('ava').ExecutionContext,
  p: Promise<unknown>,
  cls: abstract new (...args: never[]) => Error,
  code: string,
  mention?: string,
) {
  const err = await t.throwsAsync(p);
  t.true(err instanceof cls, `${err?.constructor?.name} is ${cls.name}`);
  t.is((err as { code?: string }).code, code);
  if (mention) t.true(err!.message.includes(mention), `message "${err!.message}" names ${mention}`);
}

test('bad inputs give typed errors naming the input', async (t) => {
  const missing = path.join(dir, 'missing.wav');
  await rejectsWith(t, loadAudio(missing), AudioError, 'ERR_AUDIO_NOT_FOUND', missing);
  await rejectsWith(t, loadAudio(dir), AudioError, 'ERR_AUDIO_IS_DIRECTORY', dir);
  const text = path.join(dir, 'notes.wav');
  fs.writeFileSync(text, 'this is not audio at all, just text\n'.repeat(20));
  await rejectsWith(t, loadAudio(text), AudioError, 'ERR_AUDIO_DECODE', text);
  await rejectsWith(t, loadAudio(EMPTY_WAV), AudioError, 'ERR_AUDIO_EMPTY', EMPTY_WAV);
  const zero = path.join(dir, 'zero.ogg');
  fs.writeFileSync(zero, '');
  await rejectsWith(t, loadAudio(zero), AudioError, 'ERR_AUDIO_EMPTY', zero);
  // A socket in the file system is a path that exists but cannot be read as a file.
  const sock = path.join(dir, 'audio.sock');
  const server = net.createServer().listen(sock);
  await new Promise((r) => server.once('listening', r));
  await rejectsWith(t, loadAudio(sock), AudioError, 'ERR_AUDIO_UNREADABLE', sock);
  server.close();
  // A WAV cut short of the frames its header declares.
  const full = path.join(dir, 'full.wav');
  await writeAudio(full, { interleaved: sine(440, 44100, 1, 0.5), channels: 1, sampleRate: 44100 });
  const cut = path.join(dir, 'truncated.wav');
  fs.writeFileSync(cut, fs.readFileSync(full).subarray(0, 20000));
  await rejectsWith(t, loadAudio(cut), AudioError, 'ERR_AUDIO_DECODE', 'truncated');
  const fullFlac = path.join(dir, 'full.flac');
  await writeAudio(fullFlac, { interleaved: sine(440, 44100, 1, 0.5), channels: 1, sampleRate: 44100 });
  const cutFlac = path.join(dir, 'truncated.flac');
  const flacBytes = fs.readFileSync(fullFlac);
  fs.writeFileSync(cutFlac, flacBytes.subarray(0, Math.floor(flacBytes.length / 2)));
  await rejectsWith(t, loadAudio(cutFlac), AudioError, 'ERR_AUDIO_DECODE', 'truncated');
  await rejectsWith(t, loadAudio(new Uint8Array(0)), AudioError, 'ERR_AUDIO_EMPTY');
  await rejectsWith(t, loadAudio(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), AudioError, 'ERR_AUDIO_DECODE');
  await rejectsWith(t, loadAudio({ samples: new Float32Array(0), sampleRate: 44100 }), AudioError, 'ERR_AUDIO_EMPTY');
  await rejectsWith(t, loadAudio({ samples: Float32Array.of(0, NaN, 1), sampleRate: 44100 }), AudioError, 'ERR_AUDIO_NOT_FINITE');
  for (const rate of [0, -44100, NaN, 1e9]) {
    await rejectsWith(t, loadAudio({ samples: new Float32Array(10), sampleRate: rate }), ArgumentError, 'ERR_INVALID_ARGUMENT', 'sampleRate');
  }
  for (const factor of [0.0001, 1000, -2, Infinity]) {
    await rejectsWith(t, loadAudio(GENUINE_CLIP, { formatting: 'upsample', factor }), ArgumentError, 'ERR_INVALID_ARGUMENT', 'factor');
  }
  await rejectsWith(t, loadAudio(GENUINE_CLIP, { formatting: 'tile', targetSeconds: 1e9 }), ArgumentError, 'ERR_INVALID_ARGUMENT', 'targetSeconds');
  await rejectsWith(t, loadAudio(GENUINE_CLIP, { formatting: 'stretch' as never }), ArgumentError, 'ERR_INVALID_ARGUMENT', 'formatting');
  await rejectsWith(t, loadAudio(GENUINE_CLIP, { cropSamples: 1.5 }), ArgumentError, 'ERR_INVALID_ARGUMENT', 'cropSamples');
  await rejectsWith(t, loadAudio(42 as never), ArgumentError, 'ERR_INVALID_ARGUMENT');
  // Later calls still work.
  const ok = await loadAudio(GENUINE_CLIP);
  t.is(ok.samples.length, 441000);
});

// Descriptors of this process, less tsx's compile cache (opened and closed as test modules load).
function openFds(): string[] {
  const fds = fs.readdirSync('/proc/self/fd').map((fd) => {
    try {
      return `${fd}->${fs.readlinkSync(`/proc/self/fd/${fd}`)}`;
    } catch {
      return `${fd}->?`;
    }
  });
  return fds.filter((f) => !f.includes('/tsx-') && !f.endsWith('->?')).sort();
}

test.serial('1000 concurrent loadAudio calls: no crash, no leaked handles', async (t) => {
  const good = path.join(dir, 'short.wav');
  await writeAudio(good, { interleaved: sine(440, 22050, 0.05, 0.5), channels: 1, sampleRate: 22050 });
  const bytes = fs.readFileSync(good);
  const expected = Math.ceil(Math.round(22050 * 0.05) * 2);
  // Warm up so lazily opened handles (thread pools, libraries) are not counted as leaks.
  await loadAudio(good);
  const before = openFds();
  const calls = Array.from({ length: 1000 }, (_, i) => {
    if (i % 10 === 3)
      return loadAudio(path.join(dir, `nope-${i}.wav`)).then(
        () => 'ok',
        (e) => e.code,
      );
    if (i % 10 === 7) return loadAudio(bytes).then((r) => (r.samples.length === expected ? 'ok' : 'bad'));
    return loadAudio(good).then((r) => (r.samples.length === expected ? 'ok' : 'bad'));
  });
  const results = await Promise.all(calls);
  t.deepEqual([...new Set(results)].sort(), ['ERR_AUDIO_NOT_FOUND', 'ok']);
  t.is(results.filter((r) => r === 'ok').length, 900);
  t.is(results.filter((r) => r === 'ERR_AUDIO_NOT_FOUND').length, 100);
  const after = openFds();
  t.deepEqual(
    after.filter((f) => f.includes(dir)),
    [],
    'no audio file left open',
  );
  t.deepEqual(after, before);
});

test('one list of audio extensions and one folder walk serve extraction and OpenMIC', (t) => {
  const dir = tempDir('calmkit-walk-');
  fs.mkdirSync(path.join(dir, 'b', 'c'), { recursive: true });
  for (const f of ['b/c/z.OGA', 'a.wav', 'b/y.flac', 'notes.txt', 'b/x.opus']) fs.writeFileSync(path.join(dir, f), '');
  t.deepEqual(
    listAudioFiles(dir).map((f) => path.relative(dir, f)),
    ['a.wav', 'b/c/z.OGA', 'b/x.opus', 'b/y.flac'],
  );
  t.true(AUDIO_EXTENSIONS.includes('.oga') && AUDIO_EXTENSIONS.includes('.ogg'));
  t.deepEqual(
    datasetItems(dir).map((i) => i.key),
    ['a', 'x', 'y', 'z'],
  );
  fs.rmSync(dir, { recursive: true, force: true });
});
