"""Run by tests/test_ddp.py under torchrun: train, then record this rank's weights and file writes.

Usage: trainer_ddp_worker.py REPORT_DIR TRAIN_ARGS... -> REPORT_DIR/rank<RANK>.json with the exit
code, every file this process wrote atomically, a hash of each stage's final weights, and the place
torchrun gave this process (global and local rank, node rank, sizes).
"""
import json
import os
import sys
from pathlib import Path

from trainer_fixtures import weights_digest

from torch_sr import files
from torch_sr.cli.train import main
from torch_sr.training import run
from torch_sr.training.ema import unwrap

report_dir, argv = Path(sys.argv[1]), sys.argv[2:]
writes, digests = [], {}
atomic_write = files.atomic_write
train_stage = run.train_stage


def recording_write(path, write):
    writes.append(str(path))
    return atomic_write(path, write)


def recording_train_stage(session, state, *args):
    train_stage(session, state, *args)
    digests[state.stage.label] = {
        name: weights_digest(dict(unwrap(net).named_parameters())) for name, net in state.networks().items()
    }


files.atomic_write = recording_write
run.train_stage = recording_train_stage
code = main(argv)
place = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")}
report = {"code": code, "writes": writes, "digests": digests, "place": place}
(report_dir / f"rank{os.environ['RANK']}.json").write_text(json.dumps(report))
sys.exit(code)
