"""train.py: the original flags, SIGTERM/Ctrl-C stops that checkpoint and resume, user errors."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from trainer_fixtures import make_images, subprocess_env, tiny_config, write_config

from torch_sr.cli.train import build_parser, main
from torch_sr.training.checkpointing import read_checkpoint
from torch_sr.training.signals import StoppedOutsideTheLoop, stop_on_signals

ROOT = Path(__file__).resolve().parent.parent


def test_the_original_flags_and_ours():
    argv = ["c.json", "-l", "x.pth", "-a", "--no-data-parallel", "-i", "5", "-w", "7", "-s", "9"]
    args = build_parser().parse_args(argv)
    assert (args.config, args.load_checkpoint) == (Path("c.json"), Path("x.pth"))
    assert args.autocast and args.no_data_parallel
    assert (args.checkpoint_interval, args.best_checkpoint_warmup, args.store_model_interval) == (5, 7, 9)
    args = build_parser().parse_args(["--resume", "--amp-dtype", "bf16", "--output-dir", "o", "--run-name", "r"])
    assert args.config is None and args.resume and args.amp_dtype == "bf16" and args.output_dir == Path("o")
    defaults = build_parser().parse_args([])
    assert defaults.output_dir == Path("saved_models") and defaults.checkpoint_interval == 1000
    assert defaults.best_checkpoint_warmup == 0 and defaults.store_model_interval is None


@pytest.mark.parametrize(
    "argv", [["-i", "0"], ["-w", "-1"], ["-s", "x"], ["--stop-after", "0"], ["--amp-dtype", "fp8"]]
)
def test_bad_flag_values_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(["c.json", *argv])
    assert e.value.code == 2 and "error" in capsys.readouterr().err


def test_missing_config_and_bad_config_are_clear_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nope.json")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main([]) == 2
    assert "give a CONFIG file" in capsys.readouterr().err
    bad = write_config(tmp_path / "bad.json", {"pretraining": {"lrr": 1}})
    assert main([str(bad)]) == 2
    assert "did you mean 'pretraining/lr'" in capsys.readouterr().err


def test_a_missing_dataset_folder_names_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(tmp_path / "absent", tmp_path / "absent")
    assert main([str(write_config(tmp_path / "c.json", cfg)), "--device", "cpu", "--output-dir", str(tmp_path)]) == 2
    assert "absent" in capsys.readouterr().err


def test_signals_become_a_stop_request_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop, stop.deferring():  # in the training loop
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.name == "SIGINT" and stop.exit_code == 130
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C does not wait
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_forked_worker_records_a_signal_and_leaves_the_decision_to_the_main_process():
    """DataLoader workers inherit the handler: raising there killed them and crashed the run without a checkpoint."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with stop_on_signals() as stop:  # outside the loop: in the main process a signal would stop the run at once
        def worker(queue):
            os.kill(os.getpid(), signal.SIGINT)
            queue.put(stop.requested)

        queue = context.Queue()
        child = context.Process(target=worker, args=(queue,))
        child.start()
        child.join(20)
        assert child.exitcode == 0 and queue.get(timeout=5) is True
        assert not stop.requested


def test_a_signal_outside_the_training_loop_stops_at_once(tmp_path, capsys, monkeypatch):
    """A dataset download or network build has no iteration to finish: SIGTERM there must not wait for it."""
    with stop_on_signals() as stop:
        with pytest.raises(StoppedOutsideTheLoop) as e:
            os.kill(os.getpid(), signal.SIGTERM)
    assert e.value.exit_code == 143 and stop.name == "SIGTERM"

    import torch_sr.training.run as run

    def slow_download(*args, **kwargs):  # where build_train_set would be fetching a dataset
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the preparation")

    monkeypatch.setattr(run, "build_train_set", slow_download)
    monkeypatch.chdir(tmp_path)
    train, val = make_images(tmp_path / "train", 4, (32, 32)), make_images(tmp_path / "val", 1, (32, 32), seed=1)
    assert main([str(write_config(tmp_path / "c.json", tiny_config(train, val))), "--device", "cpu"]) == 143
    assert "received SIGTERM while preparing a stage: stopped" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_the_run_resumes_from_it(tmp_path, monkeypatch):
    train, val = make_images(tmp_path / "train", 4, (32, 32)), make_images(tmp_path / "val", 1, (32, 32), seed=1)
    long_stage = {"num_iterations": 100000, "val_interval": 100000}
    cfg = tiny_config(train, val, pretraining=long_stage, data={"num_workers": 1})
    path = write_config(tmp_path / "long.json", cfg)
    env = {**subprocess_env(), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), str(path), "--device", "cpu", "-i", "100000"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:  # one log line per iteration
            if line.startswith("PSNR 3/100000"):
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "received SIGTERM: stopped in the PSNR stage at iteration" in err
    ckpt_path = next((tmp_path / "saved_models").glob("*_RRDB_PSNR_x4_checkpoint.pth"))
    stopped = read_checkpoint(ckpt_path)["training"]["iteration"]
    assert stopped >= 3
    monkeypatch.chdir(tmp_path)
    assert main(["--resume", "--device", "cpu", "--stop-after", "2", "-i", "100000"]) == 0
    assert read_checkpoint(ckpt_path)["training"]["iteration"] == stopped + 2

