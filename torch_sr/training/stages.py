"""The stages of a run, their phases, and the names their files take.

Stage 1 (`pretraining`) trains the generator alone for PSNR; stage 2 (`training`) adds the
discriminator. A stage that lists `phases` (progressive resizing) trains as one `Stage` per phase,
in order: each phase is like a stage boundary (fresh optimisers, the previous phase's generator
loaded where shapes fit), with its own scale, crop, length, learning rate... Files are named as in
the original project: `<timestamp>_<model>_<stage>_x<scale>_<kind>`, e.g.
`1657192860_RRDB_PSNR_x4_best_model.pth` and `1657192860_RRDB_ESRGAN_x4_final_model.pth`; other
generators use their own names; a phase adds `_phase<k>` after the scale
(`..._PSNR_x2_phase1_final_model.pth`, `..._PSNR_x4_phase2_final_model.pth`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch_sr.config.schema import TrainConfig

MODEL_LABELS = {"rrdbnet": "RRDB", "srresnet": "SRResNet", "srcnn": "SRCNN"}
GAN_LABELS = {"rrdbnet": "ESRGAN", "srresnet": "SRGAN"}


@dataclass(frozen=True)
class Stage:
    """One stage (or one phase of a stage): its position, its config and whether a discriminator trains in it.

    `config` is the run's config as this stage trains it: the section of the stage is the phase's
    (when it has phases) and the stage's `scale_factor` / `batch_size`, when set, replace the
    top-level ones (the generator's too).
    """

    index: int  # 0: pretraining, 1: training (kept when the other stage is disabled)
    key: str  # the config section: "pretraining" or "training"
    label: str  # "PSNR", "ESRGAN", ...
    adversarial: bool
    config: TrainConfig = field(compare=False, repr=False)
    phase: int | None = None  # 0-based index into the section's phases; None: a stage without phases
    num_phases: int = 0

    @property
    def section(self) -> Any:
        """The config section this stage trains with (`pretraining`, `training` or one of their phases)."""
        return getattr(self.config, self.key)

    @property
    def order(self) -> tuple[int, int]:
        """Position in the run: stage, then phase."""
        return self.index, self.phase or 0

    @property
    def seed_keys(self) -> tuple[int, ...]:
        """What seeds of this stage derive from (a stage without phases keeps the seeds it always had)."""
        return (self.index,) if self.phase is None else (self.index, self.phase)

    @property
    def name(self) -> str:
        """'PSNR', or 'PSNR_phase2' in a stage with phases: logs and TensorBoard tags."""
        return self.label if self.phase is None else f"{self.label}_phase{self.phase + 1}"


def stage_config(cfg: TrainConfig, key: str, section: Any) -> TrainConfig:
    """`cfg` with `section` as its `key` section and that section's scale / batch size, when set, as the run's."""
    scale = section.scale_factor or cfg.scale_factor
    generator = cfg.generator
    if "scale_factor" in generator.shared:
        generator = dataclasses.replace(generator, shared={**generator.shared, "scale_factor": scale})
    return dataclasses.replace(
        cfg,
        scale_factor=scale,
        batch_size=section.batch_size or cfg.batch_size,
        generator=generator,
        **{key: section},
    )


def build_stages(cfg: TrainConfig) -> list[Stage]:
    """The enabled ones of [PSNR pre-training, GAN training] for the config's generator, phase by phase.

    A stage keeps its index when the other is disabled, so seeds and file names do not change.
    """
    stages = []
    for index, key, label, adversarial in (
        (0, "pretraining", "PSNR", False),
        (1, "training", GAN_LABELS.get(cfg.generator.arch, "GAN"), True),
    ):
        section = getattr(cfg, key)
        if not section.enabled:
            continue
        if not section.phases:
            stages.append(Stage(index, key, label, adversarial, stage_config(cfg, key, section)))
        for p, phase in enumerate(section.phases):
            config = stage_config(cfg, key, phase)
            stages.append(Stage(index, key, label, adversarial, config, p, len(section.phases)))
    return stages


def file_prefix(timestamp: int, stage: Stage) -> str:
    """`<timestamp>_<model>_<stage>_x<scale>[_phase<k>]`, the start of every file name of the stage."""
    cfg = stage.config
    model = MODEL_LABELS.get(cfg.generator.arch, cfg.generator.arch)
    phase = "" if stage.phase is None else f"_phase{stage.phase + 1}"
    return f"{timestamp}_{model}_{stage.label}_x{cfg.scale_factor}{phase}"
