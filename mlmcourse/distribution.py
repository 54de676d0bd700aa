"""The predicted distribution Pr_i^{W,θ}(· | x̄) over the whole vocabulary, and its properties.

At each position ``i`` the output layer ``W`` turns the encoder's output into one logit per
vocabulary word; :func:`softmax` turns the logits into a distribution. A valid distribution has
one entry per vocabulary word, every entry finite and ``>= 0``, and the entries sum to 1.
The true token ``x_i`` as a distribution is the one-hot ``p_i^gold`` (:func:`one_hot`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


class InvalidDistributionError(ValueError):
    """Raised by :func:`check_distribution`; the message names the first problem found."""


@runtime_checkable
class TokenLookup(Protocol):
    """Any vocabulary object that can name the token of an id."""

    def id_to_token(self, i: int) -> str: ...


def softmax(logits: Any, dim: int = -1, temperature: float = 1.0) -> torch.Tensor:
    """Turn logits into probabilities along ``dim``: ``exp(z_j / T) / Σ_k exp(z_k / T)``.

    The maximum logit is subtracted before exponentiating, which changes nothing mathematically
    and keeps huge logits (e.g. 1e4) from overflowing. A temperature ``T`` below 1 sharpens the
    distribution, above 1 flattens it. Lists and NumPy arrays are accepted; a tensor is returned
    (integer logits become floating point).
    """
    if not (isinstance(temperature, Real) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature!r}; "
            "use 1.0 for the model's own distribution."
        )
    z = torch.as_tensor(logits)
    if not torch.is_floating_point(z):
        z = z.to(torch.get_default_dtype())
    if not -z.ndim <= dim < z.ndim:
        raise ValueError(
            f"dim={dim} does not exist for logits of shape {tuple(z.shape)}; use dim=-1, the "
            "vocabulary axis."
        )
    if z.shape[dim] == 0:
        raise ValueError(
            f"softmax needs at least one logit along dim={dim}, got shape {tuple(z.shape)}."
        )
    z = z / temperature
    shifted = z - z.amax(dim=dim, keepdim=True)
    exp = shifted.exp()
    return exp / exp.sum(dim=dim, keepdim=True)


def _as_float_array(p: Any) -> np.ndarray | None:
    """``p`` as a float64 NumPy array, or ``None`` when it cannot be read as numbers."""
    if isinstance(p, torch.Tensor):
        return p.detach().cpu().to(torch.float64).numpy()
    try:
        return np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _first_problem(p: Any, vocab_size: int | None, atol: float) -> str | None:
    """Describe the first reason ``p`` is not a valid distribution, or return ``None``."""
    arr = _as_float_array(p)
    if arr is None:
        return (
            f"the distribution could not be read as numbers ({type(p).__name__}); "
            "pass a list, NumPy array or tensor of probabilities."
        )
    if arr.size == 0:
        return "the distribution is empty: it needs one probability per vocabulary word."
    if arr.ndim != 1:
        return (
            f"the distribution must be 1-D (one probability per vocabulary word), got shape "
            f"{arr.shape}; check one position at a time, e.g. probs[i]."
        )
    non_finite = np.flatnonzero(~np.isfinite(arr))
    if non_finite.size:
        i = int(non_finite[0])
        return (
            f"the entry at index {i} is {arr[i]}, not a finite number; probabilities must be "
            "finite (compute them with a stable softmax)."
        )
    negative = np.flatnonzero(arr < 0)
    if negative.size:
        i = int(negative[0])
        return f"the entry at index {i} is negative ({arr[i]:.6g}); every probability must be >= 0."
    if vocab_size is not None and arr.size != vocab_size:
        return (
            f"wrong number of entries: got {arr.size}, expected vocab_size={vocab_size}: "
            "a distribution needs one probability per vocabulary word."
        )
    total = float(arr.sum())
    if abs(total - 1.0) > atol:
        return (
            f"the entries sum to {total:.6g}, not 1 (atol={atol:g}); normalise over the "
            "vocabulary axis, e.g. softmax(logits, dim=-1)."
        )
    return None


def is_valid_distribution(p: Any, atol: float = 1e-6) -> bool:
    """Return whether ``p`` (a 1-D list, array or tensor) is a probability distribution.

    ``True`` exactly when :func:`check_distribution` would not raise: non-empty, 1-D, every
    entry finite and ``>= 0``, and the entries sum to 1 within ``atol``.
    """
    return _first_problem(p, None, atol) is None


def check_distribution(p: Any, vocab_size: int | None = None, atol: float = 1e-6) -> None:
    """Raise :class:`InvalidDistributionError` naming the first problem of ``p``, if any.

    Checked in order: empty, not 1-D, a non-finite entry, a negative entry, a number of entries
    other than ``vocab_size`` (when given), a sum other than 1 within ``atol``.
    """
    problem = _first_problem(p, vocab_size, atol)
    if problem is not None:
        raise InvalidDistributionError(problem)


def _checked_array(p: Any) -> np.ndarray:
    check_distribution(p)
    return _as_float_array(p)


def entropy(p: Any) -> float:
    """The entropy ``-Σ_j p_j log p_j`` of a distribution, in nats (with ``0 · log 0 = 0``)."""
    arr = _checked_array(p)
    nonzero = arr[arr > 0]
    return float(-(nonzero * np.log(nonzero)).sum())


def entropy_bits(p: Any) -> float:
    """The entropy in bits (``log2``): the same quantity as :func:`entropy` on another scale."""
    return entropy(p) / math.log(2)


def token_name(vocab: Sequence[str] | TokenLookup, i: int) -> str:
    """The token of id ``i`` in ``vocab``: a list of tokens or an object with ``id_to_token``."""
    if isinstance(vocab, TokenLookup):
        return vocab.id_to_token(i)
    return vocab[i]


def top_k(p: Any, vocab: Sequence[str] | TokenLookup, k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable tokens of ``p`` as ``(token, probability)``, most probable first.

    Ties are broken by the smaller id. If ``k`` exceeds the vocabulary size, every token is
    returned. ``vocab`` is a list of tokens or any object with ``id_to_token(i)``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    vocab_size = len(vocab) if hasattr(vocab, "__len__") else None
    check_distribution(p, vocab_size=vocab_size)
    arr = _as_float_array(p)
    order = sorted(range(arr.size), key=lambda j: (-arr[j], j))[:k]
    return [(token_name(vocab, j), float(arr[j])) for j in order]


def one_hot(index: int | torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The one-hot distribution ``p_i^gold`` of the true token: 1 at ``index``, 0 elsewhere.

    ``index`` is an int (result of shape (V,)) or an integer tensor of shape (...)
    (result of shape (..., V)). The result has the default floating dtype.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}.")
    idx = torch.as_tensor(index)
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise TypeError(f"index must be an integer token id, got {index!r}.")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= vocab_size):
        bad = idx[(idx < 0) | (idx >= vocab_size)].flatten()[0]
        raise ValueError(
            f"index {int(bad)} is outside [0, vocab_size={vocab_size}); "
            "a one-hot target needs a token id of the vocabulary (labels of -100 are not "
            "targets: keep the selected positions first)."
        )
    return torch.nn.functional.one_hot(idx.long(), vocab_size).to(torch.get_default_dtype())
