"""GPU smoke run: every CUDA path of torch_sr once, and a table of what was checked (issue 18).

    python benchmarks/gpu_smoke.py                      # one command; meant to take well under 10 min on one GPU
    python benchmarks/gpu_smoke.py --markdown table.md  # also write the table as Markdown (docs/benchmarks.md)
    python benchmarks/gpu_smoke.py --cpu-dry-run        # run what a CPU can, small: checks this script, not CUDA
    python benchmarks/gpu_smoke.py --only train --only resume   # only the checks whose name contains these

Without CUDA it says so and exits 0 having run nothing. With it, each check runs even when an
earlier one failed (a FAIL row, the error on stderr), and the exit status is 1 when any failed.

What it checks (see docs/gpu.md):
- inference on `cuda` and `cuda:0` in fp32/fp16/bf16, untiled, fixed 128-pixel tiles and automatic
  tiles, against the CPU's float32 result (max difference, PSNR), with the peak memory; TTA;
  RGBA and 16-bit images; the fp16 non-finite fallback; automatic tiles of the ESRGAN-size
  RRDBNet under a simulated 1 GiB of free memory (the peak must stay under it); the out-of-memory
  retry, simulated (OutOfMemoryError and a cuDNN allocation failure) and real (the GPU filled
  up to 2.5 GiB);
- the Gram (style) matrix under fp16 autocast; the autocast dtype in DataParallel's replica threads;
- training a tiny config (both stages, 4 iterations each, gradient clipping and a style loss) in
  fp32, fp16 and bf16; resuming the fp32 checkpoint with `--autocast`; `--deterministic` twice
  with identical weights;
- with two or more GPUs: NCCL DDP under torchrun (sync batch norm on), DataParallel training
  with `--device cuda:1`, and a `cuda:1` run that leaves GPU 0 alone.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MIN_PSNR = {"fp32": 50.0, "fp16": 40.0, "bf16": 30.0}  # dB against the CPU's float32 result
GIB = 1 << 30
MIB = 1 << 20


class Skip(Exception):
    """A check that does not apply here (the reason is the row's detail)."""


@dataclass
class Row:
    check: str
    result: str
    detail: str
    seconds: float


class Smoke:
    """Runs checks one after the other, whatever happens to each, and keeps their rows."""

    def __init__(self, only: list[str] | None = None) -> None:
        self.rows: list[Row] = []
        self.only = only

    def check(self, name: str, fn: Callable[[], str | None]) -> None:
        if self.only and not any(part in name for part in self.only):
            return
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                detail, result = fn() or "", "PASS"
        except Skip as e:
            detail, result = str(e), "SKIP"
        except Exception as e:  # noqa: BLE001 - a failing check is a row, not the end of the run
            traceback.print_exc()
            detail, result = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300], "FAIL"
        row = Row(name, result, detail.replace("|", "/"), time.perf_counter() - start)
        self.rows.append(row)
        print(f"{row.result:4}  {row.check}: {row.detail} ({row.seconds:.1f} s)", flush=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def table(self) -> str:
        lines = ["| check | result | detail | s |", "|---|---|---|---|"]
        lines += [f"| {r.check} | {r.result} | {r.detail} | {r.seconds:.1f} |" for r in self.rows]
        return "\n".join(lines)


# -- helpers --------------------------------------------------------------------------------------------


def smooth_image(h: int, w: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """A (1, C, h, w) float image in [0, 1]: bicubic-enlarged noise, photo-like enough for a generator."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.rand(1, channels, max(2, h // 6), max(2, w // 6), generator=gen)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> float:
    mse = (a.double() - b.double()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def shipped(name: str = "default_x4", device: str = "cpu") -> torch.nn.Module:
    from torch_sr.model_files.model_file import load_model
    from torch_sr.weights import model_path

    return load_model(model_path(name), device=device)


def esrgan_rrdbnet(blocks: int) -> torch.nn.Module:
    """ESRGAN's x4 RRDBNet (64 channels, growth 32), random weights, `blocks` RRDB blocks."""
    from torch_sr.archs.rrdbnet import RRDBNet

    torch.manual_seed(0)
    return RRDBNet(4, 3, 64, 32, blocks).eval()


@contextlib.contextmanager
def recorded_tiles():
    """The tile size of every `upscale_tiled` call made meanwhile (None: untiled)."""
    from torch_sr.inference import tiling

    seen: list[int | None] = []
    real = tiling.upscale_tiled

    def recording(fn, lr, scale, tile, *args, **kwargs):
        seen.append(tile)
        return real(fn, lr, scale, tile, *args, **kwargs)

    tiling.upscale_tiled = recording
    try:
        yield seen
    finally:
        tiling.upscale_tiled = real


@contextlib.contextmanager
def free_memory_reported_as(nbytes: int):
    """`tiling.available_memory` says `nbytes` are free, whatever the device has."""
    from torch_sr.inference import tiling

    real = tiling.available_memory
    tiling.available_memory = lambda device: nbytes
    try:
        yield
    finally:
        tiling.available_memory = real


class PeakMemory:
    """Peak CUDA memory allocated above what was allocated when the block started (0 on the CPU)."""

    def __init__(self, device: str):
        self.device = torch.device(device)
        self.bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self.base


# -- inference ------------------------------------------------------------------------------------------


class Inference:
    """The shipped x4 model on `devices` against the CPU, references computed once per tile size."""

    def __init__(self, smoke: Smoke, devices: list[str], dry_run: bool):
        self.smoke, self.devices, self.dry_run = smoke, devices, dry_run
        h, w = (72, 64) if dry_run else (600, 520)  # 600 x 520 is over 512 x 512: automatic tiles cut it
        self.lr = smooth_image(h, w)
        self.small = 16 if dry_run else 128  # side of the TTA, RGBA and 16-bit images (CPU half precision is slow)
        self.blocks = 2 if dry_run else 23  # RRDB blocks of the budget check's RRDBNet
        self.refs: dict[int | None, torch.Tensor] = {}

    def upscaler(self, device: str, precision: str = "fp32", **kwargs):
        from torch_sr.inference.upscaler import Upscaler

        return Upscaler(shipped(device=device), device, precision, force_autocast=self.dry_run, **kwargs)

    def reference(self, tile: int | None) -> torch.Tensor:
        if tile not in self.refs:
            self.refs[tile] = self.upscaler("cpu", tile=tile).upscale_tensor(self.lr)
        return self.refs[tile]

    def run_all(self) -> None:
        for device in self.devices:
            for precision in ("fp32", "fp16", "bf16"):
                for tile in (None, 128 if not self.dry_run else 32, "auto"):
                    name = f"inference {device} {precision} tile {tile or 'none'}"
                    self.smoke.check(name, lambda d=device, p=precision, t=tile: self.matrix(d, p, t))
        device = self.devices[0]
        self.smoke.check(f"TTA {device} fp16", lambda: self.tta(device))
        self.smoke.check(f"RGBA uint8 {device} fp16", lambda: self.rgba(device))
        self.smoke.check(f"16-bit RGB {device} fp32", lambda: self.sixteen_bit(device))
        self.smoke.check(f"fp16 non-finite fallback {device}", lambda: self.fallback(device))
        for precision in ("fp32", "fp16"):
            self.smoke.check(f"auto tiles under 1 GiB free, RRDBNet {self.blocks} blocks {device} {precision}",
                             lambda p=precision: self.budget(device, p))
        for error in ("OutOfMemoryError", "CUDNN_STATUS_ALLOC_FAILED"):
            self.smoke.check(f"out-of-memory retry, simulated {error} {device}", lambda e=error: self.oom(device, e))
        self.smoke.check(f"out-of-memory retry, real (2.5 GiB left) {device}", lambda: self.real_oom(device))

    def matrix(self, device: str, precision: str, tile: int | str | None) -> str:
        up = self.upscaler(device, precision, tile=tile)
        with recorded_tiles() as tiles, PeakMemory(device) as peak:
            out = up.upscale_tensor(self.lr)
        used = tiles[-1]
        ref = self.reference(used)
        quality = psnr(out, ref)
        text = f"max diff {(out - ref).abs().max().item():.2e}, PSNR {quality:.1f} dB vs CPU fp32"
        text += f", tile {used or 'none'}" if tile == "auto" else ""
        text += f", peak {peak.bytes / MIB:.0f} MiB" if peak.bytes else ""
        if quality < MIN_PSNR[precision]:
            raise AssertionError(f"{text}: under {MIN_PSNR[precision]} dB")
        return text

    def tta(self, device: str) -> str:
        lr = smooth_image(self.small, self.small, seed=1)
        out = self.upscaler(device, "fp16", tile=None, tta=True).upscale_tensor(lr)
        ref = self.upscaler("cpu", tile=None, tta=True).upscale_tensor(lr)
        quality = psnr(out, ref)
        assert quality >= MIN_PSNR["fp16"], f"PSNR {quality:.1f} dB vs CPU"
        return f"PSNR {quality:.1f} dB vs CPU fp32 TTA"

    def rgba(self, device: str) -> str:
        h, w = self.small, self.small * 5 // 4
        rgb = smooth_image(h, w, seed=2)
        alpha = torch.linspace(0, 1, w).expand(1, 1, h, w)  # fully transparent to opaque
        img = (torch.cat([rgb, alpha], 1)[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        out = self.upscaler(device, "fp16", tile=None).upscale_array(img)
        ref = self.upscaler("cpu", tile=None).upscale_array(img)
        assert out.shape == (4 * h, 4 * w, 4) and out.dtype == img.dtype, f"{out.shape} {out.dtype}"
        quality = psnr(torch.from_numpy(out).float(), torch.from_numpy(ref).float(), 255)
        assert quality >= MIN_PSNR["fp16"] - 5, f"PSNR {quality:.1f} dB vs CPU"  # uint8 rounding flips levels
        alpha_diff = abs(out[..., 3].astype(int) - ref[..., 3]).max()
        return f"PSNR {quality:.1f} dB vs CPU (uint8 levels), alpha max diff {alpha_diff}"

    def sixteen_bit(self, device: str) -> str:
        import numpy as np

        img = smooth_image(self.small, self.small, seed=3)[0].permute(1, 2, 0).mul(65535).round().numpy()
        img = img.astype(np.uint16)
        out = self.upscaler(device, tile=None).upscale_array(img)
        ref = self.upscaler("cpu", tile=None).upscale_array(img)
        assert out.dtype == np.uint16 and len(np.unique(out)) > 256, "not 16-bit levels"
        quality = psnr(torch.from_numpy(out.astype(np.float64)), torch.from_numpy(ref.astype(np.float64)), 65535)
        assert quality >= MIN_PSNR["fp32"], f"PSNR {quality:.1f} dB vs CPU"
        return f"PSNR {quality:.1f} dB vs CPU, {len(np.unique(out))} levels"

    def fallback(self, device: str) -> str:
        from torch_sr.inference.upscaler import Upscaler

        model = Overflows().to(device)
        x = smooth_image(32, 32, seed=4)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = Upscaler(model, device, "fp16", tile=None, force_autocast=self.dry_run).upscale_tensor(x)
        assert any("recomputing" in str(w.message) for w in caught), "no fallback to float32 happened"
        diff = (out - x).abs().max().item()
        assert diff < 1e-3, f"max diff {diff:.2e} after the fallback"
        return f"fp16 gave inf, float32 recompute max diff {diff:.1e}"

    def budget(self, device: str, precision: str) -> str:
        from torch_sr.inference.upscaler import Upscaler

        model = esrgan_rrdbnet(self.blocks)
        up = Upscaler(model, device, precision, tile="auto", force_autocast=self.dry_run)
        lr = smooth_image(self.small, self.small) if self.dry_run else self.lr
        with free_memory_reported_as(GIB), recorded_tiles() as tiles, PeakMemory(device) as peak:
            out = up.upscale_tensor(lr)
        assert torch.isfinite(out).all(), "non-finite output"
        text = f"{up._per_pixel():.0f} B/pixel, tile {tiles[-1]}, peak {peak.bytes / MIB:.0f} MiB"
        if peak.bytes > GIB:
            raise AssertionError(f"{text}: over the 1024 MiB said to be free")
        return text

    def oom(self, device: str, error: str) -> str:
        from torch_sr.inference.upscaler import Upscaler

        model = FailsOnceAbove(128 * 128, error).to(device)
        x = smooth_image(150, 140, seed=5)
        base = torch.cuda.memory_allocated(device) if device.startswith("cuda") else 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = Upscaler(model, device, tile="auto").upscale_tensor(x)
        retries = [str(w.message) for w in caught if "retrying with tile" in str(w.message)]
        assert retries, "no retry"
        expected = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6, msg="wrong output after the retry")
        left = (torch.cuda.memory_allocated(device) if device.startswith("cuda") else 0) - base
        assert left <= 0, f"{left} bytes still allocated after the retry"
        return retries[0]

    def real_oom(self, device: str) -> str:
        if not device.startswith("cuda"):
            raise Skip("needs CUDA")
        from torch_sr.inference.upscaler import Upscaler

        model = esrgan_rrdbnet(23).to(device)
        up = Upscaler(model, device, tile="auto")
        up._per_pixel()  # the probe, before the GPU is filled
        lr = smooth_image(512, 512, seed=6)
        gc.collect()
        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info(device)
        blocker = torch.empty(max(0, free - 5 * GIB // 2), dtype=torch.uint8, device=device)
        try:
            with free_memory_reported_as(100 * GIB), recorded_tiles() as tiles:  # so the whole image is tried
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    out = up.upscale_tensor(lr)
        finally:
            del blocker
            torch.cuda.empty_cache()
        retries = [str(w.message) for w in caught if "retrying with tile" in str(w.message)]
        if not retries:
            raise Skip(f"the whole 512 x 512 image fitted in 2.5 GiB (tiles {tiles}): nothing to retry")
        assert torch.isfinite(out).all(), "non-finite output"
        return f"{len(retries)} retries, tiles {tiles}"


class Overflows(torch.nn.Module):
    """x -> 1e-5 * (1e5 * x): the identity in float32, inf in float16 (whose largest value is 65504)."""

    def __init__(self):
        super().__init__()
        from torch_sr.archs.description import GeneratorInfo

        self.info = GeneratorInfo(scale=1, in_channels=3, out_channels=3)
        self.up = torch.nn.Conv2d(3, 3, 1, bias=False)
        self.down = torch.nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.up.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 1e5)
            self.down.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 1e-5)

    def forward(self, x):
        return self.down(self.up(x))


class FailsOnceAbove(torch.nn.Module):
    """Nearest x2 that fails like the GPU ran out of memory at its first input of more than `pixels` pixels."""

    def __init__(self, pixels: int, error: str):
        super().__init__()
        from torch_sr.archs.description import GeneratorInfo

        self.info = GeneratorInfo(scale=2, in_channels=3, out_channels=3)
        self.pixels, self.error, self.failed = pixels, error, False
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # so that .to(device) has something to move

    def forward(self, x):
        if not self.failed and x.shape[-1] * x.shape[-2] > self.pixels:
            self.failed = True
            if self.error == "OutOfMemoryError":
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            raise RuntimeError(f"cuDNN error: {self.error} (simulated)")
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest") + self.anchor


# -- losses and DataParallel ----------------------------------------------------------------------------


def gram_fp16(device: str) -> str:
    from torch_sr.losses.perceptual import gram_matrix

    f = torch.full((1, 64, 256, 256), 4.0, device=device, dtype=torch.float16)
    with torch.autocast(torch.device(device).type, dtype=torch.float16):
        g = gram_matrix(f)
    assert g.dtype == torch.float32 and torch.isfinite(g).all(), f"{g.dtype}, finite {torch.isfinite(g).all()}"
    assert torch.allclose(g, torch.full_like(g, 16 / 64)), f"{g.flatten()[0].item()} instead of 0.25"
    return "float32, finite (sums of 65536 products of 16 exceed float16's 65504)"


def data_parallel_bf16(device: str) -> str:
    """Two replica threads on one GPU, as DataParallel runs them on two."""
    if not device.startswith("cuda"):
        raise Skip("needs CUDA")
    from torch_sr.training.distributed import AutocastDataParallel

    class Conv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    net = Conv().to(device)
    x = torch.rand(1, 3, 16, 16, device=device)
    seen = {}
    for label, cls in (("ours", AutocastDataParallel), ("plain", torch.nn.DataParallel)):
        dp = cls(net, device_ids=[0, 0])
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outputs = dp.parallel_apply([net, net], [(x,), (x,)], [{}, {}])
        seen[label] = {str(o.dtype).removeprefix("torch.") for o in outputs}
    assert seen["ours"] == {"bfloat16"}, f"replicas computed in {seen['ours']}"
    return f"replica outputs {seen['ours']} (plain DataParallel: {seen['plain']})"


# -- training -------------------------------------------------------------------------------------------


class Training:
    """A tiny two-stage run in each precision, from images written to a temporary folder."""

    def __init__(self, smoke: Smoke, device: str, work: Path):
        self.smoke, self.device, self.work = smoke, device, work
        self.train_dir, self.val_dir = work / "train", work / "val"
        write_images(self.train_dir, 8, 64, seed=0)
        write_images(self.val_dir, 2, 96, seed=1)

    def config(self, name: str, **changes) -> Path:
        stage = {
            "num_iterations": 4, "cr_patch_size": [32, 32], "scheduler": "constant", "val_interval": 4,
            "train_datasets": [str(self.train_dir)], "val_datasets": [str(self.val_dir)], "hard_transforms": False,
            "grad_clip_norm": 1.0,
        }  # fmt: skip
        cfg = {
            "scale_factor": 4, "batch_size": 4, "seed": 0,
            "pretraining": {**stage, "perceptual_loss_scaling": 0.1},
            "training": dict(stage),
            "generator": {"arch": "rrdbnet", "rrdb_channels": 16, "growth_channels": 8, "num_basic_blocks": 2},
            "discriminator": {"arch": "vgg_discriminator", "vgg_blk_ch": [8, 16, 16], "fc_features": [16],
                              "input_size": 32},
            "perceptual_loss": {"layer_weights": {"conv2_1": 1.0}, "style_weights": {"conv3_1": 1.0},
                                "vgg_type": "vgg11", "pretrained": False},
            "data": {"num_workers": 2, "cache": True},
            "logging": {"dir": str(self.work / "runs"), "run_name": name, "log_interval": 1, "val_images": 1,
                        "tensorboard": False},
            "val_loss_tile": 64,
            **changes,
        }  # fmt: skip
        path = self.work / f"{name}.json"
        path.write_text(json.dumps(cfg, indent=1))
        return path

    def train(self, name: str, *flags: str, config: Path | None = None) -> Path:
        """`train.py` in this process; returns the output folder (a non-zero exit is an AssertionError)."""
        from torch_sr.cli.train import main

        out = self.work / "out" / name
        args = [str(config or self.config(name)), "--device", self.device, "--output-dir", str(out), "--no-progress"]
        self.quietly(main, [*args, *flags])
        return out

    def quietly(self, main: Callable[[list[str]], int], args: list[str]) -> None:
        """`main(args)` with what it prints kept in work/train_output.txt; a non-zero exit fails with its last line."""
        log = self.work / "train_output.txt"
        start = log.stat().st_size if log.exists() else 0
        with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            code = main(args)
        if code != 0:
            text = log.read_text()[start:]
            sys.stderr.write(text[-4000:])
            raise AssertionError(f"train.py exited {code}: {text.strip().splitlines()[-1:] if text.strip() else ''}")

    def run_all(self, gpus: int) -> None:
        for precision in ("fp32", "fp16", "bf16"):
            flags = [] if precision == "fp32" else ["--autocast", "--amp-dtype", precision]
            name = f"train both stages {self.device} {precision}"
            self.smoke.check(name, lambda p=precision, f=flags: self.stages(p, f))
        self.smoke.check(f"resume an fp32 checkpoint with --autocast {self.device}", self.resume_with_autocast)
        self.smoke.check(f"--deterministic twice {self.device}", self.deterministic)
        self.smoke.check("DDP under torchrun, 2 GPUs, sync batch norm, fp16", lambda: self.ddp(gpus))
        self.smoke.check("DataParallel training, --device cuda:1, bf16", lambda: self.data_parallel(gpus))
        self.smoke.check("--device cuda:1 --no-data-parallel leaves GPU 0 alone", lambda: self.second_gpu_only(gpus))

    def stages(self, precision: str, flags: list[str]) -> str:
        from torch_sr.training.checkpointing import read_checkpoint

        out = self.train(f"train_{precision}", *flags)
        finals = sorted(out.glob("*_final_model.pth"))
        assert len(finals) == 2, f"final models: {[p.name for p in finals]}"
        scales = []
        for checkpoint in sorted(out.glob("*_checkpoint.pth")):
            scalers = read_checkpoint(checkpoint)["training"]["scalers"]
            scales += [float(s["scale"]) for s in scalers.values() if s]
        fp16 = precision == "fp16" and self.device.startswith("cuda")
        assert bool(scales) == fp16, f"gradient scales saved: {scales}"
        return "2 stages x 4 iterations" + (f", gradient scales {scales}" if scales else "")

    def resume_with_autocast(self) -> str:
        from torch_sr.cli.train import main

        out = self.train("resume", "--stop-after", "2")
        checkpoint = next(out.glob("*_checkpoint.pth"))
        self.quietly(main, ["-l", str(checkpoint), "--device", self.device, "--output-dir", str(out), "--no-progress",
                            "--autocast"])  # fmt: skip
        log = (self.work / "runs" / "resume" / "train.log").read_text()
        if self.device.startswith("cuda"):
            assert "starts afresh" in log, "no fresh-scaler note in the log"
        return "resumed with a fresh fp16 gradient scaler" if "starts afresh" in log else "resumed (CPU: bf16, no scaler)"

    def deterministic(self) -> str:
        """Two runs in fresh processes (cuBLAS reads its workspace setting when it starts)."""
        from torch_sr.model_files.model_file import read_model_file

        config, digests = self.config("deterministic"), []
        for k in range(2):
            out = self.work / "out" / f"deterministic{k}"
            self.run_process([sys.executable, str(ROOT / "train.py"), str(config), "--device", self.device,
                             "--deterministic", "--output-dir", str(out), "--no-progress"])  # fmt: skip
            state = read_model_file(next(out.glob("*_ESRGAN_x4_final_model.pth"))).state_dict
            h = hashlib.sha256()
            for key in sorted(state):
                h.update(state[key].cpu().contiguous().numpy().tobytes())
            digests.append(h.hexdigest()[:12])
        assert digests[0] == digests[1], f"weights differ: {digests}"
        return f"identical final weights ({digests[0]})"

    def torchrun(self, name: str, nproc: int, *flags: str, config: Path | None = None) -> str:
        out = self.work / "out" / name
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(ROOT / "train.py"), str(config or self.config(name)), "--output-dir", str(out), "--no-progress",
               *flags]  # fmt: skip
        return self.run_process(cmd)

    def run_process(self, cmd: list[str]) -> str:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run(cmd, cwd=self.work, env=env, capture_output=True, text=True, timeout=240)
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-5000:])
            raise AssertionError(f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
        return done.stdout

    def ddp(self, gpus: int) -> str:
        """Two processes under torchrun (gloo on the CPU in a dry run, which checks the command only)."""
        cpu = self.device == "cpu"
        if gpus < 2 and not cpu:
            raise Skip(f"needs 2 GPUs, {gpus} here")
        config = self.config("ddp", distributed={"sync_batch_norm": True, "timeout_minutes": 5})
        self.torchrun("ddp", 2, "--device", "cpu" if cpu else "cuda", "--autocast", config=config)
        finals = list((self.work / "out" / "ddp").glob("*_final_model.pth"))
        assert len(finals) == 2, f"final models: {finals}"
        return "2 processes, both stages" + (" (gloo on the CPU)" if cpu else "")

    def data_parallel(self, gpus: int) -> str:
        if gpus < 2:
            raise Skip(f"needs 2 GPUs, {gpus} here")
        self.run_process([sys.executable, str(ROOT / "train.py"), str(self.config("dp")), "--device", "cuda:1",
                         "--autocast", "--amp-dtype", "bf16", "--output-dir", str(self.work / "out" / "dp"),
                         "--no-progress"])  # fmt: skip
        return f"DataParallel over {gpus} GPUs from cuda:1"

    def second_gpu_only(self, gpus: int) -> str:
        if gpus < 2:
            raise Skip(f"needs 2 GPUs, {gpus} here")
        script = (
            "import os, subprocess, sys, torch\n"
            "from torch_sr.cli.train import main\n"
            f"code = main([{str(self.config('gpu1'))!r}, '--device', 'cuda:1', '--no-data-parallel', '--output-dir', "
            f"{str(self.work / 'out' / 'gpu1')!r}, '--no-progress'])\n"
            "uuid0 = subprocess.run(['nvidia-smi', '--query-gpu=uuid', '--format=csv,noheader', '-i', '0'], "
            "capture_output=True, text=True).stdout.strip()\n"
            "apps = subprocess.run(['nvidia-smi', '--query-compute-apps=pid,gpu_uuid', '--format=csv,noheader'], "
            "capture_output=True, text=True).stdout\n"
            "mine = [l for l in apps.splitlines() if l.split(',')[0].strip() == str(os.getpid())]\n"
            "print('ON_GPU0', any(uuid0 in l for l in mine), 'LISTED', len(mine))\n"
            "sys.exit(code)\n"
        )
        text = self.run_process([sys.executable, "-c", script])
        line = next((l for l in text.splitlines() if l.startswith("ON_GPU0")), "")
        if not line or line.endswith("LISTED 0"):
            raise Skip(f"trained; nvidia-smi could not tell where this process holds contexts ({line or 'no output'})")
        assert line.startswith("ON_GPU0 False"), "the cuda:1 run also holds a context on GPU 0"
        return "trained on cuda:1 with no context on GPU 0"


def write_images(folder: Path, count: int, side: int, seed: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        img = smooth_image(side, side, seed=seed * 100 + k)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
        Image.fromarray(np.ascontiguousarray(img)).save(folder / f"img{k:02d}.png")


# -- main -----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--markdown", type=Path, help="also write the table to this file")
    p.add_argument("--cpu-dry-run", action="store_true", help="run what a CPU can, small (checks this script)")
    p.add_argument("--only", action="append", metavar="TEXT", help="only the checks whose name contains TEXT")
    args = p.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print("CUDA is not available on this machine: nothing was run (the GPU smoke run needs a CUDA GPU).")
        return 0
    sys.path.insert(0, str(ROOT))
    gpus = torch.cuda.device_count() if not args.cpu_dry_run else 0
    devices = ["cuda", "cuda:0"] if not args.cpu_dry_run else ["cpu"]
    if gpus:
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(gpus))
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {gpus} GPU(s): {names}", flush=True)
    start = time.perf_counter()
    smoke = Smoke(args.only)
    with tempfile.TemporaryDirectory(prefix="torch_sr_gpu_smoke_") as tmp:
        Inference(smoke, devices, args.cpu_dry_run).run_all()
        smoke.check(f"Gram matrix under fp16 autocast {devices[0]}", lambda: gram_fp16(devices[0]))
        smoke.check(f"DataParallel replica threads keep bf16 {devices[0]}", lambda: data_parallel_bf16(devices[0]))
        Training(smoke, devices[0], Path(tmp)).run_all(gpus)
    table = smoke.table()
    failed = sum(r.result == "FAIL" for r in smoke.rows)
    summary = f"{len(smoke.rows)} checks, {failed} failed, in {time.perf_counter() - start:.0f} s"
    print(f"\n{table}\n\n{summary}")
    if args.markdown is not None:
        args.markdown.write_text(f"{table}\n\n{summary}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
