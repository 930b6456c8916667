"""A model file as a user writes it, for the CLI tests that import one from the current
directory: class Net (3 -> 2), an instance, factories and things that are not models."""

from __future__ import annotations

import textwrap

MODULE = textwrap.dedent("""
    from lucid import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x)

    net = Net()

    def make():
        return Net()

    def make_sized(n):
        return Net()

    class Plain:
        pass

    answer = 42
""")
