"""`torch-sr-deepen`: write a deeper copy of a trained srvgg model that computes the same outputs."""
from __future__ import annotations

import sys
from pathlib import Path

from torch_sr.cli.common import ArgumentParser, EXIT_ERROR, EXIT_OK, HelpFormatter, exit_status_epilog, reports_errors


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="torch-sr-deepen",
        description="Write a deeper copy of a trained srvgg model that computes the same outputs "
        "(for training on with init_weights).",
        formatter_class=HelpFormatter,
        epilog=exit_status_epilog({EXIT_OK: "the deeper model was written", EXIT_ERROR: "an error (one line on stderr)"}),
    )
    parser.add_argument("model", help="srvgg model file or training checkpoint (its EMA weights if it has them)")
    parser.add_argument("output", help="where to write the deeper model (must not exist)")
    parser.add_argument("--every", type=int, default=2, help="insert one identity layer after every N body convs")
    parser.add_argument("--raw", action="store_true", help="take the raw weights even where an EMA copy exists")
    args = parser.parse_args(argv)
    from torch_sr.model_files.deepen import deepen
    from torch_sr.files import refuse_existing
    from torch_sr.model_files.model_file import read_model_file, save_model_file

    refuse_existing(args.output)
    deeper = deepen(read_model_file(args.model, prefer_ema=not args.raw), args.every)
    save_model_file(deeper, Path(args.output))
    print(f"{args.output}: {deeper.hparams['num_conv']} body convs (from {args.model})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
