"""`torch-sr-export MODEL OUTPUT`: one set of weights, float16, same model, never overwriting."""
import torch

from torch_sr.archs.srvgg import SRVGGNetCompact
from torch_sr.model_files.model_file import load_model, model_payload, read_model_file, save_model
from torch_sr.cli.export import main


def run_file(path):
    """A model file as a run writes it: raw and EMA weights, the config in meta."""
    torch.manual_seed(0)
    raw, ema = SRVGGNetCompact(scale_factor=2, num_feat=8, num_conv=2), SRVGGNetCompact(scale_factor=2, num_feat=8, num_conv=2)
    payload = model_payload("srvgg", raw.hparams, raw.state_dict(), {"config": {"seed": 7}})
    payload["state_dict_ema"] = ema.state_dict()
    torch.save(payload, path)
    return raw.eval(), ema.eval()


def test_exports_the_ema_weights_as_float16_with_the_config(tmp_path, capsys):
    raw, ema = run_file(tmp_path / "final.pth")
    assert main([str(tmp_path / "final.pth"), str(tmp_path / "small.pth")]) == 0
    assert "float16" in capsys.readouterr().out
    stored = torch.load(tmp_path / "small.pth", weights_only=True)
    assert "state_dict_ema" not in stored and stored["meta"]["config"] == {"seed": 7}
    assert all(v.dtype == torch.float16 for v in stored["state_dict"].values())
    model = load_model(tmp_path / "small.pth")
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        out, want, other = model(x), ema(x), raw(x)
    assert out.dtype == torch.float32 and (out - want).abs().max() < 2e-3 < (other - want).abs().max()
    assert (tmp_path / "small.pth").stat().st_size < 0.6 * (tmp_path / "final.pth").stat().st_size


def test_raw_and_float32_on_request(tmp_path):
    raw, _ = run_file(tmp_path / "final.pth")
    assert main([str(tmp_path / "final.pth"), str(tmp_path / "raw.pth"), "--raw", "--float32"]) == 0
    mf = read_model_file(tmp_path / "raw.pth")
    assert all(torch.equal(mf.state_dict[k], v) for k, v in raw.state_dict().items())


def test_an_existing_output_is_never_overwritten(tmp_path, capsys):
    run_file(tmp_path / "final.pth")
    (tmp_path / "taken.pth").write_bytes(b"keep")
    assert main([str(tmp_path / "final.pth"), str(tmp_path / "taken.pth")]) == 2
    assert "taken.pth exists" in capsys.readouterr().err and (tmp_path / "taken.pth").read_bytes() == b"keep"
    assert main([str(tmp_path / "missing.pth"), str(tmp_path / "new.pth")]) == 2
    assert "missing.pth" in capsys.readouterr().err and not (tmp_path / "new.pth").exists()


def test_the_same_file_for_both_outputs_or_a_folder_is_refused_before_any_work(tmp_path, capsys):
    run_file(tmp_path / "final.pth")
    assert main([str(tmp_path / "final.pth"), str(tmp_path / "same"), "--onnx", str(tmp_path / "same")]) == 2
    assert "both OUTPUT and --onnx" in capsys.readouterr().err and not (tmp_path / "same").exists()
    assert main([str(tmp_path / "final.pth"), str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([str(tmp_path / "final.pth"), str(tmp_path / "final.pth" / "x.pth")]) == 2
    assert "which is a file" in capsys.readouterr().err


def test_weights_beyond_float16_are_refused_unless_float32(tmp_path, capsys):
    model = SRVGGNetCompact(scale_factor=2, num_feat=4, num_conv=2)
    with torch.no_grad():
        model.body[0].bias[0] = 1e5  # float16 stores it as inf: the export would not load
    save_model(model, tmp_path / "big.pth")
    assert main([str(tmp_path / "big.pth"), str(tmp_path / "half.pth")]) == 2
    assert "'body.0.bias' holds values beyond float16's range" in capsys.readouterr().err
    assert not (tmp_path / "half.pth").exists()
    assert main([str(tmp_path / "big.pth"), str(tmp_path / "full.pth"), "--float32"]) == 0
    assert load_model(tmp_path / "full.pth").body[0].bias[0] == 1e5
