"""Inference speed of our RRDBNet against the published computation, on the same random weights.

    python benchmarks/bench_inference.py                      # x4 RRDBNet 23x64, 64x64 and 128x128, 2 threads
    python benchmarks/bench_inference.py --model weights.pth  # also a model file (e.g. the shipped default)
    python benchmarks/bench_inference.py --models-only --model torch_sr/weights/default_x4.pth --sizes 256

CPU: the reference is BasicSR's `RRDBNet` exactly as published (concatenations, a separate
LeakyReLU, `x * 0.2 + x`), from `tests/reference_archs.py`, so that it shares nothing with torch_sr. Both models get
identical weights, run in this process with their timed calls interleaved (ABAB...) so that load
from other processes hits both alike, and must agree to 1e-4 of the output range. Reported: the
median of `--repeats` calls after `--warmup`, the speed-up, GFLOP/s from the conv MACs counted
analytically (2 FLOP per MAC) against the CPU's FMA peak, and the peak resident memory (RSS
high-water mark) of one call, measured in a fresh subprocess per configuration so peaks do not mix.
GPU (when CUDA is available): float32, float16 and bfloat16 timings, peak allocated memory and a
NaN/black-output check.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from reference_archs import BasicSRRRDBNet  # noqa: E402  (tests/: BasicSR's code as published)

from torch_sr.archs.rrdbnet import RRDBNet  # noqa: E402
from torch_sr.files import atomic_write  # noqa: E402
from torch_sr.model_files.model_file import load_model  # noqa: E402

AGREEMENT = 1e-4  # of the output range (max |reference|, at least 1)


# --- models ----------------------------------------------------------------------------------
def reference_for(hparams: dict) -> BasicSRRRDBNet | None:
    """The reference with these hyper-parameters, or None where BasicSR's x4 net cannot express them."""
    x4 = dict(scale_factor=4, num_dense_blocks=3, num_residual_blocks=5, residual_scaling=0.2,
              use_subpixel_conv=False, pixel_unshuffle=1)
    if any(hparams.get(k) != v for k, v in x4.items()):
        return None
    c = hparams["img_channels"]
    return BasicSRRRDBNet(c, c, 4, hparams["rrdb_channels"], hparams["num_basic_blocks"], hparams["growth_channels"])


def random_pair(seed: int) -> tuple[nn.Module, nn.Module]:
    """(reference, ours) x4 23x64 with identical weights: ESRGAN's init, plus small random biases so every term counts."""
    torch.manual_seed(seed)
    ours = RRDBNet()
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.01)
    ref = reference_for(ours.hparams)
    ref.load_state_dict(ours.state_dict())
    return ref.eval(), ours.eval().optimize_for_inference()


def model_pair(path: str) -> tuple[nn.Module | None, nn.Module]:
    ours = load_model(path).eval()
    if hasattr(ours, "optimize_for_inference"):
        ours.optimize_for_inference()
    ref = reference_for(getattr(ours, "hparams", {}))
    if ref is not None:
        ref.load_state_dict(ours.state_dict())
        ref.eval()
    return ref, ours


def build(spec: dict) -> tuple[nn.Module | None, nn.Module]:
    return model_pair(spec["model"]) if spec.get("model") else random_pair(spec["seed"])


def conv_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of every conv for one call on `shape`: out pixels x Cout x Cin/groups x kh x kw.

    Shapes come from a forward pass on the meta device (no data, no arithmetic).
    """
    total = 0

    def count(module, _inputs, out):
        nonlocal total
        kh, kw = module.kernel_size
        total += out.numel() * module.in_channels // module.groups * kh * kw

    meta = copy.deepcopy(model).to("meta")
    hooks = [m.register_forward_hook(count) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        meta(torch.empty(shape, device="meta"))
    for h in hooks:
        h.remove()
    return total


# --- machine ---------------------------------------------------------------------------------
def cpu_peak(threads: int, clock_ghz: float | None, fma_units: int) -> tuple[float, str]:
    """Float32 FMA peak of `threads` cores: cores x FMA units x SIMD lanes x 2 FLOP x clock."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "avx" in flags else 4
    if clock_ghz is None:
        mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
        clock_ghz = max(mhz) / 1000 if mhz else 2.0
    cores = min(threads, os.cpu_count() or 1)
    peak = cores * fma_units * lanes * 2 * clock_ghz
    return peak, f"{cores} cores x {fma_units} FMA units x {lanes} fp32 lanes x 2 FLOP x {clock_ghz:.3f} GHz"


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """What a large float32 GEMM achieves here: a practical ceiling beside the paper peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


# --- timing ----------------------------------------------------------------------------------
def interleaved(calls: dict[str, Callable[[], object]], warmup: int, repeats: int, sync=lambda: None) -> dict[str, list[float]]:
    """Seconds per call of each entry, called in turn (ABAB...) after `warmup` rounds."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    for i in range(warmup + repeats):
        for name, call in calls.items():
            sync()
            t = time.perf_counter()
            call()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return times


def peak_rss_worker(spec: dict) -> dict:
    """Run in a fresh process: RSS high-water mark over two calls, and its rise over the RSS before them."""
    torch.set_num_threads(spec["threads"])
    ref, ours = build(spec)
    model = ours if spec["impl"] == "ours" else ref
    channels = model_channels(ours)
    del ref, ours  # only the measured model stays resident
    gc.collect()
    x = torch.rand(1, channels, spec["size"], spec["size"])
    status = Path("/proc/self/status")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib(status, "VmRSS")
    with torch.inference_mode():
        for _ in range(2):  # the first call also allocates one-time caches
            model(x)
    peak = _status_kib(status, "VmHWM")
    return {"peak_mib": peak / 1024, "delta_mib": (peak - before) / 1024}


def _status_kib(path: Path, key: str) -> int:
    line = next(line for line in path.read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1])


def peak_rss(spec: dict) -> dict | None:
    if not Path("/proc/self/clear_refs").exists():
        return None  # peaks are read from Linux's /proc; elsewhere they are left out
    out = subprocess.run(
        [sys.executable, __file__, "--peak-worker", json.dumps(spec)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def model_channels(model: nn.Module) -> int:
    return getattr(model, "in_channels", 3)


# --- report ----------------------------------------------------------------------------------
def bench_cpu(spec: dict, sizes: list[int], args) -> list[dict]:
    torch.set_num_threads(args.threads)
    ref, ours = build(spec)
    peak, how = cpu_peak(args.threads, args.clock_ghz, args.fma_units)
    rows = []
    for size in sizes:
        x = torch.rand(1, model_channels(ours), size, size, generator=torch.Generator().manual_seed(size))
        calls = {"ours": lambda: ours(x)}
        if ref is not None:
            calls = {"reference": lambda: ref(x), **calls}
        with torch.inference_mode():
            outs = {k: c() for k, c in calls.items()}
            times = interleaved(calls, args.warmup, args.repeats)
        macs = conv_macs(ref if ref is not None else ours, tuple(x.shape))
        row = {"size": size, "gmac": macs / 1e9, "peak_gflops": peak, "peak_how": how, "load": load_average()}
        for k in calls:
            t = statistics.median(times[k])
            row[k] = {"median_s": t, "min_s": min(times[k]), "gflops": 2 * macs / t / 1e9,
                      "rss": peak_rss({**spec, "impl": k, "size": size, "threads": args.threads})}
        if ref is not None:
            scale = max(1.0, outs["reference"].abs().max().item())
            row["max_abs_diff"] = (outs["ours"] - outs["reference"]).abs().max().item()
            row["agree"] = row["max_abs_diff"] <= AGREEMENT * scale
            row["speedup"] = row["reference"]["median_s"] / row["ours"]["median_s"]
        rows.append(row)
    return rows


def bench_gpu(spec: dict, sizes: list[int], args) -> list[dict]:
    ref, ours = build(spec)
    rows = []
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        models = {"ours": copy.deepcopy(ours).to("cuda", dtype)}
        if ref is not None:
            models = {"reference": copy.deepcopy(ref).to("cuda", dtype), **models}
        for size in sizes:
            x = torch.rand(1, model_channels(ours), size, size, generator=torch.Generator().manual_seed(size))
            xg = x.to("cuda", dtype)
            with torch.inference_mode():
                expected = ours(x)  # float32 on the CPU
                calls = {k: (lambda m=m: m(xg)) for k, m in models.items()}
                times = interleaved(calls, args.warmup, args.repeats, torch.cuda.synchronize)
                row = {"dtype": str(dtype).removeprefix("torch."), "size": size}
                for k, call in calls.items():
                    torch.cuda.reset_peak_memory_stats()
                    out = call().float().cpu()
                    row[k] = {"median_s": statistics.median(times[k]),
                              "peak_alloc_mib": torch.cuda.max_memory_allocated() / 2**20,
                              "finite": bool(torch.isfinite(out).all()), "std": out.std().item(),
                              "max_abs_diff_vs_cpu_fp32": (out - expected).abs().max().item()}
                if ref is not None:
                    row["speedup"] = row["reference"]["median_s"] / row["ours"]["median_s"]
            rows.append(row)
    return rows


def print_cpu(title: str, rows: list[dict]) -> None:
    print(f"\n### {title}\n")
    print("| input | impl | median ms | min ms | GFLOP/s | % of peak | peak RSS MiB (rise in calls) | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for k in ("reference", "ours"):
            if k not in r:
                continue
            m = r[k]
            rss = f"{m['rss']['peak_mib']:.0f} (+{m['rss']['delta_mib']:.0f})" if m["rss"] else "n/a"
            extra = f"{r['speedup']:.2f}x | {r['max_abs_diff']:.1e}" if k == "ours" and "speedup" in r else " | "
            print(f"| {r['size']}x{r['size']} | {k} | {m['median_s'] * 1e3:.0f} | {m['min_s'] * 1e3:.0f} | "
                  f"{m['gflops']:.1f} | {100 * m['gflops'] / r['peak_gflops']:.0f}% | {rss} | {extra} |")
    r = rows[0]
    print("\nconv work: " + ", ".join(f"{x['size']}x{x['size']}: {x['gmac']:.1f} GMAC" for x in rows))
    print(f"peak {r['peak_gflops']:.0f} GFLOP/s = {r['peak_how']}; load average during runs: "
          + "; ".join(x["load"] for x in rows))


def print_gpu(title: str, rows: list[dict]) -> None:
    print(f"\n### GPU ({torch.cuda.get_device_name()}): {title}\n")
    print("| dtype | input | impl | median ms | peak alloc MiB | finite | output std | max abs diff vs CPU fp32 | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for k in ("reference", "ours"):
            if k not in r:
                continue
            m = r[k]
            speedup = f"{r['speedup']:.2f}x" if k == "ours" and "speedup" in r else ""
            print(f"| {r['dtype']} | {r['size']}x{r['size']} | {k} | {m['median_s'] * 1e3:.2f} | "
                  f"{m['peak_alloc_mib']:.0f} | {m['finite']} | {m['std']:.3f} | "
                  f"{m['max_abs_diff_vs_cpu_fp32']:.1e} | {speedup} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="square input sizes (LR pixels)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls of each model first")
    p.add_argument("--repeats", type=int, default=7, help="timed calls of each model, interleaved")
    p.add_argument("--model", action="append", default=[], help="also benchmark this model file (repeatable)")
    p.add_argument("--models-only", action="store_true", help="only the --model files, not the random-weight 23x64 net")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--clock-ghz", type=float, help="CPU clock for the peak (default: /proc/cpuinfo 'cpu MHz')")
    p.add_argument("--fma-units", type=int, default=2, help="FMA pipes per core (2 on Haswell+ and Zen 2+)")
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU columns even when CUDA is available")
    p.add_argument("--json", help="also write all numbers to this file")
    p.add_argument("--peak-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.peak_worker:
        print(json.dumps(peak_rss_worker(json.loads(args.peak_worker))))
        return 0

    specs = [] if args.models_only else [("x4 RRDBNet 23x64, random weights", {"seed": args.seed})]
    specs += [(f"model file {m}", {"model": m}) for m in args.model]
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads; sgemm 2048^3: {sgemm_gflops():.0f} GFLOP/s; load average {load_average()}")
    results, failed = {}, False
    for title, spec in specs:
        rows = bench_cpu(spec, args.sizes, args)
        print_cpu(f"CPU: {title}", rows)
        results[title] = {"cpu": rows}
        bad = [r["size"] for r in rows if r.get("agree") is False]
        if bad:
            print(f"\nFAILED: outputs differ by more than {AGREEMENT} of the range at sizes {bad}")
            failed = True
        if torch.cuda.is_available() and not args.no_gpu:
            gpu = bench_gpu(spec, args.sizes, args)
            print_gpu(title, gpu)
            results[title]["gpu"] = gpu
            if not all(r[k]["finite"] for r in gpu for k in ("reference", "ours") if k in r):
                print("\nFAILED: non-finite GPU output")
                failed = True
    if args.json:
        atomic_write(args.json, lambda f: f.write(json.dumps(results, indent=1).encode()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
