"""The lowerings of structured ops, by the name their OpDef gives in `lowering`.

An elementwise op has none: its one scalar C spelling (`OpDef.c`) is lowered to a loop by
`_lower_loops.lower_elementwise`. `INLINE` ops are laid out by emit_c itself (constants become
static data), not as kernels.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from lucid.codegen import _lower_batched as batched
from lucid.codegen import _lower_conv as conv
from lucid.codegen import _lower_dropout as dropout
from lucid.codegen import _lower_loops as loops
from lucid.codegen import _lower_norm as norm
from lucid.codegen import _lower_pad as pad
from lucid.codegen import _lower_pool as pool
from lucid.codegen import _lower_special as special
from lucid.codegen import fused
from lucid.codegen._lower import LowerFn

LOWERINGS: Mapping[str, LowerFn] = MappingProxyType(
    {
        "copy": loops.lower_copy,
        "broadcast": loops.lower_broadcast,
        "dim": loops.lower_dim,
        "index_check": loops.lower_index_check,
        "transpose": loops.lower_transpose,
        "slice": loops.lower_slice,
        "slice_grad": loops.lower_slice_grad,
        "concat": loops.lower_concat,
        "reduce": loops.lower_reduce,
        "extremum": loops.lower_extremum,
        "arg_extremum": loops.lower_arg_extremum,
        "sum_to": loops.lower_sum_to,
        "mse_loss": loops.lower_mse_loss,
        "softmax": loops.lower_softmax,
        "moments": norm.lower_moments,
        "matmul": special.lower_matmul,
        "linear": special.lower_linear,
        "cross_entropy": special.lower_cross_entropy,
        "cross_entropy_grad": special.lower_cross_entropy_grad,
        "dropout": dropout.lower_dropout,
        "max_pool2d": pool.lower_max_pool2d,
        "max_pool2d_grad": pool.lower_max_pool2d_grad,
        "avg_pool2d": pool.lower_avg_pool2d,
        "avg_pool2d_grad": pool.lower_avg_pool2d_grad,
        "adaptive_avg_pool2d": pool.lower_adaptive_avg_pool2d,
        "adaptive_avg_pool2d_grad": pool.lower_adaptive_avg_pool2d_grad,
        "pad": pad.lower_pad,
        "pad_grad": pad.lower_pad_grad,
        "batch_matmul": batched.lower_batch_matmul,
        "matmul_at": batched.lower_matmul_at,
        "embedding": batched.lower_embedding,
        "embedding_grad": batched.lower_embedding_grad,
        "fused_gemm": fused.lower_fused_gemm,
        "fused_elementwise": fused.lower_fused_elementwise,
        "fused_mlp": fused.lower_fused_mlp,
        "conv2d": conv.lower_conv2d,
        "conv2d_grad_input": conv.lower_conv2d_grad_input,
        "conv2d_grad_weight": conv.lower_conv2d_grad_weight,
        "fused_conv": conv.lower_fused_conv,
    }
)
INLINE = frozenset({"constant"})
