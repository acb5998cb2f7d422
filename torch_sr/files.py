"""Safe reading and atomic writing of weight files (`.pth`/`.pt`/`.ckpt` and `.safetensors`)."""
from __future__ import annotations

import errno
import os
import pickle
import re
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

from torch_sr.errors import CheckpointError, TorchSRError, first_line

SAFETENSORS_SUFFIX = ".safetensors"
# Bytes a weights file may declare beyond its own size (zip members, tensor views) before it is refused.
INFLATION_SLACK = 1 << 20
# Why a write fails for lack of room rather than because of what was written.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class OutputPathError(TorchSRError):
    """A path no file can be written at (a folder, under a file, in a read-only place)."""


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _storage_failure(e: BaseException | None) -> OSError | None:
    """The disk-full (or quota, or file-size) error behind `e`, if that is why a write failed; torch.save
    reports it as a RuntimeError whose context is the OSError."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through `write(f)` into a temporary sibling, then rename it over `path`.

    An interrupted or failing write leaves the previous file (if any) untouched and no temporary
    file behind; a full disk is a `TorchSRError` naming the file and what was kept. The file gets
    the permissions `open()` would give it (0666 less the umask), not `mkstemp`'s owner-only 0600,
    so shared models stay readable by others.
    """
    path = Path(path)
    check_output_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        if _storage_failure(e) is not None:
            raise TorchSRError(f"{path}: could not be written ({e.strerror}); nothing was written") from None
        raise OutputPathError(f"{path}: cannot write there ({e.strerror or e}); choose another place") from None
    try:
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        full = _storage_failure(e)
        if full is None:
            raise
        kept = f"the previous {path.name} is unchanged" if path.exists() else "nothing was written"
        raise TorchSRError(f"{path}: could not be written ({full.strerror}); {kept}") from None
    return path


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing one of `folder` and its parents, when it is a file: nothing can be made in it."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


def check_output_folder(folder: str | os.PathLike, option: str = "") -> None:
    """Refuse, before any work, a folder to write into that is a file (or lies under one)."""
    folder = Path(folder)
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        named = f"{option} {folder}" if option else str(folder)
        where = "is" if blocker == folder else f"lies under {blocker}, which is"
        raise OutputPathError(f"{named}: {where} a file, not a folder; choose another {option or 'folder'}")


def check_output_file(path: str | os.PathLike, option: str = "") -> None:
    """Refuse, before any work, a file to write that is a folder or lies under a file."""
    path = Path(path)
    named = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise OutputPathError(f"{named}: is a folder; give a file name")
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise OutputPathError(f"{named}: lies under {blocker}, which is a file, not a folder; choose another path")


def refuse_existing(path: str | os.PathLike) -> None:
    """Refuse, before any work, a path no file can be written at (`check_output_file`), and raise a
    `CheckpointError` if `path` exists: tools that derive a new model file never replace one."""
    check_output_file(path)
    if os.path.exists(path):
        raise CheckpointError(f"{path} exists; choose a new file name (model files are never overwritten)")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save` that never leaves a half-written file in place of a good one."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Atomically write tensors (made contiguous, one copy per shared storage) as safetensors."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().clone() for k, v in tensors.items()}, metadata=metadata)
    return atomic_write(path, lambda f: f.write(data))


def _file_size(path: Path) -> int:
    """The size of the regular file `path`, or a `CheckpointError` saying why it cannot be read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        dangling = " (a symbolic link to a missing file)" if path.is_symlink() else ""
        raise CheckpointError(f"model file not found: {path}{dangling}") from None
    except OSError as e:  # e.g. a symbolic link loop, a permission error
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"model file not found: {path} (it is a directory)")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file")
    return st.st_size


def _read_head(path: Path, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None


def _looks_like_text(head: bytes) -> bool:
    for cut in range(4):  # the head may end inside a multi-byte character
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text.lstrip("\ufeff"))
    return False


def describe_non_weights(head: bytes) -> str | None:
    """What a file starting with `head` is, when it is clearly not a weights file (else None)."""
    if not head:
        return "an empty file"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the model itself: fetch the real file with `git lfs pull`"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file: decompress it first"
    if _looks_like_text(head):
        start = head.lstrip().lower()
        if start.startswith((b"<!doctype html", b"<html")):
            return "an HTML page (a download that saved a web page instead of the file?)"
        first = head.decode("utf-8", "replace").strip().splitlines()[0][:60]
        return f"a text file starting with {first!r}"
    return None


def _file_kind(path: Path, size: int) -> str:
    """'zip' (PyTorch's format), 'pickle' (legacy PyTorch) or 'safetensors', judged by content;
    anything else is a `CheckpointError` saying what the file is."""
    head = _read_head(path)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocol 2-5
        return "pickle"
    what = describe_non_weights(head)
    if what is not None:
        raise CheckpointError(f"{path}: not a model file: it is {what}")
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        raise CheckpointError(f"{path}: not a valid .safetensors file (its header is not a safetensors header)")
    raise CheckpointError(
        f"{path}: not a model file: its content is neither PyTorch's (zip or pickle) nor safetensors"
    )


def _check_zip(path: Path, size: int) -> None:
    """Refuse a damaged zip container, or members that would inflate beyond the file's own size
    (PyTorch stores them uncompressed), before `torch.load` allocates anything."""
    try:
        with zipfile.ZipFile(path) as z:
            declared = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch weights file (damaged zip container: {e})") from None
    if declared > size + INFLATION_SLACK:
        raise CheckpointError(
            f"{path}: refused: its zip members would inflate to {declared:,} bytes from a file of {size:,} "
            "(PyTorch writes them uncompressed); re-save the weights with torch.save"
        )


class _Stub:
    """What any pickled global builds while a legacy file is scanned: accepts everything, keeps nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


class _StorageScan(pickle._Unpickler):
    """Unpickles with every global replaced by a `_Stub` subclass (so no code of the file's runs) and
    records, per root storage, the bytes its persistent id declares: torch.load allocates that much.

    Python's own unpickler, not the C one: the C unpickler keeps its memo in an array sized by the
    largest index a PUT names, so one forged opcode (`LONG_BINPUT 1011137045`) makes it allocate and
    clear gigabytes; this one keeps a dict (as torch.load's weights-only unpickler does)."""

    def __init__(self, f: IO[bytes], declared: dict[Any, int]) -> None:
        super().__init__(f, encoding="latin1")
        self.declared = declared
        self.stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> type:
        key = (str(module), str(name))
        if key not in self.stubs:
            self.stubs[key] = type("Stub", (_Stub,), {"pickled_name": key[1]})
        return self.stubs[key]

    def persistent_load(self, pid: Any) -> _Stub:
        if isinstance(pid, tuple) and len(pid) == 6 and pid[0] in ("storage", b"storage"):
            storage_type, root_key, numel = pid[1], pid[2], pid[4]
            if type(numel) is not int or numel < 0:
                raise ValueError(f"a storage declares {type(numel).__name__} {str(numel)[:40]} elements")
            if root_key not in self.declared:  # views of a storage allocate nothing more
                dtype = _LEGACY_STORAGE_DTYPES.get(getattr(storage_type, "pickled_name", None))
                self.declared[root_key] = numel * (torch._utils._element_size(dtype) if dtype else 1)
        return _Stub()


_LEGACY_STORAGE_DTYPES = {name: dtype for dtype, name in torch.storage._dtype_to_storage_type_map().items()}


def _check_legacy(path: Path, size: int) -> None:
    """Refuse a legacy (pre-1.6, non-zip) file whose storages declare more bytes than the file holds.

    That format is four pickles (magic number, protocol, system info, the object) followed by each
    storage's raw bytes; torch.load allocates every storage at the size the object's pickle declares
    before reading its data. The pickle is scanned first, with stubs for every global, so nothing of
    the file's executes and nothing larger than the pickle is built.
    """
    from torch.serialization import MAGIC_NUMBER

    declared: dict[Any, int] = {}
    try:
        with open(path, "rb") as f:
            if _StorageScan(f, declared).load() != MAGIC_NUMBER:
                raise CheckpointError(
                    f"{path}: a plain Python pickle, not a PyTorch weights file (torch.save writes a zip archive); "
                    "where it was made, re-save the weights with torch.save(model.state_dict(), 'weights.pth')"
                )
            for _ in range(3):  # protocol, system info, then the object
                _StorageScan(f, declared).load()
    except CheckpointError:
        raise
    except KeyError as e:  # the Python unpickler's word for an unknown opcode
        raise CheckpointError(f"{path}: not a readable PyTorch weights file (damaged: unknown pickle opcode {e})") from None
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in arbitrary ways
        raise CheckpointError(f"{path}: not a readable PyTorch weights file (damaged: {first_line(e)})") from None
    total = sum(declared.values())
    if total > size + INFLATION_SLACK:
        raise CheckpointError(
            f"{path}: refused: its storages declare {total:,} bytes from a file of {size:,} (a legacy .pth holds "
            "them raw); the file is damaged or forged"
        )


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside nested dicts, lists and tuples (iteratively: nesting depth costs no stack)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)


def check_tensors(obj: Any, path: Path, size: int) -> None:
    """Refuse tensors that are not plain dense arrays backed by their own data in the file:
    sparse/quantized/complex ones, and views (e.g. stride 0) claiming more elements than their storage
    holds, which would make a model built from their shapes far larger than the file."""
    claimed = 0
    for t in _tensors(obj):
        if t.layout != torch.strided or t.is_quantized or t.is_complex() or t.device.type != "cpu":
            kind = "sparse" if t.layout != torch.strided else "quantized" if t.is_quantized else str(t.dtype)
            raise CheckpointError(f"{path}: holds a {kind} tensor; model weights are dense real tensors")
        nbytes = t.numel() * t.element_size()
        if nbytes > t.untyped_storage().nbytes():
            raise CheckpointError(
                f"{path}: refused: a tensor of shape {tuple(t.shape)} (stride {t.stride()}) claims {nbytes:,} "
                f"bytes but its data in the file is {t.untyped_storage().nbytes():,} bytes"
            )
        claimed += nbytes
    if claimed > 2 * size + INFLATION_SLACK:
        raise CheckpointError(
            f"{path}: refused: its tensors claim {claimed:,} bytes from a file of {size:,} (views sharing data)"
        )


def _unpickling_refusal(path: Path, e: pickle.UnpicklingError) -> CheckpointError:
    message = str(e)
    found = re.search(r"GLOBAL (\S+)", message)
    if found is None:  # the reason, without PyTorch's paragraphs on weights_only around it
        boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
        reasons = [p.strip() for p in message.split("\n\n") if p.strip() and not p.strip().startswith(boilerplate)]
        reason = reasons[0].removeprefix("WeightsUnpickler error:").strip() if reasons else type(e).__name__
        detail = reason.splitlines()[0][:200]
        return CheckpointError(f"{path}: not a readable PyTorch weights file (damaged or unsupported: {detail})")
    return CheckpointError(
        f"{path}: refused to load: the file contains pickled Python objects other than tensors and "
        f"plain containers ({found.group(1)}), and loading it could execute code. If you trust its "
        "source, re-save just its weights: torch.save(model.state_dict(), 'clean.pth')."
    )


def read_weights(path: str | os.PathLike) -> tuple[Any, dict[str, str]]:
    """Load a weights file without executing pickled code, with memory bounded by the file's size.

    Returns the loaded object (for `.safetensors`, the dict of tensors) and the safetensors
    metadata (empty for torch files). Files that would need arbitrary Python objects to unpickle
    are refused; so is anything that is not a weights file (text, HTML, a Git LFS pointer), is
    damaged, or declares more data than it holds. Every failure is a `CheckpointError` naming the file.
    """
    path = Path(path)
    size = _file_size(path)
    kind = _file_kind(path, size)
    if kind == "safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"{path}: not a valid .safetensors file ({e})") from None
        return tensors, metadata
    if kind == "zip":
        _check_zip(path, size)
    else:
        _check_legacy(path, size)
    try:
        with open(path, "rb") as f:  # an open file: torch.load would pick its loader by the name's suffix
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise _unpickling_refusal(path, e) from None
    except MemoryError:
        raise CheckpointError(f"{path}: refused: it declares more data than fits in memory") from None
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in arbitrary ways (KeyError, IndexError, ...)
        raise CheckpointError(f"{path}: not a readable PyTorch weights file (damaged: {first_line(e)})") from None
    check_tensors(obj, path, size)
    return obj, {}
