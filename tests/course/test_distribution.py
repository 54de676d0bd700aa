"""The predicted distribution: softmax, validity, entropy, top-k and the one-hot p_i^gold."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlmcourse.distribution import (
    InvalidDistributionError,
    check_distribution,
    entropy,
    entropy_bits,
    is_valid_distribution,
    one_hot,
    softmax,
    top_k,
)

VOCAB = ["[PAD]", "the", "cat", "sat", "mat"]


class Vocab:
    """A vocabulary object in the style of the course's tokenizer: only ``id_to_token``."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def id_to_token(self, i: int) -> str:
        return self.tokens[i].upper()


# softmax


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 4, 6)])
@pytest.mark.parametrize("dim", [-1, 0])
@pytest.mark.parametrize("temperature", [0.5, 1, np.float32(3.0)])
def test_softmax_matches_torch(shape, dim, temperature) -> None:
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 4
    expected = torch.softmax(logits / temperature, dim=dim)
    torch.testing.assert_close(softmax(logits, dim=dim, temperature=temperature), expected)


def test_softmax_accepts_lists_arrays_and_integers() -> None:
    expected = torch.softmax(torch.tensor([1.0, 2.0, 3.0]), dim=-1)
    for logits in ([1.0, 2.0, 3.0], [1, 2, 3], np.array([1.0, 2.0, 3.0])):
        out = softmax(logits)
        assert isinstance(out, torch.Tensor) and out.is_floating_point()
        torch.testing.assert_close(out.float(), expected)


def test_softmax_is_stable_for_huge_logits() -> None:
    logits = torch.tensor([[1e4, 0.0, -1e4], [-1e4, -1e4 + 1.0, -1e4], [3e38, 3e38, 0.0]])
    out = softmax(logits)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(3))
    torch.testing.assert_close(out, torch.softmax(logits, dim=-1))
    torch.testing.assert_close(out[2], torch.tensor([0.5, 0.5, 0.0]))


def test_temperature_sharpens_and_flattens() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0])
    cold, warm = softmax(logits, temperature=0.1), softmax(logits, temperature=100.0)
    assert cold[0] > softmax(logits)[0] > warm[0]
    torch.testing.assert_close(warm, torch.full((3,), 1 / 3), atol=1e-2, rtol=0)


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(temperature) -> None:
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        softmax([1.0, 2.0], temperature=temperature)


def test_softmax_of_nothing() -> None:
    with pytest.raises(ValueError, match=r"at least one logit along dim=-1, got shape \(0,\)"):
        softmax([])
    with pytest.raises(ValueError, match=r"dim=1 does not exist for logits of shape \(3,\)"):
        softmax([1.0, 2.0, 3.0], dim=1)
    with pytest.raises(ValueError, match=r"dim=-1 does not exist for logits of shape \(\)"):
        softmax(2.0)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e6, 1e6)))
def test_softmax_always_gives_a_valid_distribution(logits) -> None:
    probs = softmax(logits)
    assert is_valid_distribution(probs)
    assert probs[int(np.argmax(logits))] == probs.max(), "the largest logit gets the most mass"


# validity


@pytest.mark.parametrize(
    "p",
    [[0.25, 0.25, 0.5], np.array([0.0, 1.0]), torch.tensor([0.1, 0.2, 0.3, 0.4]), [1.0]],
)
def test_valid_distributions(p) -> None:
    assert is_valid_distribution(p)
    check_distribution(p)


@pytest.mark.parametrize(
    ("p", "message"),
    [
        ([], "the distribution is empty"),
        (np.zeros((0, 3)), "the distribution is empty"),
        ([[0.5, 0.5], [0.5, 0.5]], r"must be 1-D .* got shape \(2, 2\)"),
        (0.5, r"must be 1-D .* got shape \(\)"),
        ([0.5, float("nan"), 0.5], "the entry at index 1 is nan, not a finite number"),
        (torch.tensor([0.5, 0.5, float("inf")]), "the entry at index 2 is inf"),
        ([0.6, 0.6, -0.2], r"the entry at index 2 is negative \(-0.2\)"),
        ([0.5, 0.6], r"the entries sum to 1.1, not 1"),
        ([0.2, 0.2], r"the entries sum to 0.4, not 1"),
        (["a", "b"], "could not be read as numbers"),
        ([[0.5], [0.2, 0.3]], "could not be read as numbers"),
    ],
)
def test_invalid_distributions_name_the_problem(p, message) -> None:
    assert not is_valid_distribution(p)
    with pytest.raises(InvalidDistributionError, match=message):
        check_distribution(p)


def test_the_first_problem_is_reported() -> None:
    with pytest.raises(InvalidDistributionError, match="index 0 is nan"):
        check_distribution([float("nan"), -1.0, 3.0], vocab_size=5)
    with pytest.raises(InvalidDistributionError, match=r"index 1 is negative \(-1\)"):
        check_distribution([0.5, -1.0, 3.0], vocab_size=5)
    with pytest.raises(InvalidDistributionError, match="got 3, expected vocab_size=5"):
        check_distribution([0.5, 1.0, 3.0], vocab_size=5)


def test_wrong_number_of_entries() -> None:
    with pytest.raises(
        InvalidDistributionError,
        match="got 3, expected vocab_size=4: a distribution needs one probability per "
        "vocabulary word",
    ):
        check_distribution([0.2, 0.3, 0.5], vocab_size=4)
    check_distribution([0.2, 0.3, 0.5], vocab_size=3)


def test_invalid_distribution_error_is_a_value_error() -> None:
    assert issubclass(InvalidDistributionError, ValueError)


def test_tolerance() -> None:
    assert is_valid_distribution([0.5, 0.5 + 5e-7])
    assert not is_valid_distribution([0.5, 0.5 + 5e-6])
    assert is_valid_distribution([0.5, 0.5 + 5e-6], atol=1e-5)
    probs = torch.softmax(torch.randn(30_000, generator=torch.Generator().manual_seed(0)), -1)
    assert is_valid_distribution(probs), "a float32 softmax over a large vocabulary is valid"


# entropy


def test_entropy_matches_torch_categorical() -> None:
    for logits in torch.randn(5, 9, generator=torch.Generator().manual_seed(1)):
        p = torch.softmax(logits.double(), -1)
        expected = float(torch.distributions.Categorical(probs=p).entropy())
        assert entropy(p) == pytest.approx(expected, rel=1e-9)


def test_entropy_special_cases() -> None:
    assert entropy([0.0, 1.0, 0.0]) == 0.0
    assert entropy([0.25] * 4) == pytest.approx(math.log(4))
    assert entropy([0.5, 0.5, 0.0]) == pytest.approx(math.log(2))
    assert entropy_bits([0.125] * 8) == pytest.approx(3.0)
    with pytest.raises(InvalidDistributionError, match="sum to 2"):
        entropy([1.0, 1.0])


# top-k


def test_top_k_sorted_with_ties_by_id() -> None:
    p = [0.1, 0.3, 0.2, 0.3, 0.1]
    assert top_k(p, VOCAB, 3) == [("the", 0.3), ("sat", 0.3), ("cat", 0.2)]
    assert top_k(p, VOCAB, 10)[-2:] == [("[PAD]", 0.1), ("mat", 0.1)]


def test_top_k_matches_torch_topk_and_reads_vocab_objects() -> None:
    p = torch.softmax(torch.randn(5, generator=torch.Generator().manual_seed(3)), -1)
    values, indices = torch.topk(p, 2)
    result = top_k(p, Vocab(VOCAB), 2)
    assert [t for t, _ in result] == [VOCAB[int(i)].upper() for i in indices]
    assert [v for _, v in result] == pytest.approx(values.tolist())


def test_top_k_errors() -> None:
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        top_k([0.5, 0.5], ["a", "b"], 0)
    with pytest.raises(InvalidDistributionError, match="got 2, expected vocab_size=5"):
        top_k([0.5, 0.5], VOCAB, 1)


# one-hot


def test_one_hot_matches_torch() -> None:
    p = one_hot(2, 5)
    assert p.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert p.dtype == torch.get_default_dtype()
    assert is_valid_distribution(p)
    targets = torch.tensor([[0, 4], [3, 1]])
    torch.testing.assert_close(one_hot(targets, 5), F.one_hot(targets, 5).float())


def test_one_hot_errors() -> None:
    with pytest.raises(ValueError, match=r"index 5 is outside \[0, vocab_size=5\)"):
        one_hot(5, 5)
    with pytest.raises(ValueError, match="index -100 is outside.*keep the selected positions"):
        one_hot(torch.tensor([1, -100]), 5)
    with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
        one_hot(0, 0)
    with pytest.raises(TypeError, match="index must be an integer token id"):
        one_hot(1.0, 5)
