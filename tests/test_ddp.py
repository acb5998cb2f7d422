"""DistributedDataParallel for real: two CPU processes under torchrun (gloo) train both stages, on one
node or as two nodes that meet through torchrun's c10d rendezvous."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from trainer_fixtures import make_images, subprocess_env, tiny_config, write_config

pytestmark = pytest.mark.slow  # two torchrun processes train both stages

WORKER = Path(__file__).resolve().parent / "trainer_ddp_worker.py"


@pytest.mark.timeout(300)  # three Python processes start torch: seconds idle, minutes on a loaded machine
def test_torchrun_ranks_end_identical_and_only_rank_0_writes(tmp_path):
    train, val = make_images(tmp_path / "train", 4, (32, 32)), make_images(tmp_path / "val", 1, (32, 32), seed=1)
    cfg = tiny_config(train, val, logging={"dir": str(tmp_path / "runs"), "tensorboard": True},
                      distributed={"sync_batch_norm": True, "timeout_minutes": 5})
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
    # the config's sync_batch_norm reached the discriminator (which has batch norm); gloo on the CPU cannot sync it
    assert "sync_batch_norm needs CUDA" in done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)  # four Python processes start torch: 71-98 s on the loaded 2-core dev machine
def test_the_same_command_spans_two_nodes_through_the_c10d_rendezvous(tmp_path):
    """Two torchrun launchers, as on two machines (`--nnodes 2 --node-rank 0/1`), here both on 127.0.0.1.

    The PSNR stage alone (the GAN stage adds nothing to what is shown here) keeps it short.
    """
    train, val = make_images(tmp_path / "train", 4, (32, 32)), make_images(tmp_path / "val", 1, (32, 32), seed=1)
    stages = {"pretraining": {"num_iterations": 2}, "training": {"enabled": False}}
    cfg = tiny_config(train, val, **stages, logging={"dir": str(tmp_path / "runs")})
    path = write_config(tmp_path / "nodes.json", cfg)
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "nodes"]
    train_args = [str(path), "--output-dir", str(tmp_path / "out"), "--device", "cpu", "-i", "2", "--run-name", "nodes"]
    logs = [open(tmp_path / f"node{node}.log", "w") for node in (0, 1)]
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
             "--nproc-per-node", "1", *rendezvous, str(WORKER), str(tmp_path), *train_args],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(),
        )
        for node, log in enumerate(logs)
    ]
    try:
        nodes[0].wait(timeout=280)
        nodes[1].wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for node, log in zip(nodes, logs):
            if node.poll() is None:
                node.terminate()  # torchrun passes SIGTERM on to its worker and waits for it
                try:
                    node.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    node.kill()
                    node.wait()
            log.close()
    outputs = "\n".join(f"node {n}: {(tmp_path / f'node{n}.log').read_text()[-2000:]}" for n in (0, 1))
    assert [node.returncode for node in nodes] == [0, 0], outputs
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # one process per node: each is local rank 0 of its own node, and together they are one world of two
    assert [r["place"]["LOCAL_RANK"] for r in ranks] == ["0", "0"]
    assert sorted(r["place"]["GROUP_RANK"] for r in ranks) == ["0", "1"]
    assert [(r["place"]["WORLD_SIZE"], r["place"]["LOCAL_WORLD_SIZE"]) for r in ranks] == [("2", "1"), ("2", "1")]
    assert [r["code"] for r in ranks] == [0, 0]
    assert set(ranks[0]["digests"]) == {"PSNR"} and ranks[0]["digests"] == ranks[1]["digests"]
    assert ranks[1]["writes"] == [] and ranks[0]["writes"]
    assert "2 process(es) on cpu" in (tmp_path / "runs" / "nodes" / "train.log").read_text()
