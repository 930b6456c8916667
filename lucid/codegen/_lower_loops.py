"""Loop-nest lowerings: elementwise ops (with broadcasting), shape copies, slices and concat,
reductions, mse_loss, softmax and log_softmax."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from lucid.codegen import gemm
from lucid.codegen._jinja import render
from lucid.codegen._lower import (
    Kernel,
    LowerCtx,
    broadcast_index,
    dim_c,
    index_c,
    prod_c,
    strides_c,
)
from lucid.codegen._scalar_c import SUFFIX, scalar_exprs
from lucid.errors import CompileError
from lucid.ir.core import Value
from lucid.ir.ops.reduce import ints
from lucid.ir.types import Attr, Dim, DType, broadcast_shapes

INDENT = "    "


@dataclass(frozen=True)
class Loop:
    """`for (int64_t var = start; var < extent; ++var) {` at `indent`."""

    var: str
    extent: str
    indent: str
    start: str = "0"


@dataclass(frozen=True)
class Load:
    """`const ctype var = src[index];`."""

    ctype: str
    var: str
    src: str
    index: str


@dataclass(frozen=True)
class Store:
    """`dst[index] = expr;`."""

    dst: str
    index: str
    expr: str


@dataclass(frozen=True)
class LoopNest:
    """Loops over an output shape, a load per input, a store per result (loopnest.c.j2)."""

    loops: tuple[Loop, ...]
    loads: tuple[Load, ...]
    stores: tuple[Store, ...]
    indent: str


@dataclass(frozen=True)
class Reduction:
    """Outer loops over the kept axes, inner loops over the reduced ones (reduce.c.j2)."""

    outer: tuple[Loop, ...]
    inner: tuple[Loop, ...]
    loads: tuple[Load, ...]
    pre: tuple[str, ...]
    init: tuple[str, ...]  # the accumulator's declarations
    update: tuple[str, ...]  # the statements of the innermost loop (after pre)
    acc_indent: str
    indent: str
    out_index: str
    final: str
    # > 0: the innermost loop (the input's last, contiguous axis) adds its terms into this many
    # partial sums of the accumulator's type, which vectorize, and then into `acc`
    lanes: int = 0


def _loops(shape: tuple[Dim, ...], names: list[str], depth: int = 1) -> tuple[Loop, ...]:
    return tuple(
        Loop(v, dim_c(d), INDENT * (depth + k)) for k, (v, d) in enumerate(zip(names, shape))
    )


def _is_scalar(v: Value) -> bool:
    return v.type.is_static and v.type.numel() == 1


def collapse_axes(
    out_shape: tuple[Dim, ...], in_shapes: list[tuple[Dim, ...]]
) -> tuple[tuple[Dim, ...], list[tuple[Dim, ...]]]:
    """The same iteration with fewer, longer loops: static output axes of extent 1 dropped, and
    adjacent static axes merged when every input reads both of them the same way (at full
    extent, or broadcast: size 1 or missing). Each input (C-contiguous) then reads the same
    elements in the same order. MobileNetV3's BatchNorm and squeeze-excitation products,
    [32, 120, 14, 14] with [32, 120, 1, 1]: loops of 196, not 14, which vectorize with fewer
    remainders and cost gcc less to compile."""
    rank = len(out_shape)
    padded = [(1,) * (rank - len(shape)) + tuple(shape) for shape in in_shapes]
    keep = [k for k in range(rank) if out_shape[k] != 1]
    groups: list[list[int]] = []
    for k in keep:
        prev = groups[-1][-1] if groups else None
        if (
            prev is not None
            and isinstance(out_shape[prev], int)
            and isinstance(out_shape[k], int)
            and all((shape[prev] == 1) == (shape[k] == 1) for shape in padded)
        ):
            groups[-1].append(k)
        else:
            groups.append([k])

    def merged(shape: tuple[Dim, ...]) -> tuple[Dim, ...]:
        out: list[Dim] = []
        for group in groups:
            if len(group) == 1:
                out.append(shape[group[0]])
                continue
            size = 1
            for k in group:
                d = shape[k]
                assert isinstance(d, int)  # a merged axis is static in the output; 1 or equal here
                size *= d
            out.append(size)
        return tuple(out)

    return merged(tuple(out_shape)), [merged(shape) for shape in padded]


def loop_nest(
    out_shape: tuple[Dim, ...],
    inputs: tuple[Value, ...],
    exprs: tuple[str, ...],
    index_of: dict[int, str] | None = None,
) -> LoopNest:
    """Loads of every input (broadcast to `out_shape`), stores of `exprs` into y0, y1, ...

    Inputs of the output's shape or with a single element make one flat loop (the fast,
    vectorisable path); otherwise one loop per output axis with strided indices, after
    `collapse_axes` merged the axes every input reads alike. `index_of` overrides the index of
    input k (transpose), and keeps every axis."""
    index_of = index_of or {}
    flat = not index_of and all(v.type.shape == out_shape or _is_scalar(v) for v in inputs)
    loops: tuple[Loop, ...]
    if flat:
        loops = (Loop("i", prod_c(out_shape), INDENT),) if out_shape else ()
        out_index = "i" if out_shape else "0"
        in_index = [out_index if v.type.shape == out_shape else "0" for v in inputs]
    else:
        in_shapes = [v.type.shape for v in inputs]
        if not index_of:
            out_shape, in_shapes = collapse_axes(out_shape, in_shapes)
        names = [f"i{k}" for k in range(len(out_shape))]
        loops = _loops(out_shape, names)
        out_index = index_c(list(zip(names, strides_c(out_shape))))
        in_index = [
            index_of.get(k) or broadcast_index(shape, out_shape, names)
            for k, shape in enumerate(in_shapes)
        ]
    loads = tuple(Load(v.type.dtype.c, f"a{k}", f"x{k}", in_index[k]) for k, v in enumerate(inputs))
    stores = tuple(Store(f"y{j}", out_index, e) for j, e in enumerate(exprs))
    return LoopNest(loops, loads, stores, INDENT * (len(loops) + 1))


def lower_elementwise(ctx: LowerCtx) -> Kernel:
    """An elementwise op from its OpDef.c scalar expression (the default lowering)."""
    args = [f"a{k}" for k in range(len(ctx.inputs))]
    exprs = scalar_exprs(ctx.node, args)
    if exprs is None:
        raise CompileError(f"op {ctx.node.op!r} has no C lowering")
    nest = loop_nest(ctx.results[0].type.shape, ctx.inputs, exprs)
    return split_across_threads(ctx, nest) or ctx.kernel(render("loopnest.c.j2", n=nest))


@dataclass(frozen=True)
class RangeSplit:
    """loop_split.c.j2 and loop_split_part.c.j2: the range of a nest's outermost loop (a flat
    loop's elements, or a nest's rows) split across threads."""

    name: str
    n: str  # the extent (a C expression; may read `batch`)
    body: str  # the loop over [begin, end), rendered
    params: str  # the range function's array parameters
    fields: tuple[str, ...]  # the job's array fields
    args: str  # the arrays, as the kernel names them
    job_args: str  # the arrays, read from a job
    min_work: int  # iterations per thread before one more thread pays for itself
    align: int  # ranges start at multiples of this (16 floats: a 64-byte line), or 1
    what: str  # what the iterations are, for the comments


def min_split_elements(ctx: LowerCtx) -> int:
    """Elements a cheap loop streams per thread before one more thread pays for itself."""
    # a cheap op streams ~32K elements (256 KB in and out) in ~10 us, a few pool wake-ups; a
    # thread created per call (AOT) costs ~50 us to start
    return ctx.threads_min_work or (1 << 15 if ctx.threads == "pool" else 1 << 21)


def split_rows(ctx: LowerCtx, n: str, body: str, inner: int, what: str, align: int = 1) -> Kernel:
    """The kernel of `body`, a loop over the rows [begin, end) of `n` (a C expression) that
    returns 0, each row about `inner` elements of work, the rows split across threads when
    there are enough (loop_split.c.j2, at run time; ranges start at multiples of `align`)."""
    arrays = [(f"x{k}", f"const {v.type.dtype.c} *restrict ") for k, v in enumerate(ctx.inputs)]
    arrays += [(f"y{k}", f"{v.type.dtype.c} *restrict ") for k, v in enumerate(ctx.results)]
    if re.search(r"\bbatch\b", body):  # a stride outside the range reads it ([1, N, 6])
        arrays.append(("batch", "int64_t "))
    split = RangeSplit(
        name=ctx.name,
        n=n,
        body=body.rstrip("\n"),
        params=", ".join(f"{t}{a}" for a, t in arrays),
        fields=tuple(f"{t.replace('restrict ', '')}{a}" for a, t in arrays),
        args=", ".join(a for a, _ in arrays),
        job_args=", ".join(f"job->{a}" for a, _ in arrays),
        min_work=-(-min_split_elements(ctx) // inner),
        align=align,
        what=what,
    )
    return ctx.kernel(
        render("loop_split.c.j2", s=split),
        support=render("loop_split_part.c.j2", s=split),
        shared=(gemm.parallel_block(),),
        threads=True,
    )


def split_across_threads(
    ctx: LowerCtx, nest: LoopNest, temps: tuple[Any, ...] = ()
) -> Kernel | None:
    """The kernel of an elementwise loop nest whose outermost range is split across threads,
    or None when the nest is too small to split. A flat loop (one loop over `i`) splits its
    elements on 64-byte lines; a nest with broadcast or strided operands (one loop per output
    axis) splits its outermost axis longer than 1, whose iterations each cover all the inner
    ones (static inner extents only). Every element is computed as on one thread either way.
    `temps` are a fused loop's locals (fused_elementwise.c.j2)."""
    loops = nest.loops
    if len(loops) == 1 and loops[0].var == "i":
        if not _pays(ctx, loops[0].extent, 1):
            return None
        at, inner, align, what = 0, 1, 16, "elements"
    else:
        found = _split_point(ctx, loops)
        if found is None:
            return None
        at, inner = found
        align, what = 1, f"rows of {inner} elements"
    template = "fused_elementwise.c.j2" if temps else "loopnest.c.j2"
    body = render(template, n=replace(nest, loops=_ranged(loops, at)), temps=temps)
    return split_rows(ctx, loops[at].extent, body, inner, what, align)


def _pays(ctx: LowerCtx, extent: str, inner: int) -> bool:
    """Whether `extent` iterations of `inner` elements each may pay for a second thread (a
    runtime extent may: split_rows decides at run time)."""
    if inner < 1:
        return False
    return not extent.isdigit() or (
        int(extent) >= 2 and int(extent) * inner >= 2 * min_split_elements(ctx)
    )


def _split_point(
    ctx: LowerCtx, loops: tuple[Loop, ...], within: tuple[Loop, ...] = ()
) -> tuple[int, int] | None:
    """(the first of `loops` longer than 1 (a batch of one image splits its channels), the
    iterations of the loops after it and of `within` per iteration of it), or None when there
    is none, the split would not pay, or a loop after it has a runtime extent. In `within`
    (a reduction's summed loops) a runtime extent counts as 1: a lower bound of the work."""
    at = next((k for k, lp in enumerate(loops) if lp.extent != "1"), len(loops))
    if at == len(loops) or not all(lp.extent.isdigit() for lp in loops[at + 1 :]):
        return None
    inner = 1
    for lp in (*loops[at + 1 :], *within):
        inner *= int(lp.extent) if lp.extent.isdigit() else 1
    return (at, inner) if _pays(ctx, loops[at].extent, inner) else None


def _ranged(loops: tuple[Loop, ...], at: int) -> tuple[Loop, ...]:
    """`loops` with loop `at` running over a thread's range [begin, end)."""
    return (*loops[:at], replace(loops[at], extent="end", start="begin"), *loops[at + 1 :])


def reduce_kernel(ctx: LowerCtx, red: Reduction) -> Kernel:
    """The kernel of a reduction (reduce.c.j2): its first kept axis longer than 1 split into
    ranges across threads when there is enough work. Each output element is still accumulated
    by one thread, in one order: the same bits on any thread count. A BatchNorm backward's
    per-channel sums over N x H x W ran on one thread (MobileNetV3-Small's batch-32 training:
    35-41 ms of a 300-450 ms step; 19-23 ms on two threads)."""
    found = _split_point(ctx, red.outer, red.inner)
    if found is None:
        return ctx.kernel(render("reduce.c.j2", r=red))
    at, inner = found
    body = render("reduce.c.j2", r=replace(red, outer=_ranged(red.outer, at)))
    return split_rows(ctx, red.outer[at].extent, body, inner, f"outputs of {inner} terms")


def lower_copy(ctx: LowerCtx) -> Kernel:
    """A plain copy: only emitted when the result must land in an output buffer (else alias)."""
    shape = ctx.results[0].type.shape
    nest = loop_nest(shape, (), ("x0[i]" if shape else "x0[0]",))
    return ctx.kernel(render("loopnest.c.j2", n=nest))


def lower_dim(ctx: LowerCtx) -> Kernel:
    """One size of the input's shape (the batch argument for the symbol), as a scalar."""
    axis = ctx.node.attrs["axis"]
    assert isinstance(axis, int)
    size = dim_c(ctx.inputs[0].type.shape[axis])
    ctype = ctx.results[0].type.dtype.c
    return ctx.kernel(f"    (void)x0;\n    y0[0] = ({ctype}){size};\n    return 0;")


def lower_index_check(ctx: LowerCtx) -> Kernel:
    """Copy the indices through, returning LUCID_E_INDEX at the first one out of range."""
    size = ctx.node.attrs["size"]
    allow = ctx.node.attrs["allow"]
    assert isinstance(size, int) and isinstance(allow, tuple)
    bad = " && ".join(
        [f"(v < 0 || v >= {size})", *(f"v != {a}" for a in allow if isinstance(a, int))]
    )
    n = prod_c(ctx.inputs[0].type.shape)
    return ctx.kernel(
        f"    for (int64_t i = 0; i < {n}; ++i) {{\n"
        f"        const int64_t v = x0[i];\n"
        f"        if ({bad})\n"
        f"            return LUCID_E_INDEX;\n"
        f"        y0[i] = v;\n"
        f"    }}\n"
        f"    return 0;"
    )


def lower_broadcast(ctx: LowerCtx) -> Kernel:
    """broadcast_to: an elementwise identity over the broadcast shape."""
    out = ctx.results[0].type.shape
    names = [f"i{k}" for k in range(len(out))]
    index = broadcast_index(ctx.inputs[0].type.shape, out, names)
    nest = loop_nest(out, ctx.inputs, ("a0",), index_of={0: index})
    return split_across_threads(ctx, nest) or ctx.kernel(render("loopnest.c.j2", n=nest))


def lower_transpose(ctx: LowerCtx) -> Kernel:
    """y[i0, i1, ...] = x[index permuted by perm]."""
    perm = ints(ctx.node.attrs, "perm")
    out = ctx.results[0].type.shape
    names = [f"i{k}" for k in range(len(out))]
    in_strides = strides_c(ctx.inputs[0].type.shape)
    index = index_c([(names[k], in_strides[p]) for k, p in enumerate(perm)])
    nest = loop_nest(out, ctx.inputs, ("a0",), index_of={0: index})
    return split_across_threads(ctx, nest) or ctx.kernel(render("loopnest.c.j2", n=nest))


def _slice_terms(
    attrs: Mapping[str, Attr], shape: tuple[Dim, ...], names: list[str]
) -> list[tuple[str, str]]:
    """(index expression, stride) per axis of a C-contiguous `shape` read (or written) at
    `start + i * step` along the sliced axes (`attrs`: a slice node's axes, starts, stops,
    steps) and at `i` along the others."""
    spec = {
        a: (lo, st)
        for a, lo, st in zip(ints(attrs, "axes"), ints(attrs, "starts"), ints(attrs, "steps"))
    }
    terms = []
    for k, (name, stride) in enumerate(zip(names, strides_c(shape))):
        lo, st = spec.get(k, (0, 1))
        at = name if st == 1 else f"{name} * {st}"
        terms.append((at if lo == 0 else f"({lo} + {at})", stride))
    return terms


def lower_slice(ctx: LowerCtx) -> Kernel:
    """y[i0, i1, ...] = x[start + i * step along the sliced axes, i along the others]."""
    out = ctx.results[0].type.shape
    names = [f"i{k}" for k in range(len(out))]
    index = index_c(_slice_terms(ctx.node.attrs, ctx.inputs[0].type.shape, names))
    nest = loop_nest(out, ctx.inputs, ("a0",), index_of={0: index})
    return split_across_threads(ctx, nest) or ctx.kernel(render("loopnest.c.j2", n=nest))


def lower_slice_grad(ctx: LowerCtx) -> Kernel:
    """Zeros, then g written where the slice reads (two loop nests)."""
    out = ctx.results[0].type.shape
    g = ctx.inputs[0].type
    zero = LoopNest((Loop("i", prod_c(out), INDENT),), (), (Store("y0", "i", "0"),), INDENT * 2)
    names = [f"i{k}" for k in range(len(g.shape))]
    scatter = LoopNest(
        _loops(g.shape, names),
        (Load(g.dtype.c, "a0", "x0", index_c(list(zip(names, strides_c(g.shape))))),),
        (Store("y0", index_c(_slice_terms(ctx.node.attrs, out, names)), "a0"),),
        INDENT * (len(g.shape) + 1),
    )
    return ctx.kernel(render("loopnests.c.j2", nests=(zero, scatter)))


def lower_concat(ctx: LowerCtx) -> Kernel:
    """One loop nest per input, each writing its block of y at its offset along the axis."""
    axis = ctx.node.attrs["axis"]
    assert isinstance(axis, int)
    out = ctx.results[0].type.shape
    out_strides = strides_c(out)
    nests = []
    offset = 0
    for k, v in enumerate(ctx.inputs):
        shape = v.type.shape
        names = [f"i{j}" for j in range(len(shape))]
        at = [n if j != axis or not offset else f"({offset} + {n})" for j, n in enumerate(names)]
        nests.append(
            LoopNest(
                _loops(shape, names),
                (Load(v.type.dtype.c, "a0", f"x{k}", index_c(list(zip(names, strides_c(shape))))),),
                (Store("y0", index_c(list(zip(at, out_strides))), "a0"),),
                INDENT * (len(shape) + 1),
            )
        )
        offset += int(shape[axis])
    return ctx.kernel(render("loopnests.c.j2", nests=tuple(nests)))


def _acc(dtype: DType) -> tuple[str, str]:
    """The accumulator type of a sum in `dtype`, and why."""
    if dtype is DType.F32:
        return "double", "float sums accumulate in double: closer to the exact sum than NumPy's"
    if dtype is DType.F64:
        return "double", "the sum order differs from NumPy's pairwise sum, within tolerance"
    return "uint64_t", "int64 sums wrap like NumPy's; unsigned overflow is defined in C"


def _merged_suffix(shape: tuple[Dim, ...], axes: set[int]) -> tuple[tuple[Dim, ...], set[int]]:
    """`shape` with its longest suffix of reduced, static axes merged into one axis (and the
    axes renumbered): a contiguous input reads the same elements in the same order."""
    start = len(shape)
    while start > 0 and start - 1 in axes and isinstance(shape[start - 1], int):
        start -= 1
    if len(shape) - start < 2:
        return shape, axes
    run = 1
    for d in shape[start:]:
        run *= int(d)
    return (*shape[:start], run), {a for a in axes if a < start} | {start}


def reduction(
    in_shape: tuple[Dim, ...],
    axes: set[int],
    inputs: tuple[Value, ...],
    term: str,
    final: str,
    dtype: DType,
    pre: tuple[str, ...] = (),
    init: tuple[str, ...] | None = None,
    update: tuple[str, ...] | None = None,
) -> Reduction:
    """Sum `term` over `axes` of `in_shape` (inputs broadcast to it) into y0 over the kept axes
    (or, given `init` and `update`, accumulate as they say: max, argmax)."""
    shapes = [v.type.shape for v in inputs]
    summing = init is None and update is None and dtype.is_float
    if summing and all(sh == in_shape for sh in shapes):
        # reduced trailing axes of static sizes are one contiguous run (H*W of NCHW): one loop
        in_shape, axes = _merged_suffix(in_shape, axes)
        shapes = [in_shape] * len(inputs)
    kept = [k for k in range(len(in_shape)) if k not in axes]
    gone = [k for k in range(len(in_shape)) if k in axes]
    names = [f"i{k}" for k in range(len(in_shape))]
    outer = tuple(
        Loop(
            names[k],
            dim_c(in_shape[k]),
            INDENT * (1 + n),
        )
        for n, k in enumerate(kept)
    )
    inner = tuple(
        Loop(
            names[k],
            dim_c(in_shape[k]),
            INDENT * (1 + len(kept) + n),
        )
        for n, k in enumerate(gone)
    )
    kept_shape = tuple(in_shape[k] for k in kept)
    out_index = index_c([(names[k], s) for k, s in zip(kept, strides_c(kept_shape))])
    loads = tuple(
        Load(v.type.dtype.c, f"a{k}", f"x{k}", broadcast_index(sh, in_shape, names))
        for k, (v, sh) in enumerate(zip(inputs, shapes, strict=True))
    )
    acc_type, why = _acc(dtype)
    # A float sum whose innermost loop runs along the last axis: eight double partial sums
    # (a vector of them) instead of one serial chain of double adds (a channel's sum over
    # N*H*W in a BatchNorm backward was 4 cycles an element).
    lanes = 8 if summing and gone[-1:] == [len(in_shape) - 1] else 0
    return Reduction(
        outer,
        inner,
        loads,
        pre,
        init or (f"{acc_type} acc = 0; /* {why} */",),
        update or (f"acc += {term};",),
        INDENT * (1 + len(kept)),
        INDENT * (1 + len(kept) + len(gone)),
        out_index,
        final,
        lanes,
    )


@dataclass(frozen=True)
class ColumnSum:
    """x0 [rows, cols] summed over its rows (reduce_columns.c.j2)."""

    T: str
    acc_type: str
    why: str
    rows: str
    cols: str
    term: str  # row[j], converted to the accumulator type where it must be
    final: str  # y0[j] from acc[j]


def _column_sum(ctx: LowerCtx, axes: set[int], final: str) -> Kernel | None:
    """The kernel summing the leading `axes` of the node's one input, or None if they are not
    leading (or nothing is kept). Column sums (bias and LayerNorm weight gradients, sum_to of a
    broadcast row) are most of a backward pass's reductions; a loop per column reads memory
    with a stride of a whole row and adds serially, this reads it once, in order."""
    shape = ctx.inputs[0].type.shape
    r = len(axes)
    if len(ctx.inputs) != 1 or axes != set(range(r)) or r == 0 or r == len(shape):
        return None
    dtype = ctx.inputs[0].type.dtype
    acc_type, why = _acc(dtype)
    term = f"({acc_type})row[j]" if acc_type == "uint64_t" else "row[j]"
    col = ColumnSum(dtype.c, acc_type, why, prod_c(shape[:r]), prod_c(shape[r:]), term,
                    final.format(acc="acc[j]"))  # fmt: skip
    return ctx.kernel(render("reduce_columns.c.j2", r=col))


def lower_reduce(ctx: LowerCtx) -> Kernel:
    """sum/mean over `axes`; mean = the sum in the dtype divided by the count in the dtype."""
    x = ctx.inputs[0]
    axes = set(ints(ctx.node.attrs, "axes"))
    t = x.type.dtype.c
    count = prod_c([x.type.shape[a] for a in sorted(axes)])
    final = "({t})" + ("{acc}" if ctx.node.op == "sum" else "{acc} / ({t})({count})")
    final = final.replace("{t}", t).replace("{count}", count)
    columns = _column_sum(ctx, axes, final)
    if columns is not None:
        return columns
    red = reduction(x.type.shape, axes, (x,), "a0", final.format(acc="acc"), x.type.dtype)
    return reduce_kernel(ctx, red)


def lower_extremum(ctx: LowerCtx) -> Kernel:
    """max/min over `axes`: the NaN-propagating select of `maximum`/`minimum`, in the dtype."""
    x = ctx.inputs[0]
    axes = set(ints(ctx.node.attrs, "axes"))
    dtype = x.type.dtype
    t, high = dtype.c, ctx.node.op == "max"
    if dtype.is_float:
        init = f"{t} acc = {'-' if high else ''}INFINITY; /* NaN propagates, as in NumPy */"
        step = f"acc = lucid_{'maximum' if high else 'minimum'}{SUFFIX[dtype]}(a0, acc);"
    else:
        init = f"{t} acc = {'INT64_MIN' if high else 'INT64_MAX'};"
        step = f"acc = a0 {'>' if high else '<'} acc ? a0 : acc;"
    red = reduction(x.type.shape, axes, (x,), "a0", "acc", dtype, init=(init,), update=(step,))
    return reduce_kernel(ctx, red)


def lower_arg_extremum(ctx: LowerCtx) -> Kernel:
    """argmax/argmin along one axis: the first extreme element, or the first NaN."""
    x = ctx.inputs[0]
    axis = ctx.node.attrs["axis"]
    assert isinstance(axis, int)
    dtype = x.type.dtype
    t, high = dtype.c, ctx.node.op == "argmax"
    cmp = ">" if high else "<"
    if dtype.is_float:
        start = f"{'-' if high else ''}INFINITY"
        better = f"a0 {cmp} best || (isnan(a0) && !isnan(best))"
    else:
        start = "INT64_MIN" if high else "INT64_MAX"
        better = f"a0 {cmp} best"
    init = (f"{t} best = {start};", "int64_t acc = 0; /* the first of ties wins */")
    update = (f"if ({better}) {{ best = a0; acc = i{axis}; }}",)
    red = reduction(x.type.shape, {axis}, (x,), "a0", "acc", dtype, init=init, update=update)
    return reduce_kernel(ctx, red)


def lower_sum_to(ctx: LowerCtx) -> Kernel:
    """Sum a broadcast cotangent back: over the leading axes and the stretched size-1 axes."""
    g, target = ctx.inputs[0].type, ctx.results[0].type.shape
    extra = g.rank - len(target)
    axes = set(range(extra)) | {
        k + extra for k, d in enumerate(target) if d == 1 and g.shape[k + extra] != 1
    }
    columns = _column_sum(ctx, axes, f"({g.dtype.c}){{acc}}")
    if columns is not None:
        return columns
    red = reduction(g.shape, axes, ctx.inputs, "a0", f"({g.dtype.c})acc", g.dtype)
    return reduce_kernel(ctx, red)


def lower_mse_loss(ctx: LowerCtx) -> Kernel:
    """sum((p - t)^2) (/ count): the square in the dtype, as NumPy rounds it, then summed."""
    p, tgt = ctx.inputs
    t = p.type.dtype.c
    shape = broadcast_shapes(p.type.shape, tgt.type.shape)
    count = prod_c(shape)
    mean = ctx.node.attrs["reduction"] == "mean"
    final = f"({t})acc / ({t})({count})" if mean else f"({t})acc"
    red = reduction(
        shape,
        set(range(len(shape))),
        ctx.inputs,
        "d * d",
        final,
        p.type.dtype,
        pre=(f"const {t} d = a0 - a1;",),
    )
    return reduce_kernel(ctx, red)


@dataclass(frozen=True)
class Softmax:
    """softmax or log_softmax of x viewed as [outer, n, inner], along n (softmax.c.j2)."""

    op: str
    name: str  # the kernel's name, prefixing its part function and job
    log: bool
    T: str
    s: str
    outer: str
    n: str
    inner: str
    acc_why: str
    min_work: int  # elements that pay for one more thread
    lanes: int = 16  # partial maxima and sums of a contiguous row: a 64-byte vector of T
    rows: int = 4  # rows computed side by side (softmax_part.c.j2's NAME_rows)


def lower_softmax(ctx: LowerCtx) -> Kernel:
    """softmax/log_softmax along `dim`: the axes before it are `outer`, those after `inner`
    (either may hold the batch symbol, as may `dim` itself)."""
    x = ctx.inputs[0].type
    dim = ctx.node.attrs["dim"]
    assert isinstance(dim, int)
    sm = Softmax(
        op=ctx.node.op,
        name=ctx.name,
        log=ctx.node.op == "log_softmax",
        T=x.dtype.c,
        s=SUFFIX[x.dtype],
        outer=prod_c(x.shape[:dim]),
        n=dim_c(x.shape[dim]),
        inner=prod_c(x.shape[dim + 1 :]),
        acc_why="the sum accumulates in double, then rounds to the dtype like NumPy's sum",
        # an exp, a max and a division per element: ~16k elements pay for a pool wake-up
        min_work=ctx.threads_min_work if ctx.threads_min_work > 0 else 1 << 14,
        lanes=64 // x.dtype.np.itemsize,
    )
    return ctx.kernel(
        render("softmax.c.j2", sm=sm),
        support=render("softmax_part.c.j2", sm=sm),
        shared=(gemm.parallel_block(),),
        threads=True,
    )
