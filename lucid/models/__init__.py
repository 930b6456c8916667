"""Reference models written in lucid: MobileNetV3-Small (torchvision's layout and names) and a
small GPT-style character model (nanoGPT's layout)."""

from __future__ import annotations

from lucid.models.gpt import GPT, GPTConfig
from lucid.models.mobilenetv3 import MobileNetV3, load_torchvision_state_dict, mobilenet_v3_small

__all__ = ["GPT", "GPTConfig", "MobileNetV3", "load_torchvision_state_dict", "mobilenet_v3_small"]
