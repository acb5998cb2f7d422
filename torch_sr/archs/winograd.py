"""Winograd F(4x4, 3x3) convolution: 3x3 "same" convs with 4x fewer multiplications, for inference.

On CPU the direct (oneDNN) 3x3 conv already runs close to the FMA peak, so the only way to make
RRDBNet much faster is to do less arithmetic: each 4x4 output tile costs 36 multiply-adds per
(input, output) channel pair instead of 144. The work becomes three matrix products:
`V = B'dB` (input windows), `M = U V` (36 independent GEMMs over channels, `U = GgG'` the
weights) and `Y = A'MA` (output tiles). The transforms are linear, so a dense block transforms
each feature once and every later conv reuses it: the concatenation becomes a slice of one buffer.

Layouts: spatial features live in zero-bordered buffers `(N, C, 4*ty + 2, 4*tx + 2)` (the border
is the conv's padding; the overhang that rounds H, W up to whole tiles is kept zero); the
Winograd domain is `(36, C, P)` with `P = N * ty * tx` tiles. Interpolation points 0, 1, -1, 2,
-1/2 keep the float32 error about 3x below the textbook 0, +-1, +-2. Float32 only: in bf16/fp16
the transforms' rounding would swamp the result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

TILE = 4  # output pixels per tile side
WINDOW = TILE + 2  # input pixels per tile side
POSITIONS = WINDOW * WINDOW  # independent GEMMs
# A' is all ones in the column of the point x=1, so a bias added at (1, 1) reaches every output.
BIAS_POSITION = 1 * WINDOW + 1
CHUNK_ELEMENTS = 1 << 21  # Winograd-domain floats per chunk in `conv3x3`: bounded scratch, stays in cache

_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -1 / 2, 0), (0, 1, 1, 4, 1 / 4, 0), (0, 1, -1, 8, -1 / 8, 1))
_G = ((1, 0, 0), (-1 / 3, -1 / 3, -1 / 3), (1 / 3, -1 / 3, 1 / 3), (1 / 15, 2 / 15, 4 / 15),
      (-16 / 15, 8 / 15, -4 / 15), (0, 0, 1))
_BT = ((1, 3 / 2, -2, -3 / 2, 1, 0), (0, -1, -5 / 2, -1 / 2, 1, 0), (0, 1, 1 / 2, -5 / 2, 1, 0),
       (0, -1 / 2, -1, 1 / 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 1, 3 / 2, -2, -3 / 2, 1))


@lru_cache(maxsize=8)
def transform_matrices(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The float32 transforms `A' (4, 6)`, `GG (36, 9)` and `B' (6, 6)`.

    Inputs and outputs are transformed one axis at a time (two small products: less arithmetic
    and memory traffic than one 36 x 36 product); weights, transformed once per call, use the
    2-D transform `GG = kron(G, G)` in one product.
    """
    at, g, bt = (torch.tensor(m, dtype=torch.float64) for m in (_AT, _G, _BT))
    return at.to(device, torch.float32), torch.kron(g, g).to(device, torch.float32), bt.to(device, torch.float32)


@dataclass(frozen=True)
class TileGrid:
    """How an `(N, C, H, W)` feature map is cut into 4x4 output tiles, and its padded buffers."""

    n: int
    h: int
    w: int

    @property
    def ty(self) -> int:
        return -(-self.h // TILE)

    @property
    def tx(self) -> int:
        return -(-self.w // TILE)

    @property
    def tiles(self) -> int:
        return self.n * self.ty * self.tx

    def new_padded(self, channels: int, like: torch.Tensor) -> torch.Tensor:
        """An `(N, channels, 4*ty + 2, 4*tx + 2)` buffer: border and overhang zeroed, the inside left to the writer."""
        padded = like.new_empty((self.n, channels, TILE * self.ty + 2, TILE * self.tx + 2))
        padded[:, :, 0].zero_()
        padded[:, :, :, 0].zero_()
        padded[:, :, 1 + self.h :].zero_()
        padded[:, :, :, 1 + self.w :].zero_()
        return padded

    def inner(self, padded: torch.Tensor) -> torch.Tensor:
        """The valid `(N, C, H, W)` region of a padded buffer (a view)."""
        return padded[:, :, 1 : 1 + self.h, 1 : 1 + self.w]

    def tiled(self, padded: torch.Tensor) -> torch.Tensor:
        """All whole tiles of a padded buffer as an `(N, C, ty, 4, tx, 4)` view."""
        region = padded[:, :, 1 : 1 + TILE * self.ty, 1 : 1 + TILE * self.tx]
        return region.unflatten(3, (self.tx, TILE)).unflatten(2, (self.ty, TILE))

    def clear_overhang(self, padded: torch.Tensor) -> None:
        """Zero what rounds H, W up to whole tiles: the next conv reads it as padding."""
        if self.h % TILE:
            padded[:, :, 1 + self.h :, :].zero_()
        if self.w % TILE:
            padded[:, :, :, 1 + self.w :].zero_()

    def rows(self, start: int, stop: int) -> TileGrid:
        """The grid of tile rows `[start, stop)` (for a buffer sliced with `padded_rows`)."""
        return TileGrid(self.n, TILE * (stop - start), self.w)


def padded_rows(padded: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """The part of a padded buffer that tile rows `[start, stop)` read, itself a padded buffer (a view)."""
    return padded[:, :, TILE * start : TILE * stop + 2]


def pad_into_grid(x: torch.Tensor, upsample: int = 1) -> tuple[torch.Tensor, TileGrid]:
    """Copy `x` (nearest-upsampled by `upsample`, in the same pass) into a new zero-bordered buffer."""
    n, c, h, w = x.shape
    grid = TileGrid(n, h * upsample, w * upsample)
    padded = grid.new_padded(c, x)
    inner = grid.inner(padded)
    if upsample > 1:
        inner = inner.unflatten(3, (w, upsample)).unflatten(2, (h, upsample))
        x = x[:, :, :, None, :, None]
    inner.copy_(x)
    return padded, grid


class Scratch:
    """Temporaries reused from call to call: a fresh multi-megabyte tensor costs a page fault per
    4 KiB on first touch, which was a third of the transform time. One per forward pass."""

    def __init__(self, like: torch.Tensor):
        self._like = like
        self._buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A contiguous tensor of `shape` (uninitialised); the previous one of this name is overwritten."""
        numel = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = self._buffers[name] = self._like.new_empty(numel)
        return buf[:numel].view(shape)


def transform_weight(weight: torch.Tensor, scratch: Scratch, scale: float = 1.0) -> torch.Tensor:
    """`(Cout, Cin, 3, 3)` conv weight -> `(36, Cout, Cin)`, times `scale` (folded in for free)."""
    cout, cin = weight.shape[:2]
    gg = transform_matrices(weight.device)[1]
    if scale != 1.0:
        gg = gg * scale
    u = scratch.take("u", (POSITIONS, cout, cin))
    torch.mm(gg, weight.reshape(cout * cin, 9).t(), out=u.view(POSITIONS, cout * cin))
    return u


def transform_input(padded: torch.Tensor, grid: TileGrid, out: torch.Tensor, scratch: Scratch) -> None:
    """Winograd-transform every channel of a padded buffer into `out`, a `(36, C, P)` view."""
    n, c, _, wp = padded.shape
    s = padded.stride()
    bt = transform_matrices(padded.device)[2]
    # Along H: the 6 rows of every tile row (1.5x the data), then along W: the 6 columns of every tile.
    rows = scratch.take("gather", (WINDOW, c, n, grid.ty, wp))
    rows.copy_(padded.as_strided(rows.shape, (s[2], s[1], s[0], TILE * s[2], s[3])))
    r = scratch.take("half", (WINDOW, c * n * grid.ty * wp))
    torch.mm(bt, rows.view(WINDOW, -1), out=r)
    cols = scratch.take("gather", (WINDOW, WINDOW, c * n * grid.ty, grid.tx))
    cols.copy_(r.as_strided(cols.shape, (r.stride(0), 1, wp, TILE)))
    torch.matmul(bt, cols.view(WINDOW, WINDOW, -1), out=out.view(WINDOW, WINDOW, c * grid.tiles))


def conv_tiles(
    v: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, scratch: Scratch, bias_scale: float = 1.0
) -> torch.Tensor:
    """The conv in the Winograd domain: `(36, Cin, P)` inputs, `(36, Cout, Cin)` weights -> `(16, Cout, P)` tiles.

    The result lives in `scratch` until the next call.
    """
    cout, p = u.shape[1], v.shape[2]
    m = scratch.take("m", (POSITIONS, cout, p))
    torch.bmm(u, v, out=m)
    if bias is not None:
        m[BIAS_POSITION].add_(bias.view(-1, 1), alpha=bias_scale)
    at = transform_matrices(v.device)[0]
    half = scratch.take("half", (TILE, WINDOW, cout * p))
    torch.mm(at, m.view(WINDOW, -1), out=half.view(TILE, -1))
    y = scratch.take("y", (TILE, TILE, cout * p))
    torch.matmul(at, half, out=y)
    return y.view(TILE * TILE, cout, p)


def untile(y: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """`(16, C, P)` output tiles as an `(N, C, ty, 4, tx, 4)` view, matching `TileGrid.tiled`."""
    return y.view(TILE, TILE, y.shape[1], grid.n, grid.ty, grid.tx).permute(3, 2, 4, 0, 5, 1)


def conv3x3(
    src: torch.Tensor,
    grid: TileGrid,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dst: torch.Tensor,
    scratch: Scratch,
    negative_slope: float | None = None,
) -> None:
    """`dst = [leaky_relu](conv2d(src, weight, bias, padding=1))` between padded buffers of `grid`.

    Works through bands of tile rows so that the Winograd-domain temporaries stay near
    `CHUNK_ELEMENTS` floats (in cache, and bounded on large images).
    """
    u = transform_weight(weight, scratch)
    cin, cout = weight.shape[1], weight.shape[0]
    band = max(1, CHUNK_ELEMENTS // (POSITIONS * max(cin, cout) * grid.n * grid.tx))
    for start in range(0, grid.ty, band):
        stop = min(start + band, grid.ty)
        part = grid.rows(start, stop)
        v = scratch.take("v", (POSITIONS, cin, part.tiles))
        transform_input(padded_rows(src, start, stop), part, v, scratch)
        y = conv_tiles(v, u, bias, scratch)
        if negative_slope is not None:
            torch.nn.functional.leaky_relu_(y, negative_slope)
        part.tiled(padded_rows(dst, start, stop)).copy_(untile(y, part))
    grid.clear_overhang(dst)
