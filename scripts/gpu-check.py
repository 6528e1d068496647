#!/usr/bin/env python3
"""calmkit's one-shot GPU check: everything the GPU figures need, measured in one go on one machine.

    python3 scripts/gpu-check.py --out DIR [--device cuda|cpu] [--build-dir DIR] [--jobs N]

Run from the repo root. It needs only what the GPU machines have (python3 with torch, cmake, a C++ compiler; no
Node, no libsndfile): it drives the C++ tool `calmkit-core`, built here against this python's torch
(torch.utils.cmake_prefix_path) with the audio codecs left out (CALMKIT_AUDIO=OFF: audio arrives as samples).
Steps, each timed and allowed to fail without losing the others:
  1. build the core and calmkit-core (an existing, configured --build-dir is only brought up to date);
  2. doctor;
  3. correctness of the device against the CPU on small random models (check-device): fp32 (TF32 off) pooled
     features within 1e-5 relative and tokens identical, fp16/bf16 cosine >= 0.999 to fp32, batch invariance;
  4. extraction at the real 5B shapes (width 4800, 8 heads, n_ctx 8192, block_ctx 64, layers 1-36) with random
     weights drawn on the device: `calmkit-core bench extract`, the engine `calmkit bench extract` runs, so the
     figures are the same ones: fp32, bf16, fp16; batch 1 and 4; full windows and the 3,445-token window of an
     untiled 10 s clip; every stage per clip, clips/s, TFLOP/s against the same dtype's GEMM peak measured in the
     same run, peak device memory, the pooled cosine of bf16 and fp16 to fp32 at layer 36; and in the same rounds
     the eager PyTorch reference (benchmarks/reference/jukebox_eager.py, this python) doing the same work at each
     precision, and in fp32 the original code's own way (jukemirlib: 25 s, three VQ-VAE levels);
  5. the 540-probe grid at 4800-d (`calmkit-core bench probes`) at two epoch counts, extrapolated to 800 epochs;
  6. a summary table; DIR/bench-extract.json and DIR/bench-probes.json are the engine's reports (schema
     calmkit-bench: `calmkit bench compare` reads them), DIR/gpu-check.json holds them with the checks and goals,
     DIR/gpu-check.log every command's output.
--device cpu runs the same steps with tiny shapes in about a minute: the test suite runs it so this script
cannot rot (it then reuses the addon's configured build folder).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The goals of the GPU issue (one H200): bf16 clips/s on full windows, speed-up over the eager reference, bf16
# cosine to fp32 at layer 36, seconds for the 540 x 800-epoch grid.
GOALS = {"bf16ClipsPerSecond": 15.0, "speedupOverEager": 10.0, "bf16Cosine": 0.9999, "gridSeconds": 60.0}

# Shapes per mode: cuda measures the real 5B shapes; cpu keeps the same steps tiny.
MODES = {
    "cuda": {
        "check": ["--preset", "small", "--layers", "4"],
        "bench": ["--preset", "5b", "--layers", "36", "--tokens", "8192,3445", "--batch", "1,4", "--rounds", "3",
                  "--warmup", "1", "--jukemirlib"],
        "fullTokens": 8192,
        "grid": ["--dim", "4800", "--clips", "20000", "--epochs", "2,6"],
    },
    "cpu": {
        "check": ["--preset", "tiny"],
        # The reference's same-work mode only: jukemirlib's three-level encode takes minutes on a CPU.
        "bench": ["--preset", "tiny", "--tokens", "1024,430", "--batch", "1,2", "--rounds", "2", "--warmup", "0"],
        "fullTokens": 1024,
        "grid": ["--dim", "32", "--clips", "2500", "--scale", "0.1", "--instruments", "4", "--epochs", "1,4"],
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


def bench(log, tool, args, out_file, timeout):
    """Runs `calmkit-core bench ...`; returns its report (the schema calmkit-bench document) written to out_file."""
    run(log, [tool, "bench", *args, "--json", out_file], timeout)
    with open(out_file) as f:
        doc = json.load(f)
    if doc.get("schema") != "calmkit-bench":
        raise RuntimeError(f"{out_file} is not a calmkit-bench report")
    return doc


def summary(report):
    ext = report.get("extract") or {}
    peaks = {p["dtype"]: p["gflopPerSecond"] / 1000.0 for p in ext.get("peaks", [])}
    lines = ["", f"calmkit GPU check on {report['deviceName']} ({report['mode']} mode)",
             f"{'run':<26}{'clips/s':>9}{'s/clip':>9}{'TFLOP/s':>9}{'of peak':>9}{'GiB':>7}{'cos fp32':>10}{'vs eager':>10}"]
    for r in ext.get("rows", []):
        mem = r["peakDeviceBytes"] if r.get("peakDeviceBytes") is not None else r["peakRssBytes"]
        cos = f"{r['vsFp32']['cosine']:.6f}" if r.get("vsFp32") else "-"
        ref = f"{r['reference']['speedup']:.2f}x" if r.get("reference") else "-"
        frac = f"{r['peakFraction']:.0%}" if r.get("peakFraction") is not None else "-"
        tflops = f"{r['blocksGflopPerSecond'] / 1000:.1f}" if r.get("blocksGflopPerSecond") else "-"
        lines.append(f"{r['precision'] + ' ' + str(r['tokens']) + ' tok x' + str(r['batch']):<26}{r['clipsPerSecond']:>9.2f}"
                     f"{r['clipSeconds']['median']:>9.3f}{tflops:>9}{frac:>9}{mem / 2**30:>7.1f}{cos:>10}{ref:>10}")
    if peaks:
        lines.append("GEMM peaks (same run): " + ", ".join(f"{k} {v:.1f} TFLOP/s" for k, v in sorted(peaks.items())))
    c = report.get("correctness")
    if c:
        lines.append(f"correctness: tokens identical {c['tokensIdenticalToCpu']}, fp32 max rel {c['fp32MaxRelToCpu']:.2e}, "
                     f"fp16 cos {c['fp16CosineToFp32']:.6f}, bf16 cos {c['bf16CosineToFp32']:.6f}, "
                     f"batch-invariant {c['batchInvariant']}")
    ref = ext.get("reference")
    if ref:
        lines.append(f"eager reference: {ref.get('status')}")
        for rr in ref.get("rows", []):
            lines.append(f"  {rr['mode']} {rr['precision']} {rr['tokens']} tok: {rr['clipSeconds']:.3f} s/clip")
    grid = report.get("probes")
    if grid and grid.get("rows"):
        g = grid["rows"][0]
        lines.append(f"probe grid: {g['probes']} probes at {g['dim']}-d, {g['secondsPerEpoch']:.3f} s/epoch, "
                     f"{g['targetEpochs']} epochs ~ {g['targetSeconds']:.1f} s ({g['floorFraction']:.0%} of the GEMM floor)")
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
        report["correctness"] = step("correctness", lambda: json_lines(
            run(log, [tool, "check-device", "--device", a.device, *mode["check"]], 600))[-1])
        report["extract"] = step("extract", lambda: bench(log, tool, [
            "extract", "--device", a.device, *mode["bench"], "--precision", "bf16,fp16,fp32",
            "--reference", sys.executable, "--reference-script", os.path.join(ROOT, "benchmarks", "reference", "jukebox_eager.py")],
            os.path.join(a.out, "bench-extract.json"), 3600))
        report["probes"] = step("probes", lambda: bench(log, tool, ["probes", "--device", a.device, *mode["grid"]],
                                                        os.path.join(a.out, "bench-probes.json"), 3600))

    goals = {}
    rows = (report.get("extract") or {}).get("rows", [])
    full_bf16 = [r for r in rows if r["precision"] == "bf16" and r["tokens"] == mode["fullTokens"]]
    if full_bf16:
        best = max(full_bf16, key=lambda r: r["clipsPerSecond"])
        goals["bf16ClipsPerSecond"] = {"value": best["clipsPerSecond"], "goal": GOALS["bf16ClipsPerSecond"]}
        cos = [r["vsFp32"]["cosine"] for r in full_bf16 if r.get("vsFp32")]
        if cos:
            goals["bf16Cosine"] = {"value": min(cos), "goal": GOALS["bf16Cosine"]}
        # Against the original code's way where it ran (jukemirlib, fp32), else the same-work eager fp32.
        refs = (report.get("extract") or {}).get("reference", {}).get("rows", [])
        eager = [r for r in refs if r["tokens"] == mode["fullTokens"] and r["precision"] == "fp32"]
        eager.sort(key=lambda r: r["mode"] != "jukemirlib")
        if eager:
            goals["speedupOverEager"] = {"value": eager[0]["clipSeconds"] / best["clipSeconds"]["median"],
                                         "goal": GOALS["speedupOverEager"], "eagerMode": eager[0]["mode"]}
    grid_rows = (report.get("probes") or {}).get("rows", [])
    if grid_rows:
        goals["gridSeconds"] = {"value": grid_rows[0]["targetSeconds"], "goal": GOALS["gridSeconds"]}
    for k, v in goals.items():
        v["met"] = v["value"] <= v["goal"] if k == "gridSeconds" else v["value"] >= v["goal"]
    report["goals"] = goals
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(os.path.join(a.out, "gpu-check.json"), "w") as f:
        json.dump(report, f, indent=1)
    text = summary(report)
    log.write(text + "\n")
    print(text)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
