"""Validation during training: benchmark scores, the stage's image losses and sample images.

Scores come from `torch_sr.evaluation.evaluate` as `test.py` computes them: PSNR/SSIM on the Y
channel with `scale` pixels shaved, of the saved-as-uint8 output, beside the bicubic baseline.
The stage's image loss terms (content, perceptual, TV; weighted as in training, without the
adversarial term) are computed on the same outputs.

The best model of a stage is chosen by:
- PSNR stage: the highest validation PSNR (mean over the val datasets of their mean PSNR);
- GAN stage: the lowest weighted validation image loss (`L_percep + 1e-2 L_1` with ESRGAN's
  weights). PSNR rewards the blur the GAN stage exists to remove, and the adversarial term
  measures the discriminator of the moment rather than the images; the perceptual distance to
  the HR image on held-out data is what the stage optimises and stays comparable over the run.
  A stage without image loss weights falls back to PSNR.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from torch_sr.training.objective import Objective


@dataclass
class ValidationResult:
    """Scores by `<dataset>/<name>`, their means over the datasets, and sample images by `<dataset>/<image>`."""

    metrics: dict[str, float] = field(default_factory=dict)
    psnr: float = float("nan")
    image_loss: float | None = None
    samples: dict[str, torch.Tensor] = field(default_factory=dict)

    def summary(self) -> str:
        return " | ".join(f"{k} {v:.2f}" if k.endswith("psnr") else f"{k} {v:.4f}" for k, v in self.metrics.items())


def best_criterion(adversarial: bool, objective: Objective) -> str:
    """'psnr' (higher is better) or 'image_loss' (lower is better); see the module docstring."""
    return "image_loss" if adversarial and any(objective.image_weights.values()) else "psnr"


def improves(criterion: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value > best if criterion == "psnr" else value < best


@torch.no_grad()
def validate(
    model: nn.Module,
    val_sets: Mapping[str, Any],
    objective: Objective,
    device: torch.device,
    num_samples: int = 0,
    loss_tile: int | None = None,
) -> ValidationResult:
    """Score `model` (unwrapped) on each val set; the first set provides `num_samples` sample images.

    The model runs in automatically sized tiles and the image losses in tiles of at most
    `loss_tile` HR pixels a side (`tiled_image_terms`), so that validating large images needs no
    more memory than small ones beside the training state.
    """
    from torch_sr.evaluation import evaluate
    from torch_sr.inference.upscaler import Upscaler

    was_training = model.training
    upscale = Upscaler(model, device=device, tile="auto").upscale_tensor  # puts the model in eval mode
    weights = objective.image_weights
    result = ValidationResult()
    psnrs, losses = [], []
    try:
        for k, (name, dataset) in enumerate(val_sets.items()):
            sums: dict[str, float] = {}

            def on_image(out: Any, name: str = name, first: bool = k == 0) -> None:
                sr, hr = out.sr[None].float().div_(255), out.hr[None].float().div_(255)
                terms = tiled_image_terms(objective, sr, hr, loss_tile, device)
                terms["loss"] = sum(weights[t] * v for t, v in terms.items())
                for t, v in terms.items():
                    sums[t] = sums.get(t, 0.0) + float(v)
                if first and len(result.samples) < num_samples:
                    result.samples[f"{name}/{out.name}"] = torch.cat([out.bicubic, out.sr, out.hr], dim=2)

            scores = evaluate(upscale, dataset, crop_border=dataset.scale, y_channel=True, name=name, on_image=on_image)
            n = max(1, len(scores.images))
            result.metrics.update(
                {
                    f"{name}/psnr": scores.mean_psnr,
                    f"{name}/ssim": scores.mean_ssim,
                    f"{name}/bicubic_psnr": scores.mean_bicubic_psnr,
                    f"{name}/bicubic_ssim": scores.mean_bicubic_ssim,
                }
            )
            result.metrics.update({f"{name}/{t}": v / n for t, v in sums.items()})
            psnrs.append(scores.mean_psnr)
            if "loss" in sums and any(weights.values()):
                losses.append(sums["loss"] / n)
    finally:
        model.train(was_training)
    result.psnr = sum(psnrs) / len(psnrs) if psnrs else float("nan")
    result.image_loss = sum(losses) / len(losses) if losses else None
    return result


def tiled_image_terms(
    objective: Objective, sr: torch.Tensor, hr: torch.Tensor, tile: int | None, device: torch.device
) -> dict[str, float]:
    """`objective.image_terms` of a `(1, C, H, W)` pair, as the area-weighted mean over tiles of it.

    Tiles are at most `tile` pixels a side (None: one tile), cut at multiples of the scale (the
    checkerboard term's pixel grid) and moved to `device` one at a time. Mean-per-pixel terms
    (content) come out exactly as on the whole image; the others (perceptual, TV, checkerboard)
    lose only what crosses the tile borders.
    """
    from torch_sr.inference.tiling import tile_grid

    h, w = sr.shape[-2:]
    ys, xs = tile_grid(h, w, tile, overlap=0, align=objective.scale)
    sums: dict[str, float] = {}
    for y0, y1 in ys:
        for x0, x1 in xs:
            part = (y1 - y0) * (x1 - x0) / (h * w)
            crop = (..., slice(y0, y1), slice(x0, x1))
            terms = objective.image_terms(sr[crop].to(device), hr[crop].to(device))
            for t, v in terms.items():
                sums[t] = sums.get(t, 0.0) + part * float(v)
    return sums
