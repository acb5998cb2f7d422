"""The training configuration as typed, frozen dataclasses: every key, its type, default and range.

Each field is one JSON key. `option()` attaches the help text and numeric range that both the
validator (`validate.py`) and the JSON Schema (`json_schema.py`) read, so they cannot disagree.
The original project's keys (enhanced-srgan) keep their names and defaults; everything added has a
default that changes nothing. Sections hold plain data only (tuples where the JSON has lists).
"""
from __future__ import annotations

import bisect
import dataclasses
import difflib
import functools
import math
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from torch_sr.archs.resnet_features import resnet18_layer_names
from torch_sr.archs.vgg_features import vgg_layer_names
from torch_sr.config.json_types import Range

Problems = Iterator[tuple[str, str]]  # (key, message) pairs found by a section's cross-key checks

# Top-level keys handed to every architecture constructor that takes an argument of that name.
SHARED_ARCH_KEYS = ("scale_factor", "img_channels")
# The original project's table defaults where they differ from the class's own (the paper's 23 blocks).
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {"rrdbnet": {"num_basic_blocks": 16}}
# Keys that may appear at the top of a file without being configuration.
IGNORED_KEYS = ("$schema",)


def option(
    default: Any,
    help: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A config key: its default, its help text and the range of the numbers it holds."""
    metadata = {"help": help, "range": Range(ge, gt, le, lt)}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def section(cls: type, help: str) -> Any:
    """A nested section (a JSON object) with its help text; absent from a file, it takes its defaults."""
    return field(default_factory=cls, metadata={"help": help})


@dataclass(frozen=True)
class LRSchedule:
    """One optimiser's learning-rate multiplier over the iterations of a stage (for `LambdaLR`)."""

    kind: Literal["step", "multistep", "cosine", "constant"]
    gamma: float = 1.0
    step_size: int = 1
    milestones: tuple[int, ...] = ()
    warmup_iterations: int = 0
    min_lr_factor: float = 0.0

    def factor(self, iteration: int, total_iterations: int) -> float:
        """Multiplier of the base lr at 0-based `iteration`.

        step: gamma ** (iteration // step_size) (StepLR); multistep: gamma ** (milestones passed)
        (MultiStepLR); cosine: from 1 down to `min_lr_factor` between the end of warm-up and
        `total_iterations`; constant: 1. A linear warm-up multiplies any of them by
        (iteration + 1) / warmup_iterations during the first `warmup_iterations`.
        """
        if self.kind == "step":
            f = self.gamma ** (iteration // self.step_size)
        elif self.kind == "multistep":
            f = self.gamma ** bisect.bisect_right(self.milestones, iteration)
        elif self.kind == "cosine":
            span = max(1, total_iterations - self.warmup_iterations)
            progress = min(1.0, max(0, iteration - self.warmup_iterations) / span)
            f = self.min_lr_factor + (1 - self.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        else:
            f = 1.0
        if iteration < self.warmup_iterations:
            f *= (iteration + 1) / self.warmup_iterations
        return f


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam settings of one network in one stage."""

    lr: float
    betas: tuple[float, float]
    schedule: LRSchedule


_LENGTH = "Give exactly one of num_epoch and num_iterations; setting one drops the other's default."
_DATASETS = (
    "catalogue names ('div2k', 'bsds500', 'set5', 'set14', ...) or image folders, relative to the "
    "directory the command runs in"
)


_STAGE_SCALE = "Upscaling factor of this stage (or phase); null: the top-level scale_factor"
_STAGE_BATCH = "Mini-batch size of this stage (or phase); null: the top-level batch_size"
_BLUR = (
    "Gaussian blur (sigma in HR pixels) of each HR training crop before the bicubic downscaling that makes "
    "its LR input (SRGAN's blurred variant); null: none. Validation LR images are not blurred (as test.py)"
)
_PHASES = (
    "Progressive resizing: train the stage as these phases, in order. A phase is an object of this "
    "stage's keys (not enabled or phases) that override the stage's values for that phase, e.g. "
    "[{\"scale_factor\": 2, \"cr_patch_size\": [96, 96], \"num_iterations\": 100000}, {\"scale_factor\": 4, "
    "\"cr_patch_size\": [192, 192], \"num_iterations\": 50000, \"lr\": 1e-4}]. Each phase starts with "
    "fresh optimisers from the previous phase's generator, loading every tensor whose shape still fits. "
    "Empty: the stage is one phase"
)


def phases_option() -> Any:
    """The `phases` key of a stage: a list of partial stage sections (validated merged over the stage)."""
    return field(default=(), metadata={"help": _PHASES, "phases": True})


def _stage_problems(stage: Any) -> Problems:
    """Checks shared by both stages: exactly one length, warm-up shorter than the stage."""
    if (stage.num_epoch is None) == (stage.num_iterations is None):
        yield "num_iterations", "give exactly one of num_epoch and num_iterations, not " + (
            "both" if stage.num_epoch is not None else "neither"
        )
    if stage.num_iterations is not None and stage.warmup_iterations >= stage.num_iterations:
        yield "warmup_iterations", (
            f"{stage.warmup_iterations} is not shorter than num_iterations {stage.num_iterations}"
        )
    if not stage.train_datasets:
        yield "train_datasets", "name at least one training dataset"


def _milestone_problems(key: str, milestones: tuple[int, ...]) -> Problems:
    if list(milestones) != sorted(set(milestones)):
        yield key, f"milestones must be strictly increasing, got {list(milestones)}"


@dataclass(frozen=True)
class PretrainingConfig:
    """Stage 1: the generator alone, trained for PSNR with the content loss."""

    EXCLUSIVE = (("num_epoch", "num_iterations"),)

    enabled: bool = option(True, "false skips this stage (e.g. a PSNR-only model, or GAN training from init_weights)")
    num_epoch: int | None = option(10000, "Length in epochs (passes over train_datasets). " + _LENGTH, ge=1)
    num_iterations: int | None = option(None, "Length in iterations (mini-batches). " + _LENGTH, ge=1)
    cr_patch_size: tuple[int, int] | None = option(
        (128, 128), "HR training crop [H, W], a multiple of scale_factor; null trains on whole images", ge=1
    )
    lr: float = option(2e-4, "Adam learning rate of the generator", gt=0)
    betas: tuple[float, float] = option((0.9, 0.999), "Adam betas", ge=0, lt=1)
    scheduler: Literal["step", "cosine", "constant"] = option(
        "step", "'step': multiply the lr by sched_gamma every sched_step iterations (StepLR); "
        "'cosine': anneal to lr * min_lr_factor over the stage; 'constant'"
    )
    sched_step: int = option(200000, "StepLR period in iterations (mini-batches)", ge=1)
    sched_gamma: float = option(0.5, "StepLR decay factor", gt=0, le=1)
    warmup_iterations: int = option(0, "Linear learning-rate warm-up over this many iterations (0: none)", ge=0)
    min_lr_factor: float = option(0.0, "Cosine schedule: final lr as a fraction of lr", ge=0, le=1)
    ema_decay: float | None = option(
        None, "Keep an exponential moving average of the generator with this decay (e.g. 0.999), warmed up as "
        "min(decay, (1 + n) / (10 + n)) after n iterations; null: off",
        gt=0, lt=1,
    )
    grad_clip_norm: float | None = option(None, "Clip the gradient norm to this value; null: no clipping", gt=0)
    content_loss_scaling: float = option(1.0, "Weight of the content loss", ge=0)
    perceptual_loss_scaling: float = option(0.0, "Weight of the perceptual loss (0: not computed)", ge=0)
    tv_loss_scaling: float = option(0.0, "Weight of the total-variation loss of the output (0: off)", ge=0)
    train_datasets: tuple[str, ...] = option(("div2k",), "Training data: " + _DATASETS)
    val_datasets: tuple[str, ...] = option(("div2k",), "Validation data (empty: no validation): " + _DATASETS)
    val_interval: int = option(5000, "Validate every this many iterations", ge=1)
    hard_transforms: bool = option(True, "Degrade LR inputs with JPEG compression and coarse dropout (p=0.25 each)")
    scale_factor: int | None = option(None, _STAGE_SCALE, ge=1)
    batch_size: int | None = option(None, _STAGE_BATCH, ge=1)
    blur_sigma: float | None = option(None, _BLUR, gt=0)
    phases: tuple[PretrainingConfig, ...] = phases_option()

    def problems(self) -> Problems:
        yield from _stage_problems(self)
        if not any(self.loss_weights.values()):
            yield "content_loss_scaling", "every loss weight of the stage is 0: nothing to train"

    @property
    def optimizers(self) -> dict[str, OptimizerConfig]:
        """{'generator': ...}: what the trainer builds for this stage."""
        schedule = LRSchedule(
            self.scheduler, self.sched_gamma, self.sched_step, (), self.warmup_iterations, self.min_lr_factor
        )
        return {"generator": OptimizerConfig(self.lr, self.betas, schedule)}

    @property
    def loss_weights(self) -> dict[str, float]:
        """Weight of each generator loss term this stage can weight (`torch_sr.losses.registry`)."""
        from torch_sr.losses.registry import stage_loss_weights

        return stage_loss_weights(self, "pretraining")


@dataclass(frozen=True)
class TrainingConfig:
    """Stage 2: generator and discriminator alternating per mini-batch, from the stage-1 generator."""

    EXCLUSIVE = (("num_epoch", "num_iterations"),)

    enabled: bool = option(True, "false skips this stage: the run ends with the PSNR-oriented generator")
    num_epoch: int | None = option(8000, "Length in epochs (passes over train_datasets). " + _LENGTH, ge=1)
    num_iterations: int | None = option(None, "Length in iterations (mini-batches). " + _LENGTH, ge=1)
    cr_patch_size: tuple[int, int] | None = option(
        (128, 128), "HR training crop [H, W], a multiple of scale_factor; null trains on whole images", ge=1
    )
    g_lr: float = option(1e-4, "Adam learning rate of the generator", gt=0)
    d_lr: float = option(1e-4, "Adam learning rate of the discriminator", gt=0)
    betas: tuple[float, float] = option((0.9, 0.99), "Adam betas of both networks", ge=0, lt=1)
    scheduler: Literal["multistep", "cosine", "constant"] = option(
        "multistep", "'multistep': multiply the lr by *_sched_gamma at each of *_sched_steps (MultiStepLR); "
        "'cosine': anneal to lr * min_lr_factor over the stage; 'constant'"
    )
    g_sched_steps: tuple[int, ...] = option(
        (50000, 100000, 200000, 300000), "Generator MultiStepLR milestones in iterations", ge=1
    )
    d_sched_steps: tuple[int, ...] = option(
        (50000, 100000, 200000, 300000), "Discriminator MultiStepLR milestones in iterations", ge=1
    )
    g_sched_gamma: float = option(0.5, "Generator MultiStepLR decay factor", gt=0, le=1)
    d_sched_gamma: float = option(0.5, "Discriminator MultiStepLR decay factor", gt=0, le=1)
    warmup_iterations: int = option(0, "Linear learning-rate warm-up over this many iterations (0: none)", ge=0)
    min_lr_factor: float = option(0.0, "Cosine schedule: final lr as a fraction of the lr", ge=0, le=1)
    g_adversarial_loss_scaling: float = option(0.005, "Weight of the generator's adversarial loss (λ)", ge=0)
    g_content_loss_scaling: float = option(0.01, "Weight of the content loss (η)", ge=0)
    g_perceptual_loss_scaling: float = option(1.0, "Weight of the perceptual loss", ge=0)
    g_tv_loss_scaling: float = option(0.0, "Weight of the total-variation loss of the output (0: off)", ge=0)
    g_checkerboard_loss_scaling: float = option(
        0.0, "Weight of the checkerboard loss: how much the mean error of each sub-pixel phase (position modulo "
        "the scale) differs from that of all phases, in windows of 8x8 cells of scale x scale pixels; holds back "
        "the grid pattern that GAN fine-tuning grows in a pixel-shuffle generator without a perceptual loss (0: off)",
        ge=0,
    )
    d_shift: int = option(
        0, "The discriminator judges real and generated crops cut d_shift pixels smaller at one random offset "
        "per iteration (0..d_shift in each axis): the periodic input gradients of its strided convolutions then "
        "fall on a different phase of the generator's pixel grid each time instead of imprinting a checkerboard "
        "(e.g. 8 for three stride-2 layers; 0: the whole crop)",
        ge=0,
    )
    ema_decay: float | None = option(
        None, "Keep an exponential moving average of the generator with this decay (e.g. 0.999), warmed up as "
        "min(decay, (1 + n) / (10 + n)) after n iterations; null: off",
        gt=0, lt=1,
    )
    grad_clip_norm: float | None = option(
        None, "Clip the gradient norm of each network to this value; null: no clipping", gt=0
    )
    train_datasets: tuple[str, ...] = option(("div2k",), "Training data: " + _DATASETS)
    val_datasets: tuple[str, ...] = option(("div2k",), "Validation data (empty: no validation): " + _DATASETS)
    val_interval: int = option(5000, "Validate every this many iterations", ge=1)
    hard_transforms: bool = option(False, "Degrade LR inputs with JPEG compression and coarse dropout (p=0.25 each)")
    scale_factor: int | None = option(None, _STAGE_SCALE, ge=1)
    batch_size: int | None = option(None, _STAGE_BATCH, ge=1)
    blur_sigma: float | None = option(None, _BLUR, gt=0)
    phases: tuple[TrainingConfig, ...] = phases_option()

    def problems(self) -> Problems:
        yield from _stage_problems(self)
        yield from _milestone_problems("g_sched_steps", self.g_sched_steps)
        yield from _milestone_problems("d_sched_steps", self.d_sched_steps)
        if self.cr_patch_size is not None and self.d_shift >= min(self.cr_patch_size):
            yield "d_shift", f"{self.d_shift} leaves nothing of the {list(self.cr_patch_size)} crop: make it smaller"
        if not any(self.loss_weights.values()):
            yield "g_content_loss_scaling", "every generator loss weight of the stage is 0: nothing to train"

    @property
    def optimizers(self) -> dict[str, OptimizerConfig]:
        """{'generator': ..., 'discriminator': ...}: what the trainer builds for this stage."""

        def schedule(milestones: tuple[int, ...], gamma: float) -> LRSchedule:
            return LRSchedule(self.scheduler, gamma, 1, milestones, self.warmup_iterations, self.min_lr_factor)

        return {
            "generator": OptimizerConfig(self.g_lr, self.betas, schedule(self.g_sched_steps, self.g_sched_gamma)),
            "discriminator": OptimizerConfig(self.d_lr, self.betas, schedule(self.d_sched_steps, self.d_sched_gamma)),
        }

    @property
    def loss_weights(self) -> dict[str, float]:
        """Weight of each generator loss term; ESRGAN: percep + 5e-3 adversarial + 1e-2 content."""
        from torch_sr.losses.registry import stage_loss_weights

        return stage_loss_weights(self, "training")


@dataclass(frozen=True)
class ArchConfig:
    """A registered architecture and its constructor arguments (defaults filled in, JSON values).

    `shared` holds the top-level keys the constructor also takes (`scale_factor`, `img_channels`);
    they are not written back into the section.
    """

    arch: str
    hparams: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def kwargs(self) -> dict[str, Any]:
        """Everything to pass to `build_generator(arch, **kwargs)` / `build_discriminator`."""
        return {**self.shared, **self.hparams}


@dataclass(frozen=True)
class ContentLossConfig:
    loss_f: Literal["l1", "l2", "mse", "charbonnier"] = option("l1", "Pixel loss: 'l1', 'l2' = 'mse', 'charbonnier'")
    charbonnier_eps: float = option(1e-3, "Charbonnier: mean of sqrt(diff^2 + eps^2)", gt=0)
    y_weight: float = option(
        0.0,
        "Weight of the same loss added on the BT.601 luma (Y) of output and target, the channel PSNR-Y scores "
        "(RGB images only; 0: off)",
        ge=0,
    )


@dataclass(frozen=True)
class PerceptualLossConfig:
    network: Literal["vgg", "resnet18"] = option(
        "vgg", "Feature network: 'vgg' (vgg_type's layers) or 'resnet18' (the ResNet-18 UNet's perceptual loss)"
    )
    layer_weights: dict[str, float] = option(
        {"conv5_4": 1.0},
        "Layer -> weight. VGG: 'convB_I' is before the ReLU (ESRGAN), 'reluB_I' after it, 'poolB' after pooling; "
        "resnet18: the output of that child of torchvision's resnet18 ('relu' = after 3 layers, 'layer2' = after 6)",
        ge=0,
    )
    vgg_type: Literal["vgg11", "vgg13", "vgg16", "vgg19"] = option("vgg19", "Which VGG's features (network 'vgg')")
    criterion: Literal["l1", "l2", "mse"] = option("l1", "Distance between feature maps (and Gram matrices)")
    normalize_input: bool = option(True, "Normalise [0, 1] inputs with the ImageNet mean and std first")
    normalize_loss: bool = option(False, "Divide by the sum of the layer weights (a weighted average of the layers)")
    style_weights: dict[str, float] = option(
        {}, "Layer -> weight of a Gram-matrix (style) loss on that layer; empty: none", ge=0
    )
    pretrained: bool = option(
        True, "Use ImageNet weights; false keeps a random network (tests and smoke runs only)"
    )
    weights_path: str | None = option(
        None, "ImageNet weights file of the network; null: torchvision's cache ($TORCH_HOME/hub/checkpoints/)"
    )

    @property
    def network_name(self) -> str:
        """'vgg19', 'resnet18', ...: the network whose layers are named."""
        return self.vgg_type if self.network == "vgg" else self.network

    def problems(self) -> Problems:
        names = vgg_layer_names(self.vgg_type) if self.network == "vgg" else resnet18_layer_names()
        for key in ("layer_weights", "style_weights"):
            for layer in getattr(self, key):
                if layer not in names:
                    close = difflib.get_close_matches(layer, names, n=1)
                    hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(names)}"
                    yield f"{key}/{layer}", f"not a layer of {self.network_name}; {hint}"
        if not self.layer_weights and not self.style_weights:
            yield "layer_weights", "name at least one layer"
        for key in ("layer_weights", "style_weights"):
            weights = getattr(self, key)
            if self.normalize_loss and weights and not sum(weights.values()):
                yield key, "weights sum to 0, so normalize_loss cannot divide by their sum"
        if self.weights_path is not None and not self.pretrained:
            yield "weights_path", "is set while pretrained is false; drop one of them"


@dataclass(frozen=True)
class AdversarialLossConfig:
    loss_f: Literal["ragan", "vanilla", "lsgan", "hinge"] = option(
        "ragan", "'ragan': relativistic average (ESRGAN); 'vanilla': BCE (SRGAN); 'lsgan'; 'hinge'"
    )


_KERNELS = "Blur kernel type -> probability (iso, aniso, generalized_iso, generalized_aniso, plateau_iso, plateau_aniso)"
_RESIZE = "Resize direction -> probability ('up', 'down', 'keep')"
# Keys each degradation preset reads; any other key changed from its default is a mistake (it would do nothing).
DEGRADATION_KEYS: dict[str, tuple[str, ...]] = {
    "bicubic": (),
    "jpeg": ("jpeg_range",),
    "noise_jpeg": (
        "gaussian_noise_prob", "noise_range", "poisson_scale_range", "gray_noise_prob", "jpeg_range"
    ),
    "realesrgan": (
        "gt_usm", "blur_kernel_size", "kernel_prob", "blur_sigma", "betag_range", "betap_range",
        "sinc_prob", "resize_prob", "resize_range", "resize_modes", "gaussian_noise_prob", "noise_range",
        "poisson_scale_range", "gray_noise_prob", "jpeg_range", "second_blur_prob", "kernel_prob2", "blur_sigma2",
        "betag_range2", "betap_range2", "sinc_prob2", "resize_prob2", "resize_range2", "gaussian_noise_prob2",
        "noise_range2", "poisson_scale_range2", "gray_noise_prob2", "jpeg_range2", "final_sinc_prob",
    ),
}  # fmt: skip
_REALESRGAN_KERNELS = {
    "iso": 0.45, "aniso": 0.25, "generalized_iso": 0.12, "generalized_aniso": 0.03, "plateau_iso": 0.12,
    "plateau_aniso": 0.03,
}  # fmt: skip


@dataclass(frozen=True)
class DegradationConfig:
    """How training LR inputs are made from HR crops: clean bicubic (the benchmarks' LR) or realistic damage.

    Keys are named as in Real-ESRGAN's training options (`train_realesrnet_x4plus.yml`) and default to
    its published values, so `{"preset": "realesrgan"}` is Real-ESRGAN's degradation model; the second
    round's keys end in 2. Applied per image, on the training device, seeded by iteration (exact resume).
    """

    preset: Literal["bicubic", "jpeg", "noise_jpeg", "realesrgan"] = option(
        "bicubic",
        "'bicubic': MATLAB-bicubic LR, as the benchmarks make it; 'jpeg': that LR JPEG-compressed at a quality "
        "drawn from jpeg_range; 'noise_jpeg': Gaussian or Poisson noise (the round-1 noise keys), then JPEG; "
        "'realesrgan': Real-ESRGAN's two rounds of blur, resize, noise and JPEG, then the final sinc filter",
    )
    mix: dict[str, float] = option(
        {}, "Preset name -> probability: each training item draws its own preset from this table, e.g. "
        "{\"realesrgan\": 0.5, \"noise_jpeg\": 0.3, \"bicubic\": 0.2} (clean items keep a model good on clean "
        "inputs); empty: every item uses preset",
        ge=0,
    )
    gt_usm: bool | None = option(
        None, "Train toward an unsharp-masked HR target (Real-ESRGAN's gt_usm; the LR is degraded from it too); "
        "null: true for 'realesrgan' (as published), false otherwise",
    )
    blur_kernel_size: tuple[int, int] = option(
        (7, 21), "Odd blur and sinc kernel sizes are drawn from this inclusive range", ge=3, le=41
    )
    kernel_prob: dict[str, float] = option(_REALESRGAN_KERNELS, "Round 1: " + _KERNELS, ge=0)
    blur_sigma: tuple[float, float] = option((0.2, 3.0), "Round 1: blur sigma range (pixels)", gt=0)
    betag_range: tuple[float, float] = option((0.5, 4.0), "Round 1: generalized Gaussian shape range", gt=0)
    betap_range: tuple[float, float] = option((1.0, 2.0), "Round 1: plateau shape range", gt=0)
    sinc_prob: float = option(0.1, "Round 1: probability of a sinc kernel instead", ge=0, le=1)
    resize_prob: dict[str, float] = option({"up": 0.2, "down": 0.7, "keep": 0.1}, "Round 1: " + _RESIZE, ge=0)
    resize_range: tuple[float, float] = option((0.15, 1.5), "Round 1: resize factor range", gt=0)
    resize_modes: tuple[Literal["area", "bilinear", "bicubic"], ...] = option(
        ("area", "bilinear", "bicubic"), "Interpolation modes every resize draws from, with equal chance"
    )
    gaussian_noise_prob: float = option(0.5, "Round 1: probability of Gaussian noise (else Poisson)", ge=0, le=1)
    noise_range: tuple[float, float] = option((1.0, 30.0), "Round 1: Gaussian noise sigma range (0-255 scale)", ge=0)
    poisson_scale_range: tuple[float, float] = option((0.05, 3.0), "Round 1: Poisson noise scale range", ge=0)
    gray_noise_prob: float = option(0.4, "Round 1: probability that the noise is the same on every channel", ge=0, le=1)
    jpeg_range: tuple[int, int] = option((30, 95), "Round 1 (and the 'jpeg' presets): JPEG quality range", ge=1, le=100)
    second_blur_prob: float = option(0.8, "Round 2: probability of a blur", ge=0, le=1)
    kernel_prob2: dict[str, float] = option(_REALESRGAN_KERNELS, "Round 2: " + _KERNELS, ge=0)
    blur_sigma2: tuple[float, float] = option((0.2, 1.5), "Round 2: blur sigma range (pixels)", gt=0)
    betag_range2: tuple[float, float] = option((0.5, 4.0), "Round 2: generalized Gaussian shape range", gt=0)
    betap_range2: tuple[float, float] = option((1.0, 2.0), "Round 2: plateau shape range", gt=0)
    sinc_prob2: float = option(0.1, "Round 2: probability of a sinc kernel instead", ge=0, le=1)
    resize_prob2: dict[str, float] = option({"up": 0.3, "down": 0.4, "keep": 0.3}, "Round 2: " + _RESIZE, ge=0)
    resize_range2: tuple[float, float] = option((0.3, 1.2), "Round 2: resize factor range", gt=0)
    gaussian_noise_prob2: float = option(0.5, "Round 2: probability of Gaussian noise (else Poisson)", ge=0, le=1)
    noise_range2: tuple[float, float] = option((1.0, 25.0), "Round 2: Gaussian noise sigma range (0-255)", ge=0)
    poisson_scale_range2: tuple[float, float] = option((0.05, 2.5), "Round 2: Poisson noise scale range", ge=0)
    gray_noise_prob2: float = option(0.4, "Round 2: probability of the same noise on every channel", ge=0, le=1)
    jpeg_range2: tuple[int, int] = option((30, 95), "Round 2: JPEG quality range", ge=1, le=100)
    final_sinc_prob: float = option(0.8, "Probability of the sinc filter after the final resize", ge=0, le=1)

    @property
    def presets(self) -> dict[str, float]:
        """Preset name -> probability of an item taking it (`mix`, or `preset` alone)."""
        return dict(self.mix) or {self.preset: 1.0}

    @property
    def usm_target(self) -> bool:
        """Whether the target (and the source of the LR) is the unsharp-masked HR crop."""
        return "realesrgan" in self.presets if self.gt_usm is None else self.gt_usm

    def problems(self) -> Problems:
        from torch_sr.data.blur_kernels import KERNEL_TYPES

        if self.mix and self.preset != "bicubic":
            yield "mix", f"give preset ({self.preset!r}) or mix, not both"
        for name in self.mix:
            if name not in DEGRADATION_KEYS:
                yield f"mix/{name}", f"unknown preset; valid: {', '.join(DEGRADATION_KEYS)}"
        if self.mix and not sum(self.mix.values()):
            yield "mix", "the probabilities sum to 0: give at least one preset a positive weight"
        used = {key for name in self.presets for key in DEGRADATION_KEYS.get(name, ())}
        for f in config_fields(type(self)):
            if f.name not in ("preset", "mix") and f.name not in used and getattr(self, f.name) != default_value(
                type(self), f.name
            ):
                users = [p for p, keys in DEGRADATION_KEYS.items() if f.name in keys]
                yield f.name, f"no preset in use reads it (presets that do: {', '.join(users)})"
        for key in ("kernel_prob", "kernel_prob2", "resize_prob", "resize_prob2"):
            valid = KERNEL_TYPES if key.startswith("kernel") else ("up", "down", "keep")
            table = getattr(self, key)
            for name in table:
                if name not in valid:
                    close = difflib.get_close_matches(name, valid, n=1)
                    yield f"{key}/{name}", f"unknown; {'did you mean ' + repr(close[0]) + '?' if close else 'valid: ' + ', '.join(valid)}"
            if not sum(table.values()):
                yield key, "the probabilities sum to 0: give at least one a positive weight"
        for f in config_fields(type(self)):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], str) and value[0] > value[1]:
                yield f.name, f"{list(value)} is not a [low, high] range: low must not exceed high"
        if not self.resize_modes:
            yield "resize_modes", "name at least one mode"
        if self.blur_kernel_size[0] == self.blur_kernel_size[1] and self.blur_kernel_size[0] % 2 == 0:
            yield "blur_kernel_size", f"{list(self.blur_kernel_size)} holds no odd size"


@dataclass(frozen=True)
class DataConfig:
    num_workers: int | None = option(
        None,
        "DataLoader worker processes (0: load in the main process); null: 0 when training on the CPU, where "
        "loading takes about 2% of a step and workers would only compete for the cores, else min(4, CPU count)",
        ge=0,
    )
    cache: bool = option(False, "Keep decoded training images in memory")


@dataclass(frozen=True)
class LoggingConfig:
    dir: str = option("runs", "Directory for run logs (TensorBoard events, log file, sample images)")
    run_name: str | None = option(None, "Sub-directory of dir for this run; null: <run timestamp>_<config file name>")
    log_interval: int = option(100, "Log training losses every this many iterations", ge=1)
    val_images: int = option(4, "Validation images logged as samples at each validation", ge=0)
    tensorboard: bool = option(True, "Write TensorBoard scalars and images")
    wandb: bool = option(False, "Log to Weights & Biases")
    wandb_project: str = option("torch_sr", "Weights & Biases project")
    log_file: bool = option(True, "Write a plain-text log file in the run directory")


@dataclass(frozen=True)
class DistributedConfig:
    sync_batch_norm: bool = option(
        False,
        "Under torchrun (DDP) on CUDA, compute batch-norm statistics over the global mini-batch (SyncBatchNorm) "
        "instead of each process's share of it, so that a network with batch norm (SRResNet, the VGG and SRGAN "
        "discriminators) trains as on one device; costs a synchronisation per batch-norm layer",
    )
    timeout_minutes: float = option(
        60.0,
        "Under torchrun, how long a process waits in a collective operation before the run fails: the other "
        "processes wait while rank 0 validates, so it must outlast a validation (NCCL's own default is 10)",
        ge=1, le=24 * 60,
    )


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run: both stages, both networks, the losses, data and logging."""

    description: str = option("", "Free text describing the run")
    scale_factor: int = option(4, "Upscaling factor LR -> HR", ge=1)
    batch_size: int = option(16, "Mini-batch size", ge=1)
    img_channels: int = option(3, "Image channels (3: RGB, 1: grey / Y)", ge=1)
    seed: int = option(0, "Seed of every random number generator (weights, data order, augmentation)", ge=0)
    init_weights: str | None = option(
        None, "Model file (any format load_model reads) whose weights start the first stage's generator; tensors "
        "whose name or shape do not fit keep their fresh initialisation and are listed in the log",
    )
    pretraining: PretrainingConfig = section(PretrainingConfig, "Stage 1: PSNR pre-training of the generator")
    training: TrainingConfig = section(TrainingConfig, "Stage 2: GAN training")
    generator: ArchConfig = field(
        default_factory=lambda: ArchConfig("rrdbnet"),
        metadata={"help": "Generator: 'arch' and its constructor arguments", "registry": "generator"},
    )
    discriminator: ArchConfig = field(
        default_factory=lambda: ArchConfig("vgg_discriminator"),
        metadata={"help": "Discriminator: 'arch' and its constructor arguments", "registry": "discriminator"},
    )
    content_loss: ContentLossConfig = section(ContentLossConfig, "Pixel-space loss")
    perceptual_loss: PerceptualLossConfig = section(PerceptualLossConfig, "Feature-space (VGG or ResNet-18) loss")
    adversarial_loss: AdversarialLossConfig = section(AdversarialLossConfig, "GAN loss of stage 2")
    degradation: DegradationConfig = section(
        DegradationConfig, "How training LR inputs are made: clean bicubic (default) or realistic degradations"
    )
    data: DataConfig = section(DataConfig, "Data loading")
    distributed: DistributedConfig = section(DistributedConfig, "Several processes under torchrun")
    val_loss_tile: int | None = option(
        1024,
        "Validation computes its image losses (content, perceptual, TV, checkerboard) on tiles of at most this "
        "many HR pixels a side, averaged by area, so that their memory (the perceptual network's, on the training "
        "device) does not grow with the validation images; null: whole images",
        ge=64,
    )
    logging: LoggingConfig = section(LoggingConfig, "Logs, TensorBoard and Weights & Biases")
    source: str = field(default="", compare=False, metadata={"internal": True})  # the file it came from

    def problems(self) -> Problems:
        if not self.pretraining.enabled and not self.training.enabled:
            yield "training/enabled", "both stages are disabled: nothing to train"
        for path, section in self.stage_sections():
            if not getattr(self, path.split("/")[0]).enabled:
                continue  # a disabled stage's crop (often the default) never meets the scale
            scale = section.scale_factor or self.scale_factor
            if section.cr_patch_size is not None and any(p % scale for p in section.cr_patch_size):
                yield f"{path}/cr_patch_size", f"{list(section.cr_patch_size)} is not a multiple of scale_factor {scale}"
        if self.content_loss.y_weight and self.img_channels != 3:
            yield "content_loss/y_weight", f"needs RGB images (img_channels 3), not {self.img_channels}: set it to 0"
        if self.training.enabled and self.discriminator.arch == "unet_discriminator":
            yield from _unet_window_problems(self)

    def stage_sections(self) -> Iterator[tuple[str, Any]]:
        """(key path, section) of both stages and of each of their phases."""
        for key in ("pretraining", "training"):
            section = getattr(self, key)
            yield key, section
            for i, phase in enumerate(section.phases):
                yield f"{key}/phases[{i}]", phase


def _unet_window_problems(config: TrainConfig) -> Problems:
    """The U-Net discriminator takes sides that are multiples of 8: the GAN stage's crops less d_shift."""
    for path, section in config.stage_sections():
        if not path.startswith("training") or (path == "training" and config.training.phases):
            continue  # a stage with phases trains only its phases
        if section.cr_patch_size is None:
            yield f"{path}/cr_patch_size", "unet_discriminator needs crops (whole images have any size): give one"
            continue
        window = [p - section.d_shift for p in section.cr_patch_size]
        if any(side % 8 for side in window):
            shift = f" less d_shift {section.d_shift}" if section.d_shift else ""
            yield f"{path}/cr_patch_size", (
                f"unet_discriminator judges {window} windows (the {list(section.cr_patch_size)} crop{shift}); "
                "their sides must be multiples of 8"
            )


def config_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a section that are config keys (not internal bookkeeping)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


@functools.cache
def key_types(cls: type) -> dict[str, Any]:
    """The resolved type hint of each field of a section."""
    return typing.get_type_hints(cls)


def default_value(cls: type, name: str) -> Any:
    """The default of one field of a section."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default
