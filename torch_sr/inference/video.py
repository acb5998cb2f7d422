"""Video files through an `Upscaler`: decode, upscale and encode one frame at a time.

Frames stream from the decoder through the model into the encoder, so memory does not grow with
the video's length: at any time a few frames are in flight (plus the encoder's own look-ahead).
Each frame keeps its timestamp, so constant, rational (24000/1001) and variable frame rates come
out as they went in, in the same order. Audio streams are copied packet for packet when the
output container can hold their codec, and re-encoded (AAC) otherwise. Subtitle and data streams
are not carried over. The video is encoded as H.264 (`libx264`, else `libopenh264`) in yuv420p;
a PyAV/FFmpeg build without either falls back to MPEG-4 Part 2 with a warning.

PyAV is imported inside the functions, so importing this module stays light.
"""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from torch_sr.files import atomic_write
from torch_sr.errors import TorchSRError
from torch_sr.inference.defaults import CONTAINERS, DEFAULT_CRF, VIDEO_SUFFIXES  # noqa: F401 (re-exported)
from torch_sr.inference.image_io import write_image
from torch_sr.inference.upscaler import Upscaler
from torch_sr.pixel_limit import check_pixels
from torch_sr.progress import progress_bar

H264_ENCODERS = ("libx264", "libopenh264")  # in order of preference
FALLBACK_ENCODER = "mpeg4"  # built into every FFmpeg
CRF_RANGE = {"libx264": 51, "libx265": 51, "libsvtav1": 63, "libvpx-vp9": 63}  # encoders with a `crf` option
AUDIO_ENCODER = "aac"
_NAMED_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
_FF_QP2LAMBDA = 118  # FFmpeg's quantiser -> lambda factor, for `-q:v`-style quality


class VideoError(TorchSRError):
    """A video cannot be read, decoded or encoded; the message names the file."""


@dataclass
class VideoResult:
    """What `upscale_video` / `upscale_video_to_frames` did: frames written and notes for the user."""

    frames: int
    encoder: str | None  # None for frames written as images
    notes: list[str] = field(default_factory=list)


def available_encoder(name: str) -> bool:
    """Whether this PyAV/FFmpeg build has a video encoder called `name`."""
    import av

    try:
        return av.codec.Codec(name, "w").type == "video"
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False


def h264_encoder() -> str | None:
    """The first H.264 software encoder this build has (`H264_ENCODERS`), or None."""
    return next((name for name in H264_ENCODERS if available_encoder(name)), None)


def choose_encoder(name: str = "auto") -> str:
    """`name`, checked, or for "auto" the H.264 encoder (falling back to MPEG-4 with a warning)."""
    if name != "auto":
        if not available_encoder(name):
            h264 = h264_encoder()
            hint = f"H.264 is available as {h264}" if h264 else f"it has no H.264 encoder; try {FALLBACK_ENCODER}"
            raise VideoError(f"--video-codec {name}: this PyAV/FFmpeg build has no such video encoder ({hint})")
        return name
    found = h264_encoder()
    if found is None:
        warnings.warn(
            f"this PyAV/FFmpeg build has no H.264 encoder ({', '.join(H264_ENCODERS)}); encoding MPEG-4 Part 2 "
            f"({FALLBACK_ENCODER}) instead, which is larger at the same quality. Install a PyAV wheel with libx264 "
            "for H.264, or pick another encoder with --video-codec",
            stacklevel=2,
        )
        return FALLBACK_ENCODER
    return found


def check_crf(encoder: str, crf: int) -> None:
    """A CRF outside the encoder's range is a clear error (0 = lossless ... 51 or 63 = worst)."""
    top = CRF_RANGE.get(encoder, 51)
    if not 0 <= crf <= top:
        raise VideoError(f"--crf {crf}: must be between 0 (best) and {top} (worst) for {encoder}")


def upscale_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    upscaler: Upscaler,
    *,
    encoder: str = "auto",
    crf: int = DEFAULT_CRF,
    progress: bool = True,
) -> VideoResult:
    """Upscale every frame of `src` into a new video `dst` (.mp4, .mkv or .mov), written atomically.

    Timestamps, frame order and audio are kept (see the module doc); `crf` sets the quality of
    encoders that have a CRF (lower is better; others get a bit rate or quantiser from it).
    """
    import av

    src, dst = Path(src), Path(dst)
    fmt = CONTAINERS.get(dst.suffix.lower().lstrip("."))
    if fmt is None:
        raise VideoError(f"{dst}: cannot write a video with suffix {dst.suffix!r}; use {', '.join(CONTAINERS)}")
    encoder = choose_encoder(encoder)
    check_crf(encoder, crf)
    result = VideoResult(0, encoder)
    with _open_video(src) as inp, _without_tile_bars(upscaler):
        video = inp.streams.video[0]
        first = _first_frame(src)
        audio = _audio_plan(src, inp, fmt, result.notes)
        if len(inp.streams) > 1 + len(audio):
            result.notes.append("subtitle/data streams are not copied")

        def write(f) -> None:
            with av.open(f, "w", format=fmt) as out:
                sink = _video_stream(out, video, first, encoder, crf, upscaler.scale, result.notes)
                audio_out = {
                    i: out.add_stream_from_template(inp.streams[i]) if copy else _audio_encoder(out, inp.streams[i])
                    for i, copy in audio.items()
                }
                result.frames = _transcode(src, inp, out, sink, audio_out, audio, upscaler,
                                           size=(first.width, first.height), progress=progress)

        _decoding(src, lambda: atomic_write(dst, write))
    return result


def upscale_video_to_frames(
    src: str | os.PathLike, folder: str | os.PathLike, upscaler: Upscaler, *, progress: bool = True
) -> VideoResult:
    """Upscale every frame of `src` into `folder/000001.png, 000002.png, ...` (in presentation order).

    The folder must be new or empty, so that no frame of another video is left among these.
    """
    src, folder = Path(src), Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise VideoError(f"{src}: frames folder {folder} already exists and is not empty; choose another --frames-dir")
    with _open_video(src) as inp, _without_tile_bars(upscaler):
        video = inp.streams.video[0]
        count = 0

        def run() -> None:
            nonlocal count
            with _frame_bar(video, progress) as bar:
                for frame in _interleaved(inp.demux(video), video.index):
                    check_pixels(src, frame.width, frame.height, VideoError)  # a frame larger than declared
                    count += 1
                    write_image(folder / f"{count:06d}.png", upscaler.upscale_array(frame.to_ndarray(format="rgb24")))
                    bar.update(1)

        _decoding(src, run)
    if count == 0:
        raise VideoError(f"{src}: no video frame could be decoded")
    return VideoResult(count, None, [f"{count} frames written to {folder}"])


# -- reading --------------------------------------------------------------------------------------

def _open_video(src: Path):
    """The opened input container, or a `VideoError` naming the file."""
    import av

    if src.is_dir():
        raise VideoError(f"{src}: is a folder, not a video")
    try:
        inp = av.open(str(src))
    except FileNotFoundError:
        raise VideoError(f"{src}: no such file") from None
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{src}: not a readable video ({e})") from None
    if not inp.streams.video:
        inp.close()
        raise VideoError(f"{src}: has no video stream")
    cc = inp.streams.video[0].codec_context
    try:  # the frame size the stream declares, before any frame is decoded
        check_pixels(src, cc.width, cc.height, VideoError)
    except VideoError:
        inp.close()
        raise
    return inp


def _decoding(src: Path, run: Callable[[], object]) -> None:
    """Run `run`, turning FFmpeg errors into a `VideoError` naming `src`."""
    import av

    try:
        run()
    except (av.FFmpegError, ValueError) as e:
        raise VideoError(f"{src}: decoding or encoding failed ({e})") from None


def _first_frame(src: Path):
    """The first decoded frame (size, colour tags, rotation), from a separate read of `src`."""
    with _open_video(src) as inp:
        frame = None

        def first() -> None:
            nonlocal frame
            frame = next(iter(inp.decode(inp.streams.video[0])), None)

        _decoding(src, first)
    if frame is None:
        raise VideoError(f"{src}: no video frame could be decoded")
    return frame


@contextmanager
def _without_tile_bars(upscaler: Upscaler) -> Iterator[None]:
    """Switch off the upscaler's per-frame tile bar: the frame bar says enough."""
    shown, upscaler.progress = upscaler.progress, False
    try:
        yield
    finally:
        upscaler.progress = shown


def _frame_bar(video, enabled: bool):
    """A bar counting frames (terminals only), out of the stream's frame count when the container knows it."""
    return progress_bar(video.frames or None, unit="frame", enabled=enabled, leave=False)


# -- audio ----------------------------------------------------------------------------------------

def _audio_plan(src: Path, inp, fmt: str, notes: list[str]) -> dict[int, bool]:
    """Input audio stream index -> True to copy its packets, False to re-encode it as AAC."""
    plan = {}
    for stream in inp.streams.audio:
        codec = stream.codec_context.codec.canonical_name  # "mp3", not the decoder's "mp3float"
        # FFmpeg muxes some PCM into mp4 (as 'ipcm'), but few players play it: AAC is what mp4 players expect.
        pcm_in_mp4 = fmt == "mp4" and codec.startswith("pcm_")
        plan[stream.index] = not pcm_in_mp4 and _can_copy(src, stream.index, fmt)
        if plan[stream.index]:
            notes.append(f"audio stream {stream.index} ({codec}) copied without re-encoding")
        else:
            why = "few mp4 players play PCM" if pcm_in_mp4 else f"the {fmt} container does not take it as it is"
            notes.append(f"audio stream {stream.index} ({codec}) re-encoded as AAC: {why}")
    return plan


def _can_copy(src: Path, index: int, fmt: str) -> bool:
    """Whether `fmt` takes stream `index` of `src` as it is: a real first packet is muxed into memory.

    FFmpeg's `supported_codecs` is not enough (mp4 lists PCM, then refuses its channel layout
    when the file is finished), so this writes a whole tiny file.
    """
    import av

    try:
        with av.open(str(src)) as inp, av.open(io.BytesIO(), "w", format=fmt) as probe:
            stream = inp.streams[index]
            copy = probe.add_stream_from_template(stream)
            for packet in inp.demux(stream):
                if packet.dts is not None:
                    packet.stream = copy
                    probe.mux(packet)
                    return True
        return False
    except (av.FFmpegError, ValueError):
        return False


def _audio_encoder(out, stream):
    """An AAC stream for input audio `stream`, with a named channel layout (AAC needs one)."""
    encoder = out.add_stream(AUDIO_ENCODER, rate=stream.rate)
    channels = stream.codec_context.channels
    encoder.layout = _NAMED_LAYOUTS.get(channels, f"{channels}c")
    return encoder


# -- writing --------------------------------------------------------------------------------------

def _video_stream(out, video, first, encoder: str, crf: int, scale: int, notes: list[str]):
    """The output video stream: upscaled (even) size, the input's time base and colour tags."""
    from av.video.reformatter import ColorRange

    w, h = first.width * scale, first.height * scale
    even_w, even_h = w + w % 2, h + h % 2
    if (even_w, even_h) != (w, h):
        notes.append(f"frames padded from {w}x{h} to {even_w}x{even_h} (yuv420p needs even sizes)")
    rate = video.average_rate or video.guessed_rate or Fraction(25)
    stream = out.add_stream(encoder, rate=rate)
    stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
    cc = stream.codec_context
    time_base = video.time_base or 1 / Fraction(rate)
    if encoder == FALLBACK_ENCODER and time_base.denominator > 65535:  # MPEG-4's limit
        time_base = Fraction(1, 60000)
    cc.time_base = time_base
    cc.colorspace, cc.color_range = first.colorspace, ColorRange.MPEG
    cc.color_primaries, cc.color_trc = video.codec_context.color_primaries, video.codec_context.color_trc
    if video.sample_aspect_ratio:
        stream.sample_aspect_ratio = video.sample_aspect_ratio
    if first.rotation:
        stream.set_display_rotation(first.rotation)
    if encoder in CRF_RANGE:
        quiet = {"libx265": {"x265-params": "log-level=error"}, "libvpx-vp9": {"b": "0"}}  # x265 logs its settings
        stream.options = {"crf": str(crf), **quiet.get(encoder, {})}
    elif encoder == FALLBACK_ENCODER:
        cc.qscale = True
        cc.global_quality = max(2, min(31, round(crf / 6))) * _FF_QP2LAMBDA
    else:
        cc.bit_rate = int(even_w * even_h * float(rate) * 0.15)  # about 0.15 bits per pixel
        notes.append(f"{encoder} has no CRF; encoding at {cc.bit_rate // 1000} kbit/s")
    return stream


def _transcode(src, inp, out, sink, audio_out, copy_audio, upscaler, *, size, progress) -> int:
    """The streaming loop: demux, upscale and encode video frames into `sink`, copy or re-encode audio.

    `audio_out` maps input audio stream indices to output streams, `copy_audio` says which are
    copied; `size` is the input frame size the output stream was made for.
    """
    import av

    video = inp.streams.video[0]
    time_base = sink.codec_context.time_base
    rate = Fraction(video.average_rate or video.guessed_rate or 25)
    count, last_pts = 0, None
    with _frame_bar(video, progress) as bar:
        for item in _interleaved(inp.demux(video, *(inp.streams[i] for i in audio_out)), video.index):
            if isinstance(item, av.Packet):  # audio
                target = audio_out[item.stream.index]
                if not copy_audio[item.stream.index]:
                    for frame in item.decode():
                        out.mux(target.encode(frame))
                elif item.dts is not None:  # (not the demuxer's empty end-of-stream packet)
                    item.stream = target
                    out.mux(item)
                continue
            if (item.width, item.height) != size:
                raise VideoError(
                    f"{src}: the frame size changes from {size[0]}x{size[1]} to {item.width}x{item.height} "
                    f"at frame {count + 1}; upscale such a video in parts"
                )
            when = count / rate if item.pts is None else item.pts * item.time_base  # seconds
            pts = round(when / time_base)
            last_pts = pts = pts if last_pts is None or pts > last_pts else last_pts + 1
            upscaled = upscaler.upscale_array(item.to_ndarray(format="rgb24"))
            out.mux(sink.encode(_output_frame(upscaled, item.colorspace, sink, pts)))
            count += 1
            bar.update(1)
    out.mux(sink.encode(None))
    for i, copy in copy_audio.items():
        if not copy:
            out.mux(audio_out[i].encode(None))
    if count == 0:
        raise VideoError(f"{src}: no video frame could be decoded")
    return count


def _interleaved(packets: Iterator, video_index: int) -> Iterator:
    """Decoded video frames and (undecoded) audio packets, in file order, one at a time.

    The demuxer ends each stream with an empty packet, whose decoding flushes the decoder.
    """
    for packet in packets:
        if packet.stream.index == video_index:
            yield from packet.decode()
        else:
            yield packet


def _output_frame(rgb: np.ndarray, colorspace: int, sink, pts: int):
    """An upscaled RGB array as a frame for the encoder: padded to the stream's even size, timed."""
    import av

    pad_h, pad_w = sink.height - rgb.shape[0], sink.width - rgb.shape[1]
    if pad_h or pad_w:
        rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    # RGB -> yuv420p with the input's matrix (BT.601, BT.709, ...), in limited range.
    frame.colorspace, frame.color_range = colorspace, sink.codec_context.color_range
    frame.pts, frame.time_base = pts, sink.codec_context.time_base
    return frame
