// A synthetic dataset in exactly the OpenMIC-2018 release layout, rendered from seeded MIDI with fluidsynth,
// so that every part of calmkit (loaders, extraction, store, probes) can run end to end without the real
// 2.6 GB release. Same seed -> same plan, MIDI, labels, splits and (with the same tool versions) audio bytes.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ArgumentError, DataError } from '../errors';
import { CORRUPTED_TRACK_IDS, OPENMIC_INSTRUMENTS } from '../openmic';
import { Rng } from '../random';
import { composeClip, type ClipPart } from './compose';
import { DEFAULT_SOUNDFONT, DEMO_FRAMES, DEMO_SAMPLE_RATE, renderClip, type RenderTools } from './render';

export interface DemoDataOptions {
  out: string;
  /** Number of clips (default 200). */
  clips?: number;
  seed?: number;
  /** Concurrent renders (default min(2, CPUs)). */
  jobs?: number;
  soundfont?: string;
  fluidsynth?: string;
  oggenc?: string;
  onProgress?: (p: { done: number; total: number; key: string; elapsedMs: number }) => void;
}

export interface DemoClip {
  key: string;
  trackId: number;
  startMs: number;
  artistId: number;
  split: 'train' | 'test';
  bpm: number;
  parts: ClipPart[];
  /** The labels written to the CSV for this clip. */
  labels: { instrument: string; relevance: number; numResponses: number }[];
}

export interface DemoDataResult {
  out: string;
  clips: DemoClip[];
  train: string[];
  test: string[];
  renderSeconds: number;
}

export const DEMO_DESCRIPTION = 'calmkit-demo-data.json';

function round5(x: number): number {
  return Math.round(x * 1e5) / 1e5;
}

/** Plans every clip (keys, artists, instruments, labels, split) from the seed alone; no rendering. */
export function planDemoData(clips: number, seed: number): { clips: DemoClip[]; midi: Map<string, Uint8Array> } {
  if (!Number.isInteger(clips) || clips < 2) throw new ArgumentError('ERR_INVALID_ARGUMENT', `clips must be an integer >= 2; got ${clips}`);
  const rng = new Rng(`${seed}:demo-plan`);
  const usedTracks = new Set<number>(CORRUPTED_TRACK_IDS.map(Number));
  const nArtists = Math.max(3, Math.round(clips / 3));
  // Keys, artists and the artist-disjoint ~75/25 split come first, so that instruments can then be balanced
  // within each split: even a small demo set gets positives and negatives of every class in train and test.
  const clipsPlan: { key: string; trackId: number; startMs: number; artistId: number; split: 'train' | 'test' }[] = [];
  for (let c = 0; c < clips; c++) {
    let trackId: number;
    do trackId = rng.int(0, 155_999);
    while (usedTracks.has(trackId));
    usedTracks.add(trackId);
    const startMs = 3840 * rng.int(0, 40);
    clipsPlan.push({ key: `${String(trackId).padStart(6, '0')}_${startMs}`, trackId, startMs, artistId: rng.int(1, nArtists), split: 'train' });
  }
  const artists = rng.shuffle([...new Set(clipsPlan.map((p) => p.artistId))].sort((a, b) => a - b));
  const target = Math.max(1, Math.round(clips * 0.25));
  let nTest = 0;
  for (const a of artists) {
    const members = clipsPlan.filter((p) => p.artistId === a);
    // Whole artists, taken while that brings the test share closer to a quarter; never all clips.
    if (nTest + members.length >= clips || Math.abs(nTest + members.length - target) >= Math.abs(nTest - target)) continue;
    for (const m of members) m.split = 'test';
    nTest += members.length;
  }
  if (nTest === 0) {
    const smallest = artists.map((a) => ({ a, n: clipsPlan.filter((p) => p.artistId === a).length })).sort((x, y) => x.n - y.n || x.a - y.a)[0]!;
    for (const m of clipsPlan) if (m.artistId === smallest.a) m.split = 'test';
  }
  const counters = {
    train: { pos: new Array<number>(20).fill(0), neg: new Array<number>(20).fill(0) },
    test: { pos: new Array<number>(20).fill(0), neg: new Array<number>(20).fill(0) },
  };
  // The least-used instrument of this split (ties broken at random), so every class gets positives and
  // negatives in train and test even in a small demo set.
  const drawBalanced = (counts: number[], exclude: Set<number>): number => {
    const open = counts.map((c, i) => ({ c, i })).filter(({ i }) => !exclude.has(i));
    const least = Math.min(...open.map((o) => o.c));
    return rng.pick(open.filter((o) => o.c === least)).i;
  };
  const planned: DemoClip[] = [];
  const midi = new Map<string, Uint8Array>();
  for (const clip of clipsPlan) {
    const { pos: usage, neg: negUsage } = counters[clip.split];
    const nPresent = 1 + rng.weighted([0.5, 0.3, 0.13, 0.07]);
    const present = new Set<number>();
    while (present.size < nPresent) {
      const i = drawBalanced(usage, present);
      present.add(i);
      usage[i]!++;
    }
    const absent = drawBalanced(negUsage, present);
    negUsage[absent]!++;
    const names = [...present].sort((a, b) => a - b).map((i) => OPENMIC_INSTRUMENTS[i]!);
    const composition = composeClip(names, new Rng(`${seed}:demo-clip:${clip.key}`));
    midi.set(clip.key, composition.midi);
    // relevance = 0.5 +/- conf/2 as in the release; conf > 0 so no label is exactly 0.5.
    const label = (instrument: string, sign: 1 | -1) => ({
      instrument,
      relevance: round5(0.5 + (sign * (0.3 + 0.7 * rng.next())) / 2),
      numResponses: rng.int(2, 5),
    });
    const labels = [...names.map((n) => label(n, 1)), label(OPENMIC_INSTRUMENTS[absent]!, -1)].sort((a, b) => (a.instrument < b.instrument ? -1 : 1));
    planned.push({ ...clip, bpm: composition.bpm, parts: composition.parts, labels });
  }
  planned.sort((a, b) => (a.key < b.key ? -1 : 1));
  return { clips: planned, midi };
}

function csvField(v: string | number): string {
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

async function runPool<T>(items: T[], jobs: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

/** Renders the demo dataset into `out` (created; an existing non-demo, non-empty folder is refused). */
export async function generateDemoData(options: DemoDataOptions): Promise<DemoDataResult> {
  const out = path.resolve(options.out);
  const clips = options.clips ?? 200;
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed)) throw new ArgumentError('ERR_INVALID_ARGUMENT', `seed must be an integer; got ${seed}`);
  const jobs = options.jobs ?? Math.max(1, Math.min(2, os.availableParallelism?.() ?? os.cpus().length));
  const tools: RenderTools = {
    fluidsynth: options.fluidsynth ?? process.env.CALMKIT_FLUIDSYNTH ?? 'fluidsynth',
    oggenc: options.oggenc ?? process.env.CALMKIT_OGGENC ?? 'oggenc',
    soundfont: options.soundfont ?? process.env.CALMKIT_SOUNDFONT ?? DEFAULT_SOUNDFONT,
  };
  if (!fs.existsSync(tools.soundfont))
    throw new DataError('ERR_DATA_DEMO_TOOL', `SoundFont ${tools.soundfont} not found (apt-get install fluid-soundfont-gm, or set CALMKIT_SOUNDFONT)`, {
      input: tools.soundfont,
    });
  if (fs.existsSync(out) && fs.readdirSync(out).length > 0 && !fs.existsSync(path.join(out, DEMO_DESCRIPTION))) {
    throw new ArgumentError('ERR_INVALID_ARGUMENT', `${out} exists, is not empty and is not a calmkit demo dataset; refusing to write into it`, { input: out });
  }
  const plan = planDemoData(clips, seed);
  const w = (rel: string, text: string) => {
    const file = path.join(out, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
  };
  // Re-generating over an earlier demo replaces it entirely (no stale clips). The description is written
  // first, marked incomplete, so that an interrupted run can be re-run into the same folder.
  for (const sub of ['audio', 'midi', 'partitions', 'checksums']) fs.rmSync(path.join(out, sub), { recursive: true, force: true });
  const describe = (complete: boolean) =>
    w(
      DEMO_DESCRIPTION,
      `${JSON.stringify({ generator: 'calmkit demo-data', version: 1, complete, seed, clips: plan.clips.length, sampleRate: DEMO_SAMPLE_RATE, frames: DEMO_FRAMES, soundfont: path.basename(tools.soundfont), truth: plan.clips }, null, 1)}\n`,
    );
  describe(false);
  for (const c of plan.clips) {
    const sub = c.key.slice(0, 3);
    fs.mkdirSync(path.join(out, 'audio', sub), { recursive: true });
    fs.mkdirSync(path.join(out, 'midi', sub), { recursive: true });
    fs.writeFileSync(path.join(out, 'midi', sub, `${c.key}.mid`), plan.midi.get(c.key)!);
  }
  const scratch = fs.mkdtempSync(path.join(out, '.render-'));
  const started = Date.now();
  let done = 0;
  try {
    await runPool(plan.clips, jobs, async (c) => {
      const sub = c.key.slice(0, 3);
      const serial = Number.parseInt(crypto.createHash('sha256').update(`${seed}:${c.key}`).digest('hex').slice(0, 7), 16);
      await renderClip(
        tools,
        path.join(out, 'midi', sub, `${c.key}.mid`),
        path.join(scratch, `${c.key}.raw`),
        path.join(out, 'audio', sub, `${c.key}.ogg`),
        serial,
      );
      done++;
      options.onProgress?.({ done, total: plan.clips.length, key: c.key, elapsedMs: Date.now() - started });
    });
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  const renderSeconds = (Date.now() - started) / 1000;

  const train = plan.clips.filter((c) => c.split === 'train').map((c) => c.key);
  const test = plan.clips.filter((c) => c.split === 'test').map((c) => c.key);
  w('class-map.json', JSON.stringify(Object.fromEntries(OPENMIC_INSTRUMENTS.map((n, i) => [n, i])), null, 4));
  w('partitions/split01_train.csv', train.map((k) => `${k}\n`).join(''));
  w('partitions/split01_test.csv', test.map((k) => `${k}\n`).join(''));
  w(
    'openmic-2018-aggregated-labels.csv',
    `${[
      'sample_key,instrument,relevance,num_responses',
      ...plan.clips.flatMap((c) => c.labels.map((l) => `${c.key},${l.instrument},${l.relevance},${l.numResponses}`)),
    ].join('\n')}\n`,
  );
  w(
    'openmic-2018-metadata.csv',
    `${[
      'track_id,album_id,artist_id,artist_name,license_title,track_title,sample_key,start_time',
      ...plan.clips.map((c) =>
        [
          c.trackId,
          `${c.artistId}.0`,
          c.artistId,
          `Demo Artist ${c.artistId}`,
          'Attribution 4.0 International',
          `Demo ${c.parts.map((p) => p.instrument).join(', ')}`,
          c.key,
          c.startMs / 1000,
        ]
          .map(csvField)
          .join(','),
      ),
    ].join('\n')}\n`,
  );
  w(
    'checksums/openmic-2018-audio.csv',
    `${[
      ',md5',
      ...plan.clips.map(
        (c) =>
          `${c.key},${crypto
            .createHash('md5')
            .update(fs.readFileSync(path.join(out, 'audio', c.key.slice(0, 3), `${c.key}.ogg`)))
            .digest('hex')}`,
      ),
    ].join('\n')}\n`,
  );
  describe(true);
  return { out, clips: plan.clips, train, test, renderSeconds };
}
