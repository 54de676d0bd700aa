"""Corrupting the input: from the original sequence x to the corrupted input x̄ and the labels.

Each position of ``x`` is selected independently with probability ``mlm_probability``; the
selected positions form ``A(x)``. Special tokens ([PAD], [CLS], [SEP], [MASK], [UNK]) are never
selected. Of the selected positions, a share ``mask_prob`` becomes ``[MASK]``, a share
``random_prob`` becomes a uniformly random non-special token, and the rest keep their token.
The labels hold the true token ``x_i`` at every ``i ∈ A(x)`` and ``IGNORE_INDEX`` (-100)
everywhere else, so that only the positions of ``A(x)`` enter the loss.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

import torch

IGNORE_INDEX = -100
"""The label of every position outside ``A(x)``; PyTorch's ``cross_entropy`` skips it."""

_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class Fate(IntEnum):
    """What the masking step did to one position of ``x``."""

    NOT_SELECTED = 0
    """Outside ``A(x)``: the token is kept and the label is -100 (never enters the loss)."""
    MASKED = 1
    """In ``A(x)``, replaced by ``[MASK]``."""
    RANDOM = 2
    """In ``A(x)``, replaced by a uniformly random non-special token."""
    UNCHANGED = 3
    """In ``A(x)``, kept as it was (it still enters the loss)."""


def selected_positions(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Return the boolean mask of ``A(x)``: ``True`` where the label is not ``ignore_index``."""
    return labels != ignore_index


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int] = (),
    mlm_probability: float = 0.15,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``x`` into ``x̄`` and build the labels of the MLM objective.

    Args:
        input_ids: the original token ids ``x``, an integer tensor of any shape (usually (B, T)).
            It is not modified.
        mask_id: the id of ``[MASK]``. It is always treated as special.
        vocab_size: the number of words ``V``; every id must lie in ``[0, V)``.
        special_ids: ids that are never selected nor drawn as random replacements
            (pass the ids of [PAD], [CLS], [SEP], [MASK], [UNK]).
        mlm_probability: the probability that a position is selected into ``A(x)``.
        mask_prob: the share of selected positions replaced by ``[MASK]``.
        random_prob: the share of selected positions replaced by a random non-special token.
            The remaining ``1 - mask_prob - random_prob`` are left unchanged.
        generator: a seeded ``torch.Generator`` for reproducible masking (same seed, same result).

    Returns:
        ``(corrupted_ids, labels)``: ``x̄`` with the same shape and dtype as ``input_ids``, and
        int64 labels holding ``x_i`` for ``i ∈ A(x)`` and ``IGNORE_INDEX`` elsewhere.
    """
    corrupted_ids, labels, _ = mask_tokens_with_fates(
        input_ids,
        mask_id=mask_id,
        vocab_size=vocab_size,
        special_ids=special_ids,
        mlm_probability=mlm_probability,
        mask_prob=mask_prob,
        random_prob=random_prob,
        generator=generator,
    )
    return corrupted_ids, labels


def mask_tokens_with_fates(
    input_ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int] = (),
    mlm_probability: float = 0.15,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Like :func:`mask_tokens`, and also return what happened to each position.

    Returns:
        ``(corrupted_ids, labels, fates)`` where ``fates`` is an int64 tensor of :class:`Fate`
        values with the shape of ``input_ids``.
    """
    specials = _validate(
        input_ids, mask_id, vocab_size, special_ids, mlm_probability, mask_prob, random_prob
    )
    device = input_ids.device
    special_tensor = torch.tensor(sorted(specials), dtype=torch.long, device=device)
    ids = input_ids.long()
    replacements = _allowed_replacements(vocab_size, special_tensor)

    # Three draws of the full shape, in a fixed order, so a seed fixes the whole result.
    select_draw = torch.rand(ids.shape, generator=generator, device=device)
    fate_draw = torch.rand(ids.shape, generator=generator, device=device)
    replacement_draw = torch.randint(
        len(replacements), ids.shape, generator=generator, device=device
    )

    selected = (select_draw < mlm_probability) & ~torch.isin(ids, special_tensor)
    masked = selected & (fate_draw < mask_prob)
    randomised = selected & ~masked & (fate_draw < mask_prob + random_prob)
    unchanged = selected & ~masked & ~randomised

    corrupted = ids.clone()
    corrupted[masked] = mask_id
    corrupted[randomised] = replacements[replacement_draw[randomised]]

    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[selected] = ids[selected]

    fates = torch.full_like(ids, int(Fate.NOT_SELECTED))
    fates[masked] = int(Fate.MASKED)
    fates[randomised] = int(Fate.RANDOM)
    fates[unchanged] = int(Fate.UNCHANGED)
    return corrupted.to(input_ids.dtype), labels, fates


def _allowed_replacements(vocab_size: int, special_tensor: torch.Tensor) -> torch.Tensor:
    """The non-special ids of ``[0, V)``, the pool random replacements are drawn from."""
    all_ids = torch.arange(vocab_size, device=special_tensor.device)
    return all_ids[~torch.isin(all_ids, special_tensor)]


def _validate(
    input_ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int],
    mlm_probability: float,
    mask_prob: float,
    random_prob: float,
) -> set[int]:
    """Check the arguments of the masking step; return the set of special ids (with ``mask_id``)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in _INTEGER_DTYPES:
        got = input_ids.dtype if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise TypeError(
            f"input_ids must be an integer tensor of token ids, got {got}; "
            "convert it with torch.as_tensor(ids, dtype=torch.long)."
        )
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}.")
    for name, value in (
        ("mlm_probability", mlm_probability),
        ("mask_prob", mask_prob),
        ("random_prob", random_prob),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
    if mask_prob + random_prob > 1.0 + 1e-12:  # tolerate float rounding, e.g. 0.7 + 0.3
        raise ValueError(
            f"mask_prob + random_prob must be at most 1 (they are shares of the selected "
            f"positions), got {mask_prob} + {random_prob} = {mask_prob + random_prob}."
        )
    if vocab_size - 1 > torch.iinfo(input_ids.dtype).max:
        raise ValueError(
            f"input_ids has dtype {input_ids.dtype}, which cannot hold every id of a vocabulary "
            f"of {vocab_size} words; convert it with input_ids.long()."
        )
    specials = {int(i) for i in special_ids} | {int(mask_id)}
    outside = sorted(i for i in specials if not 0 <= i < vocab_size)
    if outside:
        raise ValueError(
            f"mask_id and special_ids must be ids in [0, vocab_size={vocab_size}), "
            f"got {outside}; pass the ids of the vocabulary the model predicts over."
        )
    if len(specials) >= vocab_size:
        raise ValueError(
            f"every id of the vocabulary (vocab_size={vocab_size}) is special, so there is no "
            "word to draw as a random replacement; the vocabulary needs at least one "
            "non-special id."
        )
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab_size):
        bad = input_ids[(input_ids < 0) | (input_ids >= vocab_size)][0]
        raise ValueError(
            f"input_ids contains id {int(bad)}, outside [0, vocab_size={vocab_size}); "
            "encode the text with the same vocabulary whose size you pass."
        )
    return specials
