"""inference.py on videos: frames, timing, order and audio kept; streaming; frames as PNGs; failures."""
import gc
import subprocess
import sys
import weakref
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn

from reference_archs import randomize_
from torch_sr.archs.description import GeneratorInfo
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.model_files.model_file import save_model
from torch_sr.cli import inference as cli
from torch_sr.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from torch_sr.inference import video
from torch_sr.inference.image_io import read_image, write_image
from torch_sr.inference.upscaler import Upscaler

W, H, FRAMES = 32, 24, 12
NTSC = Fraction(24000, 1001)
VFR_MS = [0, 40, 80, 200, 240, 280, 500, 540, 580, 620, 700, 760]  # irregular frame times


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A tiny x2 RRDBNet that keeps the picture: nearest-neighbour upscaling plus its (small) dense trunk.

    Its random trunk really runs, but the identity head and tail keep brightness and shapes, so
    that the frame index drawn into each frame can be read back from the output.
    """
    model = randomize_(RRDBNet(2, 3, 8, 4, 1), std=0.1).eval()
    with torch.no_grad():
        for conv, channels in ((model.conv_first, 3), (model.conv_up1, 8), (model.conv_hr, 8), (model.conv_last, 3)):
            conv.weight.zero_()
            conv.bias.zero_()
            for c in range(channels):
                conv.weight[c, c, 1, 1] = 1
        model.conv_body.weight.mul_(0.01)
        model.conv_body.bias.zero_()
    return save_model(model, tmp_path_factory.mktemp("models") / "keep_x2.pth")


def frame_image(k: int, w: int = W, h: int = H, noise: int = 0) -> np.ndarray:
    """Frame k: background brightness 40 + 15k and a 3-pixel bright bar at x = 4 + 2k (+ optional noise)."""
    img = np.full((h, w, 3), min(40 + 15 * k, 230), np.uint8)
    if noise:
        img += np.random.default_rng(k).integers(0, noise, img.shape, dtype=np.uint8)
    img[:, 4 + 2 * k : 7 + 2 * k] = 255
    return img


def make_clip(path: Path, *, rate=NTSC, pts_ms=None, audio="aac", frames=FRAMES, size=(W, H), pix_fmt="yuv420p",
              seconds=0.5, noise=0, layout="stereo") -> Path:
    """A short clip written with PyAV: numbered frames and a 440 Hz stereo tone."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = *size, pix_fmt
        v.options = {"crf": "10"}
        if pts_ms is not None:
            v.codec_context.time_base = Fraction(1, 1000)
        a = None
        if audio:
            a = c.add_stream(audio, rate=48000)
            a.layout = layout
        for k in range(frames):
            f = av.VideoFrame.from_ndarray(frame_image(k, *size, noise=noise), format="rgb24")
            f.pts, f.time_base = (pts_ms[k], Fraction(1, 1000)) if pts_ms is not None else (k, 1 / Fraction(rate))
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        if a is not None:
            t = np.arange(int(48000 * seconds)) / 48000
            tone = (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(np.repeat(tone, 2)[None], format="s16", layout="stereo")
            af.sample_rate, af.pts = 48000, 0
            c.mux(a.encode(af))
            c.mux(a.encode(None))
    return path


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def audio_info(path: Path) -> tuple[str, int, int]:
    """(codec, sample rate, decoded samples) of the first audio stream."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return s.codec_context.name, s.rate, sum(f.samples for f in c.decode(s))


def audio_payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def check_numbered_frames(frames: list[np.ndarray], scale: int = 2) -> None:
    """Each frame shows its own index: background brightness and bar position, in order."""
    assert len(frames) == FRAMES
    for k, f in enumerate(frames):
        grey = f.astype(float).mean(2)
        background = np.median(grey)
        assert abs(background - (40 + 15 * k)) <= 6, (k, background)  # frames are 15 apart
        bar = np.clip(grey.mean(0) - background, 0, None)
        centre = (bar * np.arange(bar.size)).sum() / bar.sum()
        assert abs(centre - (5.5 + 2 * k) * scale) <= 1.5, (k, centre)


def run(args) -> int:
    return cli.main([str(a) for a in args])


def test_video_keeps_frames_size_rate_order_and_copies_audio(tmp_path, model_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4")
    assert run(["-m", model_path, clip]) == EXIT_OK
    out = tmp_path / "clip_sr.mp4"
    err = capsys.readouterr().err
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.name, v.width, v.height, v.format.name) == ("h264", 2 * W, 2 * H, "yuv420p")
        assert v.average_rate == NTSC
    assert frame_times(out) == frame_times(clip)
    check_numbered_frames(decoded_frames(out))
    # AAC fits in mp4: the audio packets are the input's, byte for byte.
    assert audio_info(out) == audio_info(clip)
    assert audio_payloads(out) == audio_payloads(clip)
    assert f"encoded with {video.h264_encoder()}" in err and "(aac) copied without re-encoding" in err


def test_variable_frame_rate_and_audio_the_container_cannot_hold(tmp_path, model_path, capsys):
    clip = make_clip(tmp_path / "vfr.mkv", pts_ms=VFR_MS, audio="pcm_s16le")
    assert run(["-m", model_path, "-o", tmp_path / "out", clip]) == EXIT_OK
    out = tmp_path / "out" / "vfr_sr.mp4"
    assert frame_times(out) == [t / 1000 for t in VFR_MS]
    check_numbered_frames(decoded_frames(out))
    codec, rate, samples = audio_info(out)
    assert (codec, rate) == ("aac", 48000) and abs(samples - 24000) <= 1024  # AAC pads its last frame
    assert "(pcm_s16le) re-encoded as AAC: few mp4 players play PCM" in capsys.readouterr().err
    # Matroska holds PCM: copied as it is.
    assert run(["-m", model_path, "--video-format", "mkv", clip]) == EXIT_OK
    assert audio_info(tmp_path / "vfr_sr.mkv") == audio_info(clip) == ("pcm_s16le", 48000, 24000)
    assert frame_times(tmp_path / "vfr_sr.mkv") == [t / 1000 for t in VFR_MS]


def test_mono_pcm_into_mp4_is_re_encoded_as_aac(tmp_path, model_path, capsys):
    # FFmpeg would mux mono PCM into mp4 as 'ipcm', which few players play.
    clip = make_clip(tmp_path / "mono.mkv", audio="pcm_s16le", layout="mono")
    assert run(["-m", model_path, "-o", tmp_path / "out", clip]) == EXIT_OK
    assert audio_info(tmp_path / "out" / "mono_sr.mp4")[0] == "aac"
    assert "(pcm_s16le) re-encoded as AAC" in capsys.readouterr().err


def test_frames_dir_writes_numbered_pngs(tmp_path, model_path, capsys):
    clip = make_clip(tmp_path / "clip.mov", audio=None)
    assert run(["-m", model_path, "--frames-dir", tmp_path / "frames", clip]) == EXIT_OK
    folder = tmp_path / "frames" / "clip_sr"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{k:06d}.png" for k in range(1, FRAMES + 1)]
    check_numbered_frames([read_image(folder / n).array for n in names])
    assert not list(tmp_path.glob("clip_sr.*"))  # frames instead of a video
    # Frames of another run are never mixed in: a non-empty folder is refused.
    assert run(["-m", model_path, "--frames-dir", tmp_path / "frames", clip]) == EXIT_ERROR
    assert "not empty" in capsys.readouterr().err


def test_a_corrupt_video_is_reported_and_the_others_are_done(tmp_path, model_path, capsys):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (tmp_path / "empty.mkv").write_bytes(b"")
    make_clip(tmp_path / "good.mp4", audio=None)
    write_image(tmp_path / "still.png", frame_image(0))
    code = run(["-m", model_path, tmp_path])  # a folder: its videos and images
    assert code == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "broken.mp4: not a readable video" in err and "empty.mkv: not a readable video" in err
    assert "2 upscaled, 2 failed" in err
    assert (tmp_path / "good_sr.mp4").is_file() and (tmp_path / "still_sr.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "broken.mp4", "empty.mkv", "good.mp4", "good_sr.mp4", "still.png", "still_sr.png",
    ]  # nothing half-written left behind


def test_an_output_never_overwrites_the_input_video(tmp_path, model_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", audio=None)
    before = clip.read_bytes()
    assert run(["-m", model_path, "--suffix", "", clip]) == EXIT_ERROR
    assert "would overwrite an input" in capsys.readouterr().err and clip.read_bytes() == before


@pytest.mark.slow
def test_frames_stream_through_one_at_a_time(tmp_path, model_path, monkeypatch):
    """No list of frames is kept: when frame k is upscaled, the earlier frames are gone.

    Every decoded frame (an av.VideoFrame), every RGB array handed to the upscaler and every
    upscaled array it returns is tracked; a pipeline that decoded or upscaled the whole video
    first, or kept its results, would have about 24 of them alive at once.
    """
    clip = make_clip(tmp_path / "long.mp4", frames=24, rate=24, audio="aac", seconds=1.0)
    inputs, outputs, alive = [], [], []
    real = Upscaler.upscale_array

    def tracking(self, img):
        live_frames = sum(isinstance(o, av.VideoFrame) for o in gc.get_objects())
        alive.append((sum(r() is not None for r in inputs), sum(r() is not None for r in outputs), live_frames))
        inputs.append(weakref.ref(img))
        out = real(self, img)
        outputs.append(weakref.ref(out))
        return out

    monkeypatch.setattr(Upscaler, "upscale_array", tracking)
    assert run(["-m", model_path, clip]) == EXIT_OK
    assert len(alive) == 24
    assert max(a for a, _, _ in alive) <= 1 and max(o for _, o, _ in alive) <= 1
    # A few av.VideoFrame objects are in flight (the one being upscaled, the last one handed to the
    # encoder, the first one whose size and colour tags are kept), never a growing number.
    assert max(f for _, _, f in alive) <= 6 and alive[-1][2] <= alive[0][2] + 1
    assert len(decoded_frames(tmp_path / "long_sr.mp4")) == 24


class RecordingBar:
    """Stands in for tqdm: records the total, the unit and the updates."""

    made: list["RecordingBar"] = []

    def __init__(self, *args, total=None, unit="it", **kwargs):
        self.total, self.unit, self.count = total, unit, 0
        RecordingBar.made.append(self)

    def update(self, n=1):
        self.count += n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Nearest(nn.Module):
    """A stand-in model: nearest-neighbour upscaling by `scale`."""

    def __init__(self, scale):
        super().__init__()
        self.info = GeneratorInfo(scale, 3, 3)

    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=self.info.scale, mode="nearest")


def test_progress_counts_frames_with_the_known_total(tmp_path, monkeypatch):
    import tqdm

    monkeypatch.setattr(tqdm, "tqdm", RecordingBar)
    RecordingBar.made.clear()
    upscaler = Upscaler(Nearest(2), "cpu")
    video.upscale_video(make_clip(tmp_path / "a.mp4"), tmp_path / "a_sr.mp4", upscaler)
    video.upscale_video(make_clip(tmp_path / "b.mkv", pts_ms=VFR_MS), tmp_path / "b_sr.mp4", upscaler)
    bars = [(b.total, b.unit, b.count) for b in RecordingBar.made]
    assert bars == [(FRAMES, "frame", FRAMES), (None, "frame", FRAMES)]  # Matroska does not store a frame count


def test_odd_sizes_are_padded_to_even_for_yuv420p(tmp_path):
    clip = make_clip(tmp_path / "odd.mkv", size=(31, 23), pix_fmt="yuv444p", audio=None)
    result = video.upscale_video(clip, tmp_path / "odd_x3.mp4", Upscaler(Nearest(3), "cpu"), progress=False)
    assert "padded from 93x69 to 94x70" in " ".join(result.notes)
    frames = decoded_frames(tmp_path / "odd_x3.mp4")
    assert len(frames) == FRAMES and frames[0].shape == (70, 94, 3)


def test_encoder_choice_crf_and_fallback(tmp_path, model_path, monkeypatch, capsys):
    assert video.h264_encoder() in video.H264_ENCODERS  # this PyAV wheel has one (libx264)
    clip = make_clip(tmp_path / "clip.mp4", audio=None)
    upscaler = Upscaler(Nearest(2), "cpu")
    sizes = {}
    noisy = make_clip(tmp_path / "noisy.mp4", audio=None, noise=30)
    for crf in (0, 40):
        out = video.upscale_video(noisy, tmp_path / f"crf{crf}.mp4", upscaler, crf=crf, progress=False)
        assert out.encoder == video.h264_encoder()
        sizes[crf] = (tmp_path / f"crf{crf}.mp4").stat().st_size
    assert sizes[0] > 5 * sizes[40]  # the quality option reaches the encoder
    with pytest.raises(video.VideoError, match="--crf 52: must be between 0 .* and 51"):
        video.upscale_video(clip, tmp_path / "x.mp4", upscaler, crf=52)
    assert run(["-m", model_path, "--video-codec", "libnothing", clip]) == EXIT_ERROR
    assert "--video-codec libnothing: this PyAV/FFmpeg build has no such video encoder" in capsys.readouterr().err
    # A build without any H.264 encoder: MPEG-4 Part 2, with a warning that says so.
    monkeypatch.setattr(video, "H264_ENCODERS", ("libnoh264",))
    with pytest.warns(UserWarning, match="no H.264 encoder .* MPEG-4 Part 2"):
        result = video.upscale_video(clip, tmp_path / "fallback.mp4", upscaler, progress=False)
    assert result.encoder == "mpeg4"
    with av.open(str(tmp_path / "fallback.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
    check_numbered_frames(decoded_frames(tmp_path / "fallback.mp4"))


def test_rotation_aspect_ratio_and_colour_matrix_are_kept(tmp_path):
    """A phone clip rotated by metadata, with non-square pixels, in BT.709 colours, comes out the same."""
    red = np.zeros((H, W, 3), np.uint8)
    red[...] = (200, 40, 30)
    clip = tmp_path / "phone.mp4"
    with av.open(str(clip), "w") as c:
        v = c.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.codec_context.colorspace = 1  # BT.709
        v.sample_aspect_ratio = Fraction(4, 3)
        v.set_display_rotation(90)
        for k in range(3):
            f = av.VideoFrame.from_ndarray(red, format="rgb24")
            f.colorspace, f.pts = 1, k
            c.mux(v.encode(f))
        c.mux(v.encode(None))
    out = tmp_path / "phone_sr.mp4"
    video.upscale_video(clip, out, Upscaler(Nearest(2), "cpu"), progress=False)
    with av.open(str(clip)) as a, av.open(str(out)) as b:
        fa, fb = next(a.decode(video=0)), next(b.decode(video=0))
        assert (fb.rotation, b.streams.video[0].sample_aspect_ratio, fb.colorspace) == (90, Fraction(4, 3), 1)
        rgb_in, rgb_out = fa.to_ndarray(format="rgb24"), fb.to_ndarray(format="rgb24")
    # Decoded and re-encoded with the same (BT.709) matrix: no colour shift (BT.601 would move red by ~20).
    assert np.abs(rgb_out.astype(int).mean((0, 1)) - rgb_in.astype(int).mean((0, 1))).max() <= 3


@pytest.mark.slow
def test_importing_the_command_does_not_import_pyav():
    code = "import sys, torch_sr.cli.inference, torch_sr.inference.video; assert 'av' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
def test_tiling_precision_and_tta_options_apply_to_videos(tmp_path, model_path, monkeypatch):
    clip = make_clip(tmp_path / "clip.mp4", audio=None)
    seen = []
    real = Upscaler.upscale_array

    def recording(self, img):
        seen.append((self.tile, self.tile_overlap, self.tta, self.autocast_dtype, self.progress))
        return real(self, img)

    monkeypatch.setattr(Upscaler, "upscale_array", recording)
    monkeypatch.setattr("torch_sr.device.cpu_has_native_bf16", lambda: True)  # bf16 runs on any CPU here
    assert run(["-m", model_path, "--tile", "16", "--tile-overlap", "4", "--tta", "--bf16", clip]) == EXIT_OK
    # Every frame through the command's upscaler; no tile bar per frame under the frame bar.
    assert seen == [(16, 4, True, torch.bfloat16, False)] * FRAMES
    check_numbered_frames(decoded_frames(tmp_path / "clip_sr.mp4"))


def test_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path, model_path, monkeypatch, capsys):
    """The pixel limit applies to a video's frame size, read from the stream header: nothing is decoded."""
    from PIL import Image

    from torch_sr import pixel_limit

    monkeypatch.setattr(pixel_limit, "_limit", pixel_limit.max_pixels())  # both restored after the test
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    clip = make_clip(tmp_path / "clip.mp4", audio=None)
    decoded = []
    real_first, real_interleaved = video._first_frame, video._interleaved
    monkeypatch.setattr(video, "_first_frame", lambda *a: decoded.append("first") or real_first(*a))
    monkeypatch.setattr(video, "_interleaved", lambda *a: decoded.append("frames") or real_interleaved(*a))
    message = (f"error: {clip}: {W}x{H} is {W * H:,} pixels, more than the limit of {W * H - 1:,}; if the image is "
               f"genuine, raise the limit with --max-pixels {W * H}")
    for extra in ([], ["--frames-dir", tmp_path / "frames"]):
        assert run(["-m", model_path, "--max-pixels", W * H - 1, *extra, clip]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert message in err.splitlines() and "Traceback" not in err
        assert decoded == []
        assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # nothing written
    with pytest.raises(video.VideoError, match=rf"clip\.mp4: {W}x{H} is {W * H:,} pixels"):
        video.upscale_video(clip, tmp_path / "api.mp4", Upscaler(Nearest(2), "cpu"), progress=False)
    assert decoded == []
    # Raised to the frame size, the video goes through.
    assert run(["-m", model_path, "--max-pixels", W * H, clip]) == EXIT_OK
    assert decoded and len(decoded_frames(tmp_path / "clip_sr.mp4")) == FRAMES
    assert run(["-m", model_path, "--max-pixels", W * H, "--frames-dir", tmp_path / "frames", clip]) == EXIT_OK
    assert len(list((tmp_path / "frames" / "clip_sr").iterdir())) == FRAMES


def test_hevc_encodes_without_x265s_settings_dump(tmp_path, capfd):
    """libx265 prints ~25 lines of settings to the process's stderr unless told otherwise."""
    if "libx265" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx265")
    clip = make_clip(tmp_path / "clip.mp4", audio=None)
    result = video.upscale_video(clip, tmp_path / "hevc.mp4", Upscaler(Nearest(2), "cpu"), encoder="libx265", progress=False)
    assert result.encoder == "libx265"
    assert "x265 [info]" not in capfd.readouterr().err
    check_numbered_frames(decoded_frames(tmp_path / "hevc.mp4"))
