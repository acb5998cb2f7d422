"""`net_interpolation.py --psnr-model-path A --esrgan-model-path B --alpha X OUT`: blend two models."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from torch_sr.cli.common import (
    ArgumentParser, command_name, EXIT_ERROR, EXIT_OK, HelpFormatter, exit_status_epilog, reports_errors,
)  # fmt: skip
from torch_sr.errors import ConfigError
from torch_sr.weights import resolve_model


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=command_name("net_interpolation.py", "torch-sr-net-interpolation"),
        description="Write theta = (1 - alpha) theta_PSNR + alpha theta_GAN for two models of the same "
        "architecture (any accepted file layout).",
        formatter_class=HelpFormatter,
        epilog=exit_status_epilog(
            {EXIT_OK: "the blended model was written", EXIT_ERROR: "an error (one line on stderr)"}
        ),
    )
    p.add_argument(
        "--psnr-model-path", required=True, type=resolve_model,
        help="model A (alpha = 0): the PSNR-oriented one (a file, or a shipped model's name: default_x4, photo_x4)",
    )
    p.add_argument(
        "--esrgan-model-path", required=True, type=resolve_model,
        help="model B (alpha = 1), e.g. the GAN one (a file, or a shipped model's name: gan_x4, photo_gan_x4)",
    )
    p.add_argument("--alpha", required=True, type=float, help="weight of model B, in [0, 1] (ESRGAN published 0.8)")
    p.add_argument("out", type=Path, help="output model: .pth, or .safetensors by suffix (must not exist)")
    return p


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from torch_sr.files import refuse_existing
    from torch_sr.interpolation import interpolate_models
    from torch_sr.model_files.model_file import read_model_file, save_model_file

    if not 0 <= args.alpha <= 1:  # also refuses nan
        raise ConfigError(f"--alpha {args.alpha}: must be between 0 (PSNR model) and 1 (ESRGAN model)")
    inputs = {args.psnr_model_path.resolve(), args.esrgan_model_path.resolve()}
    if args.out.resolve() in inputs:
        raise ConfigError(f"{args.out}: the output would overwrite an input model; choose another path")
    refuse_existing(args.out)
    a, b = read_model_file(args.psnr_model_path), read_model_file(args.esrgan_model_path)
    mixed = interpolate_models(a, b, args.alpha)
    save_model_file(mixed, args.out)
    print(f"wrote {args.out} (alpha {args.alpha})")
    return EXIT_OK
