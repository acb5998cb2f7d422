"""Where the time of one x4 RRDBNet 23x64 call goes (torch.profiler), for the reference and for ours.

    python benchmarks/profile_inference.py [--size 64] [--threads 2]

Operators are grouped: convolutions on the low-resolution trunk, convolutions at the upsampled
resolutions, the dense blocks' concatenations, nearest upsampling, element-wise ops, and for our
path its Winograd GEMMs (`bmm` of the 36 positions), the small transform products and the copies
that gather tiles. Shares are of the profiled operator time (self CPU time).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import random_pair  # noqa: E402

from torch_sr.archs import winograd  # noqa: E402


def category(name: str, shapes: list, lr_size: int) -> str:
    if name in ("aten::mkldnn_convolution", "aten::_convolution", "aten::thnn_conv2d"):
        return "conv, LR trunk" if shapes and shapes[0] and shapes[0][-1] <= lr_size + 2 else "conv, upsampled"
    if name == "aten::bmm":  # (36, Cout, Cin) weights, or the (6, 6, 6) / (4, 4, 6) one-axis transforms
        gemm = shapes and shapes[0] and shapes[0][0] == winograd.POSITIONS
        return "Winograd GEMMs (bmm)" if gemm else "Winograd transforms (small products)"
    if name == "aten::mm":
        return "Winograd transforms (small products)"
    if name == "aten::copy_":
        return "copies (tile gathers, padding)"
    if name == "aten::cat":
        return "concatenation (torch.cat)"
    if name.startswith("aten::upsample"):
        return "nearest upsampling"
    if name in ("aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::leaky_relu", "aten::leaky_relu_"):
        return "element-wise (add, mul, LeakyReLU)"
    return "other"


def breakdown(model: torch.nn.Module, size: int) -> dict[str, float]:
    x = torch.rand(1, 3, size, size)
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            model(x)
    totals: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages(group_by_input_shape=True):
        if ev.self_cpu_time_total > 0:
            totals[category(ev.key, ev.input_shapes, size)] += ev.self_cpu_time_total / 1e6
    return dict(totals)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ref, ours = random_pair(0)
    for title, model in (("reference", ref), ("ours", ours)):
        totals = breakdown(model, args.size)
        whole = sum(totals.values())
        print(f"\n{title}, {args.size}x{args.size}, {args.threads} threads: {whole:.3f} s of operator time\n")
        print("| part | s | share |\n|---|---|---|")
        for name, t in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"| {name} | {t:.3f} | {100 * t / whole:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
