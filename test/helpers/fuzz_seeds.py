"""Seeds for the archive fuzz target: a micro calmkit checkpoint (every key and attribute of docs/contracts.md at
the smallest consistent shapes, a few KB, so the fuzzer's mutations reach every check) and variants of it.

usage: fuzz_seeds.py OUT_DIR
"""
import os
import sys

import torch

from rewrite_checkpoint import save_archive

HP = dict(calmkit_format=1, preset="tiny", source="fuzz seed", sample_rate=44100, vq_levels=1, vq_downs_t=[1],
          vq_strides_t=[2], vq_emb_width=4, vq_l_bins=8, vq_width=4, vq_depth=1, vq_m_conv=1.0,
          vq_dilation_growth_rate=3, n_ctx=8, width=8, depth=1, full_depth=1, heads=1, m_attn=0.25, m_mlp=1.0,
          attn_order=2, blocks=2, bins=8, y_bins_genre=2, y_bins_artist=2, t_bins=4, max_bow_genre_size=1,
          min_duration=60.0, max_duration=600.0, cond_total_length=2734080, cond_offset=0, cond_artist=0, cond_genre=0)


def tensors(hp):
    g = torch.Generator().manual_seed(0)
    t = {}

    def conv(prefix, cout, cin, k):
        t[prefix + "weight"] = torch.randn(cout, cin, k, generator=g) * 0.1
        t[prefix + "bias"] = torch.zeros(cout)

    w, vs = hp["vq_width"], int(hp["vq_width"] * hp["vq_m_conv"])
    pre = "encoders.2.level_blocks.0.model."
    conv(pre + "0.0.", w, 1, 2 * hp["vq_strides_t"][0])
    conv(pre + "0.1.model.0.model.1.", vs, w, 3)
    conv(pre + "0.1.model.0.model.3.", w, vs, 1)
    conv(pre + "1.", hp["vq_emb_width"], w, 3)
    t["bottleneck.level_blocks.2.k"] = torch.randn(hp["vq_l_bins"], hp["vq_emb_width"], generator=g)
    W, ns, hid = hp["width"], int(hp["width"] * hp["m_attn"]), int(hp["width"] * hp["m_mlp"])
    t["prior.x_emb.weight"] = torch.randn(hp["bins"], W, generator=g)
    t["prior.pos_emb.pos_emb"] = torch.randn(hp["n_ctx"], W, generator=g)
    t["y_emb.bow_genre_emb.emb.weight"] = torch.randn(hp["y_bins_genre"], W, generator=g)
    t["y_emb.artist_emb.emb.weight"] = torch.randn(hp["y_bins_artist"], W, generator=g)
    for name in ("total_length", "absolute_pos", "relative_pos"):
        t[f"y_emb.{name}_emb.emb.weight"] = torch.randn(hp["t_bins"], W, generator=g)
    p = "prior.transformer._attn_mods.0."
    half = lambda *s: (torch.randn(*s, generator=g) * 0.1).half()
    t[p + "attn.c_attn.w"], t[p + "attn.c_attn.b"] = half(W, 3 * ns), torch.zeros(3 * ns)
    t[p + "attn.c_proj.w"], t[p + "attn.c_proj.b"] = half(ns, W), torch.zeros(W)
    t[p + "mlp.c_fc.w"], t[p + "mlp.c_fc.b"] = half(W, hid), torch.zeros(hid)
    t[p + "mlp.c_proj.w"], t[p + "mlp.c_proj.b"] = half(hid, W), torch.zeros(W)
    for ln in ("ln_0", "ln_1"):
        t[p + ln + ".weight"], t[p + ln + ".bias"] = torch.ones(W), torch.zeros(W)
    return t


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    state = tensors(HP)
    save_archive(os.path.join(out, "micro.pt"), HP, state)
    save_archive(os.path.join(out, "micro-deep-vq.pt"), {**HP, "vq_depth": 20, "vq_dilation_growth_rate": 16}, state)
    bad = dict(state)
    bad["prior.pos_emb.pos_emb"] = bad["prior.pos_emb.pos_emb"].clone()
    bad["prior.pos_emb.pos_emb"][1, 2] = float("nan")
    save_archive(os.path.join(out, "micro-nan.pt"), HP, bad)


if __name__ == "__main__":
    main()
