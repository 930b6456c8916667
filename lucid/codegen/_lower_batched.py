"""Lowerings of the batched products and of embedding.

batch_matmul runs one generated GEMM per batch entry (the operands' batch offsets computed from
the output's batch index, a broadcast dim having stride 0); matmul_at is one GEMM reading a
transposed, its inner dimension the product of the leading dims; embedding copies rows after
checking every index, and embedding_grad adds rows in index order (np.add.at's order).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lucid.codegen import gemm
from lucid.codegen._jinja import render
from lucid.codegen._lower import Kernel, LowerCtx, dim_c, gemm_dtype, prod_c, strides_c
from lucid.codegen._lower_special import gemm_support
from lucid.ir.types import Dim, TensorType


def _static(d: Dim) -> int | None:
    return d if isinstance(d, int) else None


def _spec(ctx: LowerCtx, trans_a: bool, trans_b: bool, m: Dim, n: Dim, k: Dim) -> gemm.GemmSpec:
    """The GEMM of this node: C[m, n] = op(A) @ op(B), no epilogue, B not prepacked."""
    dtype = gemm_dtype(ctx.results[0].type.dtype)
    blocking = ctx.gemm_blocking(dtype, trans_a, trans_b, (m,), _static(n), _static(k))
    if ctx.threads_min_work > 0:
        blocking = replace(blocking, par_min_work=ctx.threads_min_work)
    return gemm.GemmSpec(
        name=f"{ctx.name}_gemm",
        dtype=dtype,
        trans_a=trans_a,
        trans_b=trans_b,
        m=_static(m),
        n=_static(n),
        k=_static(k),
        isa=ctx.isa,
        blocking=blocking,
        ir_comment=ctx.ir_line,
    )


@dataclass(frozen=True)
class BatchDim:
    """One batch dim of the output: its size, and each operand's stride in whole matrices
    ("0" where that operand is broadcast along it)."""

    size: str
    a: str
    b: str


@dataclass(frozen=True)
class BatchMatmul:
    """Everything batch_matmul.c.j2 and batch_matmul_task.c.j2 lay out; `dims` innermost first."""

    what: str
    name: str  # the kernel's name, prefixing its task helpers
    T: str
    opa: str
    opb: str
    fn: str
    batches: str
    dims: tuple[BatchDim, ...]
    a_mat: str
    b_mat: str
    y_mat: str
    m: str
    n: str
    k: str
    batch_arg: str  # the kernel's batch size if it has one, else 0
    min_work: int  # multiply-adds that pay for one more thread


def _batch_strides(t: TensorType, lead: tuple[Dim, ...]) -> list[str]:
    """t's strides (in matrices) along the output batch dims `lead`, right-aligned; 0 where t
    has no such dim or a 1 broadcast against a larger size."""
    own = t.shape[:-2]
    strides = strides_c(own)
    pad = len(lead) - len(own)
    out = []
    for i, d in enumerate(lead):
        j = i - pad
        out.append("0" if j < 0 or (own[j] == 1 and d != 1) else strides[j])
    return out


def lower_batch_matmul(ctx: LowerCtx) -> Kernel:
    """op(a) [..., m, k] @ op(b) [..., k, n]: one GEMM call per entry of the broadcast batch,
    the entries shared out between threads when there are enough of them (the attention of a
    small transformer is dozens of 64 x 64 products, each too small to split)."""
    a, b, y = ctx.inputs[0].type, ctx.inputs[1].type, ctx.results[0].type
    ta, tb = bool(ctx.node.attrs["trans_a"]), bool(ctx.node.attrs["trans_b"])
    lead, (m, n) = y.shape[:-2], y.shape[-2:]
    k = a.shape[-2] if ta else a.shape[-1]
    spec = _spec(ctx, ta, tb, m, n, k)
    shared, support = gemm_support(spec)
    sa, sb = _batch_strides(a, lead), _batch_strides(b, lead)
    dims = tuple(BatchDim(dim_c(d), sa[i], sb[i]) for i, d in reversed(list(enumerate(lead))))
    opa, opb = ("x0^T" if ta else "x0"), ("x1^T" if tb else "x1")
    bm = BatchMatmul(
        what=f"y0[b] = {opa}[b] @ {opb}[b] for each of the {prod_c(lead)} batch entries",
        name=ctx.name,
        T=y.dtype.c,
        opa=opa,
        opb=opb,
        fn=spec.name,
        batches=prod_c(lead),
        dims=dims,
        a_mat=prod_c(a.shape[-2:]),
        b_mat=prod_c(b.shape[-2:]),
        y_mat=prod_c((m, n)),
        m=dim_c(m),
        n=dim_c(n),
        k=dim_c(k),
        batch_arg="batch" if ctx.uses_batch() else "0",
        # a thread running whole entries costs one pool wake-up, not a split GEMM's packing
        # barriers: far less work pays for it than for splitting one GEMM
        min_work=ctx.threads_min_work if ctx.threads_min_work > 0 else 1 << 17,
    )
    body = render("batch_matmul.c.j2", bm=bm)
    support += render("batch_matmul_task.c.j2", bm=bm)
    shared = (*shared, gemm.parallel_block())
    return ctx.kernel(body, support=support, shared=shared, threads=True)


def lower_matmul_at(ctx: LowerCtx) -> Kernel:
    """a [..., k], b [..., n] -> a_rows^T @ b_rows: one GEMM with A read transposed and K the
    product of the leading dims (which may hold the batch symbol)."""
    a, b = ctx.inputs[0].type, ctx.inputs[1].type
    k, n, rows = a.shape[-1], b.shape[-1], a.shape[:-1]
    spec = _spec(ctx, True, False, k, n, rows[0] if len(rows) == 1 else -1)
    if len(rows) != 1:  # K is a product: static only if all its dims are
        spec = replace(spec, k=int(prod_c(rows)) if prod_c(rows).isdigit() else None)
    shared, support = gemm_support(spec)
    m_c, n_c, k_c = dim_c(k), dim_c(n), prod_c(rows)
    body = (
        f"    /* y0[{m_c}, {n_c}] = x0[{k_c}, {m_c}]^T @ x1[{k_c}, {n_c}] */\n"
        f"    const int rc = {spec.name}(x0, x1, y0, {m_c}, {n_c}, {k_c}, nthreads);\n"
        "    return rc == 0 ? 0 : (rc == -1 ? LUCID_E_NOMEM : LUCID_E_INTERNAL);\n"
    )
    return ctx.kernel(body, support=support, shared=shared, threads=True)


@dataclass(frozen=True)
class Embedding:
    """Everything embedding.c.j2 lays out (the forward, or the dense gradient)."""

    T: str
    count: str  # number of indices
    rows: str  # num_embeddings
    dim: str
    grad: bool
    padding_idx: int


def _embedding(ctx: LowerCtx, grad: bool) -> Kernel:
    idx, second = ctx.inputs[0].type, ctx.inputs[1].type
    y = ctx.results[0].type
    pad = ctx.node.attrs["padding_idx"]
    assert isinstance(pad, int)
    emb = Embedding(
        T=y.dtype.c,
        count=prod_c(idx.shape),
        rows=dim_c(y.shape[0] if grad else second.shape[0]),
        dim=dim_c(y.shape[-1]),
        grad=grad,
        padding_idx=pad,
    )
    return ctx.kernel(render("embedding.c.j2", e=emb))


def lower_embedding(ctx: LowerCtx) -> Kernel:
    """y0[i, :] = weight[indices[i], :]; LUCID_E_EMBED_INDEX on an index outside the table."""
    return _embedding(ctx, grad=False)


def lower_embedding_grad(ctx: LowerCtx) -> Kernel:
    """The dense weight gradient: zeros, then g's rows added at their indices in order."""
    return _embedding(ctx, grad=True)
