"""bf16 against float32 inference on the CPU: time and PSNR-Y of whole benchmark images, per model.

    python benchmarks/bench_cpu_bf16.py                                  # the shipped models, Set5 + Set14, 1 thread
    python benchmarks/bench_cpu_bf16.py --model my.pth --sets ../shared/data/benchmark/Set5 --threads 2

`Upscaler(precision="bf16")` autocasts to bfloat16 on a CPU with native bfloat16 (avx512_bf16 or
amx_bf16); this measures what that costs in quality and gains in time. Each image's LR is its
MATLAB-bicubic x4 downscale; both precisions upscale it in turn (interleaved, untiled), timed in
process CPU time (other jobs on a shared machine disturb it less than wall time); PSNR-Y with 4
pixels shaved, as test.py scores. Also printed: the largest difference between the two outputs in
8-bit levels.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torch_sr.data.image_files import list_images  # noqa: E402
from torch_sr.data.imresize import imresize  # noqa: E402
from torch_sr.device import cpu_has_native_bf16  # noqa: E402
from torch_sr.inference.image_io import read_image  # noqa: E402
from torch_sr.inference.upscaler import Upscaler  # noqa: E402
from torch_sr.metrics.psnr import calculate_psnr  # noqa: E402
from torch_sr.model_files.model_file import load_model  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "benchmark"


def compare(model_path: str, images: list[Path]) -> dict:
    """Seconds, mean PSNR-Y per precision and the largest output difference over `images`."""
    model = load_model(model_path)
    scale = model.info.scale
    upscalers = {p: Upscaler(model, "cpu", p, tile=None, force_autocast=True) for p in ("fp32", "bf16")}
    seconds = {p: 0.0 for p in upscalers}
    psnr = {p: [] for p in upscalers}
    max_diff = 0
    for path in images:
        hr = read_image(path).array
        hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
        lr = imresize(hr, 1 / scale)
        out = {}
        for name, up in upscalers.items():
            start = time.process_time()
            out[name] = up.upscale_array(lr)
            seconds[name] += time.process_time() - start
            psnr[name].append(calculate_psnr(out[name], hr, crop_border=scale, y_channel=True))
        max_diff = max(max_diff, int(np.abs(out["fp32"].astype(int) - out["bf16"].astype(int)).max()))
    return {"seconds": seconds, "psnr": {p: float(np.mean(v)) for p, v in psnr.items()}, "max_diff": max_diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="model file (repeatable; default: the shipped x4 models)")
    p.add_argument("--sets", nargs="+", default=[str(SHARED / "Set5"), str(SHARED / "Set14")], help="HR image folders")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models = args.model or [str(ROOT / "torch_sr" / "weights" / f"{n}.pth") for n in ("default_x4", "photo_x4")]
    images = [f for folder in args.sets for f in list_images(Path(folder))]
    if not images:
        sys.exit(f"no images in {', '.join(args.sets)}: give --sets with HR image folders")
    print(f"torch {torch.__version__}, {args.threads} thread(s), native bfloat16: {cpu_has_native_bf16()}, "
          f"{len(images)} images; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| model | float32 CPU s | bf16 CPU s | speed-up | PSNR-Y float32 | PSNR-Y bf16 | max diff (8-bit) |")
    print("|---|---|---|---|---|---|---|")
    for path in models:
        r = compare(path, images)
        s, q = r["seconds"], r["psnr"]
        print(f"| {Path(path).name} | {s['fp32']:.1f} | {s['bf16']:.1f} | {s['fp32'] / s['bf16']:.2f}x "
              f"| {q['fp32']:.3f} | {q['bf16']:.3f} | {r['max_diff']} |", flush=True)


if __name__ == "__main__":
    main()
