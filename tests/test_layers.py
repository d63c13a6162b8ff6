"""Every module of effdiff imports only from its own layer or lower ones (``effdiff.layers``), no import
closes a circle (between files or between packages), and only the app layer imports the bench. Imports
inside functions count; relative imports are resolved. docs/architecture.md shows the same table."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from effdiff import layers

SRC = Path(__file__).resolve().parents[1] / "src"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module of a relative ``from`` import."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def imports_of(path: Path, module: str, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement of the file, at any depth; ``from P import n``
    counts as importing ``P.n`` when that is a module, else ``P``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = (_absolute(module, path.name == "__init__.py", node.level, node.module) if node.level
                      else node.module)
            out += [(f"{target}.{a.name}" if f"{target}.{a.name}" in known else target, node.lineno)
                    for a in node.names]
    return out


def package_graph() -> dict[str, dict[str, int]]:
    """module -> {imported effdiff (or top-level bench) module: first line}, for every file under src/effdiff."""
    files = {module_name(p): p for p in sorted((SRC / "effdiff").rglob("*.py"))}
    graph = {}
    for mod, path in files.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(path, mod, set(files)):
            if target.split(".")[0] in ("effdiff", "bench"):
                edges.setdefault(target, line)
        graph[mod] = edges
    return graph


def upward(graph: dict, layer_of) -> list[str]:
    """Imports that climb a layer."""
    order = layers.LAYERS
    return [f"{m} ({layer_of(m)}) imports {t} ({layer_of(t)}) at line {line}"
            for m, edges in graph.items() for t, line in edges.items()
            if t in graph and order.index(layer_of(t)) > order.index(layer_of(m))]


def bench_imports(graph: dict, layer_of) -> list[str]:
    """Imports of the bench (effdiff.bench or the checkout's bench/ scripts) from outside the app layer."""
    return [f"{m} ({layer_of(m)}) imports {t} at line {line}" for m, edges in graph.items() for t, line in edges.items()
            if (t == "bench" or t.startswith(("bench.", "effdiff.bench"))) and layer_of(m) != "app"]


def circles(graph: dict) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_of(module: str, layer_of=None) -> str:
    """``effdiff.X`` for any module under ``effdiff.X`` (the package root stays itself). With ``layer_of``, a
    module of another layer than its package (an entry point such as ``distributed/cli.py``, a workflow such
    as ``latent/train.py``) is a part of its own: ``effdiff.X:LAYER``."""
    pkg = ".".join(module.split(".")[:2])
    if layer_of is None or pkg == "effdiff" or layer_of(module) == layer_of(pkg):
        return pkg
    return f"{pkg}:{layer_of(module)}"


def by_package(graph: dict, layer_of=None) -> dict[str, dict[str, int]]:
    """The graph between packages (top-level modules count as packages, see ``package_of``); edges inside
    a package drop out."""
    out: dict[str, dict[str, int]] = {}
    for m, edges in graph.items():
        pm = package_of(m, layer_of)
        out.setdefault(pm, {})
        for t, line in edges.items():
            if t in graph and package_of(t, layer_of) != pm:
                out[pm].setdefault(package_of(t, layer_of), line)
    return out


@pytest.fixture(scope="module")
def graph():
    return package_graph()


def test_every_module_has_a_layer(graph):
    missing = []
    for m in graph:
        try:
            layers.layer_of(m)
        except KeyError:
            missing.append(m)
    assert not missing, f"modules missing from effdiff.layers.TABLE: {missing}"


def test_no_import_climbs_a_layer(graph):
    bad = upward(graph, layers.layer_of)
    assert not bad, "imports that climb a layer:\n" + "\n".join(bad)


def test_only_the_app_layer_imports_the_bench(graph):
    bad = bench_imports(graph, layers.layer_of)
    assert not bad, "the library imports its bench:\n" + "\n".join(bad)


def test_no_import_circle_between_files(graph):
    assert circles(graph) == []


def test_no_import_circle_between_packages(graph):
    assert circles(by_package(graph, layers.layer_of)) == []


def test_the_checker_catches_a_planted_upward_import_and_circles():
    layer = {"effdiff.io": "base", "effdiff.sampling": "driver", "effdiff.zoo": "factory",
             "effdiff.data": "contract", "effdiff.cli": "app"}.__getitem__
    g = {"effdiff.io": {}, "effdiff.sampling": {"effdiff.io": 1}, "effdiff.zoo": {"effdiff.sampling": 3},
         "effdiff.data": {}, "effdiff.cli": {"effdiff.zoo": 1}}
    assert upward(g, layer) == [] and circles(g) == [] and bench_imports(g, layer) == []
    g["effdiff.data"] = {"effdiff.zoo": 7}                              # contract -> factory: climbs
    assert upward(g, layer) == ["effdiff.data (contract) imports effdiff.zoo (factory) at line 7"]
    g["effdiff.io"] = {"effdiff.cli": 2}                                # io -> cli -> zoo -> sampling -> io
    assert circles(g) == [["effdiff.cli", "effdiff.io", "effdiff.sampling", "effdiff.zoo"]]
    g["effdiff.sampling"]["effdiff.bench.runner"] = 9
    assert bench_imports(g, layer) == ["effdiff.sampling (driver) imports effdiff.bench.runner at line 9"]
    files = {"effdiff.a.x": {"effdiff.b.y": 1}, "effdiff.b.y": {}, "effdiff.b.z": {"effdiff.a.w": 4},
             "effdiff.a.w": {}}                                     # no file circle, but packages a <-> b
    assert circles(files) == [] and circles(by_package(files)) == [["effdiff.a", "effdiff.b"]]
    lay = {"effdiff.a": "methods", "effdiff.a.x": "methods", "effdiff.a.w": "methods", "effdiff.b": "methods",
           "effdiff.b.y": "methods", "effdiff.b.z": "app"}.__getitem__        # b.z: an app entry point inside b
    assert by_package(files, lay)["effdiff.b:app"] == {"effdiff.a": 4} and circles(by_package(files, lay)) == []


def test_imports_inside_functions_and_relative_imports_are_read(tmp_path):
    pkg = tmp_path / "effdiff" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .mod import f\n")
    (pkg / "mod.py").write_text("def f():\n    from .. import zoo\n    from ..bench.runner import run\n")
    known = {"effdiff", "effdiff.zoo", "effdiff.sub", "effdiff.sub.mod", "effdiff.bench.runner"}
    assert imports_of(pkg / "mod.py", "effdiff.sub.mod", known) == [("effdiff.zoo", 2), ("effdiff.bench.runner", 3)]
    assert imports_of(pkg / "__init__.py", "effdiff.sub", known) == [("effdiff.sub.mod", 1)]


def test_the_architecture_page_shows_this_table():
    assert layers.markdown() in DOC.read_text(), "regenerate the table in docs/architecture.md from effdiff.layers"
