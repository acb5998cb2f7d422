"""What speeds up CPU inference of the x4 RRDBNet 23x64, measured: one variant per row, same weights.

    python benchmarks/bench_cpu_variants.py [--sizes 64] [--threads 2] [--compile]

Variants of the direct (oneDNN) computation: channels-last tensors; a preallocated feature buffer
per dense block instead of growing concatenations (each conv's output copied once into its slice);
TorchScript freezing with `torch.jit.optimize_for_inference` (oneDNN weight prepacking and
conv+activation fusion); `torch.compile` (inductor with freezing; slow to compile, so only with
`--compile`). Then our Winograd path (`RRDBNet.optimize_for_inference()`). Calls are interleaved
(ABAB...) and every variant must agree with the reference to 1e-4 of the output range.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import AGREEMENT, interleaved, load_average, random_pair  # noqa: E402


def preallocated_forward(ref: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The reference's function with one feature buffer per dense block: no re-copying of earlier features."""

    def rdb(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        c, g = x.shape[1], block.conv1.out_channels
        buf = x.new_empty((x.shape[0], c + 4 * g, *x.shape[2:]))
        buf[:, :c] = x
        for j in range(1, 5):
            conv = getattr(block, f"conv{j}")
            buf[:, c + (j - 1) * g : c + j * g] = F.leaky_relu_(conv(buf[:, : c + (j - 1) * g]), 0.2)
        return block.conv5(buf).mul_(0.2).add_(x)

    def forward(x: torch.Tensor) -> torch.Tensor:
        feat = ref.conv_first(x)
        out = feat
        for rrdb in ref.body:
            inner = rdb(rrdb.rdb3, rdb(rrdb.rdb2, rdb(rrdb.rdb1, out)))
            out = inner.mul_(0.2).add_(out)
        feat = feat + ref.conv_body(out)
        feat = F.leaky_relu_(ref.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu_(ref.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return ref.conv_last(F.leaky_relu_(ref.conv_hr(feat), 0.2))

    return forward


def variants(ref: nn.Module, ours: nn.Module, x: torch.Tensor, compile_too: bool) -> dict[str, Callable[[], torch.Tensor]]:
    cl_model = _clone(ref).to(memory_format=torch.channels_last)
    cl_x = x.contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings():  # "deprecated, use torch.compile": both are measured here
        warnings.simplefilter("ignore", FutureWarning)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(_clone(ref), x)))
    prealloc = preallocated_forward(ref)
    calls = {
        "reference (NCHW, torch.cat)": lambda: ref(x),
        "channels-last": lambda: cl_model(cl_x),
        "preallocated dense buffer": lambda: prealloc(x),
        "jit.freeze + optimize_for_inference": lambda: frozen(x),
    }
    if compile_too:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        compiled = torch.compile(_clone(ref))
        t = time.perf_counter()
        compiled(x)
        print(f"torch.compile: first call (compilation) {time.perf_counter() - t:.0f} s")
        calls["torch.compile (inductor, freezing)"] = lambda: compiled(x)
    calls["ours: Winograd (optimize_for_inference)"] = lambda: ours(x)
    return calls


def _clone(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compilation)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ref, ours = random_pair(0)
    failed = False
    for size in args.sizes:
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.inference_mode():
            calls = variants(ref, ours, x, args.compile)
            expected = ref(x)
            scale = max(1.0, expected.abs().max().item())
            diffs = {k: (c() - expected).abs().max().item() for k, c in calls.items()}
            times = interleaved(calls, args.warmup, args.repeats)
        base = statistics.median(times["reference (NCHW, torch.cat)"])
        print(f"\n{size}x{size}, {args.threads} threads, median of {args.repeats}; load average {load_average()}\n")
        print("| variant | median ms | vs reference | max abs diff |\n|---|---|---|---|")
        for k, ts in times.items():
            t = statistics.median(ts)
            failed |= diffs[k] > AGREEMENT * scale
            print(f"| {k} | {t * 1e3:.0f} | {base / t:.2f}x | {diffs[k]:.1e} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
