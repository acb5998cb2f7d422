import os
import sys
from pathlib import Path

# One compute thread per test process: the tests use tiny tensors, and several processes (DDP
# ranks, CLI subprocesses, parallel test runs) each spinning two OpenMP threads on a 2-core
# machine slow each other down by an order of magnitude. Subprocesses inherit the variable.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(TESTS))  # reference implementations and helpers shared by the tests


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the project, or a clean skip in a user's clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (only present in the development checkout and CI)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def trainer_folders(tmp_path_factory) -> tuple[Path, Path]:
    """Five 40x44 training images and two 32x36 validation images (`trainer_fixtures.make_images`)."""
    from trainer_fixtures import make_images

    root = tmp_path_factory.mktemp("data")
    return make_images(root / "train", 5, (40, 44)), make_images(root / "val", 2, (32, 36), seed=1)


@pytest.fixture
def run(trainer_folders, tmp_path, monkeypatch):
    """`run(changes, *flags, sections=None) -> exit code`: train.py on the tiny config
    (`trainer_fixtures.tiny_config`) in a fresh working directory; `changes` are merged into the
    config deeply, `sections` replace whole sections."""
    from torch_sr.cli.train import main
    from trainer_fixtures import tiny_config, write_config

    monkeypatch.chdir(tmp_path)

    def go(changes=None, *flags, sections=None):
        cfg = {**tiny_config(*trainer_folders, **(changes or {})), **(sections or {})}
        return main([str(write_config(tmp_path / "tiny.json", cfg)), "--device", "cpu", *flags])

    return go
