"""The source distribution: what setup.py reads at build time and what the README's commands need travel with it."""
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = (
    "requirements.txt",  # setup.py reads it: without it the sdist cannot be built into a wheel
    "LICENSE",
    "README.md",
    "configs/recipes/default_x4/recipe.json",
    "configs/smoke_cpu.json",
    "torch_sr/weights/default_x4.pth",
    "torch_sr/weights/default_x4.md",
    "torch_sr/config/schema.json",
    "tests/conftest.py",
    "docs/training.md",
)


def checkout_copy(dest: Path) -> Path:
    """The files git has (or would add) in a fresh folder: no stale *.egg-info whose SOURCES.txt setuptools reuses."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    for name in listed:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.mark.slow
def test_the_source_distribution_builds_and_carries_what_it_needs(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to list the project's files")
    repo = checkout_copy(tmp_path / "repo")
    made = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
        cwd=repo, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    sdist = next((tmp_path / "dist").glob("torch_sr-*.tar.gz"))
    with tarfile.open(sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        names = {name.split("/", 1)[1] for name in tf.getnames() if "/" in name}
        tf.extractall(tmp_path / "src", filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(tmp_path / "src")
    missing = [name for name in NEEDED if name not in names]
    assert not missing, missing
    # what pip does with it first: run its setup.py (which reads requirements.txt) for the metadata
    meta = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)],
        cwd=tmp_path / "src" / top, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert meta.returncode == 0, meta.stderr
    requires = (tmp_path / "torch_sr.egg-info" / "requires.txt").read_text()
    assert "albumentations>=2.0" in requires and "av>=18.0" in requires
