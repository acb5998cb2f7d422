"""load_model / save_model: every accepted file shape, safe loading, atomic saving."""
import os
import pickle
from pathlib import Path

import pytest
import torch

from reference_archs import BasicSRRRDBNet, ESRGANNewArch, ESRGANOldArch, randomize_
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.files import atomic_torch_save, atomic_write
from torch_sr.model_files.model_file import load_model, read_model_file, save_model
from torch_sr.errors import CheckpointError

SMALL = dict(rrdb_channels=8, growth_channels=4, num_basic_blocks=2)
X = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(0))


def _same_function(a, b):
    with torch.no_grad():
        torch.testing.assert_close(a(X), b(X), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_own_files_need_no_hyperparameters(tmp_path, suffix):
    model = randomize_(RRDBNet(scale_factor=2, use_subpixel_conv=True, **SMALL)).eval()
    path = save_model(model, tmp_path / f"m{suffix}", meta={"stage": "psnr", "steps": 10})
    loaded = load_model(path)
    assert loaded.hparams == model.hparams and loaded.meta == {"stage": "psnr", "steps": 10}
    assert not loaded.training
    _same_function(loaded, model)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"params": sd},
        lambda sd: {"params_ema": sd, "params": {k: torch.zeros_like(v) for k, v in sd.items()}},
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd},
        lambda sd: {"net": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
    ids=["bare", "params", "params_ema", "state_dict", "model", "net+module", "module"],
)
@pytest.mark.parametrize("ref_cls", [ESRGANOldArch, ESRGANNewArch, BasicSRRRDBNet], ids=["a", "b", "c"])
def test_foreign_wrapped_state_dicts(tmp_path, wrap, ref_cls):
    kwargs = {ESRGANOldArch: dict(nf=8, nb=2, gc=4), ESRGANNewArch: dict(nf=8, nb=2, gc=4),
              BasicSRRRDBNet: dict(num_feat=8, num_block=2, num_grow_ch=4)}[ref_cls]
    ref = randomize_(ref_cls(**kwargs)).eval()
    torch.save(wrap(ref.state_dict()), tmp_path / "foreign.pth")
    _same_function(load_model(tmp_path / "foreign.pth"), ref)


def test_foreign_safetensors(tmp_path):
    from safetensors.torch import save_file

    ref = randomize_(ESRGANNewArch(nf=8, nb=2, gc=4)).eval()
    save_file(ref.state_dict(), tmp_path / "esrgan.safetensors")
    _same_function(load_model(tmp_path / "esrgan.safetensors"), ref)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = {"state_dict": _Exploit(str(marker))}
    if writer == "pickle":
        with open(tmp_path / "evil.pth", "wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, tmp_path / "evil.pth")
    expected = "a plain Python pickle, not a PyTorch weights file" if writer == "pickle" else "refused to load"
    with pytest.raises(CheckpointError, match=expected):
        load_model(tmp_path / "evil.pth")
    assert not marker.exists()


def test_a_forbidden_global_is_named_without_pytorchs_advice_to_load_unsafely(tmp_path):
    """torch.load's own message ends by suggesting weights_only=False; ours names the global and the safe way."""
    torch.save({"state_dict": _Exploit(str(tmp_path / "pwned"))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "evil.pth")
    assert "(io.open)" in str(e.value) or "(builtins.open)" in str(e.value), str(e.value)
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)


def test_whole_pickled_module_is_refused(tmp_path):
    torch.save(RRDBNet(**SMALL), tmp_path / "module.pth")
    with pytest.raises(CheckpointError, match=r"module\.pth: refused to load"):
        load_model(tmp_path / "module.pth")


@pytest.mark.parametrize(
    "content,match",
    [
        ({"optimizer": {"lr": 1}}, r"no weights found: top-level keys are 'optimizer'"),
        ({"fc.weight": torch.zeros(2, 2)}, r"'fc\.weight' match no known architecture"),
        ([1, 2, 3], "expected a dict of tensors, found list"),
    ],
)
def test_unknown_files_say_what_was_found_and_expected(tmp_path, content, match):
    torch.save(content, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=match):
        load_model(tmp_path / "x.pth")


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="model file not found"):
        load_model(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_model(tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a valid .safetensors"):
        load_model(tmp_path / "junk.safetensors")


def test_truncated_rrdb_layout_is_explained(tmp_path):
    sd = ESRGANNewArch(nf=8, nb=2, gc=4).state_dict()
    del sd["RRDB_trunk.1.RDB2.conv3.weight"]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"cut\.pth: weights do not fit RRDBNet.*absent, e\.g\. 'body\.1\.rdb2\.conv3\.weight'"):
        load_model(tmp_path / "cut.pth")


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    save_model(RRDBNet(**SMALL), path, meta={"version": "good"})
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_model(RRDBNet(**SMALL), path, meta={"version": "bad"})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pth"]  # no temporary left behind
    assert read_model_file(path).meta == {"version": "good"}


def test_atomic_save_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "state.pth"
    atomic_torch_save({"a": torch.ones(3)}, path)
    atomic_torch_save({"a": torch.zeros(2)}, path)
    assert torch.load(path, weights_only=True)["a"].tolist() == [0, 0]


def test_a_path_that_cannot_hold_a_file_is_one_clear_error(tmp_path):
    from torch_sr.errors import TorchSRError

    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    cases = [(tmp_path / "file" / "state.pth", "which is a file"), (tmp_path / "folder", "is a folder")]
    if Path("/proc/self").is_dir():  # Linux: a folder nothing can be created in
        cases.append((Path("/proc/state.pth"), "cannot write there"))
    for path, message in cases:
        with pytest.raises(TorchSRError, match=message):
            atomic_torch_save({"a": torch.ones(1)}, path)
    assert (tmp_path / "file").read_bytes() == b"x" and not any((tmp_path / "folder").iterdir())


def test_prefers_ema_weights_in_own_files(tmp_path):
    model = RRDBNet(**SMALL)
    ema = randomize_(RRDBNet(**SMALL), seed=9)
    from torch_sr.model_files.model_file import model_payload

    payload = model_payload("rrdbnet", model.hparams, model.state_dict())
    payload["state_dict_ema"] = ema.state_dict()
    torch.save(payload, tmp_path / "ckpt.pth")
    _same_function(load_model(tmp_path / "ckpt.pth").eval(), ema.eval())
    _same_function(load_model(tmp_path / "ckpt.pth", prefer_ema=False).eval(), model.eval())


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
def test_saved_files_get_the_usual_permissions_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "m.pth", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
