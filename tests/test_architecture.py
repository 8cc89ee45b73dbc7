"""The package's shape: no import circle, no upward import, no oversized module without a reason.

The imports are read from the source (every ``import`` and ``from ... import``, also inside
functions, except under ``if TYPE_CHECKING:``), so a lazy import cannot hide a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "imbvision"

#: Lowest first. A module may import from its own layer and the layers below it, never above.
#: The most specific prefix decides a module's layer.
LAYERS: list[tuple[str, ...]] = [
    ("imbvision._version", "imbvision.errors", "imbvision.registry", "imbvision._io", "imbvision._csv", "imbvision._text",
     "imbvision._digest", "imbvision._progress", "imbvision._fingerprint", "imbvision._limits",
     "imbvision.notices", "imbvision._choices",
     "imbvision.evaluation.threshold_rule"),  # plain data / text grammar: read by the spec at start-up
    ("imbvision.data",),
    ("imbvision.spec",),  # the run specification: declared settings, read by everything above
    ("imbvision.backbones",),
    ("imbvision.strategies",),
    ("imbvision.evaluation", "imbvision.htmlreport"),  # one HTML builder for every report
    ("imbvision.training", "imbvision.bundle_schema", "imbvision.bundle_heads"),  # head, cell, network, fine-tune: below the saved model
    ("imbvision.model", "imbvision.explain"),
    ("imbvision._rundir",),  # run folders: staging, locks, resume checks
    ("imbvision.experiments", "imbvision.audit", "imbvision.catalog"),  # the comparison's machinery, the audit
    ("imbvision.workflows",),  # train, compare, promote, demo: the orchestration, above everything they call
    ("imbvision.cli", "imbvision._cli_spec"),
]
TOP = "imbvision"  # the package __init__: lazy re-exports of the public API, above everything

#: Modules over the size limit whose split belongs to another issue item in progress (remove when done).
PENDING_SPLIT = {
}
MAX_LINES = 500
REASON = "Why one file:"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of this package it imports}`` for every module under ``src/imbvision``."""
    files = {(_module_name(p)): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{mod}.{alias.name}"
                    deps.add(sub if sub in files else mod)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def _layer(module: str) -> int:
    if module == TOP:
        return len(LAYERS)
    best, level = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    assert level is not None, f"{module} is in no layer; add it to LAYERS in {__file__}"
    return level


def test_no_import_circle():
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                circles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_upward_import():
    graph = import_graph()
    up = [f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
          for m, deps in sorted(graph.items()) for d in sorted(deps) if _layer(d) > _layer(m)]
    assert not up, "upward imports:\n" + "\n".join(up)


def test_model_depends_only_downward():
    deps = import_graph()["imbvision.model"]
    assert not any(d.startswith(("imbvision.workflows", "imbvision.training.finetune", "imbvision.experiments",
                                 "imbvision.cli")) for d in deps), deps
    assert "imbvision.training.network" in deps and "imbvision.evaluation.postprocess" in deps


def test_no_oversized_module_without_a_reason():
    long = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        n = len(path.read_text(encoding="utf-8").splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if n > MAX_LINES and REASON not in doc and rel not in PENDING_SPLIT:
            long.append(f"{rel}: {n} lines")
    assert not long, (f"modules over {MAX_LINES} lines without {REASON!r} in their docstring:\n" + "\n".join(long))


def test_the_workflows_are_the_only_orchestration_and_nothing_below_imports_them():
    """train/compare orchestration sits in one package above the model; training holds no run orchestrator."""
    graph = import_graph()
    below = [m for m in graph if not m.startswith(("imbvision.workflows", "imbvision.cli")) and m != TOP]
    users = sorted(m for m in below if any(d.startswith("imbvision.workflows") for d in graph[m]))
    assert not users, users
    assert "imbvision.model" in graph["imbvision.workflows.train"]
    up = sorted(f"{m} -> {d}" for m in graph if m.startswith("imbvision.training") for d in graph[m]
                if d.startswith(("imbvision.model", "imbvision.explain")))
    assert not up, up


def test_layering_test_sees_lazy_imports():
    """The graph includes imports inside functions (the old compare <-> ray_executor circle was one)."""
    graph = import_graph()
    assert "imbvision.experiments.cell" in graph["imbvision.experiments.ray_executor"]
    assert "imbvision.workflows.compare" not in graph["imbvision.experiments.ray_executor"]
    assert "imbvision.workflows.train" in graph["imbvision"]  # the lazy __getattr__ re-export
