"""The trainer's parts: data order, EMA, weight transfer, checkpoints, resume checks, NaN stops, model files."""
import re

import numpy as np
import pytest
import torch
from trainer_fixtures import make_images

from torch_sr.archs.registry import generator_arch
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.files import read_weights
from torch_sr.model_files.model_file import load_model
from torch_sr.cli.train import main
from torch_sr.config.validate import validate_config
from torch_sr.errors import CheckpointError, ConfigError
from torch_sr.training.checkpointing import read_checkpoint
from torch_sr.training.data import NumberedSamples
from torch_sr.training.loop import random_window
from torch_sr.training.ema import ModelEMA
from torch_sr.training.resume import config_differences, may_change
from torch_sr.training.rng import derive_seed
from torch_sr.training.sampler import GlobalBatchSampler
from torch_sr.training.transfer import load_fitting_weights


# -- data order ------------------------------------------------------------------------------------


def test_ranks_share_each_global_batch_without_overlap():
    one = list(GlobalBatchSampler(8, 3, 6))
    assert one == [list(range(24, 32)), list(range(32, 40)), list(range(40, 48))]
    ranks = [list(GlobalBatchSampler(8, 3, 6, rank=r, world_size=4)) for r in range(4)]
    for i in range(3):
        assert sorted(sum((ranks[r][i] for r in range(4)), [])) == one[i]
    with pytest.raises(ConfigError, match="batch_size 6 .* 4 processes"):
        GlobalBatchSampler(6, 0, 1, world_size=4)


def test_a_batch_the_processes_cannot_share_is_refused_before_any_data_naming_the_config():
    from trainer_fixtures import tiny_config

    from torch_sr.training.run import check_batch_split
    from torch_sr.training.stages import build_stages

    data = tiny_config("absent", "absent", batch_size=6, training={"batch_size": 4})
    stages = build_stages(validate_config(data, "c.json"))
    check_batch_split(stages, 2)
    with pytest.raises(ConfigError, match=r"^c\.json: batch_size 6, the global mini-batch of the PSNR stage, .* 4 processes"):
        check_batch_split(stages, 4)
    with pytest.raises(ConfigError, match=r"batch_size 4, the global mini-batch of the ESRGAN stage, .* 3 processes"):
        check_batch_split(stages[1:], 3)


class Recorder:
    """A dataset that returns which item and which RNG draw it was asked for."""

    def __init__(self, n):
        self.n, self.state = n, {}

    def __len__(self):
        return self.n

    def load_state_dict(self, state):
        self.state = dict(state)

    def __getitem__(self, i):
        return i, float(np.random.default_rng([self.state["seed"], self.state["draws"]]).random())


def test_sample_numbers_fix_item_and_randomness_whatever_the_access_order():
    a, b = NumberedSamples(Recorder(7), seed=3), NumberedSamples(Recorder(7), seed=3)
    forward = [a[g] for g in range(21)]
    backward = [b[g] for g in reversed(range(21))][::-1]
    assert forward == backward
    for epoch in range(3):  # each epoch visits every item once, in its own order
        assert sorted(i for i, _ in forward[epoch * 7 : epoch * 7 + 7]) == list(range(7))
    assert [i for i, _ in forward[:7]] != [i for i, _ in forward[7:14]]
    assert len({r for _, r in forward}) == 21  # a fresh random stream per sample number


def test_each_epoch_crops_an_image_afresh_and_a_sample_number_always_alike(trainer_folders):
    from torch_sr.data.datasets import SRTrainDataset
    from torch_sr.training.sampler import epoch_permutation

    paths = sorted(trainer_folders[0].glob("*.png"))
    samples = NumberedSamples(SRTrainDataset(paths, 4, 16, seed=5), seed=5)
    n = len(samples)
    # the sample numbers at which epochs 0 and 1 visit image 0
    g0, g1 = (e * n + int(np.argmax(epoch_permutation(5, e, n) == 0)) for e in (0, 1))
    first, again, later = samples[g0], samples[g0], samples[g1]
    assert torch.equal(first["hr"], again["hr"]) and torch.equal(first["lr"], again["lr"])
    assert not torch.equal(first["hr"], later["hr"])


def test_derived_seeds_are_distinct_and_stable():
    seeds = {derive_seed(0, "data", 0), derive_seed(0, "data", 1), derive_seed(1, "data", 0), derive_seed(0, "g", 0)}
    assert len(seeds) == 4 and all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(0, "data", 1) == derive_seed(0, "data", 1)


# -- EMA, gradient clipping and weight transfer ----------------------------------------------------


def test_fp16_gradient_scaler_steps_like_unscaled_and_skips_overflows():
    """The --autocast fp16 path's scaler use (GradScaler works on the CPU too): clipping sees true gradients."""
    from torch_sr.training.loop import backward, optimizer_step

    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([p], lr=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, enabled=True)
    backward((p * torch.tensor([30.0, 40.0, 0.0, 0.0])).sum(), opt, scaler)
    assert p.grad[0] == 30.0 * 2**12  # scaled for the backward pass
    optimizer_step(opt, scaler, [p], clip=0.5)
    assert torch.allclose(p.detach(), torch.tensor([-0.3, -0.4, 0.0, 0.0]))  # unscaled before clipping
    backward((p * torch.tensor([float("inf"), 1.0, 1.0, 1.0])).sum(), opt, scaler)
    optimizer_step(opt, scaler, [p], clip=None)
    assert torch.allclose(p.detach(), torch.tensor([-0.3, -0.4, 0.0, 0.0]))  # overflow: step skipped
    assert scaler.get_scale() == 2.0**11  # and the scale backed off


def test_data_parallel_wraps_only_with_several_gpus(monkeypatch):
    from torch_sr.training.distributed import DistributedContext, wrap_model

    net = torch.nn.Linear(2, 2)
    ctx = DistributedContext(torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert isinstance(wrap_model(net, ctx), torch.nn.DataParallel)
    assert wrap_model(net, ctx, data_parallel=False) is net  # --no-data-parallel
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert wrap_model(net, ctx) is net
    assert wrap_model(net, DistributedContext(torch.device("cpu"))) is net


def test_gradient_clipping_bounds_the_step():
    from torch_sr.training.loop import backward, optimizer_step

    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([p], lr=1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    backward((p * torch.tensor([30.0, 40.0, 0.0, 0.0])).sum(), opt, scaler)
    optimizer_step(opt, scaler, [p], clip=0.5)
    assert torch.allclose(p.detach(), torch.tensor([-0.3, -0.4, 0.0, 0.0]))  # gradient norm 50 clipped to 0.5
    backward((p * 2).sum(), opt, scaler)
    optimizer_step(opt, scaler, [p], clip=None)
    assert torch.allclose(p.detach(), torch.tensor([-2.3, -2.4, -2.0, -2.0]))


def test_ema_follows_the_weights_with_its_decay():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(net, 0.75)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net.train()(torch.randn(4, 2))  # batch-norm statistics move too
    ema.update(net, 1000)  # long after the warm-up: the configured decay
    for k, v in ema.state_dict().items():
        now = net.state_dict()[k]
        expected = now if not v.is_floating_point() else 0.75 * start[k] + 0.25 * now
        assert torch.allclose(v, expected.to(v.dtype)), k
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_decay_warms_up_so_the_initial_weights_fade():
    ema = ModelEMA(torch.nn.Linear(2, 2), 0.999)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(90) == pytest.approx(0.91)
    assert ema.decay_at(10**6) == 0.999
    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        ema.module.weight.zero_()
        net.weight.fill_(1.0)
    ema.update(net, 0)
    assert torch.allclose(ema.module.weight, torch.full((2, 2), 0.9))


def test_weights_load_where_they_fit_and_the_rest_is_reported():
    x2 = RRDBNet(scale_factor=2, rrdb_channels=8, growth_channels=4, num_basic_blocks=1, num_dense_blocks=1)
    x4 = RRDBNet(scale_factor=4, rrdb_channels=8, growth_channels=4, num_basic_blocks=1, num_dense_blocks=1)
    report = load_fitting_weights(x4, x2.state_dict())
    assert report.missing == ["conv_up2.weight", "conv_up2.bias"] and not report.reshaped and not report.unexpected
    assert torch.equal(x4.conv_first.weight, x2.conv_first.weight) and "conv_up1.weight" in report.loaded
    wide = RRDBNet(scale_factor=4, rrdb_channels=16, growth_channels=4, num_basic_blocks=1, num_dense_blocks=1)
    report = load_fitting_weights(x4, wide.state_dict())
    assert ("conv_first.weight", (16, 3, 3, 3), (8, 3, 3, 3)) in report.reshaped
    assert "kept fresh" in report.summary()


# -- a run's files ---------------------------------------------------------------------------------


def test_a_run_writes_named_models_and_safe_loadable_checkpoints(run, tmp_path, capsys):
    changes = {"pretraining": {"ema_decay": 0.9, "num_iterations": 6, "val_interval": 1}}
    assert run(changes, "-i", "2", "-s", "3", "-w", "3") == 0
    validated, best_at = None, []  # -w 3: validations at 1 and 2 may not save a best model; 3 is the first that does
    for line in capsys.readouterr().out.splitlines():
        if m := re.match(r"PSNR validation at iteration (\d+)", line):
            validated = int(m[1])
        elif line.startswith("PSNR: best validation"):
            best_at.append(validated)
    assert best_at and best_at[0] == 3, best_at
    out = tmp_path / "saved_models"
    names = sorted(p.name for p in out.iterdir())
    ts = names[0].split("_")[0]
    assert re.fullmatch(r"\d{10}", ts) and all(n.startswith(ts + "_RRDB_") for n in names)
    assert names == sorted(
        f"{ts}_RRDB_{stage}_x4_{kind}.pth"
        for stage, kinds in (("PSNR", ("iter3_model", "iter6_model")), ("ESRGAN", ("iter3_model",)))
        for kind in ("best_model", "final_model", "checkpoint", "checkpoint.previous", *kinds)
    )
    ckpt_path = out / f"{ts}_RRDB_PSNR_x4_checkpoint.pth"
    raw = torch.load(ckpt_path, weights_only=True)  # tensors and plain containers only
    t = raw["training"]
    assert (t["stage"], t["iteration"], t["total_iterations"], t["epoch"]) == ("PSNR", 6, 6, 4)
    assert set(t) >= {"optimizers", "schedulers", "scalers", "rng", "data", "config", "best", "discriminator"}
    assert isinstance(t["rng"]["torch"], torch.Tensor) and isinstance(t["rng"]["numpy"]["keys"], torch.Tensor)
    assert t["data"] == {"seed": t["data"]["seed"], "next_sample": 24, "batch_size": 4, "dataset_size": 5}
    assert validate_config(t["config"]).pretraining.ema_decay == 0.9
    # load_model reads a checkpoint as a model file, preferring the EMA weights
    model = load_model(ckpt_path)
    assert torch.equal(model.conv_first.weight, raw["state_dict_ema"]["conv_first.weight"])
    assert not torch.equal(raw["state_dict"]["conv_first.weight"], raw["state_dict_ema"]["conv_first.weight"])
    assert model.meta["stage"] == "PSNR" and model.meta["iteration"] == 6
    # the best model is chosen only from iteration 3 (-w 3) on, by validation PSNR
    best = torch.load(out / f"{ts}_RRDB_PSNR_x4_best_model.pth", weights_only=True)
    assert best["meta"]["iteration"] >= 3 and "val/psnr" in best["meta"]["validation"]
    assert torch.load(out / f"{ts}_RRDB_PSNR_x4_iter3_model.pth", weights_only=True)["meta"]["iteration"] == 3
    # stage 2 keeps no EMA unless configured; its best model is chosen by the validation image loss
    gan = torch.load(out / f"{ts}_RRDB_ESRGAN_x4_checkpoint.pth", weights_only=True)
    assert "state_dict_ema" not in gan and gan["training"]["best"]["metric"] == "image_loss"
    assert gan["training"]["discriminator"] and gan["training"]["step_offset"] == 6
    assert read_weights(out / f"{ts}_RRDB_ESRGAN_x4_final_model.pth")[0]["meta"]["stage"] == "ESRGAN"


def test_stage_two_starts_from_the_stage_one_model(run, tmp_path, capsys):
    changes = {"pretraining": {"ema_decay": 0.5}, "training": {"g_lr": 1e-12, "d_lr": 1e-12}}
    assert run(changes, "-a", "--amp-dtype", "fp16") == 0
    assert "--amp-dtype fp16 needs CUDA" in capsys.readouterr().err  # and float32 training went on
    out = tmp_path / "saved_models"
    psnr = torch.load(next(out.glob("*PSNR*final_model.pth")), weights_only=True)
    gan = torch.load(next(out.glob("*ESRGAN*final_model.pth")), weights_only=True)
    for k, v in gan["state_dict"].items():  # the EMA weights, as load_model(stage-1 final) gives them
        assert torch.allclose(v, psnr["state_dict_ema"][k], atol=1e-9), k


# -- resuming --------------------------------------------------------------------------------------


def test_resuming_with_a_config_that_changes_the_run_names_the_keys(run, tmp_path, capsys):
    assert run(None, "--stop-after", "2") == 0
    changed = {"batch_size": 2, "generator": {"rrdb_channels": 4}, "logging": {"log_interval": 5}}
    assert run(changed, "--resume") == 2
    err = capsys.readouterr().err
    assert "batch_size: checkpoint 4, config 2" in err and "generator/rrdb_channels: checkpoint 8, config 4" in err
    assert "logging" not in err
    # lengths, validation and logging may change
    longer = {"pretraining": {"num_iterations": 5, "val_interval": 5}, "logging": {"log_interval": 5}}
    assert run(longer, "--resume") == 0
    ckpt = read_checkpoint(next((tmp_path / "saved_models").glob("*PSNR*checkpoint.pth")))
    assert ckpt["training"]["iteration"] == 5 and ckpt["training"]["config"]["pretraining"]["num_iterations"] == 5


def test_a_checkpoint_older_than_a_config_key_resumes_with_that_key_at_its_default(run, tmp_path, capsys):
    assert run(None, "--stop-after", "2") == 0
    path = next((tmp_path / "saved_models").glob("*PSNR*checkpoint.pth"))
    ckpt = torch.load(path, weights_only=True)
    del ckpt["training"]["config"]["training"]["d_shift"]  # as written before the key existed
    torch.save(ckpt, path)
    assert run({"training": {"d_shift": 1}}, "--resume") == 2
    assert "training/d_shift: checkpoint 0, config 1" in capsys.readouterr().err
    assert run({"pretraining": {"num_iterations": 3}}, "--resume") == 0
    assert read_checkpoint(path)["training"]["iteration"] == 3


def test_config_differences_and_what_may_change():
    a = {"batch_size": 4, "pretraining": {"num_iterations": 4, "lr": 1e-3}, "perceptual_loss": {"layer_weights": {}}}
    b = {**a, "pretraining": {"num_iterations": 8, "lr": 1e-3}, "perceptual_loss": {"layer_weights": {"b": 1}}}
    assert config_differences(a, b) == {
        "perceptual_loss/layer_weights": ({}, {"b": 1}),
        "pretraining/num_iterations": (4, 8),
    }
    assert may_change("pretraining/num_iterations") and may_change("logging/dir") and may_change("data/num_workers")
    assert may_change("pretraining/lr") and may_change("training/grad_clip_norm")  # what a NaN loss asks to change
    assert not may_change("pretraining/betas") and not may_change("seed") and not may_change("datax")


def test_resume_needs_something_to_resume(run, tmp_path, capsys):
    assert main(["--resume", "--output-dir", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint in" in capsys.readouterr().err
    model = tmp_path / "model.pth"
    from torch_sr.model_files.model_file import save_model

    save_model(RRDBNet(rrdb_channels=8, growth_channels=4, num_basic_blocks=1), model)
    assert main(["-l", str(model)]) == 2
    assert "not a training checkpoint" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        read_checkpoint(model)


# -- a loss that blows up --------------------------------------------------------------------------


def test_a_non_finite_loss_stops_with_the_loss_and_iteration(run, tmp_path, capsys):
    assert run({"pretraining": {"lr": 1e30, "num_iterations": 10}}, "-i", "1") == 2
    err = capsys.readouterr().err
    match = re.search(r"PSNR stage, iteration (\d+): the (content|g_total) loss is (nan|inf)", err)
    assert match, err
    # the checkpoint of the iteration before already holds the weights that give it: set aside
    # (what happens then: test_training_errors.py)
    bad = read_weights(next((tmp_path / "saved_models").glob("*PSNR*_checkpoint.nonfinite.pth")))[0]
    assert bad["training"]["iteration"] == int(match.group(1)) - 1


# -- any registered pair trains --------------------------------------------------------------------

TINY_ARCHS = {
    "srcnn": {"kernel_sizes": [3, 1, 3], "num_filters": [8, 4]},
    "srresnet": {"num_channels": 8, "num_blocks": 1},
    "resnet_pixelshuffle": {"num_channels": 8, "num_blocks": 1},
    "unet_resnet18": {"decoder_channels": [8, 8, 8, 8, 8], "pretrained_encoder": False},
    "srvgg": {"num_feat": 8, "num_conv": 2},
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "generator, discriminator",
    [
        *((g, "vgg_discriminator") for g in TINY_ARCHS),
        ("srresnet", "srgan_discriminator"),
        ("srvgg", "unet_discriminator"),
    ],
)
def test_every_registered_generator_and_discriminator_trains_both_stages(run, tmp_path, generator, discriminator):
    from torch_sr.archs.registry import DISCRIMINATORS, GENERATORS

    assert set(TINY_ARCHS) | {"rrdbnet"} == set(GENERATORS) and discriminator in DISCRIMINATORS
    d = {"arch": discriminator, "num_channels": 4, "fc_features": 8, "input_size": 16}
    if discriminator == "vgg_discriminator":
        d = {"arch": discriminator, "vgg_blk_ch": [8, 8], "fc_features": [8], "input_size": 16}
    if discriminator == "unet_discriminator":
        d = {"arch": discriminator, "num_feat": 4}
    stage = {"num_iterations": 1, "val_interval": 1}
    sections = {"generator": {"arch": generator, **TINY_ARCHS[generator]}, "discriminator": d}
    assert run({"pretraining": stage, "training": stage}, sections=sections) == 0
    model_name = {"srcnn": "SRCNN", "srresnet": "SRResNet"}.get(generator, generator)
    gan_name = {"srresnet": "SRGAN"}.get(generator, "GAN")
    stamp = next((tmp_path / "saved_models").glob("*_final_model.pth")).name.split("_")[0]
    for stage_name in ("PSNR", gan_name):
        model = load_model(tmp_path / "saved_models" / f"{stamp}_{model_name}_{stage_name}_x4_final_model.pth")
        assert generator_arch(model).name == generator and model.meta["stage"] == stage_name


def test_whole_images_of_different_sizes_need_batch_size_1(run, tmp_path, capsys):
    # images of one size stack into batches even when not square (40x44: only square images are transposed)
    whole = {"cr_patch_size": None, "num_iterations": 1}
    assert run({"pretraining": whole, "training": {"enabled": False}}) == 0
    mixed = make_images(tmp_path / "mixed", 2, (40, 44))
    make_images(tmp_path / "small", 1, (32, 32), seed=3).joinpath("img00.png").rename(mixed / "small.png")
    mixed = {**whole, "train_datasets": [str(mixed)]}
    assert run({"pretraining": mixed, "training": {"enabled": False}}) == 2
    err = capsys.readouterr().err
    assert "cr_patch_size is null (whole images) but the training images differ in size" in err
    assert run({"batch_size": 1, "pretraining": mixed, "training": {"enabled": False}}) == 0



def test_psnr_only_run_then_gan_stage_alone_from_init_weights(run, tmp_path):
    assert run({"training": {"enabled": False}}) == 0
    out = tmp_path / "saved_models"
    assert sorted({p.name.split("_")[2] for p in out.iterdir()}) == ["PSNR"]
    psnr_final = next(out.glob("*PSNR*final_model.pth"))
    changes = {"pretraining": {"enabled": False}, "training": {"g_lr": 1e-12, "d_lr": 1e-12},
               "init_weights": str(psnr_final)}
    assert run(changes, "--output-dir", "gan") == 0  # a learning rate too small to move the weights
    assert sorted({p.name.split("_")[2] for p in (tmp_path / "gan").iterdir()}) == ["ESRGAN"]
    psnr = torch.load(psnr_final, weights_only=True)["state_dict"]
    gan = torch.load(next((tmp_path / "gan").glob("*ESRGAN*final_model.pth")), weights_only=True)["state_dict"]
    for k, v in gan.items():
        assert torch.allclose(v, psnr[k], atol=1e-9), k


def test_disabling_both_stages_is_a_config_error():
    with pytest.raises(ConfigError, match="both stages are disabled"):
        validate_config({"pretraining": {"enabled": False}, "training": {"enabled": False}}, "x.json")


def test_d_shift_shows_the_discriminator_one_random_window_of_real_and_fake(run, monkeypatch):
    from torch_sr.archs.unet_discriminator import UNetDiscriminatorSN

    seen = []
    forward = UNetDiscriminatorSN.forward
    monkeypatch.setattr(UNetDiscriminatorSN, "forward", lambda self, x: seen.append(x.shape[-2:]) or forward(self, x))
    sections = {"discriminator": {"arch": "unet_discriminator", "num_feat": 4}}
    assert run({"training": {"d_shift": 8}}, sections=sections) == 0
    assert len(seen) == 3 * 4 and {tuple(s) for s in seen} == {(8, 8)}  # 3 passes per iteration, 16 - 8 pixels


def test_random_window_cuts_both_batches_alike():
    hr, sr = torch.rand(2, 3, 16, 20), torch.rand(2, 3, 16, 20)
    assert random_window(hr, sr, 0) == (hr, sr)
    offsets = set()
    for _ in range(200):
        a, b = random_window(hr, sr, 4)
        assert a.shape == b.shape == (2, 3, 12, 16)
        (dy, dx), = {(y, x) for y in range(5) for x in range(5) if torch.equal(a, hr[..., y : y + 12, x : x + 16])}
        assert torch.equal(b, sr[..., dy : dy + 12, dx : dx + 16])
        offsets.add((dy, dx))
    assert len(offsets) == 25  # every offset 0..4 in each axis occurs


def test_d_shift_must_leave_part_of_the_crop(tmp_path):
    with pytest.raises(ConfigError, match=r"training/d_shift: 16 leaves nothing of the \[16, 16\] crop"):
        validate_config({"training": {"cr_patch_size": [16, 16], "d_shift": 16}})


def test_checkerboard_term_is_trained_logged_and_validated(run, capsys):
    assert run({"training": {"g_checkerboard_loss_scaling": 1.0}}) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert re.search(r"GAN 4/4 .*checkerboard [0-9.e-]+", text)
    assert re.search(r"GAN validation at iteration 4: .*/checkerboard [0-9.e-]+", text)


# -- mixed precision on the CPU ----------------------------------------------------------------------


@pytest.fixture
def conv_dtypes(monkeypatch):
    """The dtypes the run's Conv2d layers return in training mode (not validating); the CPU counts as
    one with native bfloat16, so that no warning depends on the test machine."""
    seen: set[torch.dtype] = set()

    def hook(module, args, output):
        if isinstance(module, torch.nn.Conv2d) and module.training:
            seen.add(output.dtype)

    monkeypatch.setattr("torch_sr.device.cpu_has_native_bf16", lambda: True)
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield seen
    handle.remove()


def test_autocast_on_the_cpu_trains_in_bfloat16(run, conv_dtypes, tmp_path):
    assert run(None, "-a") == 0  # both stages, generator and discriminator
    assert conv_dtypes == {torch.bfloat16}
    # the weights stay float32 and finite
    final = read_weights(next((tmp_path / "saved_models").glob("*ESRGAN*final_model.pth")))[0]
    assert all(v.dtype == torch.float32 and v.isfinite().all() for v in final["state_dict"].values())


def test_fp16_autocast_on_the_cpu_trains_in_float32(run, conv_dtypes, capsys):
    assert run({"training": {"enabled": False}}, "-a", "--amp-dtype", "fp16") == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "needs CUDA" in line]
    assert warning == ["warning: --autocast --amp-dtype fp16 needs CUDA; training in float32 on the cpu (the CPU "
                       "autocasts to bf16: --amp-dtype bf16)"]  # one line, no source echo
    assert conv_dtypes == {torch.float32}


def test_autocast_on_a_cpu_without_native_bfloat16_trains_in_float32(run, conv_dtypes, monkeypatch, capsys):
    monkeypatch.setattr("torch_sr.device.cpu_has_native_bf16", lambda: False)
    assert run({"training": {"enabled": False}, "pretraining": {"num_iterations": 1}}, "-a") == 0
    assert re.search(r"^warning: --autocast: this CPU has no native bfloat16 .* slower than float32; training in "
                     r"float32$", capsys.readouterr().err, re.MULTILINE)
    assert conv_dtypes == {torch.float32}
