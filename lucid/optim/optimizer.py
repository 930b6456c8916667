"""The base class shared by lucid's optimizers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lucid.nn.module import Parameter as _Parameter
from lucid.tensor import Tensor


class Optimizer:
    """Holds a fixed list of tensors to update.

    Invariants: every tensor requires grad; `step` changes `p.data` in place (the same ndarray
    object, which compiled models may hold) and bumps a Parameter's `_version`; tensors whose
    `grad` is None are skipped.
    """

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for i, p in enumerate(self.params):
            # a frozen Parameter (requires_grad_(False)) is accepted, as in PyTorch: it has no
            # grad, so step skips it until it is unfrozen
            if not isinstance(p, Tensor) or not (p.requires_grad or isinstance(p, _Parameter)):
                raise TypeError(
                    f"{type(self).__name__}: parameter {i} must be a Tensor with "
                    f"requires_grad=True, got {type(p).__name__}"
                )
        if lr < 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be >= 0, got {lr}")
        self.lr = lr

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        update = self._update
        for i, p in enumerate(self.params):
            if p.grad is not None:
                update(i, p)
                if hasattr(p, "_version"):
                    p._version += 1

    def _update(self, i: int, p: Tensor) -> None:
        raise NotImplementedError

    # -- state dicts, in PyTorch's layout: {"state": {i: {...}}, "param_groups": [{..., "params"}]}

    _HYPER: tuple[str, ...] = ()  # the hyperparameters a subclass keeps in its one group

    def _param_state(self, i: int) -> dict[str, Any] | None:
        """Per-parameter state for `state_dict` (None: nothing held for parameter i)."""
        return None

    def _set_param_states(self, states: dict[int, dict[str, Any]]) -> None:
        """Install checked per-parameter states (every parameter without an entry is reset)."""

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and per-parameter buffers (copies), keyed by parameter index."""
        group: dict[str, Any] = {"lr": self.lr}
        group.update((k, getattr(self, k)) for k in self._HYPER)
        group["params"] = list(range(len(self.params)))
        state = {}
        for i in range(len(self.params)):
            st = self._param_state(i)
            if st is not None:
                state[i] = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in st.items()}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a `state_dict`; every problem is reported at once and nothing changes if any."""
        name = type(self).__name__
        problems: list[str] = []
        groups = state_dict.get("param_groups") if isinstance(state_dict, Mapping) else None
        states = state_dict.get("state") if isinstance(state_dict, Mapping) else None
        if not isinstance(groups, list) or len(groups) != 1 or not isinstance(groups[0], Mapping):
            raise ValueError(f"{name}.load_state_dict: expected one param group, got {groups!r}")
        if not isinstance(states, Mapping):
            raise TypeError(f"{name}.load_state_dict: 'state' is not a dict")
        group = groups[0]
        n = len(self.params)
        if list(group.get("params", [])) != list(range(n)):
            problems.append(
                f"param group lists parameters {group.get('params')!r}, optimizer has {n}"
            )
        for k in ("lr", *self._HYPER):
            if k not in group:
                problems.append(f"param group has no {k!r}")
        checked: dict[int, dict[str, Any]] = {}
        for key, st in states.items():
            i = int(key) if isinstance(key, (int, str)) and str(key).isdigit() else -1
            if not 0 <= i < n or not isinstance(st, Mapping):
                problems.append(f"state for unknown parameter {key!r}")
                continue
            entry = {}
            for k, v in st.items():
                if hasattr(v, "detach") and hasattr(v, "numpy"):
                    v = v.detach().cpu().numpy()  # a torch tensor, without importing torch
                if isinstance(v, np.ndarray) and v.ndim > 0:
                    shape = self.params[i].data.shape
                    if v.shape != shape:
                        problems.append(f"state {i}.{k} has shape {v.shape}, parameter {shape}")
                    v = v.astype(self.params[i].data.dtype)
                elif isinstance(v, np.ndarray):
                    v = v.item()
                entry[k] = v
            checked[i] = entry
        problems += self._check_param_states(checked)
        if problems:
            raise ValueError(f"{name}.load_state_dict failed: " + "; ".join(problems))
        self.lr = group["lr"]
        for k in self._HYPER:
            v = group[k]
            setattr(self, k, tuple(v) if isinstance(v, list) else v)
        self._set_param_states(checked)

    def _check_param_states(self, states: dict[int, dict[str, Any]]) -> list[str]:
        """Problems with checked per-parameter states (missing buffers); none by default."""
        return []
