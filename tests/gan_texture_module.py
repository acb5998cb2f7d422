"""benchmarks/gan_texture.py as a module, for the tests of the measures the GAN models' cards report."""
import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gan_texture.py"


def gan_texture() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gan_texture", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
