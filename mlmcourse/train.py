"""Training TinyMLM with the MLM objective, and measuring it on held-out sentences.

Each step draws a batch of sentences x, corrupts them into x̄ with fresh random masks
(:func:`mlmcourse.masking.mask_tokens`), and takes one AdamW step on
``mlm_loss(logits, labels, reduction="mean")``: the mean over the selected positions A(x) of
``-log Pr_i^{W,θ}(x_i|x̄)``, in nats.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from mlmcourse.corpus import split_corpus
from mlmcourse.loss import mlm_loss
from mlmcourse.masking import IGNORE_INDEX, mask_tokens
from mlmcourse.model import TinyMLM
from mlmcourse.vocab import Vocabulary

RECIPE_DROPOUT = 0.0
"""Dropout of the shipped model: with fresh masks at every step it does not overfit in a
training run this short, and dropout would make each step half as fast again."""

MAX_CPU_THREADS = 1
"""Intra-op threads on CPU while training or evaluating. The matrices of a model this small are
too small to split: a second thread gains little on an idle machine and, on a busy one,
makes every step many times slower while the threads wait for each other."""


@dataclass
class TrainingHistory:
    """What happened during :func:`train`.

    ``losses[k]`` is the mean MLM loss (nats per selected position) of the batch of step ``k + 1``;
    ``eval_losses`` holds ``(step, held-out loss)`` pairs, step 0 being before training;
    ``seconds`` is the wall-clock training time.
    """

    losses: list[float] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0


def default_device() -> str:
    """``"cuda"`` when a GPU is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def train(
    model: TinyMLM,
    sentences: Sequence[str],
    vocab: Vocabulary,
    *,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    eval_sentences: Sequence[str] | None = None,
    eval_every: int = 250,
    callback: Callable[[int, TinyMLM], None] | None = None,
) -> TrainingHistory:
    """Train ``model`` (θ and W) on ``sentences`` by minimising the mean MLM loss.

    Args:
        model: the model to train, in place; it is left on ``device``, in train mode.
        sentences: the training text, one sentence per item, encoded with ``vocab``.
        vocab: the vocabulary the model predicts over (``len(vocab) == V``).
        steps: the number of optimisation steps (one batch each).
        batch_size: sentences per batch. Each pass over the data visits every sentence once,
            in a random order, batching sentences of similar length together (less padding).
        lr: the peak learning rate of AdamW (linear warm-up, then cosine decay to lr / 10).
        seed: fixes batches, masks and dropout: the same seed gives the same losses on CPU.
        device: where to train; default ``"cuda"`` if available, else ``"cpu"``.
        progress: show a tqdm progress bar with the running loss.
        eval_sentences: held-out sentences; if given, their loss (see :func:`evaluate`) is
            recorded at step 0, every ``eval_every`` steps and at the last step.
        eval_every: steps between two held-out evaluations.
        callback: ``callback(step, model)`` is called at step 0 (before any update) and after
            every update (steps 1 to ``steps``), e.g. to snapshot Pr_i^{W,θ}(·|x̄) of a sentence.

    Returns:
        the :class:`TrainingHistory` (per-step losses, held-out losses, seconds).
    """
    _check_model_and_vocab(model, vocab)
    if steps < 1 or batch_size < 1 or eval_every < 1:
        raise ValueError(
            f"steps, batch_size and eval_every must be positive, got steps={steps}, "
            f"batch_size={batch_size}, eval_every={eval_every}."
        )
    device = torch.device(device or default_device())
    input_ids, attention_mask = _encode(sentences, vocab)
    lengths = attention_mask.sum(dim=1)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps))
    history = TrainingHistory()

    def run_eval(step: int) -> None:
        if eval_sentences is not None:
            loss = evaluate(model, eval_sentences, vocab, seed=seed, device=device)["loss"]
            history.eval_losses.append((step, loss))

    with _cpu_threads(device), tqdm(total=steps, disable=not progress, desc="training") as bar:
        start = time.perf_counter()
        run_eval(0)
        if callback is not None:
            callback(0, model)
        batches = _batches(lengths, batch_size, generator)
        for step in range(1, steps + 1):
            rows = next(batches)
            width = int(lengths[rows].max())
            batch, mask = input_ids[rows, :width], attention_mask[rows, :width]
            corrupted, labels = _mask(batch, vocab, generator)
            while not (labels != IGNORE_INDEX).any():  # A(x) empty: draw new masks
                corrupted, labels = _mask(batch, vocab, generator)
            loss = _selected_loss(model, corrupted.to(device), mask.to(device), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            history.losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{history.losses[-1]:.3f}", refresh=False)
            if step % eval_every == 0 or step == steps:
                run_eval(step)
            if callback is not None:
                callback(step, model)
                model.train()
        history.seconds = time.perf_counter() - start
    model.train()
    return history


def train_from_scratch(
    *,
    steps: int = 1500,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    callback: Callable[[int, TinyMLM], None] | None = None,
) -> tuple[TinyMLM, Vocabulary, TrainingHistory]:
    """The recipe of the shipped checkpoint: a fresh TinyMLM trained on the corpus' train split.

    The vocabulary is the whole shipped corpus' (:meth:`Vocabulary.from_corpus`); the weights
    are initialised with ``torch.manual_seed(seed)``; the held-out split
    (:func:`mlmcourse.corpus.split_corpus`) is evaluated during training into
    ``history.eval_losses``. Returns ``(model, vocab, history)``, the model in eval mode.
    """
    vocab = Vocabulary.from_corpus()
    train_sentences, test_sentences = split_corpus()
    torch.manual_seed(seed)
    model = TinyMLM(len(vocab), dropout=RECIPE_DROPOUT)
    history = train(
        model, train_sentences, vocab, steps=steps, seed=seed, device=device, progress=progress,
        eval_sentences=test_sentences, callback=callback,
    )  # fmt: skip
    return model.eval(), vocab, history


@torch.no_grad()
def evaluate(
    model: TinyMLM,
    sentences: Sequence[str],
    vocab: Vocabulary,
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Held-out MLM loss and accuracy of ``model`` on ``sentences``, with seeded masks.

    Returns ``{"loss": mean -log Pr_i^{W,θ}(x_i|x̄) over selected positions (nats),
    "accuracy": share of selected positions where the most probable token is x_i,
    "n": number of selected positions}``. The model runs in eval mode; its mode is restored.
    """
    _check_model_and_vocab(model, vocab)
    device = torch.device(device or next(model.parameters()).device)
    input_ids, attention_mask = _encode(sentences, vocab)
    generator = torch.Generator().manual_seed(seed)
    total_loss, correct, n = 0.0, 0, 0
    was_training = model.training
    model.eval()
    try:
        with _cpu_threads(device):
            for start in range(0, len(input_ids), batch_size):
                batch = input_ids[start : start + batch_size]
                mask = attention_mask[start : start + batch_size]
                corrupted, labels = _mask(batch, vocab, generator)
                labels = labels.to(device)
                logits = model(corrupted.to(device), mask.to(device))
                total_loss += mlm_loss(logits, labels, reduction="none").sum().item()
                selected = labels != IGNORE_INDEX
                correct += int((logits.argmax(-1)[selected] == labels[selected]).sum())
                n += int(selected.sum())
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError(
            "no position was selected in these sentences, so there is nothing to evaluate; "
            "pass more (or longer) sentences."
        )
    return {"loss": total_loss / n, "accuracy": correct / n, "n": n}


def _selected_loss(
    model: TinyMLM, corrupted: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """``mlm_loss(model(x̄), labels, "mean")``, applying W only at the selected positions A(x).

    Unselected positions never enter the loss, so skipping their logits gives the same value and
    the same gradients, faster.
    """
    selected = labels != IGNORE_INDEX
    hidden = model.encoder(corrupted, attention_mask)[selected]  # (|A(x)|, d_model)
    return mlm_loss(model.output_layer(hidden), labels[selected], reduction="mean")


def _batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Endless batches of row indices: shuffle, sort pools of 16 batches by length, split.

    Sentences of similar length share a batch, so little of each batch is padding.
    """
    pool = 16 * batch_size
    while True:
        order = torch.randperm(len(lengths), generator=generator)
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
            batches = chunk.split(batch_size)
            for i in torch.randperm(len(batches), generator=generator).tolist():
                yield batches[i]


def _mask(
    batch: torch.Tensor, vocab: Vocabulary, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """x -> (x̄, labels) with the course's 15% / 80-10-10 masking."""
    return mask_tokens(
        batch,
        mask_id=vocab.mask_id,
        vocab_size=len(vocab),
        special_ids=vocab.special_ids,
        generator=generator,
    )


def _encode(sentences: Sequence[str], vocab: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(sentences, str) or len(sentences) == 0:
        raise ValueError("sentences must be a non-empty list of str (one sentence per item).")
    input_ids, attention_mask = vocab.encode_batch(sentences)
    has_word = (~torch.isin(input_ids, torch.tensor(vocab.special_ids))).any(dim=1)
    if not has_word.all():
        bad = sentences[int((~has_word).nonzero()[0])]
        raise ValueError(
            f"{int((~has_word).sum())} sentence(s) have no vocabulary word that could be selected, "
            f"e.g. {bad!r}; remove them (special tokens and unknown words are never selected)."
        )
    return input_ids, attention_mask


def _check_model_and_vocab(model: TinyMLM, vocab: Vocabulary) -> None:
    if model.config["vocab_size"] != len(vocab):
        raise ValueError(
            f"the model predicts over {model.config['vocab_size']} tokens but the vocabulary "
            f"has {len(vocab)}; build the model with TinyMLM(len(vocab))."
        )


def _warmup_cosine(steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over 5% of the steps, cosine decay to 0.1."""
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@contextlib.contextmanager
def _cpu_threads(device: torch.device) -> Iterator[None]:
    """Use at most ``MAX_CPU_THREADS`` intra-op threads on CPU, restoring the setting after."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(min(before, MAX_CPU_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(before)
