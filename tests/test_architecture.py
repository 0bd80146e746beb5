"""The shape of the library, drawn from its own imports: no loop, and training apart from reading.

Every ``import`` of a ``retdm`` module inside ``retdm/`` counts, also one inside a function or
under ``TYPE_CHECKING``: a lazy import hides a loop from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
# What trains, and so may import retdm.train: the `retdm train` command and the α × β sweep, which
# trains each point. Everything else reads a run through retdm.inference and retdm.checkpoint.
TRAINERS = {"retdm.cli", "retdm.sweep"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The retdm modules that ``path`` imports (``from a.b import c`` names ``a.b.c`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules}


def import_graph() -> nx.DiGraph:
    paths = {module_name(p): p for p in (ROOT / "retdm").rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(paths)
    for name, path in paths.items():
        graph.add_edges_from((name, target) for target in imports(path, set(paths)) if target != name
                             and not name.startswith(f"{target}."))  # a module's own package face
    return graph


def test_the_library_has_no_import_loop():
    graph = import_graph()
    assert graph.number_of_edges() > 100  # the walk found the imports at all
    loops = [" -> ".join([*cycle, cycle[0]]) for cycle in nx.simple_cycles(graph)]
    assert loops == [], "import loops in retdm/: " + "; ".join(loops)


def test_only_what_trains_imports_training():
    graph = import_graph()
    outside = sorted((source, target) for source, target in graph.edges
                     if target.startswith("retdm.train") and not source.startswith("retdm.train")
                     and source not in TRAINERS)
    assert outside == [], f"reading a run must not reach into retdm/train/ (use retdm.inference): {outside}"
