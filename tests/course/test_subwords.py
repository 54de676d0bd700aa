"""WordPiece tokeniser and whole-word masking, against an independent greedy WordPiece."""

from __future__ import annotations

import re

import pytest
import torch

from mlmcourse.corpus import load_corpus
from mlmcourse.masking import IGNORE_INDEX, Fate
from mlmcourse.subwords import (
    corrupt_selected,
    mask_words,
    select_positions,
    special_ids,
    split_word_share,
    train_wordpiece,
)
from mlmcourse.vocab import SPECIAL_TOKENS


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece(vocab_size=500)


def _greedy_wordpiece(word: str, vocab: set[str]) -> list[str]:
    """BERT's published algorithm: longest-match-first, continuation pieces prefixed ##."""
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def test_special_tokens_keep_the_course_ids(tokenizer) -> None:
    assert special_ids(tokenizer) == (0, 1, 2, 3, 4)
    assert [tokenizer.id_to_token(i) for i in range(5)] == list(SPECIAL_TOKENS)
    assert tokenizer.get_vocab_size() == 500


def test_pieces_match_the_greedy_longest_match_reference(tokenizer) -> None:
    vocab = set(tokenizer.get_vocab())
    for sentence in load_corpus()[:300]:
        encoding = tokenizer.encode(sentence)
        assert encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]"
        expected = [p for w in re.findall(r"\w+|[^\w\s]", sentence)
                    for p in _greedy_wordpiece(w, vocab)]  # fmt: skip
        assert encoding.tokens[1:-1] == expected, sentence


def test_decoding_the_pieces_gives_the_sentence_back(tokenizer) -> None:
    for sentence in load_corpus()[:100]:
        ids = tokenizer.encode(sentence).ids
        assert tokenizer.decode(ids) == sentence


def test_a_smaller_budget_splits_more_words() -> None:
    corpus = load_corpus()[:2000]
    counts = []
    for size in (300, 800):
        tok = train_wordpiece(corpus, vocab_size=size)
        counts.append(sum(len(tok.encode(s).tokens) for s in corpus))
    assert counts[0] > counts[1]


def test_two_trainings_agree_but_for_a_few_tied_pieces() -> None:
    # the trainer breaks ties between equally frequent merges arbitrarily (tokenizers 0.2x)
    a, b = (set(train_wordpiece(vocab_size=400).get_vocab()) for _ in range(2))
    assert len(a ^ b) <= 0.03 * 400


WORD_IDS = [None, 0, 1, 1, 1, 2, 3, 3, None]


def test_whole_word_selection_takes_all_pieces_or_none() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        selected = select_positions(WORD_IDS, whole_words=True, mlm_probability=0.5, generator=g)
        assert not selected[0] and not selected[-1]
        for word in (1, 3):
            pieces = [bool(selected[i]) for i, w in enumerate(WORD_IDS) if w == word]
            assert all(pieces) or not any(pieces)
        assert split_word_share(WORD_IDS, selected)[0] == 0


def test_both_selections_select_each_word_with_the_same_probability() -> None:
    g = torch.Generator().manual_seed(1)
    n, p = 4000, 0.15
    whole = torch.stack([select_positions(WORD_IDS, whole_words=True, mlm_probability=p,
                                          generator=g) for _ in range(n)])  # fmt: skip
    per_token = torch.stack([select_positions(WORD_IDS, whole_words=False, mlm_probability=p,
                                              generator=g) for _ in range(n)])  # fmt: skip
    # every piece is selected with probability p under both; specials never
    for sel in (whole, per_token):
        rates = sel.float().mean(0)
        assert rates[0] == rates[-1] == 0
        assert torch.allclose(rates[1:-1], torch.full((7,), p), atol=0.025)
    # a three-piece word is split by per-token selection with probability 1 - p^3 - (1-p)^3
    word1 = per_token[:, 2:5]
    split = (word1.any(1) & ~word1.all(1)).float().mean()
    assert split == pytest.approx(1 - p**3 - (1 - p) ** 3, abs=0.02)
    partly = split_word_share(WORD_IDS, per_token[0])
    assert 0 <= partly[0] <= partly[1] <= 2


def test_split_word_share_counts_by_hand() -> None:
    selected = torch.tensor([0, 1, 1, 0, 0, 0, 1, 1, 0], dtype=torch.bool)
    assert split_word_share(WORD_IDS, selected) == (1, 2)


def test_fates_of_selected_pieces_follow_80_10_10() -> None:
    g = torch.Generator().manual_seed(2)
    ids = torch.arange(10, 4010)
    selected = torch.ones(4000, dtype=torch.bool)
    selected[::2] = False
    corrupted, labels, fates = corrupt_selected(
        ids, selected, mask_id=4, replacement_ids=[7, 8], generator=g
    )
    assert (labels[selected] == ids[selected]).all()
    assert (labels[~selected] == IGNORE_INDEX).all()
    assert (corrupted[~selected] == ids[~selected]).all()
    assert (fates[~selected] == Fate.NOT_SELECTED).all()
    shares = [float((fates[selected] == f).float().mean()) for f in (1, 2, 3)]
    assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.03)
    assert (corrupted[fates == Fate.MASKED] == 4).all()
    assert set(corrupted[fates == Fate.RANDOM].tolist()) <= {7, 8}
    assert (corrupted[fates == Fate.UNCHANGED] == ids[fates == Fate.UNCHANGED]).all()


def test_mask_words_is_seeded_and_keeps_whole_words(tokenizer) -> None:
    text = "my friends bought some blueberries at the market ."
    runs = [
        mask_words(tokenizer, text, whole_words=True, mlm_probability=0.5,
                   generator=torch.Generator().manual_seed(3))  # fmt: skip
        for _ in range(2)
    ]
    for a, b in zip(runs[0][:3], runs[1][:3], strict=True):
        assert torch.equal(a, b)
    input_ids, corrupted, labels, word_ids = runs[0]
    assert input_ids.tolist() == tokenizer.encode(text).ids
    assert split_word_share(word_ids, labels != IGNORE_INDEX)[0] == 0


def test_bad_arguments_say_what_to_fix(tokenizer) -> None:
    with pytest.raises(ValueError, match="mlm_probability"):
        mask_words(tokenizer, "the cat", whole_words=True, mlm_probability=1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        train_wordpiece(["the cat"], vocab_size=3)
    with pytest.raises(TypeError, match="wrap it"):
        train_wordpiece("the cat sat")
