"""Training throughput: steps/s and patches/s of each stage, and of the data pipeline alone.

    python benchmarks/bench_training.py                                  # configs/smoke_cpu.json, CPU, 2 threads
    python benchmarks/bench_training.py CONFIG --iterations 20 --workers 0 1 2
    python benchmarks/bench_training.py --threads 1 --iterations 16 --memory-formats 2   # NCHW vs channels_last
    python benchmarks/bench_training.py CONFIG --threads 1 --iterations 8 --precisions 3  # float32 vs bf16 autocast

Each stage of the config (PSNR, then GAN) is built as `train.py` builds it (same data, networks,
losses, channels_last on the CPU) and trained for `--iterations` iterations after two warm-up
ones, without validation or checkpoints: wall-clock steps/s and patches/s (HR crops per second).
Then the data pipeline alone: the stage's training set through the trainer's DataLoader with N
worker processes, batches pulled as fast as they come (the first batch, i.e. worker start-up, is not
timed). The pipeline must deliver at least 10x the patches/s the training step consumes, so that
loading is never the bottleneck; with 0 workers (the CPU default) it runs inside the training
process, and its share of an iteration is 1 / ratio. With a realistic `degradation` in the config,
the degradation of the stage's batches is timed as well, each preset of its mix alone and the mix
(it runs in the training process, on the training device): at least 5x the step's consumption.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torch_sr.config.validate import validate_config  # noqa: E402
from torch_sr.training import loop  # noqa: E402
from torch_sr.training.data import build_train_loader, build_train_set  # noqa: E402
from torch_sr.training.distributed import DistributedContext  # noqa: E402
from torch_sr.training.run import prepare_stage  # noqa: E402
from torch_sr.training.session import Session, TrainOptions  # noqa: E402
from torch_sr.training.signals import StopRequest  # noqa: E402
from torch_sr.training.stages import build_stages  # noqa: E402

TARGET_RATIO = 10.0
DEGRADATION_RATIO = 5.0


def bench_config(raw: dict, source: str) -> dict:
    """The config without validation, logs or TensorBoard: only training is timed."""
    raw = {**raw, "logging": {**raw.get("logging", {}), "tensorboard": False, "log_file": False,
                              "dir": tempfile.mkdtemp()}}
    for key in ("pretraining", "training"):
        raw[key] = {**raw.get(key, {}), "val_datasets": []}
    return validate_config(raw, source)


def time_stages(cfg, iterations: int, memory_format: torch.memory_format | None = None,
                clock=time.perf_counter, autocast: bool = False) -> list[dict]:
    """Seconds (of `clock`) per iteration of each stage, after 2 warm-up iterations.

    `memory_format` overrides the trainer's choice (channels_last on the CPU) for comparisons;
    `autocast` trains as `train.py -a` does (bf16 on the CPU).
    """
    options = TrainOptions(output_dir=Path(tempfile.mkdtemp()), checkpoint_interval=10**9, echo=False, progress=False,
                           autocast=autocast)  # fmt: skip
    session = Session(cfg, options, DistributedContext(torch.device("cpu")), StopRequest(), 0, "bench")
    if memory_format is not None:
        session.memory_format = memory_format
    rows = []
    for stage in build_stages(cfg):
        state, objective, train_set, val_sets = prepare_stage(session, stage, None, None, 0)
        state.total_iterations = 2
        loop.train_stage(session, state, objective, train_set, val_sets)
        state.total_iterations += iterations
        start = clock()
        loop.train_stage(session, state, objective, train_set, val_sets)
        seconds = (clock() - start) / iterations
        batch = stage.config.batch_size
        rows.append({"stage": stage.name, "batch": batch, "patch": stage.section.cr_patch_size,
                     "s_per_step": seconds, "steps_per_s": 1 / seconds, "patches_per_s": batch / seconds})
    session.close()
    return rows


def time_pipeline(cfg, workers: int, batches: int) -> float:
    """Patches/s of the first stage's training set through the trainer's loader with `workers` processes."""
    stage = build_stages(cfg)[0]
    train_set = build_train_set(stage.config, stage.section, cfg.seed)
    batch = stage.config.batch_size
    loader = iter(build_train_loader(train_set, batch, 0, batches + 1, workers))
    next(loader)  # worker start-up and first decode
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * batch / (time.perf_counter() - start)


def time_degradation(cfg, batches: int) -> dict[str, float]:
    """Patches/s of the config's degradation on the first stage's batches: each preset of its mix alone, and the mix."""
    import dataclasses

    from torch_sr.data.realistic_degradations import Degradation

    stage = build_stages(cfg)[0]
    loader = iter(build_train_loader(build_train_set(stage.config, stage.section, cfg.seed), stage.config.batch_size,
                                     0, batches, 0))  # fmt: skip
    data = [next(loader) for _ in range(batches)]
    names = [n for n in cfg.degradation.presets if n != "bicubic"]  # clean items cost nothing
    variants = {name: dataclasses.replace(cfg.degradation, mix={}, preset=name) for name in names}
    if len(variants) > 1:
        variants["mix"] = cfg.degradation
    rates = {}
    for name, dcfg in variants.items():
        degrade = Degradation(dcfg, stage.config.scale_factor)
        start = time.perf_counter()
        for k, b in enumerate(data):
            degrade(b["hr"], b["lr"], torch.Generator().manual_seed(k))
        rates[name] = batches * stage.config.batch_size / (time.perf_counter() - start)
    return rates


MEMORY_FORMATS = {"NCHW": {"memory_format": torch.contiguous_format},
                  "channels_last": {"memory_format": torch.channels_last}}
PRECISIONS = {"float32": {"autocast": False}, "bf16 autocast": {"autocast": True}}  # `train.py -a` on the CPU


def compare(cfg, iterations: int, repeats: int, variants: dict[str, dict]) -> None:
    """`time_stages` of each variant (its keyword arguments), interleaved, in process CPU time (other
    jobs on a shared machine disturb it less)."""
    for _ in range(repeats):
        for name, kwargs in variants.items():
            rows = time_stages(cfg, iterations, clock=time.process_time, **kwargs)
            print(f"{name:>13}: " + ", ".join(f"{r['stage']} {r['s_per_step']:.3f} s/iteration" for r in rows), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", default=str(ROOT / "configs" / "smoke_cpu.json"))
    p.add_argument("--iterations", type=int, default=10, help="timed iterations per stage")
    p.add_argument("--batches", type=int, default=30, help="timed batches of the pipeline per worker count")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader worker counts to try")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads of the training step")
    p.add_argument("--json", help="also write the numbers to this file")
    p.add_argument("--memory-formats", type=int, metavar="REPEATS",
                   help="only compare NCHW with channels_last (process CPU time), this many times each")
    p.add_argument("--precisions", type=int, metavar="REPEATS",
                   help="only compare float32 with bf16 autocast (process CPU time), this many times each")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = bench_config(json.loads(Path(args.config).read_text()), args.config)
    if args.memory_formats:
        compare(cfg, args.iterations, args.memory_formats, MEMORY_FORMATS)
        return
    if args.precisions:
        from torch_sr.device import cpu_has_native_bf16

        print(f"native bfloat16 (avx512_bf16 / amx_bf16): {cpu_has_native_bf16()}")
        compare(cfg, args.iterations, args.precisions, PRECISIONS)
        return

    print(f"config: {args.config}; torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    stages = time_stages(cfg, args.iterations)
    print("| stage | batch x HR patch | s/step | steps/s | patches/s |\n|---|---|---|---|---|")
    for r in stages:
        patch = "whole images" if r["patch"] is None else "x".join(map(str, r["patch"]))
        print(f"| {r['stage']} | {r['batch']} x {patch} | {r['s_per_step']:.3f} | {r['steps_per_s']:.2f} "
              f"| {r['patches_per_s']:.1f} |")
    need = max(r["patches_per_s"] for r in stages)
    print("\n| data pipeline | patches/s | x fastest stage's consumption |\n|---|---|---|")
    pipeline = {}
    for n in args.workers:
        pipeline[n] = time_pipeline(cfg, n, args.batches)
        print(f"| {n} workers | {pipeline[n]:.0f} | {pipeline[n] / need:.1f}x |")
    default = 0  # data/num_workers null on the CPU
    ratio = pipeline.get(default, max(pipeline.values())) / need
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"\npipeline ({default} workers, the CPU default) / training consumption: {ratio:.1f}x; "
          f"target >= {TARGET_RATIO:.0f}x: {verdict}")
    degradation = {}
    if set(cfg.degradation.presets) != {"bicubic"}:
        degradation = time_degradation(cfg, args.batches)
        print("\n| degradation (on the training process's thread) | patches/s | x fastest stage's consumption |")
        print("|---|---|---|")
        for name, rate in degradation.items():
            print(f"| {name} | {rate:.0f} | {rate / need:.1f}x |")
        slowest = min(degradation.values()) / need
        verdict = "met" if slowest >= DEGRADATION_RATIO else "NOT met"
        print(f"\nslowest degradation / training consumption: {slowest:.1f}x; target >= {DEGRADATION_RATIO:.0f}x: {verdict}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"stages": stages, "pipeline": pipeline, "ratio": ratio, "degradation": degradation}, indent=2))


if __name__ == "__main__":
    main()
