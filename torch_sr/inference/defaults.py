"""The file types inference handles and the defaults of its options.

Kept free of torch, numpy and PIL so that `inference.py --help` (which shows them) answers at once;
the modules that use them (`upscaler`, `video`, `image_io`) import them from here.
"""
from __future__ import annotations

DEFAULT_TILE_OVERLAP = 32  # LR pixels shared by neighbouring tiles (capped at a quarter of the tile)
# The smallest --tile: smaller tiles get too little overlap to hide their seams (photo_x4 on lenna:
# 52 dB from the untiled output at 16, 44 dB at 8, 29.5 dB at 1) and run slowly.
MIN_TILE = 16

# Inputs routed to the video path by suffix (anything FFmpeg demuxes works; these are the common ones).
VIDEO_SUFFIXES = (
    ".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv", ".wmv",
    ".ogv", ".3gp",
)
# Output container (file suffix without the dot) -> FFmpeg muxer.
CONTAINERS = {"mp4": "mp4", "mkv": "matroska", "mov": "mov"}
DEFAULT_CRF = 18  # x264's "visually lossless" end: an upscale should not be spoiled by its encoding

# JPEG and WebP outputs: Pillow's quality scale (1-100). 95 is the top of the useful range: higher
# grows the file for no visible gain, lower starts to blur the detail the model restored.
DEFAULT_QUALITY = 95
# JPEG chroma subsampling -> Pillow's `subsampling` value. 4:4:4 (the default) keeps full-resolution
# colour, which an upscale is for; 4:2:0 halves it both ways for smaller files, as most cameras do.
CHROMA_SUBSAMPLING = {"444": 0, "420": 2}
DEFAULT_CHROMA = "444"
