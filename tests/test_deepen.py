"""Deepening a trained srvgg model keeps its outputs and gives the new layers gradients to learn from."""
import pytest
import torch

from torch_sr.model_files.deepen import deepen
from torch_sr.cli.deepen import main
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.archs.srvgg import SRVGGNetCompact
from torch_sr.model_files.model_file import load_model, read_model_file, save_model
from torch_sr.errors import CheckpointError


def trained_like(num_conv=5, act_type="prelu", scale=2):
    """An srvgg with non-trivial PReLU slopes, as training leaves them."""
    torch.manual_seed(0)
    model = SRVGGNetCompact(scale_factor=scale, num_feat=8, num_conv=num_conv, act_type=act_type)
    for m in model.modules():
        if isinstance(m, torch.nn.PReLU):
            m.weight.data.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize("num_conv, every, deeper", [(5, 2, 7), (4, 1, 8), (3, 4, 3)])
def test_the_deeper_model_computes_the_same_outputs(tmp_path, num_conv, every, deeper):
    model = trained_like(num_conv)
    save_model(model, tmp_path / "m.pth", meta={"stage": "PSNR"})
    grown = deepen(read_model_file(tmp_path / "m.pth"), every)
    assert grown.hparams["num_conv"] == deeper and grown.meta["stage"] == "PSNR"
    assert grown.meta["deepened_from"] == {"source": str(tmp_path / "m.pth"), "num_conv": num_conv, "every": every}
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(grown.build().eval()(x), model.eval()(x), atol=1e-6, rtol=0)


def test_the_inserted_layers_learn(tmp_path):
    save_model(trained_like(2), tmp_path / "m.pth")
    model = deepen(read_model_file(tmp_path / "m.pth"), 1).build()
    loss = (model(torch.rand(1, 3, 8, 8)) - torch.rand(1, 3, 16, 16)).abs().mean()
    loss.backward()
    new_conv, new_slope = model.body[4], model.body[5]  # the identity layer after the first body conv
    assert torch.equal(new_slope.weight, torch.ones(8)) and new_conv.weight.grad.abs().sum() > 0
    assert new_slope.weight.grad.abs().sum() > 0


def test_cli_writes_a_loadable_model_and_never_overwrites(tmp_path, capsys):
    save_model(trained_like(4), tmp_path / "m.pth")
    assert main([str(tmp_path / "m.pth"), str(tmp_path / "deep.pth"), "--every", "2"]) == 0
    assert "6 body convs" in capsys.readouterr().out
    assert load_model(tmp_path / "deep.pth").hparams["num_conv"] == 6
    before = (tmp_path / "m.pth").read_bytes()
    assert main([str(tmp_path / "deep.pth"), str(tmp_path / "m.pth")]) == 2
    assert "exists" in capsys.readouterr().err and (tmp_path / "m.pth").read_bytes() == before
    assert main([str(tmp_path / "m.pth"), str(tmp_path / "none.pth"), "--every", "0"]) == 2
    assert "--every) must be >= 1, got 0" in capsys.readouterr().err and not (tmp_path / "none.pth").exists()


def test_only_prelu_srvgg_models_can_be_deepened(tmp_path, capsys):
    save_model(trained_like(2, act_type="relu"), tmp_path / "relu.pth")
    save_model(RRDBNet(rrdb_channels=8, growth_channels=4, num_basic_blocks=1), tmp_path / "rrdb.pth")
    for name in ("relu", "rrdb"):
        with pytest.raises(CheckpointError, match="only srvgg models with PReLU"):
            deepen(read_model_file(tmp_path / f"{name}.pth"))
    assert main([str(tmp_path / "relu.pth"), str(tmp_path / "out.pth")]) == 2
    assert f"{tmp_path / 'relu.pth'}: only srvgg" in capsys.readouterr().err and not (tmp_path / "out.pth").exists()
