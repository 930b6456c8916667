"""Functional pooling and padding: PyTorch's signatures over the ops of lucid/ir/ops/pool.py and
pad.py. Each checks its arguments (errors name the function or layer and the shapes), then
applies one op; the 1-d forms and unbatched inputs reshape around the 2-d op."""

from __future__ import annotations

from typing import Any

from lucid.ir.ops import OPS
from lucid.ir.ops.pad import padded_shape
from lucid.ir.ops.pool import pool_geometry
from lucid.tensor import Tensor, apply

_MAX_POOL2D = OPS["max_pool2d"]
_AVG_POOL2D = OPS["avg_pool2d"]
_ADAPTIVE_AVG_POOL2D = OPS["adaptive_avg_pool2d"]
_PAD = OPS["pad"]


def _tuple(op: str, name: str, v: Any, n: int) -> tuple[int, ...]:
    """An int or a sequence of `n` ints as a tuple of `n` ints (PyTorch's _pair/_single)."""
    items = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
    if len(items) == 1 and n > 1:
        items = items * n
    if len(items) != n or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise TypeError(f"{op}: {name} must be an int or {n} ints, got {v!r}")
    return items


def _expect(op: str, x: Tensor, ranks: tuple[int, ...], layout: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    if x.ndim not in ranks:
        raise ValueError(f"{op}: expected a {layout} input, got shape {tuple(x.data.shape)}")
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point Tensor, got dtype {x.dtype}")


def _batched(x: Tensor, spatial: int) -> tuple[Tensor, bool]:
    """x with a batch axis (an unbatched [C, *spatial] input gains one of size 1)."""
    if x.ndim == spatial + 1:
        return x.unsqueeze(0), True
    return x, False


def max_pool2d_impl(
    op: str,
    x: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    spatial: int = 2,
) -> Tensor:
    """max_pool1d/2d under the name `op` (the function's or the layer's)."""
    if return_indices:
        raise NotImplementedError(
            f"{op}: return_indices=True is not supported (lucid's max pooling recomputes the "
            "argmax in its backward instead of returning indices)"
        )
    layout = "[N, C, L] or [C, L]" if spatial == 1 else "[N, C, H, W] or [C, H, W]"
    _expect(op, x, (spatial + 1, spatial + 2), layout)
    k = _tuple(op, "kernel_size", kernel_size, spatial)
    attrs = {
        "kernel_size": k,
        "stride": k if stride is None or stride == [] else _tuple(op, "stride", stride, spatial),
        "padding": _tuple(op, "padding", padding, spatial),
        "dilation": _tuple(op, "dilation", dilation, spatial),
        "ceil_mode": bool(ceil_mode),
    }
    return _run(op, x, spatial, attrs, _MAX_POOL2D, True)


def avg_pool2d_impl(
    op: str,
    x: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Any = None,
    spatial: int = 2,
) -> Tensor:
    """avg_pool1d/2d under the name `op`."""
    if divisor_override is not None:
        raise NotImplementedError(f"{op}: divisor_override is not supported")
    layout = "[N, C, L] or [C, L]" if spatial == 1 else "[N, C, H, W] or [C, H, W]"
    _expect(op, x, (spatial + 1, spatial + 2), layout)
    k = _tuple(op, "kernel_size", kernel_size, spatial)
    attrs = {
        "kernel_size": k,
        "stride": k if stride is None or stride == [] else _tuple(op, "stride", stride, spatial),
        "padding": _tuple(op, "padding", padding, spatial),
        "ceil_mode": bool(ceil_mode),
        "count_include_pad": bool(count_include_pad),
    }
    return _run(op, x, spatial, attrs, _AVG_POOL2D, False)


def _run(op: str, x: Tensor, spatial: int, attrs: dict[str, Any], opdef: Any, dil: bool) -> Tensor:
    """Check the geometry against x's concrete shape (in the caller's 1-d or 2-d terms), then
    apply the 2-d op; a 1-d pooling runs over [N, C, 1, L] as a 1 x k pooling."""
    x, unbatched = _batched(x, spatial)
    dilation = attrs["dilation"] if dil else (1,) * spatial
    k, s, p, ceil = attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs["ceil_mode"]
    pool_geometry(op, x.data.shape, k, s, p, dilation, ceil)
    if spatial == 1:
        attrs = {key: ((1, *v) if isinstance(v, tuple) else v) for key, v in attrs.items()}
        attrs["padding"] = (0, p[0])
        y = apply(opdef, (x.unsqueeze(2),), attrs).squeeze(2)
    else:
        y = apply(opdef, (x,), attrs)
    return y.squeeze(0) if unbatched else y


def adaptive_avg_pool2d_impl(op: str, x: Tensor, output_size: Any, spatial: int = 2) -> Tensor:
    """adaptive_avg_pool1d/2d under the name `op`; None in output_size keeps that size."""
    layout = "[N, C, L] or [C, L]" if spatial == 1 else "[N, C, H, W] or [C, H, W]"
    _expect(op, x, (spatial + 1, spatial + 2), layout)
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,)
    if len(sizes) == 1:
        sizes = sizes * spatial
    in_sizes = x.data.shape[-spatial:]
    sizes = tuple(n if s is None else s for s, n in zip(sizes, in_sizes))
    if len(sizes) != spatial or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes
    ):
        raise ValueError(f"{op}: output_size must be {spatial} positive ints, got {output_size!r}")
    x, unbatched = _batched(x, spatial)
    if spatial == 1:
        y = apply(_ADAPTIVE_AVG_POOL2D, (x.unsqueeze(2),), {"output_size": (1, *sizes)})
        y = y.squeeze(2)
    else:
        y = apply(_ADAPTIVE_AVG_POOL2D, (x,), {"output_size": sizes})
    return y.squeeze(0) if unbatched else y


def pad(input: Tensor, pad: Any, mode: str = "constant", value: float | None = None) -> Tensor:
    """torch.nn.functional.pad: `pad` lists (before, after) pairs from the last dim backwards;
    modes constant (with `value`, default 0), reflect, replicate, circular."""
    if not isinstance(input, Tensor):
        raise TypeError(f"pad: expected a Tensor, got {type(input).__name__}")
    if input.data.dtype.kind != "f":
        raise TypeError(f"pad: expected a floating-point Tensor, got dtype {input.dtype}")
    pads = tuple(pad) if isinstance(pad, (tuple, list)) else None
    if pads is None or not all(isinstance(p, int) and not isinstance(p, bool) for p in pads):
        raise TypeError(f"pad: pad must be a tuple of ints, got {pad!r}")
    if mode != "constant" and value is not None and value != 0:
        raise ValueError(f"pad: mode {mode!r} does not take a value (got {value})")
    padded_shape("pad", input.data.shape, pads, mode)
    attrs = {"pads": pads, "mode": mode, "value": 0.0 if value is None else float(value)}
    return apply(_PAD, (input,), attrs)
