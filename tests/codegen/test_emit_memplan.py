"""The arena plan: slot reuse by liveness, sizes that hold at every batch, aliases, outputs."""

from __future__ import annotations

from lucid.codegen import emit_c
from lucid.codegen._memplan import Poly, plan_memory
from lucid.ir import Builder, DType, TensorType
from lucid.ir.core import Graph

F = DType.F32


def _check_no_overlap(graph: Graph) -> None:
    """No two arena values that are live at the same node share a slot."""
    plan = plan_memory(graph)

    def root(v):
        st = plan.storage[v]
        return st.base if st.kind == "alias" else v

    start, end = {}, {}
    for i, node in enumerate(graph.nodes):
        for r in node.results:
            start[r] = end[r] = i
        for v in node.inputs:
            if root(v) in end:
                end[root(v)] = i
    arena = [v for v in start if plan.storage[v].kind == "arena"]
    for a in arena:
        for b in arena:
            if a is not b and plan.storage[a].index == plan.storage[b].index:
                assert end[a] < start[b] or end[b] < start[a], "two live values share a slot"
                slot = plan.slots[plan.storage[a].index]
                need = Poly.of_dims(a.type.shape, a.type.dtype.itemsize)
                assert slot.size.dominates(need)


def test_chain_reuses_two_slots() -> None:
    b = Builder("chain")
    v = b.input(TensorType(F, ("N", 8)), "x")
    for _ in range(6):
        v = b.op("relu", [v])
    b.output(b.op("relu", [v]))
    graph = b.build()
    program = emit_c(graph)
    assert program.arena_slots == ((0, 32), (0, 32))  # ping-pong: 6 intermediates in 2 slots
    assert program.arena_bytes(batch=3) == 2 * 128
    _check_no_overlap(graph)


def test_slot_grows_to_dominate_every_value_and_aliases_cost_nothing() -> None:
    b = Builder("grow")
    x = b.input(TensorType(F, ("N", 4)), "x")
    small = b.op("relu", [b.op("sum", [x], {"axes": (1,), "keepdims": True})])  # [N,1] twice
    wide = b.op("broadcast", [small], {"shape": ("N", 3)})  # [N,3] reuses a freed [N,1] slot
    flat = b.op("reshape", [b.op("exp", [wide])], {"shape": (-1, 3)})  # an alias: no slot
    b.output(b.op("neg", [flat]), b.constant(1.0))
    graph = b.build()
    plan = plan_memory(graph)
    kinds = [plan.storage[n.results[0]].kind for n in graph.nodes]
    assert kinds == ["arena", "arena", "arena", "arena", "alias", "output", "const"]
    assert [s.size.coefs for s in plan.slots] == [(0, 12), (0, 12)]  # grown from 4*N to 12*N
    assert plan.copies == [(1, graph.outputs[1])]  # the constant output is copied at exit
    _check_no_overlap(graph)


def test_poly_domination_is_coefficientwise() -> None:
    assert Poly((64, 20)).dominates(Poly((0, 20)))
    assert not Poly((64, 20)).dominates(Poly((0, 21)))
    assert Poly((0, 4)).max(Poly((8,))).coefs == (8, 4)
    assert str(Poly((8, 0, 3))) == "3*N^2 + 8"


def test_only_pool_modules_keep_their_arena_between_calls() -> None:
    """lucid.compile's modules ("pool") keep the last call's arena in one static slot; an
    exported library ("spawn") promises no global state and allocates its arena per call."""
    from lucid.codegen.emit_c import CodegenOptions, emit_c
    from lucid.ir import Builder, DType, TensorType

    b = Builder("forward")
    x = b.input(TensorType(DType.F32, ("N", 8)), "x")
    b.output(b.op("tanh", [b.op("exp", [b.op("neg", [x])])]))
    graph = b.build()
    pool = emit_c(graph, CodegenOptions(threads="pool")).source
    spawn = emit_c(graph, CodegenOptions(threads="spawn")).source
    assert "static _Atomic(lucid_arena_head *) lucid_kept_arena;" in pool
    assert "lucid_arena_give(arena_head);" in pool
    assert "_Atomic" not in spawn and "lucid_kept_arena" not in spawn
    assert "free(arena_raw);" in spawn


def test_threads_created_per_call_need_more_work_than_the_pool() -> None:
    """A GEMM takes a second thread at SPAWN_MIN_WORK multiply-adds per thread when threads are
    created for the call ("spawn", AOT), at the blocking's par_min_work with the pool."""
    from lucid.codegen.emit_c import CodegenOptions, emit_c
    from lucid.codegen.gemm import SPAWN_MIN_WORK, Blocking
    from lucid.ir import Builder, DType, TensorType

    b = Builder("forward")
    x = b.input(TensorType(DType.F32, ("N", 64)), "x")
    w = b.param(TensorType(DType.F32, (64, 96)), "w")
    b.output(b.op("matmul", [x, w]))
    graph = b.build()
    pool_work = Blocking.__dataclass_fields__["par_min_work"].default
    assert pool_work < SPAWN_MIN_WORK
    for threads, work in (("pool", pool_work), ("spawn", SPAWN_MIN_WORK)):
        source = emit_c(graph, CodegenOptions(threads=threads)).source
        assert f".par_min_work = {work}," in source, threads
