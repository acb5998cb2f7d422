"""Hostile and broken model files: one `CheckpointError` naming the file, memory bounded by the file's size."""
import io
import json
import pickle
import random
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from reference_archs import randomize_
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.archs.srvgg import SRVGGNetCompact
from torch_sr.model_files import model_file
from torch_sr.model_files.model_file import load_model, model_payload, save_model
from torch_sr.cli import inference, net_interpolation
from torch_sr.cli import test as test_cli
from torch_sr.cli.common import EXIT_ERROR
from torch_sr.errors import CheckpointError, TorchSRError

TINY = dict(scale_factor=2, num_feat=4, num_conv=2)


def tiny_srvgg() -> SRVGGNetCompact:
    return SRVGGNetCompact(**TINY)


@pytest.mark.parametrize(
    "content,what",
    [
        (b"", "an empty file"),
        (b"hello world\nthis is a README\n", "a text file starting with 'hello world'"),
        (b"  <!DOCTYPE html><html><body>404 Not Found</body></html>", "an HTML page"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 67040\n", "a Git LFS pointer"),
        (b"\x1f\x8b\x08\x00" + bytes(40), "a gzip-compressed file"),
    ],
    ids=["empty", "text", "html", "lfs", "gzip"],
)
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_files_that_are_not_models_are_named_for_what_they_are(tmp_path, content, what, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    message = str(e.value)
    assert message.startswith(f"{path}: not a model file: it is {what}")
    assert "weights_only" not in message and "execute code" not in message


def _own_payload(**changes) -> dict:
    model = tiny_srvgg()
    return {**model_payload("srvgg", dict(model.hparams), model.state_dict()), **changes}


@pytest.mark.parametrize("key,value", [("hparams", [1, 2]), ("meta", "a string"), ("hparams", {1: 2})])
def test_own_file_with_hparams_or_meta_of_the_wrong_type(tmp_path, key, value):
    torch.save(_own_payload(**{key: value}), tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=rf"m\.pth: corrupt torch_sr file: '{key}' is a"):
        load_model(tmp_path / "m.pth")


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("hparams", "[1, 2]", "'hparams' is a list"),
        ("meta", '"a string"', "'meta' is a str"),
        ("meta", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("hparams", "{not json", "corrupt torch_sr metadata 'hparams'"),
    ],
    ids=["hparams-list", "meta-str", "deep-json", "bad-json"],
)
def test_own_safetensors_with_bad_metadata(tmp_path, key, value, match):
    from safetensors.torch import save_file

    model = tiny_srvgg()
    metadata = {"torch_sr_format": "1", "arch": "srvgg", "hparams": json.dumps(model.hparams), "meta": "{}", key: value}
    save_file(model.state_dict(), tmp_path / "m.safetensors", metadata=metadata)
    with pytest.raises(CheckpointError, match=match):
        load_model(tmp_path / "m.safetensors")


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")
def test_sparse_tensor_is_refused(tmp_path):
    sd = tiny_srvgg().state_dict()
    sd["body.0.weight"] = sd["body.0.weight"].to_sparse()
    torch.save(sd, tmp_path / "sparse.pth")
    with pytest.raises(CheckpointError, match=r"sparse\.pth: holds a sparse tensor"):
        load_model(tmp_path / "sparse.pth")


def test_symlink_loop_is_reported_as_a_loop_not_as_missing(tmp_path):
    loop = tmp_path / "loop.pth"
    loop.symlink_to(loop)
    with pytest.raises(CheckpointError, match=r"loop\.pth: cannot be read \(Too many levels of symbolic links\)"):
        load_model(loop)


def _forbid_real_builds(monkeypatch):
    """Make building any network outside the `meta` device a test failure."""
    real = model_file.build_generator

    def spy(*args, **kwargs):
        assert torch.empty(0).device.type == "meta", "a network was built before its hparams were checked"
        return real(*args, **kwargs)

    monkeypatch.setattr(model_file, "build_generator", spy)


def test_declared_hparams_larger_than_the_tensors_are_refused_before_building(tmp_path, monkeypatch):
    """The issue's 1.7 KB file declaring num_feat 3000 x num_conv 100 (a ~32 GB network)."""
    torch.save(_own_payload(hparams={**TINY, "num_feat": 3000, "num_conv": 100}), tmp_path / "big.pth")
    assert (tmp_path / "big.pth").stat().st_size < 8000
    _forbid_real_builds(monkeypatch)
    with pytest.raises(CheckpointError, match=r"big\.pth: hyper-parameter value 3000 cannot describe its \d+ tensors"):
        load_model(tmp_path / "big.pth")


def test_declared_hparams_within_bounds_but_not_matching_are_refused_before_building(tmp_path, monkeypatch):
    torch.save(_own_payload(hparams={**TINY, "num_conv": 4}), tmp_path / "deeper.pth")
    _forbid_real_builds(monkeypatch)
    with pytest.raises(CheckpointError, match=r"deeper\.pth: weights do not fit SRVGGNetCompact.*absent"):
        load_model(tmp_path / "deeper.pth")


@pytest.mark.parametrize(
    "digits,match", [(300, "hyper-parameter value a 301-digit number"), (5000, "unsupported: Unsupported operand")]
)
def test_huge_integer_hparam_is_refused_briefly(tmp_path, digits, match):
    torch.save(_own_payload(hparams={**TINY, "num_conv": 10**digits}), tmp_path / "digits.pth")
    with pytest.raises(CheckpointError, match=match) as e:
        load_model(tmp_path / "digits.pth")
    assert len(str(e.value)) < 300 and "weights_only" not in str(e.value)


def stride0_rrdb_state_dict() -> dict:
    """The issue's RRDB state dict whose conv_first claims 65,536 channels through a stride-0 view."""
    sd = RRDBNet(4, 3, 8, 4, 1).state_dict()
    sd["conv_first.weight"] = torch.zeros(1).expand(65536, 3, 3, 3)
    return sd


def test_stride0_tensor_claiming_more_than_its_storage_is_refused(tmp_path, monkeypatch):
    torch.save(stride0_rrdb_state_dict(), tmp_path / "stride0.pth")
    _forbid_real_builds(monkeypatch)
    with pytest.raises(CheckpointError, match=r"stride0\.pth: refused: a tensor of shape \(65536, 3, 3, 3\)"):
        load_model(tmp_path / "stride0.pth")


def write_inflating_zip(path: Path, inflated: int) -> None:
    """A torch zip whose data.pkl is deflate-compressed and inflates to about `inflated` bytes
    (a valid pickle followed by zeros after its STOP)."""
    buf = io.BytesIO()
    torch.save(tiny_srvgg().state_dict(), buf)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info in src.infolist():
            data = src.read(info)
            if not info.filename.endswith("data.pkl"):
                dst.writestr(info, data)  # stored, as torch wrote it
                continue
            with dst.open(info.filename, "w", force_zip64=True) as f:
                f.write(data)
                for _ in range(inflated >> 22):
                    f.write(bytes(1 << 22))


def test_zip_members_inflating_beyond_the_file_are_refused(tmp_path):
    path = tmp_path / "bomb.pth"
    write_inflating_zip(path, 64 << 20)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(CheckpointError, match=r"bomb\.pth: refused: its zip members would inflate to 67,"):
        load_model(path)


def legacy_file_declaring(path: Path, numel: int) -> Path:
    """A legacy (pre-1.6, non-zip) .pth of one 3x4115 float tensor whose storage declares `numel` elements.

    The legacy format keeps the storages raw after the pickles; torch.load allocates each one at the
    size its pickled persistent id declares before reading its data.
    """
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(3, 4115)}, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    declared = b"M" + struct.pack("<H", 3 * 4115) + b"N"  # BININT2 12345, then None (not a view): the numel
    assert data.count(declared) == 1
    path.write_bytes(data.replace(declared, b"\x8a\x08" + numel.to_bytes(8, "little") + b"N"))  # LONG1
    return path


@pytest.mark.parametrize("numel", [1 << 40, 64 << 20], ids=["4TiB", "256MiB"])
def test_legacy_file_declaring_storages_larger_than_the_file_is_refused_before_loading(tmp_path, monkeypatch, numel):
    path = legacy_file_declaring(tmp_path / "legacy.pth", numel)
    size = path.stat().st_size
    assert size < 60_000

    def no_load(*args, **kwargs):
        raise AssertionError("torch.load ran before the declared storage sizes were checked")

    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(CheckpointError, match=rf"legacy\.pth: refused: its storages declare {4 * numel:,} bytes "
                                              rf"from a file of {size:,} \(a legacy .pth holds them raw\)"):
        load_model(path)


def test_legacy_storage_bound_is_the_file_size_plus_the_slack(tmp_path):
    from torch_sr.files import INFLATION_SLACK, read_weights

    bound = legacy_file_declaring(tmp_path / "probe.pth", 0).stat().st_size + INFLATION_SLACK
    with pytest.raises(CheckpointError, match=rf"over\.pth: refused: its storages declare {bound + 4 - bound % 4:,}"):
        read_weights(legacy_file_declaring(tmp_path / "over.pth", bound // 4 + 1))
    # within the bound torch.load reads it, and finds its data short
    with pytest.raises(CheckpointError, match=r"within\.pth: not a readable PyTorch weights file \(damaged"):
        read_weights(legacy_file_declaring(tmp_path / "within.pth", bound // 4))


def test_legacy_files_still_load(tmp_path):
    """Ordinary legacy files pass the storage-size check: shared and viewed storages, several dtypes."""
    from torch_sr.files import read_weights

    base = torch.arange(24, dtype=torch.float32)
    tensors = {"a": base.view(4, 6), "row": base.view(4, 6)[1], "half": torch.ones(5, dtype=torch.float16),
               "count": torch.tensor(7), "mask": torch.tensor([True, False]), "empty": torch.zeros(0)}
    torch.save(tensors, tmp_path / "mixed.pth", _use_new_zipfile_serialization=False)
    loaded, _ = read_weights(tmp_path / "mixed.pth")
    assert loaded.keys() == tensors.keys()
    for k, t in tensors.items():
        assert loaded[k].dtype == t.dtype and torch.equal(loaded[k], t)
    model = RRDBNet(2, 3, 4, 2, 1)
    torch.save({"params": model.state_dict()}, tmp_path / "rrdb.pth", _use_new_zipfile_serialization=False)
    assert load_model(tmp_path / "rrdb.pth").info.scale == 2
    # declaring exactly what the file holds is fine
    (tmp_path / "same.pth").write_bytes(legacy_file_declaring(tmp_path / "x.pth", 3 * 4115).read_bytes())
    assert read_weights(tmp_path / "same.pth")[0]["w"].shape == (3, 4115)


def write_memo_bomb(path: Path, index: int) -> Path:
    """A legacy file whose object pickle stores its dict at memo index `index`: 11 bytes that make
    an array-backed pickle memo (the C unpickler's) allocate `index` slots."""
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

    head = b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}))
    path.write_bytes(head + b"\x80\x02}r" + struct.pack("<I", index) + b".")
    return path


def test_hostile_sizes_cost_memory_near_the_file_size(tmp_path):
    """The size attacks of the issues, in one fresh process: peak memory stays near torch's own."""
    torch.save(_own_payload(hparams={**TINY, "num_feat": 3000, "num_conv": 100}), tmp_path / "hparams.pth")
    torch.save(stride0_rrdb_state_dict(), tmp_path / "stride0.pth")
    write_inflating_zip(tmp_path / "inflate.pth", 256 << 20)
    write_memo_bomb(tmp_path / "memo.pth", 50_000_000)
    code = (
        "import resource, sys, torch\n"
        "from torch_sr.model_files.model_file import load_model\n"
        "from torch_sr.errors import CheckpointError\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        load_model(p)\n"
        "        raise SystemExit(f'{p} loaded')\n"
        "    except CheckpointError as e:\n"
        "        print(e)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    # A data-segment limit turns any large allocation into a failure instead of a swap storm.
    limit = "import resource; resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))\n"
    files = [str(tmp_path / n) for n in ("hparams.pth", "stride0.pth", "inflate.pth", "memo.pth")]
    done = subprocess.run([sys.executable, "-c", limit + code, *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == files
    assert int(lines[-1]) < 100, f"peak memory grew by {lines[-1]} MB"


def test_shipped_model_by_name_and_a_suggestion_for_typos():
    assert load_model("default_x4").info.scale == 4
    import re

    from torch_sr.weights import MODELS

    listed = re.escape(", ".join(MODELS))
    with pytest.raises(TorchSRError, match=rf"no model file or shipped model named 'default_4x' \(shipped: {listed}\); "
                       r"did you mean 'default_x4'\?"):
        load_model("default_4x")


@pytest.mark.parametrize("cli", ["inference", "test", "net_interpolation", "export"])
def test_every_cli_suggests_the_shipped_name_for_a_typo(tmp_path, capsys, monkeypatch, cli):
    from torch_sr.cli import export

    monkeypatch.chdir(tmp_path)
    argv = {
        "inference": (inference.main, ["-m", "defualt_x4", "a.png"]),
        "test": (test_cli.main, ["defualt_x4", "-d", "set5"]),
        "net_interpolation": (net_interpolation.main, ["--psnr-model-path", "defualt_x4", "--esrgan-model-path",
                                                       "gan_x4", "--alpha", "0.5", "out.pth"]),
        "export": (export.main, ["defualt_x4", "out.pth"]),
    }[cli]
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert argv[0](argv[1]) == EXIT_ERROR
    assert "did you mean 'default_x4'?" in capsys.readouterr().err


def test_clis_exit_2_with_one_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "readme.pth"
    bad.write_text("just text\n")
    good = save_model(tiny_srvgg(), tmp_path / "good.pth")
    (tmp_path / "in.png").write_bytes(b"")
    runs = [
        lambda: inference.main(["-m", str(bad), str(tmp_path / "in.png")]),
        lambda: test_cli.main([str(bad), "-d", str(tmp_path)]),
        lambda: net_interpolation.main(["--psnr-model-path", str(good), "--esrgan-model-path", str(bad),
                                        "--alpha", "0.5", str(tmp_path / "out.pth")]),
    ]
    for main in runs:
        assert main() == EXIT_ERROR
        err = capsys.readouterr().err
        assert err == f"error: {bad}: not a model file: it is a text file starting with 'just text'\n"


# ---- fuzzing: mutated files are either loaded or refused with a CheckpointError ----

def _mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op, at = rng.choice("fdi"), rng.randrange(len(data))
        if op == "f":
            data[at] ^= 1 << rng.randrange(8)
        elif op == "d":
            del data[at : at + rng.randint(1, 8)]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def _with_data_pkl(zip_bytes: bytes, mutate) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, mutate(data) if info.filename.endswith("data.pkl") else data)
    return out.getvalue()


def test_fuzzed_model_files_load_or_fail_cleanly(tmp_path):
    rng = random.Random(16)
    model = tiny_srvgg()
    own, legacy = io.BytesIO(), io.BytesIO()
    torch.save(model_payload("srvgg", dict(model.hparams), model.state_dict(), {"note": "x"}), own)
    torch.save({"params": RRDBNet(2, 3, 4, 2, 1).state_dict()}, legacy, _use_new_zipfile_serialization=False)
    sources = {
        "data.pkl": lambda: _with_data_pkl(own.getvalue(), lambda d: _mutate(d, rng)),
        "legacy": lambda: _mutate(legacy.getvalue(), rng),
        "zip": lambda: _mutate(own.getvalue(), rng),
    }
    outcomes = {"loaded": 0, "refused": 0}
    path = tmp_path / "fuzz.pth"
    for i in range(300):
        kind = list(sources)[i % 3]
        path.write_bytes(sources[kind]())
        try:
            load_model(path)
            outcomes["loaded"] += 1
        except CheckpointError as e:
            assert str(e).startswith(str(path)), f"case {i} ({kind}): {e}"
            outcomes["refused"] += 1
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"case {i} ({kind}) escaped as {type(e).__name__}: {e}")
    assert outcomes["loaded"] and outcomes["refused"] > 100


@pytest.mark.parametrize("arch", ["rrdbnet", "srvgg"])
def test_foreign_state_dict_with_tensors_of_the_wrong_rank(tmp_path, arch):
    sd = RRDBNet(2, 3, 8, 4, 1).state_dict() if arch == "rrdbnet" else tiny_srvgg().state_dict()
    first = "conv_first.weight" if arch == "rrdbnet" else "body.0.weight"
    sd[first] = sd[first].flatten()[:4].clone()
    torch.save(sd, tmp_path / "rank.pth")
    with pytest.raises(CheckpointError, match=r"rank\.pth: "):
        load_model(tmp_path / "rank.pth")


def test_prefer_ema_false_takes_basicsr_params_over_params_ema(tmp_path):
    raw, ema = tiny_srvgg(), randomize_(tiny_srvgg(), std=0.1)
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict()}, tmp_path / "both.pth")
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "both.pth")(x), ema(x))
        torch.testing.assert_close(load_model(tmp_path / "both.pth", prefer_ema=False)(x), raw(x))


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8, torch.bool])
def test_integer_weights_are_refused_not_cast(tmp_path, dtype):
    torch.save({k: (v * 1000).to(dtype) for k, v in tiny_srvgg().state_dict().items()}, tmp_path / "int.pth")
    with pytest.raises(CheckpointError, match=r"int\.pth: tensor '.*' holds (int32|uint8|bool) values; weights must be floating"):
        load_model(tmp_path / "int.pth")


def test_float64_weights_beyond_float32_are_refused_as_inf(tmp_path):
    sd = {k: v.double() for k, v in tiny_srvgg().state_dict().items()}
    sd["body.0.weight"][0, 0, 0, 0] = 1e300  # finite in the file, inf in the float32 model
    torch.save(sd, tmp_path / "huge.pth")
    with pytest.raises(CheckpointError, match=r"huge\.pth: tensor 'body\.0\.weight' holds NaN or inf"):
        load_model(tmp_path / "huge.pth")
    sd["body.0.weight"][0, 0, 0, 0] = 0.5
    torch.save(sd, tmp_path / "fine.pth")
    assert load_model(tmp_path / "fine.pth").body[0].weight.dtype == torch.float32


def test_a_pytorch_file_named_safetensors_loads_by_its_content(tmp_path):
    save_model(tiny_srvgg(), tmp_path / "model.safetensors.pth")
    (tmp_path / "model.safetensors.pth").rename(tmp_path / "model.safetensors")
    assert isinstance(load_model(tmp_path / "model.safetensors"), SRVGGNetCompact)


def test_errors_of_the_state_dict_readers_name_the_file(tmp_path):
    sd = RRDBNet(2, 3, 8, 4, 1).state_dict()
    sd["conv_first.weight"] = torch.zeros(8, 5, 3, 3)  # a channel count no image has
    torch.save(sd, tmp_path / "five.pth")
    with pytest.raises(CheckpointError, match=r"five\.pth: "):
        load_model(tmp_path / "five.pth")


def test_compile_and_data_parallel_prefixes_in_either_order(tmp_path):
    model = tiny_srvgg()
    for prefix in ("_orig_mod.module.", "module._orig_mod.", "module.module."):
        torch.save({prefix + k: v for k, v in model.state_dict().items()}, tmp_path / "p.pth")
        assert isinstance(load_model(tmp_path / "p.pth"), SRVGGNetCompact), prefix
