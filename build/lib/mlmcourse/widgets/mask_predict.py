"""MaskPredictExplorer: mask words of a sentence and read the pretrained model's predictions.

Unlike the other explorers this one runs the model, so it needs a live kernel (plain
ipywidgets). In the static book it shows its initial state and a note saying how to get a kernel.
For every masked position ``i`` it shows the top-k of ``Pr_i^{W,θ}(· | x̄)``, the true word's
probability ``Pr_i^{W,θ}(x_i | x̄)`` and its loss ``-log Pr_i^{W,θ}(x_i | x̄)`` (nats).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass

import ipywidgets as widgets

from mlmcourse.distribution import top_k
from mlmcourse.vocab import MASK, tokenize

STATIC_NOTE = (
    "This explorer runs the model, so it needs a live kernel: use the launch button (the rocket "
    "at the top of the page) or open the notebook in Jupyter, then click words to mask them."
)


@dataclass(frozen=True)
class Prediction:
    """What the model says at one masked position ``i`` of ``x̄`` (``i`` counts ``[CLS]`` as 0)."""

    position: int
    word: str
    true_probability: float
    loss: float
    top: list[tuple[str, float]]


class MaskPredictExplorer(widgets.VBox):
    """One toggle button per word; the pressed ones are replaced by ``[MASK]`` in ``x̄``.

    ``model`` and ``vocab`` default to :func:`mlmcourse.model.load_pretrained`. ``masked`` gives
    the word indices (0 = first word) masked at the start. Display it as the last expression
    of a cell.
    """

    def __init__(
        self,
        sentence: str,
        model: object = None,
        vocab: object = None,
        k: int = 5,
        *,
        masked: Iterable[int] = (),
    ) -> None:
        if model is None or vocab is None:
            from mlmcourse.model import load_pretrained

            model, vocab = load_pretrained()
        self.model, self.vocab, self.k = model, vocab, k
        self.words = tokenize(sentence)
        if not self.words:
            raise ValueError("sentence has no words; give one such as 'the cat sat on the mat .'")
        start = set(masked)
        self.toggles = [
            widgets.ToggleButton(
                value=j in start,
                description=word,
                tooltip=f"mask or unmask word {j + 1}, {word!r}",
                layout=widgets.Layout(width="auto"),
            )
            for j, word in enumerate(self.words)
        ]
        for toggle in self.toggles:
            toggle.observe(self._on_toggle, names="value")
        self.output = widgets.HTML()
        note = widgets.HTML(f'<p class="mlm-static-note"><em>{html.escape(STATIC_NOTE)}</em></p>')
        super().__init__([widgets.HBox(self.toggles), self.output, note])
        self.add_class("mlm-mask-predict")
        self.predictions: list[Prediction] = []
        self._update()

    @property
    def masked(self) -> list[int]:
        """Indices of the masked words (0 = first word after ``[CLS]``)."""
        return [j for j, t in enumerate(self.toggles) if t.value]

    def corrupted_text(self) -> str:
        """``x̄`` as text: the masked words replaced by ``[MASK]``."""
        masked = set(self.masked)
        return " ".join(MASK if j in masked else w for j, w in enumerate(self.words))

    def _on_toggle(self, _change: dict) -> None:
        self._update()

    def _predict(self, ids: list[int], j: int) -> Prediction:
        from mlmcourse.model import predicted_distribution

        position = j + 1  # x_0 is [CLS]
        probs = predicted_distribution(self.model, ids, position)
        word = self.words[j]
        true_id = self.vocab.encode(word, add_special_tokens=False)[0]
        p = float(probs[true_id])
        return Prediction(
            position=position,
            word=word,
            true_probability=p,
            loss=-math.log(p) if p > 0 else math.inf,
            top=top_k(probs, self.vocab, self.k),
        )

    def _update(self) -> None:
        ids = self.vocab.encode(self.corrupted_text())
        self.predictions = [self._predict(ids, j) for j in self.masked]
        self.output.value = _render(self.corrupted_text(), self.predictions)


def _render(corrupted: str, predictions: list[Prediction]) -> str:
    head = f"<p>x̄ = <code>{html.escape(corrupted)}</code></p>"
    if not predictions:
        return head + "<p>Click a word to mask it and see what the model predicts there.</p>"
    rows = []
    for pred in predictions:
        top = ", ".join(
            f"<b>{html.escape(t)}</b> {p:.3f}" if t == pred.word else f"{html.escape(t)} {p:.3f}"
            for t, p in pred.top
        )
        rows.append(
            f"<tr><td>{pred.position}</td><td>{html.escape(pred.word)}</td>"
            f"<td>{pred.true_probability:.3f}</td><td>{pred.loss:.3f}</td><td>{top}</td></tr>"
        )
    total = sum(pred.loss for pred in predictions)
    return (
        head
        + '<table class="mlm-predictions"><tr><th>i</th><th>true word x<sub>i</sub></th>'
        + "<th>Pr<sub>i</sub>(x<sub>i</sub> | x̄)</th>"
        + "<th>−log Pr<sub>i</sub>(x<sub>i</sub> | x̄)</th>"
        + f"<th>top-{len(predictions[0].top)}</th></tr>"
        + "".join(rows)
        + f"</table><p>Loss, summed over the masked positions: <b>{total:.3f}</b> nats.</p>"
    )
