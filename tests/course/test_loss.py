"""The MLM loss, checked against PyTorch's own cross-entropy and negative log-likelihood."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmcourse.distribution import one_hot
from mlmcourse.loss import (
    NoSelectedPositionsError,
    log_likelihood,
    mlm_loss,
    token_cross_entropy,
    true_token_probability,
)
from mlmcourse.masking import IGNORE_INDEX, mask_tokens

V = 11


def _logits_and_labels(batch: int = 3, length: int = 7, seed: int = 0, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, V, generator=g, dtype=torch.float64) * scale
    labels = torch.randint(0, V, (batch, length), generator=g)
    labels[torch.rand(batch, length, generator=g) < 0.6] = IGNORE_INDEX
    labels[0, 0] = 4  # at least one selected position
    return logits, labels


def _torch_ce(logits, labels, reduction):
    return F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), reduction=reduction)


# one position


def test_true_token_probability_single_and_batched() -> None:
    probs = torch.tensor([0.1, 0.6, 0.3])
    p = true_token_probability(probs, 1)
    assert p.ndim == 0 and float(p) == pytest.approx(0.6)
    batch = torch.softmax(torch.randn(2, 4, V), -1)
    targets = torch.randint(0, V, (2, 4))
    expected = torch.stack([batch[b, t, targets[b, t]] for b in range(2) for t in range(4)])
    assert torch.equal(true_token_probability(batch, targets), expected.reshape(2, 4))


def test_token_cross_entropy_matches_nll_loss_and_one_hot_cross_entropy() -> None:
    probs = torch.softmax(torch.randn(6, V, dtype=torch.float64), -1)
    targets = torch.randint(0, V, (6,))
    ours = token_cross_entropy(probs, targets)
    torch.testing.assert_close(ours, F.nll_loss(probs.log(), targets, reduction="none"))
    gold = one_hot(targets, V).double()
    torch.testing.assert_close(ours, -(gold * probs.log()).sum(-1))
    assert float(token_cross_entropy(torch.tensor([0.6, 0.3, 0.1]), 0)) == pytest.approx(
        -math.log(0.6)
    )


def test_only_the_true_tokens_share_matters() -> None:
    peaked = torch.tensor([0.6, 0.38, 0.01, 0.01])
    spread = torch.tensor([0.6, 0.1333, 0.1333, 0.1334])
    assert float(token_cross_entropy(peaked, 0)) == pytest.approx(
        float(token_cross_entropy(spread, 0))
    )


def test_zero_probability_gives_infinite_loss() -> None:
    assert math.isinf(float(token_cross_entropy(torch.tensor([0.0, 1.0]), 0)))


def test_true_token_probability_errors() -> None:
    probs = torch.softmax(torch.randn(2, 3, V), -1)
    with pytest.raises(
        ValueError,
        match=r"probs has shape \(2, 3, 11\) and target has shape \(2,\); target must have "
        r"shape probs.shape\[:-1\] = \(2, 3\)",
    ):
        true_token_probability(probs, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"contains -100.*probs\[labels != -100\]"):
        true_token_probability(probs, torch.full((2, 3), IGNORE_INDEX))
    with pytest.raises(ValueError, match=r"target contains 11, outside \[0, V=11\)"):
        true_token_probability(probs[0, 0], 11)
    with pytest.raises(TypeError, match="target must hold integer token ids"):
        true_token_probability(probs[0, 0], 1.0)


# the batched objective


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mlm_loss_matches_pytorch_cross_entropy(dtype) -> None:
    logits, labels = _logits_and_labels()
    logits = logits.to(dtype)
    count = int((labels != IGNORE_INDEX).sum())
    mean = mlm_loss(logits, labels)
    total = mlm_loss(logits, labels, reduction="sum")
    torch.testing.assert_close(mean, _torch_ce(logits, labels, "mean"))
    torch.testing.assert_close(total, _torch_ce(logits, labels, "sum"))
    torch.testing.assert_close(total, mean * count)
    none = mlm_loss(logits, labels, reduction="none")
    assert none.shape == labels.shape
    torch.testing.assert_close(none, _torch_ce(logits, labels, "none").reshape(labels.shape))
    assert (none[labels == IGNORE_INDEX] == 0).all()


def test_sum_is_the_textbook_objective() -> None:
    logits, labels = _logits_and_labels(seed=5)
    probs = torch.softmax(logits, -1)
    textbook = -sum(
        math.log(float(probs[b, t, labels[b, t]]))
        for b in range(labels.shape[0])
        for t in range(labels.shape[1])
        if labels[b, t] != IGNORE_INDEX
    )
    assert float(mlm_loss(logits, labels, reduction="sum")) == pytest.approx(textbook)
    assert float(log_likelihood(logits, labels)) == pytest.approx(-textbook)


def test_flat_shapes_and_custom_ignore_index() -> None:
    logits, labels = _logits_and_labels(seed=2)
    flat_logits, flat_labels = logits.reshape(-1, V), labels.reshape(-1)
    torch.testing.assert_close(mlm_loss(flat_logits, flat_labels), mlm_loss(logits, labels))
    relabelled = torch.where(labels == IGNORE_INDEX, -1, labels)
    torch.testing.assert_close(
        mlm_loss(logits, relabelled, ignore_index=-1), mlm_loss(logits, labels)
    )


def test_unselected_positions_never_enter_the_loss() -> None:
    logits, labels = _logits_and_labels(seed=3)
    changed = logits.clone()
    changed[labels == IGNORE_INDEX] = torch.randn_like(changed[labels == IGNORE_INDEX]) * 50
    for reduction in ("sum", "mean"):
        torch.testing.assert_close(
            mlm_loss(logits, labels, reduction), mlm_loss(changed, labels, reduction)
        )


def test_stable_for_extreme_logits() -> None:
    logits, labels = _logits_and_labels(seed=4, scale=1e4)
    logits = logits.float()
    naive = -torch.log(torch.softmax(logits, -1)).gather(-1, labels.clamp(min=0)[..., None])
    assert not torch.isfinite(naive).all(), "the test needs logits where log(softmax) overflows"
    for reduction in ("sum", "mean", "none"):
        ours = mlm_loss(logits, labels, reduction)
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours, _torch_ce(logits, labels, reduction).reshape(ours.shape))


def test_gradients_match_pytorch() -> None:
    logits, labels = _logits_and_labels(seed=6)
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().requires_grad_(True)
    mlm_loss(ours, labels).backward()
    _torch_ce(theirs, labels, "mean").backward()
    torch.testing.assert_close(ours.grad, theirs.grad)


def test_labels_from_the_masking_step() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (8, 20), generator=g)
    corrupted, labels = mask_tokens(
        ids, mask_id=4, vocab_size=V, special_ids=range(5), mlm_probability=0.3, generator=g
    )
    logits = torch.randn(8, 20, V, generator=g)
    torch.testing.assert_close(mlm_loss(logits, labels), _torch_ce(logits, labels, "mean"))
    assert int((labels != IGNORE_INDEX).sum()) > 0 and not torch.equal(corrupted, ids)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 4),
    length=st.integers(1, 9),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([0.1, 1.0, 30.0, 1e3]),
)
def test_parity_with_cross_entropy_for_any_batch(batch, length, seed, scale) -> None:
    logits, labels = _logits_and_labels(batch, length, seed, scale)
    for reduction in ("sum", "mean", "none"):
        ours = mlm_loss(logits, labels, reduction)
        torch.testing.assert_close(ours, _torch_ce(logits, labels, reduction).reshape(ours.shape))
    assert float(mlm_loss(logits, labels, "sum")) >= 0.0


# errors


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(
        ValueError,
        match=r"logits has shape \(2, 5, 11\) and labels has shape \(2, 4\); .*labels must "
        r"match logits.shape\[:-1\]",
    ):
        mlm_loss(torch.zeros(2, 5, V), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits has shape \(11,\)"):
        mlm_loss(torch.zeros(V), torch.tensor(3))


def test_unknown_reduction() -> None:
    logits, labels = _logits_and_labels()
    with pytest.raises(ValueError, match="unknown reduction 'avg'; use 'sum'.*'mean'.*'none'"):
        mlm_loss(logits, labels, reduction="avg")


def test_labels_out_of_range() -> None:
    logits, labels = _logits_and_labels()
    labels[1, 1] = V
    with pytest.raises(ValueError, match=r"labels contain 11, outside \[0, V=11\)"):
        mlm_loss(logits, labels)
    labels[1, 1] = -1
    with pytest.raises(ValueError, match=r"labels contain -1.*not ignore_index=-100"):
        mlm_loss(logits, labels)


def test_wrong_dtypes() -> None:
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        mlm_loss(torch.zeros(2, V, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        mlm_loss(torch.zeros(2, V), torch.zeros(2))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_nothing_selected(reduction) -> None:
    logits = torch.zeros(2, 3, V)
    labels = torch.full((2, 3), IGNORE_INDEX)
    with pytest.raises(
        NoSelectedPositionsError, match="every label is -100, so no position was selected.*masking"
    ):
        mlm_loss(logits, labels, reduction)
    assert issubclass(NoSelectedPositionsError, ValueError)
    assert torch.equal(mlm_loss(logits, labels, "none"), torch.zeros(2, 3))
