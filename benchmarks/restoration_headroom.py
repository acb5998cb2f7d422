"""How far a restoration model is from a PSNR target, measured on the LR grid it works on.

    python benchmarks/restoration_headroom.py photo_x4 -d ../shared/data/benchmark/Set14 --degrade jpeg:40 --target 25.53

Why: photo_x4 stops 0.26 dB short of its Set14 `jpeg:40` floor whatever it is trained with
(torch_sr/weights/photo_x4.md). This says how much better a restorer would have to be. Per image:
- the degraded LR, and the model's output downscaled back (MATLAB bicubic), both scored against the
  clean LR: how much of the degradation the model removes on the LR grid;
- the proxy of a better restorer: LR images whose error is the model's own shrunk by a factor `a`
  (clean + a * (restored - clean)), upscaled by the clean-input model (`--reference`) and scored
  against HR as `test.py` scores (PSNR-Y, scale pixels shaved; grayscale files on their gray values).
At a = 1 the cascade scores as the model itself (printed beside it, as a check of the proxy); the rows
in between give, by linear interpolation, the LR-level PSNR a restorer needs for `--target`.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from torch_sr.archs.description import generator_info
from torch_sr.data.catalogue import resolve_images
from torch_sr.data.datasets import SREvalDataset
from torch_sr.data.degradation_specs import parse_degradation
from torch_sr.data.imresize import imresize
from torch_sr.metrics.psnr import calculate_psnr
from torch_sr.model_files.model_file import load_model


def _run(model: torch.nn.Module, lr: np.ndarray) -> np.ndarray:
    """uint8 HWC in, uint8 HWC out (rounded as a saved image)."""
    t = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        out = model(t)[0].clamp(0, 1)
    return (out * 255).round().byte().permute(1, 2, 0).numpy()


def _uint8(t: torch.Tensor) -> np.ndarray:
    return (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def _score(img: np.ndarray, ref: np.ndarray, gray: bool, crop: int) -> float:
    return calculate_psnr(img, ref[..., :1] if gray else ref, crop)  # gray files: as test.py scores them


@dataclass
class Headroom:
    """Means over the images (PSNR-Y, dB) of what `measure` scores."""

    images: int
    degraded_lr: float  # the degraded LR against the clean LR
    restored_lr: float  # the model's output downscaled back, against the clean LR
    model_sr: float  # the model's output against HR, as test.py scores it
    proxy: list[tuple[float, float, float]]  # (a, LR PSNR, the reference's SR PSNR), LR PSNR ascending

    def lr_needed(self, target: float) -> float | None:
        """The LR-level PSNR at which the proxy reaches `target` dB on HR; None outside the rows' range."""
        lr, sr = [row[1] for row in self.proxy], [row[2] for row in self.proxy]
        if len(sr) < 2 or not min(sr) <= target <= max(sr):
            return None
        return float(np.interp(target, sr, lr))


def measure(model: torch.nn.Module, reference: torch.nn.Module, paths: list[Path], degrade: str,
            factors: list[float], on_image: Callable[[str, float, float, float], None] | None = None) -> Headroom:
    """Score `model` on the images at `paths` degraded by the `test.py --degrade` spec `degrade`."""
    scale = generator_info(model).scale
    clean_set = SREvalDataset(paths, scale)
    degraded_set = SREvalDataset(paths, scale, degradation=parse_degradation(degrade))
    degraded, restored_lr, model_sr = [], [], []
    proxy: dict[float, list[tuple[float, float]]] = {a: [] for a in factors}
    for clean_item, item in zip(clean_set, degraded_set):
        hr, clean, lr, gray = _uint8(item["hr"]), _uint8(clean_item["lr"]), _uint8(item["lr"]), item["gray"]
        sr = _run(model, lr)
        restored = imresize(sr, 1 / scale)
        degraded.append(_score(lr, clean, gray, 1))
        restored_lr.append(_score(restored, clean, gray, 1))
        model_sr.append(_score(sr, hr, gray, scale))
        error = restored.astype(np.float64) - clean
        for a in factors:
            shrunk = np.clip(np.rint(clean + a * error), 0, 255).astype(np.uint8)
            proxy[a].append((_score(shrunk, clean, gray, 1), _score(_run(reference, shrunk), hr, gray, scale)))
        if on_image is not None:
            on_image(item["name"], degraded[-1], restored_lr[-1], model_sr[-1])
    rows = [(a, float(np.mean([v[0] for v in proxy[a]])), float(np.mean([v[1] for v in proxy[a]]))) for a in factors]
    rows.sort(key=lambda row: row[1])
    return Headroom(len(paths), float(np.mean(degraded)), float(np.mean(restored_lr)), float(np.mean(model_sr)), rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the restoration model (file or shipped name)")
    p.add_argument("-d", "--dataset", required=True, help="a folder of HR images, or set5/set14 under $TORCH_SR_DATA")
    p.add_argument("--degrade", default="jpeg:40", help="a test.py --degrade spec (default jpeg:40)")
    p.add_argument("--reference", default="default_x4", help="the clean-input model of the cascade (default default_x4)")
    p.add_argument("--shrink", default="1,0.85,0.7", help="the factors a, comma-separated (default 1,0.85,0.7)")
    p.add_argument("--target", type=float, help="SR PSNR-Y to reach: prints the LR-level PSNR the proxy needs")
    args = p.parse_args()
    torch.set_num_threads(1)
    paths = resolve_images(args.dataset, "test", download=False)
    result = measure(load_model(args.model).eval(), load_model(args.reference).eval(), paths, args.degrade,
                     [float(a) for a in args.shrink.split(",")],
                     lambda name, lr, restored, sr: print(f"{name:>14}  LR {lr:6.2f} -> {restored:6.2f}  SR {sr:6.2f}"))
    print(f"\n{args.model} under {args.degrade}, {result.images} images (PSNR-Y, dB, means over images):")
    for label, value in (("degraded LR", result.degraded_lr), ("restored LR", result.restored_lr), ("model SR", result.model_sr)):
        print(f"  {label:<12} {value:6.2f}")
    print(f"  cascade proxy (LR error x a, then {args.reference}):")
    for a, lr, sr in result.proxy:
        print(f"    a = {a:<5g} LR {lr:6.2f}  SR {sr:6.2f}")
    if args.target is not None:
        needed = result.lr_needed(args.target)
        if needed is None:
            print(f"  SR {args.target:.2f} is outside the rows' range; widen --shrink")
        else:
            print(f"  SR {args.target:.2f} needs LR {needed:.2f} dB: {needed - result.degraded_lr:+.2f} dB over the degraded LR "
                  f"(the model: {result.restored_lr - result.degraded_lr:+.2f})")


if __name__ == "__main__":
    main()
