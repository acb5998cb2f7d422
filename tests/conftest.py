import sys
from pathlib import Path

import pytest

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
