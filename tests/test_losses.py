"""Losses against hand computations: content, adversarial, perceptual (+ Gram), total variation, total."""
import math

import pytest
import torch
from training_steps import assert_trains

from torch_sr.config.build import build_perceptual_loss_from_config
from torch_sr.config.validate import validate_config
from torch_sr.errors import ConfigError
from torch_sr.losses.adversarial import ADVERSARIAL_LOSSES, get_adversarial_loss
from torch_sr.losses.content import build_content_loss
from torch_sr.losses.perceptual import IMAGENET_MEAN, IMAGENET_STD, PerceptualLoss, build_perceptual_loss, gram_matrix
from torch_sr.losses.total import total_loss
from torch_sr.losses.total_variation import total_variation
from torch_sr.training.objective import Objective

X = torch.tensor([[0.0, 0.5], [1.0, 0.25]]).view(1, 1, 2, 2)
Y = torch.tensor([[0.5, 0.5], [0.0, 1.0]]).view(1, 1, 2, 2)  # differences 0.5, 0, 1, 0.75


@pytest.mark.parametrize(
    "name, expected",
    [
        ("l1", (0.5 + 0 + 1 + 0.75) / 4),
        ("l2", (0.25 + 0 + 1 + 0.5625) / 4),
        ("mse", (0.25 + 0 + 1 + 0.5625) / 4),
        ("charbonnier", sum(math.sqrt(d * d + 1e-6) for d in (0.5, 0, 1, 0.75)) / 4),
    ],
)
def test_content_losses_by_hand(name, expected):
    assert build_content_loss(name)(X, Y).item() == pytest.approx(expected)


def test_charbonnier_eps_and_unknown_name():
    assert build_content_loss("charbonnier", eps=0.5)(X, X).item() == pytest.approx(0.5)  # sqrt(eps^2) where equal
    with pytest.raises(ConfigError, match="unknown content loss 'l3'; choose one of l1, l2, mse, charbonnier"):
        build_content_loss("l3")


@pytest.mark.parametrize("name", ["l1", "l2"])
def test_y_weight_adds_the_loss_of_the_bt601_luma(name):
    torch.manual_seed(0)
    x, t = torch.rand(2, 3, 5, 4), torch.rand(2, 3, 5, 4)
    luma = torch.tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1) / 255
    base = build_content_loss(name)
    expected = base(x, t) + 2.5 * base((x * luma).sum(1), (t * luma).sum(1))
    assert build_content_loss(name, y_weight=2.5)(x, t).item() == pytest.approx(expected.item(), rel=1e-5)
    # A pure chroma change (Y unchanged) costs only its RGB loss; an equal-sized grey change costs more.
    chroma = torch.tensor([1.0, -65.481 / 128.553, 0.0]).view(1, 3, 1, 1) * 0.1
    grey = torch.full((1, 3, 1, 1), chroma.abs().mean().item())
    with_y = build_content_loss(name, y_weight=1.0)
    assert with_y(t + chroma, t).item() == pytest.approx(base(t + chroma, t).item(), rel=1e-4)
    assert with_y(t + grey, t).item() > base(t + grey, t).item() * 1.5


def _sig(x):
    return 1 / (1 + math.exp(-x))


REAL = [1.5, -0.5, 2.0]
FAKE = [-1.0, 0.25]


def _ragan_by_hand():
    """The ESRGAN paper's formulas with D_Ra(a, b) = sigmoid(C(a) - E[C(b)]), averaged as the official code."""
    mr, mf = sum(REAL) / len(REAL), sum(FAKE) / len(FAKE)
    d_real = [_sig(r - mf) for r in REAL]  # D_Ra(x_r, x_f)
    d_fake = [_sig(f - mr) for f in FAKE]  # D_Ra(x_f, x_r)
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    l_d = (-mean([math.log(p) for p in d_real]) - mean([math.log(1 - p) for p in d_fake])) / 2
    l_g = (-mean([math.log(1 - p) for p in d_real]) - mean([math.log(p) for p in d_fake])) / 2
    return l_d, l_g


def _hand(name):
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    if name == "ragan":
        return _ragan_by_hand()
    if name == "vanilla":
        return (-mean([math.log(_sig(r)) for r in REAL]) - mean([math.log(1 - _sig(f)) for f in FAKE]),
                -mean([math.log(_sig(f)) for f in FAKE]))
    if name == "lsgan":
        return (0.5 * mean([(r - 1) ** 2 for r in REAL]) + 0.5 * mean([f**2 for f in FAKE]),
                0.5 * mean([(f - 1) ** 2 for f in FAKE]))
    return (mean([max(0, 1 - r) for r in REAL]) + mean([max(0, 1 + f) for f in FAKE]), -mean(FAKE))


@pytest.mark.parametrize("name", ["ragan", "vanilla", "lsgan", "hinge"])
def test_adversarial_losses_by_hand(name):
    loss = get_adversarial_loss(name)
    real, fake = torch.tensor(REAL).view(-1, 1), torch.tensor(FAKE).view(-1, 1)
    l_d, l_g = _hand(name)
    assert loss.d_loss(real, fake).item() == pytest.approx(l_d, rel=1e-6)
    assert loss.g_loss(real, fake).item() == pytest.approx(l_g, rel=1e-6)


@pytest.mark.parametrize("name", list(ADVERSARIAL_LOSSES))
def test_adversarial_losses_are_finite_for_huge_logits_and_push_the_right_way(name):
    loss = get_adversarial_loss(name)
    real = torch.tensor([[200.0], [-150.0]])
    fake = torch.tensor([[-300.0], [120.0]], requires_grad=True)
    for value in (loss.d_loss(real, fake), loss.g_loss(real, fake)):
        assert torch.isfinite(value)
    # The generator wants higher fake logits (relative to real ones for RaGAN); the discriminator lower.
    fake_small = torch.tensor([[0.1], [0.2]], requires_grad=True)
    real_small = torch.tensor([[0.3], [0.0]], requires_grad=True)
    (g_grad,) = torch.autograd.grad(loss.g_loss(real_small, fake_small), fake_small)
    (d_grad,) = torch.autograd.grad(loss.d_loss(real_small, fake_small), fake_small)
    assert (g_grad <= 0).all() and g_grad.sum() < 0
    assert (d_grad >= 0).all() and d_grad.sum() > 0


def test_ragan_generator_step_does_not_train_the_discriminator_on_real_logits():
    real = torch.tensor([[0.3], [1.0]], requires_grad=True)
    fake = torch.tensor([[0.1], [-0.2]], requires_grad=True)
    get_adversarial_loss("ragan").g_loss(real, fake).backward()
    assert real.grad is None and fake.grad is not None
    real.grad = None
    get_adversarial_loss("ragan").d_loss(real, fake).backward()
    assert real.grad is not None  # the discriminator step uses both


def test_unknown_adversarial_loss():
    expected = "unknown adversarial loss 'wgan'; choose one of ragan, vanilla, lsgan, hinge"
    with pytest.raises(ConfigError, match=expected):
        get_adversarial_loss("wgan")


def test_total_loss_is_esrgans_formula_with_the_config_weights():
    weights = validate_config({}).training.loss_weights
    terms = {"content": torch.tensor(0.3), "perceptual": torch.tensor(2.0), "adversarial": torch.tensor(0.7)}
    assert total_loss(terms, weights).item() == pytest.approx(2.0 + 5e-3 * 0.7 + 1e-2 * 0.3)  # tv weight 0: not needed
    weights = validate_config({"training": {"g_adversarial_loss_scaling": 0.1, "g_content_loss_scaling": 0}}).training
    assert total_loss({"perceptual": torch.tensor(2.0), "adversarial": torch.tensor(0.7)},
                      weights.loss_weights).item() == pytest.approx(2.07)
    with pytest.raises(KeyError, match=r"weighted terms not computed: \['adversarial'\]"):
        terms = {"perceptual": torch.tensor(1.0), "content": torch.tensor(1.0)}
        total_loss(terms, validate_config({}).training.loss_weights)
    with pytest.raises(KeyError, match=r"without a weight: \['style'\]"):
        total_loss({"content": torch.tensor(1.0), "style": torch.tensor(1.0)}, {"content": 1.0})


def test_total_loss_gradient():
    x = torch.tensor(2.0, requires_grad=True)
    total_loss({"content": x * 3, "tv": x**2}, {"content": 0.5, "tv": 2.0}).backward()
    assert x.grad.item() == pytest.approx(0.5 * 3 + 2.0 * 2 * 2)


def test_total_variation_by_hand():
    # vertical diffs |1-0|, |0.25-0.5| -> mean 0.625; horizontal |0.5-0|, |0.25-1| -> mean 0.625
    assert total_variation(X).item() == pytest.approx(1.25)
    assert total_variation(torch.full((2, 3, 5, 4), 0.3)).item() == 0


def test_a_stages_image_terms_judge_its_output_against_the_hr_image():
    """Content, TV and checkerboard terms of `Objective` are those of the output (TV: of the output alone)."""
    cfg = validate_config({"scale_factor": 2, "pretraining": {"tv_loss_scaling": 0.5}})
    objective = Objective(cfg, cfg.pretraining, adversarial=False, device=torch.device("cpu"))
    sr, hr = torch.rand(1, 3, 8, 8, requires_grad=True), torch.rand(1, 3, 8, 8)
    terms = objective.image_terms(sr, hr)
    assert set(terms) == {"content", "tv"}
    assert terms["content"].item() == pytest.approx((sr - hr).abs().mean().item())
    assert terms["tv"].item() == pytest.approx(total_variation(sr).item())
    terms["tv"].backward()
    assert sr.grad.abs().sum() > 0  # the penalty reaches the generator


def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2.0], [0.0, -1.0]]).view(1, 2, 1, 2)  # 2 channels of 1x2 pixels
    expected = torch.tensor([[5.0, -2.0], [-2.0, 1.0]]) / (2 * 1 * 2)
    torch.testing.assert_close(gram_matrix(f)[0], expected)


class _Pixels(torch.nn.Module):
    """A fake extractor: 'a' is the input, 'b' its double; makes the weighting arithmetic visible."""

    def forward(self, x):
        return {"a": x, "b": 2 * x}


def test_perceptual_weights_criterion_and_normalisation():
    x, y = torch.full((1, 3, 2, 2), 0.5), torch.full((1, 3, 2, 2), 0.25)
    loss = PerceptualLoss(_Pixels(), {"a": 1.0, "b": 3.0}, "l1", normalize_input=False)
    assert loss(x, y).item() == pytest.approx(1.0 * 0.25 + 3.0 * 0.5)
    loss = PerceptualLoss(_Pixels(), {"a": 1.0, "b": 3.0}, "l2", normalize_input=False, normalize_loss=True)
    assert loss(x, y).item() == pytest.approx((1.0 * 0.0625 + 3.0 * 0.25) / 4)
    assert loss(x, x).item() == 0


def test_perceptual_style_term_uses_gram_matrices():
    x, y = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    loss = PerceptualLoss(_Pixels(), {"a": 0.5}, "l1", normalize_input=False, style_weights={"b": 2.0})
    terms = loss.terms(x, y)
    assert set(terms) == {"perceptual", "style"}
    assert terms["perceptual"].item() == pytest.approx(0.5 * (x - y).abs().mean().item(), rel=1e-6)
    expected = 2.0 * (gram_matrix(2 * x) - gram_matrix(2 * y)).abs().mean()
    assert terms["style"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss(x, y).item() == pytest.approx(terms["perceptual"].item() + terms["style"].item(), rel=1e-6)


def test_perceptual_input_normalisation_and_grey_inputs():
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return {"a": x}

    loss = PerceptualLoss(Spy(), {"a": 1.0})
    loss(torch.full((1, 1, 2, 2), 0.5), torch.zeros(1, 1, 2, 2))
    assert seen["x"].shape == (1, 3, 2, 2)  # grey repeated to RGB; the last call saw the target
    expected = [(0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(seen["x"][0, :, 0, 0], torch.tensor(expected))


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"output \(1, 3, 4, 4\) and target \(1, 3, 8, 8\) differ"):
        PerceptualLoss(_Pixels(), {"a": 1.0})(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 8, 8))


def test_target_features_carry_no_gradient():
    x, y = torch.rand(1, 3, 4, 4, requires_grad=True), torch.rand(1, 3, 4, 4, requires_grad=True)
    PerceptualLoss(_Pixels(), {"a": 1.0}, normalize_input=False)(x, y).backward()
    assert x.grad is not None and y.grad is None


def test_optimising_an_input_toward_a_target_lowers_the_vgg_loss():
    torch.manual_seed(0)
    loss_fn = build_perceptual_loss({"conv2_2": 1.0, "relu1_2": 0.5}, "vgg19", pretrained=False,
                                    style_weights={"conv1_2": 10.0})
    target = torch.rand(1, 3, 16, 16)
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    start = x.detach().clone()
    assert_trains(lambda: loss_fn(x, target), [x], steps=25, lr=0.05, below=0.5)
    assert (x - target).abs().mean() < 0.75 * (start - target).abs().mean()  # the image itself moved closer


def test_perceptual_loss_from_config_builds_only_the_needed_layers():
    cfg = validate_config({"perceptual_loss": {"layer_weights": {"relu2_1": 1.0}, "vgg_type": "vgg13",
                                               "criterion": "l2", "pretrained": False}})
    loss = build_perceptual_loss_from_config(cfg)
    assert loss.extractor.names[-1] == "relu2_1" and len(loss.extractor.features) == 7
    assert isinstance(loss.criterion, torch.nn.MSELoss)
    assert loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)).item() > 0


def test_every_loss_weight_key_belongs_to_one_registered_term():
    """A weight key the registry does not know would be validated and then silently never trained."""
    import dataclasses

    from torch_sr.config.schema import PretrainingConfig, TrainingConfig
    from torch_sr.losses.registry import LOSS_TERMS

    for kind, cls in (("pretraining", PretrainingConfig), ("training", TrainingConfig)):
        keys = {f.name for f in dataclasses.fields(cls) if f.name.endswith("loss_scaling")}
        claimed = [t.weight_keys[kind] for t in LOSS_TERMS.values() if kind in t.weight_keys]
        assert sorted(claimed) == sorted(keys), kind
