"""First-call cost of lucid.compile: a model of lucid's own row-agnostic layers is traced on
an empty batch (no eager arithmetic), and the graph is the one a full-batch trace records."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.ir.printer import format as format_graph
from lucid.tensor import Tensor

tracing = sys.modules["lucid.ir.trace"]  # `lucid.ir.trace` the attribute is the function


def _full_trace(model, *xs, dynamic_batch=False):
    """What `trace` recorded before empty-batch tracing: the eager model on the whole batch."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tracing, "empty_batch_suffices", lambda module, inputs: False)
        return tracing.trace(model, *xs, dynamic_batch=dynamic_batch)


def _both(model, x, dynamic_batch):
    """Printed IR (with source locations) of the full-batch trace and of `trace`."""
    graphs = []
    for full in (True, False):  # one call site: both record the same source locations
        with pytest.MonkeyPatch.context() as mp:
            if full:
                mp.setattr(tracing, "empty_batch_suffices", lambda module, inputs: False)
            graphs.append(tracing.trace(model, x, dynamic_batch=dynamic_batch))
    return [format_graph(g, locs=True) for g in graphs]


class Rows:
    """Every row count the eager ops produced while a tracer was recording."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[int] = []
        record = tracing.Tracer.record

        def spy(tracer, op, inputs, attrs, output):
            self.seen.append(output.data.shape[0] if output.data.ndim else 0)
            return record(tracer, op, inputs, attrs, output)

        monkeypatch.setattr(tracing.Tracer, "record", spy)

    def second_trace_had_no_rows(self, batch: int) -> bool:
        """Of two traces in a row (`_both`): the first saw `batch` rows, the second none
        (the weights' ops have row counts of their own, so halves, not exact lists)."""
        half = len(self.seen) // 2
        first, second = self.seen[:half], self.seen[half:]
        return batch in first and batch not in second and 0 in second


def _every_layer() -> nn.Module:
    lucid.random.seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(12, 8),
        nn.HardSwish(),
        nn.Dropout(0.5),
        nn.Sequential(nn.Linear(8, 8, bias=False), nn.ReLU(), nn.Identity()),
        nn.ReLU6(),
        nn.HardSigmoid(),
        nn.Linear(8, 6),
        nn.Sigmoid(),
        nn.Tanh(),
    )


@pytest.mark.parametrize("dynamic_batch", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_empty_batch_trace_prints_the_full_batch_graph(monkeypatch, dynamic_batch, training):
    rows = Rows(monkeypatch)
    model = _every_layer().train(training)
    model[3].p = 0.0 if training else 0.5  # Dropout is the identity either way
    x = np.random.default_rng(0).standard_normal((37, 3, 4)).astype(np.float32)
    full, fast = _both(model, x, dynamic_batch)
    assert fast == full
    assert rows.seen == [37] * 10 + [0] * 10
    assert "f32[N,3,4]" in fast if dynamic_batch else "f32[37,3,4]" in fast


def test_empty_batch_trace_of_a_three_axis_input():
    lucid.random.seed(1)
    model = nn.Sequential(nn.Linear(5, 4), nn.HardSwish(), nn.Linear(4, 2))
    x = np.ones((6, 7, 5), np.float32)
    full, fast = _both(model, x, False)
    assert fast == full
    assert "f32[6,7,2]" in fast


def test_eager_work_of_tracing_does_not_grow_with_the_batch(monkeypatch):
    rows = Rows(monkeypatch)
    lucid.random.seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.HardSwish(), nn.Linear(32, 4))
    for batch in (3, 4096):
        x = np.ones((batch, 16), np.float32)
        tracing.trace(model, x)
    assert rows.seen == [0] * 6


@pytest.mark.parametrize("training", [False, True])
def test_compile_traces_an_empty_batch_forward_and_grad(monkeypatch, training):
    rows = Rows(monkeypatch)
    lucid.random.seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.HardSwish(), nn.Linear(32, 4)).train(training)
    x = np.random.default_rng(0).standard_normal((512, 16)).astype(np.float32)
    cm = lucid.compile(model, backend="interpreter")
    out = cm(Tensor(x))
    if training:
        assert out.requires_grad
        out.sum().backward()
        assert model[0].weight.grad is not None
    assert rows.seen == [0, 0, 0]
    with lucid.no_grad():
        expected = model(Tensor(x))
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-5, atol=1e-5)
    assert cm.graph().input_types[0].shape == (512, 16)


class ReadsBatch(nn.Module):
    """A user forward: it may read the batch size, so it is traced on the whole batch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x) * (1.0 / x.shape[0])


def test_a_user_forward_is_traced_on_the_full_batch(monkeypatch):
    rows = Rows(monkeypatch)
    model = ReadsBatch()
    x = np.ones((9, 3), np.float32)
    graph = tracing.trace(model, x)
    assert 9 in rows.seen and 0 not in rows.seen
    assert format_graph(graph) == format_graph(_full_trace(model, x))


def test_which_models_trace_on_an_empty_batch():
    lucid.random.seed(0)
    mlp = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    x = Tensor(np.ones((4, 3), np.float32))
    assert tracing.empty_batch_suffices(mlp, [x])
    assert tracing.empty_batch_suffices(mlp, [Tensor(np.ones((1, 3), np.float32))])
    assert not tracing.empty_batch_suffices(mlp, [Tensor(np.ones((0, 3), np.float32))])
    assert not tracing.empty_batch_suffices(nn.ReLU(), [Tensor(np.ones(4, np.float32))])
    assert not tracing.empty_batch_suffices(mlp, [x, x])
    assert not tracing.empty_batch_suffices(ReadsBatch(), [x])
    assert not tracing.empty_batch_suffices(nn.Sequential(ReadsBatch()), [x])

    class Subclassed(nn.ReLU):
        def forward(self, x):
            return x

    assert not tracing.empty_batch_suffices(Subclassed(), [x])
    patched = nn.Sequential(nn.ReLU())
    patched[0].forward = lambda x: x
    assert not tracing.empty_batch_suffices(patched, [x])
    dropout = nn.Sequential(nn.Dropout(0.5))
    # in training Dropout records dropout(x, seed), the seed a graph input: no draw, no rows
    assert tracing.empty_batch_suffices(dropout.train(), [x])
    assert tracing.empty_batch_suffices(dropout.eval(), [x])


@pytest.mark.parametrize("dynamic_batch", [False, True])
def test_dropout_in_training_traces_on_an_empty_batch_and_draws_nothing(monkeypatch, dynamic_batch):
    rows = Rows(monkeypatch)
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    x = np.ones((5, 3), np.float32)
    lucid.random.seed(3)
    full, fast = _both(model, x, dynamic_batch)
    assert fast == full and "dropout" in fast and "%rng_seed: i64[]" in fast
    assert rows.seen == [5, 5, 0, 0]
    after_traces = lucid.random.generator().random()
    lucid.random.seed(3)
    assert lucid.random.generator().random() == after_traces  # the seed is an input, not a draw


def test_an_input_that_does_not_fit_reports_the_full_batch_shape():
    model = nn.Sequential(nn.Linear(4, 3))
    x = np.ones((5, 7), np.float32)
    with pytest.raises(ValueError) as fast:
        tracing.trace(model, x)
    with pytest.raises(ValueError) as full:
        _full_trace(model, x)
    assert str(fast.value) == str(full.value)
    assert "(5, 7)" in str(fast.value)


def test_compiled_call_errors_are_unchanged():
    cm = lucid.compile(nn.Sequential(nn.Linear(4, 3)), backend="interpreter")
    with pytest.raises(ValueError, match=r"got \(5, 7\)"):
        cm(np.ones((5, 7), np.float32))


def test_the_runtime_imports_nothing_only_a_build_needs():
    """A warm start loads through the cache and never runs the compiler: importing the runtime
    must not import the build's modules (they were ~10 ms of a ~50 ms warm start)."""
    import subprocess

    # and logging: until something imports it, a DEBUG or INFO record could not be seen
    build_only = ("subprocess", "tempfile", "shutil", "sysconfig", "concurrent.futures", "logging")
    code = (
        "import sys, lucid, lucid.nn, lucid.runtime.compiled\n"
        f"print([m for m in {build_only!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_runtime_defines_only_the_public_options_as_dataclasses():
    """Creating a frozen dataclass compiles six generated methods (0.5-1.2 ms each class on
    Python 3.11); the runtime's records are NamedTuples, so a warm start pays only for the two
    option classes users construct."""
    import subprocess

    code = (
        "import dataclasses, lucid, lucid.nn\n"
        "made = []\n"
        "process = dataclasses._process_class\n"
        "def spy(cls, *args):\n"
        "    made.append(cls.__qualname__)\n"
        "    return process(cls, *args)\n"
        "dataclasses._process_class = spy\n"
        "import lucid.runtime.compiled\n"
        "print(sorted(made))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['BuildOptions', 'CompileOptions']"


@pytest.mark.needs_cc
def test_keys_do_not_read_sysconfig_per_call(monkeypatch):
    """sysconfig fills its dict lazily without a lock: a thread asking mid-fill got None, so
    the backward (built on a second thread) was keyed differently by the process that built it
    and by every later one. The keys now use values read once per process (the include
    directories under a lock, the extension suffix from importlib)."""
    import sysconfig

    from lucid.runtime import _index, build

    options = build.BuildOptions()
    compiler = build.resolve_compiler(None)
    before = (
        _index.index_key("graph", "auto", "lucid", options),
        build._cache_key("int x;", "", compiler, "cc 1", options),
        build._command(compiler, options, "m"),
    )
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: None)
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {})
    after = (
        _index.index_key("graph", "auto", "lucid", options),
        build._cache_key("int x;", "", compiler, "cc 1", options),
        build._command(compiler, options, "m"),
    )
    assert after == before


def test_a_convolution_runs_on_an_empty_batch():
    lucid.random.seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, groups=1)
    with lucid.no_grad():
        assert conv(Tensor(np.ones((0, 3, 9, 9), np.float32))).shape == (0, 4, 5, 5)


@pytest.mark.parametrize("dynamic_batch", [False, True])
def test_mobilenet_inference_traces_on_an_empty_batch(monkeypatch, dynamic_batch):
    """MobileNetV3-Small's eval forward (lucid's own, marked row_agnostic) is traced with no
    eager arithmetic: at batch 32 the full trace took 9 s and 230 MiB; the graph is the same."""
    from lucid.models.mobilenetv3 import mobilenet_v3_small

    lucid.random.seed(0)
    model = mobilenet_v3_small(num_classes=10, dropout=0.0).eval()
    x = np.random.default_rng(0).standard_normal((7, 3, 32, 32)).astype(np.float32)
    assert tracing.empty_batch_suffices(model, [Tensor(x)])
    rows = Rows(monkeypatch)
    full, fast = _both(model, x, dynamic_batch)
    assert fast == full
    assert rows.second_trace_had_no_rows(7)


@pytest.mark.parametrize("dynamic_batch", [False, True])
def test_mobilenet_training_traces_on_an_empty_batch(monkeypatch, dynamic_batch):
    """BatchNorm in training reads its count n (n / (n - 1) corrects the running variance, n > 1
    is checked) from the input's type, not its empty data: MobileNetV3-Small's training forward
    is traced without eager arithmetic (batch 32 at 224x224: 44 ms instead of 908 ms) and
    records the full-batch trace's graph, guards and written buffers, warning about nothing
    (the mean of no rows is NaN, and nobody reads it)."""
    from lucid.models.mobilenetv3 import mobilenet_v3_small

    lucid.random.seed(0)
    model = mobilenet_v3_small(num_classes=10, dropout=0.0).train()
    x = np.random.default_rng(0).standard_normal((7, 3, 32, 32)).astype(np.float32)
    record = tracing._record
    found = {}
    for full in (True, False):  # one call site: both record the same source locations
        rows: list[int] = []
        guards: list = []
        state: list[str] = []
        with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
            warnings.simplefilter("error")
            if full:
                mp.setattr(tracing, "empty_batch_suffices", lambda module, inputs: False)

            def spy(module, inputs, *args, rows=rows):
                rows.append(inputs[0].data.shape[0])
                return record(module, inputs, *args)

            mp.setattr(tracing, "_record", spy)
            graph = tracing.trace(model, x, dynamic_batch=dynamic_batch, guards=guards, state=state)
        found[full] = (format_graph(graph, locs=True), [(g.test, g.outcome) for g in guards], state)
        assert rows == ([7] if full else [0])  # the empty-batch trace did not fall back
    assert found[False] == found[True]
    assert "features.0.1.running_var" in found[False][2]
    assert bool(found[False][1]) == dynamic_batch  # N > 1 per BatchNorm, under a dynamic batch
    assert int(model.features[0][1].num_batches_tracked.data) == 0  # a trace writes nothing


@pytest.mark.needs_cc
@pytest.mark.parametrize("dynamic_batch", [False, True])
def test_batchnorm_training_traced_on_an_empty_batch_matches_eager(dynamic_batch):
    """What that trace compiles trains as eager does: outputs, gradients and the running
    statistics (the unbiased variance's n / (n - 1) at each call's own batch size)."""
    lucid.random.seed(4)

    def make():
        return nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten()
        ).train()

    eager, model = make(), make()
    model.load_state_dict(eager.state_dict())
    assert tracing.empty_batch_suffices(model, [Tensor(np.ones((4, 3, 5, 5), np.float32))])
    compiled = lucid.compile(model, dynamic_batch=dynamic_batch)
    rng = np.random.default_rng(5)
    for n in (4, 9, 4) if dynamic_batch else (4, 4, 4):
        x = (rng.standard_normal((n, 3, 5, 5)) * 2 + 1).astype(np.float32)
        outs = []
        for net, run in ((eager, eager), (model, compiled)):
            for p in net.parameters():
                p.grad = None
            y = run(Tensor(x))
            (y * y).mean().backward()
            outs.append((y.data.copy(), [p.grad.copy() for p in net.parameters()]))
        np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-4, atol=1e-5)
        for got, want in zip(outs[1][1], outs[0][1]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        for (name, got), want in zip(model.state_dict().items(), eager.state_dict().values()):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
    assert int(model[1].num_batches_tracked.data) == 3


class NotMarked(nn.Module):
    """A subclass overriding a marked forward is a user forward again."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    @tracing.row_agnostic
    def forward(self, x):
        return self.fc(x)


def test_only_marked_forwards_are_row_agnostic():
    class Override(NotMarked):
        def forward(self, x):
            return self.fc(x) * (1.0 / x.shape[0])

    x = Tensor(np.ones((4, 3), np.float32))
    assert tracing.empty_batch_suffices(NotMarked(), [x])
    assert not tracing.empty_batch_suffices(Override(), [x])


@pytest.mark.parametrize("dynamic_batch", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_gpt_traces_on_an_empty_batch(monkeypatch, dynamic_batch, training):
    """The GPT (lucid's own: attention reshapes take -1 for the batch) records the graph of a
    full-batch trace without eager arithmetic, in training (dropout) and eval mode."""
    from lucid.models.gpt import GPT, GPTConfig

    lucid.random.seed(0)
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.1)
    model = GPT(cfg).train(training)
    idx = np.random.default_rng(0).integers(0, 11, (5, 6))
    assert tracing.empty_batch_suffices(model, [Tensor(idx)])
    rows = Rows(monkeypatch)
    full, fast = _both(model, idx, dynamic_batch)
    assert fast == full
    assert rows.second_trace_had_no_rows(5)
    assert ("i64[N,6]" if dynamic_batch else "i64[5,6]") in fast


def test_lucid_log_records_reach_logging_once_it_is_imported() -> None:
    """lucid's log (lucid._logging.log) drops DEBUG and INFO records only while `logging` is
    not imported (no handler could exist); a WARNING imports it and reaches Python's last-resort
    handler on stderr, as from logging.getLogger("lucid") itself."""
    import subprocess

    code = (
        "import sys, lucid\n"
        "from lucid._logging import log\n"
        "log.debug('dropped %s', 1)\n"
        "assert 'logging' not in sys.modules\n"
        "log.warning('seen %s', 2)\n"
        "import logging\n"
        "logging.basicConfig(level=logging.DEBUG, format='%(levelname)s %(message)s')\n"
        "log.debug('debug %s', 3)\n"
        "log.info('info %s', 4)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.splitlines() == ["seen 2", "DEBUG debug 3", "INFO info 4"]
