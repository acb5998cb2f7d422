"""`load_model` / `save_model`: one entry point for every weights file a user may hold.

Our own files store the architecture name and hyper-parameters beside the weights. Foreign files
(bare or wrapped state dicts, any published RRDBNet layout, `.safetensors`) are unwrapped, renamed
to our layout and described from their tensor shapes, so no hyper-parameters are ever needed.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torch_sr.archs.description import unwrap
from torch_sr.archs.registry import GENERATORS, build_generator, generator_arch
from torch_sr.files import SAFETENSORS_SUFFIX, atomic_torch_save, read_weights, save_safetensors
from torch_sr.errors import CheckpointError
from torch_sr.state_dicts import StateDict, is_state_dict, check_state_dict_fits, unwrap_state_dict
from torch_sr.weights import resolve_model

FORMAT_KEY = "torch_sr_format"
FORMAT_VERSION = 1

@dataclass
class ModelFile:
    """A generator's architecture, hyper-parameters and canonical weights, wherever they came from."""

    arch: str
    hparams: dict[str, Any]
    state_dict: StateDict
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def check(self) -> None:
        """Refuse non-finite weights, and hyper-parameters that do not describe the tensors in the file,
        before anything is allocated: the declared network is built on the `meta` device (shapes only)
        and compared."""
        bound = max([len(self.state_dict), 16, *(max(t.shape, default=1) for t in self.state_dict.values())])
        too_big = max(_ints(self.hparams), key=abs, default=0)
        if abs(too_big) > bound:
            shown = str(too_big) if len(str(too_big)) <= 20 else f"a {len(str(too_big))}-digit number"
            raise CheckpointError(
                f"{self.source}: hyper-parameter value {shown} cannot describe its {len(self.state_dict)} tensors "
                f"(none larger than {bound} in any dimension); the file is damaged or forged"
            )
        try:
            with torch.device("meta"):
                skeleton = build_generator(self.arch, **self.hparams)
        except Exception as e:  # noqa: BLE001 - constructors reject bad values with any exception type
            raise CheckpointError(f"{self.source}: cannot build {self.arch} with {self.hparams}: {e}") from None
        check_state_dict_fits(skeleton, self.state_dict, self.source)
        for key, expected in skeleton.state_dict().items():
            tensor = self.state_dict[key]
            if expected.is_floating_point() and not tensor.is_floating_point():
                raise CheckpointError(
                    f"{self.source}: tensor {key!r} holds {str(tensor.dtype).removeprefix('torch.')} values; weights "
                    "must be floating point (float32, float16 or bfloat16): the file is damaged or not a model's weights"
                )
            # In the dtype the model computes in: float64 beyond float32's range would become inf there.
            if tensor.is_floating_point() and not tensor.to(expected.dtype).isfinite().all():
                raise CheckpointError(f"{self.source}: tensor {key!r} holds NaN or inf: the weights are broken")

    def build(self) -> nn.Module:
        """Instantiate the architecture and load the weights, with readable errors on mismatch."""
        self.check()
        model = build_generator(self.arch, **self.hparams)
        model.load_state_dict(self.state_dict)
        return model


def _ints(value: Any) -> Iterator[int]:
    """The integers in nested hyper-parameter values (booleans are not counted)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def describe_state_dict(sd: StateDict, source: str = "file") -> ModelFile:
    """Recognise a bare state dict's architecture (each registered one's reader, in turn) and return it in canonical form."""
    for arch in GENERATORS.values():
        try:
            found = arch.read_state_dict(sd)
        except CheckpointError as e:  # the readers know the tensors, not the file
            raise CheckpointError(f"{source}: {e}") from None
        if found is not None:
            hparams, canonical = found
            return ModelFile(arch.name, hparams, dict(canonical), source=source)
    sample = ", ".join(repr(k) for k in list(sd)[:5])
    others = [name for name in GENERATORS if name != "rrdbnet"]
    raise CheckpointError(
        f"{source}: {len(sd)} tensors with keys like {sample} match no known architecture; expected a torch_sr "
        "model file, an RRDBNet (ESRGAN) state dict in the old ESRGAN (model.0...), ESRGAN "
        "(conv_first, RRDB_trunk...) or BasicSR/Real-ESRGAN (conv_first, body...) layout, or the state dict of "
        f"one of this library's {', '.join(others)} models"
    )


def _own_file(obj: dict[str, Any], source: str, prefer_ema: bool) -> ModelFile:
    version = obj.get(FORMAT_KEY)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{source}: torch_sr file format {version!r} is newer than this library supports")
    arch = obj.get("arch")
    if not isinstance(arch, str) or arch not in GENERATORS:
        raise CheckpointError(f"{source}: unknown architecture {arch!r}; known: {', '.join(sorted(GENERATORS))}")
    ema = obj.get("state_dict_ema")
    sd = ema if prefer_ema and is_state_dict(ema) else obj.get("state_dict")
    if not is_state_dict(sd):
        raise CheckpointError(f"{source}: torch_sr file without a 'state_dict' of named tensors")
    hparams, meta = obj.get("hparams") or {}, obj.get("meta") or {}
    for key, value in (("hparams", hparams), ("meta", meta)):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise CheckpointError(
                f"{source}: corrupt torch_sr file: {key!r} is a {type(value).__name__}, not a dict with string keys"
            )
    return ModelFile(arch, dict(hparams), dict(sd), dict(meta), source)


def _metadata_json(metadata: dict[str, str], key: str, source: str) -> Any:
    try:
        return json.loads(metadata.get(key, "{}"))
    except (ValueError, RecursionError) as e:
        detail = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise CheckpointError(f"{source}: corrupt torch_sr metadata {key!r} ({detail})") from None


def _describe(obj: Any, metadata: dict[str, str], source: str, prefer_ema: bool) -> ModelFile:
    if FORMAT_KEY in metadata:  # our safetensors: description in the metadata
        try:
            version = int(metadata[FORMAT_KEY])
        except ValueError:
            raise CheckpointError(f"{source}: corrupt torch_sr metadata {FORMAT_KEY!r}") from None
        described = {
            FORMAT_KEY: version,
            "arch": metadata.get("arch"),
            "hparams": _metadata_json(metadata, "hparams", source),
            "meta": _metadata_json(metadata, "meta", source),
            "state_dict": obj,
        }
        return _own_file(described, source, prefer_ema)
    if isinstance(obj, dict) and FORMAT_KEY in obj:
        return _own_file(obj, source, prefer_ema)
    return describe_state_dict(unwrap_state_dict(obj, source, prefer_ema), source)


def read_model_file(path: str | os.PathLike, prefer_ema: bool = True) -> ModelFile:
    """Read any supported weights file into a canonical `ModelFile` whose hyper-parameters are checked
    against its tensors (no model is built). `path` may be a shipped model's name (`default_x4`).

    Every failure is a `CheckpointError` naming the file.
    """
    path = resolve_model(path, strict=True)
    source = str(path)
    obj, metadata = read_weights(path)
    try:
        mf = _describe(obj, metadata, source, prefer_ema)
        mf.check()
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - damaged content fails the shape readers in arbitrary ways
        raise CheckpointError(f"{source}: damaged model file: its content does not fit its format ({type(e).__name__}: {e})") from None
    return mf


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", prefer_ema: bool = True) -> nn.Module:
    """Load a generator from any supported file, or a shipped model by name (`default_x4`), in eval
    mode on `device`.

    The returned module carries `.info` (`GeneratorInfo`: scale, channels, ...), `.hparams` and `.meta` (what the file recorded about
    its training, empty for foreign files).
    """
    mf = read_model_file(path, prefer_ema=prefer_ema)
    model = mf.build()
    model.meta = mf.meta
    return model.to(device).eval()


def model_payload(arch: str, hparams: dict[str, Any], state_dict: StateDict, meta: dict[str, Any] | None = None) -> dict:
    """The dict our `.pth` model files hold: plain containers and tensors only (safe to load)."""
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "arch": arch,
        "hparams": hparams,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "meta": meta or {},
    }


def save_model_file(mf: ModelFile, path: str | os.PathLike) -> Path:
    """Atomically write a `ModelFile` as `.pth` or, by suffix, `.safetensors`."""
    if Path(path).suffix.lower() == SAFETENSORS_SUFFIX:
        metadata = {
            FORMAT_KEY: str(FORMAT_VERSION),
            "arch": mf.arch,
            "hparams": json.dumps(mf.hparams),
            "meta": json.dumps(mf.meta),
        }
        return save_safetensors(mf.state_dict, path, metadata)
    return atomic_torch_save(model_payload(mf.arch, mf.hparams, mf.state_dict, mf.meta), path)


def save_model(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Save a generator with its architecture description, so `load_model(path)` needs nothing else."""
    model = unwrap(model)
    try:
        arch = generator_arch(model).name
    except ValueError as e:
        raise CheckpointError(f"cannot save {type(model).__name__}: {e}") from None
    return save_model_file(ModelFile(arch, dict(model.hparams), model.state_dict(), dict(meta or {})), path)
