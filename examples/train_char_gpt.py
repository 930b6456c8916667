"""Train the small GPT-style character model (lucid.models.gpt) through `lucid.compile` on the
public-domain text in examples/data/, then print a sample.

The whole training step (forward, cross-entropy, backward) runs as compiled C; AdamW updates the
parameters in place. The loss is printed next to the text's unigram entropy, the loss of the
best model without context: a model that learned anything goes well below it.

Run: python examples/train_char_gpt.py [--seconds 100] [--save gpt.npz]
     python examples/sample_char_gpt.py gpt.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import lucid
from lucid import optim
from lucid.models.gpt import GPT, GPTConfig, LossModule, batches, encode, sample, unigram_entropy

DATA = Path(__file__).parent / "data"


def corpus() -> str:
    """Every text file of examples/data, in name order, joined by blank lines."""
    return "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(DATA.glob("*.txt")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=100.0, help="training time budget")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--block", type=int, default=64, help="context length")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, help="write the weights and vocabulary here (.npz)")
    args = ap.parse_args()

    text = corpus()
    vocab = "".join(sorted(set(text)))
    data = encode(text, vocab)
    floor = unigram_entropy(data)
    lucid.random.seed(args.seed)
    cfg = GPTConfig(len(vocab), args.block, args.layers, n_head=4, n_embd=args.embd)
    model = GPT(cfg)
    step = lucid.compile(LossModule(model))
    opt = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    rng = np.random.default_rng(args.seed)
    print(f"{len(text)} characters, vocabulary {len(vocab)}, unigram entropy {floor:.3f} nats")
    print(f"{sum(p.data.size for p in model.parameters())} parameters, {cfg}")

    start = time.perf_counter()
    i, recent = 0, []
    while time.perf_counter() - start < args.seconds:
        idx, targets = batches(data, cfg.block_size, args.batch, rng)
        opt.zero_grad()
        loss = step(lucid.Tensor(idx), lucid.Tensor(targets))
        loss.backward()
        opt.step()
        recent.append(float(loss.data))
        i += 1
        if i % 50 == 0:
            mean = float(np.mean(recent[-50:]))
            print(f"step {i:5d}  {time.perf_counter() - start:6.1f} s  loss {mean:.3f}")
    mean = float(np.mean(recent[-50:]))
    print(f"after {i} steps: loss {mean:.3f} vs unigram entropy {floor:.3f} nats")

    prompt = encode("We hold ", vocab)
    with lucid.no_grad():
        out = sample(model.eval(), prompt, steps=300, temperature=0.8, rng=rng)
    print("".join(vocab[int(t)] for t in out))
    if args.save:
        np.savez(
            args.save,
            vocab=np.array(vocab),
            config=np.array([cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd]),
            **model.state_dict(),
        )
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
