"""Device choice shared by the library (`Upscaler`) and the command-line tools, and the CUDA settings of a run."""
from __future__ import annotations

import os

import torch

from torch_sr.errors import TorchSRError

# cuBLAS needs a fixed workspace to give the same results run after run (CUDA's "Results reproducibility").
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU; an unavailable device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TorchSRError(f"--device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TorchSRError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise TorchSRError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def make_current(device: torch.device) -> None:
    """Make an indexed CUDA device (`cuda:1`) the current one.

    Otherwise whatever uses the current device (pinned host memory, library handles) also creates a
    CUDA context, and spends memory, on `cuda:0`, which may be another user's GPU.
    """
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


def configure_cuda(deterministic: bool) -> None:
    """cuDNN and TF32 settings of a training run on CUDA: fast by default, reproducible if asked.

    Fast: cuDNN benchmarks its algorithms per shape (and may pick a non-deterministic one) and
    convolutions use TF32 on GPUs that have it. Deterministic: no benchmarking, deterministic
    algorithms (`torch.use_deterministic_algorithms`, warning for an operation that has none),
    full float32 convolutions and matrix products, and cuBLAS's fixed workspace (set here unless
    `CUBLAS_WORKSPACE_CONFIG` is already set; it must be set before cuBLAS starts).
    """
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU multiplies bfloat16 natively (x86 `avx512_bf16` or `amx_bf16`); None when unknown.

    bf16 autocast roughly halves a convolution's time on such CPUs (docs/benchmarks.md) and is
    slower than float32 where bfloat16 is emulated. Read from Linux's /proc/cpuinfo; elsewhere unknown.
    """
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[-1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return None
    return None


def autocast_dtype(device: torch.device, amp_dtype: str | None) -> torch.dtype | None:
    """The dtype autocast computes in (training's `--autocast`, inference's `--fp16`/`--bf16`); None: float32.

    CUDA: fp16 (`amp_dtype` None) or bf16. The CPU: bf16 (None or "bf16"), unless the CPU is known to
    emulate it (`cpu_has_native_bf16() is False`), where it is slower than float32; fp16 is refused
    there (slow, and it would need a gradient scaler), and so is any other device type.
    """
    if device.type == "cuda":
        return torch.bfloat16 if amp_dtype == "bf16" else torch.float16
    if device.type == "cpu" and amp_dtype in (None, "bf16") and cpu_has_native_bf16() is not False:
        return torch.bfloat16
    return None
