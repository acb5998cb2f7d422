"""Blur kernels of Real-ESRGAN's degradation model: Gaussian, generalized Gaussian, plateau and sinc.

Every kernel is a square odd-sized float32 tensor that sums to 1. For a 2-D offset x from the centre
and Sigma = R diag(sigma_x^2, sigma_y^2) R^T (R a rotation by theta; isotropic: sigma_x = sigma_y), with
q = x^T Sigma^-1 x: Gaussian exp(-q / 2); generalized Gaussian exp(-(q / 2)^beta) (beta < 1 heavier
tails, > 1 flatter top); plateau 1 / (1 + q^beta); sinc (an ideal circular low-pass, whose ringing
mimics over-sharpened or resampled images) omega J1(omega r) / (2 pi r).

`random_kernel` draws one kernel the way Real-ESRGAN draws its first- and second-round kernels; the
randomness comes from a `torch.Generator`, so a seed gives the same kernel on every machine.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) offsets from the centre of a `size` x `size` kernel, float64."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    ax = torch.arange(size, dtype=torch.float64) - size // 2
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    return x, y


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """q = x^T Sigma^-1 x at every kernel position (Sigma rotated by theta, counter-clockwise from +x)."""
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"kernel sigmas must be positive, got {sigma_x}, {sigma_y}")
    x, y = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u = c * x + s * y  # coordinates along the rotated axes
    v = -s * x + c * y
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalised(k: torch.Tensor) -> torch.Tensor:
    return (k / k.sum()).float()


def gaussian_kernel2d(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> torch.Tensor:
    """Anisotropic Gaussian: sigma_x along the direction `theta` (radians), sigma_y across it."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalised(torch.exp(-0.5 * q))


def generalized_gaussian_kernel2d(
    size: int, sigma_x: float, sigma_y: float | None, theta: float, beta: float
) -> torch.Tensor:
    """exp(-(q / 2)^beta): beta 1 is the Gaussian."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalised(torch.exp(-((0.5 * q) ** beta)))


def plateau_kernel2d(size: int, sigma_x: float, sigma_y: float | None, theta: float, beta: float) -> torch.Tensor:
    """1 / (1 + q^beta): a flat top with heavy tails."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalised(1.0 / (1.0 + q**beta))


def sinc_kernel2d(size: int, omega: float) -> torch.Tensor:
    """Circular low-pass with cut-off `omega` (radians per pixel, at most pi): omega J1(omega r) / (2 pi r)."""
    if not 0 < omega <= math.pi:
        raise ValueError(f"sinc cut-off must be in (0, pi], got {omega}")
    x, y = _grid(size)
    r = torch.sqrt(x**2 + y**2)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    k = omega * torch.special.bessel_j1(omega * safe) / (2 * math.pi * safe)
    k = torch.where(r == 0, torch.full_like(r, omega**2 / (4 * math.pi)), k)
    return _normalised(k)


@dataclass(frozen=True)
class KernelSpec:
    """How one round draws its blur kernel (Real-ESRGAN's `kernel_list`, `kernel_prob`, ranges)."""

    kernel_probs: Mapping[str, float]  # kernel type -> probability
    sigma: tuple[float, float]
    betag: tuple[float, float]  # generalized Gaussian beta
    betap: tuple[float, float]  # plateau beta
    sinc_prob: float
    sizes: tuple[int, int] = (7, 21)  # odd kernel sizes drawn uniformly from this inclusive range


def uniform(gen: torch.Generator, low: float, high: float) -> float:
    """One float drawn uniformly from [low, high] with `gen`."""
    return low + (high - low) * float(torch.rand((), generator=gen, dtype=torch.float64))


def choice(gen: torch.Generator, probs: Mapping[str, float]) -> str:
    """A key of `probs` drawn with the (not necessarily normalised) probabilities given."""
    names = list(probs)
    weights = torch.tensor([float(probs[n]) for n in names], dtype=torch.float64)
    return names[int(torch.multinomial(weights, 1, generator=gen))]


def _beta(gen: torch.Generator, low: float, high: float) -> float:
    """A shape beta drawn below or above 1 with equal chance (when the range spans 1), as Real-ESRGAN does."""
    if low < 1 < high:
        return uniform(gen, low, 1.0) if uniform(gen, 0, 1) < 0.5 else uniform(gen, 1.0, high)
    return uniform(gen, low, high)


def random_size(gen: torch.Generator, sizes: tuple[int, int]) -> int:
    """An odd kernel size drawn uniformly from the odd numbers in [sizes[0], sizes[1]]."""
    odd = list(range(sizes[0] | 1, sizes[1] + 1, 2))
    return odd[int(torch.randint(len(odd), (), generator=gen))]


def random_sinc(gen: torch.Generator, size: int, omega: tuple[float, float] | None = None) -> torch.Tensor:
    """A sinc kernel of `size`; cut-off in [pi/3, pi] below 13 taps and [pi/5, pi] from 13 (less ringing)."""
    if omega is None:
        omega = (math.pi / 3, math.pi) if size < 13 else (math.pi / 5, math.pi)
    return sinc_kernel2d(size, uniform(gen, *omega))


def random_kernel(gen: torch.Generator, spec: KernelSpec) -> torch.Tensor:
    """One kernel drawn as Real-ESRGAN's dataset draws it: sinc with `sinc_prob`, else a mixed kernel."""
    size = random_size(gen, spec.sizes)
    if uniform(gen, 0, 1) < spec.sinc_prob:
        return random_sinc(gen, size)
    kind = choice(gen, spec.kernel_probs)
    sigma_x = uniform(gen, *spec.sigma)
    if kind.endswith("_iso") or kind == "iso":
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y, theta = uniform(gen, *spec.sigma), uniform(gen, -math.pi, math.pi)
    if kind.startswith("generalized"):
        return generalized_gaussian_kernel2d(size, sigma_x, sigma_y, theta, _beta(gen, *spec.betag))
    if kind.startswith("plateau"):
        return plateau_kernel2d(size, sigma_x, sigma_y, theta, _beta(gen, *spec.betap))
    return gaussian_kernel2d(size, sigma_x, sigma_y, theta)
