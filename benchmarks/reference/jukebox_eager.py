#!/usr/bin/env python3
"""The benchmark reference: Jukebox layer activations computed the jukemir/jukemirlib way.

Plain eager PyTorch in fp32, one clip at a time, fp16 Conv1D weights upcast on every use (`w.type_as(x)`, as
jukebox's Conv1D does), attention through the block reshapes of jukebox's factored attention, stopping after
the deepest requested layer, mean pooling on the host with numpy. It reads a calmkit archive (docs/contracts.md)
so both sides compute from the same weights.

Two modes, chosen per run:
- "jukemirlib" (default): what jukemirlib.extract does: crop the audio to 25 s, run `vqvae.encode` over ALL
  three VQ-VAE levels (only level 2's codes are used; jukebox's encoders are independent, so levels 0 and 1
  cost time and change nothing: the archive does not keep their weights, so they get seeded random weights of
  jukebox's real shapes: level 0 width 64 depth 8, level 1 width 32 depth 4), rebuild the conditioning on every
  call, copy each requested layer's full activations to the host and take the mean there.
- "minimal": exactly calmkit's computation (level 2 only, on the window plus the encoder's margin), for a
  like-for-like comparison of the two implementations.

Precisions: "fp32" (default) is jukebox's arithmetic, fp16 Conv1D weights upcast on every use. "bf16" and "fp16" are
the same eager code at that dtype, as a PyTorch user would write it: the prior's projection weights converted once
at load ("dtypes"), the residual stream in that dtype, LayerNorm and the softmax in fp32, the VQ-VAE, the argmin and
the embeddings in fp32 (calmkit's precision contract, docs/contracts.md).

Protocol (driven by calmkit's benchmark engine, native/core/bench_extract.cpp, and scripts/gpu-check.py; one JSON
object per line on stdin/stdout):
  {"cmd": "load", "model": PATH, "threads": N, "device": "cpu"|"cuda"|"cuda:N", "dtypes": ["bf16", ...]}
                                                              -> {"ok": true, "load_seconds": s, "torch": version}
     (on cuda everything runs on the GPU, as jukemirlib does there; a run's time ends when its features are on
     the host, which synchronises)
  {"cmd": "run", "audio": RAW_F32, "layers": [..], "out": DIR, "raw": bool, "tokens": RAW_I32?,
   "mode": "jukemirlib"|"minimal", "crop": SAMPLES (minimal mode: the window plus margin), "dtype": "fp32"|"bf16"|"fp16"}
                                                              -> {"ok": true, "seconds": s, "tokens": T,
                                                                  "encode_seconds": s, "prior_seconds": s,
                                                                  "encode_cpu_seconds": s, "prior_cpu_seconds": s}
     (with "tokens", the prior runs on those tokens: the cross-check of the prior is then exact even where
     the VQ argmin has near-ties that two correct implementations break differently)
     (with "out", writes DIR/layer{L}.npy and DIR/tokens.npy, or with "raw" DIR/layer{L}.f32 and DIR/tokens.i64,
     the pooled features and the tokens, for the cross-check)
  {"cmd": "quit"}
"""
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HP_INT = ["n_ctx", "width", "depth", "heads", "attn_order", "blocks", "bins", "t_bins", "vq_levels", "vq_emb_width",
          "vq_l_bins", "vq_width", "vq_depth", "vq_dilation_growth_rate", "sample_rate", "cond_total_length",
          "cond_offset", "cond_artist", "cond_genre"]
HP_FLOAT = ["m_attn", "m_mlp", "min_duration", "max_duration", "vq_m_conv"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Reference:
    def __init__(self, path, device="cpu"):
        self.device = torch.device(device)
        self.half = {}  # dtype -> the prior's projection weights in it (prepare_dtypes)
        module = torch.jit.load(path, map_location="cpu")
        self.sd = {k: v.to(self.device) for k, v in module.state_dict().items()}
        self.hp = {k: int(getattr(module, k)) for k in HP_INT}
        self.hp.update({k: float(getattr(module, k)) for k in HP_FLOAT})
        self.hp["vq_downs_t"] = list(getattr(module, "vq_downs_t"))
        self.hp["vq_strides_t"] = list(getattr(module, "vq_strides_t"))
        hop = 1
        for s, d in zip(self.hp["vq_strides_t"], self.hp["vq_downs_t"]):
            hop *= s ** d
        self.hop = hop

    # --- VQ-VAE -----------------------------------------------------------------------------------------
    def run_encoder(self, audio, sd, level, depth):
        hp = self.hp
        x = audio.view(1, 1, -1)
        for b in range(level + 1):
            pre = f"encoders.{level}.level_blocks.{b}.model."
            n_down = hp["vq_downs_t"][b]
            for i in range(n_down):
                x = F.conv1d(x, sd[f"{pre}{i}.0.weight"], sd[f"{pre}{i}.0.bias"], stride=hp["vq_strides_t"][b], padding=1)
                for j in range(depth):
                    d = hp["vq_dilation_growth_rate"] ** j
                    rp = f"{pre}{i}.1.model.{j}.model."
                    h = F.conv1d(F.relu(x), sd[rp + "1.weight"], sd[rp + "1.bias"], padding=d, dilation=d)
                    h = F.conv1d(F.relu(h), sd[rp + "3.weight"], sd[rp + "3.bias"])
                    x = x + h
            x = F.conv1d(x, sd[f"{pre}{n_down}.weight"], sd[f"{pre}{n_down}.bias"], padding=1)
        x = x[0].t()  # (T, emb)
        k = sd[f"bottleneck.level_blocks.{level}.k"]
        dist = (x ** 2).sum(-1, keepdim=True) - 2 * x @ k.t() + (k ** 2).sum(-1)[None]
        return dist.min(dim=-1)[1]

    def encode(self, audio):
        return self.run_encoder(audio, self.sd, 2, self.hp["vq_depth"])

    def lower_levels(self):
        """Seeded random weights of jukebox's level-0 and level-1 encoders (hvqvae multipliers 2, 1)."""
        if hasattr(self, "_lower"):
            return self._lower
        hp = self.hp
        gen = torch.Generator().manual_seed(0)
        sd = {}
        emb, base_w, base_d = hp["vq_emb_width"], hp["vq_width"], hp["vq_depth"]
        shapes = {}
        for level, mult in ((0, 2), (1, 1)):
            w, depth = base_w * mult, base_d * mult
            for b in range(level + 1):
                pre = f"encoders.{level}.level_blocks.{b}.model."
                cin = 1 if b == 0 else emb
                for i in range(hp["vq_downs_t"][b]):
                    shapes[f"{pre}{i}.0"] = (w, cin if i == 0 else w, 4)
                    for j in range(depth):
                        shapes[f"{pre}{i}.1.model.{j}.model.1"] = (w, w, 3)
                        shapes[f"{pre}{i}.1.model.{j}.model.3"] = (w, w, 1)
                shapes[f"{pre}{hp['vq_downs_t'][b]}"] = (emb, w, 3)
            sd[f"bottleneck.level_blocks.{level}.k"] = torch.randn(hp["vq_l_bins"], emb, generator=gen)
        for name, shape in shapes.items():
            fan_in = shape[1] * shape[2]
            sd[name + ".weight"] = torch.randn(*shape, generator=gen) / math.sqrt(fan_in)
            sd[name + ".bias"] = torch.zeros(shape[0])
        sd = {k: v.to(self.device) for k, v in sd.items()}
        self._lower = ({0: base_d * 2, 1: base_d}, sd)
        return self._lower

    # --- prior ------------------------------------------------------------------------------------------
    def range_bins(self, start, end, lo, hi, n_time):
        # RangeEmbedding: position interpolated in float32, normalised, scaled by the bin count, floored.
        t_bins = self.hp["t_bins"]
        if n_time == 1:
            pos = torch.tensor([[float(start)]], dtype=torch.float32)
        else:
            interp = torch.arange(0, n_time, dtype=torch.float32).view(1, n_time) / n_time
            pos = torch.tensor([[start]], dtype=torch.float32) + (torch.tensor([[end]], dtype=torch.float32) - torch.tensor([[start]], dtype=torch.float32)) * interp
        norm = (pos - lo) / (hi - lo)
        return (t_bins * norm).floor().long().clamp(0, t_bins - 1)[0]

    def conditioning(self, T):
        hp, sd = self.hp, self.sd
        n_ctx, sr = hp["n_ctx"], hp["sample_rate"]
        total = hp["cond_total_length"]
        start = hp["cond_offset"]
        end = start + n_ctx * self.hop
        lo, hi = hp["min_duration"] * sr, hp["max_duration"] * sr
        tl = self.range_bins(total, None, lo, hi, 1)
        ab = self.range_bins(start, end, 0.0, hi, n_ctx)
        rel = self.range_bins(start / total, end / total, 0.0, 1.0, n_ctx)
        c = sd["y_emb.total_length_emb.emb.weight"][tl] + sd["y_emb.absolute_pos_emb.emb.weight"][ab]
        c = c + sd["y_emb.relative_pos_emb.emb.weight"][rel]
        y_start = sd["y_emb.bow_genre_emb.emb.weight"][hp["cond_genre"]] + sd["y_emb.artist_emb.emb.weight"][hp["cond_artist"]]
        return y_start, c[:T]

    def prepare_dtypes(self, names):
        """The prior's projection weights converted once to each half-precision dtype asked for."""
        for name in names:
            dtype = DTYPES[name]
            if dtype == torch.float32 or dtype in self.half:
                continue
            self.half[dtype] = {k: v.to(dtype) for k, v in self.sd.items()
                                if k.startswith("prior.transformer.") and (k.endswith(".w") or k.endswith(".b"))}

    def conv1d(self, x, prefix):
        if x.dtype != torch.float32:
            w, b = self.half[x.dtype][prefix + ".w"], self.half[x.dtype][prefix + ".b"]
            return torch.addmm(b, x.reshape(-1, x.size(-1)), w).view(*x.size()[:-1], w.size(-1))
        w, b = self.sd[prefix + ".w"], self.sd[prefix + ".b"]
        size_out = x.size()[:-1] + (w.size(-1),)
        return torch.addmm(b.type_as(x), x.reshape(-1, x.size(-1)), w.type_as(x)).view(*size_out)

    def dense_attn(self, q, k, v, causal):
        heads = self.hp["heads"]
        bs, l, d = q.shape
        hd = d // heads
        q = q.view(bs, l, heads, hd).permute(0, 2, 1, 3)
        k = k.view(bs, k.shape[1], heads, hd).permute(0, 2, 3, 1)
        v = v.view(bs, v.shape[1], heads, hd).permute(0, 2, 1, 3)
        w = torch.matmul(q, k) * (1.0 / math.sqrt(hd))
        if causal:
            mask = torch.ones(w.shape[-2], w.shape[-1], device=w.device).tril().view(1, 1, w.shape[-2], w.shape[-1])
            w = w * mask + -1e9 * (1 - mask)
        w = F.softmax(w.float(), dim=-1).type_as(q)
        a = torch.matmul(w, v)
        return a.permute(0, 2, 1, 3).contiguous().view(bs, l, d)

    def attention(self, x, i, kind):
        pre = f"prior.transformer._attn_mods.{i}.attn."
        qkv = self.conv1d(x, pre + "c_attn")
        q, k, v = qkv.chunk(3, dim=2)
        bs, l, d = q.shape
        bc = self.hp["n_ctx"] // self.hp["blocks"]
        nb = l // bc
        if kind == 0:
            a = self.dense_attn(q.reshape(bs * nb, bc, d), k.reshape(bs * nb, bc, d), v.reshape(bs * nb, bc, d), True).view(bs, l, d)
        elif kind == 1:
            tr = lambda t: t.view(bs, nb, bc, d).transpose(1, 2).contiguous().view(bs * bc, nb, d)
            a = self.dense_attn(tr(q), tr(k), tr(v), True)
            a = a.view(bs, bc, nb, d).transpose(1, 2).contiguous().view(bs, l, d)
        else:
            prev = lambda t: F.pad(t.view(bs, nb, bc, d)[:, :-1], (0, 0, 0, 0, 1, 0)).view(bs * nb, bc, d)
            a = self.dense_attn(q.reshape(bs * nb, bc, d), prev(k), prev(v), False).view(bs, l, d)
        return self.conv1d(a, pre + "c_proj")

    def layer_norm(self, x, prefix):
        return F.layer_norm(x.float(), (x.shape[-1],), self.sd[prefix + ".weight"], self.sd[prefix + ".bias"], 1e-5).type_as(x)

    def forward(self, audio, layers, tokens=None, mode="jukemirlib", crop=None, dtype=torch.float32):
        t0 = time.perf_counter()
        c0 = time.process_time()
        if tokens is None:
            if mode == "jukemirlib":
                audio = audio[: self.hp["sample_rate"] * 25]
                depths, lower = self.lower_levels()
                for level in (0, 1):
                    self.run_encoder(audio, lower, level, depths[level])
            elif crop:
                audio = audio[:crop]
            tokens = self.tokens(audio)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        c1 = time.process_time()
        out = self.prior(tokens, layers, dtype)
        # The split lets a driver extrapolate a few layers to a whole clip: encode once, then per layer; the CPU
        # seconds (this process, all threads) beside the wall ones, for shared machines.
        self.last_split = {"encode_seconds": t1 - t0, "prior_seconds": time.perf_counter() - t1,
                           "encode_cpu_seconds": c1 - c0, "prior_cpu_seconds": time.process_time() - c1}
        return tokens, out

    def tokens(self, audio):
        hp = self.hp
        # Like jukemir: encode the whole (already cropped) input, then keep the first n_ctx tokens. The encoder
        # sees past the window's end, which changes the last tokens' codes.
        n = audio.numel() // self.hop * self.hop
        return self.encode(audio[:n])[: hp["n_ctx"]]

    def prior(self, tokens, layers, dtype=torch.float32):
        hp, sd = self.hp, self.sd
        T = tokens.numel()
        bc = hp["n_ctx"] // hp["blocks"]
        padded = (T + bc - 1) // bc * bc
        y_start, cond = self.conditioning(T)
        h = sd["prior.x_emb.weight"][tokens]
        h = torch.cat([y_start.view(1, -1), h[:-1]], 0)
        h = (h + sd["prior.pos_emb.pos_emb"][:T]) + cond
        # Short inputs: jukemirlib pads q/k/v; padding rows of the stream never reach real rows, so pad here.
        h = F.pad(h, (0, 0, 0, padded - T)).unsqueeze(0).to(dtype)
        out = {}
        for i in range(max(layers)):
            pre = f"prior.transformer._attn_mods.{i}."
            a = self.attention(self.layer_norm(h, pre + "ln_0"), i, i % 3)
            h = h + a
            m = self.conv1d(self.layer_norm(h, pre + "ln_1"), pre + "mlp.c_fc")
            m = m * torch.sigmoid(1.702 * m)
            h = h + self.conv1d(m, pre + "mlp.c_proj")
            if i + 1 in layers:
                out[i + 1] = np.mean(h[0, :T].float().cpu().numpy(), axis=0)
        return out


def main():
    torch.set_grad_enabled(False)
    ref = None
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["cmd"] == "load":
                torch.set_num_threads(int(msg.get("threads", 1)))
                t0 = time.perf_counter()
                ref = Reference(msg["model"], msg.get("device", "cpu"))
                ref.prepare_dtypes(msg.get("dtypes", []))
                reply = {"ok": True, "load_seconds": time.perf_counter() - t0, "torch": torch.__version__}
            elif msg["cmd"] == "run":
                audio = torch.from_numpy(np.fromfile(msg["audio"], dtype="<f4").copy())
                t0 = time.perf_counter()
                audio = audio.to(ref.device)
                given = None
                if msg.get("tokens"):
                    given = torch.from_numpy(np.fromfile(msg["tokens"], dtype="<i4").astype(np.int64)).to(ref.device)
                dtype = DTYPES[msg.get("dtype", "fp32")]
                if dtype != torch.float32 and dtype not in ref.half:
                    ref.prepare_dtypes([msg["dtype"]])
                tokens, out = ref.forward(audio, sorted(msg["layers"]), given, msg.get("mode", "jukemirlib"), msg.get("crop"), dtype)
                seconds = time.perf_counter() - t0
                if msg.get("out") and msg.get("raw"):
                    for layer, vec in out.items():
                        vec.astype("<f4").tofile(f"{msg['out']}/layer{layer}.f32")
                    tokens.cpu().numpy().astype("<i8").tofile(f"{msg['out']}/tokens.i64")
                elif msg.get("out"):
                    for layer, vec in out.items():
                        np.save(f"{msg['out']}/layer{layer}.npy", vec.astype(np.float32))
                    np.save(f"{msg['out']}/tokens.npy", tokens.cpu().numpy().astype(np.int64))
                reply = {"ok": True, "seconds": seconds, "tokens": int(tokens.numel()), **ref.last_split}
            elif msg["cmd"] == "quit":
                break
            else:
                reply = {"ok": False, "error": f"unknown command {msg['cmd']}"}
        except Exception as e:  # the driver reports it; the process stays up for the next command
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
