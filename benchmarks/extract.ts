// Extraction throughput: calmkit against the jukemir way (benchmarks/reference/jukebox_eager.py: PyTorch eager,
// fp32, batch 1, stop after the deepest layer, mean on the host), same checkpoint, same input, one process tree,
// interleaved rounds after a warm-up, outputs cross-checked before timing.
//   npm run bench -- extract [--config tiny|small|5b] [--rounds 3] [--layers N] [--device cpu|cuda]
//                            [--precision fp32|bf16|fp16] [--batch 1] [--no-reference]
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
import { PYTHON, gemmPeak, interleaved, machine, parseArgs, peakRss, report } from './harness';

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

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const config = String(args.config ?? 'tiny') as 'tiny' | 'small' | '5b';
  const rounds = Number(args.rounds ?? 3);
  const device = String(args.device ?? 'cpu') as 'cpu' | 'cuda';
  const precision = String(args.precision ?? 'fp32') as 'fp32' | 'bf16' | 'fp16';
  const batch = Number(args.batch ?? 1);
  const withReference = !args['no-reference'];
  fs.mkdirSync(CACHE, { recursive: true });
  const modelFile = path.join(CACHE, `jukebox-${config}.pt`);
  if (!fs.existsSync(modelFile)) await Jukebox.writeRandomCheckpoint({ preset: config, seed: 0, out: modelFile });
  const archiveBytes = fs.statSync(modelFile).size;

  // Load first, in a fresh process, after the addon and torch's thread pools are up (about 160 MB of
  // libraries), so the peak RSS delta is the loading's own.
  await gemmPeak({ m: 64, n: 64, k: 64, repeats: 1, device });
  const rssBefore = peakRss();
  const t0 = performance.now();
  const model = await Jukebox.load(modelFile, { device, precision });
  const loadSeconds = (performance.now() - t0) / 1000;
  const rssAfterLoad = peakRss();
  const info = model.info;
  const layers = Number(args.layers ?? Math.min(36, info.depth));
  const T = info.nCtx;
  const tenSeconds = testSignal(441000);
  const samples = new Float32Array(62 * 44100).map((_, i) => tenSeconds[i % tenSeconds.length]);
  const crop = info.firstWindowSamples;
  const clip = { samples, sampleRate: 44100 };
  const rawFile = path.join(CACHE, `input-${config}.f32`);
  fs.writeFileSync(rawFile, Buffer.from(samples.buffer));

  const extractOnce = async () => {
    const inputs = Array.from({ length: batch }, () => clip);
    const s = performance.now();
    const out = await model.extract(inputs, { layers: [layers], pooling: 'mean' });
    return { seconds: (performance.now() - s) / 1000, out: out[0] };
  };
  const first = await extractOnce();
  const tokens = first.out.tokens;

  let reference: Reference | undefined;
  let check: Record<string, number> = {};
  if (withReference) {
    reference = new Reference();
    const loaded = await reference.call({ cmd: 'load', model: modelFile, threads: machine().threads });
    const outDir = fs.mkdtempSync(path.join(CACHE, 'ref-'));
    const ran = await reference.call({ cmd: 'run', audio: rawFile, layers: [layers], out: outDir, mode: 'jukemirlib' });
    const refTok = readNpy(path.join(outDir, 'tokens.npy')).data as BigInt64Array;
    let tokenAgreement = 0;
    for (let i = 0; i < tokens.length; i++) tokenAgreement += Number(refTok[i]) === tokens[i] ? 1 : 0;
    // The prior is compared on the same tokens: VQ near-ties may be broken differently by two correct encoders.
    const tokFile = path.join(CACHE, `tokens-${config}.i32`);
    fs.writeFileSync(tokFile, Buffer.from(tokens.buffer, tokens.byteOffset, tokens.byteLength));
    await reference.call({ cmd: 'run', audio: rawFile, layers: [layers], out: outDir, tokens: tokFile, mode: 'minimal' });
    const refVec = readNpy(path.join(outDir, `layer${layers}.npy`)).data as Float32Array;
    const ours = first.out.layers[layers].data;
    let maxRel = 0;
    let dot = 0, na = 0, nb = 0;
    const scale = Math.max(...Array.from(refVec, Math.abs));
    for (let i = 0; i < ours.length; i++) {
      maxRel = Math.max(maxRel, Math.abs(ours[i] - refVec[i]) / scale);
      dot += ours[i] * refVec[i];
      na += ours[i] ** 2;
      nb += refVec[i] ** 2;
    }
    check = {
      referenceLoadSeconds: Number(loaded.load_seconds),
      tokens: Number(ran.tokens),
      tokenAgreement: tokenAgreement / tokens.length,
      maxRelErrorVsReference: maxRel,
      cosineVsReference: dot / Math.sqrt(na * nb),
    };
    if (precision === 'fp32' && maxRel > 1e-4) throw new Error(`calmkit and the reference disagree (max rel error ${maxRel}); not timing different computations`);
  }

  // Blocks only: from tokens, skipping the VQ-VAE, to measure the transformer against the GEMM peak.
  const tokenInput = { tokens };
  const contenders = [
    { name: 'calmkit', run: async () => (await extractOnce()).seconds },
    {
      name: 'calmkit-blocks',
      run: async () => {
        const s = performance.now();
        await model.extract(tokenInput, { layers: [layers], pooling: 'mean' });
        return (performance.now() - s) / 1000;
      },
    },
  ];
  if (reference) {
    contenders.push({ name: 'reference', run: async () => Number((await reference!.call({ cmd: 'run', audio: rawFile, layers: [layers], mode: 'jukemirlib' })).seconds) });
    contenders.push({ name: 'reference-minimal', run: async () => Number((await reference!.call({ cmd: 'run', audio: rawFile, layers: [layers], mode: 'minimal', crop })).seconds) });
  }
  const timings = await interleaved(contenders, rounds, 1);
  const peak = await gemmPeak({ m: Math.min(T, 2048), n: info.width, k: info.width, dtype: precision === 'fp32' ? 'float32' : precision === 'bf16' ? 'bfloat16' : 'float16', device });
  const flops = priorFlops(info, layers, T);
  const clipsPerSecond = batch / timings.calmkit.median;
  const blockGflops = (flops.blocks + flops.attention) / timings['calmkit-blocks'].median / 1e9;
  const result: Record<string, unknown> = {
    machine: machine(device),
    config: { preset: config, layers, nCtx: T, width: info.width, heads: info.heads, blocks: info.blocks, batch, precision, device, rounds },
    archiveBytes,
    load: { seconds: loadSeconds, peakRssDeltaBytes: rssAfterLoad - rssBefore, ratioToArchive: (rssAfterLoad - rssBefore) / archiveBytes },
    calmkit: { medianSeconds: timings.calmkit.median, clipsPerSecond, tokensPerSecond: clipsPerSecond * T, gflops: (flops.blocks + flops.attention) / (timings.calmkit.median / batch) / 1e9 },
    blocks: { medianSeconds: timings['calmkit-blocks'].median, gflops: blockGflops, fractionOfGemmPeak: blockGflops / peak },
    gemmPeakGflops: peak,
    peakRssBytes: peakRss(),
    ...check,
  };
  const rows: Record<string, string | number>[] = [
    { what: 'calmkit', 's/clip': (timings.calmkit.median / batch).toFixed(3), 'clips/s': clipsPerSecond.toFixed(2), 'GFLOP/s': (result.calmkit as { gflops: number }).gflops.toFixed(1), note: `batch ${batch}` },
    { what: 'calmkit blocks', 's/clip': timings['calmkit-blocks'].median.toFixed(3), 'clips/s': (1 / timings['calmkit-blocks'].median).toFixed(2), 'GFLOP/s': blockGflops.toFixed(1), note: `${((blockGflops / peak) * 100).toFixed(0)}% of GEMM peak ${peak.toFixed(0)}` },
  ];
  if (reference) {
    const refClips = 1 / timings.reference.median;
    const minClips = 1 / timings['reference-minimal'].median;
    result.reference = { mode: 'jukemirlib', medianSeconds: timings.reference.median, clipsPerSecond: refClips, peakRssBytes: reference.peakRss() };
    result.referenceMinimal = { mode: 'minimal', medianSeconds: timings['reference-minimal'].median, clipsPerSecond: minClips };
    result.speedup = clipsPerSecond / refClips;
    result.speedupVsMinimal = clipsPerSecond / minClips;
    rows.push({ what: 'reference, jukemirlib way', 's/clip': timings.reference.median.toFixed(3), 'clips/s': refClips.toFixed(2), 'GFLOP/s': ((flops.blocks + flops.attention) / timings.reference.median / 1e9).toFixed(1), note: `calmkit ${(clipsPerSecond / refClips).toFixed(2)}x` });
    rows.push({ what: 'reference, same work', 's/clip': timings['reference-minimal'].median.toFixed(3), 'clips/s': minClips.toFixed(2), 'GFLOP/s': ((flops.blocks + flops.attention) / timings['reference-minimal'].median / 1e9).toFixed(1), note: `calmkit ${(clipsPerSecond / minClips).toFixed(2)}x` });
    await reference.close();
  }
  report('extract', result, rows);
  model.dispose();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
