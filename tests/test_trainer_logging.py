"""Run logs: TensorBoard scalars and images, Weights & Biases (offline), the text log, the console."""
import pytest
from trainer_fixtures import make_images, tiny_config, write_config

from torch_sr.cli.train import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("logging")
    train, val = make_images(root / "train", 4, (32, 32)), make_images(root / "val", 2, (32, 32), seed=1)
    logging = {"dir": str(root / "runs"), "tensorboard": True, "wandb": True, "wandb_project": "t", "val_images": 2}
    cfg = tiny_config(train, val, logging=logging)
    path = write_config(root / "logged.json", cfg)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_CONSOLE", "off")
        assert main([str(path), "--output-dir", str(root / "out"), "--device", "cpu", "--run-name", "r1"]) == 0
    return root / "runs" / "r1"


@pytest.mark.slow  # the run_dir fixture trains with TensorBoard and W&B
def test_tensorboard_events_hold_losses_validation_scores_and_sample_images(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    assert {"PSNR/train/content", "PSNR/train/g_total", "PSNR/lr/generator", "PSNR/val/val/psnr", "PSNR/val/val/ssim",
            "PSNR/val/val/bicubic_psnr", "PSNR/val/val/content"} <= scalars  # fmt: skip
    assert {"ESRGAN/train/perceptual", "ESRGAN/train/adversarial", "ESRGAN/train/d_total", "ESRGAN/lr/discriminator",
            "ESRGAN/val/val/perceptual", "ESRGAN/val/val/loss"} <= scalars  # fmt: skip
    # stage 2's steps continue after stage 1's four iterations
    assert [e.step for e in events.Scalars("PSNR/train/content")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("ESRGAN/train/d_total")] == [5, 6, 7, 8]
    assert [e.step for e in events.Scalars("PSNR/val/val/psnr")] == [2, 4]
    assert {"PSNR/samples/val/img00", "PSNR/samples/val/img01", "ESRGAN/samples/val/img00"} <= images
    sample = events.Images("PSNR/samples/val/img00")[-1]
    assert (sample.width, sample.height) == (3 * 32, 32)  # bicubic | SR | HR


@pytest.mark.slow  # the run_dir fixture trains with TensorBoard and W&B
def test_wandb_offline_run_holds_the_logged_keys_and_images(run_dir):
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    data = next(runs[0].glob("run-*.wandb")).read_bytes()
    for key in (b"PSNR/train/content", b"ESRGAN/train/d_total", b"ESRGAN/val/val/psnr", b"PSNR/lr/generator"):
        assert key in data, key
    assert list((runs[0] / "files" / "media" / "images").rglob("*.png"))


@pytest.mark.slow  # the run_dir fixture trains with TensorBoard and W&B
def test_text_log_has_losses_validation_and_best_models(run_dir):
    log = (run_dir / "train.log").read_text()
    assert "PSNR 1/4 epoch 1: content" in log and "it/s" in log and "lr_g 0.0005" in log
    assert "PSNR validation at iteration 2: val/psnr" in log
    assert "ESRGAN 4/4 epoch" in log and "d_total" in log
    assert "ESRGAN: best validation image_loss" in log


def test_the_progress_bar_shows_the_current_losses(tmp_path, capsys):
    from torch_sr.config.validate import validate_config
    from torch_sr.training.run import train
    from torch_sr.training.session import TrainOptions

    train_dir, val = make_images(tmp_path / "train", 4, (32, 32)), make_images(tmp_path / "val", 1, (32, 32))
    cfg = tiny_config(train_dir, val, logging={"dir": str(tmp_path / "runs"), "log_file": False})
    options = TrainOptions(output_dir=tmp_path / "out", progress=True, echo=False)
    train(validate_config(cfg, "bar"), options)
    captured = capsys.readouterr()
    assert captured.out == ""  # echo=False: nothing on stdout
    assert "PSNR: 100%" in captured.err and "content=" in captured.err and "d_total=" in captured.err


def test_logged_learning_rates_are_the_ones_the_iterations_used_and_final_models_keep_their_scores(tmp_path, monkeypatch):
    import torch

    from torch_sr.model_files.model_file import read_model_file
    from torch_sr.training.logging import RunLogger

    train, val = make_images(tmp_path / "train", 4, (32, 32)), make_images(tmp_path / "val", 1, (32, 32), seed=1)
    stage = {"num_iterations": 4, "warmup_iterations": 2, "scheduler": "cosine", "val_interval": 4}
    cfg = tiny_config(train, val, training={"enabled": False}, pretraining=stage, logging={"log_interval": 1})
    used, logged = [], {}
    step, scalars = torch.optim.Adam.step, RunLogger.scalars

    def recording_step(self, *args, **kwargs):
        used.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    def recording_scalars(self, values, at):
        logged.update({at: values["PSNR/lr/generator"]} if "PSNR/lr/generator" in values else {})
        return scalars(self, values, at)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    monkeypatch.setattr(RunLogger, "scalars", recording_scalars)
    monkeypatch.chdir(tmp_path)
    assert main([str(write_config(tmp_path / "c.json", cfg)), "--device", "cpu"]) == 0
    assert [logged[k] for k in (1, 2, 3, 4)] == used and used[0] < used[1]  # the warm-up's first rate is logged
    final = read_model_file(next((tmp_path / "saved_models").glob("*_final_model.pth")))
    assert final.meta["validation"]["val/psnr"] > 0  # the validation of the last iteration, as best models have


def test_weights_and_biases_that_cannot_start_is_one_line(tmp_path, monkeypatch, capsys):
    import sys
    import types

    def no_key(**kwargs):
        raise RuntimeError("No API key configured. Use `wandb login` to log in.")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=no_key))
    train, val = make_images(tmp_path / "train", 4, (32, 32)), make_images(tmp_path / "val", 1, (32, 32), seed=1)
    cfg = tiny_config(train, val, logging={"wandb": True, "dir": str(tmp_path / "runs")})
    monkeypatch.chdir(tmp_path)
    assert main([str(write_config(tmp_path / "c.json", cfg)), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "error: logging/wandb: Weights & Biases could not start (No API key configured." in err
    assert "WANDB_MODE=offline" in err and "Traceback" not in err
