"""What GAN fine-tuning bought and what it cost: sharpness and grid artifacts beside PSNR.

    python benchmarks/gan_texture.py default_x4 gan_x4 [--data ../shared/data/benchmark/Set5 ...]
    python benchmarks/gan_texture.py photo_x4 photo_gan_x4 --degrade jpeg:40

For each model and image folder (HR images; LR made by MATLAB-bicubic downscaling, then degraded
as `test.py --degrade SPEC` does it, with the same per-image seeds), on the Y channel of the output:
- PSNR (dB, `scale` pixels shaved, on 8-bit outputs: `test.py`'s);
- sharpness: the standard deviation of the high-pass residual (Y minus its 3x3 box blur) relative
  to the HR image's. A PSNR model scores well below 1 (blur); texture brings it toward 1;
- grid: the high-pass residual averaged per sub-pixel phase (row and column modulo the scale),
  the standard deviation of those phase means relative to the residual's. Natural images and
  PSNR models score about 0.02; a visible pixel-shuffle checkerboard 0.3-0.4;
- blocks: the mean absolute step between neighbouring pixels across the borders of the LR's 8x8
  JPEG blocks (every 8 x scale output pixels) over the mean step elsewhere. The HR image scores
  about 1; a model that sharpens JPEG blocks into steps scores above it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torch_sr.model_files.model_file import load_model  # noqa: E402
from torch_sr.data.degradation_specs import EvalDegradation, parse_degradation  # noqa: E402
from torch_sr.data.imresize import imresize  # noqa: E402
from torch_sr.inference.image_io import read_image  # noqa: E402
from torch_sr.metrics.psnr import calculate_psnr  # noqa: E402
from torch_sr.color import rgb_to_y  # noqa: E402
from torch_sr.weights import resolve_model  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "benchmark"
IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"}


def high_pass(y: torch.Tensor, margin: int) -> torch.Tensor:
    """Y minus its 3x3 box blur, without `margin` pixels at each edge."""
    blurred = F.avg_pool2d(y[None, None], 3, 1, 1, count_include_pad=False)[0, 0]
    return (y - blurred)[margin:-margin, margin:-margin]


def grid_score(y: torch.Tensor, scale: int, margin: int) -> float:
    """Std of the high-pass residual's per-phase means over its std (see the module doc)."""
    hp = high_pass(y, margin)
    h, w = hp.shape[0] // scale * scale, hp.shape[1] // scale * scale
    phases = hp[:h, :w].reshape(h // scale, scale, w // scale, scale).mean(dim=(0, 2))
    return float(phases.std() / hp.std())


def blocks_score(y: torch.Tensor, period: int) -> float:
    """Mean |step| across the borders of `period`-pixel blocks over the mean |step| elsewhere."""
    steps = torch.cat([(y[:, 1:] - y[:, :-1]).abs().flatten(), (y[1:] - y[:-1]).t().abs().flatten()])
    across_x = (torch.arange(1, y.shape[1]) % period == 0).expand(y.shape[0], -1).flatten()
    across_y = (torch.arange(1, y.shape[0]) % period == 0).expand(y.shape[1], -1).flatten()
    border = torch.cat([across_x, across_y])
    return float(steps[border].mean() / steps[~border].mean())


def measure(model: torch.nn.Module, folder: Path, degradation: EvalDegradation | None = None) -> dict[str, float]:
    """Mean PSNR, sharpness, grid and blocks scores of `model` over the images of `folder` (LR degraded as
    `test.py --degrade` does when `degradation` is given)."""
    scale = model.info.scale
    psnr, sharp, grid, grid_hr, blocks, blocks_hr = [], [], [], [], [], []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        hr = read_image(path).array
        if hr.dtype != np.uint8:
            raise SystemExit(f"{path}: {hr.dtype} pixels; this measure takes 8-bit images")
        gray = hr.ndim == 2 or hr.shape[2] == 1
        if gray:
            hr = np.repeat(hr.reshape(hr.shape[0], hr.shape[1], 1), 3, axis=2)
        hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale, :3]
        lr = degradation.apply(hr, scale, path.stem) if degradation else imresize(hr, scale=1 / scale)
        with torch.inference_mode():
            x = torch.from_numpy(lr.copy()).permute(2, 0, 1)[None].float() / 255
            sr = (model(x)[0].clamp(0, 1) * 255).round().permute(1, 2, 0).numpy().astype(np.uint8)
        y_sr, y_hr = (torch.from_numpy(rgb_to_y(img)).float() for img in (sr, hr))  # on [16, 235]
        psnr.append(calculate_psnr(sr, hr[:, :, :1] if gray else hr, scale))  # test.py's PSNR, grey files included
        margin = 2 * scale
        sharp.append(float(high_pass(y_sr, margin).std() / high_pass(y_hr, margin).std()))
        grid.append(grid_score(y_sr, scale, margin))
        grid_hr.append(grid_score(y_hr, scale, margin))
        blocks.append(blocks_score(y_sr, 8 * scale))
        blocks_hr.append(blocks_score(y_hr, 8 * scale))
    if not psnr:
        raise SystemExit(f"{folder}: no images")
    means = {"psnr": psnr, "sharpness": sharp, "grid": grid, "grid_hr": grid_hr, "blocks": blocks, "blocks_hr": blocks_hr}
    return {k: float(np.mean(v)) for k, v in means.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="model files or shipped model names")
    p.add_argument("--data", nargs="+", type=Path, default=[SHARED / "Set5", SHARED / "Set14"], help="HR image folders")
    p.add_argument("--degrade", metavar="SPEC", help="degrade the LR as test.py --degrade SPEC does (e.g. jpeg:40)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    degradation = parse_degradation(args.degrade) if args.degrade else None
    lr = f" ({degradation.text})" if degradation else ""
    print("| model | data | PSNR-Y (dB) | sharpness | grid | blocks |\n|---|---|---|---|---|---|")
    hr = {}
    for spec in args.models:
        model = load_model(resolve_model(spec)).eval()
        for folder in args.data:
            m = measure(model, folder, degradation)
            hr[folder.name] = m
            print(
                f"| {Path(spec).stem} | {folder.name}{lr} | {m['psnr']:.2f} | {m['sharpness']:.3f} | {m['grid']:.3f} "
                f"| {m['blocks']:.3f} |"
            )
    for name, m in hr.items():
        print(f"| HR | {name} | | 1 | {m['grid_hr']:.3f} | {m['blocks_hr']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
