"""lucid itself: `lucid.compile` (generated C, compiled backward) and the eager NumPy library."""

from __future__ import annotations

import time

import numpy as np
from model_workloads import logits_2d, lucid_loaded
from workloads import LR, Data, Workload, load_into_lucid, lucid_matmul, lucid_mlp

from peers import Forward, Train, Unavailable, flat


def _model(w: Workload, d: Data, training: bool):
    """A fresh lucid model holding a private copy of the workload's weights (for a GEMM row,
    the matmul as a Module)."""
    if w.kind == "gemm":
        return lucid_matmul().eval()
    if w.kind == "model":
        model = lucid_loaded(w, d)
    else:
        model = lucid_mlp(w)
        load_into_lucid(model, d.weights_copy())
    return model.train(training)


class _Lucid:
    """What lucid's two systems share: the user's model is a lucid Module."""

    def model(self, w: Workload, d: Data, mode: str):
        """A fresh lucid model of the row, in train mode for a training row."""
        return _model(w, d, training=mode == "train")


def _loss(w: Workload, out, target):
    """MSE against the regression target (MLPs), mean cross-entropy of the logits (models)."""
    from lucid.nn import functional as F

    if w.kind == "model":
        return F.cross_entropy(logits_2d(out), target)
    return F.mse_loss(out, target)


def _lucid_train(w: Workload, d: Data, model, compiled: bool) -> Train:
    """Zero grads, forward (compiled or eager), loss, backward, SGD step on `model`."""
    import lucid
    from lucid import optim

    opt = optim.SGD(model.parameters(), lr=LR)
    assert d.target is not None
    x, target = (
        lucid.Tensor(d.x),
        lucid.Tensor(d.target.reshape(-1) if w.kind == "model" else d.target),
    )
    # the first call's clock covers lucid.compile too: its first use imports lucid's runtime
    start = time.perf_counter()
    run = lucid.compile(model) if compiled else model

    def step() -> object:
        opt.zero_grad()
        loss = _loss(w, run(x), target)
        loss.backward()
        opt.step()
        return loss

    def params() -> list[np.ndarray]:
        return [p.data for p in model.parameters()]

    def forward_backward() -> None:
        out = run(x)
        if not out.requires_grad:  # a checkout whose lucid.compile has no compiled backward yet
            raise Unavailable("lucid.compile output does not support backward in this checkout")
        out.sum().backward()  # the first time: builds (compiled: forward + backward C)
        opt.zero_grad()  # grads dropped

    forward_backward()
    first = time.perf_counter() - start
    if not compiled:
        return Train(step, params)
    return Train(step, params, first_call_s=first, first_again=forward_backward)


class LucidCompiled(_Lucid):
    """`lucid.compile(model)` with the default options (fusion on, the machine's isa)."""

    name = "lucid compiled"

    def forward(self, w: Workload, d: Data, model) -> Forward:
        """Forward-only build (eval mode, plain arrays in), called on NumPy arrays."""
        import lucid

        args = (d.x, d.b_matrix) if w.kind == "gemm" else (d.x,)
        start = time.perf_counter()  # lucid.compile included: its first use imports the runtime
        cm = lucid.compile(model)
        cm(*args)
        first = time.perf_counter() - start
        return Forward(lambda: cm(*args), lambda out: out.data, first_call_s=first)

    def train(self, w: Workload, d: Data, model) -> Train:
        """The compiled augmented forward and backward (lucid.compile in grad mode)."""
        return _lucid_train(w, d, model, compiled=True)


def _lucid_whole_step(w: Workload, d: Data, model) -> Train:
    """`lucid.compile` of the whole step function (zero_grad, forward, loss, backward, SGD
    step): one compiled program per call. The first call builds it and steps once; the
    weights are put back after it, so the row's check sees one step from the start."""
    import lucid
    from lucid import optim

    opt = optim.SGD(model.parameters(), lr=LR)
    assert d.target is not None
    x, target = (
        lucid.Tensor(d.x),
        lucid.Tensor(d.target.reshape(-1) if w.kind == "model" else d.target),
    )

    def train_step(x, target):
        opt.zero_grad()
        loss = _loss(w, model(x), target)
        loss.backward()
        opt.step()
        return loss

    before = [p.data.copy() for p in model.parameters()]
    start = time.perf_counter()  # lucid.compile included: its first use imports the runtime
    compiled = lucid.compile(train_step)
    compiled(x, target)
    first = time.perf_counter() - start
    for p, saved in zip(model.parameters(), before):
        p.data[...] = saved

    def params() -> list[np.ndarray]:
        return [p.data for p in model.parameters()]

    return Train(lambda: compiled(x, target), params, first_call_s=first)


class LucidStep(_Lucid):
    """`lucid.compile(train_step)`: forward, backward and the SGD update as one program."""

    name = "lucid step"

    def forward(self, w: Workload, d: Data, model) -> Forward:
        """No forward rows: a training step has nothing to add there (see lucid compiled)."""
        raise Unavailable("a training-step system: forward rows are lucid compiled's")

    def train(self, w: Workload, d: Data, model) -> Train:
        """The whole step compiled (lucid.runtime.step)."""
        return _lucid_whole_step(w, d, model)


class LucidEager(_Lucid):
    """lucid's eager library (NumPy underneath, tape-based autograd)."""

    name = "lucid eager"

    def forward(self, w: Workload, d: Data, model) -> Forward:
        """model(x) under no_grad in eval mode (a GEMM row: a @ b, no Module call)."""
        import lucid

        if w.kind == "gemm":
            a, b = lucid.Tensor(d.x), lucid.Tensor(d.b_matrix)

            def gemm() -> object:
                with lucid.no_grad():
                    return a @ b

            return Forward(gemm, lambda out: out.data)
        x = lucid.Tensor(d.x)

        def call() -> object:
            with lucid.no_grad():
                return model(x)

        return Forward(call, lambda out: out.data)

    def train(self, w: Workload, d: Data, model) -> Train:
        """Eager forward, tape backward, lucid.optim.SGD."""
        return _lucid_train(w, d, model, compiled=False)


def reference_step(w: Workload, d: Data) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(initial weights, weights after one lucid eager training step): the update reference."""
    if w.kind == "model":
        assert d.state is not None and d.param_names is not None
        before = [d.state[n].copy() for n in d.param_names]
    else:
        before = [a.copy() for a in flat(d.weights)]
    t = _lucid_train(w, d, _model(w, d, training=True), compiled=False)
    t.step()
    return before, [a.copy() for a in t.params()]
