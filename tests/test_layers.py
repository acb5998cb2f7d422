"""The package's layers: the library never reaches up into the command line, and packages import in one direction."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "torch_sr"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, module_level_only: bool) -> set[str]:
    """torch_sr modules imported by a file (only those run at import time with `module_level_only`)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("torch_sr"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("torch_sr"))
    return found


def unit(module: str) -> str:
    """The layer a module belongs to: its top-level sub-package or module (`torch_sr.archs.srvgg` -> `archs`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "torch_sr"


def test_no_library_module_imports_the_command_line():
    upward = {
        name: sorted(i for i in imports(path, module_level_only=False) if unit(i) == "cli")
        for name, path in modules().items()
        if unit(name) != "cli"
    }
    assert {k: v for k, v in upward.items() if v} == {}


def test_library_modules_import_without_the_command_line():
    library = [name for name in modules() if unit(name) != "cli"]
    code = f"import sys\nfor m in {library!r}:\n    __import__(m)\nprint(sorted(m for m in sys.modules if m.startswith('torch_sr.cli')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]"


def test_packages_import_each_other_in_one_direction():
    """No cycle between packages through import-time imports (lazy imports inside functions may go anywhere)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        if name == "torch_sr":
            continue
        deps = {unit(i) for i in imports(path, module_level_only=True)} - {unit(name), "torch_sr"}
        deps &= {unit(m) for m in modules()}
        graph.setdefault(unit(name), set()).update(deps)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join([*trail, node, dep])
            if dep not in state:
                visit(dep, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
