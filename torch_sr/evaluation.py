"""Scoring an upscaler on a benchmark set the way the papers do: used by `test.py` and by validation.

For every image of an `SREvalDataset`: upscale the LR, quantise to uint8 (the image a user would
save), and score PSNR/SSIM against the modcropped HR (Y channel by default, `crop_border` pixels
shaved); the bicubic baseline is MATLAB-bicubic upscaling of the same uint8 LR, scored the same way.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from torch_sr.data.imresize import imresize
from torch_sr.errors import TorchSRError
from torch_sr.inference.image_io import write_image
from torch_sr.metrics.inputs import to_uint8
from torch_sr.metrics.psnr import calculate_psnr
from torch_sr.metrics.ssim import calculate_ssim

Upscale = Callable[[torch.Tensor], torch.Tensor]
METRICS = ("psnr", "ssim", "lpips")


@dataclass
class ImageScore:
    """One image's scores; `None` where a column was not computed."""

    name: str
    psnr: float | None = None
    ssim: float | None = None
    lpips: float | None = None
    bicubic_psnr: float | None = None
    bicubic_ssim: float | None = None
    bicubic_lpips: float | None = None


@dataclass
class ImageOutputs:
    """The uint8 `(C, H, W)` images behind one score, handed to `evaluate`'s `on_image` callback."""

    name: str
    lr: torch.Tensor
    hr: torch.Tensor
    bicubic: torch.Tensor | None
    sr: torch.Tensor | None
    score: ImageScore


@dataclass
class EvalResult:
    """Per-image and mean scores of one dataset; `str()` renders the table `test.py` prints."""

    dataset: str
    scale: int
    crop_border: int
    y_channel: bool
    images: list[ImageScore] = field(default_factory=list)
    seconds: float = 0.0
    degradation: str | None = None  # the test-time LR degradation spec (`test.py --degrade`); None: clean bicubic

    def mean(self, column: str) -> float | None:
        """Mean of a column over the images (None when not computed; inf when an image scores inf)."""
        values = [getattr(s, column) for s in self.images]
        if not values or any(v is None for v in values):
            return None
        return sum(values) / len(values)

    @property
    def mean_psnr(self) -> float | None:
        return self.mean("psnr")

    @property
    def mean_ssim(self) -> float | None:
        return self.mean("ssim")

    @property
    def mean_bicubic_psnr(self) -> float | None:
        return self.mean("bicubic_psnr")

    @property
    def mean_bicubic_ssim(self) -> float | None:
        return self.mean("bicubic_ssim")

    def columns(self) -> list[str]:
        """Score columns present in this result, bicubic first."""
        names = [f"bicubic_{m}" for m in METRICS] + list(METRICS)
        return [c for c in names if self.images and self.mean(c) is not None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: settings, means and per-image scores (absent columns left out; infinite PSNR as "inf")."""
        cols = self.columns()

        def num(v: float) -> float | str:
            return v if math.isfinite(v) else str(v)  # "inf", "-inf", "nan": JSON has no such numbers

        return {
            "dataset": self.dataset,
            "scale": self.scale,
            "crop_border": self.crop_border,
            "channel": "y" if self.y_channel else "rgb",
            "degradation": self.degradation or "none",
            "seconds": round(self.seconds, 3),
            "mean": {c: num(self.mean(c)) for c in cols},
            "images": [{"name": s.name, **{c: num(v) for c, v in asdict(s).items() if c in cols}} for s in self.images],
        }

    def title(self, timing: str | None = None) -> str:
        """First line of the tables: dataset, scale, channel, shave, image count and `timing` (default: seconds)."""
        channel = "Y (BT.601)" if self.y_channel else "RGB"
        lr = f" (LR: {self.degradation})" if self.degradation else ""
        return (
            f"{self.dataset}{lr} x{self.scale}: PSNR (dB) / SSIM on {channel}, {self.crop_border} px shaved, "
            f"{len(self.images)} images, {timing or f'{self.seconds:.1f} s'}"
        )

    def format_table(self) -> str:
        cols = self.columns()
        return _render_table(self.title(), self, [(HEADS[c], c, self) for c in cols])

    __str__ = format_table


HEADS = {
    "psnr": "PSNR",
    "ssim": "SSIM",
    "lpips": "LPIPS",
    "bicubic_psnr": "bicubic PSNR",
    "bicubic_ssim": "bicubic SSIM",
    "bicubic_lpips": "bicubic LPIPS",
}
FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "lpips": "{:.4f}"}


def _render_table(title: str, rows: EvalResult, columns: list[tuple[str, str, EvalResult]]) -> str:
    """Text table: one row per image of `rows` and a mean row; `columns` are (heading, column, result)."""
    fmt = [FORMATS[c.removeprefix("bicubic_")] for _, c, _ in columns]
    width = max([len("image")] + [len(s.name) for s in rows.images])
    colw = [max(len(head), 8) for head, _, _ in columns]
    lines = [title, "  ".join([f"{'image':<{width}}"] + [f"{h:>{w}}" for (h, _, _), w in zip(columns, colw)])]

    def row(label: str, values: list[float]) -> str:
        cells = [f.format(v) for f, v in zip(fmt, values)]
        return "  ".join([f"{label:<{width}}"] + [f"{cell:>{w}}" for cell, w in zip(cells, colw)])

    for i, s in enumerate(rows.images):
        lines.append(row(s.name, [getattr(r.images[i], c) for _, c, r in columns]))
    lines.append("-" * len(lines[1]))
    lines.append(row("mean", [r.mean(c) for _, c, r in columns]))
    return "\n".join(lines)


def comparison_table(labelled: Sequence[tuple[str, EvalResult]]) -> str:
    """One table for several models scored on the same images: the first result's bicubic columns,
    then each model's columns headed by its label (`"<label> PSNR"`), so models read side by side."""
    if not labelled:
        raise ValueError("comparison_table: no results")
    first = labelled[0][1]

    def scored_on(r: EvalResult) -> tuple:
        return [s.name for s in r.images], r.scale, r.crop_border, r.y_channel

    for label, r in labelled[1:]:
        if scored_on(r) != scored_on(first):
            raise ValueError(f"comparison_table: {label!r} was not scored on the same images and settings")
    columns = [(HEADS[c], c, first) for c in first.columns() if c.startswith("bicubic_")]
    for label, r in labelled:
        columns += [(f"{label} {HEADS[c]}", c, r) for c in r.columns() if not c.startswith("bicubic_")]
    timing = ", ".join(f"{label} {r.seconds:.1f} s" for label, r in labelled)
    return _render_table(first.title(timing), first, columns)


def _scores(
    out: torch.Tensor, hr: torch.Tensor, ref: torch.Tensor, crop_border: int, y_channel: bool, lpips: bool, name: str
) -> dict:
    """PSNR, SSIM (and LPIPS) of one image; an image the metrics cannot take (smaller than the border to
    shave, or than SSIM's window) is an error that names it."""
    try:
        scores = {
            "psnr": calculate_psnr(out, ref, crop_border, y_channel),
            "ssim": calculate_ssim(out, ref, crop_border, y_channel),
        }
    except TorchSRError as e:
        raise TorchSRError(f"{name}: {e}; remove the image or use a smaller --crop-border") from None
    if lpips:
        from torch_sr.metrics.lpips import calculate_lpips

        scores["lpips"] = calculate_lpips(out, hr, crop_border)  # the same sizes PSNR just took
    return scores


def evaluate(
    upscale: Upscale | None,
    dataset: Any,
    *,
    crop_border: int,
    y_channel: bool = True,
    with_bicubic: bool = True,
    save_dir: Path | None = None,
    progress: bool = False,
    name: str | None = None,
    lpips: bool = False,
    on_image: Callable[[ImageOutputs], None] | None = None,
) -> EvalResult:
    """Score `upscale` on every item of `dataset` (items with `lr`, `hr`, `name`, optionally `gray`).

    `upscale` maps an LR batch `(1, C, h, w)` float [0, 1] to `(1, C, H, W)`; None scores only the
    bicubic baseline. `save_dir` receives `<name>.png` of each SR image (of the bicubic image when
    `upscale` is None). `on_image` sees every image's uint8 tensors and scores (for figures).
    """
    if upscale is None and not with_bicubic:
        raise ValueError("evaluate: nothing to score without an upscaler and without the bicubic baseline")
    scale = int(dataset.scale)
    result = EvalResult(name or type(dataset).__name__, scale, crop_border, y_channel)
    degradation = getattr(dataset, "degradation", None)
    result.degradation = degradation.text if degradation is not None else None
    indices = range(len(dataset))
    if progress:
        from torch_sr.progress import progress_bar

        indices = progress_bar(iterable=indices, desc=result.dataset, unit="img", leave=False)  # terminals only
    start = time.perf_counter()
    for i in indices:
        item = dataset[i]
        lr, hr = to_uint8(item["lr"]), to_uint8(item["hr"])
        # Grayscale files are scored on their gray values (see torch_sr.metrics.inputs.prepare_pair).
        ref = hr[:1] if y_channel and item.get("gray") else hr
        score = ImageScore(item["name"])
        bicubic = sr = None
        if with_bicubic or upscale is None:
            bicubic = imresize(lr, scale)
            for k, v in _scores(bicubic, hr, ref, crop_border, y_channel, lpips, item["name"]).items():
                setattr(score, f"bicubic_{k}", v)
        if upscale is not None:
            with torch.inference_mode():
                out = upscale(item["lr"][None])
            if tuple(out.shape[-3:]) != tuple(hr.shape):
                raise TorchSRError(
                    f"{item['name']}: the model's output is {tuple(out.shape[-3:])} (C, H, W) but the HR image is "
                    f"{tuple(hr.shape)}; does the model upscale x{scale} with {hr.shape[0]} channels?"
                )
            sr = to_uint8(out[0].float().cpu())
            for k, v in _scores(sr, hr, ref, crop_border, y_channel, lpips, item["name"]).items():
                setattr(score, k, v)
        if save_dir is not None:
            saved = sr if sr is not None else bicubic
            write_image(Path(save_dir) / f"{item['name']}.png", saved.permute(1, 2, 0).numpy())
        if on_image is not None:
            on_image(ImageOutputs(item["name"], lr, hr, bicubic, sr, score))
        result.images.append(score)
    result.seconds = time.perf_counter() - start
    return result
