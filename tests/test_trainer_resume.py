"""Exact resume: N iterations straight equal N/2, a stop, and N/2 more, bit for bit (CPU, deterministic)."""
import signal

import pytest
import torch
from trainer_fixtures import assert_same_state, make_images, tiny_config, write_config

from torch_sr.cli.train import main
from torch_sr.training.session import Session

# Settings a resumed run must reproduce: EMA in both stages, LR-only degradations (albumentations)
# in stage 1, gradient clipping and a warm-up/cosine schedule in stage 2, and realistic degradations
# of every kind (drawn per iteration) throughout.
CHANGES = {
    "pretraining": {"ema_decay": 0.9, "hard_transforms": True},
    "training": {"ema_decay": 0.99, "grad_clip_norm": 0.5, "scheduler": "cosine", "warmup_iterations": 1},
    "degradation": {"mix": {"realesrgan": 1, "noise_jpeg": 1, "jpeg": 1, "bicubic": 1}},
}
RUN_DEPENDENT = ("timestamp", "run_name")  # differ between separate runs by design


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    train, val = make_images(root / "train", 5, (40, 44)), make_images(root / "val", 1, (32, 32), seed=1)
    cfg = tiny_config(train, val, **CHANGES, logging={"dir": str(root / "runs")})
    path = write_config(root / "tiny.json", cfg)
    assert main([str(path), "--output-dir", str(root / "straight"), "--device", "cpu", "-i", "100"]) == 0
    return root, cfg, checkpoints(root / "straight")


def checkpoints(out):
    found = {p.name.split("_")[2]: torch.load(p, weights_only=True) for p in out.glob("*_checkpoint.pth")}
    assert set(found) == {"PSNR", "ESRGAN"}
    return found


def comparable(ckpt):
    """A checkpoint without what names the run (timestamp, run name) and the logging settings."""
    ckpt = {**ckpt, "meta": {k: v for k, v in ckpt["meta"].items() if k not in (*RUN_DEPENDENT, "config")}}
    training = {k: v for k, v in ckpt["training"].items() if k not in RUN_DEPENDENT}
    training["config"] = {k: v for k, v in training["config"].items() if k not in ("logging", "data")}
    return {**ckpt, "training": training}


@pytest.mark.parametrize(
    "stop_after, workers",
    [(2, 0), (4, 0), (6, 2)],
    ids=["in-stage-1", "at-the-stage-boundary", "in-stage-2-then-2-workers"],
)
def test_interrupted_run_resumes_bit_identically(straight, tmp_path, stop_after, workers):
    root, cfg, expected = straight
    out = tmp_path / "out"
    first = write_config(tmp_path / "first.json", cfg)
    flags = ["--output-dir", str(out), "--device", "cpu", "-i", "100"]
    assert main([str(first), *flags, "--stop-after", str(stop_after)]) == 0
    stage, iteration = ("PSNR", stop_after) if stop_after <= 4 else ("ESRGAN", stop_after - 4)
    checkpoint = next(out.glob(f"*_{stage}_x4_checkpoint.pth"))
    stopped = torch.load(checkpoint, weights_only=True)
    assert stopped["training"]["iteration"] == iteration
    # The second half may load its data with workers: the data order does not depend on them.
    second = write_config(tmp_path / "second.json", {**cfg, "data": {"num_workers": workers, "cache": True}})
    how = ["-l", str(checkpoint)] if workers else ["--resume"]  # --load-checkpoint PATH, or the newest
    assert main([str(second), *how, *flags]) == 0
    resumed = checkpoints(out)
    for stage in ("PSNR", "ESRGAN"):
        assert_same_state(comparable(resumed[stage]), comparable(expected[stage]), stage)
    # the final models agree too (with their EMA weights)
    for stage in ("PSNR", "ESRGAN"):
        a = torch.load(next(out.glob(f"*_{stage}_x4_final_model.pth")), weights_only=True)
        b = torch.load(next((root / "straight").glob(f"*_{stage}_x4_final_model.pth")), weights_only=True)
        assert_same_state(a["state_dict_ema"], b["state_dict_ema"])
        assert_same_state(a["state_dict"], b["state_dict"])


@pytest.mark.parametrize(
    "stage, call, status",
    [("ESRGAN", 2, 128 + signal.SIGTERM), ("PSNR", 4, 128 + signal.SIGTERM), ("ESRGAN", 4, 0)],
    ids=["mid-GAN-stage", "in-stage-1s-last-iteration", "in-the-runs-last-iteration"],
)
def test_a_signal_mid_iteration_checkpoints_a_state_that_resumes_bit_identically(
    straight, tmp_path, monkeypatch, stage, call, status
):
    """SIGTERM arriving while an iteration's forward passes run (in the GAN stage they have moved the
    discriminator's batch-norm statistics): the checkpoint must still continue exactly as the straight
    run; in the run's very last iteration the run simply completes."""
    root, cfg, expected = straight
    out = tmp_path / "out"
    path = write_config(tmp_path / "c.json", cfg)
    flags = ["--output-dir", str(out), "--device", "cpu", "-i", "100"]
    agree, calls = Session.agree, []

    def signalled_in_stage_2(self, losses, state):
        calls.append(state.stage.name)
        if calls.count(stage) == call and state.stage.name == stage:
            self.stop.signum = signal.SIGTERM
        return agree(self, losses, state)

    monkeypatch.setattr(Session, "agree", signalled_in_stage_2)
    assert main([str(path), *flags]) == status
    monkeypatch.setattr(Session, "agree", agree)
    assert main(["--resume", *flags]) == 0
    resumed = checkpoints(out)
    for stage in ("PSNR", "ESRGAN"):
        assert_same_state(comparable(resumed[stage]), comparable(expected[stage]), stage)


def test_resuming_a_finished_run_trains_nothing(straight, capsys):
    root, _, expected = straight
    before = {p: p.stat().st_mtime_ns for p in (root / "straight").glob("*_checkpoint.pth")}
    assert main(["--resume", "--output-dir", str(root / "straight"), "--device", "cpu"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (root / "straight").glob("*_checkpoint.pth")} == before
    assert "final model:" in capsys.readouterr().out
