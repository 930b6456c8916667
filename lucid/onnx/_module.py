"""The Module an ONNX graph imports as (lucid.onnx.load builds it): its parameters, its
steps, and the walk over them that forward, the import-time probes and the tracer share."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lucid.errors import LucidError, OnnxImportError
from lucid.nn import Module, Parameter
from lucid.onnx._import_ops import FOLDED_ALWAYS, OPS_TABLE, ConvertError, Ctx
from lucid.tensor import Tensor


@dataclass(frozen=True)
class Step:
    """One node as the forward runs it."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]


@dataclass
class InputSpec:
    name: str
    dtype: np.dtype[Any]
    shape: tuple[int | None, ...]  # None: the batch


def sanitize(name: str, taken: set[str]) -> str:
    """An attribute name for an initializer: [A-Za-z0-9_], not starting with a digit, unique."""
    base = re.sub(r"\W", "_", name) or "param"
    if base[0].isdigit():
        base = "p_" + base
    out, k = base, 1
    while out in taken or out.startswith("__"):
        out, k = f"{base}_{k}", k + 1
    taken.add(out)
    return out


class OnnxModule(Module):
    """An imported ONNX graph. Invariants: `steps` are topologically ordered; each float
    initializer read as a tensor is a Parameter (attribute name: `param_names[onnx name]`);
    `folded` holds every value evaluated at import (with `BATCH` where a shape follows the
    batch); forward takes the graph inputs in the file's order."""

    def __init__(
        self,
        name: str,
        inputs: list[InputSpec],
        outputs: list[str],
        steps: list[Step],
        params: dict[str, np.ndarray],
        consts: dict[str, np.ndarray],
        opset: int,
    ) -> None:
        super().__init__()
        taken: set[str] = set(dir(self))
        self.param_names: dict[str, str] = {}
        for onnx_name, value in params.items():
            attr = sanitize(onnx_name, taken)
            self.param_names[onnx_name] = attr
            setattr(self, attr, Parameter(value))
        self.graph_name = name
        self.input_specs = inputs
        self.output_names = outputs
        self.steps = steps
        self.consts = consts
        self.opset = opset
        self.folded: dict[str, np.ndarray] = {}
        self.dynamic_batch = any(None in i.shape for i in inputs)

    def extra_repr(self) -> str:
        ins = ", ".join(
            f"{i.name}: {i.dtype}[{','.join('N' if d is None else str(d) for d in i.shape)}]"
            for i in self.input_specs
        )
        return f"graph={self.graph_name!r}, inputs=({ins}), nodes={len(self.steps)}"

    def onnx_state_dict(self) -> dict[str, np.ndarray]:
        """The parameters under their ONNX initializer names."""
        return {k: getattr(self, v).data for k, v in self.param_names.items()}

    # -------------------------------------------------------------- running

    def forward(self, *inputs: Any) -> Any:
        """Run the graph on its inputs (Tensors or arrays, in the file's order)."""
        if len(inputs) != len(self.input_specs):
            names = [i.name for i in self.input_specs]
            raise TypeError(
                f"{self.graph_name}: expected {len(names)} inputs {names}, got {len(inputs)}"
            )
        xs = [x if isinstance(x, Tensor) else Tensor(np.asarray(x)) for x in inputs]
        for x, spec in zip(xs, self.input_specs):
            check_input(x, spec)
        env = self.run_steps(xs, self.folded, None, importing=False)
        outs = [env[n] if isinstance(env[n], Tensor) else Tensor(env[n]) for n in self.output_names]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def batch_of(self, xs: Sequence[Tensor]) -> Any:
        for x, spec in zip(xs, self.input_specs):
            if spec.shape and spec.shape[0] is None:
                return x.shape[0]
        return None

    def run_steps(
        self,
        xs: Sequence[Tensor],
        folded: Mapping[str, np.ndarray],
        probe: dict[str, np.ndarray] | None,
        problems: list[str] | None = None,
        *,
        importing: bool = True,
    ) -> dict[str, Any]:
        """Walk the steps. With `probe` (a dict), nodes whose inputs are all known are
        evaluated and recorded there, and failures go to `problems` (their outputs are then
        missing, so the nodes reading them are skipped) instead of raising. While importing,
        a failure is an OnnxImportError naming the node; in a call (`importing=False`) the
        error about the inputs (an index out of range, ...) propagates as it is."""
        env: dict[str, Any] = dict(self.consts)
        env.update(folded)
        for spec, x in zip(self.input_specs, xs):
            env[spec.name] = x
        for onnx_name, attr in self.param_names.items():
            env[onnx_name] = getattr(self, attr)
        batch = self.batch_of(xs)
        for step in self.steps:
            if step.outputs and all(o in folded or not o for o in step.outputs):
                continue
            if any(n and n not in env for n in step.inputs):
                continue  # a probe: an input failed upstream
            try:
                outs = self.run_step(step, env, batch, probe is not None)
            except (ConvertError, LucidError, ValueError, TypeError, IndexError) as e:
                if not importing and not isinstance(e, ConvertError):
                    raise
                if problems is None:
                    raise OnnxImportError(f"node {step.name} ({step.op_type}): {e}") from None
                problems.append(f"node {step.name} ({step.op_type}): {e}")
                continue
            for name, value in zip(step.outputs, outs):
                if not name:
                    continue
                env[name] = value
                if probe is not None and isinstance(value, np.ndarray):
                    probe[name] = value
        return env

    def run_step(self, step: Step, env: dict[str, Any], batch: Any, probing: bool) -> list[Any]:
        spec = OPS_TABLE[step.op_type]
        values = [env[n] if n else None for n in step.inputs]
        consts: list[np.ndarray | None] = []
        for n, v in zip(step.inputs, values):
            if isinstance(v, np.ndarray):
                consts.append(v)
            elif isinstance(v, Parameter) and n in self.param_names:
                consts.append(v.data)  # an initializer read as a value (Clip's bounds, ...)
            else:
                consts.append(None)
        tensors = [Tensor(v) if isinstance(v, np.ndarray) else v for v in values]
        known = all(v is None or isinstance(v, np.ndarray) for v in values)
        ctx = Ctx(step.attrs, consts, step.inputs, batch, self.opset, len(step.outputs))
        with np.errstate(all="ignore"):
            outs = list(spec.fn(ctx, tensors))
        if len(outs) < len([o for o in step.outputs if o]):
            raise ConvertError(f"gives {len(outs)} outputs, the node names {len(step.outputs)}")
        if probing and (known or step.op_type in FOLDED_ALWAYS):
            outs = [o.data if isinstance(o, Tensor) else o for o in outs]
        return outs


def check_input(x: Tensor, spec: InputSpec) -> None:
    if x.data.dtype != spec.dtype:
        raise TypeError(f"input {spec.name!r}: expected dtype {spec.dtype}, got {x.data.dtype}")
    want = spec.shape
    got = tuple(x.data.shape)
    if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
        shown = [("N" if w is None else w) for w in want]
        raise ValueError(f"input {spec.name!r}: expected shape {shown}, got {list(got)}")


__all__ = ["InputSpec", "OnnxModule", "Step", "check_input", "sanitize"]
