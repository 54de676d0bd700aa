"""SoftmaxExplorer: drag the logits and the temperature, watch Pr_i^{W,θ}(· | x̄) and the loss.

The browser computes ``softmax(z / T)`` and ``-log Pr_i(x_i | x̄)`` itself (no kernel needed in
the static book); this class mirrors the same values in the ``probs`` and ``loss`` traits with
:func:`mlmcourse.distribution.softmax` and :func:`mlmcourse.loss.token_cross_entropy`, so a kernel
user (and the tests) can read them.
"""

from __future__ import annotations

import anywidget
import torch
import traitlets

from mlmcourse.distribution import softmax
from mlmcourse.loss import token_cross_entropy
from mlmcourse.widgets._assets import CSS, esm


def _check(tokens: list[str], logits: list[float], true_index: int, temperature: float) -> None:
    if len(tokens) == 0:
        raise ValueError("tokens is empty; give at least two vocabulary words to compare.")
    if len(tokens) != len(logits):
        raise ValueError(
            f"got {len(tokens)} tokens but {len(logits)} logits; give one logit per token."
        )
    if not 0 <= true_index < len(tokens):
        raise ValueError(
            f"true_index={true_index} is outside [0, {len(tokens)}); it must index the true "
            "token x_i in tokens."
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}; 1.0 leaves z unchanged.")


class SoftmaxExplorer(anywidget.AnyWidget):
    """One slider per logit ``z_j`` and one for the temperature ``T``.

    Shows ``Pr_i(· | x̄) = softmax(z / T)`` as bars, the true token's probability
    ``Pr_i(x_i | x̄)`` and the loss ``-log Pr_i(x_i | x̄)`` in nats.
    Display it as the last expression of a cell.
    """

    _esm = esm("softmax_explorer.js")
    _css = CSS

    tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    logits = traitlets.List(traitlets.Float()).tag(sync=True)
    temperature = traitlets.Float(1.0).tag(sync=True)
    true_index = traitlets.Int(0).tag(sync=True)
    probs = traitlets.List(traitlets.Float()).tag(sync=True)
    """Pr_i(· | x̄), one entry per token (output, recomputed whenever an input changes)."""
    loss = traitlets.Float(0.0).tag(sync=True)
    """-log Pr_i(x_i | x̄) in nats (output)."""

    def __init__(
        self,
        tokens: list[str],
        logits: list[float],
        true_index: int,
        temperature: float = 1.0,
        **kwargs: object,
    ) -> None:
        _check(list(tokens), list(logits), true_index, temperature)
        super().__init__(
            tokens=list(tokens),
            logits=[float(z) for z in logits],
            true_index=true_index,
            temperature=float(temperature),
            **kwargs,
        )
        self._recompute()

    @traitlets.observe("tokens", "logits", "temperature", "true_index")
    def _on_input(self, _change: dict) -> None:
        self._recompute()

    def _recompute(self) -> None:
        _check(self.tokens, self.logits, self.true_index, self.temperature)
        logits = torch.tensor(self.logits, dtype=torch.float64)
        probs = softmax(logits, temperature=self.temperature)
        self.probs = probs.tolist()
        self.loss = float(token_cross_entropy(probs, self.true_index))
