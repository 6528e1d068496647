#!/usr/bin/env python3
"""Cross-check the reference's naive masked attention against the block-reshape
formulation of spec 3.4 (how jukebox computes it on a full window).

The reference builds T x T masks; jukebox instead reshapes the sequence into
blocks and runs dense attention per block (row), per residue (column), or
against the zero-padded previous block. Both must agree for every kind. Prints
JSON {kind: max abs difference} and exits 1 if any exceeds 1e-5.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jukebox_ref  # noqa: E402

T, BLOCK_CTX, HEADS, HD = 256, 32, 2, 16
NB = T // BLOCK_CTX


def dense(q, k, v, causal):
    w = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(HD))
    if causal:
        keep = torch.ones(w.shape[-2], w.shape[-1]).tril().bool()
        w = w.masked_fill(~keep, -1e9)
    return torch.softmax(w, dim=-1) @ v


def blockwise(q, k, v, kind):
    def blocks(x):
        return x.reshape(HEADS, NB, BLOCK_CTX, HD)

    if kind == 0:
        return dense(blocks(q), blocks(k), blocks(v), True).reshape(HEADS, T, HD)
    if kind == 1:
        def cols(x):
            return blocks(x).transpose(1, 2)
        return dense(cols(q), cols(k), cols(v), True).transpose(1, 2).reshape(HEADS, T, HD)

    def prev(x):
        return F.pad(blocks(x)[:, :-1], (0, 0, 0, 0, 1, 0))  # block b sees block b-1; block 0 sees zeros
    return dense(blocks(q), prev(k), prev(v), False).reshape(HEADS, T, HD)


def main():
    torch.manual_seed(0)
    q, k, v = (torch.randn(HEADS, T, HD) for _ in range(3))
    diffs = {}
    for kind in range(3):
        mask = jukebox_ref.attention_mask(kind, T, BLOCK_CTX)
        naive = jukebox_ref.attend(q, k, v, kind, BLOCK_CTX, mask)
        diffs[kind] = float((naive - blockwise(q, k, v, kind)).abs().max())
    print(json.dumps(diffs))
    return 0 if max(diffs.values()) <= 1e-5 else 1


if __name__ == '__main__':
    sys.exit(main())
