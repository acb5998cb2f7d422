"""Side-by-side figures LR | bicubic | SR (one panel per model) | HR with zoomed crops, drawn with PIL.

The zoomed region is the crop of the HR image with the most detail (gradient energy), where
upscalers differ most; it is outlined on the full-size panels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from torch_sr.inference.image_io import write_image

PANEL_WIDTH = 320  # pixels per panel in the figure
LABEL_HEIGHT = 18
GAP = 6
OUTLINE = (255, 40, 40)


def detail_crop(hr: torch.Tensor, size: int) -> tuple[int, int]:
    """Top-left (y, x) of the `size` x `size` window of `hr` (uint8 CHW) with the most gradient energy."""
    g = hr.float().mean(0)
    energy = torch.zeros_like(g)
    energy[:, 1:] += (g[:, 1:] - g[:, :-1]).abs()
    energy[1:, :] += (g[1:, :] - g[:-1, :]).abs()
    stride = max(1, size // 4)
    pooled = F.avg_pool2d(energy[None, None], size, stride=stride)[0, 0]
    k = int(pooled.argmax())
    return (k // pooled.shape[1]) * stride, (k % pooled.shape[1]) * stride


def _rgb(img: torch.Tensor) -> np.ndarray:
    arr = img.permute(1, 2, 0).numpy()
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def _fit(draw, text: str, width: int) -> str:
    """`text`, shortened in the middle ("abc...xyz") to fit `width` pixels: a long model name keeps its
    start and the scores at its end."""
    if draw.textlength(text) <= width:
        return text
    for keep in range(len(text) - 1, 1, -1):
        short = f"{text[: keep // 2]}...{text[len(text) - (keep - keep // 2):]}"
        if draw.textlength(short) <= width:
            return short
    return "..."


def comparison_figure(
    panels: list[tuple[str, torch.Tensor]], hr_size: tuple[int, int], title: str = ""
) -> np.ndarray:
    """Figure (uint8 HWC) of labelled panels, each image shown whole and as a zoomed crop.

    `panels`: (label, uint8 CHW image), any number of them, left to right; images smaller than
    `hr_size` (the LR) are enlarged with nearest neighbour so every panel shows the same region at
    the same size. Labels too wide for a panel are shortened in the middle.
    """
    from PIL import Image, ImageDraw

    h, w = hr_size
    crop = max(8, min(h, w) // 5)
    y0, x0 = detail_crop(panels[-1][1], crop)
    show_h = max(1, round(h * PANEL_WIDTH / w))
    full_panels, zooms = [], []
    for _, img in panels:
        if tuple(img.shape[-2:]) != (h, w):  # LR: nearest-neighbour to HR size, pixels stay visible
            img = F.interpolate(img[None].float(), size=(h, w), mode="nearest")[0].to(torch.uint8)
        pil = Image.fromarray(np.ascontiguousarray(_rgb(img)))
        zooms.append(pil.crop((x0, y0, x0 + crop, y0 + crop)).resize((PANEL_WIDTH, PANEL_WIDTH), Image.NEAREST))
        full = pil.resize((PANEL_WIDTH, show_h), Image.LANCZOS)
        s = PANEL_WIDTH / w
        ImageDraw.Draw(full).rectangle(
            [x0 * s, y0 * s, (x0 + crop) * s - 1, (y0 + crop) * s - 1], outline=OUTLINE, width=2
        )
        full_panels.append(full)
    top = LABEL_HEIGHT if title else 0
    width = len(panels) * PANEL_WIDTH + (len(panels) + 1) * GAP
    height = top + LABEL_HEIGHT + show_h + GAP + PANEL_WIDTH + GAP
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((GAP, 3), title, fill=(0, 0, 0))
    for k, ((label, _), full, zoom) in enumerate(zip(panels, full_panels, zooms)):
        x = GAP + k * (PANEL_WIDTH + GAP)
        draw.text((x, top + 3), _fit(draw, label, PANEL_WIDTH - 2), fill=(0, 0, 0))
        canvas.paste(full, (x, top + LABEL_HEIGHT))
        canvas.paste(zoom, (x, top + LABEL_HEIGHT + show_h + GAP))
    return np.asarray(canvas)


def save_comparison(path: str | Path, panels: list[tuple[str, torch.Tensor]], hr_size: tuple[int, int], title: str = "") -> Path:
    """Draw `comparison_figure` and write it atomically as PNG."""
    return write_image(path, comparison_figure(panels, hr_size, title))
