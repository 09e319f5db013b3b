"""The house rules a reader relies on: no import cycles among the package's modules
(imports inside functions included, so none can hide one), and number formatting that
depends on nothing of the package."""
import ast
from pathlib import Path

import dispatchflops

PACKAGE = Path(dispatchflops.__file__).parent


def _modules() -> dict:
    """{module name: its source tree} of every module of the package, dotted from the
    package ("" is the package itself, "sources" a sub-package's ``__init__``)."""
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = ast.parse(p.read_text(encoding="utf-8"))
    return out


def _package_of(name: str, modules) -> list:
    """The package a module's relative imports start from, as parts."""
    parts = name.split(".") if name else []
    is_package = any(m.startswith(name + ".") for m in modules if m) or name == ""
    return parts if is_package else parts[:-1]


def _imports(name: str, tree, modules) -> set:
    """The package's modules that module ``name`` imports, anywhere in it (the C
    extension ``_C`` included: it imports nothing back)."""
    known = set(modules) | {"_C"}

    def resolve(parts):
        dotted = ".".join(parts)
        while dotted not in known:  # an attribute of a module: the module
            dotted = dotted.rpartition(".")[0]
        return dotted

    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, modules)
                base = base[:len(base) - (node.level - 1)]
            elif (node.module or "").split(".")[0] == "dispatchflops":
                base = []
            else:
                continue
            mod = [p for p in (node.module or "").split(".") if p]
            if not node.level:
                mod = mod[1:]
            for alias in node.names:
                out.add(resolve(base + mod + [alias.name]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "dispatchflops":
                    out.add(resolve(parts[1:]))
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
    assert _imports("mode", tree, {"", "mode", "results", "export"}) == {"results", "export"}
    tree = ast.parse("from .common import x\nfrom . import files\nfrom .. import views\n")
    modules = {"", "views", "sources", "sources.common", "sources.files"}
    assert _imports("sources", tree, modules) == {"sources.common", "sources.files", "views"}
    assert _imports("sources.files", ast.parse("from . import common"), modules) == \
        {"sources.common"}


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, tree, modules) - {name} for name, tree in modules.items()}
    assert {"mode", "results", "export", "table", "views", "sources.hf"} <= graph.keys()
    graph.pop("")  # the package imports its modules; none may import it back
    assert not any("" in deps for deps in graph.values()), graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_formatting_depends_on_nothing_of_the_package():
    assert _imports("formatting", _modules()["formatting"], _modules()) == set()
