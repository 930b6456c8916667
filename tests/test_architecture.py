"""The shape of the package: no import cycles inside lucid/, and no module reaching into another
module's private names or into a private module of another package.

Every `import` statement in every module under lucid/ counts, wherever it sits: at the top,
inside a function, inside `try:`. A function-level import still ties the two modules together
(it only hides the cycle until the function first runs), which is what these tests are about.
Imports that only exist under `if TYPE_CHECKING:` never execute, so they are left out of the
cycle check; they still count for the private-name check, since they couple to the name all
the same. Dynamic imports (`importlib.import_module(f"...")`) cannot be resolved statically
and are not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lucid

# the package under test: the installed one when CI tests the wheel, else the checkout's
PACKAGE = Path(lucid.__file__).resolve().parent


@dataclass(frozen=True)
class Import:
    """One module importing another: where it is written and what it names."""

    importer: str  # dotted module name
    target: str  # the module the statement loads (a submodule if the name is one)
    name: str | None  # the name taken with `from target import name`, None if not a name
    path: str  # file relative to the repository root
    line: int
    statement: str  # the source text, for the report
    type_checking: bool  # inside `if TYPE_CHECKING:` only (never executes)


def module_names(root: Path) -> dict[str, Path]:
    """{dotted name: file} for every module of the package at `root` (packages as __init__)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in the tree, with whether it is under `if TYPE_CHECKING:`."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, guarded = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, guarded
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend((child, True) for child in node.body)
            stack.extend((child, guarded) for child in node.orelse)
        else:
            stack.extend((child, guarded) for child in ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, modules: dict[str, Path], root: Path) -> list[Import]:
    """The imports of `module` that land inside the package (`modules`)."""
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    lines = source.splitlines()
    is_package = path.name == "__init__.py"
    here = module if is_package else module.rpartition(".")[0]
    rel = str(path.relative_to(root.parent))
    found: list[Import] = []

    def add(target: str, name: str | None, node: ast.stmt, guarded: bool) -> None:
        if target in modules:
            text = lines[node.lineno - 1].strip()
            found.append(Import(module, target, name, rel, node.lineno, text, guarded))

    for node, guarded in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, None, node, guarded)
            continue
        if node.level:  # relative: `from .x import y` is resolved against this package
            base = here.split(".")
            base = base[: len(base) - (node.level - 1)]
            source_module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source_module = node.module or ""
        for alias in node.names:
            submodule = f"{source_module}.{alias.name}"
            if submodule in modules:  # `from lucid.ir import ops`: the submodule itself
                add(submodule, None, node, guarded)
            else:
                add(source_module, alias.name, node, guarded)
    return found


def all_imports(root: Path = PACKAGE) -> list[Import]:
    """Every import inside the package at `root`, in file order."""
    modules = module_names(root)
    return [i for name, path in modules.items() for i in imports_of(name, path, modules, root)]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of size > 1 (or with a self-edge), iteratively, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return sorted(found)


def cycle_report(imports: list[Import]) -> list[str]:
    """One block per import cycle: its modules, then each import that closes it."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.type_checking:
            graph.setdefault(imp.importer, set()).add(imp.target)
    blocks = []
    for component in strongly_connected(graph):
        members = set(component)
        edges = sorted(
            {
                f"    {i.path}:{i.line}: {i.statement}"
                for i in imports
                if not i.type_checking and i.importer in members and i.target in members
            }
        )
        blocks.append(f"  cycle of {len(component)}: {', '.join(component)}\n" + "\n".join(edges))
    return blocks


def _owner_of_private_module(module: str) -> str | None:
    """For a module with an `_underscore` part, the package it belongs to; else None."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def privacy_report(imports: list[Import]) -> list[str]:
    """One line per import of another module's private name or another package's private module."""
    lines = []
    for imp in imports:
        where = f"  {imp.path}:{imp.line}: {imp.statement}"
        if imp.name and imp.name.startswith("_") and not imp.name.startswith("__"):
            lines.append(f"{where}  [private name {imp.name} of {imp.target}]")
        owner = _owner_of_private_module(imp.target)
        if owner is not None and not (
            imp.importer == owner or imp.importer.startswith(owner + ".")
        ):
            lines.append(f"{where}  [private module {imp.target}, private to {owner}]")
    return sorted(set(lines))


def test_no_import_cycles_in_lucid() -> None:
    blocks = cycle_report(all_imports())
    assert not blocks, (
        f"{len(blocks)} import cycle(s) inside lucid/ (imports inside functions count):\n"
        + "\n".join(blocks)
    )


def test_no_private_names_or_modules_imported_from_elsewhere() -> None:
    lines = privacy_report(all_imports())
    assert not lines, (
        f"{len(lines)} import(s) of another module's private name, or of a private module from "
        "outside its package:\n" + "\n".join(lines)
    )


# ---------------------------------------------------------------- the checker checks


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_sees_cycles_through_functions_but_not_type_checking(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "b.py": "def f():\n    from . import a\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.d\n",
            "d.py": "import pkg.c\n",
        },
    )
    blocks = cycle_report(all_imports(root))
    assert len(blocks) == 1 and "cycle of 2: pkg.a, pkg.b" in blocks[0]
    assert "pkg/b.py:2: from . import a" in blocks[0]


def test_the_checker_sees_private_names_and_modules(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "x/__init__.py": "from ._m import helper\n",  # a package may use its own _m
            "x/_m.py": "def helper(): ...\ndef _hidden(): ...\n",
            "x/y.py": "from pkg.x._m import _hidden\n",
            "z.py": "from pkg.x import _m\nfrom pkg import __version__\n",
        },
    )
    lines = privacy_report(all_imports(root))
    assert lines == [
        "  pkg/x/y.py:1: from pkg.x._m import _hidden  [private name _hidden of pkg.x._m]",
        "  pkg/z.py:1: from pkg.x import _m  [private module pkg.x._m, private to pkg.x]",
    ]
