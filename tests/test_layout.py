"""Layout: imports run one way through the rooms of the package, and no file or function is long.

The rooms, lowest first (each may import the lower ones, never a higher one)::

    data_prep < forecast.config < forecast.metrics < forecast.model < forecast.training
              < forecast.predict < forecast.evaluation < forecast.figures
              < forecast.cli, forecast.quickstart

The imports are read with :mod:`ast` from the source, at module level and inside functions, so an
import hidden in a function to dodge a cycle counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data_prep", "forecast")
LAYERS = (
    ("data_prep",),
    ("forecast", "forecast.config"),  # forecast/__init__.py holds only the version
    ("forecast.metrics",),
    ("forecast.model",),
    ("forecast.training",),
    ("forecast.predict",),
    ("forecast.evaluation",),
    ("forecast.figures",),
    ("forecast.cli", "forecast.quickstart", "forecast.__main__", "data_prep.__main__"),
)
# imports that may stay inside a function: optional or heavy dependencies, loaded only when used
LAZY_ALLOWED = {
    "dask",  # prep --workers: dask and its distributed cluster, only when asked for
    "distributed",
    "torch.utils.tensorboard",  # heavy: loaded only by the rank that writes the run log
    "threadpoolctl",  # optional: one BLAS thread for the synthetic world
    "data_prep.kernel",  # compiled with numba, an optional dependency
    "forecast.metrics.kernel",  # the same
}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
NOT_YET_SPLIT: dict[str, str] = {}  # module -> "file" or a function allowed over the limits


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    """Module name -> file, for every module of the two packages."""
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


SOURCES = _sources()


def _is_package(name: str) -> bool:
    return SOURCES[name].name == "__init__.py"


def _imported(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """Absolute module names an import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module if _is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}".rstrip(".")
    # ``from a import b`` runs module ``a.b`` when b is one of ours, else it takes a name from a
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in SOURCES else base for a in node.names]


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported name, line, inside a function) for every import statement of ``module``."""
    tree = ast.parse(SOURCES[module].read_text(encoding="utf-8"))
    found = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.extend((name, child.lineno, nested) for name in _imported(child, module))
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            visit(child, inner)

    visit(tree, False)
    return found


def _targets(module: str, name: str) -> list[str]:
    """Modules of the packages that importing ``name`` from ``module`` runs: the module itself and
    the ``__init__`` of each package above it that does not also hold ``module``."""
    parts = name.split(".")
    out = []
    for i in range(1, len(parts) + 1):
        target = ".".join(parts[:i])
        inside = module == target or module.startswith(target + ".")
        if target in SOURCES and not inside:
            out.append(target)
    return out


def _graph() -> dict[str, dict[str, int]]:
    """module -> {imported module of the packages: line of the import}."""
    graph = {}
    for module in SOURCES:
        edges = {}
        for name, line, _ in _imports(module):
            for target in _targets(module, name):
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def _layer(module: str) -> int:
    best, layer = "", -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best, layer = name, i
    assert layer >= 0, f"{module} is in no layer of tests/test_layout.py"
    return layer


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return out


def test_no_module_imports_itself_back_through_a_cycle():
    assert _cycles(_graph()) == []


def test_imports_never_point_to_a_higher_room():
    upward = [
        f"{module}:{line} -> {target}"
        for module, edges in _graph().items()
        for target, line in edges.items()
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_data_prep_never_imports_forecast():
    leaks = [
        f"{module}:{line} {name}"
        for module in SOURCES
        if module.startswith("data_prep")
        for name, line, _ in _imports(module)
        if name == "forecast" or name.startswith("forecast.")
    ]
    assert leaks == []


def test_imports_inside_functions_are_only_optional_heavy_dependencies():
    hidden = [
        f"{module}:{line} {name}"
        for module in SOURCES
        for name, line, nested in _imports(module)
        if nested and _top_import(name) not in LAZY_ALLOWED
    ]
    assert hidden == []


def _top_import(name: str) -> str:
    """The longest allowed prefix of an imported name, or the name itself."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in LAZY_ALLOWED:
            return ".".join(parts[:i])
    return name


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_files_and_functions_are_short(module):
    text = SOURCES[module].read_text(encoding="utf-8")
    exempt = NOT_YET_SPLIT.get(module)
    if exempt != "file":
        assert len(text.splitlines()) <= MAX_FILE_LINES, f"{module} is over {MAX_FILE_LINES} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
        and node.name != exempt
    ]
    assert long == []


def test_the_layout_check_sees_a_cycle_and_an_upward_arrow():
    graph = {"a": {"b": 1}, "b": {"a": 2}, "c": {}}
    assert _cycles(graph) == [["a", "b"]]
    assert _layer("forecast.figures.maps") > _layer("forecast.evaluation.scoring")
    assert _layer("forecast.training.loop") > _layer("forecast.model.network")
    assert _layer("data_prep.grid") < _layer("forecast.config")
