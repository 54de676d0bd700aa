"""How long TinyMLM takes to train from scratch here, and how good the shipped checkpoint is.

Prints the wall-clock training time of the shipped recipe (``mlmcourse train``) against the
one-minute budget, and the held-out loss over selected positions (nats) and accuracy of the
shipped checkpoint next to the uniform distribution's loss log V.

Usage: ``.venv/bin/python benchmarks/train_tinymlm.py [--steps N] [--skip-training]``
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from mlmcourse.corpus import split_corpus
from mlmcourse.model import load_pretrained
from mlmcourse.train import MAX_CPU_THREADS, evaluate, train_from_scratch

BUDGET_SECONDS = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps (default 1500)")
    parser.add_argument("--skip-training", action="store_true", help="only measure the checkpoint")
    args = parser.parse_args()
    _, test = split_corpus()

    if not args.skip_training:
        threads = min(torch.get_num_threads(), MAX_CPU_THREADS)
        start = time.perf_counter()
        model, vocab, history = train_from_scratch(steps=args.steps, progress=False)
        total = time.perf_counter() - start
        scratch = evaluate(model, test, vocab)
        print(f"training from scratch: {args.steps} steps, {threads} CPU thread(s)")
        print(f"  train loop {history.seconds:.1f} s, with set-up {total:.1f} s "
              f"= {total / BUDGET_SECONDS:.2f} x the {BUDGET_SECONDS:.0f} s budget")  # fmt: skip
        print(f"  held-out loss {scratch['loss']:.3f} nats, accuracy {scratch['accuracy']:.1%}")

    model, vocab = load_pretrained()
    result = evaluate(model, test, vocab)
    uniform = math.log(len(vocab))
    print(f"shipped checkpoint on the held-out split ({len(test)} sentences, "
          f"{result['n']} selected positions, V = {len(vocab)}):")  # fmt: skip
    print(f"  accuracy at selected positions {result['accuracy']:.1%} "
          f"(uniform: {1 / len(vocab):.2%})")
    print(f"  loss {result['loss']:.3f} nats vs uniform log V = {uniform:.3f} nats "
          f"(ratio {result['loss'] / uniform:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
