"""The MLM objective: Loss = -Σ_{i∈A(x)} log Pr_i^{W,θ}(x_i | x̄), in nats, minimised.

For one selected position, the cross-entropy between the one-hot ``p_i^gold`` and the predicted
distribution is ``-log Pr_i^{W,θ}(x_i | x̄)``: only the true token's probability matters.
:func:`mlm_loss` sums this over every selected position (labels ``!= -100``); ``reduction="mean"``
divides by the number of selected positions (of the whole batch), which is what PyTorch's
``cross_entropy(..., ignore_index=-100)`` reports. Maximising the summed log-likelihood
(:func:`log_likelihood`) is the same objective with the opposite sign.
"""

from __future__ import annotations

from typing import Literal

import torch

from mlmcourse.masking import IGNORE_INDEX

Reduction = Literal["sum", "mean", "none"]
_REDUCTIONS = ("sum", "mean", "none")


class NoSelectedPositionsError(ValueError):
    """Raised when no label differs from the ignore index, so ``A(x)`` is empty."""


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_targets(target: torch.Tensor, vocab_size: int, what: str) -> None:
    bad = (target < 0) | (target >= vocab_size)
    if bad.any():
        value = int(target[bad].flatten()[0])
        hint = (
            " -100 is the ignore label: keep only selected positions, e.g. probs[labels != -100]."
            if value == IGNORE_INDEX
            else ""
        )
        raise ValueError(
            f"{what} contains {value}, outside [0, V={vocab_size}); it must be the id of a "
            f"vocabulary word.{hint}"
        )


def true_token_probability(probs: torch.Tensor, target: int | torch.Tensor) -> torch.Tensor:
    """Pr_i^{W,θ}(x_i | x̄): the probability the distribution gives to the true token.

    ``probs`` of shape (V,) with an int ``target`` gives a 0-dim tensor; ``probs`` of shape
    (..., V) with an integer tensor ``target`` of shape (...) gives a tensor of shape (...).
    """
    probs = torch.as_tensor(probs)
    if probs.ndim == 0:
        raise ValueError("probs must have a last axis over the vocabulary, got a 0-dim tensor.")
    target = torch.as_tensor(target, device=probs.device)
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer token ids, got dtype {target.dtype}.")
    if _shape(target) != _shape(probs)[:-1]:
        raise ValueError(
            f"probs has shape {_shape(probs)} and target has shape {_shape(target)}; target "
            f"must have shape probs.shape[:-1] = {_shape(probs)[:-1]}: one true token per "
            "distribution."
        )
    _check_targets(target, probs.shape[-1], "target")
    return probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)


def token_cross_entropy(probs: torch.Tensor, target: int | torch.Tensor) -> torch.Tensor:
    """-log Pr_i^{W,θ}(x_i | x̄) in nats, the cross-entropy H(p_i^gold, Pr_i^{W,θ}(· | x̄)).

    Same shapes as :func:`true_token_probability`. A probability of 0 gives ``inf``.
    """
    return -torch.log(true_token_probability(probs, target))


def mlm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    reduction: Reduction = "mean",
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """The MLM loss from the output layer's logits and the labels of the masking step.

    Args:
        logits: shape (B, T, V) or (N, V), one logit per vocabulary word at each position.
        labels: shape (B, T) or (N,): the true id ``x_i`` at ``i ∈ A(x)``, ``ignore_index``
            elsewhere (unselected positions and padding never enter the loss).
        reduction: ``"sum"``, the textbook ``-Σ_{i∈A(x)} log Pr_i^{W,θ}(x_i | x̄)``;
            ``"mean"``, that sum divided by the number of selected positions of the batch,
            ``Σ_x |A(x)|``;
            ``"none"``, the per-position losses with 0 at ignored positions.
        ignore_index: the label of positions outside ``A(x)``.

    ``log Pr`` comes from ``log_softmax`` (never ``log(softmax)``), so logits like ±1e4 stay
    finite.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"unknown reduction {reduction!r}; use 'sum' (the textbook objective), 'mean' "
            "(sum divided by the number of selected positions) or 'none' (per position)."
        )
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point tensor of shape (B, T, V) or (N, V).")
    if (
        not isinstance(labels, torch.Tensor)
        or labels.is_floating_point()
        or (labels.dtype == torch.bool)
    ):
        raise TypeError("labels must be an integer tensor of token ids and -100, e.g. torch.long.")
    if logits.ndim not in (2, 3) or _shape(labels) != _shape(logits)[:-1]:
        raise ValueError(
            f"logits has shape {_shape(logits)} and labels has shape {_shape(labels)}; "
            "logits must be (B, T, V) or (N, V) and labels must match logits.shape[:-1] "
            "(one label per position)."
        )
    in_loss = labels != ignore_index
    vocab_size = logits.shape[-1]
    bad = in_loss & ((labels < 0) | (labels >= vocab_size))
    if bad.any():
        raise ValueError(
            f"labels contain {int(labels[bad][0])}, outside [0, V={vocab_size}) and not "
            f"ignore_index={ignore_index}; a label is the true token's id or {ignore_index}."
        )
    if reduction != "none" and not in_loss.any():
        raise NoSelectedPositionsError(
            f"every label is {ignore_index}, so no position was selected and the loss has no term; "
            "check the masking step (mlm_probability, special_ids, sequence lengths)."
        )
    log_probs = torch.log_softmax(logits, dim=-1)
    safe_labels = torch.where(in_loss, labels, 0).long()
    nll = -log_probs.gather(-1, safe_labels.unsqueeze(-1)).squeeze(-1)
    per_position = torch.where(in_loss, nll, torch.zeros_like(nll))
    if reduction == "none":
        return per_position
    total = per_position.sum()
    if reduction == "sum":
        return total
    return total / in_loss.sum()


def log_likelihood(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Σ_{i∈A(x)} log Pr_i^{W,θ}(x_i | x̄) = -mlm_loss(..., reduction="sum").

    Maximising it and minimising the loss are the same objective.
    """
    return -mlm_loss(logits, labels, reduction="sum", ignore_index=ignore_index)
