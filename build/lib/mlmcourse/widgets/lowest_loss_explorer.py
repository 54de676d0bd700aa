"""LowestLossExplorer: which of several outputs Pr_i^{W,θ}(· | x̄) gives the lowest loss?

Each candidate is a distribution over the same tokens for one masked position ``i``; its loss is
``-log Pr_i(x_i | x̄)`` (nats), which depends on the true token's share alone. The browser shows
the losses after the reader picks one; this class mirrors them in ``losses`` with
:func:`mlmcourse.loss.token_cross_entropy`.
"""

from __future__ import annotations

import anywidget
import torch
import traitlets

from mlmcourse.distribution import check_distribution
from mlmcourse.loss import token_cross_entropy
from mlmcourse.widgets._assets import CSS, esm


class LowestLossExplorer(anywidget.AnyWidget):
    """Candidate distributions for one masked word; pick one, see its loss and the lowest.

    Display it as the last expression of a cell.
    """

    _esm = esm("lowest_loss_explorer.js")
    _css = CSS

    tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    candidates = traitlets.Dict().tag(sync=True)
    true_index = traitlets.Int(0).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    """The candidate the reader picked ("" before a pick)."""
    losses = traitlets.Dict().tag(sync=True)
    """Candidate name -> -log Pr_i(x_i | x̄) in nats (output)."""
    lowest = traitlets.Unicode("").tag(sync=True)
    """The name of the candidate with the lowest loss (output)."""

    def __init__(
        self,
        tokens: list[str],
        candidates: dict[str, list[float]],
        true_index: int,
        **kwargs: object,
    ) -> None:
        super().__init__(
            tokens=list(tokens),
            candidates={name: [float(v) for v in p] for name, p in candidates.items()},
            true_index=true_index,
            **kwargs,
        )
        self._recompute()

    @traitlets.observe("tokens", "candidates", "true_index")
    def _on_input(self, _change: dict) -> None:
        self._recompute()

    @traitlets.validate("selected")
    def _valid_selected(self, proposal: dict) -> str:
        name = proposal["value"]
        if name and name not in self.candidates:
            raise traitlets.TraitError(
                f"selected={name!r} is not a candidate; choose one of {sorted(self.candidates)}."
            )
        return name

    def _recompute(self) -> None:
        if not self.candidates:
            raise ValueError("candidates is empty; give at least two named distributions.")
        if not 0 <= self.true_index < len(self.tokens):
            raise ValueError(
                f"true_index={self.true_index} is outside [0, {len(self.tokens)}); it must index "
                "the true token x_i in tokens."
            )
        losses = {}
        for name, p in self.candidates.items():
            check_distribution(p, vocab_size=len(self.tokens))
            probs = torch.tensor(p, dtype=torch.float64)
            losses[name] = float(token_cross_entropy(probs, self.true_index))
        self.losses = losses
        self.lowest = min(losses, key=losses.__getitem__)
