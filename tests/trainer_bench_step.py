"""CPU seconds per training iteration of a config's two stages, NCHW against channels_last.

    OMP_NUM_THREADS=1 PYTHONPATH=. python tests/trainer_bench_step.py [CONFIG] [--iterations N] [--repeats R]

Process CPU time, not wall time, so that other jobs on a shared machine disturb it less. The
trainer uses channels_last on the CPU because of these numbers (README, "Training").
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from torch_sr.config.validate import validate_config
from torch_sr.training import loop
from torch_sr.training.distributed import DistributedContext
from torch_sr.training.run import prepare_stage
from torch_sr.training.session import Session, TrainOptions
from torch_sr.training.signals import StopRequest
from torch_sr.training.stages import build_stages


def seconds_per_iteration(raw: dict, memory_format: torch.memory_format, iterations: int) -> dict[str, float]:
    raw = {**raw, "logging": {"tensorboard": False, "log_file": False, "dir": tempfile.mkdtemp()}}
    raw["pretraining"] = {**raw["pretraining"], "val_datasets": []}
    raw["training"] = {**raw["training"], "val_datasets": []}
    cfg = validate_config(raw, "bench")
    options = TrainOptions(output_dir=Path(tempfile.mkdtemp()), checkpoint_interval=10**9, echo=False, progress=False)
    session = Session(cfg, options, DistributedContext(torch.device("cpu")), StopRequest(), 0, "bench")
    session.memory_format = memory_format
    out = {}
    for stage in build_stages(cfg):
        state, objective, train_set, val_sets = prepare_stage(session, stage, None, None, 0)  # in memory_format
        state.total_iterations = 2  # warm-up
        loop.train_stage(session, state, objective, train_set, val_sets)
        state.total_iterations += iterations
        start = time.process_time()
        loop.train_stage(session, state, objective, train_set, val_sets)
        out[stage.label] = (time.process_time() - start) / iterations
    session.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", default="configs/smoke_cpu.json")
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    raw = json.loads(Path(args.config).read_text())
    for _ in range(args.repeats):
        for name, fmt in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
            times = seconds_per_iteration(raw, fmt, args.iterations)
            print(f"{name:>13}: " + ", ".join(f"{stage} {s:.3f} s/iteration" for stage, s in times.items()), flush=True)


if __name__ == "__main__":
    main()
