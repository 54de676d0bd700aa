"""The course's figures: what each draws, and that none leaks pyplot or rcParams state."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mlmcourse.distribution import softmax
from mlmcourse.masking import Fate
from mlmcourse.plots import (
    BAR_COLOUR,
    FATE_COLOURS,
    PIPELINE_STAGES,
    TRUE_COLOUR,
    plot_distribution,
    plot_distribution_snapshots,
    plot_loss_curve,
    plot_masking_fates,
    plot_neg_log_curve,
    plot_pipeline,
)

TOKENS = ["[PAD]", "the", "cat", "sat", "on", "mat"]
PROBS = softmax(torch.tensor([0.0, 1.0, 2.5, 0.3, 0.1, 1.2]))


@pytest.fixture(autouse=True)
def _no_leaks():
    """Every plot leaves no open pyplot figure and no changed rcParams behind."""
    figures, params = plt.get_fignums(), dict(matplotlib.rcParams)
    yield
    assert plt.get_fignums() == figures
    assert dict(matplotlib.rcParams) == params


def _texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_distribution_bars_and_highlight() -> None:
    fig = plot_distribution(PROBS, TOKENS, true_index=torch.tensor(2))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == len(TOKENS)
    np.testing.assert_allclose([b.get_height() for b in bars], PROBS.numpy(), rtol=1e-6)
    colours = [to_hex(b.get_facecolor()) for b in bars]
    assert colours[2] == TRUE_COLOUR and colours.count(BAR_COLOUR) == len(TOKENS) - 1
    p = float(PROBS[2])
    assert f"-log p = {-math.log(p):.3f}" in _texts(fig)
    assert f"p = {p:.3f}" in _texts(fig)
    assert [t.get_text() for t in ax.get_xticklabels()] == TOKENS
    assert "'cat'" in ax.get_title()


def test_distribution_without_the_loss_shows_the_probability_only() -> None:
    """Lessons 1 and 3 come before the loss is taught: their charts print p, not -log p."""
    fig = plot_distribution(PROBS, TOKENS, true_index=2, show_loss=False)
    assert _texts(fig) == f"p = {float(PROBS[2]):.3f}"


def test_distribution_top_keeps_the_true_token() -> None:
    fig = plot_distribution(PROBS, TOKENS, true_index=0, top=2, title="three bars")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "mat", "[PAD]"]
    assert to_hex(ax.patches[2].get_facecolor()) == TRUE_COLOUR
    assert ax.get_title() == "three bars"


def test_distribution_on_a_given_axes_and_without_true_token() -> None:
    fig, axes = plt.subplots(1, 2)
    plt.close(fig)
    returned = plot_distribution([0.5, -0.1, 0.6], ["a", "b", "c"], ax=axes[1])
    assert returned is fig
    assert len(axes[1].patches) == 3 and not axes[0].patches
    assert {to_hex(b.get_facecolor()) for b in axes[1].patches} == {BAR_COLOUR}
    assert axes[1].get_ylim()[0] < -0.1, "an invalid (negative) entry is still drawn"


def test_distribution_of_a_one_hot_target() -> None:
    fig = plot_distribution([0.0, 1.0, 0.0], ["a", "b", "c"], true_index=1)
    assert "-log p = 0.000" in _texts(fig) and "-0.000" not in _texts(fig)


def test_distribution_errors() -> None:
    with pytest.raises(ValueError, match="probs has 6 entries but tokens has 2"):
        plot_distribution(PROBS, ["a", "b"])
    with pytest.raises(ValueError, match=r"true_index 6 is outside \[0, 6\)"):
        plot_distribution(PROBS, TOKENS, true_index=6)
    with pytest.raises(ValueError, match=r"must be a non-empty 1-D .* e.g. probs\[i\]"):
        plot_distribution(torch.ones(2, 3) / 3, TOKENS)


def test_neg_log_curve_with_highlights() -> None:
    fig = plot_neg_log_curve([0.6, 0.95])
    ax = fig.axes[0]
    (line,) = ax.lines
    x, y = line.get_data()
    np.testing.assert_allclose(y, -np.log(x))
    assert x.min() > 0 and x.max() == 1.0
    (points,) = ax.collections
    np.testing.assert_allclose(
        points.get_offsets(), [[0.6, -math.log(0.6)], [0.95, -math.log(0.95)]]
    )
    assert "-log p = 0.511" in _texts(fig) and "-log p = 0.051" in _texts(fig)
    assert not plot_neg_log_curve().axes[0].collections


def test_neg_log_curve_rejects_impossible_probabilities() -> None:
    with pytest.raises(ValueError, match=r"highlighted probability 0.0 is outside \(0, 1\]"):
        plot_neg_log_curve([0.0])


def test_masking_fates_boxes_and_legend() -> None:
    tokens = ["[CLS]", "the", "cat", "sat", "on", "[SEP]"]
    fates = torch.tensor([0, 1, 0, 2, 3, 0])
    fig = plot_masking_fates(tokens, fates)
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == len(tokens)
    assert [to_hex(b.get_facecolor()) for b in boxes] == [
        FATE_COLOURS[Fate(f)] for f in fates.tolist()
    ]
    assert [t.get_text() for t in ax.texts if t.get_text() in tokens] == tokens
    assert len(ax.get_legend().get_texts()) == len(Fate)


def test_masking_fates_with_corrupted_row_and_wrapping() -> None:
    tokens = [f"w{i}" for i in range(10)]
    corrupted = ["[MASK]" if i % 3 == 0 else t for i, t in enumerate(tokens)]
    fates = [1 if i % 3 == 0 else 0 for i in range(10)]
    fig = plot_masking_fates(tokens, fates, corrupted_tokens=corrupted, per_row=4)
    ax = fig.axes[0]
    assert len(ax.patches) == 20
    assert sum(t.get_text() == "[MASK]" for t in ax.texts) == 4
    row_labels = [t.get_text() for t in ax.texts if t.get_text().startswith("$")]
    assert row_labels == [r"$x$", r"$\bar{x}$"] * 3, "three wrapped lines, each with x and x̄"


def test_masking_fates_errors() -> None:
    with pytest.raises(ValueError, match="tokens has 2 entries and fates has 3.*fates\\[0\\]"):
        plot_masking_fates(["a", "b"], [0, 1, 0])
    with pytest.raises(ValueError, match=r"fates contains \[7\]"):
        plot_masking_fates(["a", "b"], [0, 7])
    with pytest.raises(ValueError, match="corrupted_tokens has 1 entries but tokens has 2"):
        plot_masking_fates(["a", "b"], [0, 1], corrupted_tokens=["a"])


def test_loss_curve_raw_smoothed_eval_and_baseline() -> None:
    history = [3.0 - 0.01 * k + 0.1 * math.sin(k) for k in range(200)]
    fig = plot_loss_curve(history, smooth=10, eval_history=[(0, 3.1), (100, 2.2)], vocab_size=20)
    ax = fig.axes[0]
    raw, smoothed, held_out, baseline = ax.lines
    np.testing.assert_allclose(raw.get_ydata(), history)
    assert smoothed.get_xdata()[0] == 9
    assert smoothed.get_ydata()[-1] == pytest.approx(np.mean(history[-10:]))
    assert list(held_out.get_xdata()) == [0, 100]
    assert baseline.get_ydata()[0] == pytest.approx(math.log(20))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "uniform guess: log V = 3.00" in labels
    assert len(labels) == 4


def test_loss_curve_short_runs_are_not_smoothed() -> None:
    fig = plot_loss_curve([torch.tensor(2.0), torch.tensor(1.5), 1.2])
    (line,) = fig.axes[0].lines
    assert list(line.get_ydata()) == [2.0, 1.5, 1.2]
    assert len(plot_loss_curve([1.0] * 500).axes[0].lines) == 2, "a long run is smoothed"


def test_loss_curve_errors() -> None:
    with pytest.raises(ValueError, match="history is empty"):
        plot_loss_curve([])
    with pytest.raises(ValueError, match="smooth must be a window of at least 1 step"):
        plot_loss_curve([1.0, 2.0], smooth=0)


def test_distribution_snapshots_one_bar_panel_per_step() -> None:
    snapshots = [
        (step, softmax(torch.tensor([0.0, 0.5, step / 50, 0.2, 0.1, 0.3])))
        for step in (0, 100, 300)
    ]
    fig = plot_distribution_snapshots(snapshots, TOKENS, true_index=2, top=3)
    assert len(fig.axes) == len(snapshots)
    for ax, (step, p) in zip(fig.axes, snapshots, strict=True):
        assert ax.get_title() == f"step {step}\nPr(true) = {float(p[2]):.3f}"
        assert not ax.lines, "bars, not lines: the tokens have no order"
        heights = [bar.get_height() for bar in ax.patches]
        names = [t.get_text() for t in ax.get_xticklabels()]
        expected = sorted(range(6), key=lambda j: -float(p[j]))[:3]
        if 2 not in expected:
            expected.append(2)
        assert names == [TOKENS[j] for j in expected]
        assert heights == pytest.approx([float(p[j]) for j in expected])
        assert ax.get_xticklabels()[names.index("cat")].get_color() == TRUE_COLOUR
    assert fig.axes[-1].patches[0].get_height() > fig.axes[0].patches[-1].get_height()


def test_distribution_snapshots_errors() -> None:
    with pytest.raises(ValueError, match="snapshots is empty"):
        plot_distribution_snapshots([], TOKENS, 0)
    with pytest.raises(ValueError, match="probs at step 5 has 3 entries but tokens has 6"):
        plot_distribution_snapshots([(5, [0.2, 0.3, 0.5])], TOKENS, 0)


def test_certain_true_token_is_annotated_with_zero_loss_not_negative_zero() -> None:
    from mlmcourse.plots import _neg_log_text

    assert _neg_log_text(1.0000001).endswith("-log p = 0.000")
    assert _neg_log_text(0.5).endswith(f"-log p = {math.log(2):.3f}")


def _stage_boxes(fig: Figure) -> dict[str, Rectangle]:
    ax = fig.axes[0]
    return {p.get_gid()[len("stage-"):]: p for p in ax.patches
            if isinstance(p, Rectangle) and (p.get_gid() or "").startswith("stage-")}


def test_pipeline_draws_every_stage_in_order_with_arrows() -> None:
    fig = plot_pipeline()
    boxes = _stage_boxes(fig)
    assert list(boxes) == [name for name, _, _ in PIPELINE_STAGES]
    lefts = [box.get_x() for box in boxes.values()]
    assert lefts == sorted(lefts) and len(set(lefts)) == len(lefts)  # one row, left to right
    texts = [t.get_text() for t in fig.axes[0].texts]
    for _, symbol, caption in PIPELINE_STAGES:
        assert symbol in texts and caption in texts
    arrows = [t for t in fig.axes[0].texts if getattr(t, "arrow_patch", None) is not None]
    assert len(arrows) == len(PIPELINE_STAGES) - 1
    assert all(to_hex(b.get_facecolor()) == BAR_COLOUR for b in boxes.values())


def test_pipeline_highlights_the_named_stages_only() -> None:
    fig = plot_pipeline(highlight=["x_bar", "loss"])
    colours = {name: to_hex(box.get_facecolor()) for name, box in _stage_boxes(fig).items()}
    assert {n for n, c in colours.items() if c == TRUE_COLOUR} == {"x_bar", "loss"}
    one = plot_pipeline(highlight="theta")  # one name as a str
    assert [n for n, b in _stage_boxes(one).items()
            if to_hex(b.get_facecolor()) == TRUE_COLOUR] == ["theta"]


def test_pipeline_on_a_given_axes_and_errors() -> None:
    fig, ax = plt.subplots()
    try:
        assert plot_pipeline(ax=ax) is fig
        assert len(_stage_boxes(fig)) == len(PIPELINE_STAGES)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="unknown stage"):
        plot_pipeline(highlight=["encoder"])
