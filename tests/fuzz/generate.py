"""Random lucid models as Python source: a hypothesis strategy over a table of step kinds.

A generated model is the text of an `nn.Module` subclass, exactly what a user would write, so a
failure report is a reproducer that runs as it is printed. Its forward keeps one running tensor
`h` of shape [batch, features]; each step reads `h` (and maybe the other inputs, a parameter or a
plain attribute) and writes a new `h`, possibly with another feature count. Adding a kind of step
is one entry in STEPS (or SHAPE_READ_STEPS): a function that draws its choices and writes lines.

Values stay away from kinks and poles where gradients are compared: log and sqrt take `h*h + 1`,
exp takes `tanh(h)`, divisions divide by at least one. Kinks that the model hits exactly (ReLU of
an exact zero, a tie in `maximum`) are deterministic in eager and compiled alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

DrawFn = Callable[[st.SearchStrategy[Any]], Any]
FEATURES = st.integers(1, 17)
BATCHES = st.integers(1, 9)
CONSTANTS = st.sampled_from([0.5, -1.25, 2.0, 3.0, 0.1, -0.75])
ACTIVATIONS = ("HardSwish", "HardSigmoid", "ReLU", "ReLU6", "Sigmoid", "Tanh", "SiLU", "Identity")
FUNCTIONAL_ACTIVATIONS = (
    "F.hardswish(h)",
    "F.hardsigmoid(h)",
    "F.relu(h)",
    "F.relu6(h * 4.0)",
    "F.sigmoid(h)",
    "F.silu(h)",
    "F.tanh(h)",
    "h.relu()",
    "h.sigmoid()",
    "lucid.tanh(h)",
)


@dataclass
class Change:
    """An attribute assignment to make between calls: `model.<path> = <value>` (Python text)."""

    path: str
    value: str


@dataclass
class Writer:
    """The model being written: __init__ and forward lines, and the state of `h` so far."""

    dtype: str  # "float32" or "float64"
    features: int  # h's last dim
    inputs: list[str]  # forward's inputs besides x: "x1" (a second tensor), "t" (a number)
    x1_features: int
    init: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    reads_batch: bool = False  # forward reads the batch size (x.shape[0], len(h), h.shape)
    known_bugs: set[str] = field(default_factory=set)  # KNOWN_BUGS the program would hit
    count: int = 0

    @property
    def dt(self) -> str:
        return f"np.{self.dtype}"

    def attr(self, stem: str, value: str) -> str:
        """A new attribute of the model, `self.<stem><n> = value`; returns its name."""
        name = f"{stem}{self.count}"
        self.count += 1
        self.init.append(f"self.{name} = {value}")
        return name

    def param(self, *shape: int, scale: float = 1.0) -> str:
        """A new Parameter of `shape`, standard normal times `scale`; returns its name."""
        dims = ", ".join(map(str, shape))
        value = f"lucid.randn({dims}, dtype={self.dt})"
        return self.attr("p", f"nn.Parameter({value}{f' * {scale:.4g}' if scale != 1 else ''})")

    def line(self, text: str) -> None:
        self.forward.append(text)


Emit = Callable[[DrawFn, Writer], None]


@dataclass(frozen=True)
class StepKind:
    """One kind of forward step: `emit` draws its choices and writes its lines; `usable` says
    whether it fits the model written so far; `reads_batch` marks steps that read the batch size
    in Python (correct only with a static batch until sizes are symbolic: see SHAPE_READ_STEPS)."""

    name: str
    emit: Emit
    usable: Callable[[Writer], bool] = lambda w: True
    reads_batch: bool = False


def _factors(n: int) -> list[tuple[int, int]]:
    return [(a, n // a) for a in range(2, n) if n % a == 0]


# ---------------------------------------------------------------- the steps


def _linear(draw: DrawFn, w: Writer) -> None:
    out, bias = draw(FEATURES), draw(st.booleans())
    fc = w.attr("fc", f"nn.Linear({w.features}, {out}, bias={bias}, dtype={w.dt})")
    w.line(f"h = self.{fc}(h)")
    w.features = out


def _activation_module(draw: DrawFn, w: Writer) -> None:
    kind, other = draw(st.sampled_from(ACTIVATIONS)), draw(st.sampled_from(ACTIVATIONS))
    act = w.attr("act", f"nn.{kind}()")
    w.line(f"h = self.{act}(h)")
    w.changes.append(Change(act, f"nn.{other}()"))  # a swapped submodule (maybe same class)


def _activation_function(draw: DrawFn, w: Writer) -> None:
    w.line(f"h = {draw(st.sampled_from(FUNCTIONAL_ACTIVATIONS))}")


def _sequential(draw: DrawFn, w: Writer) -> None:
    mid, out = draw(FEATURES), draw(FEATURES)
    a, b = draw(st.sampled_from(ACTIVATIONS)), draw(st.sampled_from(ACTIVATIONS))
    inner = f"nn.Sequential(nn.Linear({mid}, {out}, dtype={w.dt}), nn.{b}())"
    seq = w.attr(
        "seq", f"nn.Sequential(nn.Linear({w.features}, {mid}, dtype={w.dt}), nn.{a}(), {inner})"
    )
    w.line(f"h = self.{seq}(h)")
    w.features = out


def _number_arith(draw: DrawFn, w: Writer) -> None:
    c = draw(CONSTANTS)
    forms = ["h + {c}", "{c} - h", "h * {c}", "h / {c}", "{c} / (h * h + 1.0)", "-h", "h ** 2"]
    w.line("h = " + draw(st.sampled_from(forms)).format(c=c))


def _attribute_number(draw: DrawFn, w: Writer) -> None:
    value, new = draw(CONSTANTS), draw(CONSTANTS)
    name = w.attr("scale", repr(value))
    w.line(
        draw(st.sampled_from(["h = h * self.{n}", "h = h + self.{n}", "h = self.{n} - h"])).format(
            n=name
        )
    )
    w.changes.append(Change(name, repr(new)))


def _attribute_flag(draw: DrawFn, w: Writer) -> None:
    value = draw(st.booleans())
    name = w.attr("flag", repr(value))
    w.line(f"h = F.relu(h) if self.{name} else lucid.tanh(h)")
    w.changes.append(Change(name, repr(not value)))


def _parameter_arith(draw: DrawFn, w: Writer) -> None:
    p = w.param(w.features)
    forms = [
        "h + self.{p}",
        "h * self.{p}",
        "self.{p} - h",
        "lucid.maximum(h, self.{p})",
        "lucid.minimum(self.{p}, h)",
        "h / (self.{p} * self.{p} + 1.0)",
    ]
    w.line("h = " + draw(st.sampled_from(forms)).format(p=p))


def _smooth_unary(draw: DrawFn, w: Writer) -> None:
    forms = [
        "lucid.exp(lucid.tanh(h))",
        "lucid.exp(-h * h) + h",
        "lucid.log(h * h + 1.0)",
        "(h * h + 1.0).log()",
        "lucid.sqrt(h * h + 1.0)",
        "(h * h + 0.5).sqrt()",
        "abs(h)",
        "lucid.abs(h) - h.abs() * 0.5",
        "h ** 3 * 0.1",
    ]
    w.line("h = " + draw(st.sampled_from(forms)))


def _clip(draw: DrawFn, w: Writer) -> None:
    forms = ["h.clip(-1.0, 2.0)", "lucid.clip(h, None, 1.5)", "lucid.clip(h, -0.5, None)"]
    forms += ["lucid.maximum(h, 0.25)", "lucid.minimum(h, -0.5)"]
    w.line("h = " + draw(st.sampled_from(forms)))


def _where(draw: DrawFn, w: Writer) -> None:
    cmp, c = draw(st.sampled_from([">", ">=", "<", "<=", "!="])), draw(CONSTANTS)
    if draw(st.booleans()):
        p = w.param(w.features)
        w.line(f"h = lucid.where(h {cmp} self.{p}, h, self.{p} * h)")
    else:
        w.line(f"h = lucid.where(h {cmp} {c}, h, h * 0.1)")
    if draw(st.booleans()):
        w.line(f"h = h + (h > {c}).astype({w.dt})")  # a bool mask as data: no gradient


def _reduce(draw: DrawFn, w: Writer) -> None:
    forms = [
        "h - h.mean(axis=1, keepdims=True)",
        "h * h.sum(axis=0, keepdims=True)",
        "h + lucid.mean(h, axis=-1, keepdims=True)",
        "h / (h.sum(axis=1, keepdims=True) ** 2 + 1.0)",
        "h * lucid.sum(h, axis=(0, 1), keepdims=True)",
        "h.mean(axis=0, keepdims=True) + h",
    ]
    w.line("h = " + draw(st.sampled_from(forms)))


def _shape(draw: DrawFn, w: Writer) -> None:
    forms = ["h.T.T", "h.transpose(1, 0).transpose()", "lucid.reshape(h, (-1, {f}))"]
    for a, b in _factors(w.features):
        forms += [
            f"h.reshape(-1, {a}, {b}).transpose(0, 2, 1).reshape(-1, {{f}})",
            f"self.flat(lucid.transpose(h.reshape(-1, {a}, {b}), 0, 2, 1))",
            (
                f"h.reshape(-1, {a}, {b}).sum(axis=1, keepdims=True).reshape(-1, {b})"
                ".mean(axis=1, keepdims=True) + h"
            ),
            # rows of b: [N*a, b] under a dynamic batch (a dim that is the batch times a)
            f"lucid.tanh(h.reshape(-1, {b})).reshape(-1, {{f}})",
            f"F.softmax(h.reshape(-1, {b}), dim=1).reshape(-1, {a}, {b}).reshape(-1, {{f}})",
        ]
    form = draw(st.sampled_from(forms)).format(f=w.features)
    if "self.flat" in form and "self.flat = nn.Flatten()" not in w.init:
        w.init.append("self.flat = nn.Flatten()")
    w.line(f"h = {form}")


def _matmul(draw: DrawFn, w: Writer) -> None:
    out = draw(FEATURES)
    pairs = _factors(w.features)
    if pairs and draw(st.booleans()):  # a batched matmul: [B, a, b] @ [b, out]
        a, b = draw(st.sampled_from(pairs))
        m = w.param(b, out, scale=1 / math.sqrt(b))
        rows = draw(st.sampled_from([f"-1, {a}, {b}", f"-1, {b}"]))  # [N*a, b]: one GEMM, M = aN
        w.line(f"h = (h.reshape({rows}) @ self.{m}).reshape(-1, {a * out})")
        w.features = a * out
        return
    m = w.param(w.features, out, scale=1 / math.sqrt(w.features))
    w.line(draw(st.sampled_from(["h = h @ self.{m}", "h = lucid.matmul(h, self.{m})"])).format(m=m))
    w.features = out


def _second_input(draw: DrawFn, w: Writer) -> None:
    fc = w.attr("fc", f"nn.Linear({w.x1_features}, {w.features}, dtype={w.dt})")
    forms = ["h + self.{fc}(x1)", "h * lucid.sigmoid(self.{fc}(x1))", "self.{fc}(x1) - h"]
    w.line("h = " + draw(st.sampled_from(forms)).format(fc=fc))


def _number_input(draw: DrawFn, w: Writer) -> None:
    w.line("h = " + draw(st.sampled_from(["h * t", "h + t", "t - h * t"])))


def _detach_cast(draw: DrawFn, w: Writer) -> None:
    other = "float64" if w.dtype == "float32" else "float32"
    forms = [
        "h + h.detach() * 0.5",
        "lucid.detach(h) * h",
        f"h.astype(np.{other}).astype({w.dt})",
        f"lucid.astype(h * 2.0, np.{other}).astype({w.dt})",
    ]
    w.line("h = " + draw(st.sampled_from(forms)))


STEPS: list[StepKind] = [
    StepKind("linear", _linear),
    StepKind("activation_module", _activation_module),
    StepKind("activation_function", _activation_function),
    StepKind("sequential", _sequential),
    StepKind("number_arith", _number_arith),
    StepKind("attribute_number", _attribute_number),
    StepKind("attribute_flag", _attribute_flag),
    StepKind("parameter_arith", _parameter_arith),
    StepKind("smooth_unary", _smooth_unary),
    StepKind("clip", _clip),
    StepKind("where", _where),
    StepKind("reduce", _reduce),
    StepKind("shape", _shape),
    StepKind("matmul", _matmul),
    StepKind("second_input", _second_input, usable=lambda w: "x1" in w.inputs),
    StepKind("number_input", _number_input, usable=lambda w: "t" in w.inputs),
    StepKind("detach_cast", _detach_cast),
]


# ---------------------------------------------------------------- steps that read the batch size


def _batch_mean(draw: DrawFn, w: Writer) -> None:
    forms = [
        "h - h.sum(axis=0, keepdims=True) / x.shape[0]",
        "h * (len(h) / 4.0)",
        "h.sum() / x.shape[0] + h",
    ]
    w.line("h = " + draw(st.sampled_from(forms)))


def _batch_reshape(draw: DrawFn, w: Writer) -> None:
    forms = ["h.reshape(x.shape[0], -1)", f"h.reshape(h.shape[0], {w.features})"]
    forms += [
        f"h.reshape(x.shape[0], {a}, {b}).reshape(x.shape[0], -1)" for a, b in _factors(w.features)
    ]
    forms += [  # the batch times a constant as a dim (N*a), and back
        f"h.reshape(x.shape[0] * {a}, {b}).reshape(x.shape[0], -1)" for a, b in _factors(w.features)
    ]
    w.line("h = " + draw(st.sampled_from(forms)))


def _batch_constant(draw: DrawFn, w: Writer) -> None:
    p = w.param(w.features)
    forms = [
        f"h + lucid.ones(x.shape[0], 1, dtype={w.dt}) * self.{p}",
        f"h * (lucid.zeros(x.shape[0], {w.features}, dtype={w.dt}) + self.{p})",
        f"h + self.{p}.broadcast_to(h.shape)",
    ]
    w.line("h = " + draw(st.sampled_from(forms)))


def _batch_branch(draw: DrawFn, w: Writer) -> None:
    k = draw(st.integers(1, 8))
    w.line(f"if x.shape[0] > {k}:")
    w.line("    h = F.relu6(h * 3.0)")
    w.line("else:")
    w.line("    h = lucid.tanh(h) * 2.0")


# Shape reads: under dynamic_batch=True `x.shape[0]` is a symbolic size (issue 14): arithmetic on
# it stays symbolic, a branch on it is a guard that recompiles when it fails. Set this to False
# to leave programs that read the batch out of the dynamic-batch checks (to bisect a finding).
DYNAMIC_SHAPE_READS = True
SHAPE_READ_STEPS: list[StepKind] = [
    StepKind("batch_mean", _batch_mean, reads_batch=True),
    StepKind("batch_reshape", _batch_reshape, reads_batch=True),
    StepKind("batch_constant", _batch_constant, reads_batch=True),
    StepKind("batch_branch", _batch_branch, reads_batch=True),
]


# ---------------------------------------------------------------- known bugs

# Bugs the fuzzer found that are not fixed yet: a program that would hit one skips the checks
# named here (and only those), so the rest of its comparisons still run. Remove an entry when
# its bug is fixed.
KNOWN_BUGS: dict[str, str] = {
    # (none open) "batched-matmul-dynamic-grad", `h.reshape(-1, a, b) @ w` under a dynamic
    # batch in grad mode, was fixed by matmul_at (lucid/ir/ops/bmm.py)
}


# ---------------------------------------------------------------- whole programs


@dataclass
class Program:
    """A generated model and the calls to make on it."""

    source: str  # defines `class Model(nn.Module)`
    dtype: str
    in_features: int
    x1_features: int | None  # the second input's features, None without one
    number: float | None  # the Python number passed as `t`, None without one
    loss: str  # "none", "mse" or "cross_entropy"
    out_features: int  # h's features at the end (the classes of cross_entropy)
    two_outputs: bool
    batches: tuple[int, int, int]  # the first is the static batch; dynamic runs all three
    grads: tuple[bool, bool]  # whether x (and x1) require grad
    seed: int
    changes: list[Change]
    kinds: list[str]
    reads_batch: bool
    known_bugs: set[str]

    @property
    def dynamic_ok(self) -> bool:
        """Whether the dynamic-batch checks apply (see DYNAMIC_SHAPE_READS)."""
        return DYNAMIC_SHAPE_READS or not self.reads_batch

    def skips(self, checks: str) -> bool:
        """Whether a known bug (KNOWN_BUGS) rules out the checks named `checks`."""
        return any(KNOWN_BUGS[bug] == checks for bug in self.known_bugs)

    def describe(self) -> str:
        """The program and its calls as a reproducer to read (and run) in a failure report."""
        args = (
            ["x"]
            + (["x1"] if self.x1_features else [])
            + (["t"] if self.number is not None else [])
        )
        return "\n".join(
            [
                self.source,
                f"# dtype {self.dtype}; x: [B, {self.in_features}]"
                + (f"; x1: [B, {self.x1_features}]" if self.x1_features else "")
                + (f"; t = {self.number}" if self.number is not None else "")
                + (f"; target for {self.loss}" if self.loss != "none" else ""),
                f"# batches {self.batches}; requires_grad {self.grads}; lucid.random.seed({self.seed})",
                f"# forward args: {', '.join(args)}; step kinds: {', '.join(self.kinds)}",
                f"# attribute changes: {[(c.path, c.value) for c in self.changes]}",
            ]
        )


@st.composite
def programs(draw: DrawFn, max_steps: int = 8) -> Program:
    """A random model (as source text) with its dtype, inputs, batch sizes and changes."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    in_features = draw(FEATURES)
    x1_features = draw(FEATURES) if draw(st.booleans()) else None
    number = draw(st.sampled_from([0.5, -2.0, 3])) if draw(st.integers(0, 3)) == 0 else None
    inputs = (["x1"] if x1_features else []) + (["t"] if number is not None else [])
    w = Writer(dtype, in_features, inputs, x1_features or 0)
    # A third of the programs may read the batch size (symbolic under a dynamic batch); the
    # rest keep covering the plain dynamic-batch path.
    kinds = STEPS + SHAPE_READ_STEPS if draw(st.integers(0, 2)) == 0 else STEPS
    for _ in range(draw(st.integers(1, max_steps))):
        kind = draw(st.sampled_from([k for k in kinds if k.usable(w)]))
        kind.emit(draw, w)
        w.kinds.append(kind.name)
        w.reads_batch |= kind.reads_batch

    loss = draw(st.sampled_from(["none", "none", "mse", "cross_entropy"]))
    two_outputs = loss == "none" and draw(st.integers(0, 3)) == 0
    params = ", ".join(["self", "x", *inputs] + (["target"] if loss != "none" else []))
    if loss == "mse":
        w.init.append("self.loss = nn.MSELoss()")
        w.line("return self.loss(h, target)")
    elif loss == "cross_entropy":
        w.init.append(
            f"self.loss = nn.CrossEntropyLoss(reduction={draw(st.sampled_from(['mean', 'sum']))!r})"
        )
        w.line("return self.loss(h, target)")
    elif two_outputs:
        w.line("return h, (h * h).mean()")
    else:
        w.line("return h")

    body = ["    def __init__(self):", "        super().__init__()"]
    body += [f"        {line}" for line in w.init]
    body += ["", f"    def forward({params}):", "        h = x"]
    body += [f"        {line}" for line in w.forward]
    source = "\n".join(["class Model(nn.Module):", *body])

    b1, b2, b3 = draw(BATCHES), draw(BATCHES), draw(BATCHES)
    x_grad = draw(st.booleans())
    x1_grad = bool(x1_features) and draw(st.booleans())
    changes = (
        draw(st.lists(st.sampled_from(w.changes), max_size=2, unique_by=lambda c: c.path))
        if w.changes
        else []
    )
    return Program(
        source=source,
        dtype=dtype,
        in_features=in_features,
        x1_features=x1_features,
        number=number,
        loss=loss,
        out_features=w.features,
        two_outputs=two_outputs,
        batches=(b1, b2, b3),
        grads=(x_grad, x1_grad),
        seed=draw(st.integers(0, 2**16)),
        changes=changes,
        kinds=w.kinds,
        reads_batch=w.reads_batch,
        known_bugs=w.known_bugs,
    )


NAMESPACE_SOURCE = (
    "import numpy as np\nimport lucid\nfrom lucid import nn\nfrom lucid.nn import functional as F\n"
)


def model_class(program: Program) -> type:
    """Execute the program's source; the class it defines (its frames show '<fuzz model>')."""
    namespace: dict[str, Any] = {}
    code = compile(NAMESPACE_SOURCE + program.source, "<fuzz model>", "exec")
    exec(code, namespace)  # noqa: S102  # our own generated text
    return namespace["Model"]  # type: ignore[no-any-return]
