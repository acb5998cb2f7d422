"""Where a run's numbers and pictures go: a text log, TensorBoard, Weights & Biases and a tqdm bar.

Only the main process logs; the others get a disabled logger whose calls do nothing. Steps are
global across stages (stage 2 continues after stage 1's last iteration) so a resumed run can purge
what a killed run logged after its checkpoint (`purge_step`), and tags carry the stage label,
e.g. `PSNR/train/content`, `ESRGAN/val/Set5/psnr`, `ESRGAN/samples/Set5/baby`.
"""
from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from torch_sr.config.schema import LoggingConfig
from torch_sr.errors import TorchSRError, first_line

LOG_FILE = "train.log"


class RunLogger:
    """Text log file + TensorBoard + W&B of one run directory, as `LoggingConfig` enables them."""

    def __init__(
        self,
        run_dir: Path | None,
        settings: LoggingConfig,
        *,
        config: Mapping[str, Any] | None = None,
        run_id: str = "",
        purge_step: int | None = None,
        echo: bool = True,
    ):
        self.run_dir, self.echo = run_dir, echo
        self._file = self._tb = self._wandb = None
        if run_dir is None:  # not the main process
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if settings.log_file:
            self._file = open(run_dir / LOG_FILE, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if settings.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        if settings.wandb:
            import wandb

            try:
                self._wandb = wandb.init(
                    project=settings.wandb_project,
                    name=run_dir.name,
                    id=re.sub(r"[^A-Za-z0-9_-]", "-", run_id) or None,
                    resume="allow",
                    dir=str(run_dir),
                    config=dict(config or {}),
                )
            except Exception as e:  # noqa: BLE001 - wandb fails in its own ways (no API key, no network, ...)
                self.close()
                raise TorchSRError(
                    f"logging/wandb: Weights & Biases could not start ({first_line(e)}); log in with `wandb login`, "
                    "or set WANDB_MODE=offline (sync later with `wandb sync`) or WANDB_MODE=disabled, or set "
                    "logging/wandb to false"
                ) from None

    @property
    def enabled(self) -> bool:
        return self.run_dir is not None

    def info(self, message: str, echo: bool = True) -> None:
        """A line for the text log and (unless `echo` is false) the console."""
        if not self.enabled:
            return
        if self.echo and echo:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stdout)
            sys.stdout.flush()  # promptly, also when redirected to a file
        if self._file is not None:
            try:
                self._file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
                self._file.flush()
            except OSError as e:  # e.g. a full disk: say which file
                e.filename = e.filename or self._file.name
                raise

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self._tb is not None:
            for tag, value in values.items():
                self._tb.add_scalar(tag, value, step)
        if self._wandb is not None:
            self._wandb.log(dict(values), step=step)

    def images(self, images: Mapping[str, torch.Tensor], step: int) -> None:
        """uint8 `(C, H, W)` images by tag."""
        if self._tb is not None:
            for tag, img in images.items():
                self._tb.add_image(tag, img, step, dataformats="CHW")
            self._tb.flush()
        if self._wandb is not None:
            import wandb

            self._wandb.log({tag: wandb.Image(img.permute(1, 2, 0).numpy()) for tag, img in images.items()}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._file is not None:
            with contextlib.suppress(OSError):  # a full disk: the write that failed has said so
                self._file.close()
        self._file = self._tb = self._wandb = None


def progress_bar(total: int, initial: int, label: str, enabled: bool) -> Any:
    """The tqdm bar of one stage (disabled: a bar that draws nothing)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="it", dynamic_ncols=True, disable=not enabled)
