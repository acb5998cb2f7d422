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
