"""JAX on CPU: jax.jit of the forward, jax.jit of value_and_grad plus the SGD update.

JAX's thread count cannot be set after import; run_all sets XLA_FLAGS before importing it
(single-threaded Eigen for --threads 1, else XLA's default of all cores).
"""

from __future__ import annotations

import numpy as np
from workloads import LR, Data, Workload

from peers import Forward, Train, Unavailable


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


class JaxJit:
    """jax.jit on the CPU backend; results are blocked on so the time includes the work."""

    name = "jax jit"

    def forward(self, w: Workload, d: Data) -> Forward:
        """jit(forward)(params, x).block_until_ready()."""
        jax, jnp, forward = _forward_fn()
        if w.kind == "gemm":
            a, b = jnp.asarray(d.x), jnp.asarray(d.b_matrix)
            mm = jax.jit(jnp.matmul)
            return Forward(lambda: mm(a, b).block_until_ready(), np.asarray)
        params = [(jnp.asarray(wt), jnp.asarray(b)) for wt, b in d.weights]
        x = jnp.asarray(d.x)
        fn = jax.jit(forward)
        return Forward(lambda: fn(params, x).block_until_ready(), np.asarray)

    def train(self, w: Workload, d: Data) -> Train:
        """One jitted function: loss, gradients and the SGD update; params are replaced."""
        jax, jnp, forward = _forward_fn()
        if w.kind == "gemm":
            raise Unavailable("forward only")

        def loss_fn(params, x, t):
            return jnp.mean((forward(params, x) - t) ** 2)

        @jax.jit
        def update(params, x, t):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, t)
            new = jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)
            return new, loss

        state = {"params": [(jnp.asarray(wt), jnp.asarray(b)) for wt, b in d.weights]}
        x, t = jnp.asarray(d.x), jnp.asarray(d.target)

        def step() -> object:
            state["params"], loss = update(state["params"], x, t)
            return loss.block_until_ready()

        def params() -> list[np.ndarray]:
            return [np.asarray(a) for pair in state["params"] for a in pair]

        return Train(step, params)
