"""ONNX converters: matrix products, convolution, pooling, normalization and softmax.

Each entry of `OPS` maps an ONNX op type to its OpSpec (lucid/onnx/_convert_base.py);
lucid/onnx/_import_ops.py joins the families into the one table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import lucid
from lucid.nn import functional as F
from lucid.onnx._convert_base import (
    FLOAT,
    Converter,
    ConvertError,
    Ctx,
    NodeInfo,
    OpSpec,
    axis_of,
    float_only,
    like,
    mask_size,
    shape_of,
    table_op,
    unary,
    where,
)
from lucid.tensor import Tensor

# ---------------------------------------------------------------- linear algebra


def _matmul(ctx: Ctx, xs: list[Any]) -> list[Any]:
    a, b = xs
    if a.ndim == 0 or b.ndim == 0:
        raise ConvertError("MatMul of a 0-d tensor")
    if b.ndim == 1:
        out = lucid.matmul(a, b.reshape(b.data.shape[0], 1))
        return [out.reshape(*shape_of(out)[:-1])]
    if a.ndim == 1:
        out = lucid.matmul(a.reshape(1, a.data.shape[0]), b)
        return [out.reshape(*(shape_of(out)[:-2] + shape_of(out)[-1:]))]
    if a.ndim < b.ndim:  # batch_matmul wants a's batch dims too
        a = a.broadcast_to((*shape_of(b)[:-2], *shape_of(a)[-2:]))
    return [a @ b]


def _gemm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    a, b = xs[0], xs[1]
    c = xs[2] if ctx.has(2) else None
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    if a.ndim != 2 or b.ndim != 2:
        raise ConvertError(
            f"Gemm needs 2-D A and B, got {list(a.data.shape)} and {list(b.data.shape)}"
        )
    if ctx.attr("transA", 0):
        a = a.transpose(1, 0)
    if ctx.attr("transB", 0):
        w = b  # [N, K]: lucid's linear takes the weight as stored (torch's nn.Linear export)
    else:
        w = b.transpose(1, 0)
    if (
        alpha == 1.0
        and c is not None
        and beta == 1.0
        and c.ndim == 1
        and c.data.shape[0] == w.data.shape[0]
    ):
        return [F.linear(a, w, c)]
    y = F.linear(a, w)
    if alpha != 1.0:
        y = y * like(alpha, y)
    if c is not None:
        y = y + (c if beta == 1.0 else c * like(beta, c))
    return [y]


# ---------------------------------------------------------------- convolution and pooling


def _auto_pads(
    ctx: Ctx,
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dil: Sequence[int],
) -> list[int]:
    """ONNX pads [b1, b2, ..., e1, e2, ...] from pads or auto_pad."""
    n = len(spatial)
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = list(ctx.attr("pads", [0] * 2 * n))
        if len(pads) != 2 * n:
            raise ConvertError(f"pads has {len(pads)} values, expected {2 * n}")
        return pads
    if auto == "VALID":
        return [0] * 2 * n
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ConvertError(f"auto_pad={auto!r}")
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dil):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin + end


def _spatial_attrs(
    ctx: Ctx, x: Tensor, kernel: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    n = len(kernel)
    strides = list(ctx.attr("strides", [1] * n))
    dil = list(ctx.attr("dilations", [1] * n))
    if len(strides) != n or len(dil) != n:
        raise ConvertError(f"strides/dilations must have {n} values")
    spatial = [int(d) for d in x.data.shape[2:]]
    return strides, dil, _auto_pads(ctx, spatial, kernel, strides, dil)


def _to_2d(x: Tensor, n: int) -> Tensor:
    """A 1-d [N, C, L] tensor viewed as [N, C, 1, L]; 2-d unchanged."""
    return x.unsqueeze(2) if n == 1 else x


def _torch_pads(pads: Sequence[int], n: int) -> tuple[int, ...]:
    """ONNX [b..., e...] as F.pad's (before, after) pairs from the last dim back (2 dims)."""
    begin, end = list(pads[:n]), list(pads[n:])
    if n == 1:
        begin, end = [0, *begin], [0, *end]
    return (begin[1], end[1], begin[0], end[0])


def _conv(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, w = xs[0], xs[1]
    b = xs[2] if ctx.has(2) else None
    n = x.ndim - 2
    if n not in (1, 2) or w.ndim != x.ndim:
        raise ConvertError(f"Conv over {n} spatial dims (lucid has 1-D and 2-D convolution)")
    kernel = [int(k) for k in w.data.shape[2:]]
    if "kernel_shape" in ctx.attrs and list(ctx.attr("kernel_shape")) != kernel:
        raise ConvertError(f"kernel_shape {ctx.attr('kernel_shape')} != the weight's {kernel}")
    strides, dil, pads = _spatial_attrs(ctx, x, kernel)
    x2, w2 = _to_2d(x, n), _to_2d(w, n)
    s2, d2 = ([1, *strides], [1, *dil]) if n == 1 else (strides, dil)
    tp = _torch_pads(pads, n)
    if tp[0] == tp[1] and tp[2] == tp[3]:
        y = F.conv2d(x2, w2, b, tuple(s2), (tp[2], tp[0]), tuple(d2), int(ctx.attr("group", 1)))
    else:
        x2 = F.pad(x2, tp)
        y = F.conv2d(x2, w2, b, tuple(s2), 0, tuple(d2), int(ctx.attr("group", 1)))
    return [y.squeeze(2) if n == 1 else y]


def _pool(kind: str) -> Converter:
    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        x = xs[0]
        n = x.ndim - 2
        kernel = list(ctx.attr("kernel_shape"))
        if n not in (1, 2) or len(kernel) != n:
            raise ConvertError(f"{kind} pooling over {n} spatial dims (lucid has 1-D and 2-D)")
        strides, dil, pads = _spatial_attrs(ctx, x, kernel)
        ceil = bool(ctx.attr("ceil_mode", 0))
        x2 = _to_2d(x, n)
        k2, s2, d2 = ([1, *kernel], [1, *strides], [1, *dil]) if n == 1 else (kernel, strides, dil)
        tp = _torch_pads(pads, n)
        sym = tp[0] == tp[1] and tp[2] == tp[3] and tp[0] <= k2[0] // 2 and tp[2] <= k2[1] // 2
        if kind == "max":
            if sym:
                y = F.max_pool2d(x2, tuple(k2), tuple(s2), (tp[0], tp[2]), tuple(d2), ceil)
            else:
                if ceil:
                    raise ConvertError("MaxPool with ceil_mode and asymmetric or large pads")
                x2 = F.pad(x2, tp, value=-math.inf)
                y = F.max_pool2d(x2, tuple(k2), tuple(s2), 0, tuple(d2), False)
        else:
            include = bool(ctx.attr("count_include_pad", 0))
            if any(d != 1 for d in d2):
                raise ConvertError("AveragePool with dilations")
            if sym:
                y = F.avg_pool2d(x2, tuple(k2), tuple(s2), (tp[0], tp[2]), ceil, include)
            elif not ceil:  # explicit zero padding; without count_include_pad, divide by the
                # count of real elements in each window (an average of a padded ones mask)
                y = F.avg_pool2d(F.pad(x2, tp), tuple(k2), tuple(s2), 0, False, True)
                if not include:
                    ones = Tensor(np.ones((1, 1, *x2.data.shape[2:]), x2.data.dtype))
                    y = y / F.avg_pool2d(F.pad(ones, tp), tuple(k2), tuple(s2), 0, False, True)
            else:
                raise ConvertError("AveragePool with ceil_mode and asymmetric or large pads")
        return [y.squeeze(2) if n == 1 else y]

    return convert


def _pool_check(info: NodeInfo) -> str | None:
    if info.attrs.get("storage_order", 0) != 0:
        return "storage_order=1"
    if info.n_outputs > 1:
        return "MaxPool's Indices output"
    if info.op_type == "AveragePool" and any(d != 1 for d in info.attrs.get("dilations", [])):
        return "AveragePool with dilations"
    shape = info.in_shapes[0]
    if shape is not None and len(shape) not in (3, 4):
        return f"pooling over {len(shape) - 2} spatial dims"
    return float_only(info)


def _conv_check(info: NodeInfo) -> str | None:
    shape = info.in_shapes[0]
    if shape is not None and len(shape) not in (3, 4):
        return f"Conv over {len(shape) - 2} spatial dims"
    return float_only(info)


def _global_pool(kind: str) -> Converter:
    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        x = xs[0]
        axes = tuple(range(2, x.ndim))
        if kind == "avg":
            return [x.mean(axes, keepdims=True)]
        return [table_op("max", x, axes=axes, keepdims=True)]

    return convert


# ---------------------------------------------------------------- normalization


def _channel(v: Tensor, ndim: int) -> Tensor:
    """A per-channel [C] vector shaped to broadcast over [N, C, ...]."""
    return v.reshape(v.data.shape[0], *([1] * (ndim - 2)))


def _batch_norm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, scale, bias, mean, var = xs[:5]
    if ctx.attr("training_mode", 0):
        raise ConvertError("BatchNormalization training_mode=1")
    eps = float(ctx.attr("epsilon", 1e-5))
    # PyTorch's CPU formula: x * (s / sqrt(var + eps)) + (b - mean * s / sqrt(var + eps))
    k = scale / (var + like(eps, var)).sqrt()
    shift = bias - mean * k
    return [x * _channel(k, x.ndim) + _channel(shift, x.ndim)]


def _layer_norm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, scale = xs[0], xs[1]
    bias = xs[2] if ctx.has(2) else None
    axis = axis_of(int(ctx.attr("axis", -1)), x.ndim)
    eps = float(ctx.attr("epsilon", 1e-5))
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axes, keepdims=True)
    inv = like(1.0, x) / (var + like(eps, x)).sqrt()
    y = d * inv * scale
    return [y + bias if bias is not None else y, mean, inv]


def _rms_norm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, scale = xs
    axis = axis_of(int(ctx.attr("axis", -1)), x.ndim)
    eps = float(ctx.attr("epsilon", 1e-5))
    ms = (x * x).mean(tuple(range(axis, x.ndim)), keepdims=True)
    return [x / (ms + like(eps, x)).sqrt() * scale]


def _norm_check(info: NodeInfo) -> str | None:
    if info.n_outputs > 1 and info.op_type != "LayerNormalization":
        return f"{info.op_type}'s optional statistics outputs"
    if info.attrs.get("stash_type", 1) != 1:
        return "stash_type other than float32"
    return float_only(info)


def _instance_norm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, scale, bias = xs
    eps = float(ctx.attr("epsilon", 1e-5))
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axes, keepdims=True)
    y = d / (var + like(eps, x)).sqrt()
    return [y * _channel(scale, x.ndim) + _channel(bias, x.ndim)]


def _group_norm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, scale, bias = xs
    groups = int(ctx.attr("num_groups"))
    eps = float(ctx.attr("epsilon", 1e-5))
    shape = shape_of(x)
    c = int(x.data.shape[1])
    if c % groups:
        raise ConvertError(f"GroupNormalization: {c} channels in {groups} groups")
    g = x.reshape(shape[0], groups, -1)
    mean = g.mean(2, keepdims=True)
    d = g - mean
    var = (d * d).mean(2, keepdims=True)
    y = (d / (var + like(eps, x)).sqrt()).reshape(*shape)
    if int(scale.data.shape[0]) == groups and groups != c:  # opset 18: one scale per group
        scale = scale.reshape(groups, 1).broadcast_to((groups, c // groups)).reshape(c)
        bias = bias.reshape(groups, 1).broadcast_to((groups, c // groups)).reshape(c)
    return [y * _channel(scale, x.ndim) + _channel(bias, x.ndim)]


def _lp_norm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axis = axis_of(int(ctx.attr("axis", -1)), x.ndim)
    p = int(ctx.attr("p", 2))
    if p == 1:
        norm = x.abs().sum(axis, keepdims=True)
    elif p == 2:
        norm = (x * x).sum(axis, keepdims=True).sqrt()
    else:
        raise ConvertError(f"LpNormalization p={p}")
    # a zero norm means x is zero there: divide by 1 so the result is 0, as ONNX's reference
    one = like(1.0, norm).broadcast_to(shape_of(norm))
    return [x / where(norm == like(0.0, norm), one, norm)]


def _softmax(log: bool) -> Converter:
    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        x = xs[0]
        default = -1 if ctx.opset >= 13 else 1
        axis = axis_of(int(ctx.attr("axis", default)), x.ndim)
        fn = F.log_softmax if log else F.softmax
        if ctx.opset >= 13 or axis == x.ndim - 1:
            return [fn(x, axis)]
        shape = shape_of(x)  # opset < 13: softmax over the flattened dims from axis on
        flat = x.reshape(*shape[:axis], math.prod(int(d) for d in x.data.shape[axis:]))
        return [fn(flat, axis).reshape(*shape)]

    return convert


def _hardmax(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axis = axis_of(int(ctx.attr("axis", -1 if ctx.opset >= 13 else 1)), x.ndim)
    shape = shape_of(x)
    if ctx.opset < 13 and axis != x.ndim - 1:  # over the flattened dims from axis on
        x = x.reshape(*shape[:axis], math.prod(int(d) for d in x.data.shape[axis:]))
    last = x.ndim - 1 if ctx.opset < 13 else axis
    n = int(x.data.shape[last])
    first = table_op("argmax", x, axis=last, keepdims=True)  # the first maximum, as ONNX
    ids = Tensor(
        np.arange(n, dtype=np.int64).reshape([n if i == last else 1 for i in range(x.ndim)])
    )
    hit = first == ids
    one = like(1.0, x).broadcast_to(shape_of(hit))
    y = where(hit, one, like(0.0, x).broadcast_to(shape_of(hit)))
    return [y.reshape(*shape) if ctx.opset < 13 else y]


def _nll(ctx: Ctx, x: Tensor, weight: Tensor | None) -> Tensor:
    """NegativeLogLikelihoodLoss of x [N, C, ...] at the target known at import (input 1)."""
    target = ctx.const(1)
    if target.dtype != np.int64 or target.shape != (x.data.shape[0], *x.data.shape[2:]):
        raise ConvertError(f"target of shape {list(target.shape)} for input {list(x.data.shape)}")
    c = int(x.data.shape[1])
    ignore = ctx.attr("ignore_index")
    valid = np.ones(target.shape, bool) if ignore is None else target != int(ignore)
    if ((target[valid] < 0) | (target[valid] >= c)).any():
        raise ConvertError(f"a target class is outside [0, {c})")
    # the picked entries as a constant one-hot mask over C: a where and a sum pick exactly
    mask_size("the targets of a loss", target.size * c)
    hot = np.expand_dims(target, 1) == np.arange(c).reshape([1, c] + [1] * (target.ndim - 1))
    hot &= np.expand_dims(valid, 1)
    mask = Tensor(hot)
    zero = like(0.0, x).broadcast_to(tuple(hot.shape))
    picked = where(mask, x, zero).sum(1)
    if weight is None:
        w = Tensor(valid.astype(x.data.dtype))
    else:
        wb = weight.reshape(1, c, *([1] * (target.ndim - 1))).broadcast_to(tuple(hot.shape))
        w = where(mask, wb, zero).sum(1)
    loss = -(picked * w) if weight is not None else -picked * w
    reduction = ctx.attr("reduction", "mean")
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / w.sum()
    raise ConvertError(f"reduction={reduction!r}")


def _nll_loss(ctx: Ctx, xs: list[Any]) -> list[Any]:
    return [_nll(ctx, xs[0], xs[2] if ctx.has(2) else None)]


def _softmax_cross_entropy(ctx: Ctx, xs: list[Any]) -> list[Any]:
    log_prob = F.log_softmax(xs[0], 1)
    return [_nll(ctx, log_prob, xs[2] if ctx.has(2) else None), log_prob]


def _loss_check(info: NodeInfo) -> str | None:
    shape = info.in_shapes[0]
    if shape is not None and len(shape) < 2:
        return "a loss input of rank < 2"
    return float_only(info)


def _conv_transpose(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, w = xs[0], xs[1]
    b = xs[2] if ctx.has(2) else None
    n = x.ndim - 2
    if n not in (1, 2) or w.ndim != x.ndim:
        raise ConvertError(f"ConvTranspose over {n} spatial dims (lucid has 1-D and 2-D)")
    kernel = [int(k) for k in w.data.shape[2:]]
    strides = list(ctx.attr("strides", [1] * n))
    dil = list(ctx.attr("dilations", [1] * n))
    extra = list(ctx.attr("output_padding", [0] * n))
    groups = int(ctx.attr("group", 1))
    spatial = [int(d) for d in x.data.shape[2:]]
    full = [
        s * (i - 1) + e + (k - 1) * d + 1
        for s, i, e, k, d in zip(strides, spatial, extra, kernel, dil)
    ]
    auto = ctx.attr("auto_pad", "NOTSET")
    if "output_shape" in ctx.attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        out = list(ctx.attr("output_shape", [i * s for i, s in zip(spatial, strides)]))[-n:]
        total = [f - o for f, o in zip(full, out)]
        if auto == "SAME_UPPER":
            pads = [t // 2 for t in total] + [t - t // 2 for t in total]
        else:
            pads = [t - t // 2 for t in total] + [t // 2 for t in total]
    elif auto == "VALID":
        pads = [0] * 2 * n
    else:
        pads = list(ctx.attr("pads", [0] * 2 * n))
    if any(e >= s for e, s in zip(extra, strides)):
        raise ConvertError(f"ConvTranspose output_padding {extra} not below strides {strides}")
    # a negative pad (output_shape past the full size) adds zero rows: pad the result after
    grow = [max(0, -p) for p in pads]
    pads = [max(0, p) for p in pads]
    size = [f - pads[i] - pads[i + n] for i, f in enumerate(full)]
    if n == 1:
        x, w = x.unsqueeze(2), w.unsqueeze(2)
        strides, dil, size = [1, *strides], [1, *dil], [1, *size]
        pads, grow = [0, pads[0], 0, pads[1]], [0, grow[0], 0, grow[1]]
    attrs = {
        "stride": tuple(strides),
        "padding": (pads[0], pads[2], pads[1], pads[3]),
        "dilation": tuple(dil),
        "groups": groups,
        "in_size": tuple(size),
    }
    if int(x.data.shape[1]) != int(w.data.shape[0]) or int(x.data.shape[1]) % groups:
        raise ConvertError(f"ConvTranspose of {list(x.data.shape)} by weight {list(w.data.shape)}")
    y = table_op("conv2d_grad_input", x, w, **attrs)
    if any(grow):
        y = F.pad(y, (grow[1], grow[3], grow[0], grow[2]))
    if b is not None:
        y = y + b.reshape(int(b.data.shape[0]), 1, 1)
    return [y.squeeze(2) if n == 1 else y]


def _heads(x: Tensor, heads: int) -> Tensor:
    """[B, L, H * E] as [B, H, L, E]."""
    b, length = shape_of(x)[:2]
    return x.reshape(b, length, heads, -1).transpose(0, 2, 1, 3)


def _pad_keys(mask: Tensor, kv: int) -> Tensor:
    """A mask shorter than the keys, padded on its last axis with 'masked' (False / -inf)."""
    short = int(mask.data.shape[-1])
    if short == kv:
        return mask
    shape = (*mask.data.shape[:-1], kv - short)
    fill = np.zeros(shape, bool) if mask.data.dtype == np.bool_ else np.full(shape, -np.inf)
    return lucid.cat([mask, Tensor(fill.astype(mask.data.dtype))], mask.ndim - 1)


def _attention(ctx: Ctx, xs: list[Any]) -> list[Any]:
    """ONNX Attention (opset 23): scaled dot-product attention with masks, a causal frontier
    after the past keys, grouped-query heads and softcap, as the ONNX reference computes it
    (scale split as sqrt on q and k; rows whose bias masks every key give 0)."""
    q, k, v = xs[:3]
    mask = xs[3] if ctx.has(3) else None
    past_k = xs[4] if ctx.has(4) else None
    past_v = xs[5] if ctx.has(5) else None
    if (past_k is None) != (past_v is None):
        raise ConvertError("past_key and past_value must come together")
    three_d = q.ndim == 3
    if three_d:
        q = _heads(q, int(ctx.attr("q_num_heads")))
        k = _heads(k, int(ctx.attr("kv_num_heads")))
        v = _heads(v, int(ctx.attr("kv_num_heads")))
    elif q.ndim != 4:
        raise ConvertError(f"Attention of rank-{q.ndim} inputs")
    dtype = q.data.dtype
    scale = ctx.attr("scale")
    scale = 1 / math.sqrt(int(q.data.shape[3])) if scale is None else float(scale)
    root = like(float(dtype.type(np.sqrt(dtype.type(scale)))), q)
    if past_k is not None and past_v is not None:
        k = lucid.cat([past_k, k], 2)
        v = lucid.cat([past_v, v], 2)
    present_k, present_v = k, v
    lq, lkv = int(q.data.shape[2]), int(k.data.shape[2])
    bias: Tensor | None = None
    if mask is not None:
        mask = _pad_keys(mask, lkv)
        if mask.data.dtype == np.bool_:
            full = (*mask.data.shape,)
            mask = where(
                mask, like(0.0, q).broadcast_to(full), like(-math.inf, q).broadcast_to(full)
            )
        bias = mask
    if ctx.attr("is_causal", 0):
        offset = int(past_k.data.shape[2]) if past_k is not None else 0
        allowed = np.arange(lkv)[None, :] <= np.arange(lq)[:, None] + offset
        causal = Tensor(np.where(allowed, 0.0, -np.inf).astype(dtype))
        bias = causal if bias is None else bias + causal
    hq, hk = int(q.data.shape[1]), int(k.data.shape[1])
    if hq != hk:
        if hq % hk:
            raise ConvertError(f"{hq} query heads over {hk} key heads")
        r = hq // hk
        b, _, lk, e = shape_of(k)
        k = k.reshape(b, hk, 1, lk, e).broadcast_to((b, hk, r, lk, e)).reshape(b, hq, lk, e)
        ev = shape_of(v)[3]
        v = v.reshape(b, hk, 1, lk, ev).broadcast_to((b, hk, r, lk, ev)).reshape(b, hq, lk, ev)
    qk = (q * root) @ (k * root).transpose(0, 1, 3, 2)
    softcap = float(ctx.attr("softcap", 0.0))
    if softcap > 0:
        qk = (qk / like(softcap, qk)).tanh() * like(softcap, qk)
    if bias is not None:
        qk = qk + bias
    p = F.softmax(qk, qk.ndim - 1)
    if bias is not None:  # a row whose bias masks every key attends to nothing: 0, not NaN
        last = bias.ndim - 1
        empty = table_op("max", bias, axes=(last,), keepdims=True) == like(-math.inf, bias)
        full = shape_of(p)
        p = where(empty.broadcast_to(full), like(0.0, p).broadcast_to(full), p)
    y = p @ v
    if three_d:
        y = y.transpose(0, 2, 1, 3)
        y = y.reshape(*shape_of(y)[:2], -1)
    return [y, present_k, present_v]


def _attention_check(info: NodeInfo) -> str | None:
    if len(info.in_types) > 6:
        return "Attention's nonpad_kv_seqlen input"
    if info.n_outputs > 3:
        return "Attention's qk_matmul_output"
    return float_only(info)


# ---------------------------------------------------------------- the table

_SPATIAL = frozenset({"auto_pad", "pads", "strides", "dilations", "kernel_shape"})
_REDUCE = frozenset({"axes", "keepdims", "noop_with_empty_axes"})


OPS: Mapping[str, OpSpec] = {
    "MatMul": OpSpec(_matmul, dtypes=FLOAT),
    "Gemm": OpSpec(_gemm, frozenset({"alpha", "beta", "transA", "transB"}), dtypes=FLOAT),
    "Conv": OpSpec(_conv, _SPATIAL | {"group"}, check=_conv_check, dtypes=FLOAT),
    "MaxPool": OpSpec(
        _pool("max"), _SPATIAL | {"ceil_mode", "storage_order"}, check=_pool_check, dtypes=FLOAT
    ),
    "AveragePool": OpSpec(
        _pool("avg"),
        _SPATIAL | {"ceil_mode", "count_include_pad"},
        check=_pool_check,
        dtypes=FLOAT,
    ),
    "GlobalAveragePool": unary(lambda x: x.mean(tuple(range(2, x.ndim)), keepdims=True)),
    "GlobalMaxPool": OpSpec(_global_pool("max"), dtypes=FLOAT),
    "BatchNormalization": OpSpec(
        _batch_norm,
        frozenset({"epsilon", "momentum", "training_mode"}),
        check=_norm_check,
        dtypes=FLOAT,
    ),
    "LayerNormalization": OpSpec(
        _layer_norm,
        frozenset({"axis", "epsilon", "stash_type"}),
        check=_norm_check,
        dtypes=FLOAT,
        outputs=3,
    ),
    "InstanceNormalization": OpSpec(_instance_norm, frozenset({"epsilon"}), dtypes=FLOAT),
    "GroupNormalization": OpSpec(
        _group_norm,
        frozenset({"num_groups", "epsilon", "stash_type"}),
        check=_norm_check,
        dtypes=FLOAT,
    ),
    "LpNormalization": OpSpec(_lp_norm, frozenset({"axis", "p"}), dtypes=FLOAT),
    "RMSNormalization": OpSpec(
        _rms_norm, frozenset({"axis", "epsilon", "stash_type"}), check=_norm_check, dtypes=FLOAT
    ),
    "Hardmax": OpSpec(_hardmax, frozenset({"axis"}), dtypes=FLOAT),
    "NegativeLogLikelihoodLoss": OpSpec(
        _nll_loss, frozenset({"reduction", "ignore_index"}), (1,), _loss_check, FLOAT
    ),
    "SoftmaxCrossEntropyLoss": OpSpec(
        _softmax_cross_entropy,
        frozenset({"reduction", "ignore_index"}),
        (1,),
        _loss_check,
        FLOAT,
        outputs=2,
    ),
    "ConvTranspose": OpSpec(
        _conv_transpose,
        _SPATIAL | {"group", "output_padding", "output_shape"},
        check=_conv_check,
        dtypes=FLOAT,
    ),
    "Attention": OpSpec(
        _attention,
        frozenset({"is_causal", "scale", "softcap", "q_num_heads", "kv_num_heads"}),
        check=_attention_check,
        dtypes=FLOAT,
        outputs=3,
    ),
    "Softmax": OpSpec(_softmax(False), frozenset({"axis"}), dtypes=FLOAT),
    "LogSoftmax": OpSpec(_softmax(True), frozenset({"axis"}), dtypes=FLOAT),
}
