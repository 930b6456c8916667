"""C lowerings of the fused ops: one kernel function per fused region.

- `fused_gemm`: one `gemm.emit_gemm` call; the body's elementwise tail becomes the Epilogue
  (each step is the op's own scalar C from `OpDef.c`, so it computes exactly what the unfused
  elementwise kernel would), a trailing `sum` over axis 0 the epilogue's colsum, and absorbed
  `transpose`s become trans_a / trans_b.
- `fused_elementwise`: one loop over the common shape; body values live in locals.
- `fused_mlp`: a row-tiled kernel. Each row tile of the batch runs every layer's GEMM (the
  specialised GEMM of that layer, single-threaded) into a tile-local hidden buffer of
  `rows_per_tile x hidden` that stays in L2; threads split the row tiles. The full hidden
  tensor is never allocated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lucid.codegen import gemm
from lucid.codegen._jinja import render
from lucid.codegen._lower import (
    Kernel,
    LowerCtx,
    Prepack,
    c_comment,
    dim_c,
    gemm_dtype,
    prod_c,
)
from lucid.codegen._lower_loops import loop_nest, split_across_threads
from lucid.codegen._lower_special import gemm_support
from lucid.codegen._scalar_c import scalar_exprs
from lucid.errors import CompileError
from lucid.ir.core import Graph, Node, Value
from lucid.ir.passes.fusion_rules import classify_operand, is_elementwise

# ------------------------------------------------------------------------------ body -> GEMM plan


@dataclass
class Stage:
    """One GEMM of a fused body and its epilogue. Sources are body input indices; `a` is None
    when the stage reads the previous stage's result (the hidden value of an MLP)."""

    node: Node
    a: int | None
    b: int
    trans_a: bool
    trans_b: bool
    steps: list[gemm.EpilogueStep] = field(default_factory=list)
    # (input index, broadcast) of each operand; ("y<k>", "full") for an output a tail stores
    operands: list[tuple[int | str, str]] = field(default_factory=list)
    colsum: bool = False
    value: Value | None = None  # the running value the next step reads

    @property
    def m(self) -> str:
        """Rows of C as a C expression."""
        return prod_c(self.node.result.type.shape[:-1])

    @property
    def n(self) -> str:
        """Columns of C."""
        return dim_c(self.node.result.type.shape[-1])

    @property
    def k(self) -> str:
        """The contraction length."""
        w = self.node.inputs[1].type
        return dim_c(w.shape[1] if self.node.op == "linear" else w.shape[0])


def _fail(node: Node, what: str) -> CompileError:
    return CompileError(f"{node.op} body: {what} (fusion passes never produce this)")


def gemm_stages(body: Graph) -> list[Stage]:
    """Read a fused_gemm / fused_mlp body: transposes, then per GEMM its steps and colsum."""
    index = {v: i for i, v in enumerate(body.inputs)}
    transposed: dict[Value, int] = {}
    stages: list[Stage] = []
    for node in body.nodes:
        if node.op == "transpose" and node.inputs[0] in index:
            transposed[node.result] = index[node.inputs[0]]
        elif node.op in ("linear", "matmul"):
            _add_stage(stages, node, index, transposed)
        elif node.op == "sum" and stages and node.inputs[0] is stages[-1].value:
            stages[-1].colsum = True
        elif is_elementwise(node) and stages:
            _add_step(stages[-1], node, index)
        else:
            raise _fail(node, f"cannot lower {node.op!r} here")
    if not stages:
        raise CompileError("fused GEMM body without a linear/matmul")
    return stages


def is_tail(body: Graph) -> bool:
    """Whether a fused_gemm body's epilogue is a tail (fuse_epilogue: a value made in the body
    read by two of its nodes, or several stored results) rather than a chain of steps."""
    readers: dict[Value, int] = {}
    for node in body.nodes:
        for v in set(node.inputs):
            readers[v] = readers.get(v, 0) + 1
    made = {r for n in body.nodes for r in n.results}
    if any(readers.get(v, 0) > 1 for v in made):
        return True
    return sum(1 for n in body.nodes if n.op == "sum") == 0 and len(body.outputs) > 1


def tail_stage(body: Graph) -> Stage:
    """A fused_gemm body whose epilogue is a tail: each node after the GEMM becomes a local
    `t<k>` of the epilogue (its op's scalar C, reading locals, the sum `v` and at most one
    operand `x`); C gets the body's first output, each further output is stored as an extra
    output `y<k>` of the kernel."""
    index = {v: i for i, v in enumerate(body.inputs)}
    transposed: dict[Value, int] = {}
    stages: list[Stage] = []
    local: dict[Value, str] = {}
    for node in body.nodes:
        if not stages and node.op == "transpose" and node.inputs[0] in index:
            transposed[node.result] = index[node.inputs[0]]
        elif not stages and node.op in ("linear", "matmul"):
            _add_stage(stages, node, index, transposed)
            local[node.result] = "v"
        elif stages and is_elementwise(node):
            stage = stages[0]
            args: list[str] = []
            operand: str | None = None
            broadcast = "col"
            for v in node.inputs:
                if v in local:
                    args.append(local[v])
                elif v in index:
                    kind = classify_operand(v.type, node.result.type)
                    if kind is None or (operand is not None and kind != broadcast):
                        raise _fail(node, f"operand {v.type} cannot be indexed by the epilogue")
                    if operand is not None and stage.operands[int(operand[1:])][0] != index[v]:
                        raise _fail(node, "a tail step reads at most one operand")
                    broadcast, operand = kind, _operand(stage, index[v], kind)
                    args.append("x")
                else:
                    raise _fail(node, "a tail step reads the GEMM, its own values and inputs")
            exprs = scalar_exprs(node, args)
            if exprs is None or len(exprs) != 1:
                raise CompileError(f"op {node.op!r} has no scalar C expression for an epilogue")
            name = f"t{len(local) - 1}"
            stage.steps.append(
                gemm.EpilogueStep(f"{name} = {exprs[0]};", operand, broadcast)  # type: ignore[arg-type]
            )
            local[node.result] = name
        else:
            raise _fail(node, f"cannot lower {node.op!r} in a tail")
    if len(stages) != 1 or any(o not in local for o in body.outputs):
        raise CompileError("fused GEMM tail: one GEMM whose tail yields the body's outputs")
    stage = stages[0]
    names = [n for v, n in local.items() if n != "v"]
    stage.steps.insert(0, gemm.EpilogueStep(f"T {', '.join(names)};"))
    stage.steps.append(gemm.EpilogueStep(f"v = {local[body.outputs[0]]};"))
    for k, out in enumerate(body.outputs[1:], start=1):
        stage.operands.append((f"y{k}", "full"))
        store = f"o{len(stage.operands) - 1}"
        stage.steps.append(gemm.EpilogueStep(local[out], store, "full", store=True))
    return stage


def _add_stage(
    stages: list[Stage], node: Node, index: dict[Value, int], tr: dict[Value, int]
) -> None:
    a, b = node.inputs[0], node.inputs[1]
    if stages and a is stages[-1].value:
        a_src, trans_a = None, False
    elif a in tr:
        a_src, trans_a = tr[a], True
    elif a in index:
        a_src, trans_a = index[a], False
    else:
        raise _fail(node, "the GEMM's A is neither an input nor the previous layer")
    if b in tr:
        b_src, b_transposed = tr[b], True
    elif b in index:
        b_src, b_transposed = index[b], False
    else:
        raise _fail(node, "the GEMM's B must be an input")
    # linear reads w[out, in] transposed; a transposed w cancels that
    trans_b = (not b_transposed) if node.op == "linear" else b_transposed
    stage = Stage(node, a_src, b_src, trans_a, trans_b, value=node.result)
    if len(node.inputs) == 3:
        stage.steps.append(gemm.bias_add(_operand(stage, index[node.inputs[2]], "col")))
    stages.append(stage)


def _operand(stage: Stage, idx: int, broadcast: str) -> str:
    """The epilogue operand name of body input `idx` read with `broadcast`: o<k> for the
    stage's k-th distinct operand (parameter e_o<k> of the GEMM). Positional, not the input's
    index, so equal layers of an MLP get equal GEMMs (see _shared_layers)."""
    if (idx, broadcast) not in stage.operands:
        stage.operands.append((idx, broadcast))
    return f"o{stage.operands.index((idx, broadcast))}"


def _add_step(stage: Stage, node: Node, index: dict[Value, int]) -> None:
    chain = stage.value
    args: list[str] = []
    operand: str | None = None
    broadcast = "col"
    for v in node.inputs:
        if v is chain:
            args.append("v")
        elif v in index and operand is None:
            kind = classify_operand(v.type, node.result.type)
            if kind is None:
                raise _fail(node, f"operand {v.type} cannot be indexed by the epilogue")
            broadcast = kind
            operand = _operand(stage, index[v], kind)
            args.append("x")
        else:
            raise _fail(node, "a step reads one running value and at most one input")
    exprs = scalar_exprs(node, args)
    if exprs is None or len(exprs) != 1:
        raise CompileError(f"op {node.op!r} has no scalar C expression for an epilogue")
    stage.steps.append(gemm.EpilogueStep(f"v = {exprs[0]};", operand, broadcast))  # type: ignore[arg-type]
    stage.value = node.result


def _spec(
    ctx: LowerCtx, stage: Stage, name: str, comment: str, *, tiled: bool = False
) -> gemm.GemmSpec:
    """The GemmSpec of a stage, with the blocking the unfused GEMM would get (same kernel);
    `tiled` GEMMs run on row tiles, so their M is a runtime argument even for a static batch."""
    dtype = gemm_dtype(stage.node.result.type.dtype)
    m_dims, n, k = stage.node.result.type.shape[:-1], _static(stage.n), _static(stage.k)
    blocking = ctx.gemm_blocking(dtype, stage.trans_a, stage.trans_b, m_dims, n, k)
    if ctx.threads_min_work > 0:
        blocking = replace(blocking, par_min_work=ctx.threads_min_work)
    ep = gemm.Epilogue(tuple(stage.steps), stage.colsum) if stage.steps or stage.colsum else None
    weight = ctx.param_of(ctx.inputs[stage.b]) is not None
    return gemm.GemmSpec(
        name=name,
        dtype=dtype,
        trans_a=stage.trans_a,
        trans_b=stage.trans_b,
        m=None if tiled else _static(stage.m),
        n=_static(stage.n),
        k=_static(stage.k),
        epilogue=ep,
        isa=ctx.isa,
        blocking=blocking,
        ir_comment=comment,
        prepack_b=weight,
    )


def _static(d: str) -> int | None:
    return int(d) if d.isdigit() else None


# ------------------------------------------------------------------------------ fused_gemm


@dataclass(frozen=True)
class GemmCallData:
    """What fused_gemm.c.j2 lays out: one GEMM call."""

    what: str
    steps: tuple[str, ...]  # the epilogue, one C statement per body op, for the reader
    fn: str
    args: str


def _step_notes(stage: Stage) -> tuple[str, ...]:
    """Each epilogue step as `code [x = input, broadcast]`, for the kernel's comment."""
    notes = []
    for step in stage.steps:
        where = ""
        if step.operand:  # o<k>: the stage's k-th operand, named here by its body input
            idx = stage.operands[int(step.operand[1:])][0]
            if step.store:
                notes.append(c_comment(f"{idx} = {step.code}"))
                continue
            where = f" [x = x{idx}, {step.broadcast}]"
        notes.append(c_comment(step.code + where))
    return tuple(notes)


def lower_fused_gemm(ctx: LowerCtx) -> Kernel:
    """One specialised GEMM whose epilogue is the body's tail (and colsum)."""
    body = ctx.node.body
    assert body is not None
    (stage,) = [tail_stage(body)] if is_tail(body) else gemm_stages(body)
    assert stage.a is not None
    spec = _spec(ctx, stage, f"{ctx.name}_gemm", ctx.ir_line)
    pack = ctx.prepack(spec, ctx.inputs[stage.b])
    args = [f"x{stage.a}", f"x{stage.b}", "y0", stage.m, stage.n, stage.k]
    args += [i if isinstance(i, str) else f"x{i}" for i, _ in stage.operands]
    args += ["y1"] if stage.colsum else []
    args += ["p0"] if pack else []
    opa = f"x{stage.a}^T" if stage.trans_a else f"x{stage.a}"
    opb = f"x{stage.b}^T" if stage.trans_b else f"x{stage.b}"
    what = f"y0 = epilogue({opa} @ {opb})" + (", y1 = column sums of y0" if stage.colsum else "")
    stored = [i for i, _ in stage.operands if isinstance(i, str)]
    if stored:
        what += f"; the epilogue also stores {', '.join(stored)}"
    call = GemmCallData(what, _step_notes(stage), spec.name, ", ".join([*args, "nthreads"]))
    shared, support = gemm_support(spec)
    return ctx.kernel(
        render("fused_gemm.c.j2", g=call),
        support=support,
        shared=shared,
        threads=True,
        prepacks=(pack,) if pack else (),
    )


# ------------------------------------------------------------------------------ fused_elementwise


@dataclass(frozen=True)
class Temp:
    """`const ctype var = expr;` inside the loop: one body node's result."""

    ctype: str
    var: str
    expr: str


def lower_fused_elementwise(ctx: LowerCtx) -> Kernel:
    """One loop; each body node is a local computed from its op's scalar C expression."""
    body = ctx.node.body
    assert body is not None
    names = {v: f"a{k}" for k, v in enumerate(body.inputs)}
    temps = []
    for j, node in enumerate(body.nodes):
        exprs = scalar_exprs(node, [names[v] for v in node.inputs])
        if exprs is None or len(exprs) != 1:
            raise CompileError(f"op {node.op!r} has no scalar C expression for a fused loop")
        names[node.result] = f"t{j}"
        temps.append(Temp(node.result.type.dtype.c, f"t{j}", exprs[0]))
    shape = body.outputs[0].type.shape
    nest = loop_nest(shape, ctx.inputs, tuple(names[v] for v in body.outputs))
    split = split_across_threads(ctx, nest, tuple(temps))
    return split or ctx.kernel(render("fused_elementwise.c.j2", n=nest, temps=temps))


# ------------------------------------------------------------------------------ fused_mlp


@dataclass(frozen=True)
class Layer:
    """One GEMM call of a row tile (fused_mlp.c.j2): pointers already offset to the tile."""

    fn: str
    args: str  # A, B, C, rows, N, K, epilogue operands, threads
    what: str
    steps: tuple[str, ...]


@dataclass(frozen=True)
class MlpData:
    """Everything fused_mlp.c.j2 lays out."""

    name: str
    T: str
    rows: str  # C expression: rows of the batch
    rows_per_tile: int
    mr: int
    hidden: int  # widest hidden layer: the tile buffers' row length
    nbuf: int
    work_per_row: int  # multiply-adds per batch row over all layers (thread threshold)
    par_min_work: int
    layers: tuple[Layer, ...]
    inputs: tuple[str, ...]  # C declarations of the job's input pointers
    packs: tuple[str, ...]  # C declarations of the job's prepacked weights (NULL: pack per call)
    budget_note: str


def rows_per_tile(hidden: int, nbuf: int, elem: int, l2: int, mr: int) -> int:
    """Most rows of a tile whose hidden buffers take at most half of L2 (the GEMM's packed
    panels need the rest); at least one micro-tile of `mr` rows, at most 4096."""
    rows = (l2 // 2) // max(1, nbuf * hidden * elem)
    return max(mr, min(4096, rows))


def lower_fused_mlp(ctx: LowerCtx) -> Kernel:
    """Row tiles of the batch run every layer back to back through tile-local buffers."""
    body = ctx.node.body
    assert body is not None
    stages = gemm_stages(body)
    if len(stages) < 2 or stages[0].a is None or any(s.a is not None for s in stages[1:]):
        raise CompileError("fused_mlp body must chain its GEMMs through the hidden values")
    if any(s.colsum or s.trans_a for s in stages):
        raise CompileError("fused_mlp layers take no column sums or transposed rows")
    for s in stages[1:]:
        if not s.k.isdigit():
            raise CompileError("fused_mlp hidden widths must be static")
    T = stages[0].node.result.type.dtype.c
    elem = 4 if T == "float" else 8
    widths = [int(s.n) for s in stages[:-1]]
    nbuf = 1 if len(stages) == 2 else 2
    # a static batch of a few rows is one tile of exactly those rows: the layers' GEMMs get
    # that M, and with it their row path (gemm.ROW_PATH_ROWS)
    few = stages[0].m.isdigit() and int(stages[0].m) <= gemm.ROW_PATH_ROWS
    specs = _shared_layers(
        ctx.name,
        [
            _spec(
                ctx,
                s,
                f"{ctx.name}_layer{i}",
                f"layer {i} of {ctx.name}: {s.node.op}",
                tiled=not few,
            )
            for i, s in enumerate(stages)
        ],
    )
    blk = specs[0].resolved_blocking()
    tile = rows_per_tile(max(widths), nbuf, elem, ctx.caches.l2, blk.mr)
    if few:
        tile = max(tile, int(stages[0].m))  # the GEMMs' static M: one tile of every row
    layers = []
    packs: list[Prepack] = []
    last = len(stages) - 1
    work = 0
    for i, (s, spec) in enumerate(zip(stages, specs)):
        a = f"job->x{stages[0].a} + r * {s.k}" if i == 0 else f"buf[{(i - 1) % nbuf}]"
        c = f"job->y0 + r * {s.n}" if i == last else f"buf[{i % nbuf}]"
        ops = [_tile_operand(f"job->x{idx}", kind, s.n) for idx, kind in s.operands]
        pack = ctx.prepack(spec, ctx.inputs[s.b])
        if pack:
            ops.append(f"job->p{len(packs)}")
            packs.append(pack)
        args = ", ".join([a, f"job->x{s.b}", c, "rows", s.n, s.k, *ops, "job->gemm_threads"])
        what = f"layer {i}: {c.split(' ')[0]}[rows, {s.n}] = epilogue({a.split(' ')[0]}[rows, {s.k}] @ W)"
        layers.append(Layer(spec.name, args, what, _step_notes(s)))
        work += int(s.n) * int(s.k) if s.n.isdigit() and s.k.isdigit() else 1 << 20
    data = MlpData(
        name=ctx.name,
        T=T,
        rows=stages[0].m,
        rows_per_tile=tile,
        mr=blk.mr,
        hidden=max(widths),
        nbuf=nbuf,
        work_per_row=work,
        par_min_work=blk.par_min_work,
        layers=tuple(layers),
        inputs=tuple(f"const {v.type.dtype.c} *x{i}" for i, v in enumerate(ctx.inputs)),
        packs=tuple(f"const {p.ctype} *p{j}" for j, p in enumerate(packs)),
        budget_note=f"{nbuf} x {tile} x {max(widths)} x {elem} B <= L2/2 ({ctx.caches.l2} B L2)",
    )
    parts = [gemm_support(spec) for spec in dict.fromkeys(specs)]  # each distinct GEMM once
    # the row tiles run on lucid_parallel_run even when every layer takes the small path
    shared = (gemm.parallel_block(),) + tuple(b for blocks, _ in parts for b in blocks)
    support = "".join(text for _, text in parts) + render("fused_mlp_tile.c.j2", m=data)
    return ctx.kernel(
        render("fused_mlp.c.j2", m=data),
        support=support,
        shared=shared,
        threads=True,
        prepacks=tuple(packs),
    )


def _shared_layers(name: str, specs: list[gemm.GemmSpec]) -> list[gemm.GemmSpec]:
    """`specs` with every layer whose GEMM equals an earlier layer's (shapes, epilogue,
    blocking: all but the name) replaced by that layer's spec, commented with every layer it
    serves. A deep MLP of equal layers then compiles one GEMM, not one per layer: the C
    compiler's time stops growing with depth."""
    first: dict[gemm.GemmSpec, int] = {}
    serves: dict[int, list[int]] = {}
    for i, spec in enumerate(specs):
        j = first.setdefault(replace(spec, name="", ir_comment=""), i)
        serves.setdefault(j, []).append(i)
    shared = {
        j: replace(
            specs[j],
            ir_comment=f"layers {', '.join(map(str, served))} of {name}: "
            + specs[j].ir_comment.split(": ", 1)[1],
        )
        if len(served) > 1
        else specs[j]
        for j, served in serves.items()
    }
    return [shared[first[replace(spec, name="", ir_comment="")]] for spec in specs]


def _tile_operand(ptr: str, kind: str, n: str) -> str:
    """An epilogue operand's pointer at the tile's first row."""
    if kind == "full":
        return f"{ptr} + r * {n}"
    if kind == "row":
        return f"{ptr} + r"
    return ptr
