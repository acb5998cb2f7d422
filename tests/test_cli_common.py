import subprocess
import sys

import pytest
import torch

from torch_sr.cli.common import EXIT_ERROR, reports_errors
from torch_sr.device import autocast_dtype, cpu_has_native_bf16, resolve_device
from torch_sr.errors import CheckpointError, TorchSRError


def test_user_errors_become_messages_and_exit_2(capsys):
    @reports_errors
    def main(argv=None):
        raise CheckpointError("model.pth: not found")

    assert main([]) == EXIT_ERROR
    assert capsys.readouterr().err.strip() == "error: model.pth: not found"


def test_programming_errors_still_raise():
    @reports_errors
    def main(argv=None):
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        main([])


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`torch-sr-... | head -1`: no BrokenPipeError traceback, the shell's status of a SIGPIPE."""
    code = (
        "from torch_sr.cli.common import reports_errors\n"
        "@reports_errors\n"
        "def main(argv=None):\n"
        "    for k in range(10**6):\n"
        "        print(f'line {k}', flush=True)\n"
        "    return 0\n"
        "raise SystemExit(main())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"line 0\n"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err


def test_a_broken_pipe_elsewhere_is_not_taken_for_a_gone_reader():
    """An encoder's pipe breaking is a failure to show, not `| head` closing our output."""

    @reports_errors
    def main(argv=None):
        raise BrokenPipeError("the encoder went away")

    with pytest.raises(BrokenPipeError):
        main([])


def test_sigterm_ends_a_command_with_143_and_leaves_no_temporary_file(tmp_path, capsys):
    """Python's default SIGTERM ends the process where it is; a half-written download stayed behind."""
    import os
    import signal

    from torch_sr.files import atomic_write

    before = signal.getsignal(signal.SIGTERM)

    def writing(out):
        out.write(b"half of an archive")
        os.kill(os.getpid(), signal.SIGTERM)
        out.write(b"never")

    @reports_errors
    def command(argv):
        atomic_write(tmp_path / "archive.tar", writing)
        return 0

    assert command([]) == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [] and signal.getsignal(signal.SIGTERM) is before


def test_an_error_raised_in_a_dataloader_worker_is_one_line(capsys):
    from torch.utils.data import DataLoader, Dataset

    from torch_sr.errors import DatasetError

    class Broken(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise DatasetError("/data/zz.jpg: cannot decode image (truncated); replace or delete the file")

    @reports_errors
    def command(argv):
        next(iter(DataLoader(Broken(), num_workers=1)))

    assert command([]) == EXIT_ERROR
    assert capsys.readouterr().err == "error: /data/zz.jpg: cannot decode image (truncated); replace or delete the file\n"


def test_sigterm_is_never_taken_for_a_damaged_file_and_forked_children_end_by_it(tmp_path, monkeypatch, capsys):
    """`except Exception` around a load turned the signal into "damaged": train.py --resume then skipped the newest checkpoint."""
    import multiprocessing
    import os
    import signal

    from torch_sr import files

    torch.save({"w": torch.zeros(2)}, tmp_path / "w.pth")

    def interrupted_load(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return {}

    @reports_errors
    def command(argv):
        files.read_weights(tmp_path / "w.pth")
        return 0

    monkeypatch.setattr(files.torch, "load", interrupted_load)
    assert command([]) == 143
    assert "damaged" not in capsys.readouterr().err

    @reports_errors
    def forking(argv):
        child = multiprocessing.get_context("fork").Process(target=lambda: os.kill(os.getpid(), signal.SIGTERM))
        child.start()
        child.join(20)
        return 0 if child.exitcode == -signal.SIGTERM else 1

    assert forking([]) == 0


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(TorchSRError, match="not a device name"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(TorchSRError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("native", [True, None])
def test_autocast_dtype_per_device(monkeypatch, native):
    monkeypatch.setattr("torch_sr.device.cpu_has_native_bf16", lambda: native)
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert autocast_dtype(cpu, None) == autocast_dtype(cpu, "bf16") == torch.bfloat16
    assert autocast_dtype(cpu, "fp16") is None  # refused: float32
    assert autocast_dtype(cuda, None) == autocast_dtype(cuda, "fp16") == torch.float16
    assert autocast_dtype(cuda, "bf16") == torch.bfloat16
    assert autocast_dtype(mps, None) is None


def test_autocast_dtype_is_float32_on_a_cpu_that_emulates_bfloat16(monkeypatch):
    monkeypatch.setattr("torch_sr.device.cpu_has_native_bf16", lambda: False)
    assert autocast_dtype(torch.device("cpu"), None) is autocast_dtype(torch.device("cpu"), "bf16") is None
    assert autocast_dtype(torch.device("cuda"), "bf16") == torch.bfloat16  # the GPU does not ask the CPU


@pytest.mark.parametrize(
    "flags, native", [("fpu sse avx512f avx512_bf16 avx512vl", True), ("fpu amx_bf16 amx_tile", True),
                      ("fpu sse avx2 avx512f avx512bw", False)],
)  # fmt: skip
def test_cpu_has_native_bf16_reads_the_flags(tmp_path, flags, native):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert cpu_has_native_bf16(str(info)) is native


def test_cpu_has_native_bf16_is_unknown_without_cpuinfo(tmp_path):
    assert cpu_has_native_bf16(str(tmp_path / "missing")) is None
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_has_native_bf16(str(tmp_path / "arm")) is None


@pytest.mark.slow
def test_the_library_does_not_import_the_command_line_tools():
    code = "import sys, torch_sr.inference.upscaler, torch_sr.device; assert 'torch_sr.cli' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
def test_importing_every_module_loads_no_heavy_optional_dependency():
    """wandb, tensorboard, albumentations, PyAV, lpips, torchvision's model zoo and onnx load only when used."""
    code = (
        "import importlib, pkgutil, sys, torch_sr\n"
        "names = [m.name for m in pkgutil.walk_packages(torch_sr.__path__, 'torch_sr.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "heavy = ('wandb', 'tensorboard', 'torch.utils.tensorboard', 'albumentations', 'av', 'lpips',\n"
        "         'torchvision.models', 'onnx', 'onnxruntime')\n"
        "loaded = sorted(h for h in heavy if h in sys.modules)\n"
        "assert len(names) > 50 and not loaded, (len(names), loaded)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
def test_console_commands_of_setup_py_point_at_the_root_scripts_functions():
    """`torch-sr-*` (setup.py) and the root scripts run the same `main`; installed, the commands answer --help."""
    import importlib
    import re
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    commands = dict(re.findall(r'"(torch-sr-[\w-]+)=([\w.]+:main)"', (root / "setup.py").read_text()))
    scripts = {"torch-sr-train", "torch-sr-test", "torch-sr-inference", "torch-sr-net-interpolation"}
    assert scripts <= set(commands) and {"torch-sr-reproduce", "torch-sr-export", "torch-sr-deepen"} <= set(commands)
    for command, target in commands.items():
        module = target.split(":")[0]
        script = root / (command.removeprefix("torch-sr-").replace("-", "_") + ".py")
        if command in scripts:  # the four tools of the original project keep their root scripts
            assert f"from {module} import main" in script.read_text(), script
        assert callable(importlib.import_module(module).main)
        installed = shutil.which(command)
        if installed:  # after `pip install .` (CI)
            subprocess.run([installed, "--help"], check=True, capture_output=True, timeout=120)
