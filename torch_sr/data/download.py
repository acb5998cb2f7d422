"""Fetching dataset archives: download, verify, extract into a temporary folder, rename into place.

Nothing half-done is ever left where the catalogue looks: a download grows in a temporary file that
is renamed only once its size (and sha256, where we know it) check out, and is abandoned when it
misses its deadline or minimum rate (`Pace`); an archive's members are counted and sized first, it
is extracted into a temporary folder beside the destination, its image folders are counted and their
images' declared sizes checked, and only then are they renamed into place. A broken archive, a bomb
or a wrong count removes the temporary folder.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from torch_sr.files import STORAGE_ERRNOS, atomic_write
from torch_sr.data.image_files import image_info, list_images
from torch_sr.errors import DatasetError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """A downloadable archive and the image folders it provides.

    `folders` maps a folder inside the archive to (its place under the data root, its image count).
    `sha256`/`size` are recorded only where known for certain; otherwise the archive is verified by
    its own integrity checks (zip CRCs, gzip CRC, a readable tar) and by the image counts.
    """

    filename: str
    url: str
    folders: dict[str, tuple[str, int]] = field(default_factory=dict)
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Pace:
    """How long a download may take: each read waits at most `read_timeout` s, the whole download at most
    `deadline` s, and every `window` s it must have averaged at least `min_rate` bytes/s (a server that
    trickles a byte now and then would otherwise hold it open forever)."""

    read_timeout: float = 60.0
    deadline: float = 6 * 3600.0
    min_rate: float = 10_000.0
    window: float = 60.0

    def check(self, url: str, started: float, window_start: float, window_bytes: int, now: float) -> bool:
        """Raise a `DatasetError` when the download is over its deadline or too slow; True when a new
        rate window begins."""
        if now - started > self.deadline:
            raise DatasetError(f"download of {url} took longer than {self.deadline:g} s; run again to retry")
        elapsed = now - window_start
        if elapsed < self.window:
            return False
        if window_bytes / elapsed < self.min_rate:
            raise DatasetError(
                f"download of {url} is too slow: {window_bytes / elapsed:,.0f} bytes/s over the last {elapsed:.0f} s, "
                f"under {self.min_rate:,.0f}; run again later to retry"
            )
        return True


def _copy_verified(
    response: IO[bytes], out: IO[bytes], archive: Archive, total: int | None, progress: bool, pace: Pace = Pace()
) -> None:
    digest = hashlib.sha256()
    received = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc=archive.filename, file=sys.stderr)
    started = window_start = time.monotonic()
    window_bytes = 0
    read = getattr(response, "read1", response.read)  # what has arrived, without waiting for a full chunk
    try:
        while chunk := read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            window_bytes += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
            now = time.monotonic()
            if pace.check(archive.url, started, window_start, window_bytes, now):
                window_start, window_bytes = now, 0
    finally:
        if bar is not None:
            bar.close()
    expected_size = archive.size if archive.size is not None else total
    if expected_size is not None and received != expected_size:
        happened = "stopped after" if received < expected_size else "sent more than expected:"
        raise DatasetError(
            f"download of {archive.url} {happened} {received} of {expected_size} bytes; run again to retry"
        )
    if archive.sha256 is not None and digest.hexdigest() != archive.sha256.lower():
        raise DatasetError(
            f"download of {archive.url} is corrupt or was altered: sha256 {digest.hexdigest()} but expected "
            f"{archive.sha256}; nothing was kept. Run again, or fetch the file by hand and compare its sha256"
        )


def download(archive: Archive, dest: Path, progress: bool = False, pace: Pace = Pace()) -> Path:
    """Download `archive.url` to `dest` (atomically, verified, within `pace`); nothing is left on failure.

    Network failures raise `OSError` (`urllib.error.URLError`) or `http.client.HTTPException`; a
    download over its deadline or under its minimum rate, a `DatasetError`.
    """
    print(f"downloading {archive.url} -> {dest}", file=sys.stderr)
    with urllib.request.urlopen(archive.url, timeout=pace.read_timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        return atomic_write(dest, lambda out: _copy_verified(response, out, archive, total, progress, pace))


def _extract_all(path: Path, into: Path) -> None:
    """Unpack a zip or tar(.gz/.bz2/.xz); every member is read fully, so CRC errors surface here."""
    name = path.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            zf.extractall(into)  # member names are sanitised by zipfile; reading checks each CRC
        return
    with tarfile.open(path, "r:*") as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(into, filter="data")
            return
        for member in tf.getmembers():  # Python without extraction filters: refuse anything unsafe
            target = (into / member.name).resolve()
            if not (member.isfile() or member.isdir()) or into.resolve() not in (target, *target.parents):
                raise tarfile.TarError(f"unsafe member {member.name!r}")
        tf.extractall(into)


def _check_members(path: Path, archive: Archive) -> None:
    """Count and size the archive's members before extracting: image archives barely compress, so
    members inflating to far more than the archive, or far more files than the images expected,
    are refused (an archive of a few KB must not fill the disk)."""
    name = path.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            sizes = [info.file_size for info in zf.infolist()]
    else:
        with tarfile.open(path, "r:*") as tf:
            sizes = [m.size for m in tf.getmembers()]
    expected = sum(count for _, count in archive.folders.values())
    max_bytes = 2 * path.stat().st_size + (64 << 20)
    max_count = 2 * expected + 1000
    if len(sizes) > max_count or sum(sizes) > max_bytes:
        raise DatasetError(
            f"{path}: refused: its {len(sizes):,} members would inflate to {sum(sizes):,} bytes (at most {max_count:,} "
            f"members and {max_bytes:,} bytes expected of {archive.filename}); delete it and run again"
        )


def _check_images(path: Path, folder: Path, inner: str) -> None:
    """Every extracted image must be readable within the pixel limit (from its header)."""
    for image in list_images(folder):
        try:
            image_info(image)
        except DatasetError as e:
            reason = str(e).split(": ", 1)[-1]
            raise DatasetError(f"{path}: {inner}/{image.name} inside the archive: {reason}") from None


def extract(archive: Archive, path: Path, root: Path) -> None:
    """Extract `path` and move `archive.folders` under `root`; all or nothing per folder."""
    targets = {inner: (root / dest, count) for inner, (dest, count) in archive.folders.items()}
    pending = {}
    for inner, (target, count) in targets.items():
        if target.exists():
            found = len(list_images(target))
            if found != count:
                raise DatasetError(
                    f"{target} already exists but holds {found} images instead of {count}; remove it and run again"
                )
        else:
            pending[inner] = (target, count)
    if not pending:
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".extract-{archive.filename}-"))
    except OSError as e:
        raise _cannot_extract(path, root, e) from None
    try:
        try:
            _check_members(path, archive)
            _extract_all(path, tmp)
        except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError, ValueError) as e:
            if isinstance(e, OSError) and e.errno in UNWRITABLE:  # the disk, not the archive
                raise _cannot_extract(path, root, e) from None
            raise DatasetError(
                f"{path} is not a complete {archive.filename} archive ({e}); delete it and run again to download "
                f"it anew (from {archive.url})"
            ) from None
        for inner, (_, count) in pending.items():
            found = len(list_images(tmp / inner))
            if found != count:
                raise DatasetError(
                    f"{path}: expected {count} images in {inner}/ inside the archive, found {found}; the file is "
                    f"not the expected {archive.filename} (from {archive.url})"
                )
            _check_images(path, tmp / inner, inner)
        for inner, (target, count) in pending.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                (tmp / inner).rename(target)
            except OSError:  # another process (e.g. another DDP rank) got there first
                if len(list_images(target)) != count:
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ExtractionSpaceError(DatasetError):
    """The archive is fine but `root` cannot take its images (full, read-only, not ours): keep the archive."""


UNWRITABLE = STORAGE_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM}


def _cannot_extract(path: Path, root: Path, e: OSError) -> ExtractionSpaceError:
    return ExtractionSpaceError(
        f"cannot extract {path} into {root} ({e.strerror or e}); the archive is kept: free space or make the "
        "folder writable, or give another place with --data-root (or $TORCH_SR_DATA), and run again"
    )


def fetch(archive: Archive, root: Path, allow_download: bool = True, progress: bool = False) -> None:
    """Make `archive.folders` exist under `root`, from `root/downloads/<file>` or by downloading it.

    An archive the user placed in `downloads/` is kept; one we downloaded is deleted once extracted,
    or when it turns out broken, so that the next run downloads it again.
    """
    path = root / "downloads" / archive.filename
    placed = path.is_file()
    if not placed:
        if not allow_download:
            raise DatasetError(f"{path} is missing and downloading is disabled")
        try:
            download(archive, path, progress=progress)
        except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
            reason = e.reason if type(e) is urllib.error.URLError else e
            raise DatasetError(f"downloading {archive.url} failed ({reason})") from None
    try:
        extract(archive, path, root)
    except ExtractionSpaceError:
        raise  # a good archive: a rerun with room extracts it without downloading it again
    except DatasetError:
        if not placed:
            path.unlink(missing_ok=True)
        raise
    if not placed:
        path.unlink(missing_ok=True)
