"""Reads the IR text form back into Graphs: a regex tokenizer and a recursive-descent parser.

The parser checks syntax and names (undefined or twice-defined values); `verify` then checks
the semantics (op known, arity, attrs, types), so `parse(text)` verifies unless told not to.
It remembers where each node starts, so that a verify error points at the node's line and
column too, and with a file name it gives each node a SourceLoc in that file.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass

from lucid.errors import IRError, ParseError, SourceLoc, VerifyError, excerpt
from lucid.ir.core import Attr, Graph, Node, Value
from lucid.ir.ops import FLOAT, OPS
from lucid.ir.types import SYMBOL_RE, Dim, DType, TensorType, symbolic_dim

_STR = r'"(?:[^"\\\n]|\\.)*"'
_TOKEN = re.compile(
    rf"""
     (?P<ws>[ \t\r\n]+|//[^\n]*)
    |(?P<value>%(?:[A-Za-z_][A-Za-z0-9_.]*|\d+|{_STR}))
    |(?P<gname>@(?:[A-Za-z_][A-Za-z0-9_.]*|{_STR}))
    |(?P<string>{_STR})
    |(?P<arrow>->)
    |(?P<number>-?(?:inf\b|nan\b|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?))
    |(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    |(?P<punct>[()\[\]{{}},:=^*])
    """,
    re.VERBOSE,
)
_KEYWORDS: dict[str, Attr] = {"true": True, "false": False, "none": None}


@dataclass(frozen=True, slots=True)
class Token:
    """A token: its kind (a group name of _TOKEN, or the punctuation itself) and position."""

    kind: str
    text: str
    offset: int


def parse(text: str, verify: bool = True, *, filename: str | None = None) -> Graph:
    """The one Graph in `text`; ParseError (with a caret) on bad text, VerifyError if invalid.

    With `filename`, each node without a `loc(...)` gets SourceLoc(filename, line, column) of
    its text, so errors found later (autodiff, codegen) point into the file; a verify error
    points at the node's line and column in either case (`[file:]line:col: error:`, caret)."""
    parser = _Parser(text, filename)
    graph = parser.graph()
    if parser.peek().kind != "eof":
        raise parser.error("expected the end of the text after the graph", parser.peek())
    if verify:
        parser.verify(graph)
    return graph


def parse_module(text: str, verify: bool = True, *, filename: str | None = None) -> list[Graph]:
    """Every Graph in `text` (e.g. a forward graph and its backward graph)."""
    parser = _Parser(text, filename)
    graphs = [parser.graph()]
    while parser.peek().kind != "eof":
        graphs.append(parser.graph())
    if verify:
        for g in graphs:
            parser.verify(g)
    return graphs


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with an `eof` token; ParseError on a stray character."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line, column, source = _Lines(text).position(pos)
            raise ParseError(f"unexpected character {text[pos]!r}", line, column, source)
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(m.group() if kind == "punct" else kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("eof", "", len(text)))
    return tokens


class _Lines:
    """Offsets in a text as (line, column, the line's text), both 1-based."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def position(self, offset: int) -> tuple[int, int, str]:
        line = bisect.bisect_right(self.starts, offset)
        start = self.starts[line - 1]
        end = self.text.find("\n", start)
        return line, offset - start + 1, self.text[start : end if end >= 0 else len(self.text)]


class _Parser:
    """Recursive descent over the token list; each graph or region has its own name scope.

    `offsets` remembers where each node and graph starts in the text, for verify's errors."""

    def __init__(self, text: str, filename: str | None = None) -> None:
        self.text = text
        self.filename = filename
        self.lines = _Lines(text)
        self.tokens = tokenize(text)
        self.pos = 0
        self.offsets: dict[Node | Graph, int] = {}

    # ------------------------------------------------------------ token helpers

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        self.pos += 1
        return tok

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        tok = self.peek()
        if tok.kind == kind and (text is None or tok.text == text):
            self.pos += 1
            return tok
        return None

    def expect(self, kind: str, what: str, text: str | None = None) -> Token:
        tok = self.accept(kind, text)
        if tok is None:
            found = self.peek()
            shown = "the end of the text" if found.kind == "eof" else repr(found.text)
            raise self.error(f"expected {what}, found {shown}", found)
        return tok

    def error(self, message: str, tok: Token) -> ParseError:
        return ParseError(message, *self.lines.position(tok.offset))

    def verify(self, graph: Graph) -> None:
        """lucid.ir.verify, its error moved to the blamed node's line and column in the text."""
        from lucid.ir.verify import verify  # verify imports the printer, independent of us

        try:
            verify(graph)
        except VerifyError as e:
            node = e.node if isinstance(e.node, Node) and e.node in self.offsets else graph
            line, column, source = self.lines.position(self.offsets[node])
            where = f"{self.filename}:" if self.filename is not None else ""
            raise VerifyError(
                f"{where}{line}:{column}: error: {e.reason}\n{excerpt(source, column)}",
                e.reason,
                e.node,
            ) from None

    # ------------------------------------------------------------ grammar

    def graph(self) -> Graph:
        """graph @name(args) [params(args)] -> (types) { node* return values }"""
        start = self.expect("ident", "'graph'", "graph").offset
        name_tok = self.expect("gname", "a graph name such as @forward")
        name = _unquote(name_tok.text[1:])
        scope: dict[str, Value] = {}
        self.expect("(", "'('")
        inputs = self.decls(scope, ")")
        params: list[Value] = []
        if self.accept("ident", "params"):
            self.expect("(", "'(' after params")
            params = self.decls(scope, ")")
        self.expect("arrow", "'->'")
        self.expect("(", "'(' before the result types")
        declared: list[TensorType] = []
        if not self.accept(")"):
            declared = self.types()
            self.expect(")", "')' after the result types")
        self.expect("{", "'{'")
        nodes, outputs, ret = self.block(scope, "return")
        self.expect("}", "'}' closing the graph")
        got = [v.type for v in outputs]
        if got != declared:
            raise self.error(
                f"return types ({', '.join(map(str, got))}) differ from the header's "
                f"({', '.join(map(str, declared))})",
                ret,
            )
        graph = Graph(name, tuple(inputs), tuple(params), tuple(nodes), tuple(outputs))
        self.offsets[graph] = start
        return graph

    def block(self, scope: dict[str, Value], end: str) -> tuple[list[Node], list[Value], Token]:
        """Node lines up to `return` (or `yield`) and the values it lists."""
        nodes: list[Node] = []
        while True:
            tok = self.peek()
            if tok.kind == "ident" and tok.text == end:
                self.next()
                break
            if tok.kind != "value":
                raise self.error(f"expected a node line or '{end}'", tok)
            nodes.append(self.node(scope))
        outputs = self.uses(scope) if self.peek().kind == "value" else []
        return nodes, outputs, tok

    def node(self, scope: dict[str, Value]) -> Node:
        """%r, ... = op %a, ... {attrs} : types [loc(...)] [{ region }]"""
        start = self.peek().offset
        names = [self.expect("value", "a result name")]
        while self.accept(","):
            names.append(self.expect("value", "a result name"))
        self.expect("=", "'='")
        op_tok = self.expect("ident", "an op name")
        inputs = self.uses(scope) if self.peek().kind == "value" else []
        attrs = self.attrs(op_tok.text) if self.peek().kind == "{" else {}
        self.expect(":", "':' before the result types")
        types = self.types()
        if len(types) != len(names):
            raise self.error(f"{len(names)} result names but {len(types)} result types", op_tok)
        loc = self.loc()
        body = None
        if self.accept("{"):
            body = self.region(op_tok.text)
            loc = self.loc() or loc
        if loc is None and self.filename is not None:
            line, column, _ = self.lines.position(start)
            loc = SourceLoc(self.filename, line, column=column)
        results = []
        for tok, t in zip(names, types):
            results.append(self.define(scope, tok, Value(t)))
        node = Node(op_tok.text, tuple(inputs), attrs, tuple(results), loc, body)
        self.offsets[node] = start
        return node

    def region(self, op: str) -> Graph:
        """^(args): node* yield values }  -- a fused node's body, with its own scope."""
        self.expect("^", "'^' starting the region's arguments")
        self.expect("(", "'('")
        scope: dict[str, Value] = {}
        args = self.decls(scope, ")", hinted=False)
        self.expect(":", "':' after the region's arguments")
        nodes, outputs, _ = self.block(scope, "yield")
        self.expect("}", "'}' closing the region")
        return Graph(op, tuple(args), (), tuple(nodes), tuple(outputs))

    def decls(self, scope: dict[str, Value], close: str, hinted: bool = True) -> list[Value]:
        """`%name: type` declarations up to `close`."""
        values: list[Value] = []
        if self.accept(close):
            return values
        while True:
            tok = self.expect("value", "a value name")
            self.expect(":", "':' after the value name")
            hint = _value_hint(tok.text) if hinted else None
            values.append(self.define(scope, tok, Value(self.type(), hint)))
            if self.accept(close):
                return values
            self.expect(",", f"',' or '{close}'")

    def define(self, scope: dict[str, Value], tok: Token, value: Value) -> Value:
        if tok.text in scope:
            raise self.error(f"value {tok.text} is defined twice", tok)
        scope[tok.text] = value
        return value

    def uses(self, scope: dict[str, Value]) -> list[Value]:
        values = [self.use(scope)]
        while self.accept(","):
            values.append(self.use(scope))
        return values

    def use(self, scope: dict[str, Value]) -> Value:
        tok = self.expect("value", "a value name")
        if tok.text not in scope:
            raise self.error(f"use of undefined value {tok.text}", tok)
        return scope[tok.text]

    def types(self) -> list[TensorType]:
        types = [self.type()]
        while self.peek().kind == "," and self.peek(1).kind == "ident":
            self.next()
            types.append(self.type())
        return types

    def type(self) -> TensorType:
        """dtype[dim, ...] with dims ints, symbols, or a symbol times an int (`N*12`)."""
        tok = self.expect("ident", "a type such as f32[N,3]")
        try:
            dtype = DType.parse(tok.text)
        except IRError:
            raise self.error(f"unknown dtype {tok.text!r}", tok) from None
        self.expect("[", "'[' after the dtype")
        dims: list[Dim] = []
        while not self.accept("]"):
            if dims:
                self.expect(",", "',' or ']'")
            d = self.next()
            if d.kind == "number" and d.text.isdigit():
                dims.append(int(d.text))
            elif d.kind == "ident" and SYMBOL_RE.match(d.text):
                if not self.accept("*"):
                    dims.append(d.text)
                    continue
                k = self.next()
                if k.kind != "number" or not k.text.isdigit() or int(k.text) < 1:
                    raise self.error("expected an int >= 1 after '*' (a dim such as N*12)", k)
                dims.append(symbolic_dim(d.text, int(k.text)))
            else:
                raise self.error(
                    "expected a dim (an int >= 0, a symbol, or a symbol times an int: N*12)", d
                )
        return TensorType(dtype, tuple(dims))

    def loc(self) -> SourceLoc | None:
        if not (self.peek().kind == "ident" and self.peek().text == "loc"):
            return None
        self.next()
        self.expect("(", "'(' after loc")
        file = _unquote(self.expect("string", "a quoted file name").text)
        self.expect(":", "':'")
        line = self.expect("number", "a line number")
        if not line.text.isdigit():
            raise self.error("expected a line number", line)
        self.expect(")", "')'")
        return SourceLoc(file, int(line.text))

    def attrs(self, op: str) -> dict[str, Attr]:
        """{name=value, ...}; float attrs written as ints are read as floats."""
        self.expect("{", "'{'")
        attrs: dict[str, Attr] = {}
        opdef = OPS.get(op)
        while not self.accept("}"):
            if attrs:
                self.expect(",", "',' or '}'")
            key = self.expect("ident", "an attribute name")
            if key.text in attrs:
                raise self.error(f"attribute {key.text!r} given twice", key)
            self.expect("=", "'=' after the attribute name")
            value = self.attr_value()
            spec = opdef.attrs.get(key.text) if opdef is not None else None
            if spec is not None and spec[0] is FLOAT and type(value) is int:
                value = float(value)
            attrs[key.text] = value
        return attrs

    def attr_value(self) -> Attr:
        tok = self.next()
        if tok.kind == "[":
            items: list[Attr] = []
            while not self.accept("]"):
                if items:
                    self.expect(",", "',' or ']'")
                items.append(self.attr_value())  # nesting follows the data, a few levels deep
            return tuple(items)
        if tok.kind == "number":
            is_float = any(c in tok.text for c in ".eEin")  # "in": inf and nan
            return float(tok.text) if is_float else int(tok.text)
        if tok.kind == "string":
            return _unquote(tok.text)
        if tok.kind == "ident":
            if tok.text in _KEYWORDS:
                return _KEYWORDS[tok.text]
            try:
                return DType.parse(tok.text)
            except IRError:
                pass
        raise self.error("expected an attribute value", tok)


def _unquote(text: str) -> str:
    """A name or a JSON string literal, as the string it stands for."""
    return str(json.loads(text)) if text.startswith('"') else text


def _value_hint(token: str) -> str | None:
    """The hint a declared name stands for: None for a number like `%3`."""
    body = token[1:]
    if body.isdigit():
        return None
    return _unquote(body)
