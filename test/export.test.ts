// scripts/export-jukebox.py on small random checkpoints in jukebox's layout.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exportArgs, makeCkptArgs, ROOT, runOk, runPy, SMALL, tempDir, EXPORT } from './helpers/jukebox';

const LAYERS = 5; // of depthFull = 8: blocks 5..7 and x_out must be dropped

const s = SMALL;
const EXPECTED_ATTRS = {
  calmkit_format: 1,
  preset: 'export',
  sample_rate: 44100,
  vq_levels: 3,
  vq_downs_t: s.vqDowns,
  vq_strides_t: s.vqStrides,
  vq_emb_width: s.vqEmbWidth,
  vq_l_bins: s.vqLBins,
  vq_width: s.vqWidth,
  vq_depth: s.vqDepth,
  vq_m_conv: 1.0,
  vq_dilation_growth_rate: 3,
  n_ctx: s.nCtx,
  width: s.width,
  depth: LAYERS,
  full_depth: s.depthFull,
  heads: s.heads,
  m_attn: s.mAttn,
  m_mlp: s.mMlp,
  attn_order: 2,
  blocks: s.blocks,
  bins: s.bins,
  y_bins_genre: s.yBinsGenre,
  y_bins_artist: s.yBinsArtist,
  t_bins: s.tBins,
  max_bow_genre_size: 5,
  min_duration: 60.0,
  max_duration: 600.0,
  cond_total_length: 2734080,
  cond_offset: 0,
  cond_artist: 0,
  cond_genre: 0,
};

// `foreign`: the wrapper dict also pickles an object of a class (jukebox.hparams.Hyperparams)
// that cannot be imported at load time, as real jukebox files may.
const variants: Array<{ format: string; wrap: string; prefix: boolean; foreign: boolean }> = [
  { format: 'legacy', wrap: 'model', prefix: false, foreign: true },
  { format: 'legacy', wrap: 'bare', prefix: true, foreign: false },
  { format: 'zip', wrap: 'model', prefix: true, foreign: false },
  { format: 'zip', wrap: 'bare', prefix: false, foreign: false },
  { format: 'zip', wrap: 'model', prefix: false, foreign: true },
];

const ATTRS_FLAGS = [
  '--preset',
  'small',
  '--source',
  'unit test',
  '--cond-total-length',
  '3000000',
  '--cond-offset',
  '44100',
  '--cond-artist',
  '3',
  '--cond-genre',
  '5',
  '--max-bow-genre-size',
  '4',
];

interface Comparison {
  code: number;
  log: string;
  extra: string[];
  missing: string[];
  notIdentical: string[];
  wDtypes: string[];
  otherDtypes: string[];
  nW: number;
  attrs: Record<string, unknown>;
}

// Every positive case runs in one Python process (test/reference/export_roundtrip.py):
// it calls the maker's and the exporter's main() in turn and compares the results.
const root = tempDir('export');
const jobs = [
  ...variants.map((v, i) => {
    const dir = path.join(root, `v${i}`);
    const extra = [
      '--format',
      v.format,
      '--wrap',
      v.wrap,
      '--seed',
      `${3 + i}`,
      ...(v.prefix ? ['--module-prefix'] : []),
      ...(v.foreign ? ['--foreign-hps'] : []),
    ];
    return { dir, layers: LAYERS, make: makeCkptArgs(dir, extra).slice(1), export: exportArgs(dir, path.join(dir, 'out.pt'), LAYERS).slice(1) };
  }),
  (() => {
    const dir = path.join(root, 'attrs');
    return { dir, layers: 2, make: makeCkptArgs(dir).slice(1), export: exportArgs(dir, path.join(dir, 'out.pt'), 2, ATTRS_FLAGS).slice(1) };
  })(),
];
let results: Promise<Comparison[]> | undefined;
function roundtrip(): Promise<Comparison[]> {
  results ??= runOk([path.join(ROOT, 'test', 'reference', 'export_roundtrip.py')], JSON.stringify(jobs)).then((out) => JSON.parse(out) as Comparison[]);
  return results;
}

test.after.always(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

variants.forEach((v, i) => {
  const name = `${v.format} container, ${v.wrap} state dict${v.prefix ? ", 'module.' prefix" : ''}` + `${v.foreign ? ', unimportable extra object' : ''}`;
  test(`export: ${name}`, async (t) => {
    const r = (await roundtrip())[i];
    t.is(r.code, 0);
    t.regex(r.log, /wrote .*out\.pt: \d+ tensors/);
    t.is(/read with unknown classes as inert stubs \(jukebox\.hparams\.Hyperparams\)/.test(r.log), v.foreign);
    t.false(fs.existsSync(path.join(jobs[i].dir, 'out.pt.tmp')));
    t.deepEqual(r.extra, [], 'archive holds keys it should have dropped');
    t.deepEqual(r.missing, [], 'archive lacks keys');
    t.deepEqual(r.notIdentical, [], 'tensors differ from the source (values, dtype or shape)');
    t.deepEqual(r.wDtypes, ['torch.float16']);
    t.deepEqual(r.otherDtypes, ['torch.float32']);
    t.is(r.nW, 4 * LAYERS);
    const { source, ...attrs } = r.attrs;
    t.deepEqual(attrs, EXPECTED_ATTRS);
    t.regex(String(source), /vqvae\.pth\.tar/);
  });
});

test('export: attributes follow the flags (preset, source, conditioning label)', async (t) => {
  const r = (await roundtrip())[variants.length];
  t.is(r.code, 0);
  t.deepEqual(r.extra, []);
  t.deepEqual(r.missing, []);
  t.like(r.attrs, {
    preset: 'small',
    source: 'unit test',
    depth: 2,
    cond_total_length: 3000000,
    cond_offset: 44100,
    cond_artist: 3,
    cond_genre: 5,
    max_bow_genre_size: 4,
  });
});

test('export: a missing block key fails and names it; blocks beyond --layers may be missing', async (t) => {
  const dir = tempDir('export-missing');
  const key = `prior.transformer._attn_mods.${LAYERS}.ln_0.weight`;
  await runOk(makeCkptArgs(dir, ['--drop-key', key]));
  const ok = await runPy(exportArgs(dir, path.join(dir, 'ok.pt'), LAYERS));
  t.is(ok.code, 0, ok.stderr);
  const r = await runPy(exportArgs(dir, path.join(dir, 'bad.pt'), LAYERS + 1));
  t.not(r.code, 0);
  t.regex(r.stderr, new RegExp(`missing keys \\(1\\):\\s+${key.replace(/\./g, '\\.')}\\n`));
  t.false(fs.existsSync(path.join(dir, 'bad.pt')));
  fs.rmSync(dir, { recursive: true, force: true });
});

test('export: VQ-VAE problems are listed, missing keys and wrong shapes together', async (t) => {
  const dir = tempDir('export-vq');
  await runOk(
    makeCkptArgs(dir, [
      '--drop-key',
      'encoders.2.level_blocks.1.model.2.bias',
      '--drop-key',
      'bottleneck.level_blocks.2.k',
      '--bad-shape-key',
      'encoders.2.level_blocks.0.model.1.1.model.0.model.3.weight',
    ]),
  );
  const r = await runPy(exportArgs(dir, path.join(dir, 'out.pt'), LAYERS));
  t.not(r.code, 0);
  t.regex(r.stderr, /VQ-VAE checkpoint .* does not match/);
  t.regex(r.stderr, /missing keys \(2\):\s+encoders\.2\.level_blocks\.1\.model\.2\.bias\s+bottleneck\.level_blocks\.2\.k\n/);
  t.regex(r.stderr, /wrong shapes \(1\):\s+encoders\.2\.level_blocks\.0\.model\.1\.1\.model\.0\.model\.3\.weight: expected \(16, 16, 1\), found \(17, 16, 1\)/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('export: wrong prior shapes fail and name the keys with both shapes', async (t) => {
  const dir = tempDir('export-shape');
  await runOk(makeCkptArgs(dir, ['--bad-shape-key', 'prior.transformer._attn_mods.1.attn.c_proj.w']));
  const r = await runPy(exportArgs(dir, path.join(dir, 'out.pt'), LAYERS));
  t.not(r.code, 0);
  t.regex(r.stderr, /wrong shapes \(1\):\s+prior\.transformer\._attn_mods\.1\.attn\.c_proj\.w: expected \(32, 64\), found \(33, 64\)/);

  // Hyperparameters that disagree with the checkpoint are caught by the same check.
  const r2 = await runPy(exportArgs(dir, path.join(dir, 'out.pt'), LAYERS, ['--m-mlp', '2.0']));
  t.not(r2.code, 0);
  t.regex(r2.stderr, /_attn_mods\.0\.mlp\.c_fc\.w: expected \(64, 128\), found \(64, 64\)/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('export: inconsistent hyperparameters are refused before reading anything', async (t) => {
  const dir = tempDir('export-hp');
  const r = await runPy(exportArgs(dir, path.join(dir, 'out.pt'), 9)); // deeper than depthFull
  t.not(r.code, 0);
  t.regex(r.stderr, /--layers 9 must be in 1\.\.--depth-full \(8\)/);
  const r2 = await runPy(exportArgs(dir, path.join(dir, 'out.pt'), 2, ['--blocks', '7']));
  t.not(r2.code, 0);
  t.regex(r2.stderr, /not a multiple of --blocks 7/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('export: a checkpoint whose pickle would run code is read without running it', async (t) => {
  for (const format of ['legacy', 'zip']) {
    const dir = tempDir(`export-hostile-${format}`);
    const marker = path.join(dir, 'PWNED');
    await runOk(makeCkptArgs(dir, ['--format', format, '--hostile-extra', marker]));
    const r = await runPy(exportArgs(dir, path.join(dir, 'out.pt'), LAYERS));
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /inert stubs \((posix|os)\.system\)/, format);
    t.false(fs.existsSync(marker), `${format}: the pickled os.system call ran`);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('export: --help documents the flags', async (t) => {
  const out = await runOk([EXPORT, '--help']);
  for (const flag of [
    '--vqvae',
    '--prior',
    '--out',
    '--layers',
    '--width',
    '--heads',
    '--n-ctx',
    '--blocks',
    '--depth-full',
    '--m-attn',
    '--m-mlp',
    '--attn-order',
    '--vq-downs',
    '--cond-total-length',
  ]) {
    t.true(out.includes(flag), flag);
  }
});
