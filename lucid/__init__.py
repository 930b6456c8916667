"""lucid: a small PyTorch-like library on NumPy, and a compiler for it."""

__version__ = "0.1.0"
