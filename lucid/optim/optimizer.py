"""The base class shared by lucid's optimizers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lucid import _hooks
from lucid.nn.module import Parameter as _Parameter
from lucid.tensor import Tensor


class Optimizer:
    """Holds the tensors to update, in parameter groups as in PyTorch.

    `params` is an iterable of tensors (one group) or of dicts, each {"params": tensors, and
    any hyperparameter of the optimizer to override its default for that group}.
    Invariants: every tensor requires grad (or is a frozen Parameter) and is in exactly one
    group; `params` lists every tensor, group by group (PyTorch's state-dict numbering);
    `step` changes `p.data` in place (the same ndarray object, which compiled models may hold)
    and bumps a Parameter's `_version`; tensors whose `grad` is None are skipped.
    """

    def __init__(self, params: Iterable[Any], defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.params: list[Tensor] = []
        self._group_of: list[int] = []  # the group index of each entry of self.params
        if isinstance(params, (Tensor, Mapping)):
            params = [params]
        items = list(params)
        if not items:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        dicts = [isinstance(x, Mapping) for x in items]
        if any(dicts) and not all(dicts):
            raise TypeError(
                f"{type(self).__name__}: params must be all tensors or all parameter-group "
                "dicts, not a mix"
            )
        for group in items if all(dicts) else [{"params": items}]:
            self.add_param_group(group)

    def add_param_group(self, group: Mapping[str, Any]) -> None:
        """Add a group: {"params": tensors, hyperparameter: value, ...}; the optimizer's
        defaults fill the hyperparameters it does not give."""
        name = type(self).__name__
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"{name}: a parameter group is a dict with a 'params' entry")
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(
                f"{name}: unknown parameter-group option(s) {unknown}; "
                f"valid: params, {', '.join(self.defaults)}"
            )
        raw = group["params"]
        params = [raw] if isinstance(raw, Tensor) else list(raw)
        if not params:
            raise ValueError(f"{name}: parameter group {len(self.param_groups)} is empty")
        held = {id(p) for p in self.params}
        for i, p in enumerate(params):
            # a frozen Parameter (requires_grad_(False)) is accepted, as in PyTorch: it has no
            # grad, so step skips it until it is unfrozen
            if not isinstance(p, Tensor) or not (p.requires_grad or isinstance(p, _Parameter)):
                raise TypeError(
                    f"{name}: parameter {len(self.params) + i} must be a Tensor with "
                    f"requires_grad=True, got {type(p).__name__}"
                )
            if id(p) in held:
                raise ValueError(f"{name}: a parameter appears in more than one group (or twice)")
            held.add(id(p))
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        self._check_group(full)
        full["params"] = params
        self.param_groups.append(full)
        self._group_of += [len(self.param_groups) - 1] * len(params)
        self.params += params
        self._grow(params)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Raise for invalid hyperparameters of one group (subclasses add their own rules)."""
        if group["lr"] < 0:
            raise ValueError(
                f"{type(self).__name__}: learning rate must be >= 0, got {group['lr']}"
            )

    def _grow(self, params: list[Tensor]) -> None:
        """Make room in the per-parameter state for `params`, just appended to self.params."""

    def group(self, i: int) -> dict[str, Any]:
        """The parameter group of self.params[i]."""
        return self.param_groups[self._group_of[i]]

    @property
    def lr(self) -> float:
        """The first group's learning rate; setting it sets every group's (set
        `param_groups[k]["lr"]` for one group). Schedulers scale each group's own rate."""
        return float(self.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        for g in self.param_groups:
            g["lr"] = value

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        if _hooks.zero_grad(self):  # a traced training step: no gradient is stored
            return
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        if _hooks.optimizer_step(self):  # a traced training step: the compiled step updates
            return
        update = self._update
        for i, p in enumerate(self.params):
            if p.grad is not None:
                update(i, p)
                if hasattr(p, "_version"):
                    p._version += 1

    def _update(self, i: int, p: Tensor) -> None:
        raise NotImplementedError

    # -- state dicts, in PyTorch's layout: {"state": {i: {...}}, "param_groups": [{..., "params"}]}

    def _param_state(self, i: int) -> dict[str, Any] | None:
        """Per-parameter state for `state_dict` (None: nothing held for parameter i)."""
        return None

    def _set_param_states(self, states: dict[int, dict[str, Any]]) -> None:
        """Install checked per-parameter states (every parameter without an entry is reset)."""

    def state_dict(self) -> dict[str, Any]:
        """Each group's hyperparameters with its parameters' indices, and per-parameter
        buffers (copies) keyed by index: PyTorch's layout."""
        groups, at = [], 0
        for g in self.param_groups:
            n = len(g["params"])
            groups.append(
                {**{k: v for k, v in g.items() if k != "params"}, "params": list(range(at, at + n))}
            )
            at += n
        state = {}
        for i in range(len(self.params)):
            st = self._param_state(i)
            if st is not None:
                state[i] = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in st.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a `state_dict`; every problem is reported at once and nothing changes if any."""
        name = type(self).__name__
        problems: list[str] = []
        groups = state_dict.get("param_groups") if isinstance(state_dict, Mapping) else None
        states = state_dict.get("state") if isinstance(state_dict, Mapping) else None
        if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
            raise ValueError(f"{name}.load_state_dict: 'param_groups' is not a list of dicts")
        if not isinstance(states, Mapping):
            raise TypeError(f"{name}.load_state_dict: 'state' is not a dict")
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the state has {len(groups)} parameter group(s), "
                f"this optimizer {len(self.param_groups)}"
            )
        at = 0
        for k, (saved, mine) in enumerate(zip(groups, self.param_groups)):
            n = len(mine["params"])
            if list(saved.get("params", [])) != list(range(at, at + n)):
                problems.append(
                    f"param group {k} lists parameters {saved.get('params')!r}, this optimizer's "
                    f"has {list(range(at, at + n))}"
                )
            at += n
            for h in self.defaults:
                if h not in saved:
                    problems.append(f"param group {k} has no {h!r}")
        n = len(self.params)
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
        for saved, mine in zip(groups, self.param_groups):
            for h in self.defaults:
                v = saved[h]
                mine[h] = tuple(v) if isinstance(v, list) else v
        self._set_param_states(checked)

    def _check_param_states(self, states: dict[int, dict[str, Any]]) -> list[str]:
        """Problems with checked per-parameter states (missing buffers); none by default."""
        return []
