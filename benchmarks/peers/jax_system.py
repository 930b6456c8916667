"""JAX on CPU: jax.jit of the forward, jax.jit of value_and_grad plus the SGD update.

JAX's thread count cannot be set after import; run_all sets XLA_FLAGS before importing it
(single-threaded Eigen for --threads 1, else XLA's default of all cores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from workloads import LR, Data, Workload

from peers import Forward, Train


def _forward_fn():
    """The MLP as a pure function of (params, x), params = [(W, b), ...]."""
    import jax
    import jax.numpy as jnp

    def forward(params, x):
        h = x
        for j, (wt, b) in enumerate(params):
            if j:
                h = h * jnp.clip(h / 6 + 0.5, 0, 1)
            h = h @ wt.T + b
        return h

    return jax, jnp, forward


@dataclass
class Arrays:
    """JAX's model of a row: its weights as device arrays, and the batch too (a jitted function
    takes them all as arguments; lucid and torch read the NumPy batch without a copy)."""

    params: Any  # [(W1, b1), ...] for an MLP, name -> array for a model, the B of a GEMM
    buffers: dict[str, Any]  # a model's BatchNorm running statistics
    x: Any
    target: Any  # None for a forward row


class JaxJit:
    """jax.jit on the CPU backend; results are blocked on so the time includes the work."""

    name = "jax jit"

    def model(self, w: Workload, d: Data, mode: str) -> Arrays:
        """The row's weights, buffers, input and (training) target as jax arrays."""
        _, jnp, _ = _forward_fn()
        buffers: dict[str, Any] = {}
        if w.kind == "model":
            params, buffers = _split_state(w, d)
        elif w.kind == "gemm":
            params = jnp.asarray(d.b_matrix)
        else:
            params = [(jnp.asarray(wt), jnp.asarray(b)) for wt, b in d.weights]
        target = jnp.asarray(d.target) if mode == "train" else None
        return Arrays(params, buffers, jnp.asarray(d.x), target)

    def forward(self, w: Workload, d: Data, model: Arrays) -> Forward:
        """jit(forward)(params, x).block_until_ready()."""
        jax, jnp, forward = _forward_fn()
        if w.kind == "model":
            return _model_forward(w, model)
        fn = jax.jit(jnp.matmul if w.kind == "gemm" else forward)
        args = (model.x, model.params) if w.kind == "gemm" else (model.params, model.x)
        return Forward(lambda: fn(*args).block_until_ready(), np.asarray)

    def train(self, w: Workload, d: Data, model: Arrays) -> Train:
        """One jitted function: loss, gradients and the SGD update; params are replaced."""
        jax, jnp, forward = _forward_fn()
        if w.kind == "model":
            return _model_train(w, model)

        def loss_fn(params, x, t):
            return jnp.mean((forward(params, x) - t) ** 2)

        @jax.jit
        def update(params, x, t):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, t)
            new = jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)
            return new, loss

        state = {"params": model.params}
        x, t = model.x, model.target

        def step() -> object:
            state["params"], loss = update(state["params"], x, t)
            return loss.block_until_ready()

        def params() -> list[np.ndarray]:
            return [np.asarray(a) for pair in state["params"] for a in pair]

        return Train(step, params)


def _split_state(w: Workload, d: Data):
    """(parameters, buffers) of a model workload as dicts of jnp arrays by lucid's names; the
    BatchNorm step counters (`num_batches_tracked`) are left out (nothing reads them)."""
    _, jnp, _ = _forward_fn()
    assert d.state is not None and d.param_names is not None
    params = {n: jnp.asarray(d.state[n]) for n in d.param_names}
    buffers = {
        k: jnp.asarray(v)
        for k, v in d.state.items()
        if k not in params and not k.endswith("num_batches_tracked")
    }
    return params, buffers


def _model_fn(w: Workload, training: bool):
    """f(params, buffers, x) -> (logits, updated buffers) of the model's JAX twin."""
    from peers import jax_models

    if w.model == "mnv3":
        return lambda p, b, x: jax_models.mnv3_forward(p, b, x, training)
    _vocab, _block, n_layer, n_head, _embd = w.sizes
    return lambda p, b, x: (jax_models.gpt_forward(p, x, n_layer, n_head), {})


def _model_forward(w: Workload, m: Arrays) -> Forward:
    """The jitted eval-mode twin (BatchNorm from the running statistics)."""
    jax, _, _ = _forward_fn()
    run = _model_fn(w, training=False)
    fn = jax.jit(lambda p, b, x: run(p, b, x)[0])
    return Forward(lambda: fn(m.params, m.buffers, m.x).block_until_ready(), np.asarray)


def _model_train(w: Workload, m: Arrays) -> Train:
    """One jitted step: train-mode forward, mean cross-entropy, value_and_grad, SGD update (and
    the BatchNorm running statistics, as the other systems keep them)."""
    jax, _, _ = _forward_fn()
    from peers.jax_models import cross_entropy

    run = _model_fn(w, training=True)

    def loss_fn(p, b, x, t):
        logits, new_b = run(p, b, x)
        return cross_entropy(logits, t), new_b

    @jax.jit
    def update(p, b, x, t):
        (loss, new_b), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, b, x, t)
        new_p = jax.tree_util.tree_map(lambda a, g: a - LR * g, p, grads)
        return new_p, {**b, **new_b}, loss

    state = {"p": m.params, "b": m.buffers}
    x, t = m.x, m.target
    names = list(m.params)

    def step() -> object:
        state["p"], state["b"], loss = update(state["p"], state["b"], x, t)
        return loss.block_until_ready()

    def current() -> list[np.ndarray]:
        return [np.asarray(state["p"][n]) for n in names]

    return Train(step, current)
