"""What the hostile inputs of issue 16 cost now that they are refused: file size, time, peak memory.

    python benchmarks/bench_hostile_inputs.py

Each input is written to a temporary folder and read in a fresh process (by `load_model` or
`read_image`), which must refuse it; the peak resident memory is reported above that of the same
process after its imports (what reading the file itself cost).
"""
from __future__ import annotations

import io
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torch_sr.archs.rrdbnet import RRDBNet  # noqa: E402
from torch_sr.archs.srvgg import SRVGGNetCompact  # noqa: E402
from torch_sr.model_files.model_file import model_payload  # noqa: E402

READ = """
import resource, sys, time
from torch_sr.model_files.model_file import load_model
from torch_sr.inference.image_io import read_image
from torch_sr.errors import TorchSRError
path = sys.argv[1]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    (read_image if path.endswith(".png") else load_model)(path)
    outcome = "LOADED"
except TorchSRError as e:
    outcome = str(e).split(": ", 1)[1][:70]
seconds = time.perf_counter() - start
print(f"{seconds:.2f}\\t{(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024:.0f}\\t{outcome}")
"""


def png(path: Path, width: int, height: int, depth: int, colour_type: int, idat: bytes) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def zeros_deflated(size: int, level: int = 6) -> bytes:
    deflate, block = zlib.compressobj(level), bytes(1 << 22)
    return b"".join(deflate.compress(block) for _ in range(size >> 22)) + deflate.flush()


def write_inputs(folder: Path) -> dict[str, Path]:
    model = SRVGGNetCompact(scale_factor=2, num_feat=4, num_conv=2)
    hparams = {"scale_factor": 2, "num_feat": 3000, "num_conv": 100}
    torch.save(model_payload("srvgg", hparams, model.state_dict()), folder / "hparams.pth")
    sd = RRDBNet(4, 3, 8, 4, 1).state_dict()
    sd["conv_first.weight"] = torch.zeros(1).expand(65536, 3, 3, 3)
    torch.save(sd, folder / "stride0.pth")
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(folder / "inflate.pth", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if not info.filename.endswith("data.pkl"):
                dst.writestr(info, src.read(info))
                continue
            with dst.open(info.filename, "w", force_zip64=True) as f:
                f.write(src.read(info))
                for _ in range(256):
                    f.write(bytes(1 << 22))  # 1 GiB after the pickle's STOP
    png(folder / "png16_bomb.png", 16, 16, 16, 2, zeros_deflated(2 << 30))  # 16x16 16-bit RGB, 2 GiB of data
    png(folder / "13000x13000.png", 13000, 13000, 8, 0, zeros_deflated(13000 * 13001, 9))
    return {p.name: p for p in sorted(folder.iterdir())}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inputs = write_inputs(Path(tmp))
        print("input\tfile size\tseconds\tpeak MB over imports\toutcome")
        for name, path in inputs.items():
            done = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True, text=True, cwd=ROOT)
            result = done.stdout.strip() or done.stderr.strip().splitlines()[-1]
            print(f"{name}\t{path.stat().st_size:,}\t{result}")


if __name__ == "__main__":
    main()
