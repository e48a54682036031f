"""python/zspool imports without cycles: each module's run-time imports form a DAG.

The graph is read from the source with ``ast``. An edge is any import that can run: at the
top of a module or inside a function (a deferred import hides a cycle; it does not remove
it), but not one under ``if TYPE_CHECKING:`` (never run). An edge goes to the module named
(``from zspool.pressure import psi`` to ``zspool.pressure.psi`` when that is a module);
importing a submodule also runs its parent packages' ``__init__``, but a package that
re-exports its submodules is not a cycle, so parents are not edges.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import zspool

ROOT = Path(zspool.__file__).parent


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def run_time_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` that can run: at import time or later, in a
    function; not those under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for branch in child.orelse:
                yield from run_time_imports(branch)
        else:
            yield from run_time_imports(child)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module name -> the modules of the same tree it imports at run time."""
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    # Compiled modules (``zspool._core``, known by its stub) import nothing of the tree.
    graph: dict[str, set[str]] = {module_name(stub, root): set() for stub in root.rglob("*.pyi")}
    graph |= {name: set() for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in run_time_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in graph else base for alias in node.names]
            graph[name] |= {target for target in targets if target in graph and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in ``graph`` as a path that starts and ends at the same module, or None."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> list[str] | None:
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt in on_stack:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        on_stack.remove(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_zspool_has_no_import_cycle() -> None:
    graph = import_graph(ROOT)
    # The graph is really read: these run-time edges exist.
    assert "zspool.shrinker_policy" in graph["zspool.shrinker"]
    assert "zspool.shrinker_policy" in graph["zspool.policies"]
    assert "zspool.pressure.psi" in graph["zspool.pressure"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg.a import A\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\nA = 1\n")
    (package / "b.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    import pkg.a\n")
    (package / "sub" / "__init__.py").write_text("from . import c\n")
    (package / "sub" / "c.py").write_text("try:\n    from ..b import f\nexcept ImportError:\n    pass\n")
    (package / "_ext.pyi").write_text("import pkg\n")
    graph = import_graph(package)
    # Type-only imports are no edges; relative ones resolve.
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg._ext": set(),
        "pkg.a": set(),
        "pkg.b": set(),
        "pkg.sub": {"pkg.sub.c"},
        "pkg.sub.c": {"pkg.b"},
    }
    assert find_cycle(graph) is None
    (package / "b.py").write_text("def f():\n    import pkg.sub.c\n")
    assert find_cycle(import_graph(package)) == ["pkg.b", "pkg.sub.c", "pkg.b"]
