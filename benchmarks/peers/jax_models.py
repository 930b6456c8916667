"""JAX twins of the issue-15 models, pure functions of lucid's state dict (names as lucid's).

MobileNetV3-Small: `jax.lax.conv_general_dilated` in NCHW/OIHW (depthwise blocks through
`feature_group_count`), BatchNorm with the running statistics (eval) or the batch's (train,
which also returns the updated running statistics, as PyTorch and lucid do), HardSwish,
squeeze-and-excitation, global average pooling and the classifier. GPT: token + position
embeddings, pre-norm blocks of causal multi-head attention and a tanh-GELU MLP, the final
LayerNorm and the head. Run and checked against lucid eager by jax_system.JaxJit.
"""

from __future__ import annotations

import math

BN_EPS = 1e-3  # torchvision's MobileNetV3 BatchNorm (as lucid.models.mobilenetv3)
BN_MOMENTUM = 0.01
LN_EPS = 1e-5


def _jax():
    import jax
    import jax.numpy as jnp

    return jax, jnp


def _hardsigmoid(jnp, x):
    return jnp.clip(x / 6 + 0.5, 0, 1)


def _linear(p, name, x):
    """x @ W.T (+ b) for the Linear `name` (weight [out, in])."""
    y = x @ p[f"{name}.weight"].T
    bias = p.get(f"{name}.bias")
    return y if bias is None else y + bias


def mnv3_forward(p, buffers, x, training: bool):
    """(logits [N, 1000], updated BatchNorm buffers or {}) of MobileNetV3-Small on NCHW x.

    `p` holds the parameters and `buffers` the BatchNorm running statistics, both by lucid's
    state-dict names; the block table is lucid's (lucid.models.mobilenetv3.SMALL)."""
    jax, jnp = _jax()
    from lucid.models.mobilenetv3 import SMALL

    new_buffers = {}

    def conv(name, h, stride, groups, bias=False):
        w = p[f"{name}.weight"]
        k = w.shape[-1]
        pad = (k - 1) // 2
        y = jax.lax.conv_general_dilated(
            h,
            w,
            window_strides=(stride, stride),
            padding=[(pad, pad), (pad, pad)],
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            feature_group_count=groups,
        )
        return y + p[f"{name}.bias"][None, :, None, None] if bias else y

    def bn(name, h):
        if training:
            mean = jnp.mean(h, axis=(0, 2, 3))
            var = jnp.mean(jnp.square(h - mean[None, :, None, None]), axis=(0, 2, 3))
            n = h.shape[0] * h.shape[2] * h.shape[3]
            rm, rv = buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"]
            new_buffers[f"{name}.running_mean"] = (1 - BN_MOMENTUM) * rm + BN_MOMENTUM * mean
            new_buffers[f"{name}.running_var"] = (1 - BN_MOMENTUM) * rv + BN_MOMENTUM * var * (
                n / (n - 1)
            )
        else:
            mean, var = buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"]
        scale = p[f"{name}.weight"] * jax.lax.rsqrt(var + BN_EPS)
        shift = p[f"{name}.bias"] - mean * scale
        return h * scale[None, :, None, None] + shift[None, :, None, None]

    def act(kind, h):
        if kind == "HS":
            return h * _hardsigmoid(jnp, h)
        return h if kind is None else jax.nn.relu(h)

    def conv_bn(name, h, stride=1, groups=1, kind=None):
        return act(kind, bn(f"{name}.1", conv(f"{name}.0", h, stride, groups)))

    h = conv_bn("features.0", x, stride=2, kind="HS")
    for i, cfg in enumerate(SMALL, start=1):
        j, y = 0, h
        if cfg.expanded != cfg.in_channels:
            y = conv_bn(f"features.{i}.block.0", y, kind=cfg.activation)
            j = 1
        y = conv_bn(
            f"features.{i}.block.{j}",
            y,
            stride=cfg.stride,
            groups=cfg.expanded,
            kind=cfg.activation,
        )
        j += 1
        if cfg.se:
            se = f"features.{i}.block.{j}"
            s = jnp.mean(y, axis=(2, 3), keepdims=True)
            s = jax.nn.relu(conv(f"{se}.fc1", s, 1, 1, bias=True))
            y = y * _hardsigmoid(jnp, conv(f"{se}.fc2", s, 1, 1, bias=True))
            j += 1
        y = conv_bn(f"features.{i}.block.{j}", y)
        h = y + h if cfg.stride == 1 and cfg.in_channels == cfg.out_channels else y
    h = conv_bn(f"features.{len(SMALL) + 1}", h, kind="HS")
    h = jnp.mean(h, axis=(2, 3))
    h = act("HS", _linear(p, "classifier.0", h))
    return _linear(p, "classifier.3", h), new_buffers


def gpt_forward(p, idx, n_layer: int, n_head: int):
    """Logits [B, T, vocab] of the GPT on token ids [B, T]."""
    jax, jnp = _jax()

    def layer_norm(name, h):
        mean = jnp.mean(h, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
        return (h - mean) * jax.lax.rsqrt(var + LN_EPS) * p[f"{name}.weight"] + p[f"{name}.bias"]

    b, t = idx.shape
    h = p["transformer.wte.weight"][idx] + p["transformer.wpe.weight"][:t]
    c = h.shape[-1]
    d = c // n_head
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    for i in range(n_layer):
        pre = f"transformer.h.{i}"
        qkv = _linear(p, f"{pre}.attn.c_attn", layer_norm(f"{pre}.ln_1", h))
        q, k, v = (
            z.reshape(b, t, n_head, d).transpose(0, 2, 1, 3) for z in jnp.split(qkv, 3, axis=-1)
        )
        scores = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(d)
        scores = jnp.where(causal, scores, -jnp.inf)
        y = jax.nn.softmax(scores, axis=-1) @ v
        y = y.transpose(0, 2, 1, 3).reshape(b, t, c)
        h = h + _linear(p, f"{pre}.attn.c_proj", y)
        m = _linear(p, f"{pre}.mlp.c_fc", layer_norm(f"{pre}.ln_2", h))
        h = h + _linear(p, f"{pre}.mlp.c_proj", jax.nn.gelu(m, approximate=True))
    return _linear(p, "lm_head", layer_norm("transformer.ln_f", h))


def cross_entropy(logits, target):
    """Mean cross-entropy of logits [N, classes] (or [B, T, V]) against int targets."""
    jax, jnp = _jax()
    logits = logits.reshape(-1, logits.shape[-1])
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, target.reshape(-1, 1), axis=-1))
