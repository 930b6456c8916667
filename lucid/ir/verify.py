"""The verifier: checks every invariant of a Graph and reports the first broken one in context."""

from __future__ import annotations

from lucid.errors import IRTypeError, VerifyError
from lucid.ir.core import Graph, Node, Value
from lucid.ir.ops import OPS
from lucid.ir.printer import diagnose


def verify(graph: Graph) -> None:
    """Raise VerifyError naming the node, its SourceLoc and its IR context if `graph` is invalid.

    Checks: each value defined once and before use; ops known; arity; attrs present, known and
    of the right kind; result types equal to the type rule's; outputs defined; fused bodies
    (which see only their own inputs) valid and matching their node. Bodies go on a worklist.
    """
    work: list[tuple[Graph, Node | None]] = [(graph, None)]
    while work:
        g, owner = work.pop()
        problem = _check_graph(g, work)
        if problem is not None:
            node, message = problem
            where = f"in the body of {owner.op}: " if owner is not None else ""
            # the context is always printed from the top-level graph, so the numbering in
            # the message is the numbering a user sees when printing the graph
            blamed = node or owner
            raise VerifyError(diagnose(where + message, graph, blamed), where + message, blamed)


def _check_graph(g: Graph, work: list[tuple[Graph, Node | None]]) -> tuple[Node | None, str] | None:
    """The first problem in `g` itself as (node or None, message); bodies are queued on `work`."""
    defined: set[Value] = set()
    for v in (*g.inputs, *g.params):
        if v in defined:
            return None, f"graph @{g.name}: {v} is declared twice as an input or param"
        defined.add(v)
    for node in g.nodes:
        message = _check_node(node, defined)
        if message is not None:
            return node, f"{node.op}: {message}"
        for r in node.results:
            if r in defined:
                return (
                    node,
                    f"{node.op}: result {r} is already defined (each value is defined once)",
                )
            defined.add(r)
        if node.body is not None:
            work.append((node.body, node))
    for i, v in enumerate(g.outputs):
        if v not in defined:
            return None, f"graph @{g.name}: output {i} ({v}) is not defined in the graph"
    return None


def _check_node(node: Node, defined: set[Value]) -> str | None:
    """What is wrong with `node`, given the values defined before it; None if nothing."""
    opdef = OPS.get(node.op)
    if opdef is None:
        return f"unknown op {node.op!r}"
    for i, v in enumerate(node.inputs):
        if v not in defined:
            return f"input {i} ({v}) is used before it is defined"
    arity = opdef.arity_problem(len(node.inputs))
    if arity is not None:
        return arity
    attr_problems = opdef.attr_problems(node.attrs)
    if attr_problems:
        return "; ".join(attr_problems)
    in_types = tuple(v.type for v in node.inputs)
    got = tuple(r.type for r in node.results)
    if opdef.region:
        body = node.body
        if body is None:
            return "a fused node needs a body graph"
        if body.params:
            return "a body graph takes no params"
        if body.input_types != in_types:
            return (
                f"body inputs ({_types(body.input_types)}) do not match the node's inputs "
                f"({_types(in_types)})"
            )
        want = body.output_types
    else:
        if node.body is not None:
            return "only fused ops have a body"
        try:
            want = opdef.infer(in_types, node.attrs)
        except IRTypeError as e:
            return f"the type rule rejects the inputs: {e}"
    if got != want:
        return f"result types ({_types(got)}) disagree with the type rule's ({_types(want)})"
    return None


def _types(types: tuple[object, ...]) -> str:
    return ", ".join(map(str, types))
