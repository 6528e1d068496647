#!/usr/bin/env python3
"""Write small random checkpoints in OpenAI Jukebox's on-disk layout.

Produces DIR/vqvae.pth.tar and DIR/prior_level_2.pth.tar with the same key
names, shapes (scaled down by the flags) and dtypes as the real 5B files, plus
the keys an exporter must throw away (other VQ-VAE levels, decoders, x_out,
blocks past the requested depth), so export tests see a realistic input.

The key layout is written out here by hand, on purpose independently of
scripts/export-jukebox.py: if both were generated from one shared table a
layout mistake would be invisible to the tests.
"""
import argparse
import os
import sys

import torch


def ints(s):
    return [int(v) for v in s.split(',') if v != '']


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True, help='output directory (created if missing)')
    p.add_argument('--format', choices=['legacy', 'zip'], default='zip',
                   help='torch.save container: legacy pickle (_use_new_zipfile_serialization=False) or zip')
    p.add_argument('--wrap', choices=['model', 'bare'], default='model',
                   help="'model': {'model': state_dict, 'step': 0} like jukebox's own files; 'bare': the state dict itself")
    p.add_argument('--module-prefix', action='store_true',
                   help="prefix every key with 'module.' as DistributedDataParallel checkpoints do")
    p.add_argument('--seed', type=int, default=0)
    # Prior
    p.add_argument('--width', type=int, default=64)
    p.add_argument('--n-ctx', type=int, default=256)
    p.add_argument('--depth-full', type=int, default=8, help='blocks written to the prior file')
    p.add_argument('--m-attn', type=float, default=0.5)
    p.add_argument('--m-mlp', type=float, default=1.0)
    p.add_argument('--bins', type=int, default=64)
    p.add_argument('--y-bins-genre', type=int, default=6)
    p.add_argument('--y-bins-artist', type=int, default=7)
    p.add_argument('--t-bins', type=int, default=16)
    p.add_argument('--w-dtype', choices=['float16', 'float32'], default='float16',
                   help='dtype of the Conv1D .w tensors (jukebox stores float16)')
    # VQ-VAE (top level's encoder)
    p.add_argument('--vq-downs', type=ints, default=[3, 2, 2])
    p.add_argument('--vq-strides', type=ints, default=[2, 2, 2])
    p.add_argument('--vq-emb-width', type=int, default=16)
    p.add_argument('--vq-l-bins', type=int, default=64)
    p.add_argument('--vq-width', type=int, default=16)
    p.add_argument('--vq-depth', type=int, default=2)
    p.add_argument('--vq-m-conv', type=float, default=1.0)
    p.add_argument('--foreign-hps', action='store_true',
                   help="with --wrap model, add an 'hps' entry whose class (jukebox.hparams.Hyperparams) "
                        "will not be importable when the file is read")
    p.add_argument('--hostile-extra', metavar='MARKER',
                   help="with --wrap model, add an 'hps' entry that, if unpickled without restriction, calls "
                        "os.system to create the file MARKER (the exporter must never run it)")
    # Corruptions for negative tests
    p.add_argument('--drop-key', action='append', default=[],
                   help='omit this (unprefixed) key from whichever file holds it; repeatable')
    p.add_argument('--bad-shape-key', action='append', default=[],
                   help='give this (unprefixed) key a wrong leading dimension; repeatable')
    return p.parse_args(argv)


def encoder_keys(level, a, g):
    """Keys of jukebox's `encoders.<level>`: one EncoderConvBlock per level <= `level`."""
    out = {}
    width, emb = a.vq_width, a.vq_emb_width
    hidden = int(a.vq_m_conv * width)
    for b in range(level + 1):
        pre = f'encoders.{level}.level_blocks.{b}.model.'
        n_down, stride = a.vq_downs[b], a.vq_strides[b]
        cin = 1 if b == 0 else emb
        for i in range(n_down):
            fan = cin if i == 0 else width
            # Kaiming-ish scales keep activations O(1) so the codes are diverse, not all one token.
            out[f'{pre}{i}.0.weight'] = torch.randn(width, fan, 2 * stride, generator=g) / (fan * 2 * stride) ** 0.5
            out[f'{pre}{i}.0.bias'] = 0.1 * torch.randn(width, generator=g)
            for j in range(a.vq_depth):
                rp = f'{pre}{i}.1.model.{j}.model.'
                out[rp + '1.weight'] = torch.randn(hidden, width, 3, generator=g) / (3 * width) ** 0.5
                out[rp + '1.bias'] = 0.1 * torch.randn(hidden, generator=g)
                out[rp + '3.weight'] = 0.5 * torch.randn(width, hidden, 1, generator=g) / hidden ** 0.5
                out[rp + '3.bias'] = 0.1 * torch.randn(width, generator=g)
        out[f'{pre}{n_down}.weight'] = torch.randn(emb, width, 3, generator=g) / (3 * width) ** 0.5
        out[f'{pre}{n_down}.bias'] = 0.1 * torch.randn(emb, generator=g)
    return out


def vqvae_state(a, g):
    sd = {}
    levels = len(a.vq_downs)
    for level in range(levels):
        sd.update(encoder_keys(level, a, g))
        # Bottleneck buffers as jukebox registers them; only the top k is used downstream.
        sd[f'bottleneck.level_blocks.{level}.k'] = torch.randn(a.vq_l_bins, a.vq_emb_width, generator=g)
        sd[f'bottleneck.level_blocks.{level}.k_sum'] = torch.randn(a.vq_l_bins, a.vq_emb_width, generator=g)
        sd[f'bottleneck.level_blocks.{level}.k_elem'] = torch.ones(a.vq_l_bins)
        # A token decoder stand-in: the exporter must drop all of decoders.*.
        sd[f'decoders.{level}.out.weight'] = torch.randn(1, a.vq_width, 3, generator=g)
        sd[f'decoders.{level}.out.bias'] = torch.randn(1, generator=g)
    return sd


def prior_state(a, g):
    w = a.width
    n_state = int(w * a.m_attn)
    hidden = int(w * a.m_mlp)
    wdt = getattr(torch, a.w_dtype)
    sd = {
        'prior.x_emb.weight': 0.5 * torch.randn(a.bins, w, generator=g),
        'prior.pos_emb.pos_emb': 0.2 * torch.randn(a.n_ctx, w, generator=g),
        'prior.x_out.weight': torch.randn(a.bins, w, generator=g),
        'y_emb.bow_genre_emb.emb.weight': 0.2 * torch.randn(a.y_bins_genre, w, generator=g),
        'y_emb.artist_emb.emb.weight': 0.2 * torch.randn(a.y_bins_artist, w, generator=g),
        'y_emb.total_length_emb.emb.weight': 0.2 * torch.randn(a.t_bins, w, generator=g),
        'y_emb.absolute_pos_emb.emb.weight': 0.2 * torch.randn(a.t_bins, w, generator=g),
        'y_emb.relative_pos_emb.emb.weight': 0.2 * torch.randn(a.t_bins, w, generator=g),
    }
    for i in range(a.depth_full):
        p = f'prior.transformer._attn_mods.{i}.'
        sd[p + 'attn.c_attn.w'] = (torch.randn(w, 3 * n_state, generator=g) / w ** 0.5).to(wdt)
        sd[p + 'attn.c_attn.b'] = 0.1 * torch.randn(3 * n_state, generator=g)
        sd[p + 'attn.c_proj.w'] = (torch.randn(n_state, w, generator=g) / n_state ** 0.5).to(wdt)
        sd[p + 'attn.c_proj.b'] = 0.1 * torch.randn(w, generator=g)
        sd[p + 'ln_0.weight'] = 1 + 0.1 * torch.randn(w, generator=g)
        sd[p + 'ln_0.bias'] = 0.1 * torch.randn(w, generator=g)
        sd[p + 'mlp.c_fc.w'] = (torch.randn(w, hidden, generator=g) / w ** 0.5).to(wdt)
        sd[p + 'mlp.c_fc.b'] = 0.1 * torch.randn(hidden, generator=g)
        sd[p + 'mlp.c_proj.w'] = (torch.randn(hidden, w, generator=g) / hidden ** 0.5).to(wdt)
        sd[p + 'mlp.c_proj.b'] = 0.1 * torch.randn(w, generator=g)
        sd[p + 'ln_1.weight'] = 1 + 0.1 * torch.randn(w, generator=g)
        sd[p + 'ln_1.bias'] = 0.1 * torch.randn(w, generator=g)
    return sd


def corrupt(sd, a):
    for k in a.drop_key:
        sd.pop(k, None)
    for k in a.bad_shape_key:
        if k in sd:
            t = sd[k]
            sd[k] = torch.zeros((t.shape[0] + 1,) + tuple(t.shape[1:]), dtype=t.dtype)
    return sd


def foreign_hps():
    """An object pickled as jukebox.hparams.Hyperparams, a module the reader lacks."""
    import types
    if 'jukebox.hparams' in sys.modules:  # pickle insists on one class object per name
        return sys.modules['jukebox.hparams'].Hyperparams(width=4800, depth=72, sr=44100)
    pkg = types.ModuleType('jukebox')
    mod = types.ModuleType('jukebox.hparams')
    Hyperparams = type('Hyperparams', (dict,), {'__module__': 'jukebox.hparams'})
    mod.Hyperparams = Hyperparams
    pkg.hparams = mod
    sys.modules['jukebox'] = pkg
    sys.modules['jukebox.hparams'] = mod
    return Hyperparams(width=4800, depth=72, sr=44100)


class _Hostile:
    """Unpickles as os.system('touch MARKER') under an unrestricted unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def save(sd, path, a):
    if a.module_prefix:
        sd = {'module.' + k: v for k, v in sd.items()}
    obj = {'model': sd, 'step': 0} if a.wrap == 'model' else sd
    if a.foreign_hps and a.wrap == 'model':
        obj['hps'] = foreign_hps()
    if a.hostile_extra and a.wrap == 'model':
        obj['hps'] = _Hostile(a.hostile_extra)
    if a.format == 'legacy':
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(obj, path)


def main(argv):
    a = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    g = torch.Generator().manual_seed(a.seed)
    vq = corrupt(vqvae_state(a, g), a)
    save(vq, os.path.join(a.out, 'vqvae.pth.tar'), a)
    pr = corrupt(prior_state(a, g), a)
    save(pr, os.path.join(a.out, 'prior_level_2.pth.tar'), a)
    print(f'wrote {len(vq)} VQ-VAE and {len(pr)} prior tensors to {a.out} ({a.format}, {a.wrap})')


if __name__ == '__main__':
    main(sys.argv[1:])
