"""`torch-sr-reproduce MODEL`: rebuild a shipped model from scratch by its recipe (train each stage, deepen, export).

A recipe (`configs/recipes/<model>/recipe.json`) lists the steps as the command lines of this
library's tools (`train`, `deepen`, `export`, `interpolate`, `test`); globs (`saved_models/x4_stage1/*_final_model.pth`)
are expanded when the step runs, once the files exist. Running it again continues where it stopped:
training steps resume from their newest checkpoint (a finished stage trains nothing, nor one whose files the
later steps made from it exist; one stopped early
by design with `--stop-after N` trains until its checkpoint has N iterations), and a deepen or export
step whose output exists is kept. Run it from the repository root, where the configs and
`../shared/data` are.
"""
from __future__ import annotations

import argparse
import glob
import json
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

from torch_sr.cli.common import (
    ArgumentParser, EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, HelpFormatter,
    exit_status_epilog, reports_errors,
)  # fmt: skip
from torch_sr.errors import TorchSRError

RECIPES = Path("configs/recipes")
# step name -> (how a user types it, the module whose `main(argv)` runs it)
TOOLS: dict[str, tuple[str, str]] = {
    "train": ("python train.py", "torch_sr.cli.train"),
    "deepen": ("torch-sr-deepen", "torch_sr.cli.deepen"),
    "export": ("torch-sr-export", "torch_sr.cli.export"),
    "interpolate": ("python net_interpolation.py", "torch_sr.cli.net_interpolation"),
    "test": ("python test.py", "torch_sr.cli.test"),
}
STOPPED = (EXIT_INTERRUPTED, EXIT_BROKEN_PIPE, EXIT_TERMINATED)  # Ctrl-C or SIGTERM (after a checkpoint), or our reader gone
WRITES = ("deepen", "export")  # steps whose second argument is the file they write (interpolate: its last)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="torch-sr-reproduce",
        description="Reproduce a shipped model from scratch: run its recipe's training stages, deepening and export "
        "steps in order (from the repository root). Running it again continues where it stopped.",
        formatter_class=HelpFormatter,
        epilog=exit_status_epilog(
            {
                EXIT_OK: "every step done",
                EXIT_ERROR: "an error: one line on stderr says which step and why",
                EXIT_INTERRUPTED: "interrupted (Ctrl-C; a training step first writes a checkpoint): run it again to continue",
                EXIT_TERMINATED: "a training step stopped by SIGTERM, with a checkpoint: run it again to continue",
            }
        ),
    )
    p.add_argument("recipe", metavar="MODEL", help="a shipped model's name (its configs/recipes/MODEL/recipe.json) or a recipe file")
    p.add_argument("--dry-run", action="store_true", help="print the steps as shell commands, run nothing")
    return p


def load_recipe(spec: str) -> list[list[str]]:
    """The steps of a recipe named by model or path; a TorchSRError naming the file and the bad step otherwise."""
    path = Path(spec) if spec.endswith(".json") else RECIPES / spec / "recipe.json"
    if not path.is_file():
        known = sorted(p.parent.name for p in RECIPES.glob("*/recipe.json"))
        hint = f"recipes here: {', '.join(known)}" if known else f"run it from the repository root (no {RECIPES}/ here)"
        raise TorchSRError(f"no recipe {path}; {hint}")
    try:
        steps = json.loads(path.read_text(encoding="utf-8"))["steps"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TorchSRError(f"{path}: not a recipe ({e}); expected {{\"steps\": [[tool, args...], ...]}}") from None
    if not isinstance(steps, list):
        raise TorchSRError(f"{path}: \"steps\" is a {type(steps).__name__}, not a list of [tool, args...]")
    for k, step in enumerate(steps):
        if not (isinstance(step, list) and step and all(isinstance(a, str) for a in step) and step[0] in TOOLS):
            raise TorchSRError(f"{path}: step {k + 1} {step!r} is not [tool, args...] with tool one of {', '.join(TOOLS)}")
        problem = _step_problem(step)
        if problem:
            raise TorchSRError(f"{path}: step {k + 1} {step!r}: {problem}")
    return steps


def _step_problem(step: list[str]) -> str | None:
    """What makes a well-typed step unrunnable here: missing arguments, an option without its value."""
    tool, args = step[0], step[1:]
    if tool in WRITES and len(args) < 2:
        return f"{tool} needs an input and an output file"
    if not args:
        return f"{tool} needs its arguments"
    for option in ("--output-dir", "--stop-after"):
        if option in args and args.index(option) == len(args) - 1:
            return f"{option} without its value"
    if "--stop-after" in args and not args[args.index("--stop-after") + 1].isdigit():
        return "--stop-after takes a number of iterations"
    return None


def shell_line(step: Sequence[str]) -> str:
    return " ".join([TOOLS[step[0]][0], *(shlex.quote(a) if "*" not in a else a for a in step[1:])])


def expand(arg: str) -> str:
    """A glob argument as the one file it matches (the newest when a run left several)."""
    if "*" not in arg:
        return arg
    matches = sorted(glob.glob(arg), key=lambda p: Path(p).stat().st_mtime)
    if not matches:
        raise TorchSRError(f"{arg} matches no file: did the step that writes it finish?")
    return matches[-1]


def _output_dir(train_args: list[str]) -> Path:
    return Path(train_args[train_args.index("--output-dir") + 1]) if "--output-dir" in train_args else Path("saved_models")


def _products(later: list[list[str]], out: Path) -> list[str]:
    """The files that the deepen/export steps after a training step write from its output folder."""
    return [step[2] for step in later if step[0] in WRITES and Path(step[1]).parent == out]


def _iterations_done(train_args: list[str]) -> int:
    """Iterations the run in the step's output folder has trained (its newest checkpoint; 0 without one)."""
    from torch_sr.training.checkpointing import TRAINING_KEY
    from torch_sr.training.resume import find_checkpoint

    found = find_checkpoint(None, True, _output_dir(train_args))  # the one train.py --resume would take
    if found is None:
        return 0
    state = found[1][TRAINING_KEY]
    return int(state["step_offset"]) + int(state["iteration"])


def _run_tool(tool: str, argv: list[str]) -> int:
    """A tool's exit status, also when it ends by SystemExit (argparse's --help or a usage error)."""
    try:
        return _tool(tool)(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_OK if e.code is None else EXIT_ERROR


def _tool(name: str) -> Callable[[list[str]], int]:
    import importlib

    return importlib.import_module(TOOLS[name][1]).main


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    steps = load_recipe(args.recipe)
    for k, step in enumerate(steps, 1):
        print(f"[{k}/{len(steps)}] {shell_line(step)}", flush=True)
        if args.dry_run:
            continue
        tool = step[0]
        written = step[2] if tool in WRITES else step[-1] if tool == "interpolate" else None
        if written is not None and Path(written).exists():  # before its inputs are looked for: they may be gone
            print(f"  {written} exists: kept", flush=True)
            continue
        rest = [expand(a) for a in step[1:]]
        if tool == "train":
            products = _products(steps[k:], _output_dir(rest))
            if products and all(Path(p).exists() for p in products):
                print(f"  what later steps make of it exists ({', '.join(products)}): kept", flush=True)
                continue
            if "--stop-after" in rest:  # a stage stopped early by design: N iterations in all, over any reruns
                i = rest.index("--stop-after") + 1
                target, done = int(rest[i]), _iterations_done(rest)
                if done >= target:
                    print(f"  stopped by design after {target} iterations, and its checkpoint exists: kept", flush=True)
                    continue
                rest[i] = str(target - done)
            rest.append("--resume")  # a new run when the output dir has no checkpoint
        status = _run_tool(tool, rest)
        if status in STOPPED:
            print(f"step {k} stopped by a signal; run this again to continue where it stopped", flush=True)
            return status
        if status != EXIT_OK:
            raise TorchSRError(f"step {k} ({shell_line(step)}) exited with status {status}; fix it and run this again")
    return EXIT_OK


if __name__ == "__main__":
    import sys

    sys.exit(main())
