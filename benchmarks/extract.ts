// Extraction throughput: calmkit against the jukemir way (benchmarks/reference/jukebox_eager.py: PyTorch eager,
// fp32, batch 1, stop after the deepest layer, mean on the host), same checkpoint, same input, one process tree,
// interleaved rounds after a warm-up, outputs cross-checked before timing.
//   npm run bench -- extract [--config tiny|small|5b] [--rounds 3] [--warmup 1] [--layers N] [--device cpu|cuda]
//                            [--precision fp32[,bf16,fp16]] [--batch 1] [--no-reference]
// --config 5b: the real 5B top-prior shapes (width 4800, n_ctx 8192, block_ctx 64) with random weights, the
// checkpoint cut to --layers (default 3: one of each attention kind); the whole clip at layer 36 is extrapolated
// as clip(L) + (36 - L) x the per-layer time, for calmkit and for the reference (its encode + 36 x per layer).
// The input is the paper's workload: a 10 s clip tiled to 62 s. Two references run on it: `jukemirlib` (what
// jukemirlib.extract does: 25 s crop, all three VQ-VAE levels encoded, host copies) and `minimal` (exactly the
// computation calmkit does), so the table shows both where calmkit saves work and how the same work compares.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Jukebox, type JukeboxInfo } from '../lib/model/jukebox';
import { readNpy } from '../lib/formats/npy';
import { doctor } from '../lib/runtime';
import { PYTHON, gemmPeak, interleaved, machine, median, parseArgs, peakRss, report } from './harness';

const CACHE = process.env.CALMKIT_BENCH_CACHE ?? path.join(os.tmpdir(), 'calmkit-bench');

/** FLOPs of layers 1..L on T tokens by the spec's count (section 7.2): Conv1D GEMMs plus the attention products. */
export function priorFlops(info: JukeboxInfo, layers: number, tokens: number): { blocks: number; attention: number } {
  const { width, nState, mlpWidth, blockCtx } = info;
  const macsPerToken = width * 3 * nState + nState * width + 2 * width * mlpWidth;
  const nb = Math.ceil(tokens / blockCtx);
  let attention = 0;
  for (let d = 0; d < layers; d++) {
    const keys = d % 3 === 1 ? nb : blockCtx; // column attention spans blocks; row and previous-block one block
    attention += 4 * tokens * keys * nState; // q.k^T and w.v, full (unmasked) products as computed
  }
  return { blocks: 2 * macsPerToken * layers * tokens, attention };
}

class Reference {
  private proc: ChildProcessByStdio<Writable, Readable, null>;
  private lines: AsyncIterableIterator<string>;
  constructor() {
    this.proc = spawn(PYTHON, [path.join(__dirname, 'reference', 'jukebox_eager.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  }
  async call(msg: Record<string, unknown>): Promise<Record<string, number | boolean | string>> {
    this.proc.stdin.write(JSON.stringify(msg) + '\n');
    const { value, done } = await this.lines.next();
    if (done) throw new Error('the reference process exited');
    const reply = JSON.parse(value);
    if (!reply.ok) throw new Error(`reference: ${reply.error}`);
    return reply;
  }
  peakRss(): number {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${this.proc.pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  }
  async close(): Promise<void> {
    this.proc.stdin.write(JSON.stringify({ cmd: 'quit' }) + '\n');
    await new Promise((r) => this.proc.once('exit', r));
  }
}


/** A deterministic music-like test signal: a few partials with a slow envelope plus a little noise. */
function testSignal(n: number): Float32Array {
  const x = new Float32Array(n);
  let seed = 12345;
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const t = i / 44100;
    x[i] = 0.3 * Math.sin(2 * Math.PI * 220 * t) + 0.2 * Math.sin(2 * Math.PI * 331 * t) * Math.sin(2 * Math.PI * 0.5 * t) + 0.05 * (seed / 2 ** 32 - 0.5);
  }
  // Peak-normalised like the front-end does, so the reference (fed these samples raw) sees the same input.
  let peak = 0;
  for (const v of x) peak = Math.max(peak, Math.abs(v));
  return x.map((v) => Math.fround(v / peak));
}

type Precision = 'fp32' | 'bf16' | 'fp16';

/** Cosine and the largest difference relative to the reference's largest magnitude, of two pooled vectors. */
function compareVectors(ours: ArrayLike<number>, ref: ArrayLike<number>): { cosine: number; maxRel: number } {
  let scale = 0;
  for (let i = 0; i < ref.length; i++) scale = Math.max(scale, Math.abs(ref[i]));
  let maxRel = 0, dot = 0, na = 0, nb = 0;
  for (let i = 0; i < ours.length; i++) {
    maxRel = Math.max(maxRel, Math.abs(ours[i] - ref[i]) / scale);
    dot += ours[i] * ref[i];
    na += ours[i] ** 2;
    nb += ref[i] ** 2;
  }
  return { cosine: dot / Math.sqrt(na * nb), maxRel };
}

function agreement(a: ArrayLike<number | bigint>, b: ArrayLike<number | bigint>): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) same += Number(a[i]) === Number(b[i]) ? 1 : 0;
  return same / a.length;
}

const DTYPE: Record<Precision, 'float32' | 'bfloat16' | 'float16'> = { fp32: 'float32', bf16: 'bfloat16', fp16: 'float16' };

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const config = String(args.config ?? 'tiny') as 'tiny' | 'small' | '5b';
  const rounds = Number(args.rounds ?? 3);
  // The cross-check runs before timing already warm both sides up; a 5B-shape run saves minutes with --warmup 0.
  const warmup = Number(args.warmup ?? 1);
  const device = String(args.device ?? 'cpu') as 'cpu' | 'cuda';
  // A list (`fp32,bf16`): the first is the baseline the others are compared with, all timed in the same rounds.
  const precisions = String(args.precision ?? 'fp32').split(',') as Precision[];
  const base = precisions[0]!;
  const batch = Number(args.batch ?? 1);
  const withReference = !args['no-reference'];
  fs.mkdirSync(CACHE, { recursive: true });
  // The real 5B prior has 72 layers of ~0.55 GB each in fp16: its checkpoint is cut to the layers measured (at
  // least 3, one of each attention kind, so runs of 1-3 layers share one file).
  const cutLayers = config === '5b' ? Math.max(3, Number(args.layers ?? 3)) : undefined;
  const modelFile = path.join(CACHE, cutLayers ? `jukebox-${config}-${cutLayers}l.pt` : `jukebox-${config}.pt`);
  if (!fs.existsSync(modelFile)) await Jukebox.writeRandomCheckpoint({ preset: config, seed: 0, out: modelFile, layers: cutLayers });
  const archiveBytes = fs.statSync(modelFile).size;

  // Load first, in a fresh process, after the addon and torch's thread pools are up (about 160 MB of
  // libraries), so the peak RSS delta is the loading's own (the baseline precision's model).
  await gemmPeak({ m: 64, n: 64, k: 64, repeats: 1, device });
  const models = new Map<Precision, Jukebox>();
  let loadSeconds = 0, rssDelta = 0;
  for (const p of precisions) {
    const rssBefore = peakRss();
    const t0 = performance.now();
    models.set(p, await Jukebox.load(modelFile, { device, precision: p }));
    if (p === base) {
      loadSeconds = (performance.now() - t0) / 1000;
      rssDelta = peakRss() - rssBefore;
    }
  }
  const info = models.get(base)!.info;
  const layers = Number(args.layers ?? Math.min(36, info.depth));
  // A whole clip of the paper's setup reads layer 36: encoder, 36 blocks, pooling. Timing a few layers gives
  // the rest: clip(36) = clip(L) + (36 - L) x seconds per layer (blocks from tokens / L).
  const target = Math.min(36, info.fullDepth);
  const T = info.nCtx;
  const tenSeconds = testSignal(441000);
  const samples = new Float32Array(62 * 44100).map((_, i) => tenSeconds[i % tenSeconds.length]);
  const crop = info.firstWindowSamples;
  const clip = { samples, sampleRate: 44100 };
  const rawFile = path.join(CACHE, `input-${config}.f32`);
  fs.writeFileSync(rawFile, Buffer.from(samples.buffer));

  const extractOnce = async (p: Precision) => {
    const inputs = Array.from({ length: batch }, () => clip);
    const s = performance.now();
    const out = await models.get(p)!.extract(inputs, { layers: [layers], pooling: 'mean' });
    return { seconds: (performance.now() - s) / 1000, out: out[0] };
  };
  const firsts = new Map<Precision, Awaited<ReturnType<typeof extractOnce>>>();
  for (const p of precisions) firsts.set(p, await extractOnce(p));
  const first = firsts.get(base)!;
  const tokens = first.out.tokens;

  let reference: Reference | undefined;
  let check: Record<string, number> = {};
  if (withReference) {
    reference = new Reference();
    const loaded = await reference.call({ cmd: 'load', model: modelFile, threads: machine().threads });
    const outDir = fs.mkdtempSync(path.join(CACHE, 'ref-'));
    const ran = await reference.call({ cmd: 'run', audio: rawFile, layers: [layers], out: outDir, mode: 'jukemirlib' });
    const refTok = readNpy(path.join(outDir, 'tokens.npy')).data as BigInt64Array;
    // The prior is compared on the same tokens: VQ near-ties may be broken differently by two correct encoders.
    const tokFile = path.join(CACHE, `tokens-${config}.i32`);
    fs.writeFileSync(tokFile, Buffer.from(tokens.buffer, tokens.byteOffset, tokens.byteLength));
    await reference.call({ cmd: 'run', audio: rawFile, layers: [layers], out: outDir, tokens: tokFile, mode: 'minimal' });
    const refVec = readNpy(path.join(outDir, `layer${layers}.npy`)).data as Float32Array;
    const vs = compareVectors(first.out.layers[layers].data, refVec);
    check = {
      referenceLoadSeconds: Number(loaded.load_seconds),
      tokens: Number(ran.tokens),
      tokenAgreement: agreement(tokens, refTok.subarray(0, tokens.length)),
      maxRelErrorVsReference: vs.maxRel,
      cosineVsReference: vs.cosine,
    };
    fs.rmSync(outDir, { recursive: true, force: true });
    if (base === 'fp32' && vs.maxRel > 1e-4) throw new Error(`calmkit and the reference disagree (max rel error ${vs.maxRel}); not timing different computations`);
  }

  // Blocks only: from tokens, skipping the VQ-VAE, to measure the transformer against the GEMM peak.
  const tokenInput = { tokens };
  const contenders: { name: string; run: () => Promise<number> }[] = [];
  for (const p of precisions) {
    contenders.push({ name: `calmkit ${p}`, run: async () => (await extractOnce(p)).seconds });
    contenders.push({
      name: `calmkit ${p} blocks`,
      run: async () => {
        const s = performance.now();
        await models.get(p)!.extract(tokenInput, { layers: [layers], pooling: 'mean' });
        return (performance.now() - s) / 1000;
      },
    });
  }
  const refSplits: { encode: number[]; prior: number[] } = { encode: [], prior: [] };
  if (reference) {
    contenders.push({
      name: 'reference',
      run: async () => {
        const r = await reference!.call({ cmd: 'run', audio: rawFile, layers: [layers], mode: 'jukemirlib' });
        refSplits.encode.push(Number(r.encode_seconds));
        refSplits.prior.push(Number(r.prior_seconds));
        return Number(r.seconds);
      },
    });
    contenders.push({ name: 'reference-minimal', run: async () => Number((await reference!.call({ cmd: 'run', audio: rawFile, layers: [layers], mode: 'minimal', crop })).seconds) });
  }
  const timings = await interleaved(contenders, rounds, warmup);
  // Peaks of the products' own shape class ([rows, width] x [width, width]), in every dtype timed, same run.
  const peaks = new Map<Precision, number>();
  for (const p of new Set<Precision>(['fp32', ...precisions])) {
    peaks.set(p, await gemmPeak({ m: Math.min(T, 2048), n: info.width, k: info.width, dtype: DTYPE[p], device }));
  }
  const flops = priorFlops(info, layers, T);
  const blockFlops = flops.blocks + flops.attention;
  const byPrecision: Record<string, Record<string, unknown>> = {};
  const rows: Record<string, string | number>[] = [];
  const perLayer = (p: Precision) => timings[`calmkit ${p} blocks`].median / layers;
  const clipAt = (p: Precision) => timings[`calmkit ${p}`].median / batch;
  const clipAtTarget = (p: Precision) => clipAt(p) + (target - layers) * perLayer(p);
  for (const p of precisions) {
    const blocksSeconds = timings[`calmkit ${p} blocks`].median;
    const gflops = blockFlops / blocksSeconds / 1e9;
    const entry: Record<string, unknown> = {
      blockKernels: models.get(p)!.info.blockKernels,
      clip: { medianSeconds: clipAt(p), clipsPerSecond: 1 / clipAt(p), samples: timings[`calmkit ${p}`].samples },
      blocks: { medianSeconds: blocksSeconds, secondsPerLayer: perLayer(p), gflops, fractionOfGemmPeak: gflops / peaks.get(p)!, fractionOfFp32GemmPeak: gflops / peaks.get('fp32')!, samples: timings[`calmkit ${p} blocks`].samples },
      gemmPeakGflops: peaks.get(p),
      extrapolated: { layer: target, clipSeconds: clipAtTarget(p) },
    };
    if (p !== base) {
      const vs = compareVectors(firsts.get(p)!.out.layers[layers].data, first.out.layers[layers].data);
      entry.vsBaseline = {
        baseline: base,
        layer: layers,
        cosine: vs.cosine,
        maxRelDifference: vs.maxRel,
        tokenAgreement: agreement(firsts.get(p)!.out.tokens, tokens),
        speedupPerLayer: perLayer(base) / perLayer(p),
        speedupPerClipAtTarget: clipAtTarget(base) / clipAtTarget(p),
      };
    }
    byPrecision[p] = entry;
    rows.push({ what: `calmkit ${p}, whole clip, ${layers} layers`, seconds: clipAt(p).toFixed(3), 'GFLOP/s': (blockFlops / clipAt(p) / 1e9).toFixed(1), note: `batch ${batch}` });
    rows.push({ what: `calmkit ${p}, blocks, per layer`, seconds: perLayer(p).toFixed(3), 'GFLOP/s': gflops.toFixed(1), note: `${((gflops / peaks.get(p)!) * 100).toFixed(0)}% of the ${p} GEMM peak ${peaks.get(p)!.toFixed(0)}` + (p === 'fp32' ? '' : `, ${((gflops / peaks.get('fp32')!) * 100).toFixed(0)}% of fp32's`) });
    if (target !== layers) rows.push({ what: `calmkit ${p}, whole clip, ${target} layers (extrapolated)`, seconds: clipAtTarget(p).toFixed(1), 'GFLOP/s': '', note: p === base ? '' : `${(clipAtTarget(base) / clipAtTarget(p)).toFixed(2)}x ${base}` });
  }
  const result: Record<string, unknown> = {
    machine: { ...machine(device), cpuBf16: doctor().cpuBf16 },
    config: { preset: config, layers, nCtx: T, width: info.width, heads: info.heads, blocks: info.blocks, batch, precisions, device, rounds, warmup, extrapolatedTo: target },
    archiveBytes,
    load: { precision: base, seconds: loadSeconds, peakRssDeltaBytes: rssDelta, ratioToArchive: rssDelta / archiveBytes },
    // The baseline's figures where single-precision runs of this benchmark always had them.
    calmkit: { medianSeconds: clipAt(base), clipsPerSecond: batch / timings[`calmkit ${base}`].median, tokensPerSecond: (batch / timings[`calmkit ${base}`].median) * T, gflops: blockFlops / clipAt(base) / 1e9 },
    blocks: byPrecision[base]!.blocks,
    gemmPeakGflops: peaks.get(base),
    precisions: byPrecision,
    ...check,
  };
  if (reference) {
    const refClip = timings.reference.median;
    const minClip = timings['reference-minimal'].median;
    const refEncode = median(refSplits.encode);
    const refPerLayer = median(refSplits.prior) / layers;
    const refAtTarget = refEncode + target * refPerLayer;
    result.reference = { mode: 'jukemirlib', medianSeconds: refClip, clipsPerSecond: 1 / refClip, encodeSeconds: refEncode, secondsPerLayer: refPerLayer, extrapolated: { layer: target, clipSeconds: refAtTarget }, peakRssBytes: reference.peakRss() };
    result.referenceMinimal = { mode: 'minimal', medianSeconds: minClip, clipsPerSecond: 1 / minClip };
    result.speedup = refClip / clipAt(base);
    result.speedupVsMinimal = minClip / clipAt(base);
    for (const p of precisions) (byPrecision[p]!.extrapolated as Record<string, number>).speedupVsReference = refAtTarget / clipAtTarget(p);
    rows.push({ what: `reference, jukemirlib way, ${layers} layers`, seconds: refClip.toFixed(3), 'GFLOP/s': (blockFlops / refClip / 1e9).toFixed(1), note: `calmkit ${base} ${(refClip / clipAt(base)).toFixed(2)}x; encode ${refEncode.toFixed(1)} s` });
    rows.push({ what: 'reference, jukemirlib way, per layer', seconds: refPerLayer.toFixed(3), 'GFLOP/s': (blockFlops / layers / refPerLayer / 1e9).toFixed(1), note: '' });
    if (target !== layers) rows.push({ what: `reference, jukemirlib way, ${target} layers (extrapolated)`, seconds: refAtTarget.toFixed(1), 'GFLOP/s': '', note: precisions.map((p) => `calmkit ${p} ${(refAtTarget / clipAtTarget(p)).toFixed(2)}x`).join(', ') });
    rows.push({ what: `reference, same work, ${layers} layers`, seconds: minClip.toFixed(3), 'GFLOP/s': (blockFlops / minClip / 1e9).toFixed(1), note: `calmkit ${base} ${(minClip / clipAt(base)).toFixed(2)}x` });
    await reference.close();
  }
  result.peakRssBytes = peakRss();
  report('extract', result, rows);
  for (const m of models.values()) m.dispose();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
