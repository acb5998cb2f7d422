"""Deepen a trained SRVGGNetCompact without changing what it computes (Net2Net-style growth).

A compact model that has stopped improving can gain capacity without starting over: after every
`every`-th body conv we insert a conv whose kernel is the identity (a centred 1, zero bias) and a
PReLU with slope 1, which is the identity too. The deeper model gives exactly the old outputs, and
training (`init_weights`) continues from there. The shipped `default_x4` grew from 16 to 24, 32 and
40 convs this way, and `gan_x4` was grown to match it so that the two can be blended (see their cards).

    torch-sr-deepen trained.pth deeper.pth --every 2
"""
from __future__ import annotations

import torch

from torch_sr.model_files.model_file import ModelFile
from torch_sr.errors import CheckpointError, TorchSRError


def deepen(mf: ModelFile, every: int = 2) -> ModelFile:
    """`mf` with an identity conv + PReLU after every `every`-th of its `num_conv` body convs."""
    if mf.arch != "srvgg" or mf.hparams.get("act_type", "prelu") != "prelu":
        raise CheckpointError(
            f"{mf.source}: only srvgg models with PReLU activations can be deepened (an identity layer needs a "
            f"slope-1 PReLU), not {mf.arch} {mf.hparams}"
        )
    if every < 1:
        raise TorchSRError(f"every (--every) must be >= 1, got {every}")
    sd, n, feat = mf.state_dict, mf.hparams["num_conv"], mf.hparams["num_feat"]
    ref = sd["body.0.weight"]
    identity = torch.zeros(feat, feat, 3, 3, dtype=ref.dtype)
    identity[torch.arange(feat), torch.arange(feat), 1, 1] = 1
    layers = []  # (conv weight, conv bias, PReLU weight) for the first conv and each body conv
    for i in range(n + 1):
        layers.append((sd[f"body.{2 * i}.weight"], sd[f"body.{2 * i}.bias"], sd[f"body.{2 * i + 1}.weight"]))
        if i >= 1 and i % every == 0:
            layers.append((identity.clone(), torch.zeros(feat, dtype=ref.dtype), torch.ones(feat, dtype=ref.dtype)))
    out: dict[str, torch.Tensor] = {}
    for i, (weight, bias, slope) in enumerate(layers):
        out[f"body.{2 * i}.weight"], out[f"body.{2 * i}.bias"], out[f"body.{2 * i + 1}.weight"] = weight, bias, slope
    out[f"body.{2 * len(layers)}.weight"] = sd[f"body.{2 * (n + 1)}.weight"]
    out[f"body.{2 * len(layers)}.bias"] = sd[f"body.{2 * (n + 1)}.bias"]
    meta = {**mf.meta, "deepened_from": {"source": mf.source, "num_conv": n, "every": every}}
    return ModelFile(mf.arch, {**mf.hparams, "num_conv": len(layers) - 1}, out, meta, mf.source)
