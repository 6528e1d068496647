"""calmkit's probe trainer, step by step, against PyTorch in float64 under a stated float32 error model.

calmkit trains in float32; no two float32 implementations agree bit for bit once their BLAS sums in another
order, and Adam amplifies such differences without bound where a gradient is near zero (its first step is
lr * g / (|g| + eps): a sign flip of a 1e-9 gradient moves the weight by 2 lr). So an absolute bound on the weights
after an epoch measures the machine's BLAS as much as calmkit. This checker compares each step on its own instead
(teacher forcing): given calmkit's weights before step t (its trace, napi/probes.cpp _probeTrace),

1. the gradients calmkit formed in step t against PyTorch autograd in float64 at those same weights, on the same
   batch and dropout masks (calmkit's counter-based streams, re-implemented in probe_ref.py): every element must lie
   within E, the first-order float32 error bound of calmkit's computation, propagated through the step below;
2. calmkit's weights after step t against torch.optim.Adam in float64 applied to calmkit's own gradients of steps
   1..t (its moments carried exactly): every element within the error bound of calmkit's float32 Adam arithmetic.
   Fed identical gradients, Adam is well conditioned everywhere (m/sqrt(v) only suffers its own roundings), so
   this part needs no exclusion;
3. the initial weights exactly (the init stream is the same IEEE arithmetic in both).

The error model (u = 2^-24, the float32 unit roundoff; gamma(n) = n u / (1 - n u)):
- a sum of n terms, in ANY order, blocked or not, with or without FMA, errs by at most gamma(n) * sum |terms|
  (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., sec. 3.1). That holds for every BLAS kernel
  on any x86-64 (AVX2, AVX-512, MKL's or oneDNN's), so the bound does not depend on the processor;
- +, -, *, /, sqrt are correctly rounded (IEEE 754, SSE/AVX on x86-64): relative error <= u each;
- exp and sigmoid (ATen's vectorised SLEEF kernels, <= 1-2 ulp, or glibc's): relative error <= 4 u;
- the standardised input is bounded by 4u of its terms (mean and std are float32 roundings of float64 sums);
- errors already in an operand propagate linearly (|A + dA| |B| terms); a ReLU gate whose pre-activation lies
  within its own bound may have flipped, so its whole backward signal is counted as error;
- first order in u: the neglected terms are O(n^2 u^2), below 1e-4 of the bound at these sizes.

usage: probe_trace_ref.py IN.json OUT.json
IN: {features: flat list, shape: [n, dim] or [n, S, dim], valid?, seed, batchSize, lr, standardize,
     task: {instrument, train: {rows, targets}}, config: {hidden, dropout, l2, attention?},
     trace: [{step, grads: [[...]], weights: [[...]]}], forward?: {rows: [...], probabilities: [...], weights?}}
OUT: {init: {maxAbs}, steps: [{step, grad: {...}, adam: {...}}], forward?: {...}}; each check reports maxRatio
     (worst |calmkit - exact| / bound, <= 1 when the model holds) and its worst element, and the grad check the
     median relative bound (how finely it resolves a gradient: a wrong term moves a gradient by far more).
"""
import json
import math
import sys

import numpy as np
import torch

from probe_ref import K_MASK, K_SAMPLER, Sampler, hash_string, init_linear, mask, mix64, probe_key, sub_key

U = 2.0 ** -24
EXP_ULPS = 4.0
TINY = 16 * 2.0 ** -126  # a few float32 results flushed from the subnormal range
torch.set_default_dtype(torch.float64)


def gamma(n):
    return n * U / (1 - n * U)


def worst(name_of, calmkit, exact, bound):
    """The largest |calmkit - exact| / bound over lists of arrays, with its element; a bound of 0 demands equality.
    Every bound gets TINY more: a float32 result below the normal range may be flushed to zero (FTZ/DAZ)."""
    best = None
    for k, (c, x, b) in enumerate(zip(calmkit, exact, bound)):
        b = b + TINY
        ratio = np.abs(c - x) / b
        i = int(np.argmax(ratio))
        if best is None or ratio.flat[i] > best["maxRatio"]:
            best = {"maxRatio": float(ratio.flat[i]), "param": name_of(k), "index": i,
                    "calmkit": float(c.flat[i]), "exact": float(x.flat[i]), "bound": float(b.flat[i])}
    return best


class Net:
    """A probe's parameters as float64 arrays: W[l] [in, out], b[l] [out], wa [h, 1] or None."""

    def __init__(self, flat, dims, attention):
        self.W, self.b, k = [], [], 0
        for l in range(len(dims) - 1):
            self.W.append(np.asarray(flat[k], np.float64).reshape(dims[l], dims[l + 1]))
            self.b.append(np.asarray(flat[k + 1], np.float64).reshape(dims[l + 1]))
            k += 2
        self.wa = np.asarray(flat[k], np.float64).reshape(dims[-2], 1) if attention else None

    def params(self):
        out = []
        for w, b in zip(self.W, self.b):
            out += [w, b]
        return out + ([self.wa] if self.wa is not None else [])


def forward_bounds(net, x0, ex0, masks, B, S, valid):
    """The forward pass in float64 with the error bound of calmkit's float32 evaluation of every value.
    masks[l] [R, h] multiplies hidden layer l's ReLU (None: no dropout). Returns a dict of values and bounds."""
    L = len(net.W)
    A, eA, Z, eZ = [x0], [ex0], [], []
    ambiguous = 0
    for l in range(L):
        W, b = net.W[l], net.b[l]
        z = A[l] @ W + b
        ez = gamma(W.shape[0] + 1) * (np.abs(A[l]) @ np.abs(W) + np.abs(b)) + eA[l] @ np.abs(W)
        Z.append(z)
        eZ.append(ez)
        if l + 1 < L:
            m = masks[l] if masks is not None else np.ones_like(z)
            a = np.maximum(z, 0) * m
            ambiguous += int(np.count_nonzero((np.abs(z) <= ez) & (m != 0)))
            A.append(a)
            eA.append(m * ez + U * np.abs(a))
    out = {"A": A, "eA": eA, "Z": Z, "eZ": eZ, "ambiguous": ambiguous}
    z, ez = Z[-1][:, 0], eZ[-1][:, 0]
    if net.wa is None:
        out["logit"], out["elogit"] = z, ez
        return out
    h, eh = A[L - 1], eA[L - 1]
    a = (h @ net.wa)[:, 0].reshape(B, S)
    ea = (gamma(h.shape[1]) * (np.abs(h) @ np.abs(net.wa)) + eh @ np.abs(net.wa))[:, 0].reshape(B, S)
    am = np.where(valid, a, -np.inf)
    amax = am.max(1, keepdims=True)
    w = np.exp(am - amax)
    w = w / w.sum(1, keepdims=True)
    ew = w * (ea + (w * ea).sum(1, keepdims=True)) + w * U * (np.where(valid, np.abs(a - amax), 0) + EXP_ULPS + S + 2)
    zs, ezs = z.reshape(B, S), ez.reshape(B, S)
    logit = (w * zs).sum(1)
    elogit = (ew * np.abs(zs) + w * ezs).sum(1) + gamma(S + 1) * (w * np.abs(zs)).sum(1)
    out.update(logit=logit, elogit=elogit, w=w, ew=ew, zs=zs, ezs=ezs)
    return out


def sigmoid_bound(logit, elogit):
    s = 1 / (1 + np.exp(-logit))
    return s, elogit / 4 + EXP_ULPS * U * s


def gradient_bounds(net, fw, y, B, S, masks):
    """Bounds of calmkit's gradients (its hand-written backward, probes_stack.cpp) in TraceStep's order."""
    L = len(net.W)
    s, es = sigmoid_bound(fw["logit"], fw["elogit"])
    g = (s - y) / B
    eg = (es + U * np.abs(s - y)) / B + (0 if B & (B - 1) == 0 else U * np.abs(g))
    if net.wa is None:
        dz, edz = g[:, None], eg[:, None]
        da = eda = None
    else:
        w, ew, zs, ezs, logit, elogit = fw["w"], fw["ew"], fw["zs"], fw["ezs"], fw["logit"], fw["elogit"]
        dzs = w * g[:, None]
        edzs = ew * np.abs(g)[:, None] + w * eg[:, None] + U * np.abs(dzs)
        diff = zs - logit[:, None]
        das = diff * dzs
        edas = (ezs + elogit[:, None]) * np.abs(dzs) + np.abs(diff) * edzs + 2 * U * np.abs(diff) * np.abs(dzs)
        dz, edz = dzs.reshape(-1, 1), edzs.reshape(-1, 1)
        da, eda = das.reshape(-1, 1), edas.reshape(-1, 1)
    R = dz.shape[0]
    bounds = [None] * (2 * L + (1 if net.wa is not None else 0))
    for l in range(L - 1, -1, -1):
        A, eA = fw["A"][l], fw["eA"][l]
        bounds[2 * l + 1] = gamma(R) * np.abs(dz).sum(0) + edz.sum(0)
        bounds[2 * l] = gamma(R) * (np.abs(A).T @ np.abs(dz)) + eA.T @ np.abs(dz) + np.abs(A).T @ edz
        top = net.wa is not None and l == L - 1
        if top:
            bounds[2 * L] = gamma(R) * (np.abs(A).T @ np.abs(da)) + eA.T @ np.abs(da) + np.abs(A).T @ eda
        if l == 0:
            break
        W = net.W[l]
        dA = dz @ W.T
        mag = np.abs(dz) @ np.abs(W).T
        edA = edz @ np.abs(W).T
        if top:
            dA = dA + da @ net.wa.T
            mag = mag + np.abs(da) @ np.abs(net.wa).T
            edA = edA + eda @ np.abs(net.wa).T
        edA = edA + gamma(W.shape[1] + 2) * mag
        zp, ezp = fw["Z"][l - 1], fw["eZ"][l - 1]
        m = masks[l - 1]
        gate = (zp > 0).astype(np.float64)
        amb = np.abs(zp) <= ezp
        dz = dA * m * gate
        edz = np.where(amb, m * (np.abs(dA) + edA), gate * (m * edA + 2 * U * np.abs(dz)))
    return bounds


def autograd_gradients(net, x0, masks, y, B, S, valid):
    """PyTorch's own gradients in float64 at the given weights (no weight decay: Adam adds it)."""
    ps = [torch.tensor(p, requires_grad=True) for p in net.params()]
    L = len(net.W)
    h = torch.tensor(x0)
    for l in range(L - 1):
        h = torch.relu(h @ ps[2 * l] + ps[2 * l + 1]) * torch.tensor(masks[l])
    scores = h @ ps[2 * (L - 1)] + ps[2 * (L - 1) + 1]
    if net.wa is None:
        logit = scores
    else:
        a = (h @ ps[2 * L])[:, 0].view(B, S).masked_fill(~torch.tensor(valid), float("-inf"))
        w = torch.softmax(a, dim=1)
        logit = (w * scores[:, 0].view(B, S)).sum(1, keepdim=True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.tensor(y).view(-1, 1))
    loss.backward()
    return [p.grad.numpy() for p in ps]


class AdamBounds:
    """torch.optim.Adam in float64 on calmkit's own gradients (teacher forced), with the error bound of calmkit's
    float32 Adam (probes_kernels.cpp AdamStep: g + wd w, m b1 + c1 g, v b2 + c2 g g, w -= stepSize m / (sqrt(v) /
    bc2Sqrt + eps), constants rounded to float32)."""

    def __init__(self, shapes, lr, wd):
        self.params = [torch.zeros(s) for s in shapes]
        self.opt = torch.optim.Adam(self.params, lr=lr, weight_decay=wd)
        self.lr, self.wd, self.t = lr, wd, 0
        self.em = [np.zeros(s) for s in shapes]
        self.ev = [np.zeros(s) for s in shapes]

    def step(self, before, grads):
        """Exact weights after this step from calmkit's weights `before` and gradients, and their bounds."""
        self.t += 1
        b1, b2, eps, wd = 0.9, 0.999, 1e-8, self.wd
        prev = []
        for p, w, g in zip(self.params, before, grads):
            st = self.opt.state.get(p)
            prev.append((np.zeros(w.shape), np.zeros(w.shape)) if not st else (st["exp_avg"].numpy().copy(), st["exp_avg_sq"].numpy().copy()))
            p.data.copy_(torch.tensor(w))
            p.grad = torch.tensor(g)
        self.opt.step()
        exact, bounds = [], []
        step_size = self.lr / (1 - b1 ** self.t)
        bc2s = math.sqrt(1 - b2 ** self.t)
        for k, (p, w, g) in enumerate(zip(self.params, before, grads)):
            st = self.opt.state[p]
            m, v = st["exp_avg"].numpy(), st["exp_avg_sq"].numpy()
            m0, v0 = prev[k]
            gp = g + wd * w
            egi = 2 * U * np.abs(wd * w) + U * np.abs(gp)
            self.em[k] = b1 * self.em[k] + (1 - b1) * egi + 3 * U * (b1 * np.abs(m0) + (1 - b1) * np.abs(gp))
            self.ev[k] = b2 * self.ev[k] + (1 - b2) * 2 * np.abs(gp) * egi + 6 * U * (b2 * v0 + (1 - b2) * gp * gp)
            root = np.sqrt(v)
            den = root / bc2s + eps
            upd = step_size * m / den
            # sqrt is concave: |sqrt(v + d) - sqrt(v)| <= min(d / (2 sqrt(v)), sqrt(d)).
            eroot = np.minimum(self.ev[k] / (2 * np.maximum(root, 1e-300)), np.sqrt(self.ev[k]))
            eden = eroot / bc2s + 3 * U * root / bc2s + U * den + U * eps
            eupd = step_size * (self.em[k] / den + np.abs(m) * eden / den ** 2) + 3 * U * np.abs(upd)
            exact.append(p.detach().numpy().copy())
            bounds.append(eupd + U * np.abs(exact[-1]))
        return exact, bounds


def main():
    spec = json.load(open(sys.argv[1]))
    shape = spec["shape"]
    X = np.asarray(spec["features"], dtype=np.float32).reshape(shape)
    cfg, task = spec["config"], spec["task"]
    attention = bool(cfg.get("attention"))
    S = shape[1] if attention else 1
    X = X.reshape(X.shape[0], S, -1)
    real = np.asarray(spec.get("valid") or [S] * X.shape[0])
    dims = [X.shape[2]] + list(cfg["hidden"]) + [1]
    L = len(dims) - 1
    B, lr, seed = spec["batchSize"], spec["lr"], spec["seed"]
    key = probe_key(seed, task["instrument"], cfg)
    names = [f"{'W' if k % 2 == 0 else 'b'}{k // 2}" for k in range(2 * L)] + (["attention"] if attention else [])
    trace = spec["trace"]
    report = {"steps": []}

    # 3. The initial weights: the same stream and the same float32 arithmetic.
    init = []
    for l in range(L):
        w, b = init_linear(key, l, dims[l], dims[l + 1])
        init += [w.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)]
    if attention:
        init.append(init_linear(key, L, dims[-2], 1)[0].detach().numpy().astype(np.float64))
    report["init"] = {"maxAbs": max(float(np.max(np.abs(np.asarray(c, np.float64).reshape(x.shape) - x)))
                                    for c, x in zip(trace[0]["weights"], init))}

    rows_t, y_t = task["train"]["rows"], task["train"]["targets"]
    if spec["standardize"]:
        xt = np.concatenate([X[r, : real[r]] for r in rows_t]).astype(np.float64)
        mean = xt.mean(0)
        sd = np.sqrt(((xt - mean) ** 2).mean(0))
        sd[sd == 0] = 1.0
        mean, sd = mean.astype(np.float32), sd.astype(np.float32)
    else:
        mean, sd = np.zeros(X.shape[2], np.float32), np.ones(X.shape[2], np.float32)
    sampler = Sampler(rows_t, y_t, sub_key(mix64(seed ^ hash_string(task["instrument"])), K_SAMPLER))
    keep = np.float32(1.0 - cfg["dropout"])
    scale = np.float32(1.0) / keep
    y = np.array([1.0] * (B // 2) + [0.0] * (B // 2))
    adam = AdamBounds([p.shape for p in init], lr, cfg["l2"])
    before = Net(trace[0]["weights"], dims, attention)
    for entry in trace[1:]:
        t = entry["step"]
        rows = sampler.next(B // 2)
        valid = np.arange(S)[None, :] < real[rows][:, None]
        vals = ((X[rows] - mean) / sd)  # float32, as calmkit's dropout row computes it
        vals[~valid] = 0
        m0 = mask(sub_key(key, K_MASK, 0, t), B * S, dims[0], keep).numpy()
        x0 = (vals.reshape(B * S, -1) * m0.astype(np.float32)).astype(np.float64)
        ex0 = 4 * U * (m0 / sd.astype(np.float64)) * (np.abs(X[rows].reshape(B * S, -1).astype(np.float64) - mean) + np.abs(mean))
        ex0 = ex0 * valid.reshape(-1, 1)
        masks = [mask(sub_key(key, K_MASK, l + 1, t), B * S, dims[l + 1], keep).numpy().astype(np.float64) for l in range(L - 1)]
        fw = forward_bounds(before, x0, ex0, masks, B, S, valid)
        bounds = gradient_bounds(before, fw, y, B, S, masks)
        exact = autograd_gradients(before, x0, masks, y, B, S, valid)
        mine = [np.asarray(g, np.float64).reshape(x.shape) for g, x in zip(entry["grads"], exact)]
        grad = worst(lambda k: names[k], mine, exact, bounds)
        rel = np.concatenate([(b[x != 0] / np.abs(x[x != 0])).ravel() for b, x in zip(bounds, exact)])
        grad.update(medianRelBound=float(np.median(rel)) if rel.size else 0.0, ambiguousGates=fw["ambiguous"])
        after = Net(entry["weights"], dims, attention)
        want, ebound = adam.step(before.params(), mine)
        step = worst(lambda k: names[k], after.params(), want, ebound)
        moved = np.concatenate([np.abs(a - b).ravel() for a, b in zip(want, before.params())])
        rel_adam = np.concatenate([(e / np.maximum(np.abs(a - b), 1e-300)).ravel() for e, a, b in zip(ebound, want, before.params())])
        step.update(medianRelBound=float(np.median(rel_adam[moved > 0])) if np.any(moved > 0) else 0.0)
        report["steps"].append({"step": t, "grad": grad, "adam": step})
        before = after

    fwd = spec.get("forward")
    if fwd:
        # calmkit's predict on clips with its final weights against the same net in float64 (no dropout).
        rows = fwd["rows"]
        n = len(rows)
        valid = np.arange(S)[None, :] < real[rows][:, None]
        vals = ((X[rows] - mean) / sd)
        vals[~valid] = 0
        x0 = vals.reshape(n * S, -1).astype(np.float64)
        ex0 = 4 * U / sd.astype(np.float64) * (np.abs(X[rows].reshape(n * S, -1).astype(np.float64) - mean) + np.abs(mean))
        ex0 = ex0 * valid.reshape(-1, 1)
        fw = forward_bounds(before, x0, ex0, None, n, S, valid)
        p, ep = sigmoid_bound(fw["logit"], fw["elogit"])
        out = worst(lambda k: "probability", [np.asarray(fwd["probabilities"], np.float64)], [p], [ep + U * p])
        if attention and fwd.get("weights") is not None:
            w = np.asarray(fwd["weights"], np.float64).reshape(n, S)
            out["weights"] = worst(lambda k: "attention weight", [w], [fw["w"]], [fw["ew"]])
        report["forward"] = out
    json.dump(report, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
