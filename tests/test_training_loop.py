"""What the training loop does each iteration, seen from outside: the logged learning rates and losses,
the best model of each stage, the EMA, gradient clipping, validation, the losses agreed on across
processes. Each test here catches a deliberate bug listed in docs/testing.md that the rest of the
suite let through."""
import shutil
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from torch_sr.config.schema import LRSchedule
from torch_sr.config.validate import validate_config
from torch_sr.training import session as session_module
from torch_sr.training.distributed import DistributedContext
from torch_sr.training.logging import RunLogger
from torch_sr.training.session import NonFiniteLossError, Session, TrainOptions
from torch_sr.training.signals import StopRequest
from torch_sr.training.validation import ValidationResult


def record_scalars(monkeypatch) -> dict[str, list[tuple[int, float]]]:
    """`{tag: [(global step, value), ...]}` of everything the run logs as a scalar, filled as it trains."""
    logged: dict[str, list[tuple[int, float]]] = defaultdict(list)

    def scalars(self, values, step):
        for tag, value in values.items():
            logged[tag].append((step, value))

    monkeypatch.setattr(RunLogger, "scalars", scalars)
    return logged


def saved(tmp_path, stage: str, kind: str) -> dict:
    return torch.load(next((tmp_path / "saved_models").glob(f"*_{stage}_x4_{kind}.pth")), weights_only=True)


def test_the_learning_rates_follow_their_schedules_to_lr_times_min_lr_factor(run, monkeypatch):
    logged = record_scalars(monkeypatch)
    changes = {
        "pretraining": {"scheduler": "cosine", "warmup_iterations": 2, "min_lr_factor": 0.1, "num_iterations": 6},
        "training": {"scheduler": "cosine", "min_lr_factor": 0.2, "g_lr": 1e-4, "d_lr": 3e-4},
    }
    assert run(changes) == 0
    # logged after iteration i (1-based) is the lr iteration i used: lr * factor(i - 1); the schedule ends at the floor
    psnr = LRSchedule("cosine", warmup_iterations=2, min_lr_factor=0.1)
    assert logged["PSNR/lr/generator"] == [(i, pytest.approx(5e-4 * psnr.factor(i - 1, 6))) for i in range(1, 7)]
    assert logged["PSNR/lr/generator"][0][1] == pytest.approx(5e-4 / 2) and psnr.factor(6, 6) == pytest.approx(0.1)
    gan = LRSchedule("cosine", min_lr_factor=0.2)
    for name, lr in (("generator", 1e-4), ("discriminator", 3e-4)):
        assert logged[f"ESRGAN/lr/{name}"] == [(6 + i, pytest.approx(lr * gan.factor(i - 1, 4))) for i in range(1, 5)]
        assert logged[f"ESRGAN/lr/{name}"][0][1] == pytest.approx(lr) and gan.factor(4, 4) == pytest.approx(0.2)


def test_the_best_model_is_the_highest_psnr_then_the_lowest_gan_stage_image_loss(run, tmp_path, monkeypatch):
    # Scores in the order the validations happen (every iteration). In each stage the other criterion
    # would pick another iteration: PSNR 4 (loss 6) in stage 1, image loss 2 (PSNR 4) in stage 2.
    scores = iter(
        [(20.0, 0.6), (25.0, 0.5), (22.0, 0.4), (27.0, 0.3), (26.0, 0.2), (24.0, 0.1)]
        + [(20.0, 0.5), (21.0, 0.3), (22.0, 0.4), (23.0, 0.35)]
    )

    def validate(model, val_sets, objective, device, num_samples=0, loss_tile=None):
        psnr, loss = next(scores)
        return ValidationResult(metrics={"val/psnr": psnr, "val/loss": loss}, psnr=psnr, image_loss=loss)

    monkeypatch.setattr("torch_sr.training.session.validate", validate)
    stage = {"num_iterations": 6, "val_interval": 1}
    assert run({"pretraining": stage, "training": {"val_interval": 1}}, "-s", "1") == 0
    assert next(scores, None) is None
    expected = (("PSNR", "psnr", 4, (27.0, 0.3)), ("ESRGAN", "image_loss", 2, (21.0, 0.3)))
    for stage, metric, iteration, (psnr, loss) in expected:
        best = saved(tmp_path, stage, "best_model")
        assert best["meta"]["iteration"] == iteration
        assert best["meta"]["validation"] == {"val/psnr": psnr, "val/loss": loss}
        value = psnr if metric == "psnr" else loss
        assert saved(tmp_path, stage, "checkpoint")["training"]["best"] == {
            "metric": metric, "value": value, "iteration": iteration
        }
        snapshot = saved(tmp_path, stage, f"iter{iteration}_model")
        assert all(torch.equal(v, snapshot["state_dict"][k]) for k, v in best["state_dict"].items())


def test_a_resumed_run_keeps_the_best_score_of_the_run_it_continues(run, tmp_path, monkeypatch):
    psnrs = iter([30.0, 20.0, 25.0, 22.0])  # the best is iteration 1's, before the stop

    def validate(model, val_sets, objective, device, num_samples=0, loss_tile=None):
        psnr = next(psnrs)
        return ValidationResult(metrics={"val/psnr": psnr}, psnr=psnr, image_loss=None)

    monkeypatch.setattr("torch_sr.training.session.validate", validate)
    changes = {"pretraining": {"val_interval": 1}, "training": {"enabled": False}}
    assert run(changes, "--stop-after", "2") == 0
    assert run(changes, "--resume") == 0
    assert next(psnrs, None) is None
    assert saved(tmp_path, "PSNR", "best_model")["meta"]["iteration"] == 1
    assert saved(tmp_path, "PSNR", "checkpoint")["training"]["best"] == {"metric": "psnr", "value": 30.0, "iteration": 1}


def test_logged_training_losses_are_means_over_the_log_interval(run, monkeypatch):
    logged = record_scalars(monkeypatch)
    psnr_only = {"training": {"enabled": False}}
    assert run(psnr_only) == 0  # logs every iteration
    each = [value for _, value in logged.pop("PSNR/train/content")]
    logged.clear()
    assert run({**psnr_only, "logging": {"log_interval": 3}}) == 0  # the same run (same seed), logged every 3
    assert logged["PSNR/train/content"] == [(3, pytest.approx(sum(each[:3]) / 3)), (4, pytest.approx(each[3]))]


def test_grad_clip_norm_clips_every_step(run, tmp_path):
    # Clipped to a norm of 1e-12 the gradients are far below Adam's eps (1e-8), so its steps
    # lr * m / (sqrt(v) + eps) shrink from about lr (5e-4) to at most lr * 1e-12 / 1e-8 = 5e-8.
    stage = {"num_iterations": 3, "grad_clip_norm": 1e-12}
    assert run({"pretraining": stage, "training": {"enabled": False}}, "-s", "1") == 0
    first, last = (saved(tmp_path, "PSNR", kind)["state_dict"] for kind in ("iter1_model", "final_model"))
    assert max(float((last[k] - first[k]).abs().max()) for k in first) < 2 * 5e-8


def test_the_ema_averages_in_every_iterations_weights_with_the_warmed_up_decay(run, tmp_path):
    assert run({"pretraining": {"ema_decay": 0.999}, "training": {"enabled": False}}, "-s", "1") == 0
    snapshots = [saved(tmp_path, "PSNR", f"iter{k}_model") for k in range(1, 5)]
    for k in (2, 3, 4):
        d = min(0.999, k / (9 + k))  # iteration k's update has k - 1 before it: (1 + n) / (10 + n), n = k - 1
        before, now = snapshots[k - 2]["state_dict_ema"], snapshots[k - 1]
        for name, ema in now["state_dict_ema"].items():
            expected = d * before[name] + (1 - d) * now["state_dict"][name]
            # one float32 interpolation of weights below 1 in size, computed two ways: a few ulp apart
            torch.testing.assert_close(ema, expected, rtol=0, atol=1e-6, msg=f"iteration {k}: {name}")


def test_the_last_iteration_is_validated_whatever_the_interval(run, monkeypatch):
    logged = record_scalars(monkeypatch)
    assert run({"pretraining": {"num_iterations": 5, "val_interval": 2}, "training": {"enabled": False}}) == 0
    assert [step for step, _ in logged["PSNR/val/val/psnr"]] == [2, 4, 5]


# -- the iteration's one synchronisation -----------------------------------------------------------


def two_process_session(monkeypatch, other: list[float]) -> Session:
    """A session of rank 0 of 2 whose all-reduce adds `other`, the other process's losses (and stop flag 0)."""
    ctx = DistributedContext(torch.device("cpu"), rank=0, world_size=2)
    monkeypatch.setattr(session_module, "all_reduce_sum", lambda t, ctx: t + torch.tensor([*other, 0.0]))
    return Session(validate_config({}), TrainOptions(), ctx, StopRequest(), 0, "run")


def test_the_losses_agreed_on_are_the_means_over_the_processes(monkeypatch):
    session = two_process_session(monkeypatch, [3.0, 5.0])
    losses = {"content": torch.tensor(1.0), "g_total": torch.tensor(2.0)}
    assert session.agree(losses, state=None) == {"content": 2.0, "g_total": 3.5}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_nan_or_infinite_loss_on_any_process_stops_the_run(monkeypatch, bad):
    session = two_process_session(monkeypatch, [bad, 1.0])
    state = SimpleNamespace(stage=SimpleNamespace(name="PSNR", adversarial=False), iteration=6)
    with pytest.raises(NonFiniteLossError, match=f"PSNR stage, iteration 7: the content loss is {bad}"):
        session.agree({"content": torch.tensor(1.0), "g_total": torch.tensor(1.0)}, state)


def test_a_run_resumed_from_an_older_checkpoint_replaces_what_was_logged_after_it(run, tmp_path):
    """A killed run may have logged iterations after its last checkpoint: resumed, each step shows once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    changes = {"training": {"enabled": False}, "logging": {"tensorboard": True, "dir": "runs"}}
    assert run(changes, "--stop-after", "2", "--run-name", "r") == 0
    shutil.copy(next((tmp_path / "saved_models").glob("*_checkpoint.pth")), tmp_path / "at2.pth")
    assert run(changes, "--resume", "--stop-after", "1") == 0  # logs iteration 3, then stops (or is killed)
    assert run(changes, "-l", "at2.pth") == 0  # iterations 3 and 4 again, from the older checkpoint
    events = EventAccumulator(str(tmp_path / "runs" / "r"))
    events.Reload()
    assert [e.step for e in events.Scalars("PSNR/train/content")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("PSNR/val/val/psnr")] == [2, 4]
