"""C lowerings of conv2d, its gradients and fused_conv (a conv2d with an elementwise epilogue).

Two forward strategies, chosen here from the static shapes:
- GEMM (any groups): per (image, group) task, the input's columns are unfolded into a scratch
  buffer (`im2col`, K = C/groups * kh * kw rows of OH * OW) and one generated GEMM computes
  y[Og, OH*OW] = w_g[Og, K] @ col[K, OH*OW]; its epilogue adds the bias (a per-row operand)
  and applies the fused elementwise steps, exactly as Linear's GEMM does. A 1x1 kernel with
  stride 1 and no padding reads x directly (no unfold). With one group the weight (the GEMM's
  A) is packed once per change and kept (prepack_a), not per call and image. With enough
  tasks for the threads, each thread runs whole tasks (own column buffer, single-threaded
  GEMM); otherwise each GEMM splits its own work. The GEMM never splits K, so the results do
  not depend on the threads.
- direct (depthwise: groups == C, one input channel per group; or an ungrouped conv with few
  taps and outputs, `_dense_direct`, as a network's RGB stem): the input planes are copied
  once into a zeroed scratch, split by the stride into phase planes (`Phases`), so that every
  tap reads one contiguous run of it; register blocks of sums accumulate `w * run` over the
  taps in order (an FMA each where the target has AVX-512, templates/_vec_fma.c.j2), several
  outputs per loaded run for a dense conv; the epilogue runs on the finished sums. Planes
  (depthwise) or (image, group of outputs) tasks are split over threads.
The gradients reuse the unfold: grad_weight = sum over images of g_n,g @ col^T (a GEMM with B
transposed, images added in order), grad_input = fold(w_g^T @ g_n,g) (a GEMM with A
transposed, then `col2im`; tasks split over threads as in the forward); a depthwise conv's
gradients are direct kernels over the same scratch planes (conv_depthwise_grad_task.c.j2).
Every index range of the unfold/fold loops is computed in Python, so the C never reads or
writes outside x, y or the scratch buffers, and no bounds test sits in an inner loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from lucid.codegen import gemm
from lucid.codegen._jinja import render
from lucid.codegen._lower import Kernel, LowerCtx, Prepack, c_comment, dim_c, gemm_dtype
from lucid.codegen._lower_special import gemm_kernel, gemm_support
from lucid.codegen._scalar_c import scalar_exprs
from lucid.errors import CompileError
from lucid.ir.core import Node, Value
from lucid.ir.ops.conv import out_size
from lucid.ir.ops.reduce import ints
from lucid.ir.passes.fusion_rules import classify_conv_operand
from lucid.ir.types import Attr, TensorType

# ------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class Geometry:
    """Every size of one convolution as C text or ints (N may be `batch`)."""

    T: str
    N: str
    C: int
    H: int
    W: int
    O: int
    G: int
    Cg: int
    Og: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pl: int
    OH: int
    OW: int
    # valid output ranges per kernel tap: rows oy in [oy_lo[i], oy_hi[i]) read input rows in
    # [0, H); columns likewise per j
    oy_lo: tuple[int, ...]
    oy_hi: tuple[int, ...]
    ox_lo: tuple[int, ...]
    ox_hi: tuple[int, ...]
    direct: bool  # 1x1, stride 1, no padding: x itself is the column matrix

    @property
    def K(self) -> int:
        """Rows of the column matrix (the GEMM's contraction length)."""
        return self.Cg * self.kh * self.kw

    @property
    def P(self) -> int:
        """Output pixels per channel."""
        return self.OH * self.OW

    @property
    def depthwise(self) -> bool:
        """One input channel per group (the channel multiplier Og may be > 1)."""
        return self.Cg == 1 and self.G == self.C


def _valid(
    n_out: int, size: int, k: int, stride: int, dil: int, pad: int
) -> tuple[list[int], list[int]]:
    """For each tap t: the outputs o with 0 <= o * stride + t * dil - pad < size, as [lo, hi)."""
    los, his = [], []
    for t in range(k):
        off = t * dil - pad
        lo = 0 if off >= 0 else (-off + stride - 1) // stride
        hi = min(n_out, (size - 1 - off) // stride + 1) if size - 1 - off >= 0 else 0
        los.append(min(lo, n_out))
        his.append(max(min(lo, n_out), hi))
    return los, his


def _static(t: TensorType) -> tuple[int, int, int, int]:
    """The four dims of a conv operand, the first (the batch, maybe a symbol) as 0."""
    dims = [d if isinstance(d, int) else 0 for d in t.shape]
    if len(dims) != 4 or any(not isinstance(d, int) for d in t.shape[1:]):
        raise CompileError(f"conv lowering: expected a 4-D type static but for its batch, got {t}")
    return dims[0], dims[1], dims[2], dims[3]


def geometry(x: TensorType, w: TensorType, attrs: Mapping[str, Attr]) -> Geometry:
    """The Geometry of conv2d(x, w) under the node's attrs (types already checked)."""
    stride, pad, dil = ints(attrs, "stride"), ints(attrs, "padding"), ints(attrs, "dilation")
    groups = attrs["groups"]
    assert isinstance(groups, int)
    _, c, h, wd = _static(x)
    o, cg, kh, kw = _static(w)
    oh = out_size(h, pad[0], pad[1], kh, stride[0], dil[0])
    ow = out_size(wd, pad[2], pad[3], kw, stride[1], dil[1])
    oy_lo, oy_hi = _valid(oh, h, kh, stride[0], dil[0], pad[0])
    ox_lo, ox_hi = _valid(ow, wd, kw, stride[1], dil[1], pad[2])
    return Geometry(
        T=x.dtype.c,
        N=dim_c(x.shape[0]),
        C=c,
        H=h,
        W=wd,
        O=o,
        G=groups,
        Cg=cg,
        Og=o // groups,
        kh=kh,
        kw=kw,
        sh=stride[0],
        sw=stride[1],
        dh=dil[0],
        dw=dil[1],
        pt=pad[0],
        pl=pad[2],
        OH=oh,
        OW=ow,
        oy_lo=tuple(oy_lo),
        oy_hi=tuple(oy_hi),
        ox_lo=tuple(ox_lo),
        ox_hi=tuple(ox_hi),
        direct=kh == kw == 1 and stride == (1, 1) and not any(pad),
    )


@dataclass(frozen=True)
class Unfold:
    """What conv_unfold.c.j2 lays out: `NAME_im2col` and/or `NAME_col2im` for one geometry."""

    name: str
    g: Geometry
    im2col: bool
    col2im: bool


# ------------------------------------------------------------------------------ epilogues


@dataclass(frozen=True)
class Step:
    """One epilogue step: `v = ...;` with its operand (or None) and how it is indexed."""

    code: str
    operand: int | None  # kernel input index
    kind: str  # "row" (per output channel), "full" (same shape as y), "scalar"


def _body_plan(node: Node, inputs: tuple[Value, ...]) -> tuple[Node, list[int], list[Step]]:
    """(the conv node, kernel input index of x, w[, b], the epilogue steps) of a conv or of a
    fused_conv body (whose inputs are the kernel's inputs, in order)."""
    if node.op == "conv2d":
        conv, index, tail = node, {v: i for i, v in enumerate(inputs)}, []
    else:
        body = node.body
        assert body is not None
        index = {v: i for i, v in enumerate(body.inputs)}
        conv, tail = body.nodes[0], list(body.nodes[1:])
        if conv.op != "conv2d":
            raise CompileError(
                "fused_conv body must start with its conv2d (fusion never does this)"
            )
    srcs = [index[v] for v in conv.inputs]
    steps: list[Step] = []
    if len(srcs) == 3:
        steps.append(Step("v = v + x;", srcs[2], "row"))
    chain = conv.result
    for n in tail:
        args: list[str] = []
        operand, kind = None, "scalar"
        for v in n.inputs:
            if v is chain:
                args.append("v")
            elif v in index and operand is None:
                k = classify_conv_operand(v.type, chain.type)
                if k is None:
                    raise CompileError(f"fused_conv: operand {v.type} cannot be indexed")
                operand, kind = index[v], k
                args.append("x")
            else:
                raise CompileError("fused_conv: a step reads one running value and one input")
        exprs = scalar_exprs(n, args)
        if exprs is None or len(exprs) != 1:
            raise CompileError(f"op {n.op!r} has no scalar C expression for an epilogue")
        steps.append(Step(f"v = {exprs[0]};", operand, kind))
        chain = n.result
    return conv, srcs, steps


# ------------------------------------------------------------------------------ forward


@dataclass(frozen=True)
class GemmConv:
    """conv_images.c.j2 and conv_gemm.c.j2: the forward (or the input gradient) through one GEMM
    per (image, group) task, the tasks split over threads when there are enough of them."""

    name: str
    g: Geometry
    what: str
    fn: str
    x: str
    w: str
    operands: tuple[str, ...]  # the GEMM's epilogue operand arguments, offset for (n, grp)
    steps: tuple[str, ...]
    grad_input: bool
    col: bool  # a column scratch buffer is needed (not the 1x1 direct case)
    params: str  # the task function's pointer parameters: the kernel's inputs, y0, packs
    args: str  # the kernel's own pointers, passed to it
    job_args: str  # the job's pointers, passed to it
    ninputs: int
    min_work: int  # multiply-adds that pay for one more thread
    packs: tuple[str, ...] = ()  # C types of the prepacked weights p0, ... (the GEMM's Ap)


def _images(
    ctx: LowerCtx,
    g: Geometry,
    spec: gemm.GemmSpec,
    what: str,
    srcs: list[int],
    operands: tuple[str, ...] = (),
    steps: tuple[str, ...] = (),
    grad_input: bool = False,
    packs: tuple[Prepack, ...] = (),
) -> GemmConv:
    n = len(ctx.inputs)
    t = g.T
    params = [f"const {t} *restrict x{i}" for i in range(n)] + [f"{t} *restrict y0"]
    params += [f"const {p.ctype} *restrict p{j}" for j, p in enumerate(packs)]
    pointers = [*(f"x{i}" for i in range(n)), "y0", *(f"p{j}" for j in range(len(packs)))]
    blk = spec.resolved_blocking()
    return GemmConv(
        name=ctx.name,
        g=g,
        what=what,
        fn=spec.name,
        x=f"x{srcs[0]}",
        w=f"x{srcs[1]}",
        operands=operands,
        steps=steps,
        grad_input=grad_input,
        col=not g.direct,
        params=", ".join(params),
        args=", ".join(pointers),
        job_args=", ".join(f"job->{p}" for p in pointers),
        ninputs=n,
        packs=tuple(p.ctype for p in packs),
        min_work=ctx.threads_min_work if ctx.threads_min_work > 0 else blk.par_min_work,
    )


@dataclass(frozen=True)
class Depthwise:
    """conv_depthwise.c.j2: the direct depthwise forward."""

    name: str
    g: Geometry
    x: str
    w: str
    loads: tuple[tuple[str, str], ...]  # (C name, element expression) of each epilogue operand
    steps: tuple[str, ...]
    Hp: int
    Wp: int
    comment_steps: tuple[str, ...]
    plane: bool  # stride 1: one loop per tap over the plane computed Wp wide
    pad_len: int  # scratch elements: Hp * Wp, plus the overrun of the last tap in plane mode
    acc_len: int  # accumulator elements: OH * Wp (plane) or OW (a row)
    ninputs: int
    work_per_plane: int  # multiply-adds per task (thread threshold)
    min_work: int  # multiply-adds that pay for one more thread
    what: str  # the kernel's formula, for its comment
    tasks: str  # C expression: the number of tasks the threads split
    task_note: str
    taps: int  # kh * kw
    grad: str = ""  # "input" or "weight" for the gradient kernels
    phases: Phases | None = None  # the forward's scratch layout and register blocks
    dense: bool = False  # the forward of an ungrouped conv (_dense_direct), not a depthwise one
    blocked: Blocked | None = None  # the forward on channel-blocked vectors (`blocked`)


# The forward's register blocks: up to BLOCK_VECTORS[isa] vectors of VECTOR_BYTES each stay in
# registers across every tap of a block: 8 of AVX-512's 32 registers (enough independent sums to
# hide the add latency), 4 64-byte vectors = 8 of AVX2's 16 32-byte registers. A dense conv's
# block holds DENSE_TILE[isa] = (outputs, vectors) sums, each loaded vector used by every
# output: 4 x 6 (+ 6 loaded) of AVX-512's 32 registers, 2 x 2 64-byte vectors on AVX2.
VECTOR_BYTES = 64
BLOCK_VECTORS = {"avx512": 8, "avx2": 4, "scalar": 4}
DENSE_TILE = {"avx512": (4, 6), "avx2": (2, 2), "scalar": (2, 2)}


@dataclass(frozen=True)
class Phases:
    """The direct forward's scratch: each input channel's zero-padded plane (one for a
    depthwise task, all C for a dense one) split by the stride into sh * sw phase planes of
    Hq x Wq (phase (a, b) holds padded rows a, a + sh, ... and columns
    b, b + sw, ...), so that every tap reads one phase plane at unit stride: output (oy, ox)
    of tap (i, j) is element (oy + i*dh // sh, ox + j*dw // sw) of phase (i*dh % sh, j*dw % sw).
    The sums of a plane are computed OH * Wq wide (columns >= OW are never stored), in blocks
    of `block` vectors of `lanes` elements held in registers over all taps, in tap order: each
    output gets exactly the sum of the plain loop, whatever the blocking."""

    Hq: int
    Wq: int
    count: int  # sh * sw phase planes
    taps: tuple[int, ...]  # scratch offset of each tap (input channel, i, j), row-major
    lanes: int  # elements per vector
    block: int  # vectors per register block
    full_blocks: int  # whole blocks of the OH * Wq sums
    tail: int  # vectors of the last, partial block (0: none)
    acc_len: int  # sums computed: whole vectors, >= OH * Wq
    pad_len: int  # scratch elements: every vector read stays inside
    # (first input column, how many) of each column phase: columns first, first + sw, ...
    column_phases: tuple[tuple[int, int], ...]
    # the epilogue reads no operand per element: it runs over all acc_len sums in place
    inplace: bool = False
    group: int = 1  # dense: outputs per task, their sums kept side by side
    outs: int = 1  # outputs per register block (depthwise: 1)
    groups: int = 1  # dense: tasks per image


def phases(
    g: Geometry, hp: int, wp: int, elem: int, isa: gemm.Isa, channels: int, dense: bool
) -> Phases:
    """The phase-plane layout of `g`'s forward over `channels` padded planes of hp x wp."""
    hq, wq = -(-hp // g.sh), -(-wp // g.sw)
    taps = tuple(
        (ci * g.sh * g.sw + (i * g.dh % g.sh) * g.sw + j * g.dw % g.sw) * hq * wq
        + (i * g.dh // g.sh) * wq
        + j * g.dw // g.sw
        for ci in range(channels)
        for i in range(g.kh)
        for j in range(g.kw)
    )
    lanes = VECTOR_BYTES // elem
    sums = g.OH * wq
    outs, block = DENSE_TILE[isa] if dense else (1, BLOCK_VECTORS[isa])
    full, rest = divmod(sums, block * lanes)
    tail = -(-rest // lanes)
    acc_len = (full * block + tail) * lanes
    return Phases(
        Hq=hq,
        Wq=wq,
        count=g.sh * g.sw,
        taps=taps,
        lanes=lanes,
        block=block,
        outs=outs,
        full_blocks=full,
        tail=tail,
        acc_len=acc_len,
        pad_len=max(channels * g.sh * g.sw * hq * wq, max(taps) + acc_len),
        column_phases=tuple(
            (first, -(-(g.W - first) // g.sw))
            for first in ((b - g.pl) % g.sw for b in range(g.sw))
            if first < g.W
        ),
    )


@dataclass(frozen=True)
class Blocked:
    """conv_depthwise_blocked.c.j2: a depthwise forward on vectors of `lanes` channels. A
    task is (image, group of `lanes` channels); its input planes are transposed into a scratch
    of Hp x Wp vectors (one per padded pixel), so each tap of `lanes` outputs is one aligned
    load and an FMA of whole vectors, with no sum computed and then dropped."""

    lanes: int  # channels per vector
    groups: int  # ceil(C / lanes) tasks per image
    taps: tuple[tuple[int, int], ...]  # (row, column) offset of each tap in the scratch, row-major
    outs: int  # outputs along a row held in registers at once
    full: int  # whole blocks of `outs` per output row
    tail: int  # outputs of the last, shorter block of a row (0: none)
    # the transpose of `lanes` vectors: per round, (i, j, mask of new r[i], mask of new r[j])
    rounds: tuple[tuple[tuple[int, int, tuple[int, ...], tuple[int, ...]], ...], ...]
    inplace: bool  # the epilogue reads no operand per element: one flat loop per plane


# When the channel-blocked forward (Blocked) replaces the phase planes, from single-threaded
# medians of both on the AMD EPYC (Zen 4; float32, conv + HardSwish, batch 1 and 8 or 32,
# blocked / phase planes): 5x5 kernels 0.72-0.96 at 14x14 to 56x56 inputs, stride 1 or 2, and
# 0.59-0.68 on 7x7 planes; 7x7 kernels 0.72-0.76; 3x3 kernels on 7x7 outputs 0.67-0.88 (where
# phase planes compute 1.3x the outputs), but 1.00-1.17 on 14x14 to 28x28 outputs (9 taps do
# not pay for transposing the planes in and out). The transposes are AVX-512 shuffles; other
# isas keep the phase planes. The scratch must stay in L2 beside the rest.
BLOCKED_ISAS = ("avx512",)
BLOCKED_MIN_TAPS = 25  # or any kernel on outputs at most BLOCKED_MAX_OW wide
BLOCKED_MAX_OW = 7
BLOCKED_SCRATCH_BYTES = 256 * 1024
BLOCKED_OUTS = 8  # at most this many register sums along a row (of AVX-512's 32 registers)


def blocked(
    g: Geometry, hp: int, wp: int, isa: gemm.Isa, elem: int, inplace: bool
) -> Blocked | None:
    """The channel-blocked plan of a depthwise forward with one output per channel, or None
    (another isa, a channel multiplier, a small kernel on wide outputs, or a padded plane
    whose vectors would not fit BLOCKED_SCRATCH_BYTES: the phase planes then)."""
    if isa not in BLOCKED_ISAS or not g.depthwise or g.Og != 1:
        return None
    if g.kh * g.kw < BLOCKED_MIN_TAPS and g.OW > BLOCKED_MAX_OW:
        return None
    if hp * wp * VECTOR_BYTES > BLOCKED_SCRATCH_BYTES:
        return None
    lanes = VECTOR_BYTES // elem
    blocks = -(-g.OW // BLOCKED_OUTS)
    outs = -(-g.OW // blocks)  # balanced blocks: 14 -> 7 + 7, not 8 + 6
    full, tail = divmod(g.OW, outs)
    return Blocked(
        lanes=lanes,
        groups=-(-g.C // lanes),
        taps=tuple((i * g.dh, j * g.dw) for i in range(g.kh) for j in range(g.kw)),
        outs=outs,
        full=full,
        tail=tail,
        rounds=transpose_rounds(lanes),
        inplace=inplace,
    )


def transpose_rounds(
    lanes: int,
) -> tuple[tuple[tuple[int, int, tuple[int, ...], tuple[int, ...]], ...], ...]:
    """The shuffles that transpose `lanes` vectors of `lanes` elements in place: round k
    swaps bit k of the row index with bit k of the column index, so after log2(lanes) rounds
    r[i][c] holds what r[c][i] held. A shuffle's mask picks element m of its first operand
    (m < lanes) or m - lanes of its second, as __builtin_shuffle does."""
    rounds = []
    bit = 1
    while bit < lanes:
        pairs = []
        for i in range(lanes):
            if i & bit:
                continue
            # new r[i][c] = r[i][c] where c has the bit clear, else r[i | bit][c ^ bit];
            # new r[i | bit][c] = r[i][c | bit] where c has it clear, else r[i | bit][c]
            low = tuple(c if not c & bit else lanes + (c ^ bit) for c in range(lanes))
            high = tuple(c | bit if not c & bit else lanes + c for c in range(lanes))
            pairs.append((i, i | bit, low, high))
        rounds.append(tuple(pairs))
        bit <<= 1
    return tuple(rounds)


def _direct_depthwise_grad(ctx: LowerCtx, g: Geometry, grad: str) -> Kernel:
    """conv2d_grad_input / conv2d_grad_weight of a depthwise conv without GEMMs (see the
    template's comment): per plane for the input, per channel for the weight."""
    if grad == "input":
        what = (
            f"depthwise input gradient: dx[n, c] = sum over q < {g.Og} and taps (i, j) of "
            f"w[c * {g.Og} + q, 0, i, j] * g[n, c * {g.Og} + q] placed at (i * {g.dh}, j * {g.dw}) "
            f"with stride ({g.sh}, {g.sw}), cropped to the unpadded input"
        )
        data = replace(_depthwise_data(ctx, g, [0, 1], what), grad=grad)
    else:
        what = (
            f"depthwise weight gradient: dw[c * {g.Og} + q, 0, i, j] = sum over n, oy, ox of "
            f"g[n, c * {g.Og} + q, oy, ox] * x_padded[n, c, oy * {g.sh} + i * {g.dh}, "
            f"ox * {g.sw} + j * {g.dw}]"
        )
        data = replace(_depthwise_data(ctx, g, [0, 1], what, per_channel=True), grad=grad)
    return _direct_kernel(ctx, data, "conv_depthwise_grad_task.c.j2")


def _depthwise_data(
    ctx: LowerCtx, g: Geometry, srcs: list[int], what: str, per_channel: bool = False
) -> Depthwise:
    """The depthwise kernels' shared layout: the zero-bordered scratch plane of Hp x Wp (every
    tap's read stays inside it) and, for stride 1, the plane-wide loops."""
    hp = max(g.H + g.pt, (g.OH - 1) * g.sh + (g.kh - 1) * g.dh + 1)
    wp = max(g.W + g.pl, (g.OW - 1) * g.sw + (g.kw - 1) * g.dw + 1)
    plane = g.sh == g.sw == 1
    taps = g.kh * g.kw
    images = int(g.N) if per_channel and g.N.isdigit() else 1
    return Depthwise(
        name=ctx.name,
        g=g,
        x=f"x{srcs[0]}",
        w=f"x{srcs[1]}",
        loads=(),
        steps=(),
        Hp=hp,
        Wp=wp,
        comment_steps=(),
        plane=plane,
        pad_len=hp * wp + ((g.kw - 1) * g.dw if plane else 0),
        acc_len=g.OH * wp if plane else g.OW,
        ninputs=len(ctx.inputs),
        work_per_plane=g.Og * g.P * taps * images,
        min_work=ctx.threads_min_work if ctx.threads_min_work > 0 else 1 << 16,
        what=what,
        tasks=str(g.C) if per_channel else f"{g.N} * {g.C}",
        task_note=(
            "one per channel c, over every image in order"
            if per_channel
            else f"one per (image, channel) plane, t = n * {g.C} + c"
        ),
        taps=taps,
    )


def _operand_ptr(kind: str, idx: int, g: Geometry) -> str:
    if kind == "row":
        return f"x{idx} + grp * {g.Og}"
    if kind == "full":
        return f"x{idx} + (n * {g.O} + grp * {g.Og}) * {g.P}"
    return f"x{idx}"


def _gemm_spec(
    ctx: LowerCtx,
    name: str,
    trans_a: bool,
    trans_b: bool,
    m: int,
    n: int,
    k: int,
    ep: gemm.Epilogue | None,
) -> gemm.GemmSpec:
    dtype = gemm_dtype(ctx.results[0].type.dtype)
    blocking = ctx.gemm_blocking(dtype, trans_a, trans_b, (m,), n, k)
    if ctx.threads_min_work > 0:
        blocking = replace(blocking, par_min_work=ctx.threads_min_work)
    return gemm.GemmSpec(
        name=name,
        dtype=dtype,
        trans_a=trans_a,
        trans_b=trans_b,
        m=m,
        n=n,
        k=k,
        epilogue=ep,
        isa=ctx.isa,
        blocking=blocking,
        ir_comment=ctx.ir_line,
    )


def _unfold_text(name: str, g: Geometry, im2col: bool, col2im: bool) -> str:
    return render("conv_unfold.c.j2", u=Unfold(name, g, im2col, col2im))


def _lower_forward(ctx: LowerCtx, conv: Node, srcs: list[int], steps: list[Step]) -> Kernel:
    g = geometry(conv.inputs[0].type, conv.inputs[1].type, conv.attrs)
    notes = tuple(
        c_comment(s.code + (f" [x = x{s.operand}, {s.kind}]" if s.operand is not None else ""))
        for s in steps
    )
    if (g.depthwise and g.K > 1) or _dense_direct(g):
        return _lower_direct(ctx, g, srcs, steps, notes)
    if _one_column(g) and srcs[:2] == [0, 1]:
        return _lower_batch_gemm(ctx, conv, g, steps)
    ep_steps = []
    operands: list[str] = []  # pointer arguments, in the GEMM's first-use order of its operands
    seen: set[int] = set()
    for s in steps:
        if s.operand is None:
            ep_steps.append(gemm.EpilogueStep(s.code))
            continue
        ep_steps.append(gemm.EpilogueStep(s.code, f"x{s.operand}", s.kind))  # type: ignore[arg-type]
        if s.operand not in seen:
            seen.add(s.operand)
            operands.append(_operand_ptr(s.kind, s.operand, g))
    ep = gemm.Epilogue(tuple(ep_steps)) if ep_steps else None
    spec = _gemm_spec(ctx, f"{ctx.name}_gemm", False, False, g.Og, g.P, g.K, ep)
    # one group: A is the whole weight, packed once while it is unchanged, not per image
    pack = ctx.prepack_a(replace(spec, prepack_a=True), ctx.inputs[srcs[1]]) if g.G == 1 else None
    if pack is not None:
        spec = replace(spec, prepack_a=True)
    shared, support = gemm_support(spec)
    if not g.direct:
        support = _unfold_text(ctx.name, g, True, False) + support
    what = (
        f"conv2d as GEMMs, per image n and group grp: y[n, grp] ({g.Og} x {g.P}) = "
        f"epilogue(w[grp] ({g.Og} x {g.K}) @ col ({g.K} x {g.P}))"
    )
    packs = (pack,) if pack is not None else ()
    data = _images(ctx, g, spec, what, srcs, tuple(operands), notes, packs=packs)
    support += render("conv_images.c.j2", c=data)
    return ctx.kernel(
        render("conv_gemm.c.j2", c=data),
        support=support,
        shared=(*shared, gemm.parallel_block()),
        threads=True,
        prepacks=packs,
    )


def _one_column(g: Geometry) -> bool:
    """Whether each image's column matrix is the image itself, flattened, and has one column:
    one output pixel whose kernel window is the whole unpadded input (a 1x1 conv on a 1x1
    input, as in squeeze-excitation layers), in one group."""
    return (
        g.P == 1
        and g.G == 1
        and (g.kh, g.kw) == (g.H, g.W)
        and g.pt == g.pl == 0
        and (g.dh == 1 or g.kh == 1)
        and (g.dw == 1 or g.kw == 1)
    )


def _lower_batch_gemm(ctx: LowerCtx, conv: Node, g: Geometry, steps: list[Step]) -> Kernel:
    """A conv whose every image is one column (`_one_column`) as one GEMM over the batch:
    y0[N, O] = epilogue(x0[N, K] @ w[O, K]^T), reading the weight once per call rather than
    once per image (a matrix-vector product each). Per-channel operands index the GEMM's
    columns; operands shaped like y ([N, O, 1, 1]) are laid out as C is."""
    ep_steps = []
    operands: list[str] = []
    for s in steps:
        if s.operand is None:
            ep_steps.append(gemm.EpilogueStep(s.code))
            continue
        kind = "col" if s.kind == "row" else s.kind  # per output channel: a column of C
        ep_steps.append(gemm.EpilogueStep(s.code, f"x{s.operand}", kind))  # type: ignore[arg-type]
        if f"x{s.operand}" not in operands:
            operands.append(f"x{s.operand}")
    ep = gemm.Epilogue(tuple(ep_steps)) if ep_steps else None
    what = (
        f"conv2d with one output pixel per image as one GEMM over the batch: y[N, {g.O}] = "
        f"epilogue(x[N, {g.K}] @ w[{g.O}, {g.K}]^T)"
    )
    lead = (conv.inputs[0].type.shape[0],)
    return gemm_kernel(ctx, lead, g.O, g.K, True, ep, tuple(operands), what)


def _dense_direct(g: Geometry) -> bool:
    """Whether an ungrouped conv takes the direct path rather than im2col + GEMM: few taps
    (C * kh * kw <= DENSE_DIRECT_TAPS) and few output channels (<= DENSE_DIRECT_OUT), as in a
    network's first layer on an RGB image. There the GEMM is short and thin (M = O rows
    barely fill its register tiles, K = the taps is one short block) and the unfolded columns
    cost as much as the sums, while the direct path reads each run of its stride-split scratch
    once for DENSE_TILE outputs (see conv_depthwise_task.c.j2)."""
    return (
        g.G == 1
        and not g.direct
        and g.K <= DENSE_DIRECT_TAPS
        and g.O <= DENSE_DIRECT_OUT
        and not _one_column(g)
    )


# MobileNetV3's stem (3 x 3 x 3 taps, 16 outputs, 224 x 224, batch 1, 2 threads of the EPYC):
# 214 us on the GEMM path (its unfold on one thread), 132 us direct
DENSE_DIRECT_TAPS = 64
DENSE_DIRECT_OUT = 32


def _lower_direct(
    ctx: LowerCtx, g: Geometry, srcs: list[int], steps: list[Step], notes: tuple[str, ...]
) -> Kernel:
    """The direct forward of a depthwise conv (tasks: (image, channel) planes, each computing
    its Og outputs) or of a dense one (`_dense_direct`; tasks: (image, group of outputs), each
    reading every input channel of its image)."""
    loads: list[tuple[str, str]] = []
    codes: list[str] = []
    for s in steps:
        if s.operand is None:
            codes.append(s.code)
            continue
        var = f"e{len(loads)}"
        expr = {
            "row": f"x{s.operand}[oc]",
            "full": f"x{s.operand}[((n * {g.O} + oc) * {g.OH} + oy) * {g.OW} + ox]",
            "scalar": f"x{s.operand}[0]",
        }[s.kind]
        loads.append((var, expr))
        codes.append("{ const " + g.T + " x = " + var + "; " + s.code + " }")
    dense = not g.depthwise
    if dense:
        what = (
            f"direct: y[n, o] = epilogue(sum over input channels c and taps (i, j) of "
            f"w[o, c, i, j] * x_padded[n, c] shifted by (i * {g.dh}, j * {g.dw}), "
            f"stride ({g.sh}, {g.sw}))"
        )
    else:
        what = (
            f"depthwise: y[n, c * {g.Og} + q] = epilogue(sum over taps (i, j) of "
            f"w[c * {g.Og} + q, 0, i, j] * x_padded[n, c] shifted by (i * {g.dh}, j * {g.dw}), "
            f"stride ({g.sh}, {g.sw}))"
        )
    base = replace(
        _depthwise_data(ctx, g, srcs, what),
        loads=tuple(loads),
        steps=tuple(codes),
        comment_steps=notes,
    )
    elem = 4 if g.T == "float" else 8
    inplace = all(s.kind != "full" for s in steps if s.operand is not None)
    plan_blocked = None if dense else blocked(g, base.Hp, base.Wp, ctx.isa, elem, inplace)
    if plan_blocked is not None:
        lanes, groups = plan_blocked.lanes, plan_blocked.groups
        data = replace(
            base,
            blocked=plan_blocked,
            work_per_plane=lanes * g.P * g.K,
            tasks=f"{g.N} * {groups}",
            task_note=f"one per (image, group of {lanes} channels), t = n * {groups} + group",
        )
        return _direct_kernel(ctx, data, "conv_depthwise_blocked.c.j2")
    plan = replace(phases(g, base.Hp, base.Wp, elem, ctx.isa, g.Cg, dense), inplace=inplace)
    if dense:
        # a task's outputs: at most a quarter of them (tasks for the threads at batch 1), and
        # sums that fit half of L2 beside the scratch
        group = max(1, min(-(-g.O // 4), (ctx.caches.l2 // 2) // (plan.acc_len * elem)))
        plan = replace(plan, group=group, groups=-(-g.O // group))
        base = replace(
            base,
            work_per_plane=group * g.P * g.K,
            tasks=f"{g.N} * {plan.groups}",
            task_note=f"one per (image, group of {group} outputs), t = n * {plan.groups} + group",
            taps=g.K,
        )
    return _direct_kernel(ctx, replace(base, dense=dense, phases=plan), "conv_depthwise_task.c.j2")


def _direct_kernel(ctx: LowerCtx, data: Depthwise, task_template: str) -> Kernel:
    """A direct conv's kernel: conv_depthwise.c.j2 splits the tasks over threads, each job
    running `task_template`'s NAME_planes."""
    return ctx.kernel(
        render("conv_depthwise.c.j2", d=data),
        support=render(task_template, d=data),
        shared=(gemm.parallel_block(),),
        threads=True,
    )


def lower_conv2d(ctx: LowerCtx) -> Kernel:
    """conv2d(x, w[, b]): the GEMM path, or the direct depthwise path (see the module doc)."""
    conv, srcs, steps = _body_plan(ctx.node, ctx.inputs)
    return _lower_forward(ctx, conv, srcs, steps)


def lower_fused_conv(ctx: LowerCtx) -> Kernel:
    """fused_conv: the conv's kernel with the body's elementwise tail as its epilogue."""
    conv, srcs, steps = _body_plan(ctx.node, ctx.inputs)
    return _lower_forward(ctx, conv, srcs, steps)


# ------------------------------------------------------------------------------ gradients


@dataclass(frozen=True)
class GradConv:
    """conv_grad.c.j2: grad_weight, the sum of per-image GEMMs (in image order, one thread
    adding, so the sum does not depend on the thread count; each GEMM splits its own work)."""

    g: Geometry
    fn: str
    unfold: str  # NAME prefix of im2col


def lower_conv2d_grad_weight(ctx: LowerCtx) -> Kernel:
    """dw[g] = sum over n of g[n, g] @ col(x[n, g])^T: per image a GEMM with B transposed into a
    scratch [Og, K], added to the result (which starts at zero)."""
    x, gy = ctx.inputs[0].type, ctx.inputs[1].type
    w = TensorType(x.dtype, ctx.results[0].type.shape)
    g = geometry(x, w, ctx.node.attrs)
    assert (g.OH, g.OW) == tuple(gy.shape[2:])
    if g.depthwise and g.K > 1:
        return _direct_depthwise_grad(ctx, g, "weight")
    spec = _gemm_spec(ctx, f"{ctx.name}_gemm", False, True, g.Og, g.K, g.P, None)
    shared, support = gemm_support(spec)
    if not g.direct:
        support = _unfold_text(ctx.name, g, True, False) + support
    data = GradConv(g, spec.name, ctx.name)
    return ctx.kernel(
        render("conv_grad.c.j2", c=data), support=support, shared=shared, threads=True
    )


def lower_conv2d_grad_input(ctx: LowerCtx) -> Kernel:
    """dx[n, g] = fold(w_g^T @ g[n, g]): a GEMM with A transposed into the column buffer, then
    col2im adds each column back to the pixels it was read from; (image, group) tasks are
    independent, so they split over threads like the forward's."""
    gy, w = ctx.inputs[0].type, ctx.inputs[1].type
    x = ctx.results[0].type
    g = geometry(x, w, ctx.node.attrs)
    assert (g.OH, g.OW) == tuple(gy.shape[2:])
    if g.depthwise and g.K > 1:
        return _direct_depthwise_grad(ctx, g, "input")
    spec = _gemm_spec(ctx, f"{ctx.name}_gemm", True, False, g.K, g.P, g.Og, None)
    shared, support = gemm_support(spec)
    if not g.direct:
        support = _unfold_text(ctx.name, g, False, True) + support
    what = (
        f"conv2d input gradient, per image n and group grp: dx[n, grp] = "
        f"col2im(w[grp]^T ({g.K} x {g.Og}) @ g[n, grp] ({g.Og} x {g.P}))"
    )
    data = _images(ctx, g, spec, what, [0, 1], grad_input=True)
    support += render("conv_images.c.j2", c=data)
    return ctx.kernel(
        render("conv_gemm.c.j2", c=data),
        support=support,
        shared=(*shared, gemm.parallel_block()),
        threads=True,
    )
