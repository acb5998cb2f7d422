"""`benchmarks/gpu_smoke.py` on a machine without CUDA: it says so, runs nothing and exits 0."""
import subprocess
import sys
from pathlib import Path

from trainer_fixtures import subprocess_env

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_smoke_says_it_needs_cuda_and_runs_nothing_without_it():
    env = {**subprocess_env(), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_smoke.py")], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CUDA is not available" in done.stdout and "nothing was run" in done.stdout
    assert "| check |" not in done.stdout
