"""`train.py CONFIG`: PSNR pre-training, then GAN training, as the original project's train.py.

Checkpoints and models go to `--output-dir` (default `saved_models/` under the working directory),
logs to the config's `logging/dir`. `--resume` continues the newest checkpoint there (with its own
config unless CONFIG is given, which must then agree with it); `-l/--load-checkpoint PATH` a given
one. Under `torchrun` every process runs this same command.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from torch_sr.cli.common import (
    ArgumentParser, command_name, EXIT_ERROR, EXIT_OK, HelpFormatter, add_max_pixels_option, exit_status_epilog, reports_errors,
)  # fmt: skip
from torch_sr.errors import TorchSRError

if TYPE_CHECKING:
    import torch


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of iterations, got {value!r}")
    return n


def _non_negative(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number of iterations >= 0, got {value!r}")
    return n


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def _warn_if_autocast_is_off(device: torch.device, amp_dtype: str | None) -> None:
    """Say before the run starts why `--autocast` trains in float32 here (`torch_sr.device.autocast_dtype`)."""
    from torch_sr.device import autocast_dtype

    if autocast_dtype(device, amp_dtype) is not None:
        return
    if device.type == "cpu" and amp_dtype != "fp16":
        _warn("warning: --autocast: this CPU has no native bfloat16 (avx512_bf16 or amx_bf16), where bf16 is "
              "slower than float32; training in float32")  # fmt: skip
    else:
        flag = f"--autocast --amp-dtype {amp_dtype}" if amp_dtype else "--autocast"
        _warn(f"warning: {flag} needs CUDA; training in float32 on the {device.type} "
              f"(the CPU autocasts to bf16: --amp-dtype bf16)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=command_name("train.py", "torch-sr-train"),
        description="Train a super-resolution model from a JSON config: PSNR pre-training of the generator, then "
        "GAN training with the discriminator (ESRGAN). Start several processes with torchrun for "
        "DistributedDataParallel, on one machine or several (docs/training-on-clusters.md).",
        formatter_class=HelpFormatter,
        epilog=exit_status_epilog(
            {
                EXIT_OK: "training finished, or stopped by --stop-after with a checkpoint (continue with --resume)",
                EXIT_ERROR: "an error (one line on stderr: a config key, a missing file, a diverged loss ...)",
                130: "interrupted by Ctrl-C, with a checkpoint of the completed iterations",
                143: "stopped by SIGTERM (e.g. a cluster's time limit), with a checkpoint",
            }
        ),
    )
    p.add_argument("config", nargs="?", type=Path, metavar="CONFIG", help="JSON config (optional when resuming)")
    p.add_argument("-l", "--load-checkpoint", type=Path, metavar="PATH", help="continue from this training checkpoint")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in --output-dir (a new run starts when there is none)",
    )
    p.add_argument(
        "-a", "--autocast", action="store_true", help="mixed precision: fp16 or bf16 on CUDA, bf16 on the CPU (--amp-dtype)"
    )
    p.add_argument(
        "--amp-dtype",
        choices=("fp16", "bf16"),
        default=None,
        help="autocast precision: fp16 with a gradient scaler (the default on CUDA) or bf16 (no scaler needed; the "
        "default and only choice on the CPU, about twice as fast as float32 where the CPU has avx512_bf16 or amx_bf16)",
    )
    p.add_argument("--no-data-parallel", action="store_true", help="use one GPU even when several are visible")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="CUDA: deterministic cuDNN/cuBLAS algorithms and no TF32, so that a run repeats bit for bit on the "
        "same GPU and software (slower; runs on the CPU always repeat)",
    )
    p.add_argument(
        "-i",
        "--checkpoint-interval",
        type=_positive,
        default=1000,
        metavar="N",
        help="write the training checkpoint every N iterations (mini-batches; also at the end of each stage and "
        "on Ctrl-C/SIGTERM) (default: %(default)s)",
    )
    p.add_argument(
        "-w",
        "--best-checkpoint-warmup",
        type=_non_negative,
        default=0,
        metavar="N",
        help="save the best model of a stage only from iteration N on (default: %(default)s)",
    )
    p.add_argument(
        "-s",
        "--store-model-interval",
        type=_positive,
        metavar="N",
        help="also keep a model file every N iterations (<prefix>_iterN_model.pth)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument(
        "--output-dir",
        type=Path,
        default=Path("saved_models"),
        help="checkpoints and models (default: %(default)s)",
    )
    p.add_argument("--run-name", help="log directory name under logging/dir (default: <timestamp>_<config name>)")
    p.add_argument("--data-root", type=Path, help="where datasets live (default: $TORCH_SR_DATA or the user cache)")
    p.add_argument("--no-download", action="store_true", help="never download a missing dataset")
    p.add_argument(
        "--stop-after",
        type=_positive,
        metavar="N",
        help="stop after N iterations of this invocation, with a checkpoint (for time-limited jobs; then --resume)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (shown only on a terminal anyway)")
    add_max_pixels_option(p)
    return p


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from torch_sr.files import STORAGE_ERRNOS, check_output_folder
    from torch_sr.config.validate import load_config
    from torch_sr.device import resolve_device
    from torch_sr.training.checkpointing import remove_interrupted_writes
    from torch_sr.training.resume import find_checkpoint, resume_config
    from torch_sr.training.run import train
    from torch_sr.training.session import TrainingStopped, TrainOptions
    from torch_sr.training.signals import StoppedOutsideTheLoop
    from torch_sr.pixel_limit import set_max_pixels

    set_max_pixels(args.max_pixels)
    cfg = load_config(args.config) if args.config is not None else None
    check_output_folder(args.output_dir, "--output-dir")
    stale = remove_interrupted_writes(args.output_dir) if args.output_dir.is_dir() else []
    if stale:
        print(f"removed {len(stale)} temporary file(s) of interrupted saves: {', '.join(p.name for p in stale)}",
              file=sys.stderr)  # fmt: skip
    found = find_checkpoint(args.load_checkpoint, args.resume, args.output_dir, warn=_warn)
    checkpoint = None
    if found is not None:
        path, checkpoint = found
        cfg, checkpoint, changed = resume_config(path, cfg, checkpoint)
        print(f"continuing {path}", file=sys.stderr)
        for key, (old, new) in changed.items():
            print(f"  {key}: {old!r} -> {new!r} (changed by {args.config})", file=sys.stderr)
    elif cfg is None:
        where = f"no checkpoint in {args.output_dir} to resume; " if args.resume else ""
        raise TorchSRError(f"{where}give a CONFIG file to start a run")
    elif args.resume:
        print(f"no checkpoint in {args.output_dir}: starting a new run", file=sys.stderr)
    check_output_folder(Path(cfg.logging.dir), "logging/dir")
    device = resolve_device(args.device)
    if args.autocast:
        _warn_if_autocast_is_off(device, args.amp_dtype)
    options = TrainOptions(
        output_dir=args.output_dir,
        checkpoint_interval=args.checkpoint_interval,
        best_checkpoint_warmup=args.best_checkpoint_warmup,
        store_model_interval=args.store_model_interval,
        device=device,
        autocast=args.autocast,
        amp_dtype=args.amp_dtype,
        data_parallel=not args.no_data_parallel,
        deterministic=args.deterministic,
        run_name=args.run_name,
        data_root=args.data_root,
        download=not args.no_download,
        stop_after=args.stop_after,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    try:
        result = train(cfg, options, checkpoint)
    except (TrainingStopped, StoppedOutsideTheLoop) as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if e.errno not in STORAGE_ERRNOS:
            raise
        where = e.filename or f"a file under {args.output_dir} or {cfg.logging.dir}"
        raise TorchSRError(f"{where}: could not be written ({e.strerror}); the checkpoints written so far are kept") from None
    for final in result.final_models:
        print(f"final model: {final}")
    return EXIT_OK
