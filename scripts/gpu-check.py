#!/usr/bin/env python3
"""calmkit's one-shot GPU check: everything the GPU figures need, measured in one go on one machine.

    python3 scripts/gpu-check.py --out DIR [--device cuda|cpu] [--build-dir DIR] [--jobs N]

Run from the repo root. It needs only what the GPU machines have (python3 with torch, cmake, a C++ compiler; no
Node, no libsndfile): it drives the C++ tool `calmkit-core`, built here against this python's torch
(torch.utils.cmake_prefix_path) with the audio codecs left out (CALMKIT_AUDIO=OFF: audio arrives as samples).
Steps, each timed and allowed to fail without losing the others:
  1. build the core and calmkit-core (an existing, configured --build-dir is only brought up to date);
  2. doctor, and the GEMM peaks (fp32 and bf16) measured in the same run;
  3. correctness of the device against the CPU on small random models (check-device): fp32 (TF32 off) pooled
     features within 1e-5 relative and tokens identical, fp16/bf16 cosine >= 0.999 to fp32, batch invariance;
  4. throughput at the real 5B shapes (width 4800, 8 heads, n_ctx 8192, block_ctx 64, layers 1-36) with random
     weights drawn on the device (bench-shapes): fp32, bf16, fp16; batch 1 and 4; full windows and the 3,445-token
     window of an untiled 10 s clip; clips/s, TFLOP/s against the bf16 GEMM peak, peak memory, and the pooled
     cosine of bf16 and fp16 to fp32 at layer 36;
  5. the eager PyTorch reference (benchmarks/reference/jukebox_eager.py, fp32, jukemirlib's way) on the same
     device: a 5B-shaped archive with a few layers, timed at two depths, extrapolated to 36 layers linearly
     (time = fixed part + layers x per-layer time);
  6. the 540-probe grid at 4800-d (probe-grid) for two epoch counts, extrapolated to 800 epochs linearly
     (time = setup + epochs x per-epoch time);
  7. a summary table; DIR/gpu-check.json holds every number and DIR/gpu-check.log every command's output.
--device cpu runs the same steps with tiny shapes in about a minute: the test suite runs it so this script
cannot rot (it then reuses the addon's configured build folder).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from array import array

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The goals of the GPU issue (one H200): bf16 clips/s on full windows, speed-up over the eager reference, bf16
# cosine to fp32 at layer 36, seconds for the 540 x 800-epoch grid.
GOALS = {"bf16ClipsPerSecond": 15.0, "speedupOverEager": 10.0, "bf16Cosine": 0.9999, "gridSeconds": 60.0}

# Shapes per mode: cuda measures the real 5B shapes; cpu keeps the same steps tiny.
MODES = {
    "cuda": {
        "check": ["--preset", "small", "--layers", "4"],
        "bench": ["--preset", "5b", "--layers", "36"], "fullTokens": 8192, "untiledTokens": 3445,
        "batches": "1,4", "repeat": "3", "gemm": "8192",
        "refPreset": "5b", "refDepths": (2, 4), "refMode": "jukemirlib", "targetLayers": 36,
        "grid": ["--dim", "4800", "--clips", "20000"], "gridEpochs": (2, 6),
    },
    "cpu": {
        "check": ["--preset", "tiny"],
        "bench": ["--preset", "tiny"], "fullTokens": 1024, "untiledTokens": 430,
        "batches": "1,2", "repeat": "2", "gemm": "512",
        # "minimal": the reference's level-2-only path; jukemirlib's three-level encode takes minutes on a CPU.
        "refPreset": "tiny", "refDepths": (3, 6), "refMode": "minimal", "targetLayers": 6,
        "grid": ["--dim", "32", "--clips", "2500", "--scale", "0.1", "--instruments", "4"], "gridEpochs": (1, 2),
    },
}


class Log:
    def __init__(self, path):
        self.f = open(path, "w")

    def write(self, text):
        self.f.write(text)
        self.f.flush()

    def step(self, name):
        self.write(f"\n=== {name} ({time.strftime('%H:%M:%S')})\n")


def run(log, cmd, timeout, env=None):
    """Runs a command, logs it and its output; returns stdout (raises on failure or timeout)."""
    log.write("$ " + " ".join(cmd) + "\n")
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    log.write(p.stdout + p.stderr + f"[exit {p.returncode}, {time.time() - t0:.1f} s]\n")
    if p.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0])} {cmd[1] if len(cmd) > 1 else ''} exited {p.returncode}: "
                           f"{(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    return p.stdout


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def build(log, build_dir, jobs):
    import torch  # the GPU machine's torch: what the core links
    if os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
        run(log, ["cmake", "--build", build_dir, "--target", "calmkit-core", "-j", str(jobs)], 900)
    else:
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        torch_dir = os.path.join(torch.utils.cmake_prefix_path, "Torch")
        run(log, ["cmake", "-S", ".", "-B", build_dir, *gen, "-DCMAKE_BUILD_TYPE=Release", "-DCALMKIT_AUDIO=OFF",
                  f"-DTorch_DIR={torch_dir}"], 300)
        run(log, ["cmake", "--build", build_dir, "--target", "calmkit-core", "-j", str(jobs)], 900)
    tool = os.path.join(build_dir, "calmkit-core")
    if not os.path.exists(tool):
        raise RuntimeError(f"no calmkit-core in {build_dir}")
    return tool


def gemm_tflops(log, tool, size, dtype, device):
    out = run(log, [tool, "gemm", size, size, size, dtype, device], 300)
    return json_lines(out)[-1]["gflops"] / 1000.0


def crop_samples(tool, archive, log):
    """The first window plus the encoder's margin, as calmkit crops it (from `calmkit-core info`)."""
    import re
    m = re.search(r"^window: (\d+) samples .* encoder margin (\d+) samples", run(log, [tool, "info", archive], 120), re.M)
    if not m:
        raise RuntimeError("no window and margin in calmkit-core info")
    return int(m.group(1)) + int(m.group(2))


def reference_times(log, tool, mode, device, work):
    """The eager reference at two depths of a 5B-shaped archive; a line through them gives any depth."""
    deepest = max(mode["refDepths"])
    archive = os.path.join(work, f"ref-{mode['refPreset']}-{deepest}.pt")
    run(log, [tool, "init", "--preset", mode["refPreset"], "--layers", str(deepest), "--out", archive], 600)
    # The paper's input: a 10 s clip tiled to 62 s; jukemirlib's way crops 25 s of it.
    import math
    import random
    rng = random.Random(0)
    clip = [0.6 * math.sin(2 * math.pi * 220 * i / 44100) + 0.1 * (rng.random() - 0.5) for i in range(441000)]
    tiled = array("f", (clip[i % len(clip)] for i in range(62 * 44100)))
    audio = os.path.join(work, "tiled.f32")
    with open(audio, "wb") as f:
        tiled.tofile(f)
    python = sys.executable
    proc = subprocess.Popen([python, os.path.join(ROOT, "benchmarks", "reference", "jukebox_eager.py")], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def call(msg):
        proc.stdin.write(json.dumps(msg) + "\n")
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        log.write(f"reference {msg['cmd']}: {json.dumps(reply)}\n")
        if not reply.get("ok"):
            raise RuntimeError(f"reference: {reply.get('error')}")
        return reply

    try:
        call({"cmd": "load", "model": archive, "threads": os.cpu_count() or 1, "device": device})
        times = {}
        # minimal mode crops to the first window plus the encoder's margin, as calmkit does.
        msg = {"cmd": "run", "audio": audio, "mode": mode["refMode"], "crop": crop_samples(tool, archive, log)}
        for depth in mode["refDepths"]:
            call({**msg, "layers": [depth]})  # warm-up
            runs = sorted(call({**msg, "layers": [depth]})["seconds"] for _ in range(int(mode["repeat"])))
            times[depth] = runs[len(runs) // 2]
        proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
        proc.stdin.close()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.write(proc.stderr.read() if proc.stderr else "")
    (d1, t1), (d2, t2) = sorted(times.items())
    per_layer = (t2 - t1) / (d2 - d1)
    fixed = t1 - d1 * per_layer
    target = mode["targetLayers"]
    return {"archive": os.path.basename(archive), "mode": mode["refMode"], "secondsAtDepth": {str(k): v for k, v in times.items()},
            "perLayerSeconds": per_layer, "fixedSeconds": fixed, "layers": target,
            "secondsPerClip": fixed + target * per_layer,
            "extrapolation": f"linear in depth through depths {d1} and {d2}, to {target} layers"}


def grid_times(log, tool, mode, device):
    e1, e2 = mode["gridEpochs"]
    runs = {}
    for e in (e1, e2):
        out = run(log, [tool, "probe-grid", "--device", device, "--epochs", str(e), *mode["grid"]], 1200)
        runs[e] = json_lines(out)[-1]
    per_epoch = (runs[e2]["seconds"] - runs[e1]["seconds"]) / (e2 - e1)
    setup = runs[e1]["seconds"] - e1 * per_epoch
    return {"probes": runs[e2]["probes"], "stacks": runs[e2]["stacks"], "dim": runs[e2]["dim"],
            "secondsAtEpochs": {str(e): r["seconds"] for e, r in runs.items()}, "perEpochSeconds": per_epoch,
            "setupSeconds": setup, "seconds800": setup + 800 * per_epoch,
            "extrapolation": f"linear in epochs through {e1} and {e2} epochs, to 800"}


def summary(report):
    rows = []
    b = report.get("bench", [])

    def pick(precision, tokens, batch):
        for r in b:
            if r["precision"] == precision and r["tokens"] == tokens and r["batch"] == batch:
                return r
        return None

    peak = report.get("gemm", {}).get("bf16Tflops")
    for r in b:
        frac = f"{r['priorTflops'] / peak:.0%}" if peak and r.get("priorTflops") else "-"
        cos = f"{r['cosine']:.6f}" if "cosine" in r else "-"
        rows.append((f"{r['precision']} {r['tokens']} tok x{r['batch']}", f"{r['clipsPerSecond']:.2f}",
                     f"{r['secondsPerClip']:.3f}", f"{r['priorTflops']:.1f}" if r.get("priorTflops") else "-", frac, f"{r['peakMemoryBytes'] / 2**30:.1f}", cos))
    lines = ["", f"calmkit GPU check on {report['deviceName']} ({report['mode']} mode)",
             f"{'run':<26}{'clips/s':>9}{'s/clip':>9}{'TFLOP/s':>9}{'of bf16':>9}{'GiB':>7}{'cos fp32':>10}"]
    lines += [f"{r[0]:<26}{r[1]:>9}{r[2]:>9}{r[3]:>9}{r[4]:>9}{r[5]:>7}{r[6]:>10}" for r in rows]
    g = report.get("gemm", {})
    if g:
        lines.append(f"GEMM peak: fp32 {g.get('fp32Tflops', float('nan')):.1f} TFLOP/s, bf16 {g.get('bf16Tflops', float('nan')):.1f} TFLOP/s")
    c = report.get("correctness")
    if c:
        lines.append(f"correctness: tokens identical {c['tokensIdenticalToCpu']}, fp32 max rel {c['fp32MaxRelToCpu']:.2e}, "
                     f"fp16 cos {c['fp16CosineToFp32']:.6f}, bf16 cos {c['bf16CosineToFp32']:.6f}, "
                     f"batch-invariant {c['batchInvariant']}")
    ref = report.get("reference")
    if ref:
        lines.append(f"eager reference (fp32, {ref['mode']}): {ref['secondsPerClip']:.3f} s/clip at {ref['layers']} layers "
                     f"({ref['extrapolation']})")
    grid = report.get("grid")
    if grid:
        lines.append(f"probe grid: {grid['probes']} probes at {grid['dim']}-d, {grid['perEpochSeconds']:.3f} s/epoch, "
                     f"800 epochs ~ {grid['seconds800']:.1f} s ({grid['extrapolation']})")
    goals = report.get("goals")
    if goals:
        lines.append("goals: " + ", ".join(f"{k} {'met' if v['met'] else 'NOT met'} ({v['value']:.4g} vs {v['goal']})"
                                           for k, v in goals.items()))
    for name, err in report.get("errors", {}).items():
        lines.append(f"FAILED {name}: {err}")
    return "\n".join(lines)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for gpu-check.json and gpu-check.log")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--build-dir", default=None, help="build folder (default build-gpucheck; reused when configured)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    log = Log(os.path.join(a.out, "gpu-check.log"))
    mode = MODES[a.device]
    report = {"mode": a.device, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "deviceName": a.device, "errors": {},
              "timings": {}}
    build_dir = os.path.abspath(a.build_dir or os.path.join(ROOT, "build-gpucheck"))
    work = tempfile.mkdtemp(prefix="calmkit-gpu-check-")
    tool = None

    def step(name, fn):
        log.step(name)
        t0 = time.time()
        try:
            return fn()
        except Exception as e:  # one failing step must not lose the others' numbers
            report["errors"][name] = f"{type(e).__name__}: {e}"
            log.write(f"FAILED: {e}\n")
            return None
        finally:
            report["timings"][name] = round(time.time() - t0, 2)
            with open(os.path.join(a.out, "gpu-check.json"), "w") as f:
                json.dump(report, f, indent=1)

    tool = step("build", lambda: build(log, build_dir, a.jobs))
    if tool:
        doctor = step("doctor", lambda: run(log, [tool, "doctor"], 120))
        if doctor:
            report["doctor"] = doctor
            for line in doctor.splitlines():
                if line.startswith("cuda:0") and a.device == "cuda":
                    report["deviceName"] = line.split(None, 1)[1].split(",")[0]
        report["gemm"] = step("gemm", lambda: {
            "fp32Tflops": gemm_tflops(log, tool, mode["gemm"], "float32", a.device),
            "bf16Tflops": gemm_tflops(log, tool, mode["gemm"], "bfloat16", a.device)}) or {}
        report["correctness"] = step("correctness", lambda: json_lines(
            run(log, [tool, "check-device", "--device", a.device, *mode["check"]], 600))[-1])
        full, untiled = str(mode["fullTokens"]), str(mode["untiledTokens"])
        bench = step("bench", lambda: json_lines(run(log, [
            tool, "bench-shapes", "--device", a.device, *mode["bench"], "--precision", "bf16,fp16,fp32",
            "--tokens", f"{full},{untiled}", "--batch", mode["batches"], "--repeat", mode["repeat"],
            "--compare", "fp32"], 1800)))
        report["bench"] = bench or []
        report["reference"] = step("reference", lambda: reference_times(log, tool, mode, a.device, work))
        report["grid"] = step("grid", lambda: grid_times(log, tool, mode, a.device))

    goals = {}
    full_bf16 = [r for r in report.get("bench", []) if r["precision"] == "bf16" and r["tokens"] == mode["fullTokens"]]
    if full_bf16:
        best = max(full_bf16, key=lambda r: r["clipsPerSecond"])
        goals["bf16ClipsPerSecond"] = {"value": best["clipsPerSecond"], "goal": GOALS["bf16ClipsPerSecond"]}
        cos = [r["cosine"] for r in full_bf16 if "cosine" in r]
        if cos:
            goals["bf16Cosine"] = {"value": min(cos), "goal": GOALS["bf16Cosine"]}
        if report.get("reference"):
            goals["speedupOverEager"] = {"value": report["reference"]["secondsPerClip"] / best["secondsPerClip"],
                                         "goal": GOALS["speedupOverEager"]}
    if report.get("grid"):
        goals["gridSeconds"] = {"value": report["grid"]["seconds800"], "goal": GOALS["gridSeconds"]}
    for k, v in goals.items():
        v["met"] = v["value"] <= v["goal"] if k == "gridSeconds" else v["value"] >= v["goal"]
    report["goals"] = goals
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(os.path.join(a.out, "gpu-check.json"), "w") as f:
        json.dump(report, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)
    text = summary(report)
    log.write(text + "\n")
    print(text)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
