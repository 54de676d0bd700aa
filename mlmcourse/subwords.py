"""Subword tokens: a WordPiece tokeniser trained on the course corpus, and whole-word masking.

The course's :class:`~mlmcourse.vocab.Vocabulary` has one token per word. BERT's tokeniser
(WordPiece) has a fixed budget of tokens and splits a rarer word into pieces: the first piece
as it is, the others prefixed with ``##`` (``strawberries`` -> ``straw ##berries``). A
selected position i ∈ A(x) is then a piece, not a word.

*Per-token* selection draws each piece independently, so it can select ``##berries`` and
leave ``straw`` visible, which gives most of the word away. *Whole-word* selection draws each
word once and puts all of its pieces into A(x) together. In both, each selected piece then gets
its own fate (80 % [MASK]ed, 10 % a random token, 10 % unchanged), as in BERT's released code.

The tokeniser is trained here, from the shipped corpus, with the ``tokenizers`` library:
nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import WordPieceTrainer

from mlmcourse.masking import IGNORE_INDEX, Fate
from mlmcourse.vocab import CLS, MASK, SEP, SPECIAL_TOKENS, UNK


def train_wordpiece(sentences: Iterable[str] | None = None, vocab_size: int = 300) -> Tokenizer:
    """A BERT-style WordPiece tokeniser trained on ``sentences`` (default: the shipped corpus).

    Text is lowercased and split on spaces and punctuation first (as BERT does), then each word
    into the longest pieces of the learnt vocabulary. The five special tokens keep the ids of
    :mod:`mlmcourse.vocab` ([PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4), and ``encode`` wraps
    a sentence in ``[CLS] … [SEP]``. ``vocab_size`` is the budget; a smaller one splits more
    words. The trainer breaks ties between equally frequent merges in an arbitrary order, so
    two trainings on the same sentences can differ in a handful of rare pieces; read the pieces
    from the tokeniser you trained rather than from a list.
    """
    if sentences is None:
        from mlmcourse.corpus import load_corpus

        sentences = load_corpus()
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of sentences, not one str; wrap it: [text].")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room beside the {len(SPECIAL_TOKENS)} special "
            "tokens; use a few hundred."
        )
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    tokenizer.train_from_iterator(list(sentences), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        special_tokens=[(CLS, tokenizer.token_to_id(CLS)), (SEP, tokenizer.token_to_id(SEP))],
    )
    tokenizer.decoder = decoders.WordPiece(cleanup=False)  # keep "mat ." as in the corpus
    return tokenizer


def special_ids(tokenizer: Tokenizer) -> tuple[int, ...]:
    """The ids of the five special tokens in ``tokenizer`` (never selected, never drawn)."""
    return tuple(tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)


def _check(
    input_ids: torch.Tensor, word_ids: Sequence[int | None], mlm_probability: float,
    mask_prob: float, random_prob: float,
) -> None:  # fmt: skip
    if input_ids.dim() != 1:
        raise ValueError(
            f"pass one sequence (1-D ids), got shape {tuple(input_ids.shape)}; "
            "mask each sentence separately."
        )
    if len(word_ids) != len(input_ids):
        raise ValueError(
            f"word_ids has {len(word_ids)} entries for {len(input_ids)} tokens; pass "
            "encoding.word_ids of the same encoding."
        )
    for name, value in (
        ("mlm_probability", mlm_probability), ("mask_prob", mask_prob),
        ("random_prob", random_prob),
    ):  # fmt: skip
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
    if mask_prob + random_prob > 1.0 + 1e-12:
        raise ValueError(
            f"mask_prob + random_prob must be at most 1, got {mask_prob} + {random_prob}."
        )


def select_positions(
    word_ids: Sequence[int | None],
    *,
    whole_words: bool,
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A(x) as a boolean (T,) tensor, per token or per whole word.

    ``word_ids[i]`` is the index of the word that token i is a piece of, ``None`` for special
    tokens (as in ``tokenizers``' ``Encoding.word_ids``); special tokens are never selected.
    ``whole_words=False``: every piece is selected independently with ``mlm_probability``.
    ``whole_words=True``: every word is selected with ``mlm_probability``, and with it all of
    its pieces. Either way each word is selected with the same probability.
    """
    is_word = torch.tensor([w is not None for w in word_ids], dtype=torch.bool)
    if not whole_words:
        draw = torch.rand(len(word_ids), generator=generator)
        return (draw < mlm_probability) & is_word
    n_words = 1 + max((w for w in word_ids if w is not None), default=-1)
    chosen = torch.rand(n_words, generator=generator) < mlm_probability
    return torch.tensor([w is not None and bool(chosen[w]) for w in word_ids], dtype=torch.bool)


def corrupt_selected(
    input_ids: torch.Tensor,
    selected: torch.Tensor,
    *,
    mask_id: int,
    replacement_ids: Sequence[int] | torch.Tensor,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x̄, labels and fates for a given A(x): each selected piece gets its own fate.

    A share ``mask_prob`` of the selected pieces is [MASK]ed, ``random_prob`` replaced by a
    token drawn uniformly from ``replacement_ids``, the rest left unchanged. Labels hold ``x_i``
    for ``i ∈ A(x)`` and -100 elsewhere. Returns ``(corrupted_ids, labels, fates)`` with
    :class:`~mlmcourse.masking.Fate` values.
    """
    ids = input_ids.long()
    pool = torch.as_tensor(replacement_ids, dtype=torch.long)
    fate_draw = torch.rand(ids.shape, generator=generator)
    replacement_draw = torch.randint(len(pool), ids.shape, generator=generator)
    masked = selected & (fate_draw < mask_prob)
    randomised = selected & ~masked & (fate_draw < mask_prob + random_prob)
    corrupted = ids.clone()
    corrupted[masked] = mask_id
    corrupted[randomised] = pool[replacement_draw[randomised]]
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    fates = torch.full_like(ids, int(Fate.NOT_SELECTED))
    fates[selected] = int(Fate.UNCHANGED)
    fates[masked] = int(Fate.MASKED)
    fates[randomised] = int(Fate.RANDOM)
    return corrupted, labels, fates


def mask_words(
    tokenizer: Tokenizer,
    text: str,
    *,
    whole_words: bool,
    mlm_probability: float = 0.15,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int | None]]:
    """Encode ``text`` with ``tokenizer`` and corrupt it, selecting per token or per whole word.

    Returns ``(input_ids, corrupted_ids, labels, word_ids)``: ``x``, ``x̄``, the labels (-100
    outside A(x)) and the word index of every piece (``None`` for [CLS] and [SEP]).
    """
    encoding = tokenizer.encode(text)
    input_ids = torch.tensor(encoding.ids, dtype=torch.long)
    word_ids = list(encoding.word_ids)
    _check(input_ids, word_ids, mlm_probability, mask_prob, random_prob)
    selected = select_positions(
        word_ids, whole_words=whole_words, mlm_probability=mlm_probability, generator=generator
    )
    specials = set(special_ids(tokenizer))
    pool = [i for i in range(tokenizer.get_vocab_size()) if i not in specials]
    corrupted, labels, _ = corrupt_selected(
        input_ids, selected, mask_id=tokenizer.token_to_id(MASK), replacement_ids=pool,
        mask_prob=mask_prob, random_prob=random_prob, generator=generator,
    )  # fmt: skip
    return input_ids, corrupted, labels, word_ids


def split_word_share(
    word_ids: Sequence[int | None], selected: torch.Tensor
) -> tuple[int, int]:
    """``(words split by the selection, words of several pieces with any piece selected)``.

    A word is *split* when some but not all of its pieces are in A(x): the visible pieces then
    give the others away. Whole-word selection never splits a word.
    """
    pieces: dict[int, list[bool]] = {}
    for w, s in zip(word_ids, selected.tolist(), strict=True):
        if w is not None:
            pieces.setdefault(w, []).append(bool(s))
    multi = [p for p in pieces.values() if len(p) > 1 and any(p)]
    return sum(not all(p) for p in multi), len(multi)
