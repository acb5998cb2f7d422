"""Network interpolation: any two layouts of one architecture, clear refusals, never over an input."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reference_archs import ESRGANNewArch, randomize_
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.model_files.model_file import load_model, read_model_file, save_model
from torch_sr.cli.common import EXIT_ERROR, EXIT_OK
from torch_sr.cli.net_interpolation import main
from torch_sr.errors import CheckpointError, ConfigError
from torch_sr.interpolation import check_same_architecture, interpolate_models

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(rrdb_channels=8, growth_channels=4, num_basic_blocks=2)


@pytest.fixture
def pair(tmp_path):
    """Model A in our own format, model B as a bare ESRGAN ("new arch") state dict of the same network."""
    a = randomize_(RRDBNet(**SMALL), seed=1)
    b = randomize_(ESRGANNewArch(nf=8, nb=2, gc=4), seed=2)
    path_a = save_model(a, tmp_path / "psnr.pth")
    torch.save(b.state_dict(), tmp_path / "esrgan.pth")
    return path_a, tmp_path / "esrgan.pth"


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_blends_every_tensor_across_layouts(tmp_path, pair, suffix, capsys):
    path_a, path_b = pair
    out = tmp_path / f"mixed{suffix}"
    assert main(["--psnr-model-path", str(path_a), "--esrgan-model-path", str(path_b), "--alpha", "0.3", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    a, b, mixed = (read_model_file(p).state_dict for p in (path_a, path_b, out))
    assert mixed.keys() == a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(mixed[key], 0.7 * a[key] + 0.3 * b[key])
    model = load_model(out)  # loadable without any hyper-parameter
    assert model.hparams["num_basic_blocks"] == 2 and model.meta["interpolation"]["alpha"] == 0.3


def test_alpha_zero_and_one_give_the_inputs(pair):
    a, b = (read_model_file(p) for p in pair)
    for alpha, expected in ((0.0, a), (1.0, b)):
        mixed = interpolate_models(a, b, alpha)
        for key, tensor in expected.state_dict.items():
            torch.testing.assert_close(mixed.state_dict[key], tensor, rtol=0, atol=0)


def test_different_architectures_name_what_differs(tmp_path, pair):
    path_a, _ = pair
    wider = save_model(RRDBNet(**{**SMALL, "rrdb_channels": 16}), tmp_path / "wider.pth")
    code = main(["--psnr-model-path", str(path_a), "--esrgan-model-path", str(wider), "--alpha", "0.5",
                 str(tmp_path / "out.pth")])
    assert code == EXIT_ERROR and not (tmp_path / "out.pth").exists()
    a, w = read_model_file(path_a), read_model_file(wider)
    with pytest.raises(CheckpointError, match="hyper-parameter 'rrdb_channels' is 8 vs 16"):
        check_same_architecture(a, w)
    # Same description, different tensors (e.g. a file edited by hand): the tensor is named.
    b = read_model_file(path_a)
    b.state_dict["conv_first.weight"] = torch.zeros(8, 3, 5, 5)
    with pytest.raises(CheckpointError, match=r"'conv_first.weight' has shape \(8, 3, 3, 3\) in .* but \(8, 3, 5, 5\)"):
        interpolate_models(a, b, 0.5)
    b = read_model_file(path_a)
    del b.state_dict["conv_last.bias"]
    with pytest.raises(CheckpointError, match="tensor 'conv_last.bias' is missing"):
        interpolate_models(a, b, 0.5)


@pytest.mark.parametrize("alpha", ["-0.1", "1.5", "nan"])
def test_alpha_outside_zero_one_is_refused(tmp_path, pair, alpha, capsys):
    path_a, path_b = pair
    code = main(["--psnr-model-path", str(path_a), "--esrgan-model-path", str(path_b), f"--alpha={alpha}",
                 str(tmp_path / "out.pth")])
    assert code == EXIT_ERROR and f"--alpha {alpha}: must be between 0" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        interpolate_models(read_model_file(path_a), read_model_file(path_b), float(alpha))


def test_output_never_overwrites_an_input(pair, capsys):
    path_a, path_b = pair
    before = path_b.read_bytes()
    code = main(["--psnr-model-path", str(path_a), "--esrgan-model-path", str(path_b), "--alpha", "0.5", str(path_b)])
    assert code == EXIT_ERROR and "would overwrite an input" in capsys.readouterr().err
    assert path_b.read_bytes() == before


def test_an_existing_output_or_a_folder_is_refused_before_reading(tmp_path, pair, capsys):
    path_a, path_b = pair
    taken = tmp_path / "taken.pth"
    taken.write_bytes(b"keep")
    for out, message in ((taken, "taken.pth exists"), (tmp_path, "is a folder"), (taken / "x.pth", "which is a file")):
        code = main(["--psnr-model-path", str(path_a), "--esrgan-model-path", str(path_b), "--alpha", "0.5", str(out)])
        assert code == EXIT_ERROR and message in capsys.readouterr().err
    assert taken.read_bytes() == b"keep"


@pytest.mark.slow
def test_root_script_runs(tmp_path, pair):
    path_a, path_b = pair
    result = subprocess.run(
        [sys.executable, str(ROOT / "net_interpolation.py"), "--psnr-model-path", str(path_a),
         "--esrgan-model-path", str(path_b), "--alpha", "0.8", str(tmp_path / "out.safetensors")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == EXIT_OK, result.stderr
    assert load_model(tmp_path / "out.safetensors").meta["interpolation"]["alpha"] == 0.8
