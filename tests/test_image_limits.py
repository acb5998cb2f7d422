"""Hostile images, archives and downloads: bounded cost, one line naming the input, no silent wrong output."""
import http.server
import struct
import threading
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from torch_sr import pixel_limit
from torch_sr.archs.srvgg import SRVGGNetCompact
from torch_sr.model_files.model_file import load_model, save_model
from torch_sr.cli import inference
from torch_sr.cli import test as test_cli
from torch_sr.cli.common import EXIT_ERROR, EXIT_PARTIAL
from torch_sr.data import download
from torch_sr.data.image_files import image_info
from torch_sr.errors import CheckpointError, DatasetError
from torch_sr.inference.image_io import ImageFileError, read_image, write_image
from torch_sr.inference.upscaler import NonFiniteOutputError, Upscaler


@pytest.fixture(autouse=True)
def restore_pixel_limit():
    before = pixel_limit.max_pixels(), Image.MAX_IMAGE_PIXELS
    yield
    pixel_limit._limit, Image.MAX_IMAGE_PIXELS = before


def png_header_only(path: Path, width: int, height: int, colour_type: int = 0) -> Path:
    """A PNG declaring `width` x `height` 8-bit pixels with a few bytes of image data: tiny on disk."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = zlib.compress(bytes(1000))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def png16_bomb(path: Path, inflated: int) -> Path:
    """A 16x16 16-bit RGB PNG whose image data inflates to `inflated` bytes (it should be 16 * 97)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate = zlib.compressobj(1)
    block = bytes(1 << 20)
    idat = b"".join(deflate.compress(block) for _ in range(inflated >> 20)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", 16, 16, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_16bit_png_is_not_inflated_beyond_its_declared_size(tmp_path):
    path = png16_bomb(tmp_path / "bomb16.png", 64 << 20)
    assert path.stat().st_size < 400_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageFileError, match=r"bomb16\.png: not a readable image \(PNG image data inflates to "
                                                 r"more than 1,552 bytes, but its header declares 1,552\)"):
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * path.stat().st_size + (1 << 20), f"peak {peak:,} bytes"


def test_images_over_the_pixel_limit_are_refused_from_their_header(tmp_path):
    big = png_header_only(tmp_path / "big.png", 13000, 13000)  # the 13000x13000 (169 MP) image
    start = time.perf_counter()
    with pytest.raises(ImageFileError, match=r"big\.png: 13000x13000 is 169,000,000 pixels, more than the limit of "
                                             r"50,000,000; if the image is genuine, raise the limit with --max-pixels "
                                             r"169000000"):
        read_image(big)
    with pytest.raises(DatasetError, match=r"big\.png: 13000x13000 is 169,000,000 pixels"):
        image_info(big)
    assert time.perf_counter() - start < 2
    # beyond twice Pillow's limit, Pillow's own bomb check speaks first: the same kind of message
    huge = png_header_only(tmp_path / "huge.png", 30000, 30000)
    with pytest.raises(ImageFileError, match=r"huge\.png: declares far more than the limit of 50,000,000 pixels"):
        read_image(huge)
    with pytest.raises(DatasetError, match=r"huge\.png: declares far more than the limit"):
        image_info(huge)
    # the limit can be raised: then the (truncated) data is read and fails as what it is
    pixel_limit.set_max_pixels(200_000_000)
    with pytest.raises(ImageFileError, match=r"big\.png: not a readable image"):
        read_image(big)
    pixel_limit.set_max_pixels(99)
    write_image(tmp_path / "ten.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ImageFileError, match="10x10 is 100 pixels, more than the limit of 99"):
        read_image(tmp_path / "ten.png")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    model = SRVGGNetCompact(scale_factor=2, num_feat=4, num_conv=1)
    return save_model(model, tmp_path_factory.mktemp("model") / "tiny.pth")


def test_inference_and_test_cli_refuse_big_images_with_one_line(tmp_path, tiny_model, capsys):
    png_header_only(tmp_path / "big.png", 13000, 13000)
    assert inference.main(["-m", str(tiny_model), str(tmp_path / "big.png")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'big.png'}: 13000x13000 is 169,000,000 pixels" in err and "Traceback" not in err
    # with the limit raised it gets past the check (and fails on its truncated data)
    assert inference.main(["-m", str(tiny_model), "--max-pixels", "200000000", str(tmp_path / "big.png")]) == 2
    assert "big.png: not a readable image" in capsys.readouterr().err
    folder = tmp_path / "hr"
    folder.mkdir()
    png_header_only(folder / "bomb.png", 30000, 30000, colour_type=2)
    assert test_cli.main([str(tiny_model), "-d", str(folder)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "bomb.png: declares far more than the limit" in err and "Traceback" not in err


def test_train_refuses_a_bomb_in_its_data_with_one_line(tmp_path, capsys, monkeypatch):
    from trainer_fixtures import make_images, tiny_config, write_config

    from torch_sr.cli.train import main

    monkeypatch.chdir(tmp_path)
    train = make_images(tmp_path / "train", 2, (32, 32))
    png_header_only(train / "zz_bomb.png", 13000, 13000, colour_type=2)
    cfg = tiny_config(train, train, training={"enabled": False})
    assert main([str(write_config(tmp_path / "c.json", cfg)), "--device", "cpu"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "zz_bomb.png: 13000x13000 is 169,000,000 pixels" in err and "Traceback" not in err


def test_train_max_pixels_sets_the_limit_for_its_data(tmp_path, capsys, monkeypatch):
    from trainer_fixtures import make_images, tiny_config, write_config

    from torch_sr.cli.train import main

    monkeypatch.chdir(tmp_path)
    train = make_images(tmp_path / "train", 2, (32, 32))
    path = write_config(tmp_path / "c.json", tiny_config(train, train, training={"enabled": False}))
    flags = ["--device", "cpu", "--stop-after", "1"]
    assert main([str(path), *flags, "--max-pixels", "1000"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "img00.png: 32x32 is 1,024 pixels, more than the limit of 1,000" in err and "--max-pixels 1024" in err
    assert main([str(path), *flags, "--max-pixels", "1024"]) == 0


class _LimitSeen(torch.utils.data.Dataset):
    """What pixel limit a loader worker runs under."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return pixel_limit.max_pixels()


def test_training_loader_workers_started_by_spawn_keep_the_raised_limit():
    """Spawned workers (macOS, Windows; forkserver on Python 3.14) start at the default limit."""
    from torch_sr.training.data import build_train_loader

    pixel_limit.set_max_pixels(80_000_000)
    built = build_train_loader(_LimitSeen(), 2, 0, 1, num_workers=1)
    loader = torch.utils.data.DataLoader(
        _LimitSeen(), batch_size=2, num_workers=1, multiprocessing_context="spawn", worker_init_fn=built.worker_init_fn
    )
    assert next(iter(loader)).tolist() == [80_000_000, 80_000_000]


def test_a_symlink_loop_input_is_reported_and_the_others_still_run(tmp_path, tiny_model, capsys):
    write_image(tmp_path / "good.png", np.full((8, 8, 3), 128, np.uint8))
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    assert inference.main(["-m", str(tiny_model), str(loop), str(tmp_path / "good.png")]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert f"error: {loop}: not a readable image" in err and "symbolic links" in err
    assert (tmp_path / "good_sr.png").is_file()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images_are_refused_before_any_work(tmp_path, tiny_model, capsys, fmt):
    frames = [Image.new("RGB", (8, 8), (40 * k, 0, 0)) for k in range(3)]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert inference.main(["-m", str(tiny_model), str(path)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"error: {path}: an animated image (3 frames); upscale it as a video" in err
    assert not list(tmp_path.glob("anim_sr*"))


def test_non_finite_weights_and_output_fail_the_input(tmp_path, capsys):
    model = SRVGGNetCompact(scale_factor=2, num_feat=4, num_conv=1)
    with torch.no_grad():
        model.body[0].weight[0, 0, 0, 0] = float("nan")
    torch.save(model.state_dict(), tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match=r"nan\.pth: tensor 'body\.0\.weight' holds NaN or inf"):
        load_model(tmp_path / "nan.pth")
    # finite weights whose output overflows float32
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1e30)
    path = save_model(model, tmp_path / "overflow.pth")
    with pytest.raises(NonFiniteOutputError):
        Upscaler(load_model(path)).upscale_array(np.full((8, 8, 3), 100, np.uint8))
    write_image(tmp_path / "in.png", np.full((8, 8, 3), 100, np.uint8))
    assert inference.main(["-m", str(path), str(tmp_path / "in.png")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'in.png'}: the model's output is not finite (NaN or inf)" in err
    assert not (tmp_path / "in_sr.png").exists()


def test_rgba_hard_edged_shape_gets_no_ghost_outline():
    """An opaque disc on a transparent background, upscaled x4 by the shipped model: the alpha is exactly
    0 wherever bicubic alpha is 0 (no ghost outline) and 255 wherever bicubic is 1 (no dip inside)."""
    yy, xx = np.mgrid[:40, :40]
    inside = (yy - 19.5) ** 2 + (xx - 19.5) ** 2 < 12**2
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[inside] = (200, 40, 30, 255)
    out = Upscaler(load_model("default_x4")).upscale_array(rgba)
    alpha_lr = torch.from_numpy(rgba[:, :, 3] / 255.0).float()[None, None]
    bicubic = F.interpolate(alpha_lr, scale_factor=4, mode="bicubic", align_corners=False)[0, 0].numpy()
    alpha = out[:, :, 3]
    assert alpha[bicubic <= 1e-3].max() == 0
    assert alpha[bicubic >= 1 - 1e-3].min() == 255
    edge = (bicubic > 0.1) & (bicubic < 0.9)  # the model still shapes the edge itself
    assert 0 < alpha[edge].mean() < 255


# ---- dataset archives ----


def test_an_archive_inflating_far_beyond_its_size_is_refused_before_extraction(tmp_path):
    archive = download.Archive("bomb.zip", "http://127.0.0.1/bomb.zip", {"imgs": ("imgs", 2)})
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("imgs/a.png", "w", force_zip64=True) as f:
            for _ in range(80):
                f.write(bytes(1 << 20))
    assert path.stat().st_size < 500_000
    with pytest.raises(DatasetError, match=r"bomb\.zip: refused: its 1 members would inflate to 83,886,080 bytes"):
        download.extract(archive, path, tmp_path / "root")
    assert not list((tmp_path / "root").iterdir())


def test_an_archive_of_image_bombs_is_refused(tmp_path):
    archive = download.Archive("bombs.zip", "http://127.0.0.1/bombs.zip", {"imgs": ("imgs", 2)})
    png_header_only(tmp_path / "ok.png", 8, 8, colour_type=2)
    png_header_only(tmp_path / "bomb.png", 13000, 13000, colour_type=2)
    path = tmp_path / "bombs.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(tmp_path / "ok.png", "imgs/a.png")
        zf.write(tmp_path / "bomb.png", "imgs/b.png")
    with pytest.raises(DatasetError, match=r"bombs\.zip: imgs/b\.png inside the archive: 13000x13000 is 169,000,000"):
        download.extract(archive, path, tmp_path / "root")
    assert not list((tmp_path / "root").iterdir())


# ---- downloads ----


class Trickle(http.server.BaseHTTPRequestHandler):
    """Promises 10 MB and sends `chunk` bytes every `every` seconds."""

    chunk, every = 1, 0.05

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(10 << 20))
        self.end_headers()
        try:
            for _ in range(10_000):
                self.wfile.write(bytes(self.chunk))
                self.wfile.flush()
                time.sleep(self.every)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def trickle_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/slow.zip"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    "pace,chunk,match",
    [
        (download.Pace(read_timeout=5, min_rate=1000, window=0.5), 1, r"too slow: \d+ bytes/s over the last"),
        (download.Pace(read_timeout=5, deadline=0.7, min_rate=1, window=0.2), 4096, r"took longer than 0\.7 s"),
    ],
    ids=["minimum-rate", "deadline"],
)
def test_slow_downloads_are_abandoned_and_leave_nothing(trickle_server, tmp_path, monkeypatch, pace, chunk, match):
    monkeypatch.setattr(Trickle, "chunk", chunk)
    archive = download.Archive("slow.zip", trickle_server, {"imgs": ("imgs", 1)})
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=match):
        download.download(archive, tmp_path / "downloads" / "slow.zip", pace=pace)
    assert time.perf_counter() - start < 5
    assert list((tmp_path / "downloads").iterdir()) == []  # no temporary file, no partial archive
