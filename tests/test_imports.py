"""cocktail's modules import one another one way only: no cycle, not even through an import inside a function.

The graph is read from the source with ``ast`` (nothing is imported), so a cycle that Python happens to
survive today, because one side imports late, is caught as well.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "cocktail"
# What the model-folder format and the model card may build on: nothing that loads, trains or fetches models.
FORMAT_LAYER = {"cocktail.errors", "cocktail.assets", "cocktail.networks", "cocktail.images", "cocktail.sampling",
                "cocktail.folder", "cocktail.card", "cocktail.provenance", "cocktail.specs"}


def module_names(package: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package (``__init__`` is the package itself)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = [package.name, *path.relative_to(package).with_suffix("").parts]
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports, at module level or anywhere inside a function."""
    modules = module_names(package)
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, is_package)
                # ``from pkg import mod`` imports a module; ``from mod import name`` the module holding the name.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module name of ``from <node.module> import …`` written in ``importer``."""
    if not node.level:
        return node.module or ""
    parts = importer.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, …, a]``, or None when the graph runs one way."""
    state = {}  # module → "open" while its imports are being followed, "done" after

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target, path + [target])):
                return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [module])):
            return cycle
    return None


def test_cocktail_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert {"cocktail.union", "cocktail.hub", "cocktail.convert", "cocktail.folder", "cocktail.card",
            "cocktail.merge.plan", "cocktail.merge.methods.base", "cocktail.merge.run"} <= set(graph)
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_the_union_model_is_only_a_container_and_methods_are_handed_their_plan():
    graph = import_graph(PACKAGE)
    assert not {m for m in graph["cocktail.union"] if m.startswith(("cocktail.merge", "cocktail.training"))}
    merging = {"cocktail.merge.plan", "cocktail.merge.stages", "cocktail.merge.run"}
    for module in (m for m in graph if m.startswith("cocktail.merge.methods.")):
        assert not graph[module] & merging, f"{module} imports {sorted(graph[module] & merging)}"


def test_folder_format_and_model_card_build_on_nothing_above_them():
    graph = import_graph(PACKAGE)
    for module in ("cocktail.folder", "cocktail.card", "cocktail.provenance", "cocktail.specs"):
        assert graph[module] <= FORMAT_LAYER, f"{module} imports {sorted(graph[module] - FORMAT_LAYER)}"
    assert "cocktail.union" not in graph["cocktail.hub"] | graph["cocktail.convert"]


def test_find_cycle_reports_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"b", "c"}}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y2"}, "y2": {"y"}}) == ["y", "y2", "y"]


@pytest.mark.parametrize("late_import", ["from .. import a", "from ..a import VALUE", "from pkg.a import VALUE",
                                         "import pkg.a"])
def test_an_import_inside_a_function_closes_a_cycle(tmp_path, late_import):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub.b import helper\n\nVALUE = 1\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text(f"def helper():\n    {late_import}\n")
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others (imports inside functions included)."""
    seen, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), set()) - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_importing_the_package_loads_no_merging_or_training():
    """``from cocktail import UnionModel`` (the demo, a user sampling a union) should not pay for the trainer."""
    graph = import_graph(PACKAGE)
    assert "cocktail.union" in reachable(graph, "cocktail")
    heavy = {m for m in reachable(graph, "cocktail") if m.startswith(("cocktail.merge", "cocktail.training"))}
    assert not heavy, f"import cocktail loads {sorted(heavy)}"
