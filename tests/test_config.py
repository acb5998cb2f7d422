"""Config files: the original project's keys and defaults, strict validation, round trips, schedules."""
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest
import torch

from torch_sr.archs.description import GeneratorArch
from torch_sr.archs import registry
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.config.build import build_discriminator_from_config, build_generator_from_config
from torch_sr.config.schema import LRSchedule
from torch_sr.config.validate import config_to_dict, load_config, validate_config
from torch_sr.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# REFERENCE.md section 6, key by key.
ORIGINAL_DEFAULTS = {
    "scale_factor": 4,
    "batch_size": 16,
    "img_channels": 3,
    "pretraining/num_epoch": 10000,
    "pretraining/cr_patch_size": [128, 128],
    "pretraining/lr": 2e-4,
    "pretraining/sched_step": 200000,
    "pretraining/sched_gamma": 0.5,
    "pretraining/train_datasets": ["div2k"],
    "pretraining/val_datasets": ["div2k"],
    "training/num_epoch": 8000,
    "training/cr_patch_size": [128, 128],
    "training/g_lr": 1e-4,
    "training/d_lr": 1e-4,
    "training/g_sched_steps": [50000, 100000, 200000, 300000],
    "training/d_sched_steps": [50000, 100000, 200000, 300000],
    "training/g_sched_gamma": 0.5,
    "training/d_sched_gamma": 0.5,
    "training/g_adversarial_loss_scaling": 0.005,
    "training/g_content_loss_scaling": 0.01,
    "training/train_datasets": ["div2k"],
    "training/val_datasets": ["div2k"],
    "generator/rrdb_channels": 64,
    "generator/growth_channels": 32,
    "generator/num_basic_blocks": 16,
    "generator/num_dense_blocks": 3,
    "generator/num_residual_blocks": 5,
    "generator/residual_scaling": 0.2,
    "generator/use_subpixel_conv": False,
    "discriminator/vgg_blk_ch": [64, 64, 128, 128, 256, 256, 512, 512],
    "discriminator/fc_features": [100],
    "content_loss/loss_f": "l1",
    "perceptual_loss/layer_weights": {"conv5_4": 1.0},
    "perceptual_loss/vgg_type": "vgg19",
    "perceptual_loss/criterion": "l1",
    "perceptual_loss/normalize_input": True,
    "perceptual_loss/normalize_loss": False,
}


def _get(d, path):
    for part in path.split("/"):
        d = d[part]
    return d


def _write(tmp_path, data, name="run.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _error(tmp_path, data) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(path) in str(e.value)
    return str(e.value)


def test_defaults_are_the_original_projects():
    d = config_to_dict(validate_config({}))
    for key, value in ORIGINAL_DEFAULTS.items():
        assert _get(d, key) == value, key
    cfg = validate_config({})
    assert cfg.generator.arch == "rrdbnet" and cfg.discriminator.arch == "vgg_discriminator"
    assert cfg.adversarial_loss.loss_f == "ragan"
    assert cfg.pretraining.ema_decay is None and cfg.training.grad_clip_norm is None
    assert cfg.logging.tensorboard and not cfg.logging.wandb
    assert cfg.pretraining.hard_transforms and not cfg.training.hard_transforms


@pytest.mark.parametrize(
    "path", sorted(p for p in CONFIGS.rglob("*.json") if p.name != "recipe.json"), ids=lambda p: str(p.relative_to(CONFIGS))
)
def test_every_shipped_config_loads_and_round_trips(path):
    cfg = load_config(path)
    assert cfg.source == str(path)
    data = json.loads(json.dumps(config_to_dict(cfg)))  # plain JSON, as stored in a checkpoint
    assert validate_config(data, "checkpoint") == cfg


@pytest.mark.parametrize(
    "name, pre_patch, patch, blocks, data",
    [
        ("128_cr_23_rrdb_div2k", 128, 128, 23, ("div2k",)),
        ("p192_t128_cr_23_rrdb_div2k+bsds500", 192, 128, 23, ("div2k", "bsds500")),
        ("p192_cr_23_rrdb_div2k", 192, 192, 23, ("div2k",)),
        ("p192_t128_cr_16_rrdb_div2k+bsds500", 192, 128, 16, ("div2k", "bsds500")),
    ],
)
def test_the_four_original_runs(name, pre_patch, patch, blocks, data):
    cfg = load_config(CONFIGS / f"{name}.json")
    assert cfg.pretraining.cr_patch_size == (pre_patch, pre_patch)
    assert cfg.training.cr_patch_size == (patch, patch)
    assert cfg.generator.hparams["num_basic_blocks"] == blocks
    assert cfg.pretraining.train_datasets == cfg.training.train_datasets == data
    assert (cfg.pretraining.num_epoch, cfg.training.num_epoch) == (10000, 8000)
    # Everything else is the table's default.
    defaults = config_to_dict(validate_config({}))
    got = config_to_dict(cfg)
    for key in ("pretraining/lr", "training/g_lr", "training/g_sched_steps", "perceptual_loss/layer_weights"):
        assert _get(got, key) == _get(defaults, key)


def test_smoke_config_is_tiny_and_uses_the_shared_data():
    cfg = load_config(CONFIGS / "smoke_cpu.json")
    assert cfg.pretraining.num_iterations and cfg.training.num_iterations
    assert cfg.pretraining.num_epoch is None
    assert all(d.startswith("../shared/data/train/") for d in cfg.pretraining.train_datasets)
    assert cfg.pretraining.val_datasets == ("../shared/data/benchmark/Set5",)
    assert not cfg.perceptual_loss.pretrained  # runs offline
    g = build_generator_from_config(cfg)
    assert sum(p.numel() for p in g.parameters()) < 1_000_000
    d = build_discriminator_from_config(cfg)
    patch = cfg.training.cr_patch_size
    assert d(torch.rand(2, 3, *patch)).shape == (2, 1)
    assert g(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8 * cfg.scale_factor, 8 * cfg.scale_factor)


def test_smoke_config_paths_resolve_from_the_repository_root(shared_data):
    cfg = load_config(CONFIGS / "smoke_cpu.json")
    for folder in {*cfg.pretraining.train_datasets, *cfg.pretraining.val_datasets, *cfg.training.train_datasets}:
        path = CONFIGS.parent / folder
        assert path.is_dir() and any(path.glob("*.png")), folder


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"training": {"g_lrr": 1e-4}}, "unknown key 'training/g_lrr'; did you mean 'training/g_lr'?"),
        ({"pretraining": {"g_lr": 1e-4}}, "unknown key 'pretraining/g_lr'; did you mean 'pretraining/lr'?"),
        ({"trainig": {}}, "unknown key 'trainig'; did you mean 'training'?"),
        ({"num_epoch": 5}, "unknown key 'num_epoch'; did you mean 'pretraining/num_epoch'?"),
        ({"perceptual_loss": {"layer_weight": {}}}, "did you mean 'perceptual_loss/layer_weights'?"),
        ({"generator": {"num_basic_block": 3}}, "unknown key 'generator/num_basic_block'; did you mean "
                                                "'generator/num_basic_blocks'?"),
        ({"discriminator": {"fc_feature": [10]}}, "did you mean 'discriminator/fc_features'?"),
        ({"generator": {"arch": "rrdb"}}, "generator/arch: unknown generator \"rrdb\"; did you mean 'rrdbnet'?"),
    ],
)
def test_unknown_keys_name_the_full_path_and_suggest(tmp_path, data, expected):
    assert expected in _error(tmp_path, data)


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"training": {"g_lr": "1e-4"}}, 'training/g_lr: expected a number, got "1e-4"'),
        ({"training": {"g_lr": -1e-4}}, "training/g_lr: must be > 0, got -0.0001"),
        ({"batch_size": 0}, "batch_size: must be >= 1, got 0"),
        ({"batch_size": 2.5}, "batch_size: expected an integer, got 2.5"),
        ({"batch_size": True}, "batch_size: expected an integer, got true"),
        ({"pretraining": {"cr_patch_size": [128]}}, "pretraining/cr_patch_size: expected a list of 2 integers or null"),
        ({"pretraining": {"cr_patch_size": [128, -4]}}, "pretraining/cr_patch_size[1]: must be >= 1, got -4"),
        ({"training": {"g_sched_steps": [10, "x"]}}, 'training/g_sched_steps[1]: expected an integer, got "x"'),
        ({"training": {"g_sched_steps": [20, 10]}}, "training/g_sched_steps: milestones must be strictly increasing"),
        ({"training": {"ema_decay": 1.0}}, "training/ema_decay: must be < 1, got 1.0"),
        ({"content_loss": {"loss_f": "L1"}}, 'content_loss/loss_f: expected one of "l1", "l2", "mse", "charbonnier", '
                                             'got "L1"; did you mean "l1"?'),
        ({"adversarial_loss": {"loss_f": "wgan"}}, 'adversarial_loss/loss_f: expected one of "ragan", "vanilla", '
                                                   '"lsgan", "hinge", got "wgan"'),
        ({"perceptual_loss": {"layer_weights": {"conv5_4": -1}}},
         "perceptual_loss/layer_weights/conv5_4: must be >= 0"),
        ({"perceptual_loss": {"layer_weights": {"conv5_5": 1}}},
         "perceptual_loss/layer_weights/conv5_5: not a layer of vgg19; did you mean 'conv5_4'?"),
        ({"perceptual_loss": {"vgg_type": "vgg11", "layer_weights": {"conv5_4": 1}}},
         "perceptual_loss/layer_weights/conv5_4: not a layer of vgg11"),
        ({"scale_factor": 3}, "pretraining/cr_patch_size: [128, 128] is not a multiple of scale_factor 3"),
        ({"training": "fast"}, 'training: expected an object {...} of keys, got "fast"'),
        ({"generator": {"num_basic_blocks": "23"}}, 'generator/num_basic_blocks: expected an integer, got "23"'),
        ({"generator": {"scale_factor": 2}}, "generator/scale_factor: set once for the whole config, as the "
                                             "top-level key 'scale_factor'"),
        ({"discriminator": {"vgg_blk_ch": [64, 64.5]}}, "discriminator/vgg_blk_ch[1]: expected an integer, got 64.5"),
        ({"pretraining": {"content_loss_scaling": 0}}, "every loss weight of the stage is 0"),
        ({"img_channels": 1, "content_loss": {"y_weight": 1}}, "content_loss/y_weight: needs RGB images (img_channels 3), "
                                                             "not 1: set it to 0"),
        ({"perceptual_loss": {"pretrained": False, "weights_path": "vgg.pth"}}, "perceptual_loss/weights_path: is set"),
        ({"discriminator": {"arch": "unet_discriminator"}, "training": {"cr_patch_size": [36, 36]}},
         "training/cr_patch_size: unet_discriminator judges [36, 36] windows (the [36, 36] crop); their sides must be "
         "multiples of 8"),
        ({"discriminator": {"arch": "unet_discriminator"}, "training": {"cr_patch_size": [48, 48], "d_shift": 4}},
         "unet_discriminator judges [44, 44] windows (the [48, 48] crop less d_shift 4)"),
        ({"discriminator": {"arch": "unet_discriminator"}, "training": {"cr_patch_size": None}},
         "training/cr_patch_size: unet_discriminator needs crops"),
    ],
)
def test_wrong_values_name_the_key_and_the_value(tmp_path, data, expected):
    assert expected in _error(tmp_path, data)


def test_unet_discriminator_windows_that_fit_pass():
    unet = {"arch": "unet_discriminator"}
    cfg = validate_config({"discriminator": unet, "training": {"cr_patch_size": [48, 48], "d_shift": 8}})
    assert cfg.training.d_shift == 8
    validate_config({"discriminator": {"arch": "unet_discriminator"}, "training": {"enabled": False, "cr_patch_size": None}})


def test_all_problems_are_listed_at_once(tmp_path):
    message = _error(tmp_path, {"batch_size": -1, "training": {"g_lrr": 1, "d_lr": "x"}, "generator": {"nope": 1}})
    assert "4 problems" in message
    for part in ("batch_size", "training/g_lrr", "training/d_lr", "generator/nope"):
        assert part in message


def test_length_in_epochs_or_iterations_exactly_one(tmp_path):
    cfg = validate_config({"pretraining": {"num_iterations": 500}})
    assert (cfg.pretraining.num_epoch, cfg.pretraining.num_iterations) == (None, 500)
    assert cfg.training.num_epoch == 8000  # the other stage keeps its default
    cfg = validate_config({"training": {"num_epoch": 3}})
    assert (cfg.training.num_epoch, cfg.training.num_iterations) == (3, None)
    assert "give exactly one of num_epoch and num_iterations, not both" in _error(
        tmp_path, {"pretraining": {"num_epoch": 3, "num_iterations": 500}}
    )
    assert "not neither" in _error(tmp_path, {"training": {"num_epoch": None}})
    assert "warmup_iterations: 500 is not shorter" in _error(
        tmp_path, {"training": {"num_iterations": 500, "warmup_iterations": 500}}
    )


def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*missing.json"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "batch_size": 16,\n}')
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON: .* line 3, column 1"):
        load_config(bad)
    bad.write_text('{"batch_size": 16, "batch_size": 8}')
    with pytest.raises(ConfigError, match="key 'batch_size' appears twice"):
        load_config(bad)
    bad.write_text('{"training": {"g_lr": NaN}}')
    with pytest.raises(ConfigError, match="NaN is not a valid JSON number"):
        load_config(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"bad.json: a config is a JSON object"):
        load_config(bad)


def test_integral_floats_are_integers_and_schema_key_is_ignored():
    cfg = validate_config({"$schema": "x.json", "pretraining": {"sched_step": 2e5}, "training": {"g_lr": 1}})
    assert cfg.pretraining.sched_step == 200000 and isinstance(cfg.pretraining.sched_step, int)
    assert cfg.training.g_lr == 1.0 and isinstance(cfg.training.g_lr, float)
    assert "$schema" not in config_to_dict(cfg)


def test_config_is_frozen():
    cfg = validate_config({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.training.g_lr = 3.0


def test_architecture_sections_follow_the_constructor():
    generator = {"num_basic_blocks": 2, "rrdb_channels": 8}
    cfg = validate_config({"scale_factor": 2, "img_channels": 1, "generator": generator})
    assert cfg.generator.hparams["num_basic_blocks"] == 2 and cfg.generator.hparams["growth_channels"] == 32
    assert "scale_factor" not in cfg.generator.hparams  # top-level keys are shared, not repeated
    assert cfg.generator.kwargs["scale_factor"] == 2 and cfg.generator.kwargs["img_channels"] == 1
    assert cfg.discriminator.kwargs["img_channels"] == 1 and "scale_factor" not in cfg.discriminator.kwargs
    g = build_generator_from_config(cfg)
    assert isinstance(g, RRDBNet) and g.info.scale == 2 and g.info.in_channels == 1
    assert g.hparams["num_basic_blocks"] == 2 and len(g.body) == 2


def test_constructor_range_errors_are_config_errors(tmp_path):
    cfg = load_config(_write(tmp_path, {"generator": {"num_dense_blocks": 0}}))
    expected = r"run.json: generator \(rrdbnet\): num_dense_blocks must be at least 1, got 0"
    with pytest.raises(ConfigError, match=expected):
        build_generator_from_config(cfg)


class _ToyGenerator(torch.nn.Module):
    """A new architecture: no config code anywhere, only its signature."""

    def __init__(
        self,
        depth: int,
        scale_factor: int = 4,
        mode: Literal["fast", "slow"] = "fast",
        widths: tuple[int, ...] = (8, 4),
        dropout: float | None = None,
        callback: Callable[[str], None] = print,  # not JSON: left out of the config, its default applies
    ):
        super().__init__()
        self.hparams = dict(depth=depth, scale_factor=scale_factor, mode=mode, widths=list(widths), dropout=dropout)


def test_a_new_architecture_needs_no_config_code(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.GENERATORS, "toy", GeneratorArch("toy", _ToyGenerator))
    cfg = validate_config({"scale_factor": 2, "generator": {"arch": "toy", "depth": 3, "widths": [2, 1]}})
    assert cfg.generator.hparams == {"depth": 3, "mode": "fast", "widths": [2, 1], "dropout": None}
    assert build_generator_from_config(cfg).hparams["scale_factor"] == 2
    assert validate_config(config_to_dict(cfg)) == cfg
    assert "generator/depth: missing; toy needs it (an integer)" in _error(tmp_path, {"generator": {"arch": "toy"}})
    message = _error(tmp_path, {"generator": {"arch": "toy", "depth": 1, "mode": "quick", "dropot": 0.1}})
    assert 'generator/mode: expected one of "fast", "slow", got "quick"' in message
    assert "unknown key 'generator/dropot'; did you mean 'generator/dropout'?" in message
    assert "generator/callback: cannot be set from a config file" in _error(
        tmp_path, {"generator": {"arch": "toy", "depth": 1, "callback": "x"}}
    )


def test_optimizer_and_loss_views_of_the_stages():
    cfg = validate_config({"training": {"g_lr": 3e-4, "d_sched_gamma": 0.1, "ema_decay": 0.999}})
    g, d = cfg.training.optimizers["generator"], cfg.training.optimizers["discriminator"]
    assert (g.lr, d.lr, g.betas) == (3e-4, 1e-4, (0.9, 0.99))
    assert g.schedule.kind == "multistep" and d.schedule.gamma == 0.1
    assert d.schedule.milestones == (50000, 100000, 200000, 300000)
    assert cfg.training.loss_weights == {
        "content": 0.01, "perceptual": 1.0, "adversarial": 0.005, "tv": 0.0, "checkerboard": 0.0
    }
    p = cfg.pretraining.optimizers["generator"]
    assert (p.lr, p.betas, p.schedule.kind, p.schedule.step_size, p.schedule.gamma) == (2e-4, (0.9, 0.999), "step",
                                                                                        200000, 0.5)
    assert cfg.pretraining.loss_weights == {"content": 1.0, "perceptual": 0.0, "tv": 0.0}


def _torch_lrs(scheduler_cls, n, **kwargs):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = scheduler_cls(opt, **kwargs)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_step_and_multistep_schedules_match_torch():
    step = LRSchedule("step", gamma=0.5, step_size=7)
    expected = _torch_lrs(torch.optim.lr_scheduler.StepLR, 40, step_size=7, gamma=0.5)
    assert [step.factor(i, 40) for i in range(40)] == pytest.approx(expected)
    multi = LRSchedule("multistep", gamma=0.1, milestones=(5, 12, 30))
    expected = _torch_lrs(torch.optim.lr_scheduler.MultiStepLR, 40, milestones=[5, 12, 30], gamma=0.1)
    assert [multi.factor(i, 40) for i in range(40)] == pytest.approx(expected)


def test_warmup_and_cosine_schedules():
    cos = LRSchedule("cosine", warmup_iterations=10, min_lr_factor=0.1)
    f = [cos.factor(i, 110) for i in range(111)]
    assert f[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])  # linear warm-up to the base lr
    assert f[10] == pytest.approx(1.0)
    assert f[60] == pytest.approx(0.55)  # half way: (1 + 0.1) / 2
    assert f[110] == pytest.approx(0.1) and min(f[10:]) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # monotone decay after warm-up
    warm_step = LRSchedule("step", gamma=0.5, step_size=100, warmup_iterations=4)
    assert [warm_step.factor(i, 1000) for i in (0, 3, 4, 100)] == pytest.approx([0.25, 1.0, 1.0, 0.5])
    assert LRSchedule("constant").factor(12345, 10) == 1.0


def _readme_configuration() -> str:
    text = (CONFIGS.parent / "docs" / "training.md").read_text(encoding="utf-8")
    part = text.split("<!-- section:train -->")[1].split("<!-- /section:train -->")[0]
    return part[part.index("## Configuration"):]


def test_training_manual_documents_every_key_and_its_example_is_valid():
    part = _readme_configuration()
    names = set()
    for key, value in config_to_dict(validate_config({})).items():
        names |= {key} | (set(value) if isinstance(value, dict) else set())
    assert sorted(n for n in names if f"`{n}" not in part and f"{n}`" not in part) == []
    example = json.loads(part.split("```json")[1].split("```")[0])
    assert validate_config(example).generator.hparams["num_basic_blocks"] == 23


def test_unet_windows_of_a_stage_with_phases_are_the_phases():
    unet = {"arch": "unet_discriminator"}
    phases = [{"cr_patch_size": [68, 68], "num_iterations": 10}, {"cr_patch_size": [132, 132], "num_iterations": 10}]
    validate_config({"discriminator": unet, "training": {"d_shift": 4, "phases": phases}})  # 64 and 128: fine
    validate_config({"discriminator": unet, "training": {"cr_patch_size": None, "phases": phases, "d_shift": 4}})
    with pytest.raises(ConfigError, match=r"training/phases\[1\]/cr_patch_size: unet_discriminator judges \[124, 124\]"):
        wrong = [phases[0], {**phases[1], "cr_patch_size": [128, 128]}]
        validate_config({"discriminator": unet, "training": {"d_shift": 4, "phases": wrong}})
