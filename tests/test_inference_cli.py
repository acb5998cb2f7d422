"""inference.py: inputs, outputs, options, failures that do not stop the run, the default model."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reference_archs import randomize_
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.model_files.model_file import save_model
from torch_sr.cli import inference as cli
from torch_sr.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from torch_sr.errors import TorchSRError
from torch_sr.inference.image_io import read_image, write_image
from torch_sr import weights
from fake_terminal import FakeTerminal

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A tiny random x2 RRDBNet, its output rescaled to mid-grey +- 0.15 so that little is clamped."""
    model = randomize_(RRDBNet(2, 3, 8, 4, 2), std=0.1).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(5)))
        k = 0.15 / y.std()
        model.conv_last.weight.mul_(k)
        model.conv_last.bias.mul_(k).add_(0.5 - k * y.mean())
    return save_model(model, tmp_path_factory.mktemp("models") / "tiny_x2.pth")


def image(h=12, w=10, channels=3, dtype=np.uint8, seed=0) -> np.ndarray:
    shape = (h, w) if channels == 1 else (h, w, channels)
    return (np.random.default_rng(seed).random(shape) * np.iinfo(dtype).max).astype(dtype)


def run(args) -> int:
    return cli.main([str(a) for a in args])


def test_outputs_go_next_to_inputs_with_sr_suffix_and_same_format(tmp_path, model_path, capsys):
    write_image(tmp_path / "a.png", image())
    write_image(tmp_path / "b.jpg", image(16, 16))
    assert run(["-m", model_path, tmp_path / "a.png", tmp_path / "b.jpg"]) == EXIT_OK
    assert read_image(tmp_path / "a_sr.png").array.shape == (24, 20, 3)
    assert read_image(tmp_path / "b_sr.jpg").array.shape == (32, 32, 3)
    assert "a.png -> " in capsys.readouterr().out


def test_out_dir_folders_and_globs(tmp_path, model_path):
    photos = tmp_path / "photos"
    for name in ("x.png", "y.webp", "notes.txt"):
        (photos / "sub").mkdir(parents=True, exist_ok=True)
        if name.endswith(".txt"):
            (photos / name).write_text("not an image")
        else:
            write_image(photos / name, image())
    write_image(photos / "x_sr.png", image())  # an earlier output: skipped by folder scans
    write_image(photos / "sub" / "z.bmp", image())
    out = tmp_path / "out"
    assert run(["-m", model_path, "-o", out, photos]) == EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == ["x_sr.png", "y_sr.webp"]
    out2 = tmp_path / "out2"
    assert run(["-m", model_path, "-o", out2, f"{photos}/**/*.bmp", f"{photos}/x*.png"]) == EXIT_OK
    assert files_under(out2) == ["sub/z_sr.bmp", "x_sr.png"]  # a glob's finds keep their folders


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_folder_trees_keep_their_structure_under_out_dir(tmp_path, model_path):
    photos = tmp_path / "photos"
    for name in ("top.png", "a/x.png", "b/x.png", "b/deep/y.jpg"):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        write_image(photos / name, image())
    assert run(["-m", model_path, "-o", tmp_path / "flat", photos]) == EXIT_OK  # one level without -r
    assert files_under(tmp_path / "flat") == ["top_sr.png"]
    (photos / "b" / "loop").symlink_to(photos, target_is_directory=True)  # not entered: no endless walk
    assert run(["-m", model_path, "-o", tmp_path / "tree", "--recursive", photos]) == EXIT_OK
    assert files_under(tmp_path / "tree") == ["a/x_sr.png", "b/deep/y_sr.jpg", "b/x_sr.png", "top_sr.png"]
    (photos / "b" / "loop").unlink()
    # Same-named files of different folders found by one glob: no collision.
    assert run(["-m", model_path, "-o", tmp_path / "glob", f"{photos}/*/x.png"]) == EXIT_OK
    assert files_under(tmp_path / "glob") == ["a/x_sr.png", "b/x_sr.png"]
    # Without -o, each output goes next to its input, wherever it is.
    assert run(["-m", model_path, "-r", photos / "b"]) == EXIT_OK
    assert (photos / "b" / "x_sr.png").is_file() and (photos / "b" / "deep" / "y_sr.jpg").is_file()


def test_jpeg_and_webp_quality_and_chroma(tmp_path, model_path):
    from PIL import Image, JpegImagePlugin

    smooth = np.linspace(0, 255, 24 * 20 * 3).reshape(24, 20, 3).astype(np.uint8)
    write_image(tmp_path / "a.png", smooth)

    def jpeg(*options):
        name = "_".join(o.lstrip("-") for o in options) or "default"
        assert run(["-m", model_path, "--format", "jpg", "--suffix", f"_{name}", *options, tmp_path / "a.png"]) == 0
        return Image.open(tmp_path / f"a_{name}.jpg")

    def reference_tables(quality):  # what Pillow writes at that quality
        Image.fromarray(smooth).save(tmp_path / f"ref{quality}.jpg", quality=quality)
        return Image.open(tmp_path / f"ref{quality}.jpg").quantization

    default, low = jpeg(), jpeg("--quality", "40", "--chroma", "420")
    assert default.quantization == reference_tables(95) != reference_tables(40) == low.quantization
    assert JpegImagePlugin.get_sampling(default) == 0 and JpegImagePlugin.get_sampling(low) == 2  # 4:4:4, 4:2:0
    assert JpegImagePlugin.get_sampling(jpeg("--chroma", "444", "--quality", "40")) == 0
    sizes = {}
    for q in ("30", "95"):
        assert run(["-m", model_path, "--format", "webp", "--quality", q, "--suffix", q, tmp_path / "a.png"]) == 0
        sizes[q] = (tmp_path / f"a{q}.webp").stat().st_size
    assert sizes["30"] < 0.8 * sizes["95"]
    for bad in (["--quality", "0"], ["--quality", "101"], ["--chroma", "422"]):
        with pytest.raises(SystemExit):
            run(["-m", model_path, *bad, tmp_path / "a.png"])


def test_a_lossless_webp_stays_lossless_unless_a_quality_is_given(tmp_path, model_path):
    from PIL import Image

    from torch_sr.inference.image_io import _is_lossless_webp

    Image.fromarray(image()).save(tmp_path / "l.webp", lossless=True)
    Image.fromarray(image()).save(tmp_path / "q.webp", quality=80)
    Image.fromarray(image()).convert("RGBA").save(tmp_path / "qa.webp", quality=80)  # ALPH + VP8 chunks
    assert [_is_lossless_webp(tmp_path / f"{n}.webp") for n in ("l", "q", "qa")] == [True, False, False]
    assert run(["-m", model_path, tmp_path / "l.webp", tmp_path / "q.webp"]) == EXIT_OK
    assert _is_lossless_webp(tmp_path / "l_sr.webp") and not _is_lossless_webp(tmp_path / "q_sr.webp")
    out = read_image(tmp_path / "l_sr.webp").array
    assert run(["-m", model_path, "--format", "png", tmp_path / "l.webp"]) == EXIT_OK
    np.testing.assert_array_equal(out, read_image(tmp_path / "l_sr.png").array)  # exactly the model's pixels
    assert run(["-m", model_path, "--quality", "90", "--suffix", "_q", tmp_path / "l.webp"]) == EXIT_OK
    assert not _is_lossless_webp(tmp_path / "l_q.webp")


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp"])
def test_exif_is_carried_to_the_output_upright_and_with_its_new_size(tmp_path, model_path, fmt):
    """Camera, date and GPS survive the upscale; the orientation is spent on the pixels, the size is the new one."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0132] = 6, "Canon", "2026:12:03 08:00:00"  # orientation, make, date
    exif.get_ifd(0x8769).update({0xA002: 12, 0xA003: 10, 0x9003: "2026:12:03 08:00:00"})  # stored size, taken
    Image.fromarray(image(10, 12)).save(tmp_path / "cam.jpg", exif=exif, quality=95)
    assert run(["-m", model_path, "--format", fmt, tmp_path / "cam.jpg"]) == EXIT_OK
    with Image.open(tmp_path / f"cam_sr.{fmt}") as out:
        assert out.size == (20, 24)  # upright: stored 12 wide, turned to 10 wide, then x2
        got = out.getexif()
        assert (got.get(0x010F), got.get(0x0132), got.get(0x0112)) == ("Canon", "2026:12:03 08:00:00", None)
        ifd = got.get_ifd(0x8769)
        assert (ifd.get(0xA002), ifd.get(0xA003), ifd.get(0x9003)) == (20, 24, "2026:12:03 08:00:00")


def test_a_tiffs_own_tags_are_not_taken_for_exif(tmp_path, model_path):
    from PIL import Image

    Image.fromarray(image()).save(tmp_path / "t.tif")
    assert run(["-m", model_path, "--format", "jpg", tmp_path / "t.tif"]) == EXIT_OK
    with Image.open(tmp_path / "t_sr.jpg") as out:
        assert len(out.getexif()) == 0


def test_format_bit_depth_grey_and_alpha_are_kept(tmp_path, model_path):
    write_image(tmp_path / "deep.png", image(channels=3, dtype=np.uint16))
    write_image(tmp_path / "grey.png", image(channels=1))
    write_image(tmp_path / "rgba.png", image(channels=4))
    write_image(tmp_path / "photo.png", image())
    assert run(["-m", model_path, *(tmp_path / n for n in ("deep.png", "grey.png", "rgba.png"))]) == EXIT_OK
    deep = read_image(tmp_path / "deep_sr.png").array
    assert deep.dtype == np.uint16 and deep.shape == (24, 20, 3)
    assert read_image(tmp_path / "grey_sr.png").array.shape == (24, 20)
    assert read_image(tmp_path / "rgba_sr.png").array.shape == (24, 20, 4)
    assert run(["-m", model_path, "--format", "jpg", tmp_path / "photo.png"]) == EXIT_OK
    assert read_image(tmp_path / "photo_sr.jpg").array.shape == (24, 20, 3)


def test_a_bad_file_is_reported_and_the_others_are_done(tmp_path, model_path, capsys):
    write_image(tmp_path / "good.png", image())
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code = run(["-m", model_path, tmp_path / "broken.png", tmp_path / "good.png", tmp_path / "gone.png"])
    assert code == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "broken.png: not a readable image" in err and "gone.png: no such file" in err
    assert "1 upscaled, 2 failed" in err
    assert (tmp_path / "good_sr.png").is_file() and not (tmp_path / "broken_sr.png").exists()
    assert run(["-m", model_path, tmp_path / "broken.png"]) == EXIT_ERROR  # nothing succeeded


@pytest.mark.parametrize("suffix", ["/../b", "/x", "\\..\\b"])
def test_a_suffix_with_a_path_separator_is_refused_before_any_work(tmp_path, model_path, capsys, suffix):
    """`--suffix /../b` would write outside -o, over an unrelated b.png."""
    write_image(tmp_path / "a.png", image())
    write_image(tmp_path / "b.png", image(5, 5))
    before = sorted(p.name for p in tmp_path.iterdir()), (tmp_path / "b.png").read_bytes()
    assert run(["-m", model_path, "--suffix", suffix, tmp_path / "a.png"]) == EXIT_ERROR
    assert "must not contain a path separator" in capsys.readouterr().err
    assert (sorted(p.name for p in tmp_path.iterdir()), (tmp_path / "b.png").read_bytes()) == before


def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path, model_path, capsys):
    write_image(tmp_path / "a.png", image())
    (tmp_path / "taken.jpg").write_bytes(b"keep")
    assert run(["-m", model_path, "-o", tmp_path / "taken.jpg", tmp_path / "a.png"]) == EXIT_ERROR
    assert "-o/--out-dir " in capsys.readouterr().err and (tmp_path / "taken.jpg").read_bytes() == b"keep"


def test_scale_zero_is_refused_as_such(tmp_path, model_path, capsys):
    write_image(tmp_path / "a.png", image())
    assert run(["--scale", "0", tmp_path / "a.png"]) == EXIT_ERROR
    assert "--scale 0: must be a positive scale factor" in capsys.readouterr().err


def test_a_still_gif_or_a_file_without_suffix_is_written_as_png(tmp_path, model_path, capsys):
    """Pillow reads them, but no output format is .gif: warned, and written as PNG rather than failing after the work."""
    from PIL import Image

    Image.fromarray(image()).convert("P").save(tmp_path / "still.gif")
    write_image(tmp_path / "raw.png", image())
    (tmp_path / "raw.png").rename(tmp_path / "raw")
    assert run(["-m", model_path, tmp_path / "still.gif", tmp_path / "raw"]) == EXIT_OK
    err = capsys.readouterr().err
    assert "still.gif: .gif is not an output format; writing PNG" in err and "a file without a suffix" in err
    assert read_image(tmp_path / "still_sr.png").array.shape[:2] == (24, 20)
    assert (tmp_path / "raw_sr.png").is_file()


def test_an_output_never_overwrites_an_input(tmp_path, model_path, capsys):
    write_image(tmp_path / "a.png", image())
    before = (tmp_path / "a.png").read_bytes()
    assert run(["-m", model_path, "--suffix", "", tmp_path / "a.png"]) == EXIT_ERROR
    assert "would overwrite an input" in capsys.readouterr().err
    assert (tmp_path / "a.png").read_bytes() == before
    # a.png -> a_sr.png, which is itself one of the inputs: refused; a_sr.png -> a_sr_sr.png is fine.
    write_image(tmp_path / "a_sr.png", image(5, 5))
    before_sr = (tmp_path / "a_sr.png").read_bytes()
    assert run(["-m", model_path, tmp_path / "a.png", tmp_path / "a_sr.png"]) == EXIT_PARTIAL
    assert (tmp_path / "a_sr.png").read_bytes() == before_sr and (tmp_path / "a_sr_sr.png").is_file()
    # Two inputs with one output name: the second is refused rather than overwriting the first result.
    write_image(tmp_path / "b.png", image())
    write_image(tmp_path / "b.jpg", image())
    assert run(["-m", model_path, "--format", "png", tmp_path / "b.png", tmp_path / "b.jpg"]) == EXIT_PARTIAL
    assert "already the output of" in capsys.readouterr().err


def test_scale_check_and_missing_default_model(tmp_path, model_path, capsys):
    write_image(tmp_path / "a.png", image())
    assert run(["-m", model_path, "--scale", "4", tmp_path / "a.png"]) == EXIT_ERROR
    assert "upscales x2, not x4" in capsys.readouterr().err
    assert run(["-m", model_path, "--scale", "2", tmp_path / "a.png"]) == EXIT_OK
    assert run(["--scale", "3", tmp_path / "a.png"]) == EXIT_ERROR  # no shipped x3 model
    assert "no default model for x3" in capsys.readouterr().err
    assert run(["-m", tmp_path / "nope.pth", tmp_path / "a.png"]) == EXIT_ERROR
    assert "model file not found" in capsys.readouterr().err


def test_default_model_path(tmp_path, monkeypatch):
    with pytest.raises(TorchSRError, match="no default model for x3 .*-m MODEL"):
        weights.default_model_path(3)
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(TorchSRError, match="default x4 model .* is not installed.*-m MODEL"):
        weights.default_model_path(4)
    (tmp_path / weights.MODELS[weights.DEFAULTS[4]]).write_bytes(b"weights")
    assert weights.default_model_path() == tmp_path / "photo_x4.pth"


def test_tiling_precision_and_tta_options(tmp_path, model_path, capsys):
    write_image(tmp_path / "a.png", image(32, 32))
    assert run(["-m", model_path, "--suffix", "_whole", tmp_path / "a.png"]) == EXIT_OK
    whole = read_image(tmp_path / "a_whole.png").array.astype(int)
    assert run(["-m", model_path, "--tile", "24", "--tile-overlap", "6", "--suffix", "_t", tmp_path / "a.png"]) == 0
    assert run(["-m", model_path, "--tile", "24", "--tile-overlap", "0", "--suffix", "_c", tmp_path / "a.png"]) == 0
    blended, cropped = (np.abs(read_image(tmp_path / f"a_{s}.png").array - whole).mean() for s in ("t", "c"))
    assert 0 < blended < cropped / 5  # the options reached the tiler: tiles, blended or cut
    write_image(tmp_path / "b.png", image(8, 8))
    assert run(["-m", model_path, "--suffix", "_whole", tmp_path / "b.png"]) == 0
    assert run(["-m", model_path, "--tta", "--fp16", "--device", "cpu", "--suffix", "_tta", tmp_path / "b.png"]) == 0
    assert "warning: fp16 needs a GPU; running in float32 on the CPU" in capsys.readouterr().err
    tta, plain = (read_image(tmp_path / f"b_{s}.png").array.astype(int) for s in ("tta", "whole"))
    assert np.abs(tta - plain).max() > 3
    assert run(["-m", model_path, "--tile", "0", tmp_path / "a.png"]) == EXIT_ERROR
    assert run(["-m", model_path, "--tile", "8", tmp_path / "a.png"]) == EXIT_ERROR
    assert "--tile 8: tiles under 16 pixels show their seams" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["-m", model_path, "--fp16", "--bf16", tmp_path / "a.png"])


def test_handlers_route_other_inputs(tmp_path, model_path, monkeypatch):
    """Another kind of input (e.g. video) plugs in by suffix and shares the job's output rules."""
    seen = []

    def fake_video(src, job):
        dst = job.output_for(src, ".mp4")
        dst.write_text("upscaled")
        seen.append((src.name, job.upscaler.scale))
        return dst

    monkeypatch.setitem(cli.HANDLERS, ".mp4", fake_video)
    (tmp_path / "clip.mp4").write_text("video")
    write_image(tmp_path / "still.png", image())
    assert run(["-m", model_path, tmp_path]) == EXIT_OK
    assert seen == [("clip.mp4", 2)]
    assert (tmp_path / "clip_sr.mp4").read_text() == "upscaled" and (tmp_path / "still_sr.png").is_file()


@pytest.mark.slow
def test_root_script_runs(tmp_path, model_path):
    write_image(tmp_path / "a.png", image())
    result = subprocess.run(
        [sys.executable, str(ROOT / "inference.py"), "-m", str(model_path), str(tmp_path / "a.png")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert read_image(tmp_path / "a_sr.png").array.shape == (24, 20, 3)


def test_tile_progress_is_shown_on_terminals_not_in_logs(tmp_path, model_path, monkeypatch, capsys):
    write_image(tmp_path / "a.png", image(32, 32))
    assert run(["-m", model_path, "--tile", "16", "--tile-overlap", "0", tmp_path / "a.png"]) == EXIT_OK
    assert "tile" not in capsys.readouterr().err  # stderr is a pipe or a log file: no bar
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert run(["-m", model_path, "--tile", "16", "--tile-overlap", "0", "--suffix", "_t", tmp_path / "a.png"]) == 0
    assert "0/4 [" in term.text and "tile/s" in term.text


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_tile_progress_with_time_left_on_a_terminal_that_reports_no_size(tmp_path, model_path):
    """A fresh pseudo-terminal reports 0 columns (as some ssh sessions and containers do): the bar still shows."""
    import pty

    write_image(tmp_path / "a.png", image(32, 32))
    master, slave = pty.openpty()
    command = [sys.executable, str(ROOT / "inference.py"), "-m", str(model_path), "--tile", "16", "--tile-overlap", "0"]
    env = {**os.environ, "TQDM_MININTERVAL": "0"}  # draw every tile, however fast
    proc = subprocess.Popen([*command, str(tmp_path / "a.png")], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    output = b""
    try:
        while chunk := os.read(master, 65536):
            output += chunk
    except OSError:  # the terminal closed with the process
        pass
    finally:
        os.close(master)
    assert proc.wait(timeout=120) == 0, output
    text = output.decode(errors="replace")
    assert re.search(r" \d+/4 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+tile/s\]", text), text  # done/total, time left
    assert (tmp_path / "a_sr.png").is_file()
