"""The house rules a reader relies on: no import cycles among the package's modules
(imports inside functions included, so none can hide one), and number formatting that
depends on nothing of the package."""
import ast
from pathlib import Path

import dispatchflops

PACKAGE = Path(dispatchflops.__file__).parent


def _modules() -> dict:
    """{module name: its source tree} of every module of the package ("__init__" too)."""
    return {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in PACKAGE.glob("*.py")}


def _imports(tree, modules) -> set:
    """The package's modules a module imports, anywhere in it (the C extension ``_C``
    included: it imports nothing back)."""
    modules = set(modules) | {"_C"}
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module is None:  # from . import a, b
                out |= {a.name if a.name in modules else "__init__" for a in node.names}
            elif node.level == 1:  # from .a import b
                out.add(node.module.split(".")[0])
            elif node.level == 0 and (node.module or "").startswith("dispatchflops"):
                parts = node.module.split(".")
                out.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "dispatchflops":
                    out.add(parts[1] if len(parts) > 1 else "__init__")
    return out


def _cycle(graph: dict):
    """One import cycle of ``graph`` as a list of modules, or None."""
    state: dict = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_graph_sees_imports_at_every_level():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    tree = ast.parse("def f():\n    from .results import Results\n    from . import export\n")
    assert _imports(tree, {"results", "export"}) == {"results", "export"}


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(tree, modules) - {name} for name, tree in modules.items()}
    assert {"mode", "results", "export", "table", "views"} <= graph.keys()
    graph.pop("__init__")  # the package imports its modules; none may import it back
    assert not any("__init__" in deps for deps in graph.values()), graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_formatting_depends_on_nothing_of_the_package():
    assert _imports(_modules()["formatting"], _modules()) == set()
