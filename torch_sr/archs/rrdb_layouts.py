"""RRDBNet state dicts in the three published key layouts, converted to ours and described.

(a) old ESRGAN      `model.0`, `model.1.sub.{i}.RDB{k}.conv{j}.0`, `model.1.sub.{nb}`, `model.{3,6,8,10}`
(b) ESRGAN new arch `conv_first`, `RRDB_trunk.{i}.RDB{k}.conv{j}`, `trunk_conv`, `upconv{n}`, `HRconv`, `conv_last`
(c) BasicSR (ours)  `conv_first`, `body.{i}.rdb{k}.conv{j}`, `conv_body`, `conv_up{n}`, `conv_hr`, `conv_last`

All hyper-parameters except `residual_scaling` (0.2 everywhere in the wild) are read from the shapes.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from torch_sr.errors import CheckpointError

StateDict = dict[str, torch.Tensor]

_OLD_BLOCK = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d+)\.conv(\d+)\.0\.(weight|bias)$")
_OLD_TOP = re.compile(r"^model\.(\d+)\.(weight|bias)$")
_OLD_TRUNK = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
_NEW_RENAMES = [
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB(\d+)\.conv(\d+)\."), r"body.\1.rdb\2.conv\3."),
    (re.compile(r"^trunk_conv\."), "conv_body."),
    (re.compile(r"^upconv(\d+)\."), r"conv_up\1."),
    (re.compile(r"^HRconv\."), "conv_hr."),
]


def detect_layout(sd: StateDict) -> str | None:
    """'a', 'b' or 'c' when `sd` is an RRDBNet state dict in that layout, else None."""
    if "model.0.weight" in sd and "model.1.sub.0.RDB1.conv1.0.weight" in sd:
        return "a"
    if "conv_first.weight" in sd and "RRDB_trunk.0.RDB1.conv1.weight" in sd:
        return "b"
    if "conv_first.weight" in sd and "body.0.rdb1.conv1.weight" in sd:
        return "c"
    return None


def _from_old(sd: StateDict) -> StateDict:
    out: StateDict = {}
    top: dict[int, dict[str, torch.Tensor]] = {}
    trunk: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if m := _OLD_BLOCK.match(key):
            i, k, j, p = m.groups()
            out[f"body.{i}.rdb{k}.conv{j}.{p}"] = value
        elif m := _OLD_TRUNK.match(key):
            trunk.setdefault(int(m.group(1)), {})[m.group(2)] = value
        elif m := _OLD_TOP.match(key):
            top.setdefault(int(m.group(1)), {})[m.group(2)] = value
        else:
            raise CheckpointError(f"unexpected key {key!r} in an old-ESRGAN (model.*) state dict")
    if len(trunk) != 1 or 0 not in top or len(top) < 3:
        raise CheckpointError(
            "old-ESRGAN (model.*) state dict is incomplete: expected model.0 (first conv), model.1.sub.N "
            f"(trunk conv) and at least two convs after the trunk; found top-level convs {sorted(top)}"
        )
    names = {0: "conv_first", next(iter(trunk)): "conv_body"}
    tail = sorted(n for n in top if n >= 2)
    for idx, n in enumerate(tail[:-2], start=1):
        names[n] = f"conv_up{idx}"
    names[tail[-2]], names[tail[-1]] = "conv_hr", "conv_last"
    for n, params in top.items():
        for p, value in params.items():
            out[f"{names[n]}.{p}"] = value
    for p, value in next(iter(trunk.values())).items():
        out[f"conv_body.{p}"] = value
    return out


def _from_new_arch(sd: StateDict) -> StateDict:
    out: StateDict = {}
    for key, value in sd.items():
        for pattern, repl in _NEW_RENAMES:
            key, n = pattern.subn(repl, key)
            if n:
                break
        out[key] = value
    return out


def canonical_keys(sd: StateDict) -> StateDict | None:
    """An RRDBNet state dict in any of the three layouts renamed to ours (BasicSR's); None if `sd` is no RRDBNet."""
    layout = detect_layout(sd)
    if layout == "a":
        return _from_old(sd)
    if layout == "b":
        return _from_new_arch(sd)
    return None if layout is None else dict(sd)


def _count(sd: StateDict, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for key in sd if (m := regex.match(key))})


def infer_hparams(sd: StateDict) -> dict[str, Any]:
    """RRDBNet constructor arguments that reproduce a canonical state dict."""
    try:
        nf, in_ch = sd["conv_first.weight"].shape[:2]
        out_ch = sd["conv_last.weight"].shape[0]
        growth = sd["body.0.rdb1.conv1.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"RRDBNet state dict lacks {e.args[0]!r}") from None
    num_up = _count(sd, r"^conv_up(\d+)\.weight$")
    subpixel = num_up > 0 and sd["conv_up1.weight"].shape[0] == 4 * nf
    unshuffle_sq, rest = divmod(in_ch, out_ch)
    unshuffle = {1: 1, 4: 2, 16: 4}.get(unshuffle_sq) if rest == 0 else None
    if unshuffle is None or 2**num_up < unshuffle:
        raise CheckpointError(
            f"RRDBNet state dict: conv_first takes {in_ch} channels and conv_last gives {out_ch}; expected "
            "equal counts, or 4x/16x for pixel-unshuffled x2/x1 models"
        )
    return dict(
        scale_factor=2**num_up // unshuffle,
        img_channels=int(out_ch),
        rrdb_channels=int(nf),
        growth_channels=int(growth),
        num_basic_blocks=_count(sd, r"^body\.(\d+)\."),
        num_dense_blocks=_count(sd, r"^body\.0\.rdb(\d+)\."),
        num_residual_blocks=_count(sd, r"^body\.0\.rdb1\.conv(\d+)\.weight$"),
        residual_scaling=0.2,
        use_subpixel_conv=bool(subpixel),
        pixel_unshuffle=unshuffle,
    )
