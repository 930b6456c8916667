"""Train a HardSwish MLP on scikit-learn's digits entirely through compiled code.

The model (64 -> 128 -> HardSwish -> 10) and its cross-entropy loss run through
`lucid.compile`: every training step runs the compiled augmented forward and the compiled
backward graph (fused GEMM epilogues included), and Adam updates the parameters in place, which
the compiled code reads live, so nothing is rebuilt after the first step. The digits data set
(1797 8x8 images) ships inside scikit-learn: nothing is downloaded.

Run: pip install '.[examples]'   then   python examples/train_digits.py [--epochs 20]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import lucid
from lucid import nn, optim
from lucid.nn import functional as F


class WithLoss(nn.Module):
    """`net`'s mean cross-entropy on (x, target): the whole training step compiles as one."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: lucid.Tensor, target: lucid.Tensor) -> lucid.Tensor:
        """cross_entropy(net(x), target)."""
        return F.cross_entropy(self.net(x), target)


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): pixels scaled to [0, 1], a fixed 80/20 split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit(
            "train_digits.py needs scikit-learn for its digits data set:\n"
            "    pip install '.[examples]'    (or: pip install scikit-learn)"
        )
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    return x[train], y[train], x[test], y[test]


def bar(done: int, total: int, width: int = 24) -> str:
    """`[#####-------]` for done/total."""
    filled = round(width * done / total)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def main(argv: list[str] | None = None) -> float:
    """Train, print one line per epoch, then the test accuracy (also returned)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test = load()
    lucid.random.seed(args.seed)
    net = nn.Sequential(nn.Linear(64, 128), nn.HardSwish(), nn.Linear(128, 10))
    step = lucid.compile(WithLoss(net), dynamic_batch=True)  # forward + loss + backward
    predict = lucid.compile(net, dynamic_batch=True)  # eval mode: a forward-only build
    opt = optim.Adam(net.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    n, bs = len(x_train), args.batch_size
    print(
        f"digits: {n} train / {len(x_test)} test images; Linear(64, 128) -> HardSwish -> Linear(128, 10)"
    )
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order, total = rng.permutation(n), 0.0
        for i in range(0, n, bs):
            rows = order[i : i + bs]
            opt.zero_grad()
            loss = step(lucid.Tensor(x_train[rows]), lucid.Tensor(y_train[rows]))
            loss.backward()
            opt.step()
            total += float(loss.data) * len(rows)
        print(f"epoch {epoch:3d}/{args.epochs} {bar(epoch, args.epochs)} loss {total / n:.4f}")
    seconds = time.perf_counter() - start
    predict.eval()
    logits = predict(lucid.Tensor(x_test)).data
    accuracy = float((logits.argmax(1) == y_test).mean())
    builds = len(step.signatures) + len(predict.signatures)
    print(f"trained in {seconds:.2f} s ({builds} compiled signatures, first-call builds included)")
    print(f"test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
