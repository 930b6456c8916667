"""MobileNetV3-Small (Howard et al., "Searching for MobileNetV3", 2019), the network HardSwish
comes from, in the layout of `torchvision.models.mobilenet_v3_small`.

The module tree, parameter and buffer names are torchvision's (`features.0.0.weight`,
`features.1.block.1.fc1.bias`, `classifier.3.weight`, ...), so a torchvision state dict loads
one to one with `load_torchvision_state_dict`; the initialisation follows torchvision's too
(Kaiming-normal fan-out convolutions, N(0, 0.01) linear weights, unit BatchNorm scales).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lucid import nn
from lucid import random as _random
from lucid.ir.trace import row_agnostic
from lucid.tensor import Tensor

# torchvision's BatchNorm2d settings for MobileNetV3 (partial(nn.BatchNorm2d, eps=0.001,
# momentum=0.01)): slow-moving running statistics, and a larger eps than the default
BN_EPS = 0.001
BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class Block:
    """One inverted-residual block: kernel size, expansion and output channels, whether it has
    squeeze-and-excitation, its activation ("RE" ReLU or "HS" HardSwish) and its stride."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    se: bool
    activation: str
    stride: int


# The "small" configuration of the paper's Table 2 (torchvision's bneck_conf list)
SMALL: tuple[Block, ...] = (
    Block(16, 3, 16, 16, True, "RE", 2),
    Block(16, 3, 72, 24, False, "RE", 2),
    Block(24, 3, 88, 24, False, "RE", 1),
    Block(24, 5, 96, 40, True, "HS", 2),
    Block(40, 5, 240, 40, True, "HS", 1),
    Block(40, 5, 240, 40, True, "HS", 1),
    Block(40, 5, 120, 48, True, "HS", 1),
    Block(48, 5, 144, 48, True, "HS", 1),
    Block(48, 5, 288, 96, True, "HS", 2),
    Block(96, 5, 576, 96, True, "HS", 1),
    Block(96, 5, 576, 96, True, "HS", 1),
)
LAST_CHANNEL = 1024


def make_divisible(v: float, divisor: int = 8) -> int:
    """`v` rounded to a multiple of `divisor` (at least `divisor`), never more than 10% below
    it: the channel rounding of the MobileNet papers."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _activation(kind: str | None) -> list[nn.Module]:
    if kind is None:
        return []
    return [nn.HardSwish() if kind == "HS" else nn.ReLU()]


def conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None
) -> nn.Sequential:
    """Conv2d (no bias) -> BatchNorm2d -> activation: torchvision's Conv2dNormActivation, whose
    children are named 0, 1, 2."""
    conv = nn.Conv2d(
        cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False
    )
    bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
    return nn.Sequential(conv, bn, *_activation(act))


class SqueezeExcitation(nn.Module):
    """x * hardsigmoid(fc2(relu(fc1(mean over H, W of x)))): channel gating, with 1x1
    convolutions as the two fully connected layers (names fc1, fc2 as in torchvision)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.scale_activation = nn.HardSigmoid()

    @row_agnostic
    def forward(self, x: Tensor) -> Tensor:
        """Gate each channel of x by a weight computed from the whole feature map."""
        scale = self.fc2(self.relu(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class InvertedResidual(nn.Module):
    """1x1 expansion, depthwise kxk, optional squeeze-and-excitation, 1x1 linear projection;
    a residual connection when the block keeps the resolution and the channel count."""

    def __init__(self, cfg: Block) -> None:
        super().__init__()
        if cfg.stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {cfg.stride}")
        self.use_res_connect = cfg.stride == 1 and cfg.in_channels == cfg.out_channels
        layers: list[nn.Module] = []
        if cfg.expanded != cfg.in_channels:
            layers.append(conv_bn(cfg.in_channels, cfg.expanded, 1, act=cfg.activation))
        layers.append(
            conv_bn(
                cfg.expanded,
                cfg.expanded,
                cfg.kernel,
                stride=cfg.stride,
                groups=cfg.expanded,
                act=cfg.activation,
            )
        )
        if cfg.se:
            layers.append(SqueezeExcitation(cfg.expanded, make_divisible(cfg.expanded // 4)))
        layers.append(conv_bn(cfg.expanded, cfg.out_channels, 1))
        self.block = nn.Sequential(*layers)

    @row_agnostic
    def forward(self, x: Tensor) -> Tensor:
        """The block, plus x when the shapes allow."""
        y = self.block(x)
        return y + x if self.use_res_connect else y


class MobileNetV3(nn.Module):
    """MobileNetV3 for `num_classes` classes on NCHW images (224x224 in the paper; any size
    of at least 32x32 works, the pooling before the classifier is global)."""

    def __init__(
        self,
        blocks: tuple[Block, ...] = SMALL,
        last_channel: int = LAST_CHANNEL,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        first = blocks[0].in_channels
        layers: list[nn.Module] = [conv_bn(3, first, 3, stride=2, act="HS")]
        layers += [InvertedResidual(cfg) for cfg in blocks]
        last_conv = 6 * blocks[-1].out_channels
        layers.append(conv_bn(blocks[-1].out_channels, last_conv, 1, act="HS"))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last_channel),
            nn.HardSwish(),
            nn.Dropout(p=dropout),
            nn.Linear(last_channel, num_classes),
        )
        _init_like_torchvision(self)

    @row_agnostic
    def forward(self, x: Tensor) -> Tensor:
        """Class logits [N, num_classes] for images [N, 3, H, W]."""
        x = self.avgpool(self.features(x))
        # flatten(1) with the batch as -1, as nn.Flatten: the same reshape for any row count
        return self.classifier(x.reshape(-1, math.prod(x.shape[1:])))


def mobilenet_v3_small(num_classes: int = 1000, dropout: float = 0.2) -> MobileNetV3:
    """MobileNetV3-Small with torchvision's configuration (2.5M parameters at 1000 classes)."""
    return MobileNetV3(SMALL, LAST_CHANNEL, num_classes=num_classes, dropout=dropout)


def _init_like_torchvision(model: nn.Module) -> None:
    """Kaiming-normal (fan out) convolutions, zero biases, unit BatchNorm scales and N(0, 0.01)
    linear weights, drawn from lucid.random (so `lucid.random.seed` makes them repeatable)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.weight.shape[0] * math.prod(m.weight.shape[2:])  # as torch: no / groups
            _fill(
                m.weight,
                _random.generator().standard_normal(m.weight.shape) * math.sqrt(2.0 / fan_out),
            )
            if m.bias is not None:
                _fill(m.bias, np.zeros(m.bias.shape))
        elif isinstance(m, nn.Linear):
            _fill(m.weight, _random.generator().standard_normal(m.weight.shape) * 0.01)
            if m.bias is not None:
                _fill(m.bias, np.zeros(m.bias.shape))


def _fill(p: Tensor, values: np.ndarray) -> None:
    p.data[...] = values.astype(p.data.dtype)


def load_torchvision_state_dict(
    model: nn.Module, state: Mapping[str, Any], strict: bool = True
) -> nn.LoadResult:
    """Load a torchvision MobileNetV3 state dict (torch tensors or arrays) into `model`.

    The names map one to one; values are converted with `.detach().cpu().numpy()` when they
    have it (torch need not be imported here), so a state dict saved by torchvision loads
    without a dictionary of renames. Parameters and buffers (BatchNorm running statistics and
    `num_batches_tracked`) are both loaded; a missing or unexpected key, or a shape that
    differs, raises ValueError and leaves the model unchanged (as `Module.load_state_dict`).
    """
    arrays = {k: _to_numpy(v) for k, v in state.items()}
    return model.load_state_dict(arrays, strict=strict)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
