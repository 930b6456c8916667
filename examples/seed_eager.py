"""The seed page's model (Linear -> HardSwish -> Linear), run eagerly and trained for a few steps.

Run: python examples/seed_eager.py
"""

from __future__ import annotations

import numpy as np

import lucid
from lucid import Tensor, nn, optim


class NeuralNetwork(nn.Module):
    """The third example of the lucid.nn.HardSwish page."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features=3, out_features=5)
        self.hardswish = nn.HardSwish()
        self.fc2 = nn.Linear(in_features=5, out_features=2)

    def forward(self, x: Tensor) -> Tensor:
        """fc2(hardswish(fc1(x)))."""
        return self.fc2(self.hardswish(self.fc1(x)))


def main() -> None:
    """Print one forward/backward pass, then fit the model to a random target with Adam."""
    lucid.random.seed(0)
    model = NeuralNetwork()
    print(model)

    input_data = Tensor([[0.5, -1.2, 3.3]], requires_grad=True)
    output = model(input_data)
    print("output:", repr(output))
    output.backward()
    print("d output / d input:", input_data.grad)

    x = lucid.randn(64, 3)
    target = Tensor(np.sin(x.data @ np.array([[1.0, -1.0], [0.5, 2.0], [-1.5, 0.3]], np.float32)))
    opt = optim.Adam(model.parameters(), lr=0.02)
    for step in range(201):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"step {step:3d}  mse {float(loss):.4f}")


if __name__ == "__main__":
    main()
