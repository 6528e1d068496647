// A Standard MIDI File (SMF) writer, format 1. Written here because it is ~60 lines over a spec that has not
// changed since 1996, and the demo renderer needs nothing else from a MIDI library (no parsing, no timing
// maps); this keeps the dependency list short and the bytes fully under our control for reproducibility.

export interface MidiEvent {
  /** Absolute time in ticks. */
  tick: number;
  /** Status byte and data bytes of a channel message, or 0xff, type, data... for a meta event. */
  bytes: number[];
}

export interface MidiTrack {
  events: MidiEvent[];
}

function vlq(n: number): number[] {
  if (!Number.isInteger(n) || n < 0 || n > 0x0fffffff) throw new RangeError(`MIDI delta ${n} out of range`);
  const out = [n & 0x7f];
  for (n >>>= 7; n > 0; n >>>= 7) out.unshift((n & 0x7f) | 0x80);
  return out;
}

/** Meta events must carry their length; this builds FF type len data. */
export function meta(tick: number, type: number, data: number[]): MidiEvent {
  return { tick, bytes: [0xff, type, ...vlq(data.length), ...data] };
}

export const tempoEvent = (tick: number, bpm: number): MidiEvent => {
  const us = Math.round(60_000_000 / bpm);
  return meta(tick, 0x51, [(us >> 16) & 0xff, (us >> 8) & 0xff, us & 0xff]);
};
export const trackName = (name: string): MidiEvent => meta(0, 0x03, [...Buffer.from(name, 'latin1')]);
export const programChange = (tick: number, channel: number, program: number): MidiEvent => ({ tick, bytes: [0xc0 | channel, program & 0x7f] });
export const controlChange = (tick: number, channel: number, controller: number, value: number): MidiEvent => ({
  tick,
  bytes: [0xb0 | channel, controller & 0x7f, value & 0x7f],
});
export const noteOn = (tick: number, channel: number, note: number, velocity: number): MidiEvent => ({
  tick,
  bytes: [0x90 | channel, note & 0x7f, Math.max(1, velocity & 0x7f)],
});
export const noteOff = (tick: number, channel: number, note: number): MidiEvent => ({ tick, bytes: [0x80 | channel, note & 0x7f, 0] });

// At equal ticks: meta and controller set-up first, then note-offs, then note-ons, so a repeated note is
// released before it is struck again.
function order(e: MidiEvent): number {
  const s = e.bytes[0]!;
  if (s === 0xff || (s & 0xf0) === 0xb0 || (s & 0xf0) === 0xc0) return 0;
  if ((s & 0xf0) === 0x80) return 1;
  return 2;
}

/** Encodes a format-1 SMF; each track ends with End of Track at max(endTick, its last event). */
export function encodeSmf(ppq: number, tracks: MidiTrack[], endTick = 0): Uint8Array {
  const chunks: number[][] = [];
  const header = [0x4d, 0x54, 0x68, 0x64, 0, 0, 0, 6, 0, 1, (tracks.length >> 8) & 0xff, tracks.length & 0xff, (ppq >> 8) & 0xff, ppq & 0xff];
  chunks.push(header);
  for (const track of tracks) {
    const events = track.events.map((e, i) => ({ e, i })).sort((a, b) => a.e.tick - b.e.tick || order(a.e) - order(b.e) || a.i - b.i);
    const body: number[] = [];
    let now = 0;
    for (const { e } of events) {
      body.push(...vlq(e.tick - now), ...e.bytes);
      now = e.tick;
    }
    body.push(...vlq(Math.max(0, endTick - now)), 0xff, 0x2f, 0x00);
    const n = body.length;
    chunks.push([0x4d, 0x54, 0x72, 0x6b, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff, ...body]);
  }
  return Uint8Array.from(chunks.flat());
}
