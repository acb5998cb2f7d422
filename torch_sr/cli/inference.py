"""`inference.py [-m MODEL] [-o OUT_DIR] inputs...`: upscale image and video files, folders and globs.

Each input is routed by its suffix through `HANDLERS` (images, videos); every handler shares the
`Job` (the upscaler, output naming and the rule that no output overwrites an input). Files found
under a folder or a glob keep their sub-folders under `-o`. A file that fails is reported by name
and the run goes on; the exit status is 1 when some inputs failed, 2 when all did. torch and the
model code are imported only once the work starts, so `--help` answers at once.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torch_sr.cli.common import (
    ArgumentParser, command_name, EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, HelpFormatter, add_max_pixels_option,
    exit_status_epilog, reports_errors,
)
from torch_sr.errors import TorchSRError
from torch_sr.inference.defaults import (
    CHROMA_SUBSAMPLING, CONTAINERS, DEFAULT_CHROMA, DEFAULT_CRF, DEFAULT_QUALITY, DEFAULT_TILE_OVERLAP, MIN_TILE,
    VIDEO_SUFFIXES,
)
from torch_sr.pixel_limit import set_max_pixels
from torch_sr.weights import MODELS, default_model_path, resolve_model

if TYPE_CHECKING:
    from torch_sr.inference.upscaler import Upscaler

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
OUTPUT_FORMATS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")


def _quality(value: str) -> int:
    try:
        quality = int(value)
    except ValueError:
        quality = 0
    if not 1 <= quality <= 100:
        raise argparse.ArgumentTypeError(f"expected a quality from 1 to 100, got {value!r}")
    return quality


def build_parser() -> argparse.ArgumentParser:
    """The command's options; handlers for other inputs add theirs to this parser."""
    p = ArgumentParser(
        prog=command_name("inference.py", "torch-sr-inference"),
        description="Upscale images and videos with a super-resolution model. Inputs may be files, folders "
        "(their images and videos; with -r also those of their sub-folders) or glob patterns such as "
        "'photos/**/*.jpg'. With -o, what a folder or glob finds keeps its sub-folders under OUT_DIR.",
        formatter_class=HelpFormatter,
        epilog=exit_status_epilog(
            {
                EXIT_OK: "every input was upscaled",
                EXIT_PARTIAL: "some inputs failed (each is named on stderr), the others were upscaled",
                EXIT_ERROR: "nothing was upscaled: an error (one line on stderr), or every input failed",
            }
        ),
    )
    p.add_argument("inputs", nargs="+", help="image or video files, folders or glob patterns")
    p.add_argument("-r", "--recursive", action="store_true", help="also scan the sub-folders of folder inputs")
    p.add_argument(
        "-m",
        "--model",
        help="model file (.pth/.safetensors, any ESRGAN layout) or a shipped model's name "
        f"({', '.join(MODELS)}; default: the shipped default of --scale, else x4)",
    )
    p.add_argument("-o", "--out-dir", type=Path, help="write results here (default: next to each input)")
    p.add_argument("--suffix", default="_sr", help="added to each output's name (default: %(default)s)")
    p.add_argument("--format", choices=OUTPUT_FORMATS, help="image output format (default: the input's)")
    p.add_argument(
        "--quality",
        type=_quality,
        metavar="Q",
        help=f"JPEG and WebP quality, 1 (smallest file) to 100 (default: {DEFAULT_QUALITY}, and lossless WebP stays "
        "lossless; other formats are lossless)",
    )
    p.add_argument(
        "--chroma",
        choices=tuple(CHROMA_SUBSAMPLING),
        default=DEFAULT_CHROMA,
        help="JPEG chroma subsampling: 444 keeps full colour resolution, 420 halves it for smaller files "
        "(default: %(default)s)",
    )
    p.add_argument("--scale", type=int, help="refuse a model of another scale (and pick the default model for it)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N (default: auto)")
    p.add_argument(
        "--tile", type=int, help=f"tile side in input pixels, at least {MIN_TILE} (default: only when needed, sized to memory)"
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=DEFAULT_TILE_OVERLAP,
        help="pixels shared by neighbouring tiles, blended (default: %(default)s, at most a quarter of the tile)",
    )
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="half precision (GPU)")
    precision.add_argument("--bf16", dest="precision", action="store_const", const="bf16",
                           help="bfloat16 (GPU, or a CPU with avx512_bf16 or amx_bf16: about 2x faster there)")
    p.add_argument("--tta", action="store_true", help="x8 self-ensemble: 8 flips/transposes averaged (8x slower)")
    add_max_pixels_option(p)
    p.set_defaults(precision="fp32")
    video = p.add_argument_group("videos")
    video.add_argument("--crf", type=int, default=DEFAULT_CRF,
                       help="video quality, 0 (lossless) to 51 (worst) for H.264 (default: %(default)s)")
    video.add_argument("--video-codec", default="auto",
                       help="video encoder, e.g. libx264, libx265, mpeg4 (default: the H.264 encoder PyAV has)")
    video.add_argument("--video-format", choices=tuple(CONTAINERS), default="mp4",
                       help="container of upscaled videos (default: %(default)s)")
    video.add_argument("--frames-dir", type=Path,
                       help="write each video's upscaled frames as DIR/<name>_sr/000001.png ... instead of a video")
    return p


@dataclass
class Job:
    """What every input handler shares: the upscaler and where outputs go."""

    upscaler: Upscaler
    out_dir: Path | None
    suffix: str
    format: str | None
    inputs: frozenset[Path]  # resolved paths of all inputs, which are never overwritten
    crf: int = DEFAULT_CRF
    video_codec: str = "auto"
    video_format: str = "mp4"
    frames_dir: Path | None = None
    quality: int | None = None  # None: DEFAULT_QUALITY, and a lossless WebP input stays lossless
    chroma: str = DEFAULT_CHROMA
    subfolders: dict[Path, Path] = field(default_factory=dict)  # input -> its folder under the folder/glob given
    claimed: dict[Path, Path] = field(default_factory=dict)  # resolved output -> its input

    def output_for(self, src: Path, suffix: str, folder: Path | None = None) -> Path:
        """`<stem><self.suffix><suffix>` in `folder`, else `out_dir`, else next to `src`.

        In `folder` or `out_dir`, an input found under a folder or glob keeps its sub-folder.
        Refuses to overwrite an input or an earlier output.
        """
        base = folder or self.out_dir
        parent = base / self.subfolders.get(src, Path()) if base is not None else src.parent
        dst = parent / f"{src.stem}{self.suffix}{suffix}"
        key = resolved(dst)
        if key in self.inputs:
            raise TorchSRError(f"{src}: its output {dst} would overwrite an input; use -o OUT_DIR or another --suffix")
        if key in self.claimed:
            raise TorchSRError(f"{src}: its output {dst} is already the output of {self.claimed[key]}")
        self.claimed[key] = src
        return dst


def upscale_image_file(src: Path, job: Job) -> Path:
    """Read, upscale and write one image, keeping bit depth, channels and colour profile."""
    from torch_sr.inference.image_io import read_image, write_image
    from torch_sr.inference.upscaler import NonFiniteOutputError

    image = read_image(src)
    suffix = f".{job.format}" if job.format else src.suffix
    if suffix.lower() not in IMAGE_SUFFIXES:  # a still GIF, a file without a suffix: read, but not writable so
        warnings.warn(f"{src}: {suffix or 'a file without a suffix'} is not an output format; writing PNG (--format)")
        suffix = ".png"
    dst = job.output_for(src, suffix)
    try:
        upscaled = job.upscaler.upscale_array(image.array)
    except NonFiniteOutputError as e:
        raise TorchSRError(f"{src}: {e}") from None
    quality, lossless = job.quality or DEFAULT_QUALITY, image.lossless_webp and job.quality is None
    write_image(dst, upscaled, image.icc_profile, quality=quality, chroma=job.chroma, lossless=lossless, exif=image.exif)
    return dst


def upscale_video_file(src: Path, job: Job) -> Path:
    """Upscale a video into a new video (or a folder of frames with --frames-dir), saying what became of its audio."""
    from tqdm import tqdm

    from torch_sr.inference.video import upscale_video, upscale_video_to_frames

    if job.frames_dir is not None:
        dst = job.output_for(src, "", folder=job.frames_dir)
        result = upscale_video_to_frames(src, dst, job.upscaler)
    else:
        dst = job.output_for(src, f".{job.video_format}")
        result = upscale_video(src, dst, job.upscaler, encoder=job.video_codec, crf=job.crf)
        tqdm.write(f"{src}: {result.frames} frames encoded with {result.encoder}", file=sys.stderr)
    for note in result.notes:
        tqdm.write(f"{src}: {note}", file=sys.stderr)
    return dst


# Input suffix -> handler. Folders are scanned for these suffixes; a file named explicitly with
# another suffix is tried as an image.
HANDLERS: dict[str, Callable[[Path, Job], Path]] = {
    **{suffix: upscale_image_file for suffix in IMAGE_SUFFIXES},
    **{suffix: upscale_video_file for suffix in VIDEO_SUFFIXES},
}


def collect_inputs(
    patterns: Sequence[str], skip_suffix: str = "", recursive: bool = False
) -> tuple[dict[Path, Path], list[str]]:
    """Expand files, folders and globs into de-duplicated files, plus error messages.

    Each file maps to its folder relative to the folder or the fixed start of the glob it was
    found under (`Path()` for files named explicitly): outputs under `-o` keep that structure, so
    `a/x.png` and `b/x.png` do not collide. Folders are scanned one level deep, or with
    `recursive` all the way down (symlinked folders are not entered: no loops). Folders and globs
    skip files whose name ends in `skip_suffix` (earlier outputs of this command); files named
    explicitly are always kept.
    """
    files: list[tuple[Path, Path]] = []
    errors: list[str] = []

    def earlier_output(p: Path) -> bool:
        return bool(skip_suffix) and p.stem.endswith(skip_suffix)

    def handled(folder: Path, names: Sequence[str]) -> list[Path]:
        found = (folder / n for n in names if Path(n).suffix.lower() in HANDLERS)
        return sorted(p for p in found if p.is_file() and not earlier_output(p))

    def scan(folder: Path) -> list[Path]:
        if not recursive:
            return handled(folder, os.listdir(folder))
        found = []
        for parent, dirs, names in os.walk(folder):
            dirs.sort()
            found += handled(Path(parent), names)
        return found

    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = [(f, f.parent.relative_to(path)) for f in scan(path)]
            if not found:
                errors.append(f"{path}: no images or videos in this folder")
        elif path.exists() or not any(ch in pattern for ch in "*?["):
            found = [(path, Path())]  # a missing file is reported when it is read
        else:
            root = _fixed_start(pattern)
            matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True))
            found = [
                (f, f.parent.relative_to(root))
                for m in matches
                for f in (scan(m) if m.is_dir() else [m])
                if not earlier_output(f)
            ]
            if not found:
                errors.append(f"{pattern}: no file matches")
        files += found
    unique: dict[Path, tuple[Path, Path]] = {}
    for f, sub in files:
        unique.setdefault(resolved(f), (f, sub))
    return dict(unique.values()), errors


def _fixed_start(pattern: str) -> Path:
    """The folder a glob searches from: its leading components without wildcards (`photos` of `photos/**/*.jpg`)."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if any(ch in part for ch in "*?[")), len(parts))
    return Path(*parts[:fixed]) if fixed else Path()


def resolved(path: Path) -> Path:
    """`path.resolve()`, or the absolute path when it cannot be resolved (a symbolic link loop, reported
    by name when the file is read)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _print_warning
        return run(args)


def run(args: argparse.Namespace) -> int:
    """Upscale every input named by parsed `args`; returns the exit status."""
    from tqdm import tqdm

    from torch_sr.model_files.model_file import load_model
    from torch_sr.device import resolve_device
    from torch_sr.inference.upscaler import Upscaler
    from torch_sr.inference.video import check_crf, choose_encoder
    from torch_sr.progress import progress_bar

    if args.tile is not None and args.tile < MIN_TILE:
        raise TorchSRError(
            f"--tile {args.tile}: tiles under {MIN_TILE} pixels show their seams; use {MIN_TILE} or more, or leave "
            "--tile out (tiles sized to the memory)"
        )
    if args.tile_overlap < 0:
        raise TorchSRError(f"--tile-overlap {args.tile_overlap}: must be >= 0")
    if "/" in args.suffix or "\\" in args.suffix:
        raise TorchSRError(f"--suffix {args.suffix!r}: must not contain a path separator; choose the folder with -o OUT_DIR")
    if args.scale is not None and args.scale < 1:
        raise TorchSRError(f"--scale {args.scale}: must be a positive scale factor (2, 4, ...)")
    set_max_pixels(args.max_pixels)
    from torch_sr.files import check_output_folder

    for folder, option in ((args.out_dir, "-o/--out-dir"), (args.frames_dir, "--frames-dir")):
        if folder is not None:
            check_output_folder(folder, option)
    paths, errors = collect_inputs(args.inputs, args.suffix, recursive=args.recursive)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if not paths:
        raise TorchSRError("nothing to upscale")
    if args.frames_dir is None and any(p.suffix.lower() in VIDEO_SUFFIXES for p in paths):
        args.video_codec = choose_encoder(args.video_codec)  # once, before any work: a bad name or --crf stops here
        check_crf(args.video_codec, args.crf)
    device = resolve_device(args.device)
    model_path = resolve_model(args.model) if args.model else default_model_path(args.scale or 4)
    model = load_model(model_path, device=device)
    if args.scale is not None and model.info.scale != args.scale:
        raise TorchSRError(f"{model_path} upscales x{model.info.scale}, not x{args.scale} (--scale {args.scale})")
    upscaler = Upscaler(
        model,
        device=device,
        precision=args.precision,
        tile=args.tile if args.tile is not None else "auto",
        tile_overlap=args.tile_overlap,
        tta=args.tta,
        progress=True,
    )
    job = Job(
        upscaler, args.out_dir, args.suffix, args.format, frozenset(resolved(p) for p in paths),
        crf=args.crf, video_codec=args.video_codec, video_format=args.video_format, frames_dir=args.frames_dir,
        quality=args.quality, chroma=args.chroma, subfolders=paths,
    )
    done = 0
    for src in progress_bar(iterable=list(paths), unit="file", enabled=len(paths) > 1):
        try:
            dst = HANDLERS.get(src.suffix.lower(), upscale_image_file)(src, job)
        except TorchSRError as e:
            errors.append(str(e))
            tqdm.write(f"error: {e}", file=sys.stderr)
            continue
        done += 1
        tqdm.write(f"{src} -> {dst}")
    if errors:
        print(f"{done} upscaled, {len(errors)} failed", file=sys.stderr)
    return EXIT_OK if not errors else (EXIT_PARTIAL if done else EXIT_ERROR)
