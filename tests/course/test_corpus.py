"""The shipped corpus and its train/test split."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from mlmcourse.corpus import load_corpus, split_corpus

ROOT = Path(__file__).resolve().parents[2]


def _make_corpus_module():
    path = ROOT / "scripts" / "make_corpus.py"
    spec = importlib.util.spec_from_file_location("make_corpus", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corpus_is_a_few_thousand_distinct_lowercase_sentences() -> None:
    sentences = load_corpus()
    assert 3000 <= len(sentences) <= 5000
    assert len(set(sentences)) == len(sentences)
    for s in sentences:
        assert s == s.lower() and s == " ".join(s.split()), s
        assert re.fullmatch(r"[a-z ,.]+", s), s
        assert s.endswith(" ."), s


def test_corpus_holds_the_running_examples() -> None:
    sentences = set(load_corpus())
    assert "the cat sat on the mat ." in sentences
    assert "the chef seasoned the soup with salt ." in sentences
    assert sum(s.startswith("the cat sat on the mat") for s in sentences) >= 5


def test_shipped_corpus_is_what_the_script_generates() -> None:
    make_corpus = _make_corpus_module()
    assert make_corpus.make_corpus() == load_corpus()


def test_split_is_deterministic_disjoint_and_complete() -> None:
    sentences = load_corpus()
    train, test = split_corpus()
    assert (train, test) == split_corpus(sentences, test_fraction=0.1, seed=0)
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(sentences)
    assert len(test) == round(0.1 * len(sentences))
    other_train, other_test = split_corpus(seed=1)
    assert set(other_test) != set(test)


def test_split_keeps_copies_of_a_sentence_together() -> None:
    sentences = ["a b", "c d", "a b", "e f", "g h", "a b"]
    for seed in range(10):
        train, test = split_corpus(sentences, test_fraction=0.3, seed=seed)
        assert not set(train) & set(test)
        assert len(train) + len(test) == len(sentences)
        assert train.count("a b") in (0, 3)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_rejects_a_fraction_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_corpus(test_fraction=fraction)
