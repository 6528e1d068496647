"""Reference for calmkit's probe trainer: the same protocol in plain PyTorch (autograd + torch.optim.Adam).

Re-implements only what must match bit for bit -- calmkit's counter-based random streams (init, balanced
batch order, dropout masks) -- and leaves the model, loss, gradients and optimiser to PyTorch, so a match checks
calmkit's hand-written backward and fused Adam against torch's own.

Attention probes (config.attention): the features are [n, segments, dim] (`segments` in IN; `valid`, optional,
the real segments per clip); the hidden layers run on every segment, the last layer gives each segment's score and
one more Linear (without bias) its attention logit; softmax over the clip's real segments weights the scores into the clip's
logit. Written as a PyTorch user would (masked_fill + softmax + autograd), with calmkit's streams.

usage: .venv/bin/python probe_ref.py IN.json OUT.json          train, then write the weights
       .venv/bin/python probe_ref.py --forward IN.json OUT.json  forward a given attention net (no training)
IN: {features: [[...]] ([n][dim] or [n][segments][dim]), segments?, valid?, seed, epochs, batchSize, lr,
     standardize, task: {instrument, train: {rows, targets}}, config: {hidden, dropout, l2, attention?}}
OUT: {layers: [{weight: [[in][out]], bias: [out]}], attention?: {weight, bias}} after `epochs` epochs.
--forward IN: {features ([n][segments][dim]), valid?, net: {mean?, std?, layers, attention}}
--forward OUT: {probabilities: [n], weights: [n][segments]}
"""
import json
import math
import struct
import sys

import numpy as np
import torch

M = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
K_INIT, K_MASK, K_SAMPLER = 1, 2, 3


def mix64(z):
    z = (z + GOLDEN) & M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def hash_string(s):
    h = 0xCBF29CE484222325
    for c in s.encode("utf8"):
        h = ((h ^ c) * 0x100000001B3) & M
    return h


def hash_double(v):
    return mix64(struct.unpack("<Q", struct.pack("<d", v))[0])


def draw(key, i):
    return mix64((key + (i + 1) * GOLDEN) & M)


def uniform01(key, i):
    return np.float32(draw(key, i) >> 40) * np.float32(2.0 ** -24)


def sub_key(key, tag, a=0, b=0):
    return mix64((mix64((mix64(key ^ ((tag * 0xD6E8FEB86659FD93) & M)) + a) & M) + b) & M)


def probe_key(seed, instrument, config):
    k = mix64(seed ^ hash_string(instrument))
    for h in config["hidden"]:
        k = mix64((k + h) & M)
    k = mix64(k ^ 0x5BD1E995)
    k = mix64((k + hash_double(float(config["dropout"]))) & M)
    return mix64((k + hash_double(float(config["l2"]))) & M)


class Sampler:
    """Balanced batches: B/2 positives then B/2 negatives, each class from its own reshuffled cycle."""

    def __init__(self, rows, targets, key):
        self.key = key
        self.lists = [[r for r, t in zip(rows, targets) if t], [r for r, t in zip(rows, targets) if not t]]
        self.at = [len(self.lists[0]), len(self.lists[1])]
        self.round = [0, 0]

    def take(self, cls, k):
        v, out = self.lists[cls], []
        for _ in range(k):
            if self.at[cls] == len(v):
                key = sub_key(self.key, K_SAMPLER, cls, self.round[cls])
                self.round[cls] += 1
                for i in range(len(v), 1, -1):
                    j = draw(key, i) % i
                    v[i - 1], v[j] = v[j], v[i - 1]
                self.at[cls] = 0
            out.append(v[self.at[cls]])
            self.at[cls] += 1
        return out

    def next(self, half):
        return self.take(0, half) + self.take(1, half)


def mask(key, rows, cols, keep):
    scale = np.float32(1.0) / keep
    u = np.array([[uniform01(key, r * cols + c) for c in range(cols)] for r in range(rows)], dtype=np.float32)
    return torch.from_numpy(np.where(u < keep, scale, np.float32(0.0)).astype(np.float32))


def init_linear(key, layer, fan_in, fan_out):
    """PyTorch's default Linear init, U(+-1/sqrt(fan_in)), drawn from calmkit's init stream `layer`."""
    bound = np.float32(1.0) / np.sqrt(np.float32(fan_in))
    k = sub_key(key, K_INIT, layer)
    u = np.array([uniform01(k, i) for i in range(fan_in * fan_out + fan_out)], dtype=np.float32)
    vals = (np.float32(2.0) * u - np.float32(1.0)) * bound
    w = torch.tensor(vals[: fan_in * fan_out].reshape(fan_in, fan_out), requires_grad=True)
    b = torch.tensor(vals[fan_in * fan_out:], requires_grad=True)
    return w, b


def attention_pool(h, layers, att, valid):
    """Clip logits [clips, 1] (and weights [clips, S]) from the last hidden activations h [clips, S, hidden]."""
    scores = h @ layers[-1][0] + layers[-1][1]
    logits = (h @ att)[..., 0]
    logits = logits.masked_fill(~valid, float("-inf"))
    weights = torch.softmax(logits, dim=1)
    return (weights * scores[..., 0]).sum(1, keepdim=True), weights


def forward_only(spec):
    """Runs a given attention net (no dropout) on clips: the forward check of calmkit's predict."""
    X = torch.tensor(np.asarray(spec["features"], dtype=np.float32))
    n, S, _ = X.shape
    valid = torch.arange(S)[None, :] < torch.tensor(spec.get("valid") or [S] * n)[:, None]
    net = spec["net"]
    h = X
    if net.get("mean") is not None:
        h = (h - torch.tensor(net["mean"])) / torch.tensor(net["std"])
    h = h.masked_fill(~valid[..., None], 0.0)
    layers = [(torch.tensor(l["weight"]).view(l["in"], l["out"]), torch.tensor(l["bias"])) for l in net["layers"]]
    for w, b in layers[:-1]:
        h = torch.relu(h @ w + b)
    att = torch.tensor(net["attention"]["weight"]).view(-1, 1)
    logit, weights = attention_pool(h, layers, att, valid)
    return {"probabilities": torch.sigmoid(logit)[:, 0].tolist(), "weights": weights.tolist()}


def main():
    if sys.argv[1] == "--forward":
        json.dump(forward_only(json.load(open(sys.argv[2]))), open(sys.argv[3], "w"))
        return
    spec = json.load(open(sys.argv[1]))
    X = np.asarray(spec["features"], dtype=np.float32)
    task, cfg = spec["task"], spec["config"]
    seed, B, lr = spec["seed"], spec["batchSize"], spec["lr"]
    train_rows, train_y = task["train"]["rows"], task["train"]["targets"]
    attention = bool(cfg.get("attention"))
    S = spec["segments"] if attention else 1
    X = X.reshape(X.shape[0], S, -1)
    real = np.asarray(spec.get("valid") or [S] * X.shape[0])
    dims = [X.shape[2]] + list(cfg["hidden"]) + [1]
    key = probe_key(seed, task["instrument"], cfg)

    params = []
    for l in range(len(dims) - 1):
        params += list(init_linear(key, l, dims[l], dims[l + 1]))
    # The attention logit has no bias (softmax ignores a shift shared by a clip's segments); its init stream
    # still has PyTorch's Linear layout, weight then bias.
    att = init_linear(key, len(dims) - 1, dims[-2], 1)[0] if attention else None
    opt = torch.optim.Adam(params + ([att] if attention else []), lr=lr, weight_decay=cfg["l2"])

    if spec["standardize"]:
        xt = np.concatenate([X[r, : real[r]] for r in train_rows]).astype(np.float64)
        mean = xt.mean(0)
        sd = np.sqrt(((xt - mean) ** 2).mean(0))
        sd[sd == 0] = 1.0
        mean, sd = mean.astype(np.float32), sd.astype(np.float32)
    else:
        mean, sd = np.zeros(X.shape[2], np.float32), np.ones(X.shape[2], np.float32)

    sampler = Sampler(train_rows, train_y, sub_key(mix64(seed ^ hash_string(task["instrument"])), K_SAMPLER))
    keep = np.float32(1.0 - cfg["dropout"])
    steps_per_epoch = math.ceil(len(train_rows) / B)
    y = torch.tensor([1.0] * (B // 2) + [0.0] * (B // 2)).view(B, 1)
    step = 0
    for _ in range(spec["epochs"]):
        for _ in range(steps_per_epoch):
            step += 1
            rows = sampler.next(B // 2)
            valid = torch.arange(S)[None, :] < torch.tensor(real[rows])[:, None]  # [B, S]
            x = torch.from_numpy((X[rows] - mean) / sd).masked_fill(~valid[..., None], 0.0).reshape(B * S, -1)
            h = x * mask(sub_key(key, K_MASK, 0, step), B * S, dims[0], keep)
            for l in range(len(dims) - 2):
                h = h @ params[2 * l] + params[2 * l + 1]
                h = torch.relu(h) * mask(sub_key(key, K_MASK, l + 1, step), B * S, dims[l + 1], keep)
            if attention:
                layers = [(params[2 * l], params[2 * l + 1]) for l in range(len(dims) - 1)]
                logit, _ = attention_pool(h.view(B, S, -1), layers, att, valid)
            else:
                logit = h @ params[-2] + params[-1]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    out = {"layers": [{"weight": params[2 * l].detach().tolist(), "bias": params[2 * l + 1].detach().tolist()}
                      for l in range(len(dims) - 1)]}
    if attention:
        out["attention"] = {"weight": att.detach().tolist(), "bias": [0.0]}
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
