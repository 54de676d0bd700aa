"""The named misconceptions a wrong answer or a common coding mistake maps to.

Test cells of the exercises raise :class:`Misconception` with a catalogue id; the grader reads
``exc.code`` (or, in plain nbgrader, the ``[code]`` prefix of the message) to count which
misconceptions a class holds. Feedback sentences explain the mistake without giving the answer.
The helpers :func:`require_choice`, :func:`diagnose_choice`, :func:`require_number`,
:func:`diagnose_number`, :func:`as_real` and :func:`require_tensor` keep the answer checks of the
test cells short, uniform and fair: numbers are accepted in any real type (Python, a fraction or
a decimal, NumPy, 0-dim tensor), tensors are checked for type, exact shape and dtype before
their values are compared.
"""

from __future__ import annotations

import decimal
import math
import numbers
from collections.abc import Collection, Mapping

# id -> feedback sentence
CATALOGUE: dict[str, str] = {
    # --- the loss: sign, base, what it measures -------------------------------------------
    "dropped-minus-sign": (
        "The loss is the negative log-probability of the true token: without the minus sign it is "
        "never positive and minimising it would push the true token's probability down."
    ),
    "log-base-10": (
        "The course measures the loss in nats, with the natural logarithm; a base-10 logarithm "
        "rescales every value by the same factor."
    ),
    "log-base-2": (
        "That value is in bits (base-2 logarithm); the course's loss is in nats, with the "
        "natural logarithm. The base changes the scale, not which prediction is best."
    ),
    "probability-not-log": (
        "The loss is a negative log-probability, not a probability: take the logarithm of the "
        "probability the model gives to the true token."
    ),
    "loss-is-missing-mass": (
        "The loss is not the probability mass put on wrong words; it is computed from the "
        "logarithm of the true token's probability."
    ),
    "skips-softmax": (
        "A logit is not a probability: turn the logits into a distribution over the vocabulary "
        "before taking the logarithm of the true token's entry."
    ),
    "log-of-softmax-underflow": (
        "Taking the log of a softmax fails for large logits: tiny probabilities round to 0 and "
        "log(0) is -inf. Compute the log-probabilities directly (subtract the maximum, or use a "
        "log-sum-exp)."
    ),
    "cross-entropy-arguments-swapped": (
        "Cross-entropy is not symmetric: the logarithm is taken of the model's prediction, and "
        "the gold one-hot distribution only weights the terms."
    ),
    "zero-weight-terms": (
        "A word with p_gold(w) = 0 contributes nothing to the cross-entropy; computing 0 · log 0 "
        "gives NaN, so leave those terms out instead of multiplying them by 0."
    ),
    "uses-top-prediction": (
        "The loss reads the probability of the true token x_i, whichever word the model ranks "
        "first, not the probability of the model's favourite word."
    ),
    # --- the predicted distribution ----------------------------------------------------------
    "softmax-overflow": (
        "exp of a large logit overflows to inf and the distribution becomes NaN; softmax does "
        "not change when the same constant is subtracted from every logit."
    ),
    "normalise-without-exp": (
        "Dividing the logits by their sum does not give a distribution: logits can be negative. "
        "Exponentiate first, then normalise."
    ),
    "normalise-wrong-axis": (
        "The distribution at a position is over the vocabulary (the last axis of the logits); "
        "normalising or reducing over another axis mixes different positions or sequences."
    ),
    "checks-total-sum": (
        "Each position has its own distribution: every row must sum to 1 on its own, not the "
        "whole tensor together."
    ),
    "negative-probability": (
        "A probability can never be negative: an output with a negative entry is not a valid "
        "distribution, even when the entries sum to 1."
    ),
    "sum-above-one": (
        "The probabilities of one distribution must add up to exactly 1; a total above 1 claims "
        "more certainty than exists."
    ),
    "missing-vocabulary-word": (
        "The predicted distribution covers the entire vocabulary: a word that is left out has "
        "no probability at all, so the output cannot be the model's distribution."
    ),
    "distribution-over-positions": (
        "At a selected position the model spreads probability over the vocabulary (which word "
        "goes here), not over the positions of the sentence."
    ),
    "exact-float-equality": (
        "Floating-point sums are rarely exactly 1: compare the total to 1 within a small tolerance."
    ),
    "temperature-multiplied": (
        "The temperature divides the logits: a temperature above 1 must shrink the gaps between "
        "them and flatten the distribution, not widen them."
    ),
    "global-max-shift": (
        "Subtracting one maximum taken over the whole tensor is not enough: each position needs "
        "its own maximum, or a position whose logits are far below it gets exp() = 0 everywhere "
        "and 0 / 0."
    ),
    "zero-probability-invalid": (
        "An entry of exactly 0 is allowed in a distribution (a one-hot is one): only negative "
        "entries, a wrong size or a total different from 1 make it invalid."
    ),
    "temperature-direction": (
        "Check the direction of the effect: think about what dividing every logit by a "
        "number above 1 does to the gaps between them, and softmax to those gaps."
    ),
    "temperature-changes-argmax": (
        "Dividing every logit by the same positive temperature keeps their order, so the "
        "most likely word stays the same."
    ),
    "temperature-no-effect": (
        "Adding a constant to every logit leaves softmax unchanged, but dividing them by a "
        "temperature does change the distribution."
    ),
    # --- calling conventions ------------------------------------------------------------------
    "modifies-input": (
        "The function changed an argument in place: the caller's tensor or dict still holds the "
        "data it passed in and may use it again. Work on a copy (.clone(), a new dict) and "
        "return the result."
    ),
    # --- the masking step --------------------------------------------------------------------
    "selects-special-tokens": (
        "[CLS], [SEP] and the other special tokens are never selected into A(x): they are "
        "not words of the text to predict."
    ),
    "counting-padding": (
        "Padding is not part of the text: a [PAD] position is never selected, never counted "
        "and never enters the loss."
    ),
    "always-mask-token": (
        "Not every selected position becomes [MASK]: some get a random word and some keep "
        "their token, so the model cannot rely on seeing [MASK] where it must predict."
    ),
    "labels-only-on-mask": (
        "Selected positions that keep their token or get a random one are still in A(x): they "
        "need a label and enter the loss."
    ),
    "random-positions-unlabelled": (
        "A position that received a random word was selected: it is in A(x), so its label is "
        "the original token and it enters the loss."
    ),
    "unchanged-positions-unlabelled": (
        "About one selected position in ten keeps its token, and it is still in A(x): it needs "
        "its label like the [MASK]ed ones, although the input looks untouched there."
    ),
    "random-special-token": (
        "A random replacement is drawn from the ordinary words only: [PAD], [CLS], [SEP], [MASK] "
        "or [UNK] in the middle of a sentence is not a plausible corruption."
    ),
    "labels-on-all-positions": (
        "Positions outside A(x) must carry the ignore label -100; otherwise unselected positions, "
        "which the model can simply copy, enter the loss."
    ),
    "labels-from-corrupted-input": (
        "The labels are the original tokens x_i, not the corrupted input: a label of [MASK] "
        "or of a random word teaches the model the wrong target."
    ),
    "selection-rate": (
        "The share of selected positions is off: each non-special position enters A(x) "
        "independently with probability mlm_probability, before deciding how it is replaced."
    ),
    "ignores-seed": (
        "The same seed must give the same corruption: draw the random numbers from a "
        "torch.Generator seeded with the given seed."
    ),
    "unchanged-positions-skipped": (
        "Selected positions that keep their token still enter the loss; leaving them unchanged "
        "is about what the model sees, not about saving work."
    ),
    "copying-is-the-goal": (
        "Copying the input never helps at a [MASK] position, and the loss is only computed at "
        "selected positions: think about what the model can see at test time."
    ),
    "eighty-percent-of-all-tokens": (
        "The 80/10/10 split applies to the selected positions only, not to every token of the text."
    ),
    # --- many masks, one objective ------------------------------------------------------------
    "averaging-over-all-positions": (
        "The average is over the selected positions A(x) only: dividing by every position "
        "(unselected and padding included) makes the value depend on sequence length."
    ),
    "sum-mean-swapped": (
        "reduction='sum' adds the per-token losses over A(x); reduction='mean' divides that "
        "sum by the number of selected positions. Check which one was asked for."
    ),
    "off-by-one-from-cls": (
        "Position i of the logits predicts position i of the labels; [CLS] at position 0 "
        "does not shift anything."
    ),
    "single-token-objective": (
        "The MLM objective is not built from one chosen token: every selected position of every "
        "sequence contributes its own term."
    ),
    "unmasked-positions-in-loss": (
        "Only the positions in A(x) enter the loss; unselected tokens are visible to the model "
        "and are not predicted."
    ),
    "mean-over-sequences": (
        "PyTorch's mean reduction with ignore_index averages over selected positions, not over "
        "sequences."
    ),
    "mean-of-sequence-means": (
        "The mean divides the batch's summed loss by the number of selected positions of the whole "
        "batch (Σ_x |A(x)|); averaging each sequence's own mean weights the positions of short "
        "selections more."
    ),
    "divides-by-batch-size": (
        "The mean reduction divides by the number of selected positions, not by the number of "
        "sequences: a batch of 4 sequences usually has many more than 4 terms."
    ),
    # --- which prediction is better ----------------------------------------------------------
    "confident-means-low-loss": (
        "A confident prediction only lowers the loss when it is confident about the true "
        "word; confidence in a wrong word raises it."
    ),
    "spread-changes-loss": (
        "The loss at one position reads a single entry of the predicted distribution: "
        "ask which one, and whether sharing the rest of the mass differently changes it."
    ),
    "margin-not-probability": (
        "The loss does not look at the gap between the true word and the runner-up, only at "
        "the probability the true word receives."
    ),
    "top-prediction-zero-loss": (
        "Being the most likely word is not enough for zero loss: the loss is zero only when "
        "the true word gets all of the probability."
    ),
    # --- training ------------------------------------------------------------------------------
    "gradient-ascent": (
        "The loss is minimised: a step along the gradient increases it. Move the parameters "
        "against the gradient."
    ),
    "learning-rate-ignored": ("The size of an update is the gradient scaled by the learning rate."),
    "argmax-wrong-axis": (
        "The predicted word at a position is the argmax over the vocabulary axis of the "
        "logits, not over positions or sequences."
    ),
    "untrained-model": (
        "The handed-in parameters predict no better than at initialisation: check that the "
        "optimiser steps, and that trained_state is taken after training."
    ),
    "target-loss-not-reached": (
        "The model learned something but its held-out loss is still above the target: train "
        "for more steps or with a better learning rate."
    ),
    "state-dict-mismatch": (
        "trained_state must be model.state_dict() of a TinyMLM built with the notebook's "
        "settings, so that the grader can load it into the same architecture."
    ),
    "pretrained-weights-handed-in": (
        "trained_state must come from your own training run of a freshly built TinyMLM, not from "
        "the pretrained checkpoint shipped with the course."
    ),
    "non-finite-parameters": (
        "The handed-in parameters hold NaN or inf: training diverged (too large a learning rate?) "
        "or the state was corrupted, so the model cannot predict anything."
    ),
    "loss-history-not-recorded": (
        "loss_history must hold the training loss of every step of the run that produced "
        "trained_state: one finite float per step, starting near log V and going down."
    ),
    "only-one-part-trained": (
        "Follow the gradient of the loss backwards from the logits: which trainable "
        "parameters does it pass through on its way to the input?"
    ),
    "loss-only-measures": (
        "The loss is not only a score: its gradient is what the optimiser uses to change the "
        "parameters."
    ),
}


class Misconception(AssertionError):
    """A test failure caused by a named misconception; ``str(exc)`` is ``"[code] sentence"``."""

    def __init__(self, code: str, detail: str = "") -> None:
        if code not in CATALOGUE:
            raise KeyError(f"unknown misconception {code!r}; add it to CATALOGUE")
        self.code = code
        message = f"[{code}] {CATALOGUE[code]}"
        super().__init__(f"{message} {detail}".strip())


def require_choice(answer: object, options: Collection[str], name: str) -> None:
    """Fail with a readable message unless ``answer`` is exactly one of the option strings."""
    if type(answer) is not str or answer not in options:
        listed = ", ".join(repr(o) for o in sorted(options))
        raise AssertionError(f"Set {name} to one of {listed} (a string), got {answer!r}.")


def diagnose_choice(answer: str, correct: str, wrong: Mapping[str, str], name: str) -> None:
    """Raise the misconception of a wrong option, or a plain failure; pass on ``correct``."""
    if answer == correct:
        return
    if answer in wrong:
        raise Misconception(wrong[answer])
    raise AssertionError(f"{name} is not right.")


def as_real(value: object, name: str, finite: bool = True) -> float:
    """``value`` as a ``float``; fail with a readable message unless it is a real number.

    Accepted: every :class:`numbers.Real` (``int``, ``float``, ``fractions.Fraction``, NumPy's
    integer and floating scalars such as ``np.float64`` or ``np.int64``), ``decimal.Decimal``,
    and 0-dim NumPy arrays or torch tensors of an integer or floating dtype. Rejected: ``bool``,
    strings, sequences, tensors with more than one element and, with ``finite`` (the default),
    NaN and infinities.
    """
    number = _real_or_none(value)
    if number is None:
        raise AssertionError(
            f"{name} must be a real number (an int, a float, a fraction, a NumPy number or a "
            f"0-dim tensor), got {_describe(value)}."
        )
    if finite and not math.isfinite(number):
        raise AssertionError(f"{name} must be finite, got {number!r}.")
    return number


def _real_or_none(value: object) -> float | None:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return None
    if isinstance(value, numbers.Real | decimal.Decimal):
        try:
            return float(value)
        except (ArithmeticError, ValueError):  # a signalling NaN, a Fraction beyond float
            return None
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or tuple(shape) != () or dtype is None:
        return None
    kind = str(dtype).removeprefix("torch.")
    if not kind.startswith(("float", "int", "uint", "bfloat")):
        return None
    item = getattr(value, "item", None)
    return float(item()) if callable(item) else None


def _describe(value: object) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        dtype = getattr(value, "dtype", "?")
        return f"a {type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    return f"{text[:60]}..." if len(text) > 60 else text


def require_number(answer: object, name: str) -> None:
    """A readable failure unless the answer of a numeric question is a finite real number (see
    :func:`as_real`). Returns ``None``: a test cell may end with this call, as nbgrader reads a
    number a test cell ends with as partial credit."""
    if _real_or_none(answer) is None:
        raise AssertionError(
            f"Set {name} to a number (an int, a float, a fraction, a NumPy number or a 0-dim "
            f"tensor), got {_describe(answer)}."
        )
    as_real(answer, name)


def require_tensor(
    value: object,
    name: str,
    shape: tuple[int, ...],
    kind: str = "float",
    finite: bool = True,
):
    """Fail with a readable message unless ``value`` is a torch tensor of exactly ``shape``
    (compared before any value: ``torch.allclose`` would broadcast) and of the ``kind`` asked:
    ``"float"`` (float32 or float64) or ``"int"`` (an integer dtype, not bool). With
    ``finite``, NaN and infinities fail too. Returns the tensor."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{name} must be a torch.Tensor, got {_describe(value)}.")
    if tuple(value.shape) != tuple(shape):
        raise AssertionError(f"{name} must have shape {tuple(shape)}, got {tuple(value.shape)}.")
    if kind == "float" and value.dtype not in (torch.float32, torch.float64):
        raise AssertionError(f"{name} must be a float32 or float64 tensor, got {value.dtype}.")
    if kind == "int" and (
        value.is_floating_point() or value.is_complex() or value.dtype == torch.bool
    ):
        raise AssertionError(f"{name} must hold integer ids, got {value.dtype}.")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise AssertionError(f"{name} holds NaN or infinite values.")
    return value


def diagnose_number(
    answer: float,
    correct: float,
    wrong: Mapping[str, float],
    name: str,
    rel_tol: float = 1e-2,
    abs_tol: float = 1e-9,
) -> None:
    """Pass when ``answer`` is within ``rel_tol`` (relative) or ``abs_tol`` (absolute) of
    ``correct``; else raise the misconception whose typical wrong value is within the same
    tolerance of it, or a plain failure. ``answer`` may be any real number :func:`as_real` takes."""
    answer = as_real(answer, name)
    if math.isclose(answer, correct, rel_tol=rel_tol, abs_tol=abs_tol):
        return
    for code, value in wrong.items():
        if math.isclose(answer, value, rel_tol=rel_tol, abs_tol=abs_tol):
            raise Misconception(code)
    raise AssertionError(f"{name} is not right.")
