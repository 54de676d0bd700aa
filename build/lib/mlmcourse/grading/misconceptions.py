"""The named misconceptions a wrong answer or a common coding mistake maps to.

Test cells of the exercises raise :class:`Misconception` with a catalogue id; the grader reads
``exc.code`` (or, in plain nbgrader, the ``[code]`` prefix of the message) to count which
misconceptions a class holds. Feedback sentences explain the mistake without giving the answer.
The helpers :func:`require_choice`, :func:`diagnose_choice`, :func:`require_number` and
:func:`diagnose_number` keep the answer checks of the test cells short and uniform.
"""

from __future__ import annotations

import math
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
        "At a masked position the model spreads probability over the vocabulary (which word "
        "goes here), not over the positions of the sentence."
    ),
    "exact-float-equality": (
        "Floating-point sums are rarely exactly 1: compare the total to 1 within a small tolerance."
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
    # --- the masking step --------------------------------------------------------------------
    "selects-special-tokens": (
        "[CLS], [SEP] and the other special tokens are never selected for masking: they are "
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
    "labels-on-all-positions": (
        "Positions outside A(x) must carry the ignore label -100; otherwise unmasked positions, "
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
        "The average is over the masked positions A(x) only: dividing by every position "
        "(unmasked and padding included) makes the value depend on sequence length."
    ),
    "sum-mean-swapped": (
        "reduction='sum' adds the per-token losses over A(x); reduction='mean' divides that "
        "sum by the number of masked positions. Check which one was asked for."
    ),
    "off-by-one-from-cls": (
        "Position i of the logits predicts position i of the labels; [CLS] at position 0 "
        "does not shift anything."
    ),
    "single-token-objective": (
        "The MLM objective is not built from one chosen token: every masked position of every "
        "sequence contributes its own term."
    ),
    "unmasked-positions-in-loss": (
        "Only the positions in A(x) enter the loss; unmasked tokens are visible to the model "
        "and are not predicted."
    ),
    "mean-over-sequences": (
        "PyTorch's mean reduction with ignore_index averages over masked tokens, not over "
        "sequences."
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


def require_number(answer: object, name: str) -> None:
    """Fail with a readable message unless ``answer`` is a finite ``int`` or ``float``."""
    if type(answer) not in (int, float) or not math.isfinite(answer):
        raise AssertionError(f"Set {name} to a number (an int or a float), got {answer!r}.")


def diagnose_number(
    answer: float,
    correct: float,
    wrong: Mapping[str, float],
    name: str,
    rel_tol: float = 1e-2,
) -> None:
    """Pass when ``answer`` is within ``rel_tol`` of ``correct``; else raise the misconception
    whose typical wrong value is closest to it (within ``rel_tol``), or a plain failure."""
    if math.isclose(answer, correct, rel_tol=rel_tol, abs_tol=1e-9):
        return
    for code, value in wrong.items():
        if math.isclose(answer, value, rel_tol=rel_tol, abs_tol=1e-9):
            raise Misconception(code)
    raise AssertionError(f"{name} is not right.")
