// Signal helpers for the audio tests: sines, an FFT peak finder, and the TS reference of the fit modes.

export function sine(freq: number, rate: number, seconds: number, amplitude: number): Float32Array {
  const n = Math.round(rate * seconds);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = amplitude * Math.sin((2 * Math.PI * freq * i) / rate);
  return out;
}

export function interleave(channels: Float32Array[]): Float32Array {
  const frames = channels[0].length;
  const out = new Float32Array(frames * channels.length);
  for (let i = 0; i < frames; i++) for (let c = 0; c < channels.length; c++) out[i * channels.length + c] = channels[c][i];
  return out;
}

/** Magnitude of the DFT of x (Hann-windowed) at frequency f, by direct summation (Goertzel-style). */
function magnitudeAt(x: Float32Array, rate: number, f: number): number {
  let re = 0;
  let im = 0;
  const n = x.length;
  const w = (2 * Math.PI * f) / rate;
  for (let i = 0; i < n; i++) {
    const hann = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1));
    re += x[i] * hann * Math.cos(w * i);
    im -= x[i] * hann * Math.sin(w * i);
  }
  return Math.hypot(re, im);
}

/** In-place radix-2 FFT magnitude spectrum of x zero-padded to a power of two. */
function fftMagnitudes(x: Float32Array): { mags: Float64Array; size: number } {
  let size = 1;
  while (size < x.length) size <<= 1;
  const re = new Float64Array(size);
  const im = new Float64Array(size);
  re.set(x);
  for (let i = 1, j = 0; i < size; i++) {
    let bit = size >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let len = 2; len <= size; len <<= 1) {
    const ang = (-2 * Math.PI) / len;
    for (let i = 0; i < size; i += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(ang * k);
        const wi = Math.sin(ang * k);
        const ar = re[i + k + len / 2] * wr - im[i + k + len / 2] * wi;
        const ai = re[i + k + len / 2] * wi + im[i + k + len / 2] * wr;
        re[i + k + len / 2] = re[i + k] - ar;
        im[i + k + len / 2] = im[i + k] - ai;
        re[i + k] += ar;
        im[i + k] += ai;
      }
    }
  }
  const mags = new Float64Array(size / 2);
  for (let i = 0; i < size / 2; i++) mags[i] = Math.hypot(re[i], im[i]);
  return { mags, size };
}

/** The frequency of the strongest spectral peak: FFT bin, then a 0.01 Hz scan around it. */
export function peakFrequency(x: Float32Array, rate: number): number {
  const { mags, size } = fftMagnitudes(x);
  let best = 1;
  for (let i = 1; i < mags.length; i++) if (mags[i] > mags[best]) best = i;
  const binHz = rate / size;
  let bestF = best * binHz;
  let bestM = -1;
  for (let f = (best - 1) * binHz; f <= (best + 1) * binHz; f += 0.01) {
    const m = magnitudeAt(x, rate, f);
    if (m > bestM) {
      bestM = m;
      bestF = f;
    }
  }
  return bestF;
}

/** The documented fit modes, written independently of the native code. */
export const reference = {
  mono(interleaved: Float32Array, channels: number): Float32Array {
    const frames = interleaved.length / channels;
    const out = new Float32Array(frames);
    for (let i = 0; i < frames; i++) {
      let s = 0;
      for (let c = 0; c < channels; c++) s = Math.fround(s + interleaved[i * channels + c]);
      out[i] = Math.fround(s / channels);
    }
    return out;
  },
  normalise(x: Float32Array): Float32Array {
    let peak = 0;
    for (const v of x) peak = Math.max(peak, Math.abs(v));
    if (peak === 0) return Float32Array.from(x);
    return x.map((v) => Math.fround(v / peak));
  },
  tile(x: Float32Array, total: number): Float32Array {
    const n = Math.max(total, x.length);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = x[i % x.length];
    return out;
  },
  pad(x: Float32Array, total: number): Float32Array {
    const out = new Float32Array(Math.max(total, x.length));
    out.set(x);
    return out;
  },
  crop(x: Float32Array, n: number): Float32Array {
    return n > 0 && x.length > n ? x.slice(0, n) : x;
  },
};

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
