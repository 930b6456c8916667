"""Convolutions compiled: forward and training against eager lucid (static and dynamic batch),
the fused conv + bias + activation in the optimised IR and in its C, the depthwise path, and
an exported library."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.codegen import CodegenOptions, emit_c
from lucid.codegen.gemm import CacheSizes
from lucid.ir import interpret
from lucid.ir.passes import default_pipeline, run_passes
from lucid.ir.passes.fusion_rules import body_summary
from lucid.ir.trace import trace

pytestmark = pytest.mark.needs_cc

RTOL, ATOL = 1e-5, 1e-5  # float32, GEMM sums in another order than NumPy's matmul


class MobileBlock(nn.Module):
    """A MobileNetV3-like stem and block, a grouped "same" conv, a residual add and a Conv1d."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.act = nn.HardSwish()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.relu = nn.ReLU()
        self.pw = nn.Conv2d(8, 16, 1, bias=False)
        self.gate = nn.HardSigmoid()
        self.grouped = nn.Conv2d(16, 8, (3, 2), padding="same", dilation=(1, 2), groups=4)
        self.dw2 = nn.Conv2d(8, 16, 5, stride=2, padding=2, groups=8)
        self.seq = nn.Conv1d(16, 4, 3, padding=1)

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        h = self.act(self.stem(x))
        h = self.relu(self.dw(h)) + h  # residual add of a whole tensor: an epilogue operand
        h = self.grouped(self.gate(self.pw(h)))
        h = self.dw2(h)
        return self.seq(h.flatten(2))


def _grads(model: nn.Module, fn, x: np.ndarray) -> list[np.ndarray]:
    for p in model.parameters():
        p.grad = None
    xt = lucid.Tensor(x, requires_grad=True)
    out = fn(xt)
    (out * out).sum().backward()
    return [p.grad.copy() for p in model.parameters()] + [xt.grad.copy()]


@pytest.mark.parametrize("dynamic", [False, True])
def test_compiled_forward_and_backward_match_eager(dynamic: bool) -> None:
    lucid.random.seed(1)
    model = MobileBlock()
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    for n in (1, 3, 8) if dynamic else (3,):
        x = np.random.default_rng(n).standard_normal((n, 3, 13, 12)).astype(np.float32)
        with lucid.no_grad():
            want = model(lucid.Tensor(x)).data
            got = compiled(lucid.Tensor(x)).data
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        eager = _grads(model, model, x)
        comp = _grads(model, compiled, x)
        for g, e in zip(comp, eager):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_compile_with_a_dynamic_batch(mode: str) -> None:
    lucid.random.seed(4)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, padding_mode=mode),
        nn.ReLU(),
        nn.Conv2d(4, 2, (3, 2), stride=2, padding=(2, 1), groups=2, padding_mode=mode),
    )
    compiled = lucid.compile(model, dynamic_batch=True)
    for n in (1, 4):
        x = np.random.default_rng(n).standard_normal((n, 3, 9, 8)).astype(np.float32)
        np.testing.assert_allclose(
            compiled(lucid.Tensor(x)).data, model(lucid.Tensor(x)).data, rtol=RTOL, atol=ATOL
        )
        for g, e in zip(_grads(model, compiled, x), _grads(model, model, x)):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


def test_training_through_the_compiled_module_follows_eager() -> None:
    lucid.random.seed(2)
    model, twin = MobileBlock(), MobileBlock()
    twin.load_state_dict(model.state_dict())
    compiled = lucid.compile(twin, dynamic_batch=True)
    opt_e = optim.SGD(model.parameters(), lr=0.01)
    opt_c = optim.SGD(twin.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    for step in range(3):
        x = rng.standard_normal((2 + 3 * step, 3, 13, 12)).astype(np.float32)
        target = rng.standard_normal((x.shape[0], 4, 12)).astype(np.float32)
        for m, fn, opt in ((model, model, opt_e), (twin, compiled, opt_c)):
            opt.zero_grad()
            loss = lucid.nn.functional.mse_loss(fn(lucid.Tensor(x)), lucid.Tensor(target))
            loss.backward()
            opt.step()
    for (name, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=name)


def _optimised(model: nn.Module, shape: tuple[int, ...]):
    graph = trace(model, lucid.Tensor(np.zeros(shape, np.float32)), dynamic_batch=True)
    return run_passes(graph, default_pipeline())


def test_conv_bias_hardswish_is_one_fused_kernel_in_ir_and_c() -> None:
    # 8 * 3 * 3 = 72 taps: the GEMM path (at most lucid's DENSE_DIRECT_TAPS take the direct one)
    model = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.HardSwish())
    opt = _optimised(model, (1, 8, 16, 16))
    assert body_summary(opt) == [("fused_conv", ["conv2d", "hardswish"])]
    assert [n.op for n in opt.nodes] == ["fused_conv"]
    source = emit_c(opt, CodegenOptions(isa="avx2", caches=CacheSizes())).source
    task = source[source.index("static int k0_fused_conv_one(") :]
    task = task[: task.index("\n}\n")]
    # one (image, group) task: the unfold, then the GEMM with the bias as a per-row operand
    assert "k0_fused_conv_im2col(xg, col);" in task
    assert re.search(
        r"k0_fused_conv_gemm\(x1 \+ grp \* 1152, b, .*, 16, 64, 72, x2 \+ grp \* 16,", task
    )
    kernel = source[source.index(" int k0_fused_conv(") :]
    kernel = kernel[: kernel.index("\n}\n")]
    assert "lucid_parallel_run((int)nt, k0_fused_conv_images, jobs" in kernel
    assert "rc = k0_fused_conv_one(x0, x1, x2, y0, p0, col, t / 1, t % 1, nthreads);" in kernel
    # one group: the GEMM takes the weight (its A) prepacked, p0, kept between calls
    assert re.search(r"k0_fused_conv_gemm\(x1 \+ grp \* 1152, b, .*, p0, nthreads\);", task)
    assert "static void k0_fused_conv_gemm_pack_a(const float *restrict A" in source
    # HardSwish's own C is a step of the GEMM's epilogue
    gemm = source[source.index("/* begin GEMM k0_fused_conv_gemm") :]
    gemm = gemm[: gemm.index("/* end GEMM k0_fused_conv_gemm")]
    assert "v = v + x;" in gemm and "v = v * lucid_clampf(v / (float)6 + (float)0.5" in gemm
    # the optimised graph still computes what the unfused one does
    x = np.random.default_rng(0).standard_normal((2, 8, 16, 16)).astype(np.float32)
    unfused = trace(model, lucid.Tensor(x), dynamic_batch=True)
    params = [p.data for p in model.parameters()]
    np.testing.assert_array_equal(interpret(opt, x, *params)[0], interpret(unfused, x, *params)[0])


def test_depthwise_takes_the_direct_path_and_pointwise_reads_x_directly() -> None:
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 16, 1), nn.ReLU6()
    )
    opt = _optimised(model, (1, 8, 10, 10))
    assert body_summary(opt) == [
        ("fused_conv", ["conv2d", "relu"]),
        ("fused_conv", ["conv2d", "relu6"]),
    ]
    source = emit_c(opt, CodegenOptions(isa="avx2", caches=CacheSizes())).source
    assert "static void k0_fused_conv_planes(void *arg)" in source  # direct, no GEMM
    assert "k0_fused_conv_gemm" not in source and "k0_fused_conv_im2col" not in source
    # stride 1: the padded plane is the scratch; register blocks sum every tap's run of it
    assert "k0_fused_conv_taps[9] = { 0, 1, 2, 12, 13, 14, 24, 25, 26 }" in source
    assert (
        "sum[o][r] = k0_fused_conv_fma((k0_fused_conv_vec){ 0 } + wv, v[r], sum[o][r]);" in source
    )
    assert "const float *b = xg;" in source  # 1x1: x is the column matrix
    assert "k1_fused_conv_im2col" not in source


class DepthwiseResidual(nn.Module):
    """A direct-path conv with a per-channel epilogue, then (when the shapes allow) one with a
    whole-tensor residual operand: the in-place and the per-element epilogue."""

    def __init__(self, conv: nn.Conv2d, residual: bool) -> None:
        super().__init__()
        self.conv, self.residual = conv, residual

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        h = self.conv(x).relu()
        return h + x if self.residual else h


@pytest.mark.parametrize(
    ("c", "mult", "k", "stride", "padding", "dilation", "hw"),
    [
        (3, 1, 3, 1, 1, 1, (9, 10)),  # one partial register block
        (2, 1, 5, 1, 2, 1, (30, 41)),  # several whole blocks and a tail
        (4, 2, 3, 2, 1, 1, (17, 16)),  # stride 2 (four phase planes), channel multiplier
        (2, 1, (3, 5), (3, 2), (0, 4), (2, 1), (23, 19)),  # stride 3 x 2, dilation, no rows pad
        (3, 1, 4, (1, 3), (3, 0), 1, (5, 13)),  # even kernel, columns stride only
        (2, 1, 3, 2, 0, 2, (6, 6)),  # one output row
    ],
)
def test_depthwise_phase_planes_match_eager_in_float64(c, mult, k, stride, padding, dilation, hw):
    """The forward's phase-plane scratch and register blocks (conv_depthwise_task.c.j2) at
    tile edges and odd geometries, both epilogue forms, against eager within 1e-12. Built for
    AVX2, whose depthwise convs all take the phase planes (AVX-512 takes the channel-blocked
    path for some of these: test_channel_blocked_depthwise_*)."""
    lucid.random.seed(6)
    conv = nn.Conv2d(
        c,
        c * mult,
        k,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=c,
        dtype=np.float64,
    )
    x = np.random.default_rng(7).standard_normal((2, c, *hw))
    with lucid.no_grad():
        same = conv(lucid.Tensor(x)).shape == x.shape
    model = DepthwiseResidual(conv, residual=same)
    compiled = lucid.compile(model, options={"isa": "avx2"})
    with lucid.no_grad():
        got, want = compiled(lucid.Tensor(x)).data, model(lucid.Tensor(x)).data
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    graph = run_passes(trace(model, lucid.Tensor(x)), default_pipeline())
    source = emit_c(graph, CodegenOptions(isa="avx2")).source
    assert "_fused_conv_planes(void *arg)" in source and "channel-blocked" not in source
    inplace = "the epilogue on every sum in place" in source
    assert inplace != same  # a whole-tensor operand is read per element, in its own loop


# (channels, kernel, stride, padding, dilation, (H, W)) that take the channel-blocked path
BLOCKED_CASES = [
    (20, 5, 1, 2, 1, (14, 14)),  # a second group of 4 (float32: 16 lanes) or 4 (float64: 8)
    (16, 5, 2, 2, 1, (17, 16)),  # stride 2; 8 x 9 outputs: a row of one block and a tail
    (11, 3, 1, 1, 1, (7, 7)),  # a small kernel on a small plane; 49 pixels, not whole vectors
    (9, 5, (2, 1), (2, 0), (1, 2), (23, 19)),  # mixed stride, dilation, no columns pad
    (3, 7, 1, 3, 1, (5, 30)),  # 7x7: one group short of its lanes; rows of 30 in 4 blocks
]


class DepthwiseChain(nn.Module):
    """A depthwise conv, its bias and ReLU (in place), and optionally + x (read per element)."""

    def __init__(self, conv: nn.Conv2d, residual: bool) -> None:
        super().__init__()
        self.conv, self.residual = conv, residual

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = self.conv(x).relu()
        return h + x if self.residual else h


def _blocked_model(case, dtype: type) -> tuple[DepthwiseChain, np.ndarray]:  # type: ignore[no-untyped-def]
    c, k, stride, padding, dilation, hw = case
    lucid.random.seed(8)
    conv = nn.Conv2d(
        c, c, k, stride=stride, padding=padding, dilation=dilation, groups=c, dtype=dtype
    )
    x = np.random.default_rng(9).standard_normal((3, c, *hw)).astype(dtype)
    with lucid.no_grad():
        same = conv(lucid.Tensor(x)).shape == x.shape
    return DepthwiseChain(conv, residual=same), x


@pytest.mark.parametrize("case", BLOCKED_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_channel_blocked_depthwise_matches_eager_and_the_phase_planes(case, dtype) -> None:  # type: ignore[no-untyped-def]
    """conv_depthwise_blocked.c.j2 at its edges (a last group short of its lanes, pixels and
    outputs that are not whole vectors or blocks, strides, dilation, both epilogue forms,
    a dynamic batch): against eager within 1e-12 in float64, and equal, bit for bit, to the
    phase planes (an AVX2 build), which sum the same products in the same order."""
    model, x = _blocked_model(case, dtype)
    graph = run_passes(trace(model, lucid.Tensor(x)), default_pipeline())
    source = emit_c(graph, CodegenOptions(isa="avx512")).source
    assert "channel-blocked" in source and "_fused_conv_planes(void *arg)" in source
    assert "channel-blocked" not in emit_c(graph, CodegenOptions(isa="avx2")).source
    blocked = lucid.compile(model, dynamic_batch=True)  # the machine's isa: AVX-512 in CI
    planes = lucid.compile(model, dynamic_batch=True, options={"isa": "avx2"})
    for n in (3, 1):
        with lucid.no_grad():
            got = blocked(lucid.Tensor(x[:n])).data
            want = model(lucid.Tensor(x[:n])).data
            other = planes(lucid.Tensor(x[:n])).data
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        np.testing.assert_array_equal(got, other)


def test_channel_blocked_depthwise_is_kept_for_many_taps_or_small_planes() -> None:
    """Where the blocked path replaces the phase planes (BLOCKED_MIN_TAPS, BLOCKED_MAX_OW,
    BLOCKED_SCRATCH_BYTES, measured; see _lower_conv.py): 5x5 kernels, any kernel on outputs
    at most 7 wide; not 3x3 on wider ones, a channel multiplier, or a plane too big for L2."""

    def takes(c: int, o: int, k: int, stride: int, hw: int, isa: str = "avx512") -> bool:
        conv = nn.Conv2d(c, o, k, stride=stride, padding=k // 2, groups=c)
        graph = run_passes(trace(conv, lucid.Tensor(np.zeros((1, c, hw, hw), np.float32))), [])
        return "channel-blocked" in emit_c(graph, CodegenOptions(isa=isa)).source

    assert takes(8, 8, 5, 1, 14) and takes(8, 8, 5, 2, 56) and takes(8, 8, 3, 1, 7)
    assert takes(8, 8, 3, 2, 14)  # 7 outputs wide
    assert not takes(8, 8, 3, 1, 28) and not takes(8, 8, 3, 2, 28)
    assert not takes(8, 16, 5, 1, 14)  # two outputs per channel
    assert not takes(8, 8, 5, 1, 112)  # 116 x 116 vectors of 64 bytes: over 256 KB
    assert not takes(8, 8, 5, 1, 14, isa="avx2")


@pytest.mark.parametrize(
    ("c", "o", "k", "stride", "padding", "dilation", "hw"),
    [
        (3, 16, 3, 2, 1, 1, (37, 30)),  # an RGB stem: stride 2, four phase planes per channel
        (2, 5, 5, 1, 2, 1, (12, 9)),  # stride 1: the padded planes themselves
        (2, 32, (3, 2), (1, 3), (2, 0), (2, 1), (11, 20)),  # 32 outputs, dilation, odd kernel
        (7, 7, 3, 1, 1, 1, (8, 8)),  # 63 taps, a residual the size of the output
    ],
)
def test_dense_direct_conv_matches_eager_in_float64(c, o, k, stride, padding, dilation, hw):
    """An ungrouped conv with few taps and outputs takes the direct path (the depthwise
    forward's scratch with every input channel's planes in it) at any batch, equal to eager
    within 1e-12; the tasks are (image, group of outputs), each filling its image's planes."""
    lucid.random.seed(8)
    conv = nn.Conv2d(c, o, k, stride=stride, padding=padding, dilation=dilation, dtype=np.float64)
    x = np.random.default_rng(9).standard_normal((3, c, *hw))
    with lucid.no_grad():
        same = conv(lucid.Tensor(x)).shape == x.shape
    model = DepthwiseResidual(conv, residual=same)
    graph = run_passes(trace(model, lucid.Tensor(x), dynamic_batch=True), default_pipeline())
    source = emit_c(graph, CodegenOptions(isa="avx512")).source
    assert "direct: y[n, o] = epilogue(sum over input channels c and taps (i, j)" in source
    assert "k0_fused_conv_gemm" not in source and "im2col" not in source
    assert ("the epilogue on every sum in place" in source) != same
    compiled = lucid.compile(model, dynamic_batch=True)
    for n in (1, 3):
        with lucid.no_grad():
            got = compiled(lucid.Tensor(x[:n])).data
            want = model(lucid.Tensor(x[:n])).data
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_per_channel_and_scalar_operands_fuse_and_match_eager() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 6, 3)
            self.dw = nn.Conv2d(6, 6, 3, groups=6, padding=1)
            self.scale = lucid.Tensor(np.linspace(0.5, 2, 6, dtype=np.float32).reshape(6, 1, 1))

        def forward(self, x: lucid.Tensor) -> lucid.Tensor:
            h = (self.conv(x) * self.scale - 0.25).relu()
            return self.dw(h) * self.scale + 1.0

    lucid.random.seed(4)
    model = Scaled()
    opt = _optimised(model, (1, 4, 9, 9))
    assert [n.op for n in opt.nodes if n.op != "constant"] == ["fused_conv", "fused_conv"]
    compiled = lucid.compile(model, dynamic_batch=True)
    for n in (1, 5):
        x = np.random.default_rng(n).standard_normal((n, 4, 9, 9)).astype(np.float32)
        with lucid.no_grad():
            np.testing.assert_allclose(
                compiled(lucid.Tensor(x)).data, model(lucid.Tensor(x)).data, rtol=RTOL, atol=ATOL
            )


def test_float64_compiled_matches_eager_closely() -> None:
    lucid.random.seed(5)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=1, dtype=np.float64),
        nn.HardSwish(),
        nn.Conv2d(6, 6, 3, padding=1, groups=6, dtype=np.float64),
        nn.Conv2d(6, 4, (2, 3), padding="same", groups=2, dtype=np.float64),
    )
    compiled = lucid.compile(model)
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 10))
    with lucid.no_grad():
        np.testing.assert_allclose(
            compiled(lucid.Tensor(x)).data, model(lucid.Tensor(x)).data, rtol=1e-12, atol=1e-12
        )
    eager = _grads(model, model, x)
    comp = _grads(model, compiled, x)
    for g, e in zip(comp, eager):
        np.testing.assert_allclose(g, e, rtol=1e-11, atol=1e-11)


def test_exported_library_runs_the_convolutions(tmp_path: Path) -> None:
    from lucid.runtime.aot import export
    from lucid.runtime.loader import load

    lucid.random.seed(6)
    model = MobileBlock()
    model.eval()
    result = export(
        model,
        (lucid.randn(2, 3, 13, 12),),
        tmp_path / "convs",
        flags=("-O1", "-ffp-contract=off", "-fno-math-errno"),
    )
    loaded = load(result.library)
    for n in (1, 4):
        x = np.random.default_rng(n).standard_normal((n, 3, 13, 12)).astype(np.float32)
        with lucid.no_grad():
            want = model(lucid.Tensor(x)).data
        np.testing.assert_allclose(loaded(x), want, rtol=RTOL, atol=ATOL)


def test_results_do_not_depend_on_the_thread_count() -> None:
    """Big enough that 2 threads split the (image, group) tasks of the GEMM convs, the
    depthwise planes and the channel-blocked (image, group of channels) tasks, while 3 threads
    (8 tasks, not a multiple) let each GEMM split instead."""
    lucid.random.seed(7)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1),
        nn.HardSwish(),
        nn.Conv2d(32, 32, 3, padding=1, groups=32),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 5, padding=2, groups=32),  # 32 x 32 planes: channel-blocked
        nn.Conv2d(32, 64, 1),
    )
    compiled = lucid.compile(model, dynamic_batch=True)
    x = np.random.default_rng(0).standard_normal((8, 3, 128, 128)).astype(np.float32)
    graph = run_passes(trace(model, lucid.Tensor(x)), default_pipeline())
    assert "channel-blocked" in emit_c(graph, CodegenOptions(isa="avx512")).source
    before = lucid.get_num_threads()
    try:
        outs, grads = [], []
        for threads in (1, 2, 3):
            lucid.set_num_threads(threads)
            with lucid.no_grad():
                outs.append(compiled(lucid.Tensor(x)).data)
            grads.append(_grads(model, compiled, x))
    finally:
        lucid.set_num_threads(before)
    for out, gs in zip(outs[1:], grads[1:]):
        np.testing.assert_array_equal(out, outs[0])
        for g, g1 in zip(gs, grads[0]):
            np.testing.assert_array_equal(g, g1)


def test_type_rule_names_the_op_and_the_shapes() -> None:
    from lucid.errors import IRTypeError
    from lucid.ir import Builder, DType, TensorType

    def build(x_shape, w_shape, **attrs):
        b = Builder("f")
        x = b.input(TensorType(DType.F32, x_shape), "x")
        w = b.param(TensorType(DType.F32, w_shape), "w")
        return b.op("conv2d", [x, w], attrs)

    assert build(("N", 4, 9, 9), (8, 2, 3, 3), groups=2).type == TensorType(
        DType.F32, ("N", 8, 7, 7)
    )
    with pytest.raises(
        IRTypeError, match=r"conv2d: expected x of rank 4 \[N, C, H, W\], got f32\[4,9,9\]"
    ):
        build((4, 9, 9), (8, 4, 3, 3))
    with pytest.raises(IRTypeError, match=r"expects 4 input channels .* x f32\[N,3,9,9\] has 3"):
        build(("N", 3, 9, 9), (8, 4, 3, 3))
    with pytest.raises(IRTypeError, match=r"kernel 5x5 .* larger than the padded input 4x4"):
        build((1, 4, 4, 4), (8, 4, 5, 5))
    with pytest.raises(IRTypeError, match=r"groups=3 must divide the input channels 4"):
        build((1, 4, 9, 9), (6, 1, 3, 3), groups=3)
    with pytest.raises(IRTypeError, match=r"only the batch dim of x may be symbolic"):
        build((1, 4, "H", 9), (8, 4, 3, 3))


class SqueezeExcite(nn.Module):
    """MobileNetV3's squeeze-and-excitation: 1x1 convs on the [N, C, 1, 1] channel means."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        scale = x.mean(axis=(2, 3), keepdims=True)
        return x * lucid.nn.functional.hardsigmoid(self.fc2(self.fc1(scale).relu()))


class TinyMobileNet(nn.Module):
    """Stem, a strided depthwise block with SE, a projection, pooling and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
        self.se = SqueezeExcite(16, 8)
        self.pw = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        h = lucid.nn.functional.hardswish(self.stem(x))
        h = self.pw(self.se(self.dw(h).relu()))
        return self.fc(h.mean(axis=(2, 3)))


def test_a_tiny_mobilenet_with_squeeze_excite_trains_like_eager() -> None:
    lucid.random.seed(8)
    model, twin = TinyMobileNet(), TinyMobileNet()
    twin.load_state_dict(model.state_dict())
    compiled = lucid.compile(twin, dynamic_batch=True)
    opt_e = optim.SGD(model.parameters(), lr=0.05)
    opt_c = optim.SGD(twin.parameters(), lr=0.05)
    rng = np.random.default_rng(1)
    for n in (1, 5, 3):
        x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
        target = lucid.Tensor(rng.integers(0, 10, n))
        losses = []
        for fn, opt in ((model, opt_e), (compiled, opt_c)):
            opt.zero_grad()
            loss = lucid.nn.functional.cross_entropy(fn(lucid.Tensor(x)), target)
            loss.backward()
            opt.step()
            losses.append(float(loss.data))
        np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    for (name, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=name)


def test_depthwise_gradients_take_the_direct_kernels_and_match_eager() -> None:
    lucid.random.seed(9)
    model = nn.Sequential(
        nn.Conv2d(6, 6, 3, padding=1, groups=6),  # stride 1: plane-wide loops
        nn.Conv2d(6, 12, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=6),
    )
    graph = trace(model, lucid.Tensor(np.zeros((2, 6, 11, 13), np.float32)), dynamic_batch=True)
    from lucid.ir import grad

    backward = run_passes(grad(graph, wrt_inputs=[True]).backward, default_pipeline())
    source = emit_c(backward, CodegenOptions(isa="avx2", caches=CacheSizes())).source
    assert source.count("Depthwise input gradient, direct") == 2
    assert source.count("Depthwise weight gradient, direct") == 2
    assert "_gemm(" not in source  # no GEMM anywhere in this backward
    compiled = lucid.compile(model, dynamic_batch=True)
    for n in (1, 4):
        x = np.random.default_rng(n).standard_normal((n, 6, 11, 13)).astype(np.float32)
        for g, e in zip(_grads(model, compiled, x), _grads(model, model, x)):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
