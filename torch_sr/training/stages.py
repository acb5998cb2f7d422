"""The stages of a run and the names their files take.

Stage 1 (`pretraining`) trains the generator alone for PSNR; stage 2 (`training`) adds the
discriminator. Files are named as in the original project:
`<timestamp>_<model>_<stage>_x<scale>_<kind>`, e.g. `1657192860_RRDB_PSNR_x4_best_model.pth` and
`1657192860_RRDB_ESRGAN_x4_final_model.pth`; other generators use their own names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch_sr.config.schema import TrainConfig

MODEL_LABELS = {"rrdbnet": "RRDB", "srresnet": "SRResNet", "srcnn": "SRCNN"}
GAN_LABELS = {"rrdbnet": "ESRGAN", "srresnet": "SRGAN"}


@dataclass(frozen=True)
class Stage:
    """One stage: its position, config section and whether a discriminator trains in it."""

    index: int
    key: str  # the config section: "pretraining" or "training"
    label: str  # "PSNR", "ESRGAN", ...
    adversarial: bool

    def section(self, cfg: TrainConfig) -> Any:
        return getattr(cfg, self.key)


def build_stages(cfg: TrainConfig) -> list[Stage]:
    """The enabled ones of [PSNR pre-training, GAN training] for the config's generator.

    A stage keeps its index when the other is disabled, so seeds and file names do not change.
    """
    stages = [
        Stage(0, "pretraining", "PSNR", adversarial=False),
        Stage(1, "training", GAN_LABELS.get(cfg.generator.arch, "GAN"), adversarial=True),
    ]
    return [stage for stage in stages if stage.section(cfg).enabled]


def file_prefix(timestamp: int, cfg: TrainConfig, stage: Stage) -> str:
    """`<timestamp>_<model>_<stage>_x<scale>`, the start of every file name of the stage."""
    model = MODEL_LABELS.get(cfg.generator.arch, cfg.generator.arch)
    return f"{timestamp}_{model}_{stage.label}_x{cfg.scale_factor}"
