"""Train TinyMLM from scratch on the shipped corpus and save a checkpoint.

The model is trained on the corpus' train split, measured on the held-out split (mean
-log Pr_i^{W,θ}(x_i|x̄) over selected positions, in nats, and their accuracy), then saved.
The package's own checkpoint is only replaced if --out points at it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from mlmcourse.corpus import split_corpus
from mlmcourse.model import save_checkpoint
from mlmcourse.train import evaluate, train_from_scratch

DEFAULT_OUT = "tinymlm.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--steps", type=_positive_int, default=1500, help="optimisation steps (default: 1500)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--out", type=Path, default=Path(DEFAULT_OUT),
        help=f"checkpoint to write (default: ./{DEFAULT_OUT})",
    )  # fmt: skip
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if not args.out.parent.is_dir():
        print(f"error: the directory of --out {args.out} does not exist; create it first.")
        return 2
    model, vocab, history = train_from_scratch(
        steps=args.steps, seed=args.seed, device=args.device, progress=not args.quiet
    )
    _, test = split_corpus()
    result = evaluate(model, test, vocab, seed=args.seed)
    save_checkpoint(model.cpu(), vocab, args.out)
    print(
        f"trained {args.steps} steps in {history.seconds:.1f} s; held-out selected positions "
        f"(n={result['n']}): loss {result['loss']:.3f} nats (uniform: log V = "
        f"{math.log(len(vocab)):.3f}), accuracy {result['accuracy']:.1%}"
    )
    print(f"saved {args.out}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value
