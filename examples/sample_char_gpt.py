"""Print text sampled from a character GPT saved by examples/train_char_gpt.py --save.

Run: python examples/sample_char_gpt.py gpt.npz [--prompt "We hold "] [--chars 400]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import lucid
from lucid.models.gpt import GPT, GPTConfig, encode, sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--prompt", default="We hold ")
    ap.add_argument("--chars", type=int, default=400)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    saved = np.load(args.weights)
    vocab = str(saved["vocab"])
    state = {k: saved[k] for k in saved.files if k not in ("vocab", "config")}
    block, layers, heads, embd = (int(v) for v in saved["config"])
    cfg = GPTConfig(len(vocab), block, layers, n_head=heads, n_embd=embd)
    model = GPT(cfg)
    model.load_state_dict(state)
    with lucid.no_grad():
        out = sample(
            model.eval(),
            encode(args.prompt, vocab),
            steps=args.chars,
            temperature=args.temperature,
            rng=np.random.default_rng(args.seed),
        )
    print("".join(vocab[int(t)] for t in out))


if __name__ == "__main__":
    main()
