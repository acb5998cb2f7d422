"""Every shipped system config trains through train.py, and its model goes through load_model and inference.py.

Each config in `SYSTEMS` is loaded as shipped and shrunk for a CPU: its networks get small widths (its
architecture, scale, channels and loss recipe are kept), its stages a few iterations on tiny synthetic
images, and VGG/ResNet features stay random (`pretrained: false`: no ImageNet weights offline). The
training set is a few same-size images cropped whole into one batch, so every iteration sees the same
images and the loss must fall. Also here: Gaussian-blurred LR (`blur_sigma`), Y-only models on RGB
images, the ResNet-18 perceptual layers, and "did you mean" suggestions for architecture keys.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from trainer_fixtures import deep_update, make_images, write_config

from torch_sr.archs.registry import generator_arch
from torch_sr.model_files.model_file import load_model
from torch_sr.cli import inference, train
from torch_sr.cli import test as test_cli
from torch_sr.config.validate import load_config, validate_config
from torch_sr.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
IMAGE = 24  # side of the training images: a multiple of 2, 3 and 4, and one crop is the whole image
IMAGES = 3  # = batch size: each batch holds every training image

# Per config: the networks made small (architecture and structure-defining keys as shipped).
SYSTEMS: dict[str, dict[str, Any]] = {
    "srcnn_915_y_x3.json": {"generator": {"num_filters": [16, 8]}},
    "srcnn_955_rgb_x4.json": {"generator": {"num_filters": [16, 8]}},
    "srresnet_x4.json": {"generator": {"num_channels": 8, "num_blocks": 2}},
    "srgan_x4.json": {
        "generator": {"num_channels": 8, "num_blocks": 2},
        "discriminator": {"num_channels": 4, "fc_features": 16, "input_size": IMAGE},
    },
    "srgan_blur_x4.json": {
        "generator": {"num_channels": 8, "num_blocks": 2},
        "discriminator": {"num_channels": 4, "fc_features": 16, "input_size": IMAGE},
    },
    "resnet_pixelshuffle_feature_loss_x4.json": {"generator": {"num_channels": 8, "num_blocks": 2}},
    "unet_resnet18_x4.json": {"generator": {"decoder_channels": [8, 8, 8, 8, 8], "pretrained_encoder": False}},
    "progressive_x2_x4_rrdb.json": {
        "generator": {"rrdb_channels": 8, "growth_channels": 4, "num_basic_blocks": 1, "num_dense_blocks": 1},
        "discriminator": {"vgg_blk_ch": [8, 8, 16], "fc_features": [8], "input_size": IMAGE},
    },
}
# Configs that are not a system of their own (the original ESRGAN runs, the smoke run). The shipped models'
# stages are in configs/recipes/ (tests/test_shipped_weights.py, tests/test_reproduce.py).
NOT_SYSTEMS = {
    "128_cr_23_rrdb_div2k.json",
    "p192_cr_23_rrdb_div2k.json",
    "p192_t128_cr_16_rrdb_div2k+bsds500.json",
    "p192_t128_cr_23_rrdb_div2k+bsds500.json",
    "smoke_cpu.json",
    "demo_cpu.json",
}
ITERATIONS = 8
LOG_LINE = re.compile(r"^\S+ \S+ (\S+) (\d+)/(\d+) epoch \d+: (.*?) \|")


def shrink(name: str, train_dir: Path, val_dir: Path, iterations: int = ITERATIONS, lr: float = 2e-3) -> dict:
    """The shipped config `name` made CPU-sized: see the module docstring."""
    cfg = json.loads((CONFIGS / name).read_text())
    stage = {
        "num_iterations": iterations,
        "train_datasets": [str(train_dir)],
        "val_datasets": [str(val_dir)],
        "val_interval": 1000,
        "warmup_iterations": 0,
        "hard_transforms": False,
    }
    pre = {**stage, "cr_patch_size": [IMAGE, IMAGE], "lr": lr}
    if cfg["pretraining"].get("phases"):  # progressive: the crop grows to the whole image, the lr falls
        pre["phases"] = [
            {**p, "num_iterations": iterations, "cr_patch_size": [IMAGE // 2] * 2 if i == 0 else [IMAGE] * 2,
             "lr": lr if i == 0 else lr / 2}
            for i, p in enumerate(cfg["pretraining"]["phases"])
        ]  # fmt: skip
    changes = {
        "batch_size": IMAGES,
        "pretraining": pre,
        "generator": SYSTEMS[name]["generator"],
        "data": {"num_workers": 0, "cache": True},
        "logging": {"log_interval": 1, "val_images": 0, "tensorboard": False},
    }
    if cfg["training"].get("enabled", True):
        changes["training"] = {**stage, "cr_patch_size": [IMAGE, IMAGE], "g_lr": lr / 4, "d_lr": lr / 4}
        changes["discriminator"] = SYSTEMS[name]["discriminator"]
    if "perceptual_loss" in cfg:
        changes["perceptual_loss"] = {"pretrained": False}
    return deep_update(cfg, changes)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("systems")
    return make_images(root / "train", IMAGES, (IMAGE, IMAGE)), make_images(root / "val", 1, (IMAGE, IMAGE), seed=1)


def train_run(cfg: dict, workdir: Path, *flags: str) -> int:
    """train.py on `cfg` in `workdir`: models in workdir/saved_models, the log in workdir/runs/run/train.log."""
    path = write_config(workdir / "system.json", cfg)
    argv = [str(path), "--device", "cpu", "--output-dir", str(workdir / "saved_models"), "--run-name", "run",
            "--no-progress", *flags]  # fmt: skip
    return train.main(argv)


def logged_losses(workdir: Path) -> dict[str, dict[str, list[float]]]:
    """{stage name: {loss term: its value at each iteration}} from the run's text log."""
    out: dict[str, dict[str, list[float]]] = {}
    for line in (workdir / "runs" / "run" / "train.log").read_text().splitlines():
        m = LOG_LINE.match(line)
        if m:
            terms = m.group(4).split()
            for term, value in zip(terms[::2], terms[1::2]):
                out.setdefault(m.group(1), {}).setdefault(term, []).append(float(value))
    return out


def assert_falls(losses: list[float], label: str) -> None:
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < first, f"{label}: the loss did not fall: {losses}"


def test_every_system_config_is_covered():
    shipped = {p.name for p in CONFIGS.glob("*.json")}
    assert shipped - NOT_SYSTEMS == set(SYSTEMS)


def test_training_manual_lists_every_config_in_its_systems_table():
    text = (CONFIGS.parent / "docs" / "training.md").read_text()
    systems = text.split("<!-- section:systems -->")[1].split("<!-- /section:systems -->")[0]
    named = set(re.findall(r"`([^`]+\.json)`", systems))
    originals = {n for n in NOT_SYSTEMS if n.startswith(("p192", "128"))}  # "and the other three original runs"
    assert {p.name for p in CONFIGS.glob("*.json")} - originals <= named <= {p.name for p in CONFIGS.glob("*.json")}


def test_shipped_configs_follow_the_published_recipes():
    """The keys REFERENCE.md section 5 names, as each shipped config sets them."""
    from torch_sr.config.build import build_generator_from_config

    def count(net, trainable=False):
        return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable)

    srcnn = load_config(CONFIGS / "srcnn_915_y_x3.json")
    assert (srcnn.img_channels, srcnn.scale_factor, srcnn.content_loss.loss_f) == (1, 3, "mse")
    assert srcnn.generator.hparams == {"kernel_sizes": [9, 1, 5], "num_filters": [64, 32]}
    assert not srcnn.training.enabled and srcnn.pretraining.cr_patch_size == (33, 33)
    rgb = load_config(CONFIGS / "srcnn_955_rgb_x4.json")
    assert rgb.img_channels == 3 and rgb.generator.hparams["kernel_sizes"] == [9, 5, 5]

    srresnet = load_config(CONFIGS / "srresnet_x4.json")
    assert not srresnet.training.enabled and srresnet.content_loss.loss_f == "mse"
    assert round(count(build_generator_from_config(srresnet)) / 1e6, 2) == 1.55  # the published SRResNet
    srgan = load_config(CONFIGS / "srgan_x4.json")
    assert srgan.generator == srresnet.generator and srgan.pretraining == srresnet.pretraining  # stage 1 = SRResNet
    assert srgan.discriminator.hparams == {"num_channels": 64, "fc_features": 1024, "input_size": 96}
    assert srgan.discriminator.arch == "srgan_discriminator" and srgan.adversarial_loss.loss_f == "vanilla"
    assert srgan.training.loss_weights == {
        "content": 0.0, "perceptual": 0.006, "adversarial": 1e-3, "tv": 0.0, "checkerboard": 0.0
    }
    p = srgan.perceptual_loss
    assert (p.network, p.vgg_type, p.criterion, dict(p.layer_weights)) == ("vgg", "vgg19", "mse", {"relu2_2": 1.0})
    assert srgan.training.cr_patch_size == (96, 96)
    blur = load_config(CONFIGS / "srgan_blur_x4.json")
    assert blur.pretraining.blur_sigma == blur.training.blur_sigma == 1.6
    unblurred = dataclasses.replace(
        blur,
        pretraining=dataclasses.replace(blur.pretraining, blur_sigma=None),
        training=dataclasses.replace(blur.training, blur_sigma=None),
        description=srgan.description, source=srgan.source,
    )  # fmt: skip
    assert unblurred == srgan  # nothing else differs

    feature = load_config(CONFIGS / "resnet_pixelshuffle_feature_loss_x4.json")
    assert feature.generator.arch == "resnet_pixelshuffle" and feature.content_loss.loss_f == "l1"
    weights = feature.pretraining.loss_weights
    assert weights["content"] > 0 and weights["perceptual"] > 0 and weights["tv"] > 0
    p = feature.perceptual_loss
    assert p.criterion == "l1" and len(p.layer_weights) == 3 and set(p.style_weights) == set(p.layer_weights)

    unet = load_config(CONFIGS / "unet_resnet18_x4.json")
    assert unet.generator.hparams["pretrained_encoder"] and unet.perceptual_loss.network == "resnet18"
    assert set(unet.perceptual_loss.layer_weights) == {"relu", "layer2"}
    assert 0 < unet.pretraining.content_loss_scaling < unet.pretraining.perceptual_loss_scaling
    offline = dataclasses.replace(unet.generator, hparams={**unet.generator.hparams, "pretrained_encoder": False})
    net = build_generator_from_config(dataclasses.replace(unet, generator=offline))  # (no ImageNet file offline)
    assert 0.8e6 < count(net, trainable=True) < 1.2e6

    progressive = load_config(CONFIGS / "progressive_x2_x4_rrdb.json")
    x2, x4 = progressive.pretraining.phases
    assert (x2.scale_factor, x4.scale_factor) == (2, 4)
    assert x2.cr_patch_size[0] < x4.cr_patch_size[0] and x4.lr < x2.lr


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_system_trains_and_its_model_round_trips(name, folders, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = load_config(CONFIGS / name)
    cfg = shrink(name, *folders)
    assert train_run(cfg, tmp_path) == 0
    losses = logged_losses(tmp_path)
    for stage, terms in losses.items():
        assert len(terms["g_total"]) == ITERATIONS, stage
        # the generator's loss in a PSNR stage; in a GAN stage the discriminator's (the generator's
        # adversarial term rises as the discriminator learns)
        assert_falls(terms.get("d_total", terms["g_total"]), f"{name} {stage}")
    finals = sorted((tmp_path / "saved_models").glob("*_final_model.pth"), key=lambda p: p.stat().st_mtime_ns)
    assert len(finals) == len(losses)  # one final model per stage or phase

    model = load_model(finals[-1])
    assert generator_arch(model).name == shipped.generator.arch
    checkpoint = load_model(finals[-1].with_name(finals[-1].name.replace("_final_model", "_checkpoint")))
    for k, v in model.state_dict().items():  # a training checkpoint loads as the same model
        assert torch.equal(checkpoint.state_dict()[k], v), k
    assert model.info.scale == shipped.scale_factor and model.info.in_channels == shipped.img_channels
    img = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(img)
    assert inference.main([str(img), "-m", str(finals[-1]), "-o", str(tmp_path / "sr"), "--device", "cpu"]) == 0
    out = Image.open(tmp_path / "sr" / "photo_sr.png")
    assert out.size == (14 * model.info.scale, 10 * model.info.scale) and out.mode == "RGB"


def test_y_only_model_upscales_y_and_leaves_chroma_to_bicubic(folders, tmp_path, monkeypatch):
    """A 1-channel (Y) model on an RGB image: Y from the model, Cb/Cr bicubic, as the published SRCNN is used."""
    from torch_sr.color import rgb_to_ycbcr, ycbcr_to_rgb

    monkeypatch.chdir(tmp_path)
    assert train_run(shrink("srcnn_915_y_x3.json", *folders, iterations=3), tmp_path) == 0
    final = next((tmp_path / "saved_models").glob("*_final_model.pth"))
    model = load_model(final)
    assert (model.info.in_channels, model.info.out_channels, model.info.scale) == (1, 1, 3)
    rgb = np.random.default_rng(1).integers(0, 256, (9, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    assert inference.main(["colour.png", "-m", str(final), "-o", "sr", "--device", "cpu"]) == 0
    got = np.asarray(Image.open(tmp_path / "sr" / "colour_sr.png")).astype(np.float64)

    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 255
    ycbcr = rgb_to_ycbcr(x)
    with torch.no_grad():
        y = model.double()(ycbcr[:, :1])
    chroma = torch.nn.functional.interpolate(ycbcr[:, 1:], scale_factor=3, mode="bicubic", align_corners=False)
    expected = ycbcr_to_rgb(torch.cat([y, chroma], 1)).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    assert got.shape == (27, 36, 3) and np.abs(got - expected).max() <= 1.0
    # the model is not a bicubic upscale of Y: dropping it changes the result
    bicubic_y = torch.nn.functional.interpolate(ycbcr[:, :1], scale_factor=3, mode="bicubic", align_corners=False)
    plain = ycbcr_to_rgb(torch.cat([bicubic_y, chroma], 1)).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(got - plain).max() > 1.0
    # test.py scores it (on Y, as the paper does)
    scores = tmp_path / "scores.json"
    assert test_cli.main([str(final), "-d", str(folders[1]), "--device", "cpu", "--json", str(scores)]) == 0
    assert "psnr" in scores.read_text()


# -- blurred LR (SRGAN's variant) --------------------------------------------------------------------------


def test_blur_sigma_blurs_training_lr_only(folders):
    from torch_sr.training.data import build_train_set, build_val_sets
    from torch_sr.training.stages import build_stages

    blurred = validate_config(shrink("srgan_blur_x4.json", *folders))
    plain = validate_config(shrink("srgan_x4.json", *folders))
    for b, p in zip(build_stages(blurred), build_stages(plain)):
        assert b.section.blur_sigma == 1.6 and p.section.blur_sigma is None
        item_b = build_train_set(b.config, b.section, seed=5)[0]
        item_p = build_train_set(p.config, p.section, seed=5)[0]
        assert torch.equal(item_b["hr"], item_p["hr"])  # the same crop...
        assert not torch.equal(item_b["lr"], item_p["lr"])  # ...with another LR
        # blurring before downscaling removes detail: less high-frequency energy in the LR
        assert item_b["lr"].diff(dim=-1).abs().mean() < item_p["lr"].diff(dim=-1).abs().mean()
        val_b, val_p = build_val_sets(b.config, b.section), build_val_sets(p.config, p.section)
        (vb,), (vp,) = val_b.values(), val_p.values()
        assert torch.equal(vb[0]["lr"], vp[0]["lr"])  # validation LR is never blurred


# -- ResNet-18 perceptual loss -------------------------------------------------------------------------------


def test_resnet18_perceptual_layers_are_torchvisions_children(tmp_path):
    """'relu' = the output of resnet18's first 3 children, 'layer2' of its first 6, with the file's weights."""
    from torchvision.models import resnet18

    from torch_sr.config.build import build_perceptual_loss_from_config

    net = resnet18(weights=None).eval()
    torch.save(net.state_dict(), tmp_path / "resnet18.pth")
    data = json.loads((CONFIGS / "unet_resnet18_x4.json").read_text())
    data["perceptual_loss"]["weights_path"] = str(tmp_path / "resnet18.pth")
    loss = build_perceptual_loss_from_config(validate_config(data))
    x = torch.rand(2, 3, 32, 32)
    feats = loss.extractor((x - loss.mean) / loss.std)
    children = list(net.children())
    with torch.no_grad():
        normed = (x - loss.mean) / loss.std
        relu = torch.nn.Sequential(*children[:3])(normed)
        layer2 = torch.nn.Sequential(*children[:6])(normed)
    assert set(feats) == {"relu", "layer2"}
    assert feats["relu"].shape == (2, 64, 16, 16) and feats["layer2"].shape == (2, 128, 4, 4)
    torch.testing.assert_close(feats["relu"], relu)
    torch.testing.assert_close(feats["layer2"], layer2)
    # the loss is the weighted L1 of both layers, and it trains the output only
    y = torch.rand(2, 3, 32, 32)
    sr = x.clone().requires_grad_(True)
    value = loss(sr, y)
    with torch.no_grad():
        f_y = loss.extractor((y - loss.mean) / loss.std)
    expected = sum((feats[k] - f_y[k]).abs().mean() for k in ("relu", "layer2"))
    torch.testing.assert_close(value.detach(), expected)
    value.backward()
    assert sr.grad.abs().sum() > 0 and all(p.grad is None for p in loss.parameters())


def test_a_wrong_resnet18_layer_names_the_key_and_the_closest_layer(tmp_path):
    data = json.loads((CONFIGS / "unet_resnet18_x4.json").read_text())
    data["perceptual_loss"]["layer_weights"] = {"relu": 1.0, "layer_2": 1.0}
    path = write_config(tmp_path / "bad.json", data)
    with pytest.raises(ConfigError, match=r"perceptual_loss/layer_weights/layer_2: not a layer of resnet18; "
                                          r"did you mean 'layer2'\?") as e:  # fmt: skip
        load_config(path)
    assert str(path) in str(e.value)
    data["perceptual_loss"]["layer_weights"] = {"conv5_4": 1.0}  # a VGG layer
    with pytest.raises(ConfigError, match="layer_weights/conv5_4: not a layer of resnet18"):
        validate_config(data)


# -- "did you mean" ------------------------------------------------------------------------------------------


def test_another_architectures_key_is_named_as_such_not_suggested_as_itself():
    with pytest.raises(ConfigError) as e:
        validate_config({"generator": {"arch": "srresnet", "num_basic_blocks": 4}})
    message = str(e.value)
    assert "generator/num_basic_blocks: not an argument of srresnet (it is one of rrdbnet)" in message
    assert "num_blocks" in message and "did you mean 'generator/num_basic_blocks'" not in message


def test_no_rejected_key_is_suggested_as_its_own_fix():
    """Every key name of the schema, put in every section and architecture: a suggestion is never the key itself."""
    from torch_sr.config.validate import ARCH_KINDS, _known_paths, arch_table

    leaves = sorted({p.rsplit("/", 1)[-1] for p in _known_paths()})
    sections = ["pretraining", "training", "content_loss", "perceptual_loss", "adversarial_loss", "data", "logging"]
    archs = [(kind, arch) for kind in ARCH_KINDS for arch in arch_table(kind)]
    suggestions = 0
    for key in leaves:
        trials = [{key: 1}, *({s: {key: 1}} for s in sections), {"pretraining": {"phases": [{key: 1}]}}]
        trials += [{kind: {"arch": arch, key: 1}} for kind, arch in archs]
        for data in trials:
            try:
                validate_config(data)
            except ConfigError as e:
                for line in str(e).splitlines():
                    m = re.search(r"unknown key '([^']*)'; did you mean '([^']*)'", line)
                    if m:
                        suggestions += 1
                        assert m.group(1) != m.group(2), line
                    m = re.search(r"not an argument of (\w+) \(it is one of ([^)]*)\)", line)
                    assert not m or m.group(1) not in m.group(2).split(", "), line
    assert suggestions > 20  # the check above did see suggestions


def test_a_disabled_stage_does_not_need_a_crop_that_fits_the_scale():
    """An x3 PSNR-only config need not restate the GAN stage's 128-pixel default crop (128 % 3 != 0)."""
    cfg = validate_config({"scale_factor": 3, "pretraining": {"cr_patch_size": [33, 33]}, "training": {"enabled": False}})
    assert cfg.training.cr_patch_size == (128, 128)
    with pytest.raises(ConfigError, match=r"training/cr_patch_size: \[128, 128\] is not a multiple of scale_factor 3"):
        validate_config({"scale_factor": 3, "pretraining": {"cr_patch_size": [33, 33]}})
