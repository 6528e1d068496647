"""Rewrites a calmkit Jukebox checkpoint with deliberate faults, for the error tests.

usage: rewrite_checkpoint.py SRC DST JSON
JSON: {"drop": [keys], "shape": {key: [dims]}, "dtype": {key: "float32"|"float16"}, "drop_attrs": [names],
       "attrs": {name: value}}
"""
import json
import sys

import torch

# docs/contracts.md, "Hyperparameters are attributes of the root module".
ATTRIBUTES = """calmkit_format preset source sample_rate vq_levels vq_downs_t vq_strides_t vq_emb_width vq_l_bins vq_width
vq_depth vq_m_conv vq_dilation_growth_rate n_ctx width depth full_depth heads m_attn m_mlp attn_order blocks bins
y_bins_genre y_bins_artist t_bins max_bow_genre_size min_duration max_duration cond_total_length cond_offset
cond_artist cond_genre""".split()


def save_archive(path, attrs, state):
    """A calmkit checkpoint archive: the state dict as a module tree, the codebook a buffer, hparams attributes."""
    root = torch.nn.Module()
    for key, t in state.items():
        *parts, leaf = key.split(".")
        node = root
        for part in parts:
            if not hasattr(node, part):
                node.add_module(part, torch.nn.Module())
            node = getattr(node, part)
        if key == "bottleneck.level_blocks.2.k":
            node.register_buffer(leaf, t)
        else:
            node.register_parameter(leaf, torch.nn.Parameter(t, requires_grad=False))
    for name, v in attrs.items():
        setattr(root, name, v)
    torch.jit.save(torch.jit.script(root), path)


def main():
    src, dst, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    m = torch.jit.load(src)
    state = dict(m.state_dict())
    attrs = {name: getattr(m, name) for name in ATTRIBUTES if hasattr(m, name)}
    for k in spec.get("drop", []):
        state.pop(k)
    for k, shape in spec.get("shape", {}).items():
        state[k] = torch.zeros(shape, dtype=state[k].dtype)
    for k, dt in spec.get("dtype", {}).items():
        state[k] = state[k].to(getattr(torch, dt))
    for k in spec.get("drop_attrs", []):
        attrs.pop(k)
    attrs.update(spec.get("attrs", {}))

    save_archive(dst, attrs, state)

if __name__ == "__main__":
    main()
