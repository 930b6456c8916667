"""ASan run: every normalization kernel lucid.compile builds, with -fsanitize=address.

Not a pytest file (ASan must be preloaded into the Python process):
    ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$(gcc -print-file-name=libasan.so) \\
        PYTHONPATH=. LUCID_CACHE_DIR=$(mktemp -d) python tests/runtime/asan_normalization.py
"""

import warnings

import numpy as np

import lucid
import lucid.optim
from lucid import nn
from tests.runtime.test_normalization_compiled import Text, Vision

warnings.simplefilter("ignore")
FLAGS = [
    "-O1",
    "-march=native",
    "-g",
    "-fsanitize=address",
    "-fno-omit-frame-pointer",
    "-ffp-contract=off",
    "-fno-math-errno",
]
rng = np.random.default_rng(0)
models = [
    (Vision(), (3, 5, 5)),
    (Vision(momentum=None), (3, 5, 5)),
    (Text(), (4, 8)),
    (nn.Sequential(nn.LayerNorm(13), nn.Tanh()), (7, 13)),
    (nn.Sequential(nn.GroupNorm(2, 6), nn.BatchNorm2d(6)), (6, 3, 7)),
    (nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU()), (5,)),
    # runs of 256 and more: the chunked path of the moments kernel, with a tail
    (nn.Sequential(nn.LayerNorm(300), nn.Tanh()), (2, 300)),
    (nn.Sequential(nn.BatchNorm2d(4), nn.GroupNorm(2, 4)), (4, 17, 17)),
]
count = 0
for model, feat in models:
    for dyn in (False, True):
        c = lucid.compile(model, dynamic_batch=dyn, options={"cflags": FLAGS})
        opt = lucid.optim.SGD(model.parameters(), lr=0.01)
        for n in (2, 5, 3) if dyn else (3, 3):
            model.train()
            x = rng.standard_normal((n, *feat)).astype(np.float32)
            opt.zero_grad()
            y = c(lucid.tensor(x))
            (y * y).sum().backward()
            opt.step()
            with lucid.no_grad():
                c(lucid.tensor(x))
            model.eval()
            with lucid.no_grad():
                c(lucid.tensor(x))
            count += 1
        assert "-fsanitize=address" in " ".join(c.build_info.command)
print("ASan: ok,", count, "rounds")
