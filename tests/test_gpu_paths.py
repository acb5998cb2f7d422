"""The CUDA code paths, shown on the CPU where their mechanism can be (issue 18).

No test here needs a GPU: CUDA's device count, DataParallel's constructor, autocast's CUDA state,
the allocator's peak memory or an out-of-memory error are stood in for. What only a GPU can show
is in `benchmarks/gpu_smoke.py`.
"""
import importlib
import os
import sys
import threading
import weakref
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from trainer_fixtures import tiny_config

from torch_sr.archs.description import GeneratorInfo
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.config.validate import validate_config
from torch_sr.device import CUBLAS_DETERMINISTIC_WORKSPACE, configure_cuda, make_current
from torch_sr.errors import ConfigError
from torch_sr.inference import tiling
from torch_sr.inference.upscaler import Upscaler
from torch_sr.losses.content import build_content_loss
from torch_sr.losses.perceptual import PerceptualLoss, gram_matrix
from torch_sr.losses.total_variation import total_variation
from torch_sr.training import distributed
from torch_sr.training.distributed import AutocastDataParallel, DistributedContext, init_distributed, wrap_model
from torch_sr.training.stages import build_stages
from torch_sr.training.state import TrainState, build_optimizers
from torch_sr.training.validation import tiled_image_terms

def in_thread(fn):
    """`fn()` run in a new thread, as DataParallel runs each replica."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(value=fn()))
    thread.start()
    thread.join()
    return out["value"]


def cuda_autocast_state():
    """Autocast's CUDA state in this thread: its dtype when enabled, else None."""
    return torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None


@pytest.fixture
def cuda_autocast(monkeypatch):
    """Let `torch.autocast("cuda", ...)` set its (thread-local) state without CUDA; nothing computes on CUDA."""
    monkeypatch.setattr(torch.cuda.amp.common, "amp_definitely_not_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)


# -- 1, 11: which GPU ---------------------------------------------------------------------------------


def test_data_parallel_puts_the_run_device_first_and_gathers_there(monkeypatch):
    seen = []

    def record(self, module, device_ids=None, output_device=None, dim=0):
        nn.Module.__init__(self)
        self.module = module
        seen.append((device_ids, output_device))

    monkeypatch.setattr(nn.DataParallel, "__init__", record)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    net = nn.Linear(2, 2)
    wrapped = wrap_model(net, DistributedContext(torch.device("cuda", 1)))  # --device cuda:1
    assert isinstance(wrapped, AutocastDataParallel) and wrapped.module is net
    assert seen == [([1, 0, 2, 3], 1)]  # the parameters' device first, outputs gathered there
    wrap_model(net, DistributedContext(torch.device("cuda")))
    assert seen[-1] == ([0, 1, 2, 3], 0)


def test_an_indexed_cuda_device_becomes_the_current_one(monkeypatch):
    current = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed(torch.device("cuda", 1))
    assert ctx.device == torch.device("cuda", 1) and not ctx.distributed
    assert current == [torch.device("cuda", 1)]  # nothing lands on cuda:0 (pinned memory, handles)
    make_current(torch.device("cuda"))
    make_current(torch.device("cpu"))
    assert current == [torch.device("cuda", 1)]


# -- 2: the autocast dtype in DataParallel's replica threads --------------------------------------------


def test_the_autocast_dtype_does_not_cross_threads(cuda_autocast):
    """Why DataParallel needs help: its replica threads re-enable autocast without the dtype."""
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert cuda_autocast_state() == torch.bfloat16
        assert in_thread(cuda_autocast_state) is None

        def like_data_parallel():
            with torch.autocast("cuda", enabled=True):
                return cuda_autocast_state()

        assert in_thread(like_data_parallel) == torch.float16  # bf16 silently became fp16


class DtypeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(cuda_autocast_state())
        return x


def test_data_parallel_replicas_compute_in_the_callers_autocast_dtype(cuda_autocast, monkeypatch):
    def threads_like_torch(modules, inputs, kwargs_tup, devices=None):
        """torch's `parallel_apply`: a thread per replica, autocast re-enabled there without a dtype."""
        enabled = torch.is_autocast_enabled("cuda")

        def worker(module, args, kwargs):
            with torch.autocast("cuda", enabled=enabled):
                return module(*args, **kwargs)

        return [in_thread(lambda m=m, a=a, k=k: worker(m, a, k)) for m, a, k in zip(modules, inputs, kwargs_tup)]

    data_parallel_module = importlib.import_module("torch.nn.parallel.data_parallel")  # the name is also a function
    monkeypatch.setattr(data_parallel_module, "parallel_apply", threads_like_torch)
    recorder = DtypeRecorder()
    dp = AutocastDataParallel(recorder)  # without CUDA it keeps no devices: set up as on two GPUs
    dp.src_device_obj, dp.device_ids = torch.device("cuda", 0), [0, 1]
    x = torch.zeros(1)
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cuda", dtype=dtype):
            dp.parallel_apply([recorder, recorder], [(x,), (x,)], [{}, {}])
        assert recorder.seen[-2:] == [dtype, dtype]
    dp.parallel_apply([recorder], [(x,)], [{}])
    assert recorder.seen[-1] is None  # no autocast stays no autocast


# -- 3: resuming with or without fp16 autocast ---------------------------------------------------------


def _state(enabled: bool) -> TrainState:
    cfg = validate_config(tiny_config(Path("train"), Path("val")))
    stage = build_stages(cfg)[0]
    torch.manual_seed(0)
    net = nn.Linear(2, 2)
    optimizers, schedulers, scalers = build_optimizers({"generator": net}, stage.section, 10, enabled, "cpu")
    return TrainState(stage, net, None, optimizers, schedulers, scalers, None, 10, 0, 4, 2)


def _checkpoint(state: TrainState) -> dict:
    return {"state_dict": state.generator.state_dict(), "training": state.training_dict()}


def test_resuming_with_fp16_from_a_checkpoint_without_it_starts_a_fresh_scaler():
    fp32 = _state(enabled=False)
    fp32.iteration = 3
    fp16 = _state(enabled=True)
    notes = fp16.load_training_dict(_checkpoint(fp32))
    assert fp16.iteration == 3 and fp16.scalers["generator"].is_enabled()
    assert notes == ["the generator's fp16 gradient scaler starts afresh (the checkpoint was trained without fp16 "
                     "autocast)"]
    assert fp16.scalers["generator"].get_scale() == torch.amp.GradScaler("cpu").get_scale()
    # and back: an fp16 checkpoint resumed without fp16 drops its scale, with a note
    back = _state(enabled=False)
    assert back.load_training_dict(_checkpoint(fp16)) == [
        "the checkpoint's fp16 gradient scale of the generator is dropped (this run has no fp16 autocast)"
    ]
    # fp16 to fp16 carries the scale over, silently
    fp16.scalers["generator"]._init_scale = 8.0
    again = _state(enabled=True)
    assert again.load_training_dict(_checkpoint(fp16)) == [] and again.scalers["generator"].get_scale() == 8.0


# -- 4: the Gram matrix under fp16 autocast ------------------------------------------------------------


class ConvFeatures(nn.Module):
    """A 'feature network' whose one layer autocast runs in float16: features of about 4."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        nn.init.constant_(self.conv.weight, 4.0 / 3)

    def forward(self, x):
        return {"f": self.conv(x)}


def test_the_gram_matrix_is_float32_and_finite_under_fp16_autocast():
    f = torch.full((1, 4, 96, 96), 4.0, dtype=torch.float16)  # sums of 96 * 96 products of 16 exceed 65504
    with torch.autocast("cpu", dtype=torch.float16):
        g = gram_matrix(f)
    assert g.dtype == torch.float32 and torch.equal(g, torch.full((1, 4, 4), 4.0))
    loss = PerceptualLoss(ConvFeatures(), {}, normalize_input=False, style_weights={"f": 1.0})
    x = torch.ones(1, 3, 96, 96, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.float16):
        style = loss.terms(x, torch.full((1, 3, 96, 96), 0.5))["style"]
    assert torch.isfinite(style) and style.item() == pytest.approx(4 - 1)
    style.backward()
    assert torch.isfinite(x.grad).all()


# -- 5, 9, 10: process group, batch norm, determinism ---------------------------------------------------


def test_the_process_group_timeout_is_a_validated_setting(monkeypatch):
    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: seen.update(backend=backend, **kw))
    ctx = init_distributed(torch.device("cpu"), timeout_minutes=90)
    assert (ctx.rank, ctx.world_size) == (1, 2)
    assert seen == {"backend": "gloo", "timeout": timedelta(minutes=90)}
    assert validate_config({}).distributed.timeout_minutes == 60  # NCCL's default is 10
    with pytest.raises(ConfigError, match="distributed/timeout_minutes"):
        validate_config({"distributed": {"timeout_minutes": 0}})


class Stop(Exception):
    pass


def test_a_run_takes_its_timeout_from_the_config_and_its_cuda_settings_from_the_options(monkeypatch):
    from torch_sr.training import run
    from torch_sr.training.session import TrainOptions

    seen = {}

    def fake_init(device, timeout_minutes):
        seen["timeout"] = timeout_minutes
        return DistributedContext(torch.device("cuda", 0))

    def fake_configure(deterministic):
        seen["deterministic"] = deterministic
        raise Stop

    monkeypatch.setattr(run, "init_distributed", fake_init)
    monkeypatch.setattr(run, "configure_cuda", fake_configure)
    cfg = validate_config(tiny_config(Path("train"), Path("val"), distributed={"timeout_minutes": 25}))
    with pytest.raises(Stop):
        run.train(cfg, TrainOptions(device=torch.device("cuda", 0), deterministic=True))
    assert seen == {"timeout": 25, "deterministic": True}


def test_sync_batch_norm_converts_the_batch_norms_of_a_ddp_network(monkeypatch):
    monkeypatch.setattr(distributed, "DistributedDataParallel", lambda model, device_ids=None: (model, device_ids))

    def net():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))

    cuda_rank1 = DistributedContext(torch.device("cuda", 1), rank=1, world_size=2, local_rank=1)
    plain = net()
    params = list(plain.parameters())
    model, ids = wrap_model(plain, cuda_rank1, sync_batch_norm=True)
    assert isinstance(model[1], nn.SyncBatchNorm) and ids == [1]
    assert all(a is b for a, b in zip(model.parameters(), params))  # optimisers built before still train it
    assert type(wrap_model(net(), cuda_rank1)[0][1]) is nn.BatchNorm2d  # the default: per process
    cpu_rank1 = DistributedContext(torch.device("cpu"), rank=1, world_size=2, local_rank=1)
    with pytest.warns(UserWarning, match="sync_batch_norm needs CUDA"):
        model, ids = wrap_model(net(), cpu_rank1, sync_batch_norm=True)
    assert type(model[1]) is nn.BatchNorm2d and ids is None


def test_deterministic_cuda_settings(monkeypatch):
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    flags = ((cudnn, "benchmark"), (cudnn, "deterministic"), (cudnn, "allow_tf32"), (matmul, "allow_tf32"))
    # Saved and restored by hand: `matmul.allow_tf32` lives in `__getattr__`, which pytest >= 9.2's
    # monkeypatch takes for a missing attribute and deletes on undo.
    saved = [(module, flag, getattr(module, flag)) for module, flag in flags]
    try:
        _check_deterministic_cuda_settings(monkeypatch, cudnn, matmul)
    finally:
        for module, flag, value in saved:
            setattr(module, flag, value)


def _check_deterministic_cuda_settings(monkeypatch, cudnn, matmul):
    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, warn_only: calls.append((mode, warn_only)))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    configure_cuda(deterministic=False)
    assert cudnn.benchmark and calls == [] and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    configure_cuda(deterministic=True)
    assert not cudnn.benchmark and cudnn.deterministic and not cudnn.allow_tf32 and not matmul.allow_tf32
    assert calls == [(True, True)] and os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_DETERMINISTIC_WORKSPACE
    from torch_sr.cli.train import build_parser

    assert build_parser().parse_args(["c.json", "--deterministic"]).deterministic
    assert not build_parser().parse_args(["c.json"]).deterministic


# -- 6: validation losses in bounded tiles ---------------------------------------------------------------


def test_validation_losses_are_computed_in_bounded_tiles():
    shapes = []
    l1 = build_content_loss("l1")

    def image_terms(sr, hr):
        shapes.append(tuple(sr.shape[-2:]))
        return {"content": l1(sr, hr), "tv": total_variation(sr)}

    objective = SimpleNamespace(scale=4, image_terms=image_terms)
    gen = torch.Generator().manual_seed(0)
    sr, hr = torch.rand(1, 3, 200, 264, generator=gen), torch.rand(1, 3, 200, 264, generator=gen)
    whole = tiled_image_terms(objective, sr, hr, None, torch.device("cpu"))
    assert shapes == [(200, 264)]
    shapes.clear()
    tiled = tiled_image_terms(objective, sr, hr, 64, torch.device("cpu"))
    assert len(shapes) > 1 and max(max(s) for s in shapes) <= 64
    assert all(h % 4 == 0 and w % 4 == 0 for h, w in shapes)  # cut on the scale's pixel grid
    assert tiled["content"] == pytest.approx(whole["content"], rel=1e-6)  # a mean per pixel: exact
    assert tiled["tv"] == pytest.approx(whole["tv"], rel=0.05)  # only the tile borders' differences are lost


def test_validation_takes_its_loss_tile_from_the_config(monkeypatch, tmp_path):
    from trainer_fixtures import make_images, write_config

    from torch_sr.cli.train import main
    from torch_sr.training import validation

    seen = []
    real = validation.tiled_image_terms
    def recording(objective, sr, hr, tile, device):
        seen.append(tile)
        return real(objective, sr, hr, tile, device)

    monkeypatch.setattr(validation, "tiled_image_terms", recording)
    monkeypatch.chdir(tmp_path)
    train, val = make_images(tmp_path / "train", 2, (32, 32)), make_images(tmp_path / "val", 1, (32, 32), seed=1)
    stage = {"num_iterations": 1, "val_interval": 1}
    cfg = tiny_config(train, val, pretraining=stage, training={"enabled": False}, val_loss_tile=96)
    assert main([str(write_config(tmp_path / "c.json", cfg)), "--device", "cpu"]) == 0
    assert seen == [96]


# -- 7: automatic tile size from the memory of two probes ------------------------------------------------


def test_cuda_tile_memory_is_the_slope_of_two_probes():
    fixed, per_pixel = 600e6, 1000.0  # a cuDNN workspace and handles, then the activations
    peak = lambda side: fixed + per_pixel * side**2  # noqa: E731
    assert tiling.measured_bytes_per_pixel(peak, [64, 128]) == pytest.approx(tiling.MEASURED_SAFETY * per_pixel)
    # the fixed part would have counted as 146 kB per pixel at the 64 x 64 probe: tiles 12x smaller a side
    assert peak(64) / 64**2 > 100 * per_pixel
    # a fixed part that shrank (noise): the larger probe's whole peak per pixel instead
    shrank = {64: 3e6, 128: 2e6}
    expected = tiling.MEASURED_SAFETY * 2e6 / 128**2
    assert tiling.measured_bytes_per_pixel(shrank.get, [64, 128]) == pytest.approx(expected)


def test_the_cuda_probe_runs_at_two_sizes_in_the_tiles_precision(monkeypatch):
    probes = []

    def fake_peak(model, in_channels, device, dtype, side):
        probes.append((side, dtype))
        return 5e8 + (500 if dtype is not None else 1000) * side**2

    monkeypatch.setattr(tiling, "_cuda_peak", fake_peak)
    cuda = torch.device("cuda", 0)
    fp32 = tiling.activation_bytes_per_pixel(nn.Identity(), 3, cuda, align=1)
    fp16 = tiling.activation_bytes_per_pixel(nn.Identity(), 3, cuda, align=24, dtype=torch.float16)
    assert probes == [(64, None), (128, None), (72, torch.float16), (144, torch.float16)]
    assert fp32 == pytest.approx(tiling.MEASURED_SAFETY * 1000) and fp16 == pytest.approx(fp32 / 2)


def test_half_precision_tiles_are_budgeted_at_half_the_memory():
    model = RRDBNet(4, 3, 16, 8, 1)
    fp32 = Upscaler(model, "cpu")._per_pixel()
    bf16 = Upscaler(model, "cpu", precision="bf16", force_autocast=True)._per_pixel()
    assert bf16 == pytest.approx(fp32 / 2, rel=0.05)


# -- 8: out of memory ------------------------------------------------------------------------------------


class FailsOnce(nn.Module):
    """Nearest x2 upscaling that raises `error(message)` at its first call on a whole 150 x 140 image
    (not the memory probe's), keeping a weak reference to that input."""

    def __init__(self, error: type, message: str):
        super().__init__()
        self.info = GeneratorInfo(scale=2, in_channels=3, out_channels=3)
        self.error, self.message, self.failed_tile = error, message, None

    def forward(self, x):
        if self.failed_tile is None and x.shape[-1] == 140:
            self.failed_tile = weakref.ref(x)
            raise self.error(self.message)
        return F.interpolate(x, scale_factor=2, mode="nearest")


@pytest.mark.parametrize(
    "error, message",
    [
        (torch.OutOfMemoryError, "CUDA out of memory. Tried to allocate 2.00 GiB"),
        (RuntimeError, "cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        (RuntimeError, "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    ],
)
def test_out_of_memory_is_retried_with_smaller_tiles_after_the_failed_tile_is_freed(monkeypatch, error, message):
    model = FailsOnce(error, message)
    released = []
    release = tiling.release_memory

    def recording_release(device):
        release(device)
        released.append((sys.exc_info()[1], model.failed_tile()))

    monkeypatch.setattr(tiling, "release_memory", recording_release)
    x = torch.rand(1, 3, 150, 140, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="retrying with tile 75"):
        out = Upscaler(model, "cpu").upscale_tensor(x)
    assert released == [(None, None)]  # no exception being handled, and the tile that failed is gone
    torch.testing.assert_close(out, F.interpolate(x, scale_factor=2, mode="nearest"))


class OutOfMemoryAbove(nn.Module):
    """Nearest x2 upscaling that runs out of memory whenever a call holds more than `limit` pixels."""

    def __init__(self, limit: int):
        super().__init__()
        self.info, self.limit = GeneratorInfo(scale=2, in_channels=3, out_channels=3), limit

    def forward(self, x):
        if x.shape[0] * x.shape[-2] * x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return F.interpolate(x, scale_factor=2, mode="nearest")


def test_after_running_out_of_memory_tiles_go_one_per_call():
    """The memory estimate that batched tiles was wrong: the retry must not put the pixels back in one call."""
    x = torch.rand(1, 3, 128, 128)
    model = OutOfMemoryAbove(5000)  # 128 x 128 pixels fail, and so would one call with both 64 x 64 tiles of a row
    with pytest.warns(UserWarning, match="retrying with tile 64"):
        out = Upscaler(model, "cpu", tile_overlap=0).upscale_tensor(x)
    torch.testing.assert_close(out, F.interpolate(x, scale_factor=2, mode="nearest"))


def test_other_runtime_errors_are_not_retried():
    model = FailsOnce(RuntimeError, "CUDA error: an illegal memory access was encountered")
    with pytest.raises(RuntimeError, match="CUDA error: an illegal memory access"):
        Upscaler(model, "cpu").upscale_tensor(torch.rand(1, 3, 150, 140))
