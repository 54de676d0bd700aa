"""The masking step: x -> (x̄, labels), its statistics, reproducibility and argument checks."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmcourse.masking import (
    IGNORE_INDEX,
    Fate,
    mask_tokens,
    mask_tokens_with_fates,
    selected_positions,
)

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = (PAD, UNK, CLS, SEP, MASK)
V = 40


def _batch(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Sequences [CLS] w ... w [SEP] [PAD]..., with a different amount of padding per row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIALS), V, (batch, length), generator=g)
    ids[:, 0] = CLS
    for b in range(batch):
        end = length - 1 - (b % max(1, length // 4))
        ids[b, end] = SEP
        ids[b, end + 1 :] = PAD
    return ids


def _mask(ids: torch.Tensor, seed: int = 0, **kwargs):
    defaults = {"mask_id": MASK, "vocab_size": V, "special_ids": SPECIALS}
    return mask_tokens_with_fates(
        ids, generator=torch.Generator().manual_seed(seed), **(defaults | kwargs)
    )


def test_ignore_index_is_pytorchs_default() -> None:
    default = inspect.signature(F.cross_entropy).parameters["ignore_index"].default
    assert IGNORE_INDEX == default == -100


def test_outputs_are_consistent_with_the_fates() -> None:
    ids = _batch(8, 64)
    before = ids.clone()
    corrupted, labels, fates = _mask(ids, mlm_probability=0.5)
    assert torch.equal(ids, before), "the input must not be modified"
    assert corrupted.shape == labels.shape == fates.shape == ids.shape
    assert labels.dtype == fates.dtype == torch.long
    selected = fates != Fate.NOT_SELECTED
    assert torch.equal(selected_positions(labels), selected)
    assert torch.equal(labels[selected], ids[selected])
    assert (labels[~selected] == IGNORE_INDEX).all()
    assert torch.equal(corrupted[~selected], ids[~selected])
    assert (corrupted[fates == Fate.MASKED] == MASK).all()
    assert torch.equal(corrupted[fates == Fate.UNCHANGED], ids[fates == Fate.UNCHANGED])
    random_ids = corrupted[fates == Fate.RANDOM]
    assert not torch.isin(random_ids, torch.tensor(SPECIALS)).any()
    assert {int(f) for f in fates.unique()} == {int(f) for f in Fate}


def test_mask_tokens_is_the_same_code_path() -> None:
    ids = _batch(4, 32)
    corrupted, labels, _ = _mask(ids, seed=7)
    kwargs = {"mask_id": MASK, "vocab_size": V, "special_ids": SPECIALS}
    c2, l2 = mask_tokens(ids, generator=torch.Generator().manual_seed(7), **kwargs)
    assert torch.equal(corrupted, c2) and torch.equal(labels, l2)


def test_same_seed_same_result_different_seed_different_result() -> None:
    ids = _batch(16, 64)
    first, second, other = _mask(ids, seed=3), _mask(ids, seed=3), _mask(ids, seed=4)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[1], other[1])


def test_global_rng_is_used_without_a_generator() -> None:
    ids = _batch(4, 64)
    kwargs = {"mask_id": MASK, "vocab_size": V, "special_ids": SPECIALS}
    torch.manual_seed(11)
    a = mask_tokens(ids, **kwargs)
    torch.manual_seed(11)
    b = mask_tokens(ids, **kwargs)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _binomial_ok(successes: int, trials: int, p: float, sigmas: float = 5.0) -> bool:
    se = math.sqrt(p * (1 - p) / trials)
    return abs(successes / trials - p) <= sigmas * se


def test_statistics_over_200k_positions() -> None:
    ids = _batch(200, 1000)
    corrupted, labels, fates = _mask(ids, seed=2024)
    special = torch.isin(ids, torch.tensor(SPECIALS))
    selected = fates != Fate.NOT_SELECTED
    assert not selected[special].any(), "special tokens (including padding) must never be selected"
    n_candidates = int((~special).sum())
    n_selected = int(selected.sum())
    assert n_candidates > 150_000
    assert _binomial_ok(n_selected, n_candidates, 0.15)
    for fate, share in ((Fate.MASKED, 0.8), (Fate.RANDOM, 0.1), (Fate.UNCHANGED, 0.1)):
        assert _binomial_ok(int((fates == fate).sum()), n_selected, share), fate
    random_ids = corrupted[fates == Fate.RANDOM]
    assert not torch.isin(random_ids, torch.tensor(SPECIALS)).any()
    # Replacements are uniform over the V - 5 non-special ids.
    counts = torch.bincount(random_ids, minlength=V)[len(SPECIALS) :].double()
    expected = random_ids.numel() / (V - len(SPECIALS))
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 80.0, f"chi-square {chi2:.1f} with 34 degrees of freedom: not uniform"
    assert int((labels != IGNORE_INDEX).sum()) == n_selected


def test_custom_shares() -> None:
    ids = _batch(50, 400)
    _, _, fates = _mask(ids, seed=1, mlm_probability=0.3, mask_prob=0.5, random_prob=0.25)
    special = torch.isin(ids, torch.tensor(SPECIALS))
    n_selected = int((fates != Fate.NOT_SELECTED).sum())
    assert _binomial_ok(n_selected, int((~special).sum()), 0.3)
    for fate, share in ((Fate.MASKED, 0.5), (Fate.RANDOM, 0.25), (Fate.UNCHANGED, 0.25)):
        assert _binomial_ok(int((fates == fate).sum()), n_selected, share), fate


def test_boundary_probabilities() -> None:
    ids = _batch(4, 50)
    non_special = ~torch.isin(ids, torch.tensor(SPECIALS))
    _, labels, fates = _mask(ids, mlm_probability=0.0)
    assert (labels == IGNORE_INDEX).all() and (fates == Fate.NOT_SELECTED).all()
    corrupted, _, fates = _mask(ids, mlm_probability=1.0, mask_prob=1.0, random_prob=0.0)
    assert torch.equal(fates != Fate.NOT_SELECTED, non_special)
    assert (corrupted[non_special] == MASK).all()
    corrupted, _, fates = _mask(ids, mlm_probability=1.0, mask_prob=0.0, random_prob=0.0)
    assert (fates[non_special] == Fate.UNCHANGED).all() and torch.equal(corrupted, ids)
    _, _, fates = _mask(ids, mlm_probability=1.0, mask_prob=0.7, random_prob=0.3)
    assert not (fates == Fate.UNCHANGED).any()


def test_mask_id_is_special_even_if_not_listed() -> None:
    ids = torch.full((2, 500), MASK)
    ids[:, ::2] = 7
    corrupted, _, fates = _mask(
        ids, mlm_probability=1.0, mask_prob=0.0, random_prob=1.0, special_ids=()
    )
    assert (fates[ids == MASK] == Fate.NOT_SELECTED).all()
    assert not (corrupted[fates == Fate.RANDOM] == MASK).any()


def test_dtype_and_only_one_non_special_word() -> None:
    ids = torch.tensor([[CLS, 5, 5, SEP]], dtype=torch.int32)
    corrupted, labels, _ = _mask(
        ids, vocab_size=6, mlm_probability=1.0, mask_prob=0.0, random_prob=1.0
    )
    assert corrupted.dtype == torch.int32
    assert corrupted.tolist() == [[CLS, 5, 5, SEP]]
    assert labels.tolist() == [[IGNORE_INDEX, 5, 5, IGNORE_INDEX]]


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    mlm_probability=st.floats(0, 1),
    mask_prob=st.floats(0, 1),
    random_share=st.floats(0, 1),
    seed=st.integers(0, 2**31 - 1),
)
def test_invariants_hold_for_any_arguments(shape, mlm_probability, mask_prob, random_share, seed):
    random_prob = (1 - mask_prob) * random_share
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, tuple(shape), generator=g)
    corrupted, labels, fates = _mask(
        ids,
        seed=seed,
        mlm_probability=mlm_probability,
        mask_prob=mask_prob,
        random_prob=random_prob,
    )
    special = torch.isin(ids, torch.tensor(SPECIALS))
    selected = labels != IGNORE_INDEX
    assert not selected[special].any()
    assert torch.equal(selected, fates != Fate.NOT_SELECTED)
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(corrupted[~selected], ids[~selected])
    assert ((corrupted >= 0) & (corrupted < V)).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"mlm_probability": 1.5},
            ValueError,
            r"mlm_probability must be a probability in \[0, 1\]",
        ),
        ({"mask_prob": -0.1}, ValueError, r"mask_prob must be a probability in \[0, 1\], got -0.1"),
        ({"random_prob": float("nan")}, ValueError, "random_prob must be a probability"),
        (
            {"mask_prob": 0.8, "random_prob": 0.3},
            ValueError,
            "mask_prob \\+ random_prob must be at most 1",
        ),
        ({"vocab_size": 0}, ValueError, "vocab_size must be a positive integer"),
        ({"vocab_size": 5}, ValueError, "at least one non-special id"),
        ({"mask_id": 99}, ValueError, r"ids in \[0, vocab_size=40\), got \[99\]"),
        (
            {"vocab_size": 20},
            ValueError,
            r"input_ids contains id \d+, outside \[0, vocab_size=20\)",
        ),
    ],
)
def test_bad_arguments_are_explained(kwargs, error, message) -> None:
    ids = torch.tensor([[CLS, 30, 35, SEP]])
    with pytest.raises(error, match=message):
        _mask(ids, **kwargs)


def test_a_dtype_too_small_for_the_vocabulary_is_rejected() -> None:
    with pytest.raises(ValueError, match="dtype torch.uint8, which cannot hold.*input_ids.long"):
        mask_tokens(torch.tensor([[2, 7]], dtype=torch.uint8), mask_id=MASK, vocab_size=300)


def test_float_input_is_rejected() -> None:
    with pytest.raises(TypeError, match="input_ids must be an integer tensor.*torch.long"):
        mask_tokens(torch.tensor([[2.0, 7.0]]), mask_id=MASK, vocab_size=V)
    with pytest.raises(TypeError, match="got list"):
        mask_tokens([[2, 7]], mask_id=MASK, vocab_size=V)
