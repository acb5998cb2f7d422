"""DistributedDataParallel for real: two CPU processes under torchrun (gloo) train both stages."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from trainer_fixtures import make_images, subprocess_env, tiny_config, write_config

pytestmark = pytest.mark.slow  # two torchrun processes train both stages

WORKER = Path(__file__).resolve().parent / "trainer_ddp_worker.py"


def test_torchrun_ranks_end_identical_and_only_rank_0_writes(tmp_path):
    train, val = make_images(tmp_path / "train", 4, (32, 32)), make_images(tmp_path / "val", 1, (32, 32), seed=1)
    cfg = tiny_config(train, val, logging={"dir": str(tmp_path / "runs"), "tensorboard": True})
    path = write_config(tmp_path / "ddp.json", cfg)
    out = tmp_path / "out"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    train_args = [str(path), "--output-dir", str(out), "--device", "cpu", "-i", "2", "--run-name", "ddp"]
    cmd = [*torchrun, str(WORKER), str(tmp_path), *train_args]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=subprocess_env())
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["code"] for r in ranks] == [0, 0]
    # both stages trained, and both processes hold the same weights after each
    assert set(ranks[0]["digests"]) == {"PSNR", "ESRGAN"}
    assert ranks[0]["digests"] == ranks[1]["digests"]
    assert set(ranks[0]["digests"]["ESRGAN"]) == {"generator", "discriminator"}
    # only rank 0 wrote: checkpoints and models, one TensorBoard file, one log
    assert ranks[1]["writes"] == []
    written = {Path(p).name.split("_", 1)[1] for p in ranks[0]["writes"]}
    assert {"RRDB_PSNR_x4_checkpoint.pth", "RRDB_ESRGAN_x4_final_model.pth"} <= written
    assert len(list((tmp_path / "runs" / "ddp").glob("events.out.tfevents.*"))) == 1
    log = (tmp_path / "runs" / "ddp" / "train.log").read_text()
    assert log.count("PSNR 4/4 epoch") == 1 and "2 process(es) on cpu" in log
