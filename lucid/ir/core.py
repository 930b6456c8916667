"""The IR data model: Value, Node, Graph, and the Builder that is the only way to make nodes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from lucid.errors import IRError, IRTypeError, SourceLoc
from lucid.ir.ops import OPS
from lucid.ir.printer import format as format_graph
from lucid.ir.printer import to_svg
from lucid.ir.types import Attr, DType, TensorType, freeze_attr, freeze_attrs

__all__ = ["Attr", "Builder", "Graph", "Node", "Value", "freeze_attr", "freeze_attrs"]


@dataclass(frozen=True, eq=False, slots=True)
class Value:
    """A tensor-valued SSA value. Identity equality: two Values are equal only if identical."""

    type: TensorType
    hint: str | None = None

    def __repr__(self) -> str:
        hint = f", hint={self.hint!r}" if self.hint is not None else ""
        return f"Value({self.type}{hint})"


@dataclass(frozen=True, eq=False, slots=True)
class Node:
    """One op application. Immutable; identity equality; `body` is set only for fused nodes."""

    op: str
    inputs: tuple[Value, ...]
    attrs: Mapping[str, Attr]
    results: tuple[Value, ...]
    loc: SourceLoc | None = None
    body: Graph | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "results", tuple(self.results))
        if not isinstance(self.attrs, MappingProxyType):
            object.__setattr__(self, "attrs", freeze_attrs(self.attrs))

    @property
    def result(self) -> Value:
        """The single result; IRError if the node has several."""
        if len(self.results) != 1:
            raise IRError(f"{self.op} has {len(self.results)} results; use .results")
        return self.results[0]

    def __repr__(self) -> str:
        types = ", ".join(str(r.type) for r in self.results)
        return f"<Node {self.op} ({len(self.inputs)} inputs) -> {types}>"


@dataclass(frozen=True, eq=False, slots=True)
class Graph:
    """A function of tensors.

    Invariants (checked by `verify`): nodes are topologically ordered; every value is defined
    exactly once, as an input, a param or a node result, before any use; outputs are defined.
    A fused node's body is a Graph of its own that sees only its inputs (no params).
    """

    name: str
    inputs: tuple[Value, ...]
    params: tuple[Value, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[Value, ...]

    def __post_init__(self) -> None:
        for field in ("inputs", "params", "nodes", "outputs"):
            object.__setattr__(self, field, tuple(getattr(self, field)))

    @property
    def input_types(self) -> tuple[TensorType, ...]:
        """Types of the runtime inputs."""
        return tuple(v.type for v in self.inputs)

    @property
    def param_types(self) -> tuple[TensorType, ...]:
        """Types of the parameters."""
        return tuple(v.type for v in self.params)

    @property
    def output_types(self) -> tuple[TensorType, ...]:
        """Types of the outputs."""
        return tuple(v.type for v in self.outputs)

    def all_values(self) -> list[Value]:
        """Inputs, params, then node results in program order (this graph, not bodies)."""
        values = [*self.inputs, *self.params]
        for node in self.nodes:
            values.extend(node.results)
        return values

    def users(self) -> dict[Value, list[tuple[Node, int]]]:
        """For each value of this graph, the (node, input index) pairs that read it."""
        uses: dict[Value, list[tuple[Node, int]]] = {v: [] for v in self.all_values()}
        for node in self.nodes:
            for i, v in enumerate(node.inputs):
                uses.setdefault(v, []).append((node, i))
        return uses

    def producers(self) -> dict[Value, Node]:
        """For each node result of this graph, the node that defines it."""
        return {r: node for node in self.nodes for r in node.results}

    def walk(self) -> Iterator[tuple[Graph, Node]]:
        """Every (graph, node) pair, bodies included, in printed order (explicit worklist)."""
        stack: list[Iterator[Node]] = [iter(self.nodes)]
        graphs: list[Graph] = [self]
        while stack:
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
                graphs.pop()
                continue
            yield graphs[-1], node
            if node.body is not None:
                stack.append(iter(node.body.nodes))
                graphs.append(node.body)

    def __str__(self) -> str:
        return format_graph(self)

    def __repr__(self) -> str:
        return (
            f"<Graph @{self.name}: {len(self.inputs)} inputs, {len(self.params)} params, "
            f"{len(self.nodes)} nodes, {len(self.outputs)} outputs>"
        )

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        """In a notebook: the graph drawn by Graphviz when `dot` is installed, else its text
        form (an escaped <pre> block), with the plain repr for text front ends."""
        import html

        bundle = {"text/plain": repr(self)}
        svg = to_svg(self)
        if svg is not None:
            bundle["image/svg+xml"] = svg
        else:
            bundle["text/html"] = f"<pre>{html.escape(format_graph(self))}</pre>"
        return bundle


class Builder:
    """Builds one Graph. Each op is type-checked by the op table as it is added.

    Invariant: every value handed out was defined by this builder, so the nodes it records are
    in topological order and the graph it builds verifies.
    """

    def __init__(self, name: str = "forward") -> None:
        self.name = name
        self._inputs: list[Value] = []
        self._params: list[Value] = []
        self._nodes: list[Node] = []
        self._outputs: list[Value] = []
        self._defined: set[Value] = set()
        # the SourceLoc of nodes added without one: autodiff stamps the forward node's on the
        # backward nodes made for it, `expand` a composite's on the table ops it becomes
        self.loc: SourceLoc | None = None

    def input(self, type: TensorType, hint: str | None = None) -> Value:
        """A new runtime input of the graph."""
        return self._define(self._inputs, Value(_check_type(type), hint))

    def param(self, type: TensorType, hint: str | None) -> Value:
        """A new parameter; `hint` is its module path, e.g. "fc1.weight"."""
        return self._define(self._params, Value(_check_type(type), hint))

    def op(
        self,
        name: str,
        inputs: Sequence[Value],
        attrs: Mapping[str, object] | None = None,
        *,
        loc: SourceLoc | None = None,
        body: Graph | None = None,
    ) -> Value:
        """Add a single-result node and return its result."""
        results = self.op_multi(name, inputs, attrs, loc=loc, body=body)
        if len(results) != 1:
            raise IRError(f"{name} has {len(results)} results; use Builder.op_multi")
        return results[0]

    def op_multi(
        self,
        name: str,
        inputs: Sequence[Value],
        attrs: Mapping[str, object] | None = None,
        *,
        loc: SourceLoc | None = None,
        body: Graph | None = None,
    ) -> tuple[Value, ...]:
        """Add a node and return all its results; IRTypeError if the inputs don't fit the op."""
        opdef = OPS.get(name)
        if opdef is None:
            raise IRError(f"unknown op {name!r}")
        inputs = tuple(inputs)
        for i, v in enumerate(inputs):
            if not isinstance(v, Value):
                raise IRTypeError(f"{name}: input {i} is {type(v).__name__}, not a Value")
            if v not in self._defined:
                raise IRError(f"{name}: input {i} ({v}) is not defined in builder @{self.name}")
        problem = opdef.arity_problem(len(inputs))
        if problem:
            raise IRTypeError(f"{name}: {problem}")
        in_types = tuple(v.type for v in inputs)
        normal = opdef.normalize_attrs(attrs or {}, in_types)  # values frozen, keys unsorted
        frozen = MappingProxyType({k: normal[k] for k in sorted(normal)})
        if opdef.region:
            out_types = _body_types(name, in_types, body)
        else:
            if body is not None:
                raise IRError(f"{name} takes no body; only fused ops do")
            out_types = opdef.infer(in_types, frozen)
        results = tuple(Value(t) for t in out_types)
        node = Node(name, inputs, frozen, results, loc or self.loc, body)
        self._nodes.append(node)
        self._defined.update(results)
        return results

    def clone(
        self, node: Node, new_inputs: Sequence[Value], body: Graph | None = None
    ) -> tuple[Value, ...]:
        """Copy `node` (op, attrs, loc, and body unless a new one is given) onto new inputs.

        On inputs of the node's own types (what most rewrites do), its attrs are already in
        normal form and inference would give its result types again, so both are reused: a
        pass over a graph is then a copy, not a re-check (the passes' verify still checks)."""
        new_inputs = tuple(new_inputs)
        same = (body is None or body is node.body) and len(new_inputs) == len(node.inputs)
        if same and all(
            isinstance(v, Value) and v.type == u.type for v, u in zip(new_inputs, node.inputs)
        ):
            for i, v in enumerate(new_inputs):
                if v not in self._defined:
                    raise IRError(
                        f"{node.op}: input {i} ({v}) is not defined in builder @{self.name}"
                    )
            results = tuple(Value(r.type) for r in node.results)
            self._nodes.append(Node(node.op, new_inputs, node.attrs, results, node.loc, node.body))
            self._defined.update(results)
            return results
        return self.op_multi(
            node.op, new_inputs, node.attrs, loc=node.loc, body=body if body else node.body
        )

    def constant(
        self, value: object, dtype: DType = DType.F32, *, loc: SourceLoc | None = None
    ) -> Value:
        """A `constant` node holding `value` (a number or nested sequence) in `dtype`."""
        return self.op("constant", (), {"value": value, "dtype": dtype}, loc=loc)

    def output(self, *values: Value) -> None:
        """Append graph outputs."""
        for v in values:
            if v not in self._defined:
                raise IRError(f"output {v} is not defined in builder @{self.name}")
        self._outputs.extend(values)

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes recorded so far."""
        return tuple(self._nodes)

    def build(self) -> Graph:
        """The finished, immutable Graph."""
        return Graph(
            self.name,
            tuple(self._inputs),
            tuple(self._params),
            tuple(self._nodes),
            tuple(self._outputs),
        )

    def _define(self, into: list[Value], value: Value) -> Value:
        into.append(value)
        self._defined.add(value)
        return value


def _check_type(t: object) -> TensorType:
    if not isinstance(t, TensorType):
        raise IRTypeError(f"expected a TensorType, got {t!r}")
    return t


def _body_types(
    name: str, in_types: tuple[TensorType, ...], body: Graph | None
) -> tuple[TensorType, ...]:
    """A fused node's result types: its body's outputs, once the body's inputs match the node's."""
    if body is None:
        raise IRError(f"{name} needs a body graph")
    if body.params:
        raise IRError(f"{name}: a body graph takes no params, got {len(body.params)}")
    if body.input_types != in_types:
        got = ", ".join(map(str, body.input_types))
        want = ", ".join(map(str, in_types))
        raise IRTypeError(f"{name}: body inputs ({got}) do not match the node's inputs ({want})")
    if not body.outputs:
        raise IRError(f"{name}: the body graph has no outputs")
    return body.output_types
