"""The vocabulary: special tokens, tokenisation, encode/decode round trips, batches, errors."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from mlmcourse.corpus import load_corpus
from mlmcourse.vocab import SPECIAL_TOKENS, Vocabulary, tokenize


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.from_corpus()


def test_special_tokens_come_first_in_a_fixed_order(vocab: Vocabulary) -> None:
    assert vocab.tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (
        0, 1, 2, 3, 4,
    )  # fmt: skip
    assert vocab.special_ids == (0, 1, 2, 3, 4)
    assert [vocab.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]


def test_words_are_sorted_by_frequency_then_alphabetically() -> None:
    sentences = ["b a c a", "c a b d", "d"]  # a:3, b:2, c:2, d:2
    assert Vocabulary.from_corpus(sentences).tokens[5:] == ["a", "b", "c", "d"]
    assert Vocabulary.from_corpus(sentences, min_count=3).tokens[5:] == ["a"]


def test_shipped_vocabulary_matches_an_independent_count(vocab: Vocabulary) -> None:
    counts = Counter(w for s in load_corpus() for w in s.split())
    assert set(vocab.tokens[5:]) == set(counts)
    assert len(vocab) == len(counts) + 5
    assert 300 <= len(counts) <= 600
    frequencies = [counts[t] for t in vocab.tokens[5:]]
    assert frequencies == sorted(frequencies, reverse=True)


def test_tokenize_lowercases_splits_punctuation_and_keeps_special_tokens() -> None:
    assert tokenize("The Cat sat on the [MASK].") == [
        "the", "cat", "sat", "on", "the", "[MASK]", ".",
    ]  # fmt: skip
    assert tokenize("[cls] hi, [mask]!") == ["[CLS]", "hi", ",", "[MASK]", "!"]
    assert tokenize("  ") == []


def test_encode_adds_cls_and_sep_and_decode_round_trips(vocab: Vocabulary) -> None:
    text = "the cat sat on the mat ."
    ids = vocab.encode(text)
    assert ids[0] == vocab.cls_id and ids[-1] == vocab.sep_id
    assert ids[1:-1] == vocab.encode(text, add_special_tokens=False)
    assert [vocab.id_to_token(i) for i in ids[1:-1]] == text.split()
    assert vocab.decode(ids) == f"[CLS] {text} [SEP]"
    assert vocab.decode(ids, skip_special_tokens=True) == text
    assert vocab.decode(torch.tensor(ids), skip_special_tokens=True) == text


def test_every_corpus_sentence_round_trips(vocab: Vocabulary) -> None:
    for sentence in load_corpus():
        assert vocab.decode(vocab.encode(sentence), skip_special_tokens=True) == sentence


def test_mask_written_in_text_is_the_mask_token_and_survives_decoding(vocab: Vocabulary) -> None:
    ids = vocab.encode("the cat sat on the [MASK] .")
    assert ids[6] == vocab.mask_id
    assert vocab.decode(ids, skip_special_tokens=True) == "the cat sat on the [MASK] ."


def test_unknown_words_become_unk(vocab: Vocabulary) -> None:
    assert "zebra" not in vocab
    ids = vocab.encode("the zebra sat", add_special_tokens=False)
    assert ids == [vocab.token_to_id("the"), vocab.unk_id, vocab.token_to_id("sat")]
    assert vocab.decode(ids) == "the [UNK] sat"


def test_small_vocabulary_gets_the_specials_in_front() -> None:
    small = Vocabulary(["cat", "sat", "on", "mat"])
    assert len(small) == 9
    assert small.token_to_id("cat") == 5
    assert small.encode("the cat") == [2, 1, 5, 3]
    assert Vocabulary(small.tokens).tokens == small.tokens
    assert "mat" in small and "dog" not in small


def test_encode_batch_pads_with_pad_and_masks_padding(vocab: Vocabulary) -> None:
    texts = ["the cat sat on the mat .", "it is cold ."]
    input_ids, attention_mask = vocab.encode_batch(texts)
    lengths = [len(vocab.encode(t)) for t in texts]
    assert input_ids.dtype == attention_mask.dtype == torch.long
    assert input_ids.shape == attention_mask.shape == (2, max(lengths))
    for row, (text, n) in enumerate(zip(texts, lengths, strict=True)):
        assert input_ids[row, :n].tolist() == vocab.encode(text)
        assert (input_ids[row, n:] == vocab.pad_id).all()
        assert attention_mask[row].tolist() == [1] * n + [0] * (max(lengths) - n)
    wide, wide_mask = vocab.encode_batch(texts, max_len=12)
    assert wide.shape == (2, 12) and int(wide_mask.sum()) == sum(lengths)


def test_errors_say_what_is_wrong(vocab: Vocabulary) -> None:
    with pytest.raises(IndexError, match=rf"valid ids are 0 to {len(vocab) - 1}"):
        vocab.id_to_token(len(vocab))
    with pytest.raises(IndexError, match="valid ids"):
        vocab.decode([2, -1])
    with pytest.raises(KeyError, match="not in the vocabulary"):
        vocab.token_to_id("zebra")
    with pytest.raises(ValueError, match="max_len=3"):
        vocab.encode_batch(["the cat sat"], max_len=3)
    with pytest.raises(TypeError, match="wrap it"):
        vocab.encode_batch("the cat sat")
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(["cat", "cat"])
    with pytest.raises(ValueError, match="special token"):
        Vocabulary(["cat", "[MASK]"])
