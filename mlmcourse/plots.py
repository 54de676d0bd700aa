"""Figures of the course: the predicted distribution, the curve of -log p, the masking step,
the loss curve of training, one distribution sharpening during training, and the pipeline
x -> x̄ -> θ -> h_i -> W -> softmax -> Loss that every lesson sits in.

Every function returns a ``matplotlib.figure.Figure``. Without ``ax`` it makes its own figure and
closes it in pyplot straight away, so no figure is left open and a notebook shows the returned
figure exactly once; with ``ax`` it draws there and returns that axes' figure. No function
changes ``rcParams`` or the backend; font sizes are set on each text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from mlmcourse.distribution import TokenLookup, token_name
from mlmcourse.masking import Fate

BAR_COLOUR = "#9db4d0"
"""Colour of the bars of ordinary vocabulary words."""
TRUE_COLOUR = "#d95f02"
"""Colour of the true token x_i, wherever it appears."""
FATE_COLOURS: dict[Fate, str] = {
    Fate.NOT_SELECTED: "#eeeeee",
    Fate.MASKED: "#fdb863",
    Fate.RANDOM: "#b2abd2",
    Fate.UNCHANGED: "#a6dba0",
}
FATE_LABELS: dict[Fate, str] = {
    Fate.NOT_SELECTED: "not selected (label -100)",
    Fate.MASKED: "selected, [MASK]ed",
    Fate.RANDOM: "selected, replaced by a random token",
    Fate.UNCHANGED: "selected, kept unchanged (still scored)",
}
PROBS_TITLE = r"$\Pr_i^{W,\theta}(\cdot \mid \bar{x})$"
TITLE_SIZE, LABEL_SIZE, TICK_SIZE, NOTE_SIZE = 13, 11, 10, 10


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """The figure and axes to draw on: ``ax`` and its figure, or a new closed figure."""
    if ax is not None:
        fig = ax.figure
        while not isinstance(fig, Figure):  # a SubFigure: return the figure that holds it
            fig = fig.figure
        return fig, ax
    fig, new_ax = plt.subplots(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig, new_ax


def _label(ax: Axes, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    ax.set_title(title, fontsize=TITLE_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)


def _vector(values: Any, name: str) -> np.ndarray:
    """``values`` (list, array or tensor) as a finite 1-D float64 array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence (one value per vocabulary word), got "
            f"shape {arr.shape}; plot one position at a time, e.g. probs[i]."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values (nan or inf); nothing to plot.")
    return arr


def _vocab_size(tokens: Sequence[str] | TokenLookup, expected: int, name: str) -> None:
    if hasattr(tokens, "__len__") and len(tokens) != expected:
        raise ValueError(
            f"{name} has {expected} entries but tokens has {len(tokens)}; pass one token per "
            "vocabulary word, in id order."
        )


def _true_id(true_index: Any, size: int) -> int:
    """``true_index`` (an int or a 0-dim integer tensor) as an int checked against ``[0, size)``."""
    index = int(true_index)
    if not 0 <= index < size:
        raise ValueError(
            f"true_index {index} is outside [0, {size}); pass the id of the true token x_i."
        )
    return index


def _neg_log_text(p: float) -> str:
    neg_log = -math.log(p) if p > 0 else math.inf
    # round, then add 0.0: a p that rounding put just above 1 must not print "-0.000"
    return f"p = {p:.3f}\n-log p = {round(neg_log, 3) + 0.0:.3f}"


def _shown_ids(probs: np.ndarray, true_index: int | None, top: int | None) -> list[int]:
    """The ids to draw: all in id order, or the ``top`` most probable (plus the true token)."""
    if top is None:
        return list(range(probs.size))
    if top < 1:
        raise ValueError(f"top must be a positive integer or None, got {top!r}.")
    ids = sorted(range(probs.size), key=lambda j: (-probs[j], j))[:top]
    if true_index is not None and true_index not in ids:
        ids.append(true_index)
    return ids


def plot_distribution(
    probs: Any,
    tokens: Sequence[str] | TokenLookup,
    true_index: int | torch.Tensor | None = None,
    top: int | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Bar chart of Pr_i^{W,θ}(· | x̄), one bar per vocabulary word.

    The true token ``x_i`` (``true_index``) is drawn in :data:`TRUE_COLOUR` and annotated with
    its probability and its loss ``-log p``. ``top`` keeps only the ``top`` most probable words
    (the true token is always kept). The entries are drawn as given, even if they are not a
    valid distribution, so that invalid candidates can be shown too.
    """
    p = _vector(probs, "probs")
    _vocab_size(tokens, p.size, "probs")
    if true_index is not None:
        true_index = _true_id(true_index, p.size)
    ids = _shown_ids(p, true_index, top)
    fig, ax = _axes(ax, (max(4.0, min(14.0, 0.55 * len(ids) + 2)), 3.6))
    heights = p[ids]
    colours = [TRUE_COLOUR if j == true_index else BAR_COLOUR for j in ids]
    positions = np.arange(len(ids))
    ax.bar(positions, heights, color=colours, edgecolor="#333333", linewidth=0.5)
    labels = [token_name(tokens, j) for j in ids]
    rotate = len(ids) > 8 or max(len(t) for t in labels) > 6
    ax.set_xticks(
        positions, labels, rotation=45 if rotate else 0, ha="right" if rotate else "center"
    )
    ax.set_ylim(min(0.0, heights.min() * 1.2), max(heights.max() * 1.35, 0.05))
    if true_index is not None:
        k = ids.index(true_index)
        ax.get_xticklabels()[k].set_color(TRUE_COLOUR)
        # Keep the note inside the figure when the true bar is the first or the last one.
        edge = {0: ("left", -0.4), len(ids) - 1: ("right", 0.4)}
        ha, shift = edge.get(k, ("center", 0.0)) if len(ids) > 1 else ("center", 0.0)
        ax.annotate(
            _neg_log_text(float(p[true_index])),
            xy=(k + shift, max(p[true_index], 0.0)),
            xytext=(0, 6),
            textcoords="offset points",
            ha=ha,
            va="bottom",
            fontsize=NOTE_SIZE,
            color=TRUE_COLOUR,
        )
    default_title = PROBS_TITLE
    if true_index is not None:
        default_title += f"  (true token: {token_name(tokens, true_index)!r})"
    _label(ax, "vocabulary word", "probability", title if title is not None else default_title)
    return fig


def plot_neg_log_curve(highlight: Sequence[float] | None = None, ax: Axes | None = None) -> Figure:
    """The curve of -log p for p in (0, 1]: the loss of one selected position.

    Each probability in ``highlight`` is marked on the curve and annotated with its loss.
    """
    points = [] if highlight is None else [float(q) for q in highlight]
    for q in points:
        if not 0 < q <= 1:
            raise ValueError(
                f"highlighted probability {q} is outside (0, 1]; -log p is defined for p in (0, 1]."
            )
    fig, ax = _axes(ax, (5.5, 3.8))
    p = np.linspace(1e-3, 1.0, 1000)
    ax.plot(p, -np.log(p), color="#1f4e79", linewidth=2, label="-log p")
    if points:
        q = np.array(points)
        ax.scatter(q, -np.log(q), color=TRUE_COLOUR, zorder=3)
        # Labels never overlap: from the largest p (lowest on the curve) to the smallest, each
        # label sits at least one unit above the previous one, linked to its point by a line.
        label_y = -math.inf
        for qi in sorted(set(points), reverse=True):
            label_y = max(-math.log(qi) + 0.9, label_y + 1.0)
            ax.annotate(
                _neg_log_text(qi),
                xy=(qi, -math.log(qi)),
                xytext=(qi + 0.03 if qi < 0.5 else qi - 0.03, label_y),
                textcoords="data",
                ha="left" if qi < 0.5 else "right",
                va="bottom",
                fontsize=NOTE_SIZE,
                color=TRUE_COLOUR,
                arrowprops={"arrowstyle": "-", "color": TRUE_COLOUR, "linewidth": 0.8},
            )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, max(7.0, label_y + 1.0) if points else 7.0)
    ax.grid(alpha=0.3)
    _label(
        ax,
        r"$p = \Pr_i^{W,\theta}(x_i \mid \bar{x})$, the true token's probability",
        "loss -log p (nats)",
        "The loss of one selected position",
    )
    return fig


def plot_masking_fates(
    tokens: Sequence[str],
    fates: Any,
    ax: Axes | None = None,
    corrupted_tokens: Sequence[str] | None = None,
    per_row: int = 16,
) -> Figure:
    """A row of tokens of ``x``, each box coloured by its :class:`~mlmcourse.masking.Fate`.

    ``fates`` is a 1-D sequence (list, array or tensor) of Fate values, one per token. If
    ``corrupted_tokens`` (the tokens of ``x̄``) is given, it is drawn under ``x``. Long
    sequences wrap after ``per_row`` tokens.
    """
    values = [int(f) for f in (fates.tolist() if hasattr(fates, "tolist") else fates)]
    if len(values) != len(tokens):
        raise ValueError(
            f"tokens has {len(tokens)} entries and fates has {len(values)}; pass one fate per "
            "token of one sequence (e.g. fates[0] for the first sequence of a batch)."
        )
    unknown = sorted(set(values) - {int(f) for f in Fate})
    if unknown:
        raise ValueError(f"fates contains {unknown}, which are not Fate values 0 to 3.")
    rows = [list(tokens)] if corrupted_tokens is None else [list(tokens), list(corrupted_tokens)]
    if len(rows[-1]) != len(tokens):
        raise ValueError(
            f"corrupted_tokens has {len(rows[-1])} entries but tokens has {len(tokens)}; "
            "x and x̄ have the same length."
        )
    row_names = [r"$x$", r"$\bar{x}$"][: len(rows)]
    n_lines = max(1, math.ceil(len(tokens) / per_row))
    line_height = len(rows) + 0.6
    width = min(len(tokens), per_row)
    fig, ax = _axes(ax, (max(4.0, 0.9 * width + 1.0), 0.75 * n_lines * line_height + 0.9))
    for k, fate in enumerate(values):
        line, col = divmod(k, per_row)
        for r, row in enumerate(rows):
            y = -(line * line_height + r)
            ax.add_patch(
                Rectangle(
                    (col + 0.05, y - 0.42),
                    0.9,
                    0.84,
                    facecolor=FATE_COLOURS[Fate(fate)],
                    edgecolor="#555555",
                    linewidth=0.8,
                )
            )
            ax.text(col + 0.5, y, row[k], ha="center", va="center", fontsize=NOTE_SIZE)
    for line in range(n_lines):
        for r, name in enumerate(row_names):
            y = -(line * line_height + r)
            ax.text(-0.15, y, name, ha="right", va="center", fontsize=LABEL_SIZE)
    ax.set_xlim(-0.8, width + 0.1)
    ax.set_ylim(-((n_lines - 1) * line_height + len(rows) - 1) - 0.6, 0.6)
    ax.axis("off")
    handles = [
        Patch(facecolor=FATE_COLOURS[f], edgecolor="#555555", label=FATE_LABELS[f]) for f in Fate
    ]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=2,
        fontsize=NOTE_SIZE,
        frameon=False,
    )
    ax.set_title(r"Corruption: the selected positions $A(x)$ and their fates", fontsize=TITLE_SIZE)
    return fig


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_loss_curve(
    history: Sequence[float],
    ax: Axes | None = None,
    smooth: int | None = None,
    eval_history: Sequence[tuple[int, float]] | None = None,
    vocab_size: int | None = None,
) -> Figure:
    """The training loss per step, with an optional held-out loss and the uniform baseline.

    ``history[k]`` is the (mean, per selected token) loss of training step ``k`` (steps count
    from 0); ``eval_history`` is a list of ``(step, loss)``. ``smooth`` is the window of a
    trailing moving average drawn over the raw curve (``None``: about 1/50 of the run;
    ``1``: no smoothing). ``vocab_size`` adds the line ``log V``, the loss of a model that
    spreads its probability uniformly over the vocabulary.
    """
    losses = np.array([float(v) for v in history], dtype=np.float64)
    if losses.size == 0:
        raise ValueError("history is empty: record the loss of at least one training step.")
    window = max(1, losses.size // 50) if smooth is None else smooth
    if window < 1:
        raise ValueError(f"smooth must be a window of at least 1 step, got {smooth!r}.")
    window = min(window, losses.size)
    fig, ax = _axes(ax, (6.5, 3.8))
    steps = np.arange(losses.size)
    if window > 1:
        ax.plot(steps, losses, color="#1f4e79", alpha=0.3, linewidth=1, label="training loss")
        ax.plot(
            steps[window - 1 :],
            _moving_average(losses, window),
            color="#1f4e79",
            linewidth=2,
            label=f"training loss, moving average of {window} steps",
        )
    else:
        ax.plot(steps, losses, color="#1f4e79", linewidth=1.5, label="training loss")
    if eval_history:
        eval_steps, eval_losses = zip(*[(int(s), float(v)) for s, v in eval_history], strict=True)
        ax.plot(eval_steps, eval_losses, "o-", color=TRUE_COLOUR, label="held-out loss")
    if vocab_size is not None:
        baseline = math.log(vocab_size)
        ax.axhline(
            baseline,
            color="#777777",
            linestyle="--",
            label=f"uniform guess: log V = {baseline:.2f}",
        )
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=NOTE_SIZE)
    _label(ax, "training step", "loss (nats per selected position)", "Training loss")
    return fig


def plot_distribution_snapshots(
    snapshots: Sequence[tuple[int, Any]],
    tokens: Sequence[str] | TokenLookup,
    true_index: int | torch.Tensor,
    top: int = 6,
) -> Figure:
    """One selected position's Pr_i^{W,θ}(· | x̄) at several training steps, one bar panel each.

    ``snapshots`` is a list of ``(step, probs)``. Each panel shows the ``top`` tokens most
    probable at that step, most probable first, plus the true token (coloured) if it is not among
    them: bars, since tokens have no order, and each step's own leaders, so the panels show what
    the model favours at each stage. The panels share the probability axis.
    """
    if not snapshots:
        raise ValueError("snapshots is empty: pass a list of (step, probs) pairs.")
    curves = [(int(step), _vector(probs, f"probs at step {step}")) for step, probs in snapshots]
    size = curves[0][1].size
    for step, p in curves:
        _vocab_size(tokens, p.size, f"probs at step {step}")
    true_index = _true_id(true_index, size)
    shown = [_shown_ids(p, true_index, top) for _, p in curves]
    fig, axes = plt.subplots(
        1,
        len(curves),
        figsize=(min(16.0, 2.4 * len(curves) + 1.0), 3.6),
        sharey=True,
        layout="constrained",
        squeeze=False,
    )
    plt.close(fig)
    for ax, (step, p), ids in zip(axes[0], curves, shown, strict=True):
        colours = [TRUE_COLOUR if j == true_index else BAR_COLOUR for j in ids]
        ax.bar(range(len(ids)), p[ids], color=colours, edgecolor="#333333", linewidth=0.5)
        ax.set_xticks(
            range(len(ids)),
            [token_name(tokens, j) for j in ids],
            rotation=60,
            ha="right",
            fontsize=TICK_SIZE,
        )
        ax.get_xticklabels()[ids.index(true_index)].set_color(TRUE_COLOUR)
        ax.set_title(f"step {step}\nPr(true) = {p[true_index]:.3f}", fontsize=LABEL_SIZE)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("probability", fontsize=LABEL_SIZE)
    tallest = max(float(p[ids].max()) for (_, p), ids in zip(curves, shown, strict=True))
    axes[0][0].set_ylim(0, 1.1 * tallest)
    fig.suptitle(
        PROBS_TITLE + f" during training (true token {token_name(tokens, true_index)!r} coloured)",
        fontsize=TITLE_SIZE,
    )
    return fig


PIPELINE_STAGES: tuple[tuple[str, str, str], ...] = (
    ("x", r"$x$", "tokens\n$x_0 \\ldots x_m$"),
    ("x_bar", r"$\bar{x}$", "corrupted at\nthe positions $A(x)$"),
    ("theta", r"$\theta$", "encoder"),
    ("h", r"$h_i$", "one vector\nper position"),
    ("W", r"$W$", "output layer:\nlogits $z_i$"),
    ("softmax", "softmax", r"$\Pr_i^{W,\theta}(\cdot \mid \bar{x})$"),
    ("loss", "Loss", r"$-\sum_{i \in A(x)} \log \Pr_i$"),
)
"""The stages of the course's pipeline, in order: (name for ``highlight``, box text, caption)."""


def plot_pipeline(highlight: Sequence[str] = (), ax: Axes | None = None) -> Figure:
    """The whole pipeline in one row: x -> x̄ -> θ -> h_i -> W -> softmax -> Loss.

    Each stage of :data:`PIPELINE_STAGES` is a box with its symbol, an arrow to the next, and a
    caption below. ``highlight`` names the stages a lesson is about (e.g. ``["x_bar"]`` in
    lesson 2, ``["softmax"]`` in lesson 3); they are filled with the colour of the true token.
    """
    names = [name for name, _, _ in PIPELINE_STAGES]
    if isinstance(highlight, str):
        highlight = [highlight]
    unknown = [h for h in highlight if h not in names]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; highlight some of {names}.")
    fig, ax = _axes(ax, (9.0, 2.0))
    width, gap, height = 1.0, 0.45, 0.8
    for k, (name, symbol, caption) in enumerate(PIPELINE_STAGES):
        left = k * (width + gap)
        colour = TRUE_COLOUR if name in highlight else BAR_COLOUR
        ax.add_patch(Rectangle((left, 0.0), width, height, facecolor=colour, edgecolor="#333333",
                               linewidth=1.0, gid=f"stage-{name}"))
        ax.text(left + width / 2, height / 2, symbol, ha="center", va="center",
                fontsize=LABEL_SIZE + 1)
        ax.text(left + width / 2, -0.12, caption, ha="center", va="top", fontsize=NOTE_SIZE - 2)
        if k + 1 < len(PIPELINE_STAGES):
            ax.annotate("", xy=(left + width + gap - 0.04, height / 2),
                        xytext=(left + width + 0.04, height / 2),
                        arrowprops=dict(arrowstyle="->", color="#333333", lw=1.2))
    ax.set_xlim(-0.1, len(PIPELINE_STAGES) * (width + gap) - gap + 0.1)
    ax.set_ylim(-0.75, height + 0.1)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig
