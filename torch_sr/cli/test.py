"""`test.py`: score a model (or the bicubic baseline) on benchmark sets as the papers do.

PSNR/SSIM on the Y channel with `scale` pixels shaved by default, LR made with MATLAB bicubic from
the modcropped HR, the bicubic baseline beside every model score. SR images go to `-o OUT_DIR`,
`-s N` draws LR | bicubic | SR | HR figures of the N best images, `--json` writes the numbers.
"""
from __future__ import annotations

import argparse
import heapq
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from torch_sr.cli.common import EXIT_OK, reports_errors
from torch_sr.errors import TorchSRError

DISPLAY_NAMES = {"div2k": "DIV2K", "bsds500": "BSDS500", "set5": "Set5", "set14": "Set14"}
DEFAULT_FIGURE_DIR = Path("test_results")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="test.py",
        description="Score a super-resolution model on benchmark datasets: PSNR/SSIM (Y channel of BT.601, "
        "scale pixels shaved, as published), with the MATLAB-bicubic baseline beside it.",
    )
    p.add_argument("model", nargs="?", metavar="MODEL", help="model file (any format load_model reads)")
    p.add_argument(
        "-d",
        "--datasets",
        default="set5,set14",
        help="comma-separated list of div2k, bsds500, set5, set14 or folders of HR images (default: set5,set14)",
    )
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="dataset split (default: test)")
    p.add_argument(
        "-s",
        "--show",
        type=int,
        default=0,
        metavar="N",
        help="draw LR/bicubic/SR/HR figures of the N best images (into OUT_DIR/<dataset>/, else test_results/)",
    )
    p.add_argument("-o", "--out-dir", type=Path, help="save SR images (and figures) under OUT_DIR/<dataset>/")
    p.add_argument("--scale", type=int, help="scale factor (default: the model's; 4 with --bicubic)")
    channel = p.add_mutually_exclusive_group()
    channel.add_argument("--y-channel", dest="y_channel", action="store_true", default=True, help="score Y (default)")
    channel.add_argument("--rgb", dest="y_channel", action="store_false", help="score all RGB channels")
    p.add_argument("--crop-border", type=int, help="pixels shaved on each side before scoring (default: the scale)")
    p.add_argument(
        "--bicubic", action="store_true", help="score only the MATLAB-bicubic baseline (no MODEL; --scale sets the scale)"
    )
    p.add_argument("--tile", default="auto", help="LR tile size in pixels, 'auto' (default) or 'none'")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--data-root", type=Path, help="where datasets live (default: $TORCH_SR_DATA or the user cache)")
    p.add_argument("--no-download", action="store_true", help="never download a missing dataset")
    p.add_argument("--lpips", action="store_true", help="also score LPIPS (needs the optional lpips package)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH ('-': to stdout, no tables)")
    return p


def _tile(value: str) -> int | str | None:
    if value == "auto":
        return "auto"
    if value.lower() in ("none", "0"):
        return None
    try:
        tile = int(value)
    except ValueError:
        tile = -1
    if tile <= 0:
        raise TorchSRError(f"--tile {value!r}: use a positive number of pixels, 'auto' or 'none'")
    return tile


def _dataset_name(spec: str) -> str:
    return DISPLAY_NAMES.get(spec.lower()) or Path(spec).expanduser().resolve().name or spec


class BestImages:
    """Keeps the N images with the highest PSNR (of the SR, or of bicubic when there is no model)."""

    def __init__(self, n: int):
        self.n, self.heap, self.count = n, [], 0

    def __call__(self, out) -> None:
        psnr = out.score.psnr if out.sr is not None else out.score.bicubic_psnr
        self.count += 1
        entry = (psnr, -self.count, out)  # -count breaks ties without comparing tensors
        if len(self.heap) < self.n:
            heapq.heappush(self.heap, entry)
        elif psnr > self.heap[0][0]:
            heapq.heapreplace(self.heap, entry)

    def best_first(self) -> list:
        return [out for _, _, out in sorted(self.heap, key=lambda e: (-e[0], -e[1]))]


def _write_figures(best: BestImages, folder: Path, dataset: str, scale: int) -> list[Path]:
    from torch_sr.comparison_figure import save_comparison

    paths = []
    for out in best.best_first():
        s = out.score
        panels = [("LR (nearest)", out.lr)]
        if out.bicubic is not None:
            panels.append((f"bicubic {s.bicubic_psnr:.2f} dB / {s.bicubic_ssim:.4f}", out.bicubic))
        if out.sr is not None:
            panels.append((f"SR {s.psnr:.2f} dB / {s.ssim:.4f}", out.sr))
        panels.append(("HR", out.hr))
        path = folder / f"{out.name}_comparison.png"
        paths.append(save_comparison(path, panels, tuple(out.hr.shape[-2:]), f"{dataset} {out.name} x{scale}"))
    return paths


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from torch_sr.data.catalogue import resolve_images
    from torch_sr.data.datasets import SREvalDataset
    from torch_sr.evaluation import evaluate

    if args.bicubic and args.model:
        raise TorchSRError(
            "--bicubic scores only the bicubic baseline: drop MODEL (every model run prints the baseline beside it)"
        )
    if not args.bicubic and not args.model:
        raise TorchSRError("give a MODEL file to score, or --bicubic to score the bicubic baseline")
    if args.show < 0 or (args.crop_border is not None and args.crop_border < 0):
        raise TorchSRError("-s/--show and --crop-border must not be negative")
    upscale, scale = None, args.scale or 4
    if args.model:
        from torch_sr.checkpoint.model_file import load_model
        from torch_sr.inference.upscaler import Upscaler

        model = load_model(args.model)
        if args.scale is not None and args.scale != model.scale:
            raise TorchSRError(f"--scale {args.scale} does not match the model {args.model}, which upscales x{model.scale}")
        scale = model.scale
        upscale = Upscaler(model, device=args.device, tile=_tile(args.tile)).upscale_tensor
    if scale < 1:
        raise TorchSRError(f"--scale must be at least 1, got {scale}")
    crop_border = scale if args.crop_border is None else args.crop_border
    specs = [s.strip() for s in args.datasets.split(",") if s.strip()]
    if not specs:
        raise TorchSRError("-d/--datasets is empty")
    to_stdout = args.json == "-"
    results = []
    for spec in specs:
        name = _dataset_name(spec)
        paths = resolve_images(spec, args.split, args.data_root, download=not args.no_download)
        dataset = SREvalDataset(paths, scale, cache=False)
        save_dir = args.out_dir / name if args.out_dir else None
        best = BestImages(args.show) if args.show else None
        result = evaluate(
            upscale,
            dataset,
            crop_border=crop_border,
            y_channel=args.y_channel,
            save_dir=save_dir,
            progress=True,
            name=name,
            lpips=args.lpips,
            on_image=best,
        )
        results.append(result)
        if not to_stdout:
            print(result.format_table(), end="\n\n", flush=True)
            if save_dir is not None:
                print(f"{'SR' if upscale else 'bicubic'} images saved to {save_dir}/")
        if best is not None:
            folder = (args.out_dir or DEFAULT_FIGURE_DIR) / name
            figures = _write_figures(best, folder, name, scale)
            if not to_stdout:
                print(f"{len(figures)} comparison figure(s) saved to {folder}/")
    if args.json:
        payload = {"model": args.model, "scale": scale, "results": [r.to_dict() for r in results]}
        text = json.dumps(payload, indent=2)
        if to_stdout:
            print(text)
        else:
            from torch_sr.checkpoint.files import atomic_write

            atomic_write(args.json, lambda f: f.write(text.encode() + b"\n"))
            print(f"results written to {args.json}", file=sys.stderr)
    return EXIT_OK
