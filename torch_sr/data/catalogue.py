"""The dataset catalogue: `div2k`, `bsds500`, `set5`, `set14` by name, or any folder of images.

Images live under a data root (`--data-root`, else `$TORCH_SR_DATA`, else the user cache dir). For
each split the catalogue knows the folders where the standard distributions put the images and the
archive that provides them; a missing split is downloaded, verified and extracted when allowed
(`torch_sr.data.download`), and otherwise the error says which file to place where.

Splits of the original project:
- DIV2K 800/100/100: train = the 800 images of `DIV2K_train_HR` (0001-0800); val = the 100 images of
  `DIV2K_valid_HR` (0801-0900); test = the same 100 validation images, because the official test
  HR images (0901-1000) were never published — the 100 public validation images are what every
  paper reports "DIV2K" results on.
- BSDS500 200/100/200: the archive's own `train`, `val` and `test` folders.
- Set5 / Set14: benchmark sets; every split gives the whole set.

Checksums: none of the upstream sites publishes one, and we record sha256/size only where we know
them for certain, so these archives are verified by their own integrity checks (zip/gzip CRCs) and
by the exact image counts below.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from torch_sr.data.download import Archive, ExtractionSpaceError, fetch
from torch_sr.data.image_files import IMAGE_EXTENSIONS, list_images
from torch_sr.errors import DatasetError

SPLITS = ("train", "val", "test")
DISPLAY_NAMES = {"div2k": "DIV2K", "bsds500": "BSDS500", "set5": "Set5", "set14": "Set14"}
DATA_ROOT_ENV = "TORCH_SR_DATA"

# DIV2K: the official site of the NTIRE 2017 challenge (ETH Zurich). BSDS500: Berkeley's BSR
# tarball. Set5/Set14: the EDSR authors' `benchmark.tar` (SNU), the mirror the EDSR/RCAN/BasicSR
# line of work points to; its `HR` folders hold the original Set5/Set14 images (Set14's bridge is
# grayscale), the same files as ../shared/data/benchmark.
ARCHIVES: dict[str, Archive] = {
    "DIV2K_train_HR.zip": Archive(
        "DIV2K_train_HR.zip",
        "http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
        {"DIV2K_train_HR": ("DIV2K/DIV2K_train_HR", 800)},
    ),
    "DIV2K_valid_HR.zip": Archive(
        "DIV2K_valid_HR.zip",
        "http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
        {"DIV2K_valid_HR": ("DIV2K/DIV2K_valid_HR", 100)},
    ),
    "BSR_bsds500.tgz": Archive(
        "BSR_bsds500.tgz",
        "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz",
        {
            f"BSR/BSDS500/data/images/{split}": (f"BSR/BSDS500/data/images/{split}", count)
            for split, count in (("train", 200), ("val", 100), ("test", 200))
        },
    ),
    "benchmark.tar": Archive(
        "benchmark.tar",
        "https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
        {f"benchmark/{name}/HR": (f"benchmark/{name}/HR", count) for name, count in (("Set5", 5), ("Set14", 14))},
    ),
}


@dataclass(frozen=True)
class SplitSource:
    """Where one split's images may lie under the root (first match wins) and which archive makes them.

    `folders[0]` is where the archive's extraction puts them.
    """

    folders: tuple[str, ...]
    count: int
    archive: str


def _benchmark(name: str, count: int) -> dict[str, SplitSource]:
    folders = (f"benchmark/{name}/HR", f"benchmark/{name}", f"{name}", f"{name}/HR", f"{name}_HR")
    return {split: SplitSource(folders, count, "benchmark.tar") for split in SPLITS}


_DIV2K_VALID = SplitSource(("DIV2K/DIV2K_valid_HR", "DIV2K_valid_HR"), 100, "DIV2K_valid_HR.zip")
DATASETS: dict[str, dict[str, SplitSource]] = {
    "div2k": {
        "train": SplitSource(("DIV2K/DIV2K_train_HR", "DIV2K_train_HR"), 800, "DIV2K_train_HR.zip"),
        "val": _DIV2K_VALID,
        "test": _DIV2K_VALID,
    },
    "bsds500": {
        split: SplitSource(
            (f"BSR/BSDS500/data/images/{split}", f"BSDS500/data/images/{split}", f"BSDS500/{split}")
            + (("BSDS200", "train/BSDS200") if split == "train" else ()),
            count,
            "BSR_bsds500.tgz",
        )
        for split, count in (("train", 200), ("val", 100), ("test", 200))
    },
    "set5": _benchmark("Set5", 5),
    "set14": _benchmark("Set14", 14),
}


def default_data_root() -> Path:
    """`$TORCH_SR_DATA`, else `<user cache dir>/torch_sr/datasets`."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        cache = Path(os.environ["LOCALAPPDATA"])
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "torch_sr" / "datasets"


def _find(root: Path, source: SplitSource, label: str) -> list[Path] | None:
    for rel in source.folders:
        images = list_images(root / rel)
        if images:
            if len(images) != source.count:
                raise DatasetError(
                    f"{label}: {root / rel} holds {len(images)} images, expected {source.count} (an incomplete "
                    f"copy?); remove the folder to download it again, or pass the folder's path instead of "
                    f"the dataset name to use it as it is"
                )
            return images
    return None


def _folder_images(spec: str, split: str) -> list[Path]:
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise DatasetError(
            f"unknown dataset {spec!r}: not one of {', '.join(DATASETS)} and not an existing folder of images"
        )
    images = list_images(folder) or list_images(folder / split)
    if not images:
        raise DatasetError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))} files in it and in {split}/)")
    return images


def dataset_name(spec: str) -> str:
    """How tables and logs name a dataset: 'set5' -> 'Set5'; a folder -> its name."""
    return DISPLAY_NAMES.get(spec.lower()) or Path(spec).expanduser().resolve().name or spec


def resolve_images(
    spec: str,
    split: str = "train",
    data_root: str | Path | None = None,
    download: bool = True,
    progress: bool | None = None,
) -> list[Path]:
    """The sorted image paths of a catalogue dataset's split, or of a folder of images.

    A folder spec lists the images directly inside it, or, when it holds none, those in its `split`
    sub-folder. For a catalogue name, a split missing from `data_root` is downloaded when `download`
    is true (a progress bar on stderr when `progress`, default: when stderr is a terminal).
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    name = spec.lower()
    if name not in DATASETS:
        return _folder_images(spec, split)
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    source = DATASETS[name][split]
    label = f"{name} ({split})"
    images = _find(root, source, label)
    if images is not None:
        return images
    archive = ARCHIVES[source.archive]
    try:
        if not download:
            raise DatasetError("downloading is disabled")
        fetch(archive, root, progress=sys.stderr.isatty() if progress is None else progress)
    except ExtractionSpaceError as e:  # the archive is there and fine: only room is missing
        raise DatasetError(f"{label}: {e}") from None
    except DatasetError as e:
        looked = ", ".join(str(root / rel) for rel in source.folders)
        raise DatasetError(
            f"{label} not found under the data root {root} (looked in {looked}) and could not be fetched: {e}. "
            f"Put {archive.filename} (from {archive.url}) in {root / 'downloads'}/ and run again (it is verified "
            f"and extracted), or extract it so that {root / source.folders[0]} holds the {source.count} images. "
            f"--data-root or ${DATA_ROOT_ENV} choose another data root."
        ) from None
    images = _find(root, source, label)
    if images is None:  # the archive was verified to provide this folder; only a bug gets here
        raise DatasetError(f"{label}: {archive.filename} was extracted but {root / source.folders[0]} is empty")
    return images
