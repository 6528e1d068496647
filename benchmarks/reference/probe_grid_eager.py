"""The probe grid trained the usual way: one config at a time, in eager PyTorch.

This is the baseline the grid-search benchmark measures calmkit's stacked trainer against: the protocol of the
study (and of jukemir's probes) written as a PyTorch user writes it -- an nn.Sequential per config,
torch.optim.Adam with coupled weight decay, BCEWithLogitsLoss, balanced batches, validation every epoch with
the best weights kept, then a test pass -- looping over instruments and configs. Random streams are PyTorch's
own, so results match calmkit's statistically, not bit for bit (the tests cross-check the arithmetic).

    python3 probe_grid_eager.py problem.json features.npy out.json

problem.json: {"dim", "epochs", "batchSize", "lr", "seed", "threads",
               "grid": {"hidden": [[...]], "dropout": [...], "l2": [...]},
               "tasks": [{"instrument", "train": {"rows", "targets"}, "val": {...}, "test": {...}}]}
out.json: {"seconds", "probes", "torch", "threads", "probeResults": [{"instrument", "hidden", "dropout", "l2",
           "bestEpoch", "bestValLoss", "bestValAcc"}]}
"""

import json
import math
import sys
import time

import numpy as np
import torch
from torch import nn


def make_probe(dim, hidden, dropout):
    layers = [nn.Dropout(dropout)]
    size = dim
    for h in hidden:
        layers += [nn.Linear(size, h), nn.ReLU(), nn.Dropout(dropout)]
        size = h
    layers.append(nn.Linear(size, 1))
    return nn.Sequential(*layers)


class BalancedSampler:
    """Half positives, half negatives per batch, each class from its own reshuffled cycle."""

    def __init__(self, targets, generator):
        self.pools = [torch.nonzero(targets == 1).view(-1), torch.nonzero(targets == 0).view(-1)]
        self.order = [None, None]
        self.at = [0, 0]
        self.generator = generator

    def take(self, cls, k):
        out = []
        pool = self.pools[cls]
        while k > 0:
            if self.order[cls] is None or self.at[cls] == len(pool):
                self.order[cls] = pool[torch.randperm(len(pool), generator=self.generator)]
                self.at[cls] = 0
            n = min(k, len(pool) - self.at[cls])
            out.append(self.order[cls][self.at[cls]:self.at[cls] + n])
            self.at[cls] += n
            k -= n
        return torch.cat(out)

    def next(self, half):
        return torch.cat([self.take(0, half), self.take(1, half)])


def split(features, part):
    rows = torch.tensor(part["rows"], dtype=torch.long)
    return features[rows], torch.tensor(part["targets"], dtype=torch.float32).view(-1, 1)


def train_one(x_tr, y_tr, x_va, y_va, x_te, dim, hidden, dropout, l2, opt, seed):
    torch.manual_seed(seed)
    model = make_probe(dim, hidden, dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=opt["lr"], weight_decay=l2)
    loss_fn = nn.BCEWithLogitsLoss()
    sampler = BalancedSampler(y_tr.view(-1), torch.Generator().manual_seed(seed))
    batch = opt["batchSize"]
    steps = math.ceil(len(x_tr) / batch)
    best = (math.inf, -1, math.nan, None)
    for epoch in range(opt["epochs"]):
        model.train()
        for _ in range(steps):
            idx = sampler.next(batch // 2)
            optimizer.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(x_va)
            val_loss = loss_fn(logits, y_va).item()
            val_acc = ((logits > 0).float() == y_va).float().mean().item()
        if val_loss < best[0]:
            best = (val_loss, epoch, val_acc, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[3])
    model.eval()
    with torch.no_grad():
        test_prob = torch.sigmoid(model(x_te)).view(-1)
    return best[0], best[1], best[2], test_prob


def main():
    problem_path, features_path, out_path = sys.argv[1:4]
    with open(problem_path) as f:
        problem = json.load(f)
    torch.set_num_threads(int(problem["threads"]))
    features = torch.from_numpy(np.load(features_path, mmap_mode="r")[:]).float()
    dim = problem["dim"]
    grid = problem["grid"]
    results = []
    started = time.perf_counter()
    for t, task in enumerate(problem["tasks"]):
        x_tr, y_tr = split(features, task["train"])
        # Standardisation fitted on train (population std, constant features keep scale 1), applied once per task.
        mean = x_tr.mean(0)
        std = x_tr.std(0, unbiased=False)
        std[std == 0] = 1
        x_tr = (x_tr - mean) / std
        x_va, y_va = split(features, task["val"])
        x_va = (x_va - mean) / std
        x_te, _ = split(features, task["test"])
        x_te = (x_te - mean) / std
        c = 0
        for hidden in grid["hidden"]:
            for dropout in grid["dropout"]:
                for l2 in grid["l2"]:
                    seed = problem["seed"] * 1000003 + t * 101 + c
                    loss, epoch, acc, _ = train_one(x_tr, y_tr, x_va, y_va, x_te, dim, hidden, dropout, l2, problem, seed)
                    results.append({"instrument": task["instrument"], "hidden": hidden, "dropout": dropout, "l2": l2,
                                    "bestEpoch": epoch, "bestValLoss": loss, "bestValAcc": acc})
                    c += 1
        print(f"  pytorch one-at-a-time: {t + 1}/{len(problem['tasks'])} instruments", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    with open(out_path, "w") as f:
        json.dump({"seconds": seconds, "probes": len(results), "torch": torch.__version__,
                   "threads": torch.get_num_threads(), "probeResults": results}, f)


if __name__ == "__main__":
    main()
