"""torch-sr-reproduce: every shipped model's recipe is complete and chained; a small recipe runs end to end."""
import json
import shutil
from pathlib import Path

import pytest

from torch_sr import weights
from torch_sr.model_files.model_file import load_model
from torch_sr.cli.reproduce import TOOLS, load_recipe, main
from torch_sr.config import load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def at_repo(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("name", sorted(weights.MODELS))
def test_each_shipped_model_has_a_chained_recipe(at_repo, name, capsys):
    steps = load_recipe(name)
    produced = set()
    for step in steps:
        tool, args = step[0], step[1:]
        if tool == "train":
            cfg = load_config(args[0])  # exists and validates
            init = cfg.init_weights
            assert init is None or init in produced or init.startswith("torch_sr/weights/"), (name, args[0], init)
            produced.add(args[args.index("--output-dir") + 1])
        elif tool in ("deepen", "export"):
            # reads what an earlier step wrote, or a shipped model (a recipe that starts from one)
            assert any(args[0].startswith(p) for p in (*produced, "torch_sr/weights/")), (name, step)
            produced.add(args[1])
        elif tool == "interpolate":
            produced.add(args[-1])
    assert f"saved_models/{name}.pth" in produced and steps[-1][0] == "test"
    assert main([name, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == len(steps) and f"[{len(steps)}/{len(steps)}] python test.py saved_models/{name}.pth" in out


def test_recipes_never_write_one_file_two_ways():
    """A file two recipes write must come from the same step in both (reruns keep what exists)."""
    writers: dict[str, tuple[str, list[str]]] = {}
    for name in sorted(weights.MODELS):
        for step in load_recipe(str(REPO / "configs/recipes" / name / "recipe.json")):
            tool, args = step[0], step[1:]
            written = args[1] if tool in ("deepen", "export") else args[-1] if tool == "interpolate" else None
            if tool == "train":
                written = args[args.index("--output-dir") + 1]
            if written is None:
                continue
            other = writers.setdefault(written, (name, step))
            assert other[1] == step, f"{written}: {other[0]} writes it with {other[1]}, {name} with {step}"


def test_a_recipe_runs_end_to_end_and_a_second_run_keeps_everything(tmp_path, monkeypatch, capsys):
    from trainer_fixtures import make_images, write_config

    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "train", 4, (32, 32))
    make_images(tmp_path / "val", 1, (32, 32), seed=1)
    stage = {"num_iterations": 2, "cr_patch_size": [16, 16], "scheduler": "constant", "train_datasets": ["train"],
             "val_datasets": ["val"], "val_interval": 2, "hard_transforms": False, "ema_decay": 0.9}  # fmt: skip
    base = {"scale_factor": 4, "batch_size": 2, "training": {"enabled": False}, "data": {"num_workers": 0},
            "generator": {"arch": "srvgg", "num_feat": 8, "num_conv": 2}, "logging": {"tensorboard": False}}  # fmt: skip
    write_config(tmp_path / "a.json", {**base, "pretraining": stage})
    write_config(tmp_path / "b.json", {**base, "init_weights": "saved_models/deep.pth",
                                       "generator": {"arch": "srvgg", "num_feat": 8, "num_conv": 4}, "pretraining": stage})  # fmt: skip
    recipe = {"steps": [
        ["train", "a.json", "--output-dir", "saved_models/a"],
        ["deepen", "saved_models/a/*_final_model.pth", "saved_models/deep.pth", "--every", "1"],
        ["train", "b.json", "--output-dir", "saved_models/b"],
        ["export", "saved_models/b/*_final_model.pth", "saved_models/tiny.pth", "--raw"],
        ["interpolate", "--psnr-model-path", "saved_models/deep.pth", "--esrgan-model-path", "saved_models/tiny.pth",
         "--alpha", "0.5", "saved_models/blend.pth"],
        ["test", "saved_models/blend.pth", "-d", "val"],
    ]}  # fmt: skip
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    assert main(["recipe.json"]) == 0
    assert load_model(tmp_path / "saved_models" / "tiny.pth").hparams["num_conv"] == 4
    first = capsys.readouterr().out
    assert "PSNR" in first  # the test step's table
    stamp = (tmp_path / "saved_models" / "tiny.pth").stat().st_mtime_ns
    assert main(["recipe.json"]) == 0  # again: nothing retrained or rewritten
    again = capsys.readouterr().out
    assert again.count("exists: kept") == 3 and (tmp_path / "saved_models" / "tiny.pth").stat().st_mtime_ns == stamp
    shutil.rmtree(tmp_path / "saved_models" / "a")  # a finished stage's folder, deleted to save space
    assert main(["recipe.json"]) == 0
    assert "what later steps make of it exists (saved_models/deep.pth): kept" in capsys.readouterr().out
    assert not (tmp_path / "saved_models" / "a").exists()  # not trained again for nothing


def test_bad_recipes_are_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["nonexistent_model"]) == 2
    assert "configs/recipes" in capsys.readouterr().err
    (tmp_path / "r.json").write_text(json.dumps({"steps": [["train", "a.json"], ["fly", "x"]]}))
    assert main(["r.json"]) == 2
    err = capsys.readouterr().err
    assert "step 2" in err and all(tool in err for tool in TOOLS)
    for steps, match in [
        (5, '"steps" is a int, not a list'),
        ([["export"]], "step 1 ['export']: export needs an input and an output file"),
        ([["train", "a.json"], ["deepen", "x.pth"]], "step 2 ['deepen', 'x.pth']: deepen needs an input and an output"),
        ([["interpolate"]], "interpolate needs its arguments"),
        ([["train", "a.json", "--stop-after"]], "--stop-after without its value"),
        ([["train", "a.json", "--stop-after", "5", "--output-dir"]], "--output-dir without its value"),
        ([["train", "a.json", "--stop-after", "x"]], "--stop-after takes a number of iterations"),
    ]:
        (tmp_path / "r.json").write_text(json.dumps({"steps": steps}))
        assert main(["r.json"]) == 2
        err = capsys.readouterr().err
        assert match in err and "Traceback" not in err, err


def test_a_step_ending_in_argparse_is_a_step_status_not_the_recipes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.json").write_text(json.dumps({"steps": [["test", "--no-such-flag"], ["test", "--help"]]}))
    assert main(["r.json"]) == 2
    err = capsys.readouterr().err
    assert "no-such-flag" in err and "step 1 (python test.py --no-such-flag) exited with status 2" in err
    (tmp_path / "r.json").write_text(json.dumps({"steps": [["test", "--help"], ["export", "default_x2", "x2.pth"]]}))
    assert main(["r.json"]) == 0  # --help ends test.py with 0; the next step still runs
    assert (tmp_path / "x2.pth").is_file()


def stopped_after_two(tmp_path, monkeypatch) -> Path:
    """A 10-iteration stage in `out/`, stopped after 2 (as a signal would stop it); its checkpoint."""
    from trainer_fixtures import make_images, write_config

    from torch_sr.cli import train

    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "train", 4, (32, 32))
    stage = {"num_iterations": 10, "cr_patch_size": [16, 16], "train_datasets": ["train"], "val_datasets": []}
    write_config(tmp_path / "a.json", {"scale_factor": 4, "batch_size": 2, "training": {"enabled": False},
                                       "data": {"num_workers": 0}, "generator": {"arch": "srvgg", "num_feat": 8, "num_conv": 2},
                                       "logging": {"tensorboard": False}, "pretraining": stage})  # fmt: skip
    assert train.main(["a.json", "--output-dir", "out", "--stop-after", "2"]) == 0
    return next((tmp_path / "out").glob("*_checkpoint.pth"))


def test_a_stage_stopped_by_design_trains_its_iterations_over_interrupted_runs(tmp_path, monkeypatch, capsys):
    """`--stop-after N` in a recipe means N iterations in all: a run interrupted after 2 of 4 trains 2 more."""
    from torch_sr.training.checkpointing import read_checkpoint

    newest = stopped_after_two(tmp_path, monkeypatch)
    step = ["train", "a.json", "--output-dir", "out", "--stop-after", "4"]
    (tmp_path / "r.json").write_text(json.dumps({"steps": [step]}))
    assert main(["r.json"]) == 0
    assert read_checkpoint(newest)["training"]["iteration"] == 4
    capsys.readouterr()
    assert main(["r.json"]) == 0
    assert "stopped by design after 4 iterations, and its checkpoint exists: kept" in capsys.readouterr().out


@pytest.mark.parametrize("status", [130, 141, 143])
def test_a_step_stopped_by_a_signal_ends_the_recipe_with_its_status(tmp_path, monkeypatch, capsys, status):
    """Ctrl-C or SIGTERM in a training step (which checkpoints first) is not an error: run it again to continue."""
    import torch_sr.cli.reproduce as reproduce

    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.json").write_text(json.dumps({"steps": [["train", "a.json"], ["test", "x.pth"]]}))
    ran = []
    monkeypatch.setattr(reproduce, "_tool", lambda tool: lambda argv: ran.append(tool) or status)
    assert main(["r.json"]) == status
    assert ran == ["train"] and "run this again to continue" in capsys.readouterr().out


def test_a_damaged_newest_checkpoint_is_passed_over_as_train_py_does(tmp_path, monkeypatch, capsys):
    from torch_sr.training.checkpointing import read_checkpoint

    newest = stopped_after_two(tmp_path, monkeypatch)
    newest.with_name(newest.name.replace("_checkpoint.pth", "_checkpoint.previous.pth")).write_bytes(newest.read_bytes())
    newest.write_bytes(b"garbage")  # a write cut short
    (tmp_path / "r.json").write_text(json.dumps({"steps": [["train", "a.json", "--output-dir", "out", "--stop-after", "4"]]}))
    assert main(["r.json"]) == 0
    assert read_checkpoint(newest)["training"]["iteration"] == 4
