"""Dataset catalogue: layouts, splits, and the real download path against a local HTTP server."""
import dataclasses
import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from torch_sr.data import catalogue
from torch_sr.data.catalogue import ARCHIVES, default_data_root, resolve_images
from torch_sr.errors import DatasetError


def png_bytes(seed: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_images(folder: Path, count: int, ext: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        p = folder / f"{k:04d}{ext}"
        Image.open(io.BytesIO(png_bytes(k))).save(p)
        paths.append(p)
    return paths


def make_tar(path: Path, members: dict[str, int], extra: dict[str, bytes] | None = None, mode: str = "w") -> Path:
    """A tar holding `count` PNGs in each folder of `members`, plus `extra` files."""
    with tarfile.open(path, mode) as tf:
        for folder, count in members.items():
            for k in range(count):
                data = png_bytes(k)
                info = tarfile.TarInfo(f"{folder}/img{k:03d}.png")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def make_zip(path: Path, folder: str, count: int) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for k in range(count):
            zf.writestr(f"{folder}/{801 + k:04d}.png", png_bytes(k))
    return path


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class ShortHandler(QuietHandler):
    """Promises more bytes than it sends, like a dropped connection."""

    def do_GET(self):
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data) + 1000))
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (www folder, base URL, handler switch)."""
    www = tmp_path / "www"
    www.mkdir()
    state = {"handler": QuietHandler}

    class Dispatch(QuietHandler):
        def __init__(self, *args, **kwargs):
            state["handler"].__init__(self, *args, **kwargs)

        def do_GET(self):
            state["handler"].do_GET(self)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Dispatch, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def point_to(monkeypatch, key: str, url: str, **changes) -> None:
    monkeypatch.setitem(ARCHIVES, key, dataclasses.replace(ARCHIVES[key], url=url, **changes))


def leftovers(root: Path) -> list[str]:
    """Temporary files or folders a failed fetch might leave behind."""
    return [str(p) for p in root.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".part")]


BENCHMARK = {"benchmark/Set5/HR": 5, "benchmark/Set14/HR": 14}


def test_download_verify_extract_tar(server, tmp_path, monkeypatch):
    www, base, _ = server
    archive = make_tar(www / "benchmark.tar", BENCHMARK, {"benchmark/Set5/LR_bicubic/X4/img000x4.png": png_bytes(1)})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    point_to(monkeypatch, "benchmark.tar", f"{base}/benchmark.tar", sha256=digest, size=archive.stat().st_size)
    root = tmp_path / "data"
    set5 = resolve_images("set5", "test", root)
    assert [p.parent for p in set5] == [root / "benchmark/Set5/HR"] * 5
    assert len(resolve_images("set14", "val", root, download=False)) == 14  # same archive, no second download
    assert not (root / "downloads" / "benchmark.tar").exists()  # our own download is removed once extracted
    assert not (root / "benchmark/Set5/LR_bicubic").exists()  # only the image folders we use are kept
    assert leftovers(root) == []


def test_download_zip_div2k_valid_serves_val_and_test(server, tmp_path, monkeypatch):
    www, base, _ = server
    make_zip(www / "DIV2K_valid_HR.zip", "DIV2K_valid_HR", 100)
    point_to(monkeypatch, "DIV2K_valid_HR.zip", f"{base}/DIV2K_valid_HR.zip")
    root = tmp_path / "data"
    val = resolve_images("div2k", "val", root)
    assert len(val) == 100 and val[0].name == "0801.png" and val[0].parent == root / "DIV2K/DIV2K_valid_HR"
    assert resolve_images("div2k", "test", root) == val


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_broken_archive_leaves_nothing(server, tmp_path, monkeypatch, kind):
    www, base, _ = server
    good = make_tar(tmp_path / "good.tar.gz", BENCHMARK, mode="w:gz").read_bytes()
    data = good[: len(good) // 2] if kind == "truncated" else b"this is not an archive" * 100
    (www / "benchmark.tar").write_bytes(data)
    point_to(monkeypatch, "benchmark.tar", f"{base}/benchmark.tar")
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="not a complete benchmark.tar archive"):
        resolve_images("set5", "test", root)
    assert not (root / "benchmark").exists()
    assert not (root / "downloads" / "benchmark.tar").exists()  # a broken download is not kept
    assert leftovers(root) == []


def test_checksum_mismatch_keeps_nothing(server, tmp_path, monkeypatch):
    www, base, _ = server
    make_tar(www / "benchmark.tar", BENCHMARK)
    point_to(monkeypatch, "benchmark.tar", f"{base}/benchmark.tar", sha256="0" * 64)
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="sha256") as err:
        resolve_images("set5", "test", root)
    assert "benchmark.tar" in str(err.value) and str(root / "downloads") in str(err.value)
    assert not any((root / "downloads").glob("*"))
    assert not (root / "benchmark").exists()
    assert leftovers(root) == []


def test_short_download_is_discarded(server, tmp_path, monkeypatch):
    www, base, state = server
    make_tar(www / "benchmark.tar", BENCHMARK)
    state["handler"] = ShortHandler
    point_to(monkeypatch, "benchmark.tar", f"{base}/benchmark.tar")
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="could not be fetched"):
        resolve_images("set5", "test", root)
    assert not (root / "benchmark").exists()
    assert leftovers(root) == [] and not (root / "downloads" / "benchmark.tar").exists()


def test_wrong_image_count_in_archive_is_rejected(server, tmp_path, monkeypatch):
    www, base, _ = server
    make_tar(www / "benchmark.tar", {"benchmark/Set5/HR": 4, "benchmark/Set14/HR": 14})
    point_to(monkeypatch, "benchmark.tar", f"{base}/benchmark.tar")
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="expected 5 images"):
        resolve_images("set5", "test", root)
    assert not (root / "benchmark").exists() and leftovers(root) == []


def test_offline_message_says_which_file_goes_where(server, tmp_path, monkeypatch):
    _, base, _ = server
    point_to(monkeypatch, "BSR_bsds500.tgz", f"{base}/missing/BSR_bsds500.tgz")  # 404
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as err:
        resolve_images("bsds500", "val", root)
    msg = str(err.value)
    assert "BSR_bsds500.tgz" in msg and str(root / "downloads") in msg
    assert str(root / "BSR/BSDS500/data/images/val") in msg and "100 images" in msg
    with pytest.raises(DatasetError, match="downloading is disabled"):
        resolve_images("div2k", "train", root, download=False)
    assert not root.exists() or leftovers(root) == []


def test_archive_placed_by_hand_is_used_and_kept(tmp_path, monkeypatch):
    point_to(monkeypatch, "benchmark.tar", "http://127.0.0.1:9/unreachable/benchmark.tar")
    root = tmp_path / "data"
    (root / "downloads").mkdir(parents=True)
    placed = make_tar(root / "downloads" / "benchmark.tar", BENCHMARK)
    assert len(resolve_images("set14", "test", root)) == 14
    assert placed.exists()  # the user's file is never deleted


def test_bsds500_splits_from_tarball(server, tmp_path, monkeypatch):
    www, base, _ = server
    members = {f"BSR/BSDS500/data/images/{s}": n for s, n in (("train", 200), ("val", 100), ("test", 200))}
    make_tar(www / "BSR_bsds500.tgz", members, {"BSR/BSDS500/data/images/train/Thumbs.db": b"x"}, mode="w:gz")
    point_to(monkeypatch, "BSR_bsds500.tgz", f"{base}/BSR_bsds500.tgz")
    root = tmp_path / "data"
    counts = {s: len(resolve_images("bsds500", s, root)) for s in ("train", "val", "test")}
    assert counts == {"train": 200, "val": 100, "test": 200}


@pytest.mark.parametrize("layout", ["Set5", "Set5/HR", "benchmark/Set5", "benchmark/Set5/HR"])
def test_standard_layouts_recognised(tmp_path, layout):
    made = make_images(tmp_path / layout, 5)
    assert resolve_images("set5", "test", tmp_path, download=False) == made


def test_div2k_layouts_and_incomplete_folder(tmp_path):
    make_images(tmp_path / "DIV2K_train_HR", 800)
    assert len(resolve_images("div2k", "train", tmp_path, download=False)) == 800
    make_images(tmp_path / "DIV2K/DIV2K_valid_HR", 99)
    with pytest.raises(DatasetError, match="holds 99 images, expected 100"):
        resolve_images("div2k", "val", tmp_path, download=False)


def test_folder_specs(tmp_path):
    flat = make_images(tmp_path / "flat", 3, ".jpg")
    assert resolve_images(str(tmp_path / "flat")) == flat
    split = make_images(tmp_path / "mine" / "val", 2)
    make_images(tmp_path / "mine" / "train", 4)
    assert resolve_images(str(tmp_path / "mine"), "val") == split
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        resolve_images(str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        resolve_images("nope")
    with pytest.raises(DatasetError, match="unknown split"):
        resolve_images("set5", "training")


def test_data_root_env_and_cache_default(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_SR_DATA", str(tmp_path / "env_root"))
    assert default_data_root() == tmp_path / "env_root"
    make_images(tmp_path / "env_root" / "Set14", 14)
    assert len(resolve_images("set14", "test")) == 14
    monkeypatch.delenv("TORCH_SR_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_root() == tmp_path / "cache" / "torch_sr" / "datasets"


def test_shared_benchmarks_found(shared_data):
    assert [p.name for p in resolve_images("set5", "test", shared_data, download=False)] == [
        "baby.png",
        "bird.png",
        "butterfly.png",
        "head.png",
        "woman.png",
    ]
    assert len(resolve_images("set14", "test", shared_data, download=False)) == 14
    assert len(resolve_images("bsds500", "train", shared_data, download=False)) == 200  # train/BSDS200


def test_catalogue_tables_are_consistent():
    for name, splits in catalogue.DATASETS.items():
        for split, source in splits.items():
            archive = ARCHIVES[source.archive]
            provided = {dest: count for dest, count in archive.folders.values()}
            assert provided.get(source.folders[0]) == source.count, (name, split)  # download makes folder 0


def test_concurrent_extraction_by_another_process_is_tolerated(tmp_path, monkeypatch):
    """Two DDP ranks may fetch at once: the second rename finds the folder done and accepts it."""
    from torch_sr.data import download

    root = tmp_path / "data"
    archive = make_tar(tmp_path / "benchmark.tar", BENCHMARK)
    original = download._extract_all

    def extract_while_other_rank_finishes(path, into):
        original(path, into)
        for folder, count in BENCHMARK.items():
            make_images(root / folder, count)

    monkeypatch.setattr(download, "_extract_all", extract_while_other_rank_finishes)
    download.extract(ARCHIVES["benchmark.tar"], archive, root)
    assert len(resolve_images("set5", "test", root, download=False)) == 5
    assert leftovers(root) == []


@pytest.mark.parametrize("where", ["extracting", "making the folder"])
def test_a_full_or_read_only_data_root_keeps_the_downloaded_archive(server, tmp_path, monkeypatch, where):
    """The archive is fine, the disk is not: say so, keep the file, and extract it on the next run."""
    import errno

    from torch_sr.data import download

    www, base, _ = server
    make_tar(www / "benchmark.tar", BENCHMARK)
    point_to(monkeypatch, "benchmark.tar", f"{base}/benchmark.tar")
    root = tmp_path / "data"
    failure = OSError(errno.ENOSPC if where == "extracting" else errno.EROFS, "No room")
    target = "_extract_all" if where == "extracting" else "tempfile.mkdtemp"

    def fail(*args, **kwargs):
        raise failure

    with monkeypatch.context() as patch:
        patch.setattr(download if "." not in target else download.tempfile, target.split(".")[-1], fail)
        with pytest.raises(DatasetError) as err:
            resolve_images("set5", "test", root)
    message = str(err.value)
    assert f"cannot extract {root / 'downloads' / 'benchmark.tar'} into {root} (No room); the archive is kept" in message
    assert "could not be fetched" not in message and (root / "downloads" / "benchmark.tar").is_file()
    point_to(monkeypatch, "benchmark.tar", f"{base}/gone/benchmark.tar")  # no second download: it is extracted
    assert len(resolve_images("set5", "test", root)) == 5
