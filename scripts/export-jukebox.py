#!/usr/bin/env python3
"""Convert OpenAI Jukebox checkpoints into a calmkit Jukebox archive.

Inputs are jukebox's own files: `vqvae.pth.tar` and `5b/prior_level_2.pth.tar`
(either torch.save container, legacy pickle or zip; either a {'model': state_dict}
dict or a bare state dict; a 'module.' key prefix is stripped). The output is a
TorchScript archive (torch.jit.save) whose state_dict keys are exactly jukebox's
names and whose root attributes carry the hyperparameters, as specified in
docs/contracts.md ("The calmkit Jukebox checkpoint").

Only what layers 1..L need is kept: encoders.2.* and bottleneck.level_blocks.2.k
from the VQ-VAE; prior.x_emb, prior.pos_emb, the y_emb tables and
prior.transformer._attn_mods.{0..L-1} from the prior. Tensors keep their stored
dtypes (Conv1D .w stay float16); nothing is converted.

Hyperparameter flags default to the real 5B model's values, so a plain
    .venv/bin/python scripts/export-jukebox.py --vqvae vqvae.pth.tar \\
        --prior prior_level_2.pth.tar --out jukebox-5b-L36.pt
converts the published files. Override them to convert a checkpoint of another
size in jukebox's layout; every kept tensor's shape is checked against them and
any mismatch or missing key aborts with a list of the offending keys.

Memory: one checkpoint is loaded at a time (the peak is about the size of the prior
file, ~10.3 GB for 5B) and the kept tensors are not copied.

Loading (torch 2.11, whose torch.load defaults to weights_only=True): weights_only=True
first; a file it refuses (OpenAI's files pickle jukebox's Hyperparams beside the
weights) is read with a restricted unpickler that resolves only torch's own
weights_only allowlist and turns every other class into an inert stub, so no
pickled code runs either way.
"""
import argparse
import gc
import os
import pickle
import sys
import time

# torch is imported in main() after the arguments are checked: importing it costs
# over a second, which --help and hyperparameter mistakes should not pay.
torch = None
nn = None

FORMAT_VERSION = 1


class ExportError(Exception):
    pass


def ints(s):
    try:
        return [int(v) for v in s.split(',') if v.strip() != '']
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected comma-separated integers, got {s!r}')


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog='export-jukebox.py', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group('files')
    io.add_argument('--vqvae', required=True, help="jukebox VQ-VAE checkpoint (vqvae.pth.tar)")
    io.add_argument('--prior', required=True, help="jukebox top-level prior checkpoint (5b/prior_level_2.pth.tar)")
    io.add_argument('--out', required=True, help='archive to write (written to OUT.tmp, then renamed)')
    io.add_argument('--layers', type=int, default=36,
                    help='deepest layer L (1-based) the archive must support; keeps blocks 0..L-1 (default 36)')
    io.add_argument('--preset', default='export', help="value of the archive's `preset` attribute (default 'export')")
    io.add_argument('--source', default=None,
                    help="value of the `source` attribute (default: the two input file names)")

    pr = p.add_argument_group('prior hyperparameters (defaults: jukebox 5b)')
    pr.add_argument('--width', type=int, default=4800, help='residual width (4800)')
    pr.add_argument('--heads', type=int, default=8, help='attention heads (8)')
    pr.add_argument('--n-ctx', type=int, default=8192, help='tokens per window (8192)')
    pr.add_argument('--blocks', type=int, default=128, help='attention blocks per window; block_ctx = n_ctx/blocks (128)')
    pr.add_argument('--depth-full', type=int, default=72, help='blocks of the source prior (72)')
    pr.add_argument('--m-attn', type=float, default=0.25, help='n_state = int(width*m_attn) (0.25)')
    pr.add_argument('--m-mlp', type=float, default=1.0, help='MLP hidden = int(width*m_mlp) (1.0)')
    pr.add_argument('--attn-order', type=int, default=2,
                    help='attention order; calmkit implements 2 (row, column, previous block) (2)')
    pr.add_argument('--bins', type=int, default=2048, help='token vocabulary (2048)')
    pr.add_argument('--y-bins-genre', type=int, default=120, help='genre table rows (120)')
    pr.add_argument('--y-bins-artist', type=int, default=4111, help='artist table rows (4111)')
    pr.add_argument('--t-bins', type=int, default=128, help='timing embedding bins (128)')
    pr.add_argument('--max-bow-genre-size', type=int, default=5, help='genre bag-of-words slots (5)')
    pr.add_argument('--min-duration', type=float, default=60.0, help='seconds (60)')
    pr.add_argument('--max-duration', type=float, default=600.0, help='seconds (600)')

    vq = p.add_argument_group('VQ-VAE hyperparameters of the top level (defaults: jukebox)')
    vq.add_argument('--sample-rate', type=int, default=44100, help='(44100)')
    vq.add_argument('--vq-downs', type=ints, default=[3, 2, 2], help='downs_t per encoder block (3,2,2)')
    vq.add_argument('--vq-strides', type=ints, default=[2, 2, 2], help='strides_t per encoder block (2,2,2)')
    vq.add_argument('--vq-emb-width', type=int, default=64, help='(64)')
    vq.add_argument('--vq-l-bins', type=int, default=2048, help='codebook size (2048)')
    vq.add_argument('--vq-width', type=int, default=32, help='top level width after its multiplier (32)')
    vq.add_argument('--vq-depth', type=int, default=4, help='resnet blocks per down step (4)')
    vq.add_argument('--vq-m-conv', type=float, default=1.0, help='resnet hidden = int(m_conv*width) (1.0)')
    vq.add_argument('--vq-dilation-growth-rate', type=int, default=3, help='dilation of resnet block j is rate**j (3)')

    cd = p.add_argument_group('conditioning label (defaults: what jukemir feeds)')
    cd.add_argument('--cond-total-length', type=int, default=None,
                    help='label total_length in samples (default (int(62*sr)//hop)*hop = 2734080)')
    cd.add_argument('--cond-offset', type=int, default=0, help='label offset in samples (0)')
    cd.add_argument('--cond-artist', type=int, default=0, help='artist id, 0 = "unknown" (0)')
    cd.add_argument('--cond-genre', type=int, default=0, help='genre id, 0 = "unknown" (0)')
    return p.parse_args(argv)


def hop_of(a):
    h = 1
    for s, d in zip(a.vq_strides, a.vq_downs):
        h *= s ** d
    return h


def check_hparams(a):
    errs = []
    if len(a.vq_downs) != len(a.vq_strides) or not a.vq_downs:
        errs.append(f'--vq-downs {a.vq_downs} and --vq-strides {a.vq_strides} must be non-empty and of equal length')
    if a.layers < 1 or a.layers > a.depth_full:
        errs.append(f'--layers {a.layers} must be in 1..--depth-full ({a.depth_full})')
    if a.n_ctx % a.blocks != 0:
        errs.append(f'--n-ctx {a.n_ctx} is not a multiple of --blocks {a.blocks}')
    n_state = int(a.width * a.m_attn)
    if a.heads < 1 or n_state % a.heads != 0:
        errs.append(f'n_state int(width*m_attn) = {n_state} is not a multiple of --heads {a.heads}')
    if not 0 <= a.cond_artist < a.y_bins_artist:
        errs.append(f'--cond-artist {a.cond_artist} outside the artist table (0..{a.y_bins_artist - 1})')
    if not 0 <= a.cond_genre < a.y_bins_genre:
        errs.append(f'--cond-genre {a.cond_genre} outside the genre table (0..{a.y_bins_genre - 1})')
    if not errs:
        # jukebox's RangeEmbedding asserts these ranges; a label outside them would
        # crash jukebox itself, so refuse to bake it into an archive.
        sr = a.sample_rate
        window = a.n_ctx * hop_of(a)
        lo, hi = a.min_duration * sr, a.max_duration * sr
        if not lo <= a.cond_total_length < hi:
            errs.append(f'--cond-total-length {a.cond_total_length} outside [min_duration*sr, max_duration*sr) = [{lo}, {hi})')
        if a.cond_offset < 0 or a.cond_offset + window > a.cond_total_length:
            errs.append(f'--cond-offset {a.cond_offset} + window {window} exceeds --cond-total-length {a.cond_total_length}')
        if a.cond_offset + window > hi:
            errs.append(f'--cond-offset {a.cond_offset} + window {window} exceeds max_duration*sr {hi}')
    if errs:
        raise ExportError('bad hyperparameters:\n  ' + '\n  '.join(errs))


def expected_vqvae(a):
    """Expected shapes of every kept VQ-VAE tensor, keyed by jukebox's names."""
    exp = {}
    top = len(a.vq_downs) - 1
    width, emb = a.vq_width, a.vq_emb_width
    hidden = int(a.vq_m_conv * width)
    for b in range(len(a.vq_downs)):
        pre = f'encoders.{top}.level_blocks.{b}.model.'
        k = 2 * a.vq_strides[b]
        for i in range(a.vq_downs[b]):
            cin = (1 if b == 0 else emb) if i == 0 else width
            exp[f'{pre}{i}.0.weight'] = (width, cin, k)
            exp[f'{pre}{i}.0.bias'] = (width,)
            for j in range(a.vq_depth):
                rp = f'{pre}{i}.1.model.{j}.model.'
                exp[rp + '1.weight'] = (hidden, width, 3)
                exp[rp + '1.bias'] = (hidden,)
                exp[rp + '3.weight'] = (width, hidden, 1)
                exp[rp + '3.bias'] = (width,)
        exp[f'{pre}{a.vq_downs[b]}.weight'] = (emb, width, 3)
        exp[f'{pre}{a.vq_downs[b]}.bias'] = (emb,)
    exp[f'bottleneck.level_blocks.{top}.k'] = (a.vq_l_bins, emb)
    return exp


def expected_prior(a):
    w = a.width
    n_state = int(w * a.m_attn)
    hidden = int(w * a.m_mlp)
    exp = {
        'prior.x_emb.weight': (a.bins, w),
        'prior.pos_emb.pos_emb': (a.n_ctx, w),
        'y_emb.bow_genre_emb.emb.weight': (a.y_bins_genre, w),
        'y_emb.artist_emb.emb.weight': (a.y_bins_artist, w),
        'y_emb.total_length_emb.emb.weight': (a.t_bins, w),
        'y_emb.absolute_pos_emb.emb.weight': (a.t_bins, w),
        'y_emb.relative_pos_emb.emb.weight': (a.t_bins, w),
    }
    for i in range(a.layers):
        p = f'prior.transformer._attn_mods.{i}.'
        exp.update({
            p + 'attn.c_attn.w': (w, 3 * n_state), p + 'attn.c_attn.b': (3 * n_state,),
            p + 'attn.c_proj.w': (n_state, w), p + 'attn.c_proj.b': (w,),
            p + 'mlp.c_fc.w': (w, hidden), p + 'mlp.c_fc.b': (hidden,),
            p + 'mlp.c_proj.w': (hidden, w), p + 'mlp.c_proj.b': (w,),
            p + 'ln_0.weight': (w,), p + 'ln_0.bias': (w,),
            p + 'ln_1.weight': (w,), p + 'ln_1.bias': (w,),
        })
    return exp


class _Stub(dict):
    """Placeholder for an object whose class is not importable here.

    A dict subclass so that pickled dict subclasses (jukebox's Hyperparams is one)
    can receive their items; list-style items and any state are kept aside.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.stub_args = args

    def append(self, item):
        self.setdefault('__items__', []).append(item)

    def extend(self, items):
        self.setdefault('__items__', []).extend(items)

    def __setstate__(self, state):
        self.stub_state = state


def _restricted_pickle_module():
    """A pickle module for torch.load that imports nothing: the globals torch's own weights_only loader allows
    (tensor and storage rebuilders, OrderedDict, ...) resolve to themselves, every other name to an inert _Stub.
    No pickled callable outside torch's allowlist can run, so this is as safe as weights_only=True while it
    tolerates the training extras that OpenAI's 2020 files pickle beside the weights (jukebox's Hyperparams, a
    dict subclass that weights_only=True refuses to fill)."""
    import types
    from torch._weights_only_unpickler import _get_allowed_globals
    allowed = _get_allowed_globals()
    stubs = {}

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            full = f'{module}.{name}'
            if full in allowed:
                return allowed[full]
            if full not in stubs:
                stubs[full] = type(name, (_Stub,), {'__module__': module})
            return stubs[full]

    mod = types.ModuleType('calmkit_restricted_pickle')
    mod.Unpickler = Restricted
    mod.load = lambda f, **kw: Restricted(f, **kw).load()
    return mod, stubs


def load_state_dict(path, what):
    """torch >= 2.6 loads with weights_only=True by default. That reads bare state dicts and {'model': ...} of
    plain containers, in both the zip and the legacy (pre-1.6) container, and is tried first. A file that pickles
    anything else (jukebox's 'hps' beside the weights) is read again through _restricted_pickle_module, never
    with an unrestricted unpickler."""
    if not os.path.isfile(path):
        raise ExportError(f'{what} checkpoint not found: {path}')
    try:
        try:
            obj = torch.load(path, map_location='cpu', weights_only=True)
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            module, stubs = _restricted_pickle_module()
            obj = torch.load(path, map_location='cpu', weights_only=False, pickle_module=module)
            names = ', '.join(sorted(stubs)) or 'none'
            print(f'  note: weights_only=True refused it ({first[:160]}); read with unknown classes as inert '
                  f'stubs ({names})', flush=True)
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise ExportError(f'cannot read {what} checkpoint {path}: {e}')
    if isinstance(obj, dict) and isinstance(obj.get('model'), dict):
        sd = obj['model']
    elif isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        sd = obj
    else:
        raise ExportError(f"{what} checkpoint {path} holds neither {{'model': state_dict}} nor a state dict")
    del obj
    if any(k.startswith('module.') for k in sd):
        sd = {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in sd.items()}
    return sd


def take(sd, expected, path, what):
    """Move the expected tensors out of `sd` (validated), leaving the rest to be freed."""
    missing = [k for k in expected if k not in sd]
    wrong = [f'{k}: expected {tuple(expected[k])}, found {tuple(sd[k].shape)}'
             for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k])]
    if missing or wrong:
        lines = [f'{what} checkpoint {path} does not match the hyperparameters:']
        if missing:
            lines.append(f'  missing keys ({len(missing)}):')
            lines += [f'    {k}' for k in missing[:50]] + ([f'    ... and {len(missing) - 50} more'] if len(missing) > 50 else [])
        if wrong:
            lines.append(f'  wrong shapes ({len(wrong)}):')
            lines += [f'    {s}' for s in wrong[:50]] + ([f'    ... and {len(wrong) - 50} more'] if len(wrong) > 50 else [])
        raise ExportError('\n'.join(lines))
    kept, copied = {}, 0
    for k in expected:
        t = sd.pop(k)
        # TorchScript serialises whole storages: a view into a larger storage would
        # drag the rest of it into the archive, so only such tensors are copied.
        if not t.is_contiguous() or t.storage_offset() != 0 or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.contiguous().clone()
            copied += 1
        kept[k] = t
    dropped = len(sd)
    return kept, dropped, copied


def nbytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


def gb(n):
    return f'{n / 1e9:.3f} GB' if n >= 1e9 else f'{n / 1e6:.2f} MB'


def build_module(tensors, attrs):
    """A module tree whose state_dict keys are exactly the (dotted) tensor names."""
    root = nn.Module()
    for key, t in tensors.items():
        parts = key.split('.')
        mod = root
        for name in parts[:-1]:
            child = mod._modules.get(name)
            if child is None:
                child = nn.Module()
                mod.add_module(name, child)
            mod = child
        leaf = parts[-1]
        if parts[0] == 'bottleneck':
            mod.register_buffer(leaf, t)  # jukebox registers the codebook as a buffer
        else:
            mod.register_parameter(leaf, nn.Parameter(t, requires_grad=False))
    for name, value in attrs.items():
        setattr(root, name, value)
    return root


def main(argv):
    a = parse_args(argv)
    hop = hop_of(a) if len(a.vq_downs) == len(a.vq_strides) else 1
    if a.cond_total_length is None:
        a.cond_total_length = (int(62 * a.sample_rate) // hop) * hop
    check_hparams(a)
    global torch, nn
    import torch
    import torch.nn as nn
    t0 = time.time()
    if a.attn_order != 2:
        print(f'warning: --attn-order {a.attn_order}: calmkit only implements attn_order 2', file=sys.stderr)
    if a.layers > 36 and a.width == 4800:
        print(f'note: --layers {a.layers} keeps {a.layers} blocks (~{a.layers * 0.1383:.1f} GB of fp16 weights)')

    print(f'reading VQ-VAE {a.vqvae} ({gb(os.path.getsize(a.vqvae))})', flush=True)
    t = time.time()
    sd = load_state_dict(a.vqvae, 'VQ-VAE')
    vq, vq_drop, vq_copy = take(sd, expected_vqvae(a), a.vqvae, 'VQ-VAE')
    del sd
    gc.collect()
    print(f'  kept {len(vq)} tensors ({gb(nbytes(vq.values()))}), dropped {vq_drop}, in {time.time() - t:.2f} s', flush=True)

    print(f'reading prior {a.prior} ({gb(os.path.getsize(a.prior))})', flush=True)
    t = time.time()
    sd = load_state_dict(a.prior, 'prior')
    pr, pr_drop, pr_copy = take(sd, expected_prior(a), a.prior, 'prior')
    del sd
    gc.collect()
    print(f'  kept {len(pr)} tensors ({gb(nbytes(pr.values()))}), dropped {pr_drop}, in {time.time() - t:.2f} s', flush=True)
    t_load = time.time() - t

    tensors = {**vq, **pr}
    by_dtype = {}
    for v in tensors.values():
        by_dtype[str(v.dtype)] = by_dtype.get(str(v.dtype), 0) + v.numel() * v.element_size()
    w_not_half = [k for k, v in pr.items() if k.endswith('.w') and v.dtype != torch.float16]
    if w_not_half:
        print(f'warning: {len(w_not_half)} Conv1D .w tensors are not float16 (kept as stored), e.g. {w_not_half[0]}',
              file=sys.stderr)

    attrs = {
        'calmkit_format': FORMAT_VERSION,
        'preset': str(a.preset),
        'source': a.source if a.source is not None else
        f'exported from {os.path.basename(a.vqvae)} + {os.path.basename(a.prior)}',
        'sample_rate': int(a.sample_rate),
        'vq_levels': len(a.vq_downs),
        'vq_downs_t': [int(v) for v in a.vq_downs],
        'vq_strides_t': [int(v) for v in a.vq_strides],
        'vq_emb_width': int(a.vq_emb_width),
        'vq_l_bins': int(a.vq_l_bins),
        'vq_width': int(a.vq_width),
        'vq_depth': int(a.vq_depth),
        'vq_m_conv': float(a.vq_m_conv),
        'vq_dilation_growth_rate': int(a.vq_dilation_growth_rate),
        'n_ctx': int(a.n_ctx),
        'width': int(a.width),
        'depth': int(a.layers),
        'full_depth': int(a.depth_full),
        'heads': int(a.heads),
        'm_attn': float(a.m_attn),
        'm_mlp': float(a.m_mlp),
        'attn_order': int(a.attn_order),
        'blocks': int(a.blocks),
        'bins': int(a.bins),
        'y_bins_genre': int(a.y_bins_genre),
        'y_bins_artist': int(a.y_bins_artist),
        't_bins': int(a.t_bins),
        'max_bow_genre_size': int(a.max_bow_genre_size),
        'min_duration': float(a.min_duration),
        'max_duration': float(a.max_duration),
        'cond_total_length': int(a.cond_total_length),
        'cond_offset': int(a.cond_offset),
        'cond_artist': int(a.cond_artist),
        'cond_genre': int(a.cond_genre),
    }
    t = time.time()
    scripted = torch.jit.script(build_module(tensors, attrs))
    tmp = a.out + '.tmp'
    torch.jit.save(scripted, tmp)
    os.replace(tmp, a.out)
    t_save = time.time() - t
    total = nbytes(tensors.values())
    dtypes = ', '.join(f'{k.replace("torch.", "")} {gb(v)}' for k, v in sorted(by_dtype.items()))
    print(f'wrote {a.out}: {len(tensors)} tensors, {gb(total)} of tensor data '
          f'({dtypes}), '
          f'file {gb(os.path.getsize(a.out))}; {vq_copy + pr_copy} tensors copied')
    print(f'time: prior load+select {t_load:.2f} s, script+save {t_save:.2f} s, total {time.time() - t0:.2f} s '
          f'({total / 1e6 / max(time.time() - t0, 1e-9):.0f} MB/s of kept data)')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv[1:]))
    except ExportError as e:
        print(f'export-jukebox: error: {e}', file=sys.stderr)
        sys.exit(2)
