#!/usr/bin/env python3
"""Test driver: make checkpoints, export them, and compare archive with source.

Reads a JSON list of jobs on stdin, each {"dir", "make": [args], "export": [args],
"layers": L}, and runs make_jukebox_ckpt.main and export-jukebox's main in this
one process (each Python start with torch costs over a second of a shared CPU).
Prints one JSON result per job: the export log and the comparison.

The expected key set is derived by filtering the source keys with the contract's
rules, independently of how the exporter enumerates what it keeps.
"""
import contextlib
import importlib.util
import io
import json
import os
import sys
import types

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

ATTRS = ['calmkit_format', 'preset', 'source', 'sample_rate', 'vq_levels', 'vq_downs_t', 'vq_strides_t',
         'vq_emb_width', 'vq_l_bins', 'vq_width', 'vq_depth', 'vq_m_conv', 'vq_dilation_growth_rate', 'n_ctx',
         'width', 'depth', 'full_depth', 'heads', 'm_attn', 'm_mlp', 'attn_order', 'blocks', 'bins',
         'y_bins_genre', 'y_bins_artist', 't_bins', 'max_bow_genre_size', 'min_duration', 'max_duration',
         'cond_total_length', 'cond_offset', 'cond_artist', 'cond_genre']


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def forget_fake_jukebox():
    for name in ('jukebox.hparams', 'jukebox'):
        sys.modules.pop(name, None)


def read_source(path):
    # Sources written with --foreign-hps pickle jukebox.hparams.Hyperparams; give the
    # checker (not the exporter) a stand-in so it can read them plainly.
    hp = types.ModuleType('jukebox.hparams')
    hp.Hyperparams = type('Hyperparams', (dict,), {'__module__': 'jukebox.hparams'})
    sys.modules['jukebox'] = types.ModuleType('jukebox')
    sys.modules['jukebox.hparams'] = hp
    try:
        o = torch.load(path, map_location='cpu', weights_only=False)  # the test's own files
    finally:
        forget_fake_jukebox()
    sd = o['model'] if isinstance(o, dict) and 'model' in o else o
    return {(k[7:] if k.startswith('module.') else k): v for k, v in sd.items()}


def wanted(key, layers):
    if key.startswith('encoders.2.') or key == 'bottleneck.level_blocks.2.k' or key.startswith('y_emb.'):
        return True
    if key in ('prior.x_emb.weight', 'prior.pos_emb.pos_emb'):
        return True
    pre = 'prior.transformer._attn_mods.'
    return key.startswith(pre) and int(key[len(pre):].split('.')[0]) < layers


def bit_identical(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    as_int = {torch.float16: torch.int16, torch.float32: torch.int32}
    return torch.equal(a.view(as_int[a.dtype]), b.view(as_int[b.dtype]))


def compare(archive, src, layers):
    source = {**read_source(os.path.join(src, 'vqvae.pth.tar')),
              **read_source(os.path.join(src, 'prior_level_2.pth.tar'))}
    m = torch.jit.load(archive)
    sd = m.state_dict()
    expected = {k for k in source if wanted(k, layers)}
    return {
        'extra': sorted(set(sd) - expected),
        'missing': sorted(expected - set(sd)),
        'notIdentical': sorted(k for k in expected & set(sd) if not bit_identical(sd[k], source[k])),
        'wDtypes': sorted({str(v.dtype) for k, v in sd.items() if k.endswith('.w')}),
        'otherDtypes': sorted({str(v.dtype) for k, v in sd.items() if not k.endswith('.w')}),
        'nW': sum(1 for k in sd if k.endswith('.w')),
        'attrs': {a: getattr(m, a) for a in ATTRS},
    }


def main():
    maker = load_module('make_jukebox_ckpt', os.path.join(HERE, 'make_jukebox_ckpt.py'))
    exporter = load_module('export_jukebox', os.path.join(ROOT, 'scripts', 'export-jukebox.py'))
    results = []
    for job in json.load(sys.stdin):
        with contextlib.redirect_stdout(io.StringIO()):
            maker.main(job['make'])
        # The maker registers a stand-in jukebox module to pickle --foreign-hps; the
        # exporter must not see it, or its "class not importable" path goes untested.
        forget_fake_jukebox()
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            code = exporter.main(job['export'])
        archive = job['export'][job['export'].index('--out') + 1]
        results.append({'code': code, 'log': log.getvalue(), **compare(archive, job['dir'], job['layers'])})
    print(json.dumps(results))


if __name__ == '__main__':
    main()
