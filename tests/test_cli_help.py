"""Every command answers `--help` at once: no torch (nor numpy, PIL) imported, and the exit statuses listed."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("train", "test", "inference", "net_interpolation", "export", "reproduce", "deepen")
ROOT_SCRIPTS = ("train", "test", "inference", "net_interpolation", "export")  # the others are console commands only

CHECK = """
import contextlib, io, runpy, sys, time
sys.argv = [{script!r}, "--help"]
out = io.StringIO()
start = time.perf_counter()
with contextlib.redirect_stdout(out):
    try:
        {call}
    except SystemExit as e:
        assert e.code == 0, e.code
heavy = [m for m in ("torch", "numpy", "PIL") if m in sys.modules]
assert not heavy, f"--help imported {{heavy}}"
print(out.getvalue())
print(f"answered in {{time.perf_counter() - start:.3f}} s")
"""


@pytest.mark.parametrize(
    "command, entry", [(c, "console command") for c in COMMANDS] + [(c, "root script") for c in ROOT_SCRIPTS]
)
def test_help_imports_no_torch_and_lists_the_exit_statuses(command, entry):
    script = ROOT / f"{command}.py"
    if entry == "console command":  # what `torch-sr-<command>` (setup.py) calls
        call = f"from torch_sr.cli.{command} import main; main()"
    else:
        call = f"runpy.run_path({str(script)!r}, run_name='__main__')"
    code = CHECK.format(script=str(script), call=call)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "exit status:" in result.stdout
    listed = result.stdout.split("exit status:")[1].splitlines()
    statuses = [line.split()[0] for line in listed if line.strip()[:1].isdigit()]
    assert {"0", "2", "130", "141"} <= set(statuses), statuses


def test_every_installed_command_is_checked():
    """setup.py's console commands are exactly the ones tested above."""
    import re

    installed = re.findall(r'"torch-sr-[\w-]+=torch_sr\.cli\.(\w+):main"', (ROOT / "setup.py").read_text())
    assert sorted(installed) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_usage_error_is_one_line_with_status_2(command, capsys):
    import importlib

    main = importlib.import_module(f"torch_sr.cli.{command}").main
    with pytest.raises(SystemExit) as e:
        main(["--no-such-option"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: ") and err.rstrip().endswith("--help)")


@pytest.mark.parametrize("command, script", [("inference", "inference.py"), ("test", "test.py"), ("train", "train.py"),
                                             ("net_interpolation", "net_interpolation.py")])  # fmt: skip
def test_usage_names_the_command_as_it_was_typed(command, script, monkeypatch):
    import importlib

    build = importlib.import_module(f"torch_sr.cli.{command}").build_parser
    monkeypatch.setattr("sys.argv", [f"/usr/local/bin/torch-sr-{command.replace('_', '-')}"])
    assert build().prog == f"torch-sr-{command.replace('_', '-')}"  # installed: there is no inference.py to run
    monkeypatch.setattr("sys.argv", [script])
    assert build().prog == script


def test_a_step_of_torch_sr_reproduce_is_named_as_its_script(monkeypatch):
    from torch_sr.cli import train

    monkeypatch.setattr("sys.argv", ["/usr/local/bin/torch-sr-reproduce"])
    assert train.build_parser().prog == "train.py"
