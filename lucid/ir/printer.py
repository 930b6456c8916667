"""The IR text form (docs/DESIGN.md, "IR text form") and a Graphviz view.

Names are given here, never stored in the IR: inputs and params print their hint (made
unique with a `_1` suffix, quoted when not a plain name), every other value is numbered
`%0, %1, ...` in printed order, region values included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lucid.errors import SourceLoc, format_diagnostic
from lucid.ir.types import Attr, DType

if TYPE_CHECKING:  # the IR classes appear in annotations only: core imports this module
    from lucid.ir.core import Graph, Node, Value

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
INDENT = "  "
UNDEFINED = "%<undefined>"


def format(graph: Graph, locs: bool = False) -> str:
    """The text of `graph`, ending in a newline; `locs=True` appends `loc("file":line)`."""
    return "\n".join(format_lines(graph, locs)[0]) + "\n"


def format_module(graphs: Iterable[Graph], locs: bool = False) -> str:
    """Several graphs, separated by blank lines (e.g. a forward and its backward graph)."""
    return "\n".join(format(g, locs) for g in graphs)


def format_lines(graph: Graph, locs: bool = False) -> tuple[list[str], dict[Node, int]]:
    """The printed lines of `graph` and the line index of every node (bodies included)."""
    # A first run names every definition, so that a use before its definition (which only
    # an invalid graph has, and verify wants to show) still prints the name it will get.
    first = _Printer(locs, {})
    first.run(graph)
    second = _Printer(locs, first.names)
    second.run(graph)
    return second.lines, second.where


def diagnose(
    message: str,
    graph: Graph | None = None,
    node: Node | None = None,
    loc: SourceLoc | None = None,
    context: int = 2,
) -> str:
    """A diagnostic for `node` of `graph`: its SourceLoc, then the IR lines around it."""
    if loc is None and node is not None:
        loc = node.loc
    if graph is None or node is None:
        return format_diagnostic(message, loc)
    lines, where = format_lines(graph)
    return format_diagnostic(message, loc, lines, where.get(node), context)


def format_attr(value: Attr) -> str:
    """One attribute value: ints, float reprs, true/false/none, quoted strings, dtypes, lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, DType):
        return value.value
    return "[" + ", ".join(format_attr(v) for v in value) + "]"


def quote(text: str) -> str:
    """A double-quoted string literal with JSON escapes (the parser reads it with json)."""
    return json.dumps(text, ensure_ascii=False)


def format_name(name: str) -> str:
    """`%name`, or `%"..."` when `name` is not a plain identifier."""
    return "%" + (name if NAME_RE.match(name) else quote(name))


def format_loc(loc: SourceLoc) -> str:
    """`loc("file.py":12)`."""
    return f"loc({quote(loc.file)}:{loc.line})"


@dataclass
class _Printer:
    """One printing run: names values in printed order and records each node's line.

    `names` maps each value to its printed token (`%0`, `%x`, `%"a b"`); `used` holds the
    hints taken so far, so two inputs hinted `x` print as `%x` and `%x_1`.
    """

    locs: bool
    fallback: dict[Value, str]
    names: dict[Value, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    where: dict[Node, int] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    counter: int = 0

    def run(self, graph: Graph) -> None:
        """Print `graph`, walking regions with an explicit stack."""
        inputs = ", ".join(self._decl(v, hinted=True) for v in graph.inputs)
        params = ", ".join(self._decl(v, hinted=True) for v in graph.params)
        types = ", ".join(str(t) for t in graph.output_types)
        gname = graph.name if NAME_RE.match(graph.name) else quote(graph.name)
        head = f"graph @{gname}({inputs})"
        head += f" params({params})" if graph.params else ""
        self.lines.append(f"{head} -> ({types}) {{")
        # each frame: (graph, iterator over its nodes, depth); depth 1 is the top level
        stack: list[tuple[Graph, Iterator[Node], int]] = [(graph, iter(graph.nodes), 1)]
        while stack:
            g, nodes, depth = stack[-1]
            node = next(nodes, None)
            pad = INDENT * depth
            if node is None:
                stack.pop()
                word = "return" if not stack else "yield"
                self.lines.append(f"{pad}{word}{self._uses(g.outputs)}")
                if stack:
                    self.lines.append(INDENT * (depth - 1) + "}")
                continue
            self.where[node] = len(self.lines)
            self.lines.append(pad + self._node_line(node))
            if node.body is not None:
                args = ", ".join(self._decl(v, hinted=False) for v in node.body.inputs)
                self.lines.append(f"{pad}{INDENT}^({args}):")
                stack.append((node.body, iter(node.body.nodes), depth + 1))
        self.lines.append("}")

    def _node_line(self, node: Node) -> str:
        results = ", ".join(self._define(v, hinted=False) for v in node.results)
        line = f"{results} = {node.op}{self._uses(node.inputs)}"
        if node.attrs:
            line += (
                " {"
                + ", ".join(f"{k}={format_attr(v)}" for k, v in sorted(node.attrs.items()))
                + "}"
            )
        line += " : " + ", ".join(str(v.type) for v in node.results)
        if self.locs and node.loc is not None:
            line += " " + format_loc(node.loc)
        return line + (" {" if node.body is not None else "")

    def _uses(self, values: tuple[Value, ...]) -> str:
        if not values:
            return ""
        return " " + ", ".join(self._use(v) for v in values)

    def _use(self, v: Value) -> str:
        return self.names.get(v) or self.fallback.get(v) or UNDEFINED

    def _decl(self, v: Value, hinted: bool) -> str:
        return f"{self._define(v, hinted)}: {v.type}"

    def _define(self, v: Value, hinted: bool) -> str:
        if hinted and v.hint is not None:
            name, k = v.hint, 1
            while name in self.used:
                name, k = f"{v.hint}_{k}", k + 1
            self.used.add(name)
            token = format_name(name)
        else:
            token = f"%{self.counter}"
            self.counter += 1
        self.names[v] = token
        return token


# ---------------------------------------------------------------- Graphviz


def to_dot(graph: Graph) -> str:
    """Graphviz DOT: a box per node labelled with its op and type, an edge per value use."""
    namer = _Printer(False, {})
    namer.run(graph)  # the same names as the text form, so the two views can be compared
    names = namer.names
    out = [f"digraph {_dot_str(graph.name)} {{", '  node [shape=box, fontname="monospace"];']
    ids: dict[Value, str] = {}
    for i, v in enumerate((*graph.inputs, *graph.params)):
        ids[v] = f"v{i}"
        out.append(f"  v{i} [shape=ellipse, label={_dot_str(f'{names[v]}: {v.type}')}];")
    for i, node in enumerate(graph.nodes):
        label = f"{node.op}\n" + ", ".join(str(r.type) for r in node.results)
        if node.body is not None:
            label += "\n[" + " -> ".join(n.op for n in node.body.nodes) + "]"
        out.append(f"  n{i} [label={_dot_str(label)}];")
        for v in node.inputs:
            src = ids.get(v, "undefined")
            out.append(f"  {src} -> n{i} [label={_dot_str(names.get(v, UNDEFINED))}];")
        for r in node.results:
            ids[r] = f"n{i}"
    out.append('  ret [shape=doublecircle, label="return"];')
    for v in graph.outputs:
        out.append(
            f"  {ids.get(v, 'undefined')} -> ret [label={_dot_str(names.get(v, UNDEFINED))}];"
        )
    out.append("}")
    return "\n".join(out) + "\n"


def to_svg(graph: Graph, *, timeout: float = 30.0) -> str | None:
    """The graph drawn by Graphviz's `dot` as SVG text, or None when `dot` is not installed
    (or fails): callers fall back to the text form."""
    import shutil
    import subprocess

    dot = shutil.which("dot")
    if dot is None:
        return None
    try:
        done = subprocess.run(
            [dot, "-Tsvg"],
            input=to_dot(graph).encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


def _dot_str(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as \\n."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
