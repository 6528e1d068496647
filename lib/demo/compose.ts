// Seeded little arrangements for the demo dataset: for each clip, short phrases for 1-4 of the 20 OpenMIC
// instruments, as MIDI for fluidsynth's General MIDI SoundFont. The point is not music but audio in which the
// labelled instruments are really audible, each with a timbre and register a probe can pick up.
import type { Rng } from '../random';
import { controlChange, encodeSmf, noteOff, noteOn, programChange, tempoEvent, trackName, meta, type MidiEvent } from './midi';

export type Style = 'melody' | 'sustain' | 'chords' | 'strum' | 'tremolo' | 'bass' | 'arpeggio' | 'drums' | 'cymbals';

export interface InstrumentVoice {
  /** General MIDI programs (0-based) to choose from; ignored for channel-10 percussion. */
  programs: number[];
  low: number;
  high: number;
  style: Style;
}

/**
 * General MIDI choices per OpenMIC class. GM has no mandolin: it is a steel-string guitar (25) played as
 * fast tremolo in a high register, which is how a mandolin sustains. Ukulele is the nylon guitar (24) kept
 * high, strummed. Drums and cymbals are both channel 10 but never share notes (kick/snare/toms vs
 * crash/ride/hi-hat), so the two labels stay separable.
 */
export const VOICES: Record<string, InstrumentVoice> = {
  accordion: { programs: [21], low: 55, high: 79, style: 'chords' },
  banjo: { programs: [105], low: 55, high: 79, style: 'strum' },
  bass: { programs: [32, 33], low: 28, high: 50, style: 'bass' },
  cello: { programs: [42], low: 36, high: 62, style: 'sustain' },
  clarinet: { programs: [71], low: 52, high: 79, style: 'melody' },
  cymbals: { programs: [], low: 0, high: 0, style: 'cymbals' },
  drums: { programs: [], low: 0, high: 0, style: 'drums' },
  flute: { programs: [73], low: 67, high: 93, style: 'melody' },
  guitar: { programs: [24, 25], low: 45, high: 72, style: 'strum' },
  mallet_percussion: { programs: [12, 11], low: 60, high: 88, style: 'arpeggio' },
  mandolin: { programs: [25], low: 67, high: 88, style: 'tremolo' },
  organ: { programs: [19], low: 48, high: 76, style: 'chords' },
  piano: { programs: [0], low: 48, high: 84, style: 'chords' },
  saxophone: { programs: [65, 66], low: 49, high: 77, style: 'melody' },
  synthesizer: { programs: [80, 81], low: 55, high: 84, style: 'arpeggio' },
  trombone: { programs: [57], low: 40, high: 65, style: 'melody' },
  trumpet: { programs: [56], low: 55, high: 79, style: 'melody' },
  ukulele: { programs: [24], low: 60, high: 81, style: 'strum' },
  violin: { programs: [40], low: 55, high: 91, style: 'melody' },
  voice: { programs: [52, 53], low: 55, high: 76, style: 'sustain' },
};

const DRUM_NOTES = { kick: 36, snare: 38, toms: [41, 43, 45, 47, 48, 50] };
const CYMBAL_NOTES = { crash: 49, ride: 51, closedHat: 42, openHat: 46 };
const SCALES = { major: [0, 2, 4, 5, 7, 9, 11], minor: [0, 2, 3, 5, 7, 8, 10] };

export const PPQ = 480;

export interface ClipPart {
  instrument: string;
  program: number | null;
  channel: number;
}

export interface Composition {
  bpm: number;
  parts: ClipPart[];
  midi: Uint8Array;
}

/** Builds a clip of `seconds` for `instruments` from its own random stream. */
export function composeClip(instruments: readonly string[], rng: Rng, seconds = 10): Composition {
  const bpm = rng.int(80, 140);
  const beat = PPQ;
  const end = Math.round((seconds * bpm * PPQ) / 60);
  const root = rng.int(0, 11);
  const scale = rng.next() < 0.5 ? SCALES.major : SCALES.minor;
  const inScale = (note: number) => scale.includes((((note - root) % 12) + 12) % 12);
  const tracks: { events: MidiEvent[] }[] = [{ events: [trackName('conductor'), tempoEvent(0, bpm), meta(0, 0x58, [4, 2, 24, 8])] }];
  const parts: ClipPart[] = [];
  let nextChannel = 0;
  for (const name of instruments) {
    const voice = VOICES[name];
    if (!voice) throw new RangeError(`no demo voice for instrument '${name}'`);
    const percussive = voice.style === 'drums' || voice.style === 'cymbals';
    const channel = percussive ? 9 : nextChannel++;
    if (nextChannel === 9) nextChannel++;
    const program = percussive ? null : rng.pick(voice.programs);
    const ev: MidiEvent[] = [trackName(name)];
    if (program !== null) ev.push(programChange(0, channel, program));
    ev.push(controlChange(0, channel, 7, 100), controlChange(0, channel, 10, rng.int(34, 94)));
    const pool: number[] = [];
    for (let n = voice.low; n <= voice.high; n++) if (inScale(n)) pool.push(n);
    const note = (t: number, dur: number, pitch: number, vel: number) => {
      if (t >= end) return;
      ev.push(noteOn(t, channel, pitch, vel), noteOff(Math.min(end, t + Math.max(1, dur)), channel, pitch));
    };
    const vel = (base: number) => Math.min(127, Math.max(30, base + rng.int(-12, 12)));
    // Phrases: play for a few bars, sometimes rest a bar, so the instrument is heard most of the clip.
    const bar = 4 * beat;
    for (let barStart = 0; barStart < end; barStart += bar) {
      if (barStart > 0 && rng.next() < 0.15) continue;
      compose(voice.style, barStart);
    }
    tracks.push({ events: ev });
    parts.push({ instrument: name, program, channel: channel + 1 });

    function compose(style: Style, t0: number) {
      const bar = 4 * beat;
      switch (style) {
        case 'melody': {
          let i = rng.int(0, pool.length - 1);
          for (let t = t0; t < t0 + bar; ) {
            const dur = rng.pick([beat / 2, beat / 2, beat, beat, (beat * 3) / 2, beat * 2]);
            if (rng.next() < 0.12) {
              t += dur;
              continue;
            }
            i = Math.max(0, Math.min(pool.length - 1, i + rng.int(-2, 2)));
            note(t, dur * 0.95, pool[i]!, vel(90));
            t += dur;
          }
          break;
        }
        case 'sustain': {
          let i = rng.int(0, pool.length - 1);
          for (let t = t0; t < t0 + bar; t += beat * 2) {
            i = Math.max(0, Math.min(pool.length - 1, i + rng.int(-2, 2)));
            note(t, beat * 2 - 10, pool[i]!, vel(85));
          }
          break;
        }
        case 'chords':
        case 'strum':
        case 'arpeggio': {
          const chordRoot = rng.int(0, Math.max(0, pool.length - 5));
          const chord = [pool[chordRoot]!, pool[Math.min(pool.length - 1, chordRoot + 2)]!, pool[Math.min(pool.length - 1, chordRoot + 4)]!];
          if (style === 'chords') {
            for (let t = t0; t < t0 + bar; t += beat * 2) for (const p of chord) note(t, beat * 2 - 20, p, vel(80));
          } else if (style === 'strum') {
            for (let t = t0; t < t0 + bar; t += beat)
              chord.forEach((p, k) => {
                note(t + k * 25, beat - 40, p, vel(85));
              });
          } else {
            for (let t = t0, k = 0; t < t0 + bar; t += beat / 2, k++) note(t, beat / 2 - 10, chord[k % 3]!, vel(85));
          }
          break;
        }
        case 'tremolo': {
          let i = rng.int(0, pool.length - 1);
          for (let t = t0; t < t0 + bar; t += beat) {
            i = Math.max(0, Math.min(pool.length - 1, i + rng.int(-1, 1)));
            for (let s = 0; s < 8; s++) note(t + (s * beat) / 8, beat / 8 - 5, pool[i]!, vel(80));
          }
          break;
        }
        case 'bass': {
          const rootNote = pool[rng.int(0, Math.min(pool.length - 1, 6))]!;
          for (let t = t0; t < t0 + bar; t += beat)
            note(t, beat * 0.9, rng.next() < 0.75 ? rootNote : pool[Math.min(pool.length - 1, pool.indexOf(rootNote) + 4)]!, vel(95));
          break;
        }
        case 'drums': {
          for (let b = 0; b < 4; b++) {
            const t = t0 + b * beat;
            if (b % 2 === 0) note(t, beat / 4, DRUM_NOTES.kick, vel(105));
            else note(t, beat / 4, DRUM_NOTES.snare, vel(100));
            if (rng.next() < 0.3) note(t + beat / 2, beat / 4, DRUM_NOTES.kick, vel(90));
          }
          if (rng.next() < 0.35) for (let k = 0; k < 4; k++) note(t0 + 3 * beat + (k * beat) / 4, beat / 8, DRUM_NOTES.toms[rng.int(0, 5)]!, vel(95));
          break;
        }
        case 'cymbals': {
          const useRide = rng.next() < 0.5;
          if (rng.next() < 0.5) note(t0, beat, CYMBAL_NOTES.crash, vel(100));
          for (let t = t0; t < t0 + bar; t += beat / 2)
            note(t, beat / 4, useRide ? CYMBAL_NOTES.ride : rng.next() < 0.15 ? CYMBAL_NOTES.openHat : CYMBAL_NOTES.closedHat, vel(85));
          break;
        }
      }
    }
  }
  return { bpm, parts, midi: encodeSmf(PPQ, tracks, end) };
}
