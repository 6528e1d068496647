#!/usr/bin/env python3
"""Independent eager-PyTorch reference for calmkit's Jukebox CALM extractor.

Written from docs/jukebox-spec.md (sections 0-5) and docs/contracts.md only. It
is deliberately naive: batch 1, fp32 activations (fp16 weights are upcast
exactly), explicit T x T attention masks instead of the block-reshape trick
jukebox uses, and it stops after the deepest requested layer, as jukemir does.
Its purpose is to be obviously right, so it can judge the fast implementation.

Usage (see docs/contracts.md, "Python reference CLI"):
  jukebox_ref.py --model ARCHIVE --audio RAW.f32 --layers 1,2,3 \\
                 --pooling mean|segments:K|none --out DIR
  jukebox_ref.py --bins-only [--model ARCHIVE | --n-ctx N --hop H ...]
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HPARAMS = [
    'sample_rate', 'vq_levels', 'vq_downs_t', 'vq_strides_t', 'vq_emb_width', 'vq_l_bins', 'vq_width',
    'vq_depth', 'vq_m_conv', 'vq_dilation_growth_rate', 'n_ctx', 'width', 'depth', 'heads', 'm_attn',
    'm_mlp', 'attn_order', 'blocks', 'bins', 'y_bins_genre', 'y_bins_artist', 't_bins',
    'max_bow_genre_size', 'min_duration', 'max_duration', 'cond_total_length', 'cond_offset',
    'cond_artist', 'cond_genre',
]


class RefError(Exception):
    pass


# ---------------------------------------------------------------- archive

def load_archive(path):
    if not os.path.isfile(path):
        raise RefError(f'archive not found: {path}')
    m = torch.jit.load(path, map_location='cpu')
    hp = {}
    for name in HPARAMS:
        if not hasattr(m, name):
            raise RefError(f'archive {path} lacks hyperparameter attribute {name!r}')
        hp[name] = getattr(m, name)
    # The spec's activations are fp32 with fp16-exact weights: upcasting is exact.
    sd = {k: v.detach().to(torch.float32) for k, v in m.state_dict().items()}
    top = hp['vq_levels'] - 1
    needed = [f'bottleneck.level_blocks.{top}.k', 'prior.x_emb.weight', 'prior.pos_emb.pos_emb',
              f'encoders.{top}.level_blocks.0.model.0.0.weight',
              f"prior.transformer._attn_mods.{hp['depth'] - 1}.mlp.c_proj.w"]
    missing = [k for k in needed if k not in sd]
    if missing:
        raise RefError(f'archive {path} lacks tensors: ' + ', '.join(missing))
    return sd, hp


def hop_of(hp):
    h = 1
    for s, d in zip(hp['vq_strides_t'], hp['vq_downs_t']):
        h *= s ** d
    return h


# ---------------------------------------------------------------- timing conditioning

def range_bins(pos_start, pos_end, n_time, bins, lo, hi, clamp):
    """Bins of jukebox's RangeEmbedding, reproduced in float32 torch ops (spec 3.2).

    pos_start/pos_end are float32 tensors of shape (1, 1); lo/hi are Python floats, as
    in jukebox, so the scalar arithmetic happens where jukebox does it.
    """
    if n_time != 1:
        if clamp:
            pos_end = pos_end.clamp(lo, hi)
        interp = torch.arange(0, n_time, dtype=torch.float32).view(1, n_time) / n_time
        position = pos_start + (pos_end - pos_start) * interp
    else:
        position = pos_start
    normalised = (position - lo) / (hi - lo)
    return (bins * normalised).floor().long().view(-1)


def timing_bins(n_ctx, hop, sample_rate, min_duration, max_duration, t_bins, total_length, offset):
    """Bins of the label's three timing embeddings for one window of n_ctx tokens."""
    sample_length = n_ctx * hop
    total = torch.tensor([[total_length]], dtype=torch.int64).float()
    start = torch.tensor([[offset]], dtype=torch.int64)
    end = (start + sample_length).float()
    start = start.float()
    b_tl = range_bins(total, None, 1, t_bins, min_duration * sample_rate, max_duration * sample_rate, False)
    b_abs = range_bins(start, end, n_ctx, t_bins, 0.0, max_duration * sample_rate, False)
    b_rel = range_bins(start / total, end / total, n_ctx, t_bins, 0.0, 1.0, True)
    for name, b in (('total length', b_tl), ('absolute', b_abs), ('relative', b_rel)):
        if int(b.min()) < 0 or int(b.max()) >= t_bins:
            # jukebox would assert (or index out of range) here; do not guess a clamp.
            raise RefError(f'{name} timing bin outside 0..{t_bins - 1}: the label is outside the embedding range')
    return int(b_tl[0]), b_abs, b_rel


# ---------------------------------------------------------------- VQ-VAE (level 2 only)

def encode(audio, sd, hp):
    """Top-level VQ-VAE codes for mono float32 audio (spec section 2)."""
    top = hp['vq_levels'] - 1
    x = torch.from_numpy(audio).view(1, 1, -1)
    for b in range(hp['vq_levels']):
        pre = f'encoders.{top}.level_blocks.{b}.model.'
        stride = hp['vq_strides_t'][b]
        n_down = hp['vq_downs_t'][b]
        for i in range(n_down):
            x = F.conv1d(x, sd[f'{pre}{i}.0.weight'], sd[f'{pre}{i}.0.bias'], stride=stride, padding=stride // 2)
            for j in range(hp['vq_depth']):
                rp = f'{pre}{i}.1.model.{j}.model.'
                d = hp['vq_dilation_growth_rate'] ** j
                h = F.conv1d(F.relu(x), sd[rp + '1.weight'], sd[rp + '1.bias'], padding=d, dilation=d)
                h = F.conv1d(F.relu(h), sd[rp + '3.weight'], sd[rp + '3.bias'])
                x = x + h
        x = F.conv1d(x, sd[f'{pre}{n_down}.weight'], sd[f'{pre}{n_down}.bias'], padding=1)
    x = x[0].t()  # (T, emb_width)
    k = sd[f'bottleneck.level_blocks.{top}.k']
    dist = (x ** 2).sum(dim=1, keepdim=True) - 2 * (x @ k.t()) + (k ** 2).sum(dim=1).view(1, -1)
    return dist.argmin(dim=1)


# ---------------------------------------------------------------- prior

def attention_mask(kind, T, block_ctx):
    """Allowed (query, key) pairs for attention kind d mod 3, as a (T, T) bool matrix."""
    q = torch.arange(T).view(T, 1)
    k = torch.arange(T).view(1, T)
    if kind == 0:  # row: own block, causal
        return (q // block_ctx == k // block_ctx) & (k <= q)
    if kind == 1:  # column: same residue mod block_ctx, causal over blocks
        return (q % block_ctx == k % block_ctx) & (k <= q)
    # previous block: every key of block b-1, no causal mask inside it
    return k // block_ctx == q // block_ctx - 1


def attend(q, k, v, kind, block_ctx, mask):
    """Masked softmax attention for (heads, T, head_dim) q/k/v and a (T, T) mask."""
    w = (q @ k.transpose(1, 2)) * (1.0 / math.sqrt(q.shape[-1]))
    w = w.masked_fill(~mask, -1e9)
    a = torch.softmax(w, dim=-1) @ v
    if kind == 2:
        # Block 0 has no previous block: jukebox gives it block_ctx zero keys/values, so
        # its attention output is exactly 0. Masking alone would instead spread it
        # uniformly over every key, including future ones.
        a[:, :block_ctx] = 0
    return a


def layer_norm(x, sd, name):
    return F.layer_norm(x, (x.shape[-1],), sd[name + '.weight'], sd[name + '.bias'], eps=1e-5)


def conv1d_linear(x, sd, name):
    # jukebox's Conv1D stores W as (n_in, n_out): y = b + x W
    return x @ sd[name + '.w'] + sd[name + '.b']


def block(h, d, sd, hp, masks):
    p = f'prior.transformer._attn_mods.{d}.'
    T, W = h.shape
    heads = hp['heads']
    n_state = int(W * hp['m_attn'])
    hd = n_state // heads
    block_ctx = hp['n_ctx'] // hp['blocks']
    kind = d % 3

    qkv = conv1d_linear(layer_norm(h, sd, p + 'ln_0'), sd, p + 'attn.c_attn')
    q, k, v = (t.reshape(T, heads, hd).transpose(0, 1) for t in qkv.split(n_state, dim=1))
    a = attend(q, k, v, kind, block_ctx, masks[kind])
    a = conv1d_linear(a.transpose(0, 1).reshape(T, n_state), sd, p + 'attn.c_proj')
    h = h + a
    u = conv1d_linear(layer_norm(h, sd, p + 'ln_1'), sd, p + 'mlp.c_fc')
    u = u * torch.sigmoid(1.702 * u)  # quick-GELU, not erf/tanh GELU
    return h + conv1d_linear(u, sd, p + 'mlp.c_proj')


def prior_layers(tokens, sd, hp, layers):
    """Residual stream after blocks L-1 for each requested 1-based layer L, each (T, width)."""
    T = tokens.shape[0]
    n_ctx = hp['n_ctx']
    assert 0 < T <= n_ctx
    b_tl, b_abs, b_rel = timing_bins(n_ctx, hop_of(hp), hp['sample_rate'], hp['min_duration'],
                                     hp['max_duration'], hp['t_bins'], hp['cond_total_length'],
                                     hp['cond_offset'])
    # Bag-of-words genre: one real slot, the rest -1 (clamped to 0 and masked out).
    genre = torch.full((hp['max_bow_genre_size'],), -1, dtype=torch.long)
    genre[0] = hp['cond_genre']
    G = sd['y_emb.bow_genre_emb.emb.weight']
    mask = (genre >= 0).float().view(-1, 1)
    y_start = (G[genre.clamp(min=0)] * mask).sum(dim=0) + sd['y_emb.artist_emb.emb.weight'][hp['cond_artist']]

    cond = (sd['y_emb.total_length_emb.emb.weight'][b_tl].view(1, -1)
            + sd['y_emb.absolute_pos_emb.emb.weight'][b_abs]) + sd['y_emb.relative_pos_emb.emb.weight'][b_rel]

    h = torch.empty(T, hp['width'])
    h[0] = y_start
    h[1:] = sd['prior.x_emb.weight'][tokens[:-1]]
    h = (h + sd['prior.pos_emb.pos_emb'][:T]) + cond[:T]

    block_ctx = n_ctx // hp['blocks']
    masks = [attention_mask(kind, T, block_ctx) for kind in range(3)]
    out = {}
    for d in range(max(layers)):
        h = block(h, d, sd, hp, masks)
        if d + 1 in layers:
            out[d + 1] = h.clone()
    return out


def pool(x, pooling):
    if pooling == 'none':
        return x
    if pooling == 'mean':
        return x.mean(dim=0)
    K = int(pooling.split(':', 1)[1])
    return torch.stack([x[i:i + K].mean(dim=0) for i in range(0, x.shape[0], K)])


# ---------------------------------------------------------------- CLI

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', help='calmkit Jukebox archive (torch.jit.save)')
    p.add_argument('--audio', help='little-endian float32 mono samples at the model rate, already normalised')
    p.add_argument('--layers', default=None, help='comma-separated 1-based layers, e.g. 36 or 1,2,3')
    p.add_argument('--pooling', default='mean', help='mean | segments:K | none (default mean)')
    p.add_argument('--out', help='output directory: tokens.npy and layer{L}.npy')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1: the machine is shared)')
    b = p.add_argument_group('--bins-only: print the timing bins as JSON instead of running the model; '
                             'from --model, or from these (defaults: jukebox 5B)')
    b.add_argument('--bins-only', action='store_true')
    b.add_argument('--n-ctx', type=int, default=8192)
    b.add_argument('--hop', type=int, default=128)
    b.add_argument('--sample-rate', type=int, default=44100)
    b.add_argument('--min-duration', type=float, default=60.0)
    b.add_argument('--max-duration', type=float, default=600.0)
    b.add_argument('--t-bins', type=int, default=128)
    b.add_argument('--cond-total-length', type=int, default=2734080)
    b.add_argument('--cond-offset', type=int, default=0)
    a = p.parse_args(argv)
    if a.pooling not in ('mean', 'none'):
        ok = a.pooling.startswith('segments:') and a.pooling[9:].isdigit() and int(a.pooling[9:]) > 0
        if not ok:
            p.error(f'--pooling must be mean, none or segments:K with K > 0, got {a.pooling!r}')
    if not a.bins_only:
        missing = [f for f in ('model', 'audio', 'layers', 'out') if getattr(a, f) is None]
        if missing:
            p.error('missing ' + ', '.join('--' + f for f in missing))
    return a


def run_bins(a):
    if a.model:
        _, hp = load_archive(a.model)
        args = (hp['n_ctx'], hop_of(hp), hp['sample_rate'], hp['min_duration'], hp['max_duration'],
                hp['t_bins'], hp['cond_total_length'], hp['cond_offset'])
    else:
        args = (a.n_ctx, a.hop, a.sample_rate, a.min_duration, a.max_duration, a.t_bins,
                a.cond_total_length, a.cond_offset)
    b_tl, b_abs, b_rel = timing_bins(*args)
    keys = ('n_ctx', 'hop', 'sample_rate', 'min_duration', 'max_duration', 't_bins', 'total_length', 'offset')
    print(json.dumps({'params': dict(zip(keys, args)), 'total_length_bin': b_tl,
                      'absolute': b_abs.tolist(), 'relative': b_rel.tolist()}))


def run_model(a):
    sd, hp = load_archive(a.model)
    if hp['attn_order'] != 2:
        raise RefError(f"attn_order {hp['attn_order']} is not implemented (only 2)")
    try:
        layers = sorted({int(v) for v in a.layers.split(',') if v.strip()})
    except ValueError:
        raise RefError(f'--layers must be comma-separated integers, got {a.layers!r}')
    if not layers or layers[0] < 1 or layers[-1] > hp['depth']:
        raise RefError(f"--layers {a.layers}: must be within 1..{hp['depth']} (the archive's depth)")
    audio = np.fromfile(a.audio, dtype='<f4').astype(np.float32)
    hop = hop_of(hp)
    T = min(hp['n_ctx'], audio.shape[0] // hop)
    if T < 1:
        raise RefError(f'{a.audio}: {audio.shape[0]} samples is shorter than one token ({hop} samples)')
    with torch.no_grad():
        tokens = encode(audio, sd, hp)[:T]
        reps = prior_layers(tokens, sd, hp, layers)
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, 'tokens.npy'), tokens.numpy().astype(np.int64))
    for L, x in reps.items():
        np.save(os.path.join(a.out, f'layer{L}.npy'), pool(x, a.pooling).numpy().astype(np.float32))


def main(argv):
    a = parse_args(argv)
    torch.set_num_threads(max(1, a.threads))
    if a.bins_only:
        run_bins(a)
    else:
        run_model(a)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv[1:]))
    except RefError as e:
        print(f'jukebox_ref: error: {e}', file=sys.stderr)
        sys.exit(2)
