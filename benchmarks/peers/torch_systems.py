"""PyTorch eager and torch.compile (inductor, CPU) with lucid's weights."""

from __future__ import annotations

import time

import numpy as np
from model_workloads import logits_2d, torch_twin
from workloads import LR, Data, Workload

from peers import Forward, Train


def _torch():
    """torch, imported on first use (it is slow to import and optional)."""
    import torch

    return torch


def _model(w: Workload, d: Data):
    """torch.nn.Sequential of Linear/Hardswish holding a copy of lucid's weights, or for a
    model workload the PyTorch twin of tests/zoo/ holding lucid's state dict."""
    torch = _torch()
    if w.kind == "model":
        return torch_twin(w, d)
    mods: list = []
    for j, ((i, o), (wt, b)) in enumerate(zip(w.layers, d.weights_copy())):
        if j:
            mods.append(torch.nn.Hardswish())
        lin = torch.nn.Linear(i, o)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(wt))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
    return torch.nn.Sequential(*mods)


def _train(w: Workload, d: Data, model, wrap) -> Train:
    """zero_grad, forward through `wrap(model)`, loss (MSE for an MLP, mean cross-entropy for
    a model), backward, torch.optim.SGD step."""
    torch = _torch()
    run = wrap(model)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    assert d.target is not None
    x = torch.from_numpy(d.x)
    if w.kind == "model":
        target = torch.from_numpy(d.target.reshape(-1))

        def loss_of(out):
            return torch.nn.functional.cross_entropy(logits_2d(out), target)

        named = dict(model.named_parameters())
        assert d.param_names is not None and set(named) == set(d.param_names)
        ordered = [named[n] for n in d.param_names]  # lucid's order, for the update check
    else:
        target = torch.from_numpy(d.target)

        def loss_of(out):
            return torch.nn.functional.mse_loss(out, target)

        ordered = list(model.parameters())

    def step() -> object:
        opt.zero_grad(set_to_none=True)
        loss = loss_of(run(x))
        loss.backward()
        opt.step()
        return loss

    def params() -> list[np.ndarray]:
        return [p.detach().numpy() for p in ordered]

    start = time.perf_counter()
    run(x).sum().backward()  # compiles forward and backward; the grads are dropped below
    first = time.perf_counter() - start
    opt.zero_grad(set_to_none=True)
    return Train(step, params, first_call_s=first)


class _Torch:
    """What the PyTorch systems share: the thread count, and the user's model is a torch Module."""

    def __init__(self, threads: int) -> None:
        _torch().set_num_threads(threads)

    def model(self, w: Workload, d: Data, mode: str):
        """The row's torch Module in train or eval mode (None for a GEMM row: no model)."""
        return None if w.kind == "gemm" else _model(w, d).train(mode == "train")


class TorchEager(_Torch):
    """PyTorch eager on CPU, inference_mode for the forward."""

    name = "pytorch eager"

    def forward(self, w: Workload, d: Data, model) -> Forward:
        """model(x) (or a @ b) under torch.inference_mode."""
        torch = _torch()
        if w.kind == "gemm":
            a, b = torch.from_numpy(d.x), torch.from_numpy(d.b_matrix)

            def gemm() -> object:
                with torch.inference_mode():
                    return a @ b

            return Forward(gemm, lambda out: out.numpy())
        x = torch.from_numpy(d.x)

        def call() -> object:
            with torch.inference_mode():
                return model(x)

        return Forward(call, lambda out: out.numpy())

    def train(self, w: Workload, d: Data, model) -> Train:
        """Autograd backward and torch.optim.SGD."""
        return _train(w, d, model, lambda m: m)


class TorchCompile(_Torch):
    """torch.compile (mode default, inductor on CPU); frozen weights for inference."""

    name = "torch.compile"

    def forward(self, w: Workload, d: Data, model) -> Forward:
        """Compiled under no_grad with inductor's freezing (weights as constants)."""
        torch = _torch()
        import torch._inductor.config as inductor_config

        if w.kind == "gemm":
            a, b = torch.from_numpy(d.x), torch.from_numpy(d.b_matrix)
            fn = torch.compile(lambda p, q: p @ q)
            args: tuple = (a, b)
        else:
            fn, args = torch.compile(model), (torch.from_numpy(d.x),)
        inductor_config.freezing = True
        try:
            with torch.no_grad():
                start = time.perf_counter()
                fn(*args)
                first = time.perf_counter() - start
        finally:
            inductor_config.freezing = False  # training graphs must not freeze their weights

        def call() -> object:
            with torch.no_grad():
                return fn(*args)

        return Forward(call, lambda out: out.numpy(), first_call_s=first)

    def train(self, w: Workload, d: Data, model) -> Train:
        """The model compiled (forward + AOT-autograd backward); the optimizer step eager."""
        return _train(w, d, model, lambda m: _torch().compile(m))
