// `calmkit model init|info`: make random-weight Jukebox checkpoints and describe checkpoints.
import type { Command } from 'commander';
import { Jukebox, JUKEBOX_PRESETS, type JukeboxCheckpointInfo, type JukeboxPreset } from '../model';
import { choice, integer } from './options';
import { checkOutputs } from './outputs';

function bytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(2)} MiB`;
  return `${(n / 1024).toFixed(1)} KiB`;
}

/** Human-readable description of a checkpoint, one fact per line. */
export function formatInfo(path: string, info: JukeboxCheckpointInfo): string {
  const vq = info.vqvae;
  return [
    `${path}`,
    `  preset: ${info.preset} (${info.source})`,
    `  vq-vae (level 2): levels ${vq.levels}, downs_t [${vq.downsT.join(', ')}], strides_t [${vq.stridesT.join(', ')}], width ${vq.width}, depth ${vq.depth}, codebook ${vq.codebookSize} x ${vq.embWidth}, hop ${info.hop}`,
    `  prior: width ${info.width}, layers 1..${info.depth} (of ${info.fullDepth}), heads ${info.heads}, n_state ${info.nState}, mlp ${info.mlpWidth}, n_ctx ${info.nCtx}, blocks ${info.blocks} (block_ctx ${info.blockCtx}), attn_order ${info.attnOrder}`,
    `  window: ${info.windowSamples} samples (${(info.windowSamples / info.sampleRate).toFixed(4)} s at ${info.sampleRate} Hz)`,
    `  label: total_length ${info.label.totalLength}, offset ${info.label.offset}, artist ${info.label.artist}, genre ${info.label.genre}, durations [${info.label.minDuration}, ${info.label.maxDuration}) s, t_bins ${info.label.tBins}`,
    `  tensors: ${info.parameters.toLocaleString('en-US')} values, ${bytes(info.bytes)} (file ${bytes(info.fileBytes)}, one block ${bytes(info.blockBytes)})`,
    ...info.dtypes.map((d) => `    ${d.dtype}: ${d.tensors} tensors, ${d.elements.toLocaleString('en-US')} values, ${bytes(d.bytes)}`),
  ].join('\n');
}

export function register(program: Command): void {
  const model = program.command('model').description('Jukebox checkpoints (calmkit TorchScript archives)');

  model
    .command('init')
    .description("write a random-weight checkpoint with jukebox's init scales (5b: the real shapes, about 5 GB for 36 layers)")
    .requiredOption('--preset <preset>', JUKEBOX_PRESETS.join(' | '), choice('--preset', JUKEBOX_PRESETS))
    .option('--layers <n>', "transformer blocks to keep (default: the preset's)", integer('--layers', { min: 1, max: 4096 }))
    .option('--seed <s>', 'random seed', integer('--seed', { min: 0 }), 0)
    .requiredOption('--out <file>', 'checkpoint to write')
    .action(async (opts: { preset: JukeboxPreset; layers?: number; seed: number; out: string }) => {
      await checkOutputs([{ flag: '--out', path: opts.out, kind: 'checkpoint' }]);
      const started = Date.now();
      await Jukebox.writeRandomCheckpoint({ preset: opts.preset, layers: opts.layers, seed: opts.seed, out: opts.out });
      const info = await Jukebox.inspect(opts.out);
      process.stdout.write(
        `wrote ${opts.out}: ${opts.preset}, ${info.depth} layers, ${bytes(info.fileBytes)} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
      );
    });

  model
    .command('info <file>')
    .description('hyperparameters, layers, dtypes and bytes of a checkpoint (validates every key)')
    .option('--json', 'print JSON')
    .option('--no-verify-weights', 'skip the CRC-32 and NaN/Inf checks of the weights (a file you trust)')
    .action(async (file: string, opts: { json?: boolean; verifyWeights: boolean }) => {
      const info = await Jukebox.inspect(file, { verifyWeights: opts.verifyWeights });
      process.stdout.write(opts.json ? `${JSON.stringify(info, null, 2)}\n` : `${formatInfo(file, info)}\n`);
    });
}
