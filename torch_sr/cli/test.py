"""`test.py`: score one or more models (or the bicubic baseline) on benchmark sets as the papers do.

PSNR/SSIM on the Y channel with `scale` pixels shaved by default, LR made with MATLAB bicubic from
the modcropped HR, the bicubic baseline beside every model score; several models are scored one
after another on the same images and shown side by side. SR images go to `-o OUT_DIR`, `-s N` draws
LR | bicubic | SR of each model | HR figures of the N images the first model improves most,
`--tta` scores the x8 self-ensemble (the '+' rows of papers), `--degrade SPEC` scores restoration of
JPEG-compressed, noisy or blurred LR (see `torch_sr.data.degradation_specs`), `--json` writes the numbers.
"""
from __future__ import annotations

import argparse
import functools
import heapq
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from torch_sr.cli.common import (
    ArgumentParser, command_name, EXIT_ERROR, EXIT_OK, HelpFormatter, add_max_pixels_option, exit_status_epilog, reports_errors,
)  # fmt: skip
from torch_sr.errors import TorchSRError
from torch_sr.inference.defaults import MIN_TILE
from torch_sr.pixel_limit import set_max_pixels

if TYPE_CHECKING:
    from torch_sr.evaluation import ImageOutputs

DEFAULT_FIGURE_DIR = Path("test_results")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=command_name("test.py", "torch-sr-test"),
        description="Score a super-resolution model on benchmark datasets: PSNR/SSIM (Y channel of BT.601, "
        "scale pixels shaved, as published), with the MATLAB-bicubic baseline beside it.",
        formatter_class=HelpFormatter,
        epilog=exit_status_epilog(
            {EXIT_OK: "every dataset was scored", EXIT_ERROR: "an error (one line on stderr): nothing more is scored"}
        ),
    )
    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="model file(s) (any format load_model reads) or shipped models' names (default_x4, ...); "
        "several are scored side by side, labelled by file name",
    )
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
        help="draw LR | bicubic | SR of each model | HR figures of the N images with the largest gain of the first "
        "model over bicubic (into OUT_DIR/<dataset>/, else test_results/<dataset>/)",
    )
    p.add_argument(
        "-o",
        "--out-dir",
        type=Path,
        help="save SR images (and figures) under OUT_DIR/<dataset>/ (OUT_DIR/<dataset>/<model>/ with several models)",
    )
    p.add_argument("--scale", type=int, help="scale factor (default: the model's; 4 with --bicubic)")
    channel = p.add_mutually_exclusive_group()
    channel.add_argument("--y-channel", dest="y_channel", action="store_true", default=True, help="score Y (default)")
    channel.add_argument("--rgb", dest="y_channel", action="store_false", help="score all RGB channels")
    p.add_argument("--crop-border", type=int, help="pixels shaved on each side before scoring (default: the scale)")
    p.add_argument(
        "--bicubic", action="store_true", help="score only the MATLAB-bicubic baseline (no MODEL; --scale sets the scale)"
    )
    p.add_argument("--tile", default="auto", help=f"LR tile size in pixels (at least {MIN_TILE}), 'auto' (default) or 'none'")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument(
        "--tta",
        action="store_true",
        help="x8 self-ensemble: score the mean of the 8 flips/transposes of each output, as the '+' rows of papers "
        "(EDSR+, RCAN+) do (8x the time)",
    )
    p.add_argument(
        "--degrade",
        metavar="SPEC",
        help="score restoration: degrade each LR the same way on every run, e.g. jpeg:40, noise:10+jpeg:70 "
        "(Gaussian sigma on 0-255), blur:1.5+jpeg:70 (HR blur before the downscale) or realesrgan (Real-ESRGAN's "
        "training degradations, seeded per image); the bicubic baseline upscales the same degraded LR",
    )
    p.add_argument("--data-root", type=Path, help="where datasets live (default: $TORCH_SR_DATA or the user cache)")
    p.add_argument("--no-download", action="store_true", help="never download a missing dataset")
    p.add_argument("--lpips", action="store_true", help="also score LPIPS (needs the optional lpips package)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH ('-': to stdout, no tables)")
    add_max_pixels_option(p)
    return p


def _tile(value: str) -> int | str | None:
    if value.lower() == "auto":
        return "auto"
    if value.lower() == "none":
        return None
    try:
        tile = int(value)
    except ValueError:
        tile = -1
    if tile < MIN_TILE:
        raise TorchSRError(f"--tile {value!r}: use {MIN_TILE} or more pixels (smaller tiles show seams), 'auto' or 'none'")
    return tile


def model_labels(paths: Sequence[str]) -> list[str]:
    """File stems naming the models in tables, figures and folders; stems two files share are numbered
    (`net-1`, `net-2`) so that every label is distinct."""
    stems = [Path(p).stem for p in paths]
    taken = {stem for stem in stems if stems.count(stem) == 1}
    labels = []
    for stem in stems:
        label, k = stem, 1
        if stems.count(stem) > 1:
            while f"{stem}-{k}" in taken:
                k += 1
            label = f"{stem}-{k}"
        taken.add(label)
        labels.append(label)
    return labels


def _refuse_writing_among_inputs(
    sets: list[tuple[str, list[Path]]], specs: list[str], args: argparse.Namespace, labels: list[str]
) -> None:
    """Refuse, before any work, an output folder (`-o`, figures) that holds images being scored, or
    is a dataset folder named by -d (whose `test/` sub-folder holds them): SR images would replace HR
    ones, and any file written there would join the set on the next run."""
    inputs = {p.parent.resolve() for _, paths in sets for p in paths}
    inputs |= {Path(s).expanduser().resolve() for s in specs if Path(s).expanduser().is_dir()}
    for name, _ in sets:
        folders = []
        if args.out_dir:
            folders += [args.out_dir / name / label for label in labels] or [args.out_dir / name]
        if args.show:
            folders.append((args.out_dir or DEFAULT_FIGURE_DIR) / name)
        for folder in folders:
            if folder.resolve() in inputs:
                raise TorchSRError(
                    f"{folder} holds images being scored (or is their dataset folder): writing the {name} outputs "
                    "there would mix them with (or replace) the HR images; choose another -o/--out-dir"
                )


def _gain(out: ImageOutputs) -> float:
    """What `-s` ranks by: the SR's PSNR gain over bicubic (the bicubic PSNR when there is no model)."""
    s = out.score
    if out.sr is None:
        return s.bicubic_psnr
    gain = s.psnr - s.bicubic_psnr
    return 0.0 if math.isnan(gain) else gain  # both infinite: a flat image, nothing to show


class BestImages:
    """Keeps the outputs of the N images with the largest `_gain`."""

    def __init__(self, n: int):
        self.n, self.heap, self.count = n, [], 0

    def __call__(self, out: ImageOutputs) -> None:
        gain = _gain(out)
        self.count += 1
        entry = (gain, -self.count, out)  # -count breaks ties without comparing tensors
        if len(self.heap) < self.n:
            heapq.heappush(self.heap, entry)
        elif gain > self.heap[0][0]:
            heapq.heapreplace(self.heap, entry)

    def best_first(self) -> list:
        return [out for _, _, out in sorted(self.heap, key=lambda e: (-e[0], -e[1]))]


def _keep_chosen(chosen: dict[str, list], out) -> None:
    """`on_image` of the models after the first: keep their outputs of the images chosen for figures."""
    if out.name in chosen:
        chosen[out.name].append(out)


def _write_figures(chosen: dict[str, list], labels: list[str], folder: Path, dataset: str, scale: int) -> list[Path]:
    """One figure per image of `chosen` (image name -> the outputs of each model, in `labels` order)."""
    from torch_sr.comparison_figure import save_comparison

    paths = []
    for name, outs in chosen.items():
        first = outs[0]
        s = first.score
        panels = [("LR (nearest)", first.lr)]
        if first.bicubic is not None:
            panels.append((f"bicubic {s.bicubic_psnr:.2f} dB / {s.bicubic_ssim:.4f}", first.bicubic))
        for label, out in zip(labels, outs):
            if out.sr is not None:
                panels.append((f"{label} {out.score.psnr:.2f} dB / {out.score.ssim:.4f}", out.sr))
        panels.append(("HR", first.hr))
        path = folder / f"{name}_comparison.png"
        paths.append(save_comparison(path, panels, tuple(first.hr.shape[-2:]), f"{dataset} {name} x{scale}"))
    return paths


def _load_upscalers(args: argparse.Namespace) -> tuple[list, int]:
    """(path, upscale) for each MODEL, and their common scale (an error when they differ)."""
    from torch_sr.model_files.model_file import load_model
    from torch_sr.inference.upscaler import Upscaler

    from torch_sr.weights import resolve_model

    models = [(path, load_model(resolve_model(path))) for path in args.models]
    scales = {model.info.scale for _, model in models}
    if len(scales) > 1:
        listed = ", ".join(f"{path} x{model.info.scale}" for path, model in models)
        raise TorchSRError(f"the models upscale by different factors ({listed}): compare models of one scale")
    scale = scales.pop()
    if args.scale is not None and args.scale != scale:
        which = "the model" if len(models) == 1 else "the models"
        raise TorchSRError(
            f"--scale {args.scale} does not match {which} {', '.join(args.models)}, which upscale(s) x{scale}: drop --scale"
        )
    tile = _tile(args.tile)
    upscalers = [Upscaler(model, device=args.device, tile=tile, tta=args.tta) for _, model in models]
    return [(path, upscaler.upscale_tensor) for (path, _), upscaler in zip(models, upscalers)], scale


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_max_pixels(args.max_pixels)
    from torch_sr.data.catalogue import dataset_name, resolve_images
    from torch_sr.data.datasets import SREvalDataset
    from torch_sr.evaluation import comparison_table, evaluate
    from torch_sr.files import check_output_file, check_output_folder

    if args.tta and not args.models:
        raise TorchSRError("--tta averages a model's outputs: give a MODEL (the bicubic baseline has no ensemble)")
    if args.bicubic and args.models:
        raise TorchSRError(
            "--bicubic scores only the bicubic baseline: drop MODEL (every model run prints the baseline beside it)"
        )
    if not args.bicubic and not args.models:
        raise TorchSRError("give a MODEL file to score, or --bicubic to score the bicubic baseline")
    if args.show < 0 or (args.crop_border is not None and args.crop_border < 0):
        raise TorchSRError("-s/--show and --crop-border must not be negative")
    from torch_sr.data.degradation_specs import parse_degradation

    degradation = parse_degradation(args.degrade) if args.degrade is not None else None
    if args.lpips:  # a missing package or backbone before any work, not after the first image
        from torch_sr.metrics.lpips import lpips_model

        lpips_model()
    if args.json and args.json != "-":
        check_output_file(args.json, "--json")
    if args.out_dir:
        check_output_folder(args.out_dir, "-o/--out-dir")
    runs, scale = _load_upscalers(args) if args.models else ([(None, None)], 4 if args.scale is None else args.scale)
    if scale < 1:
        raise TorchSRError(f"--scale must be at least 1, got {scale}")
    labels = model_labels(args.models)
    several = len(runs) > 1
    crop_border = scale if args.crop_border is None else args.crop_border
    specs = [s.strip() for s in args.datasets.split(",") if s.strip()]
    if not specs:
        raise TorchSRError("-d/--datasets is empty")
    to_stdout = args.json == "-"
    if args.tta and not to_stdout:
        print("x8 self-ensemble (--tta): every model score below is of the mean of 8 flipped/transposed outputs")
    results: list[list] = [[] for _ in runs]  # per model, per dataset
    names = [dataset_name(s) for s in specs]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:  # their tables, JSON entries and output folders would be told apart by nothing
        same = [s for s, n in zip(specs, names) if n == twice]
        raise TorchSRError(f"-d: {' and '.join(same)} are both named {twice!r}; give each dataset a folder of its own name")
    sets = [(name, resolve_images(s, args.split, args.data_root, download=not args.no_download)) for s, name in zip(specs, names)]
    _refuse_writing_among_inputs(sets, specs, args, labels if several else [])
    for name, paths in sets:
        dataset = SREvalDataset(paths, scale, cache=False, degradation=degradation)
        best = BestImages(args.show) if args.show else None
        chosen: dict[str, list] = {}
        for k, (_, upscale) in enumerate(runs):
            save_dir = None
            if args.out_dir:
                save_dir = args.out_dir / name / labels[k] if several else args.out_dir / name
            on_image = None
            if best is not None:
                on_image = best if k == 0 else functools.partial(_keep_chosen, chosen)
            result = evaluate(
                upscale,
                dataset,
                crop_border=crop_border,
                y_channel=args.y_channel,
                save_dir=save_dir,
                progress=True,
                name=name,
                lpips=args.lpips,
                on_image=on_image,
            )
            results[k].append(result)
            if k == 0 and best is not None:
                chosen = {out.name: [out] for out in best.best_first()}
        if not to_stdout:
            if several:
                table = comparison_table([(label, res[-1]) for label, res in zip(labels, results)])
            else:
                table = results[0][-1].format_table()
            print(table, end="\n\n", flush=True)
            if args.out_dir:
                where = f"{args.out_dir / name}/<model>/" if several else f"{args.out_dir / name}/"
                print(f"{'SR' if args.models else 'bicubic'} images saved to {where}")
        if best is not None:
            folder = (args.out_dir or DEFAULT_FIGURE_DIR) / name
            figures = _write_figures(chosen, labels, folder, name, scale)
            if not to_stdout:
                print(f"{len(figures)} comparison figure(s) saved to {folder}/")
    if args.json:
        if several:
            models = [
                {"label": label, "model": path, "results": [r.to_dict() for r in res]}
                for label, (path, _), res in zip(labels, runs, results)
            ]
            payload = {"scale": scale, "models": models}
        else:
            payload = {"model": runs[0][0], "scale": scale, "results": [r.to_dict() for r in results[0]]}
        if args.models:
            payload["tta"] = args.tta
        payload["degradation"] = degradation.text if degradation is not None else "none"
        text = json.dumps(payload, indent=2)
        if to_stdout:
            print(text)
        else:
            from torch_sr.files import atomic_write

            atomic_write(args.json, lambda f: f.write(text.encode() + b"\n"))
            print(f"results written to {args.json}", file=sys.stderr)
    return EXIT_OK
