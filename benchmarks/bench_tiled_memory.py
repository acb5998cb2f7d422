"""Peak memory of `Upscaler.upscale_array(tile="auto")` on growing images: does it stay flat?

    python benchmarks/bench_tiled_memory.py                     # default model, 512/1024/2048 inputs, CPU
    python benchmarks/bench_tiled_memory.py --model weights.pth --sizes 512 2048 --device cuda
    python benchmarks/bench_tiled_memory.py --blocks 2          # a quick run on a 2-block RRDBNet

Model: `--model PATH`; `--blocks N`: a freshly initialised x4 RRDBNet of N blocks; else the shipped
default model (a fresh 23-block RRDBNet where it is not installed); the report says which was used.

Each size runs in its own subprocess so that peaks do not mix. In it the model is loaded and a
uint8 RGB input made; then the RSS high-water mark is reset (`/proc/self/clear_refs`) and one
`upscale_array` call runs. Counted:
- `peak`: the process's peak resident memory during the call -- everything: Python, torch, the
  model's weights, the input array and the uint8 output array;
- `input`, `output`: the sizes of the input and output arrays (the output, e.g. 8192x8192x3 =
  201 MB for a 2048x2048 x4 input, is the result itself and unavoidable);
- `peak - arrays` = peak - input - output: what upscaling needs besides the two images. The
  target (issue 7) is that this stays within 1.5x of its value at 512x512 for every size.
On CUDA the peak allocated GPU memory (`torch.cuda.max_memory_allocated`) is reported as well.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_RATIO = 1.5
MIB = 1 << 20


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status (this benchmark needs Linux)")


def build_model(args: argparse.Namespace):
    """(model, description): `--model`, else the shipped default, else a fresh x4 RRDBNet."""
    import torch

    from torch_sr.archs.rrdbnet import RRDBNet
    from torch_sr.model_files.model_file import load_model
    from torch_sr.errors import TorchSRError
    from torch_sr.weights import default_model_path

    path = args.model
    if path is None and args.blocks is None:
        try:
            path = str(default_model_path(4))
        except TorchSRError:
            path = None
    if path is not None:
        return load_model(path), f"model file {path}"
    n = args.blocks or 23
    torch.manual_seed(0)
    model = RRDBNet(scale_factor=4, num_basic_blocks=n)
    return model, f"freshly initialised x4 RRDBNet, {n} block{'s' if n != 1 else ''}, 64 channels"


def child(args: argparse.Namespace) -> dict:
    """One `upscale_array` call on a `size` x `size` input, measured in this process."""
    import numpy as np
    import torch

    from torch_sr.inference import tiling
    from torch_sr.inference.upscaler import Upscaler

    torch.set_num_threads(args.threads)
    model, description = build_model(args)
    upscaler = Upscaler(model, device=args.device, tile="auto")
    size = args.child
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    image = (ramp[:, None, None] * 0.5 + ramp[None, :, None] * 0.25 + rng.integers(0, 40, (size, size, 3)))
    image = image.clip(0, 255).astype(np.uint8)
    calls = []
    real = tiling.upscale_tiled

    def recording(fn, lr, scale, tile, overlap=0, **kwargs):
        grid = tiling.tile_grid(*lr.shape[-2:], tile, overlap, kwargs.get("align", 1))
        calls.append({"tile": tile, "batch": kwargs.get("max_batch", 1), "tiles": [len(s) for s in grid]})
        return real(fn, lr, scale, tile, overlap, **kwargs)

    tiling.upscale_tiled = recording
    device = upscaler.device
    per_pixel = upscaler._per_pixel()  # the probe runs before the measured call, as it would be cached
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    baseline = _status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    start = time.perf_counter()
    out = upscaler.upscale_array(image)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = _status_bytes("VmHWM")
    result = {
        "size": size,
        "model": description,
        "device": str(device),
        "threads": args.threads,
        "baseline": baseline,
        "peak": peak,
        "input": image.nbytes,
        "output": out.nbytes,
        "output_shape": list(out.shape),
        "seconds": seconds,
        "tile": calls[-1]["tile"],
        "tiles": calls[-1]["tiles"],
        "batch": calls[-1]["batch"],
        "bytes_per_pixel": per_pixel,
        "budget": tiling.memory_budget(device, reserved=out.nbytes),
        "fast_inference": bool(getattr(model, "fast_inference", False)),
    }
    if device.type == "cuda":
        result["gpu_peak"] = torch.cuda.max_memory_allocated(device)
    return result


def run_child(size: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", str(size), "--device", args.device, "--threads", str(args.threads)]
    cmd += ["--blocks", str(args.blocks)] if args.blocks else []
    cmd += ["--model", args.model] if args.model else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"size {size} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(rows: list[dict]) -> str:
    first = rows[0]
    lines = [
        f"model: {first['model']}",
        f"device: {first['device']} ({platform.processor() or platform.machine()}, {first['threads']} threads); "
        f"fast inference path: {'on' if first['fast_inference'] else 'off'}",
        f"auto-tile budget: {first['budget'] / MIB:.0f} MiB, probe estimate {first['bytes_per_pixel'] / 1024:.1f} KiB "
        "per input pixel",
        "",
        "| input | output | tiles (rows x cols), tile / batch | input array | output array | RSS before | "
        "peak RSS | peak - arrays | vs first | time |" + (" GPU peak |" if "gpu_peak" in first else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if "gpu_peak" in first else ""),
    ]
    ref = first["peak"] - first["input"] - first["output"]
    for r in rows:
        work = r["peak"] - r["input"] - r["output"]
        oh, ow = r["output_shape"][:2]
        tiles = f"{r['tiles'][0]} x {r['tiles'][1]}, {r['tile'] or 'whole'} / {r['batch']}"
        line = (f"| {r['size']}x{r['size']} | {ow}x{oh} | {tiles} | {r['input'] / MIB:.1f} MiB | "
                f"{r['output'] / MIB:.1f} MiB | {r['baseline'] / MIB:.0f} MiB | {r['peak'] / MIB:.0f} MiB | "
                f"{work / MIB:.0f} MiB | "
                f"{work / ref:.2f}x | {r['seconds']:.0f} s |")
        if "gpu_peak" in r:
            line += f" {r['gpu_peak'] / MIB:.0f} MiB |"
        lines.append(line)
    worst = max((r["peak"] - r["input"] - r["output"]) / ref for r in rows)
    verdict = "met" if worst <= TARGET_RATIO else "NOT met"
    size = f"{first['size']}x{first['size']}"
    lines += ["", f"largest (peak - arrays) ratio to {size}: {worst:.2f}x; target <= {TARGET_RATIO}x: {verdict}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model file (default: the shipped default, else a fresh x4 RRDBNet)")
    p.add_argument("--blocks", type=int, help="measure a freshly initialised x4 RRDBNet of this many blocks instead")
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048],
                   help="input sides; the first is the reference (default: 512 1024 2048)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto (default: %(default)s)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="CPU threads (default: %(default)s)")
    p.add_argument("--json", type=Path, help="also write the raw measurements here")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args)))
        return 0
    rows = []
    for size in args.sizes:
        rows.append(run_child(size, args))
        print(f"{size}x{size}: peak {rows[-1]['peak'] / MIB:.0f} MiB in {rows[-1]['seconds']:.0f} s", file=sys.stderr)
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
