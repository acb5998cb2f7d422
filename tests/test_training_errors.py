"""Damaged checkpoints, full disks, blown-up losses and hostile configs: one line, exit 2, and recovery as said."""
import copy
import errno
import io
import os
import re

import pytest
import torch
from trainer_fixtures import make_images, tiny_config, write_config

from torch_sr.archs.srvgg import SRVGGNetCompact
from torch_sr import files
from torch_sr.model_files.model_file import save_model
from torch_sr.cli.train import main
from torch_sr.training.checkpointing import read_checkpoint

PSNR_ONLY = {"training": {"enabled": False}, "pretraining": {"num_iterations": 2, "val_interval": 100}}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_images(root / "train", 4, (32, 32)), make_images(root / "val", 1, (32, 32), seed=1)


@pytest.fixture
def run(folders, tmp_path, monkeypatch):
    """`run(changes, *flags) -> exit code`: train.py on a tiny PSNR-only config in a fresh working directory."""
    monkeypatch.chdir(tmp_path)

    def go(changes=None, *flags, config=True):
        cfg = tiny_config(*folders, **PSNR_ONLY)
        for key, value in (changes or {}).items():
            cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
        path = write_config(tmp_path / "tiny.json", cfg)
        return main([*([str(path)] if config else []), "--device", "cpu", *flags])

    return go


@pytest.fixture(scope="module")
def finished(folders, tmp_path_factory):
    """A finished 2-iteration PSNR run's checkpoint (contents)."""
    out = tmp_path_factory.mktemp("finished")
    cfg = tiny_config(*folders, **PSNR_ONLY, logging={"dir": str(out / "runs"), "log_interval": 1, "tensorboard": False})
    assert main([str(write_config(out / "c.json", cfg)), "--device", "cpu", "--output-dir", str(out), "-i", "1"]) == 0
    return torch.load(next(out.glob("*_checkpoint.pth")), weights_only=True)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def damage(ckpt, how):
    ckpt = copy.deepcopy(ckpt)
    t = ckpt["training"]
    if how.startswith("no "):
        del t[how[3:]]
    elif how == "iteration -5":
        t["iteration"] = -5
    elif how == "iteration 1e9":
        t["iteration"] = 10**9
    elif how == "stage 99":
        t["stage_index"] = 99
    elif how == "garbage rng":
        t["rng"] = {**t["rng"], "torch": torch.arange(7, dtype=torch.uint8)}
    elif how == "other architecture":
        ckpt["state_dict"] = SRVGGNetCompact(4, 3, 8, 2).state_dict()
        ckpt["state_dict_ema"] = None
    elif how == "bad optimizer state":
        opt = t["optimizers"]["generator"]
        first = next(iter(opt["state"].values()))
        first["exp_avg"] = torch.zeros(3)
    return ckpt


@pytest.mark.parametrize(
    "how,match",
    [
        ("no config", r"'config' is missing"),
        ("no rng", r"'rng' is missing"),
        ("no optimizers", r"'optimizers' is missing"),
        ("iteration -5", r"'iteration' is -5, expected an integer >= 0"),
        ("iteration 1e9", r"checkpoint at iteration 1000000000 of the PSNR stage, past its 2 iterations"),
        ("stage 99", r"checkpoint of stage 99, phase 0, which the config does not have"),
        ("garbage rng", r"its RNG state cannot be restored"),
        ("other architecture", r"\(generator\): weights do not fit RRDBNet"),
        ("bad optimizer state", r"the generator optimiser's state does not fit its network"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_naming_it(run, finished, tmp_path, capsys, how, match):
    bad = tmp_path / "bad_checkpoint.pth"
    torch.save(damage(finished, how), bad)
    assert run(None, "-l", str(bad), config=False) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {bad}") and re.search(match, line), line


def test_an_unreadable_newest_checkpoint_gives_way_to_the_previous_one(run, finished, tmp_path, capsys):
    out = tmp_path / "saved_models"
    out.mkdir()
    good = out / "1_RRDB_PSNR_x4_checkpoint.pth"
    torch.save(finished, good)
    newest = out / "2_RRDB_PSNR_x4_checkpoint.pth"
    newest.write_text("oops\n")
    os.utime(good, (1, 1))
    assert run(None, "--resume", config=False) == 0
    err = capsys.readouterr().err
    rel = lambda p: p.relative_to(tmp_path)  # noqa: E731
    assert f"skipping the newest checkpoint, which is unreadable: {rel(newest)}: not a model file: it is a text" in err
    assert f"continuing from the previous readable checkpoint {rel(good)}" in err
    newest.write_text("oops\n")
    good.write_bytes(b"\x80\x02garbage")
    assert run(None, "--resume", config=False) == 2
    assert one_error_line(capsys.readouterr().err).startswith("error: no readable checkpoint in saved_models: ")
    # the checkpoint an unreadable one replaced comes first
    torch.save(finished, out / "2_RRDB_PSNR_x4_checkpoint.previous.pth")
    assert run(None, "--resume", config=False) == 0
    assert "continuing from the previous readable checkpoint saved_models/2_RRDB_PSNR_x4_checkpoint.previous.pth" \
        in capsys.readouterr().err


def test_interrupted_save_temporaries_are_removed_on_the_next_run(run, finished, tmp_path, capsys):
    out = tmp_path / "saved_models"
    out.mkdir()
    torch.save(finished, out / "1_RRDB_PSNR_x4_checkpoint.pth")
    stale = out / ".1_RRDB_PSNR_x4_checkpoint.pth.k3j_x9a2.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert run(None, "--resume", config=False) == 0
    assert not stale.exists()
    assert f"removed 1 temporary file(s) of interrupted saves: {stale.name}" in capsys.readouterr().err


class FullDisk(io.FileIO):
    """A file on a disk that fills up after `room` bytes."""

    room = 2000

    def write(self, b):
        if self.tell() + len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(b)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to tell files apart")
def test_disk_full_while_saving_a_checkpoint_keeps_the_previous_one(run, tmp_path, capsys, monkeypatch):
    real_fdopen, saves = os.fdopen, []

    def fdopen(fd, mode="r", *args, **kwargs):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if "_checkpoint.pth." in name and name.endswith(".tmp"):
            saves.append(name)
            if len(saves) == 2:  # the second checkpoint finds the disk full
                return io.BufferedWriter(FullDisk(fd, "wb"))
        return real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(files.os, "fdopen", fdopen)
    assert run(None, "-i", "1") == 2
    line = one_error_line(capsys.readouterr().err)
    path = next((tmp_path / "saved_models").glob("*_checkpoint.pth"))
    assert line == f"error: saved_models/{path.name}: could not be written (No space left on device); " \
                   f"the previous {path.name} is unchanged"
    assert read_checkpoint(path)["training"]["iteration"] == 1
    assert not list((tmp_path / "saved_models").glob(".*.tmp"))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_while_writing_the_log_names_it(run, capsys, monkeypatch):
    from torch_sr.training import logging

    real_info = logging.RunLogger.info

    def info(self, message, echo=True):  # the log file lands on a full disk after it was opened
        if self._file is not None and self._file.name != "/dev/full":
            self._file.close()
            self._file = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115
        return real_info(self, message, echo)

    monkeypatch.setattr(logging.RunLogger, "info", info)
    assert run(None) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == "error: /dev/full: could not be written (No space left on device); the checkpoints written so " \
                   "far are kept"


def test_a_non_finite_loss_leaves_a_finite_checkpoint_and_the_run_continues_with_a_lower_lr(run, tmp_path, capsys):
    assert run(None, "-i", "1") == 0  # checkpoints of iterations 1 and 2 (the earlier one kept as previous)
    capsys.readouterr()
    blow_up = {"pretraining": {"lr": 1e6, "num_iterations": 6}}
    assert run(blow_up, "--resume", "-i", "1") == 2
    err = capsys.readouterr().err
    assert "pretraining/lr: 0.0005 -> 1000000.0" in err
    line = one_error_line(err)
    assert re.search(r"PSNR stage, iteration 4: the \w+ loss is (nan|inf)", line), line
    path = next((tmp_path / "saved_models").glob("*_checkpoint.pth"))
    assert "The checkpoint of iteration 3 already gives it (set aside as " in line
    assert f"saved_models/{path.name} is the previous checkpoint again" in line
    ckpt = read_checkpoint(path)
    assert ckpt["training"]["iteration"] == 2
    assert max(v.abs().max() for v in ckpt["state_dict"].values()) < 10  # the weights before lr 1e6
    # the advice works: the same run continues with a sane lr and clipping
    calm = {"pretraining": {"lr": 1e-4, "grad_clip_norm": 1.0, "num_iterations": 6}}
    assert run(calm, "--resume") == 0
    out = capsys.readouterr()
    assert "pretraining/lr: 0.0005 -> 0.0001" in out.err and "pretraining/grad_clip_norm: None -> 1.0" in out.err
    assert "the generator's learning rate is the config's" in out.out
    assert read_checkpoint(path)["training"]["iteration"] == 6


def test_a_non_finite_loss_with_no_earlier_checkpoint_says_to_start_again(run, tmp_path, capsys):
    assert run({"pretraining": {"lr": 1e30, "num_iterations": 10}}, "-i", "1") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "The checkpoint of iteration 1 already gives it" in line and "then start the run again" in line
    assert not list((tmp_path / "saved_models").glob("*_checkpoint.pth"))  # --resume cannot pick the bad one


def test_init_weights_that_fit_nothing_are_an_error(run, tmp_path, capsys):
    other = save_model(SRVGGNetCompact(4, 3, 8, 2), tmp_path / "srvgg.pth")
    assert run({"init_weights": str(other)}) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {other}: none of its ") and "fits the rrdbnet generator" in line
    assert not list((tmp_path / "saved_models").glob("*.pth"))


# ---- configs: one line before any work ----


@pytest.mark.parametrize(
    "text,match",
    [
        ('{"description": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"seed": ' + "9" * 5000 + "}", "value has 5000 digits; no config value needs that many digits"),
        ('{"batch_size": 1e30}', "batch_size: a 31-digit integer is out of range"),
        ('{"seed": 1' + "0" * 25 + "}", r"seed: 1" + "0" * 25 + " is out of range"),
    ],
    ids=["deep", "5000-digits", "batch-1e30", "huge-seed"],
)
def test_hostile_configs_are_one_line(tmp_path, capsys, text, match):
    path = tmp_path / "c.json"
    path.write_text(text)
    assert main([str(path), "--device", "cpu", "--output-dir", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {path}: ") and re.search(match, line), line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["logging/dir", "--output-dir"])
def test_a_folder_option_pointing_at_a_file_is_refused_before_work(run, tmp_path, capsys, option, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    loaded = []
    monkeypatch.setattr("torch_sr.training.run.build_train_set", lambda *a, **k: loaded.append(1))
    if option == "logging/dir":
        code = run({"logging": {"dir": str(blocker / "runs")}})
    else:
        code = run(None, "--output-dir", str(blocker))
    assert code == 2 and not loaded
    line = one_error_line(capsys.readouterr().err)
    where = f"{blocker / 'runs'}: lies under {blocker}, which is" if option == "logging/dir" else f"{blocker}: is"
    assert line == f"error: {option} {where} a file, not a folder; choose another {option}"


@pytest.mark.parametrize(
    "generator,match",
    [
        ({"num_feat": 100_000, "num_conv": 1000}, r"more than 1,000,000,000 parameters"),
        ({"num_feat": 4, "num_conv": 1_000_000}, r"more than 10,000 weight tensors"),
    ],
    ids=["wide", "deep"],
)
def test_an_absurd_generator_is_refused_before_any_data_is_read(tmp_path, capsys, monkeypatch, generator, match):
    """Valid integers describing a network of many gigabytes: one line naming the keys, before the data."""
    cfg = tiny_config(tmp_path / "no_such_train", tmp_path / "no_such_val", **PSNR_ONLY)
    cfg["generator"] = {"arch": "srvgg", **generator}
    path = write_config(tmp_path / "huge.json", cfg)

    def no_data(*args, **kwargs):
        raise AssertionError("data read before the network's size was checked")

    monkeypatch.setattr("torch_sr.training.run.build_train_set", no_data)
    monkeypatch.setattr("torch_sr.training.run.build_val_sets", no_data)
    monkeypatch.chdir(tmp_path)
    assert main([str(path), "--device", "cpu"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {path}: generator (srvgg) ") and re.search(match, line), line
    assert "generator/num_conv" in line and "generator/num_feat" in line and "no_such" not in line
    assert not (tmp_path / "saved_models").exists()


@pytest.mark.parametrize(
    "perceptual, match",
    [
        ({}, r"error: ImageNet weights for (vgg\d+) not found: place \1-\w+\.pth at .*home.*hub.checkpoints.\1-\w+\.pth"),
        ({"weights_path": "nowhere/vgg.pth"}, r"error: perceptual_loss/weights_path: nowhere/vgg\.pth is not a file"),
        ({"network": "resnet18", "layer_weights": {"layer2": 1.0}}, r"error: ImageNet weights for resnet18 not found"),
    ],
)
def test_missing_perceptual_weights_of_the_gan_stage_are_refused_before_the_psnr_stage(
    run, tmp_path, capsys, monkeypatch, perceptual, match
):
    """ESRGAN's perceptual loss is built when its stage starts: once after the whole PSNR stage."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    gan = {"enabled": True, "num_iterations": 2, "val_interval": 100, "g_perceptual_loss_scaling": 1.0}
    assert run({"training": gan, "perceptual_loss": {"pretrained": True, **perceptual}}) == 2
    assert re.search(match, one_error_line(capsys.readouterr().err))
    assert not list(tmp_path.rglob("*.pth"))  # not one PSNR iteration was trained


def test_a_resumed_run_that_lengthens_its_stage_follows_the_new_schedule(run, monkeypatch):
    """The optimiser's saved rate is the old schedule's; the first resumed iteration must use the new one."""
    cosine = {"scheduler": "cosine", "min_lr_factor": 0.1, "val_interval": 100}
    used = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        used.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    assert run({"pretraining": {**cosine, "num_iterations": 8}}, "--output-dir", "resumed", "--stop-after", "4") == 0
    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    assert run({"pretraining": {**cosine, "num_iterations": 16}}, "--output-dir", "resumed", "--resume", "--stop-after", "1") == 0
    assert run({"pretraining": {**cosine, "num_iterations": 16}}, "--output-dir", "straight", "--stop-after", "5") == 0
    assert len(used) == 6 and used[0] == used[-1]  # iteration 5 of a 16-iteration cosine, both ways
