"""ONNX Runtime's CPU time against ours (PyTorch, as `Upscaler` runs the model), for the shipped models.

    python benchmarks/bench_onnx.py                                  # shipped models, 64/128/256, 1 thread
    python benchmarks/bench_onnx.py --models default_x4 --sizes 64 128 --threads 2 --repeats 9
    python benchmarks/bench_onnx.py --rrdb                           # also a random x4 RRDBNet 23x64 (64 only)

Each model is exported with `torch_sr.deploy.onnx.export_onnx` (float32, opset 17) and loaded in
an ONNX Runtime session (CPU provider, all graph optimisations, `--threads` intra-op threads, the
same count torch gets). The two are timed on the same random (1, 3, S, S) input, interleaved
call by call (ours then ORT, then ORT then ours, ...) so that load from other processes hits both
alike; after `--warmup` calls each, `--repeats` rounds. Reported: the median time of each, and
the median over rounds of ORT time / our time (< 1: ONNX Runtime is faster). The outputs must
agree to 1e-4.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torch_sr.archs.rrdbnet import RRDBNet  # noqa: E402
from torch_sr.model_files.model_file import load_model  # noqa: E402
from torch_sr.deploy.onnx import export_onnx  # noqa: E402
from torch_sr.weights import MODELS, model_path  # noqa: E402

AGREEMENT = 1e-4


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def compare(name: str, model: torch.nn.Module, sizes: list[int], args: argparse.Namespace, folder: Path) -> list[dict]:
    if hasattr(model, "optimize_for_inference"):
        model.optimize_for_inference()  # ours as `Upscaler` runs it (RRDBNet: the Winograd path)
    path = export_onnx(model, folder / f"{name}.onnx")
    sess = session(path, args.threads)
    rows = []
    for size in sizes:
        x = torch.rand(1, model.info.in_channels, size, size, generator=torch.Generator().manual_seed(size))
        feed = {"input": x.numpy()}

        def ours():
            with torch.inference_mode():
                return model(x)

        def theirs():
            return sess.run(None, feed)[0]

        for _ in range(args.warmup):
            ours(), theirs()
        t_ours, t_ort, ratios = [], [], []
        for r in range(args.repeats):
            first, second = (ours, theirs) if r % 2 == 0 else (theirs, ours)
            a, out_a = timed(first)
            b, out_b = timed(second)
            (t, y), (u, z) = ((a, out_a), (b, out_b)) if r % 2 == 0 else ((b, out_b), (a, out_a))
            t_ours.append(t)
            t_ort.append(u)
            ratios.append(u / t)
        diff = float(np.abs(np.asarray(z) - y.numpy()).max())
        if diff > AGREEMENT:
            raise SystemExit(f"{name} at {size}: ONNX Runtime and PyTorch differ by {diff:.2e}")
        rows.append(
            dict(model=name, size=size, ours=statistics.median(t_ours), ort=statistics.median(t_ort),
                 ratio=statistics.median(ratios), low=min(ratios), high=max(ratios), diff=diff)
        )
        r = rows[-1]
        print(f"{name:>12} {size:>4}: ours {r['ours']:.3f} s, ORT {r['ort']:.3f} s, ORT/ours {r['ratio']:.2f} "
              f"({r['low']:.2f}-{r['high']:.2f}), max diff {diff:.1e}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=list(MODELS), help="shipped models (default: all; none: only --rrdb)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="input sides (default: 64 128 256)")
    p.add_argument("--rrdb", action="store_true", help="also a random x4 RRDBNet 23x64 (ESRGAN), at 64 only")
    p.add_argument("--threads", type=int, default=1, help="threads for both (default: 1)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} thread(s), "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows += compare(name, load_model(model_path(name)).eval(), args.sizes, args, Path(tmp))
        if args.rrdb:
            torch.manual_seed(0)
            rows += compare("rrdbnet_23x64", RRDBNet().eval(), [64], args, Path(tmp))
    print("\n| model | input | ours (s) | ONNX Runtime (s) | ORT / ours (min-max over rounds) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['size']}x{r['size']} | {r['ours']:.3f} | {r['ort']:.3f} | "
              f"{r['ratio']:.2f} ({r['low']:.2f}-{r['high']:.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
