"""The vocabulary: the set of tokens every predicted distribution Pr_i^{W,θ}(·|x̄) is over.

Token ids are positions in :attr:`Vocabulary.tokens`. The five special tokens come first, in a
fixed order (``[PAD]``=0, ``[UNK]``=1, ``[CLS]``=2, ``[SEP]``=3, ``[MASK]``=4), then the words.
An encoded sequence ``x = x_0 … x_m`` starts with ``x_0 = [CLS]`` and ends with ``[SEP]``.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)
_STRUCTURAL = (PAD, CLS, SEP)  # dropped by decode(skip_special_tokens=True)

# A special token written in the text (any case), a word (letters, digits, inner apostrophes),
# or a single punctuation character.
_SPECIAL_RE = r"\[(?:" + "|".join(t[1:-1] for t in SPECIAL_TOKENS) + r")\]"
_TOKEN_RE = re.compile(_SPECIAL_RE + r"|[a-z0-9]+(?:'[a-z0-9]+)*|[^\sa-z0-9]", re.IGNORECASE)


def tokenize(text: str) -> list[str]:
    """Split text into lowercase words and punctuation; ``[MASK]`` etc. stay single tokens.

    >>> tokenize("The cat sat on the [MASK].")
    ['the', 'cat', 'sat', 'on', 'the', '[MASK]', '.']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}; pass one sentence.")
    return [
        match.upper() if match.startswith("[") and len(match) > 1 else match.lower()
        for match in _TOKEN_RE.findall(text)
    ]


class Vocabulary:
    """A token <-> id mapping with the five special tokens first.

    ``Vocabulary(tokens)`` takes the words; the special tokens are added in front unless
    ``tokens`` already starts with them (so ``Vocabulary(vocab.tokens)`` rebuilds ``vocab``).
    For example ``Vocabulary(["cat", "sat", "on", "mat"])`` has 9 tokens and ``"cat"`` has id 5.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tokens[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS):
            tokens = tokens[len(SPECIAL_TOKENS) :]
        for token in tokens:
            if not isinstance(token, str) or not token or token != token.strip():
                raise ValueError(
                    f"every token must be a non-empty str without surrounding spaces, "
                    f"got {token!r}."
                )
            if token in SPECIAL_TOKENS:
                raise ValueError(
                    f"{token} is a special token and always has id "
                    f"{SPECIAL_TOKENS.index(token)}; leave it out of the word list."
                )
        duplicates = sorted(t for t, c in Counter(tokens).items() if c > 1)
        if duplicates:
            raise ValueError(f"tokens must be distinct; repeated: {duplicates[:10]}.")
        self._tokens: list[str] = [*SPECIAL_TOKENS, *tokens]
        self._ids: dict[str, int] = {t: i for i, t in enumerate(self._tokens)}

    @classmethod
    def from_corpus(
        cls, sentences: Iterable[str] | None = None, min_count: int = 1
    ) -> Vocabulary:
        """Build the vocabulary of ``sentences`` (default: the shipped corpus).

        Words seen at least ``min_count`` times are kept, most frequent first, ties in
        alphabetical order; rarer words will be encoded as ``[UNK]``.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}.")
        if sentences is None:
            counts = _shipped_counts()
        elif isinstance(sentences, str):
            raise TypeError("sentences must be a list of sentences, not one str; wrap it: [text].")
        else:
            counts = _token_counts(sentences)
        kept = [t for t, c in counts.items() if c >= min_count]
        return cls(sorted(kept, key=lambda t: (-counts[t], t)))

    # --- lookups ----------------------------------------------------------------------------
    @property
    def tokens(self) -> list[str]:
        """All tokens, in id order (a copy)."""
        return list(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens: {', '.join(self._tokens[:8])}, ...)"

    def token_to_id(self, token: str) -> int:
        """The id of ``token``; raises ``KeyError`` if it is not in the vocabulary."""
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(
                f"{token!r} is not in the vocabulary ({len(self)} tokens); encode() maps "
                f"unknown words to {UNK} (id {self.unk_id})."
            ) from None

    def id_to_token(self, i: int) -> str:
        """The token with id ``i``, for ``0 <= i < len(vocab)``."""
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"token id {i} is out of range; valid ids are 0 to {len(self) - 1}.")
        return self._tokens[i]

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def cls_id(self) -> int:
        return 2

    @property
    def sep_id(self) -> int:
        return 3

    @property
    def mask_id(self) -> int:
        return 4

    @property
    def special_ids(self) -> tuple[int, ...]:
        """The ids of [PAD], [UNK], [CLS], [SEP], [MASK]: (0, 1, 2, 3, 4)."""
        return tuple(range(len(SPECIAL_TOKENS)))

    # --- text <-> ids -----------------------------------------------------------------------
    tokenize = staticmethod(tokenize)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``: ``[CLS] … [SEP]`` around the words; unknown words -> [UNK]."""
        ids = [self._ids.get(t, self.unk_id) for t in tokenize(text)]
        return [self.cls_id, *ids, self.sep_id] if add_special_tokens else ids

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        """Text of token ids, joined by spaces.

        ``skip_special_tokens=True`` drops [PAD], [CLS] and [SEP] but keeps [MASK] and [UNK],
        which stand for a word of the sentence.
        """
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(
                    f"decode takes one sequence (a 1-D tensor), got shape {tuple(ids.shape)}; "
                    "decode each row of a batch separately."
                )
            ids = ids.tolist()
        tokens = [self.id_to_token(i) for i in ids]
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in _STRUCTURAL]
        return " ".join(tokens)

    def encode_batch(
        self, texts: Sequence[str], max_len: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and pad a batch with [PAD].

        Returns ``(input_ids, attention_mask)``, two LongTensors of shape (B, T) where ``T`` is
        ``max_len`` or the longest encoded text; the mask is 1 on tokens and 0 on padding.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a list of str, not one str; wrap it: [text].")
        if len(texts) == 0:
            raise ValueError("texts is empty; pass at least one sentence.")
        encoded = [self.encode(t) for t in texts]
        longest = max(len(e) for e in encoded)
        width = longest if max_len is None else max_len
        if longest > width:
            raise ValueError(
                f"a text encodes to {longest} tokens (with [CLS] and [SEP]), more than "
                f"max_len={max_len}; raise max_len or shorten the text."
            )
        input_ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask


def _token_counts(sentences: Iterable[str]) -> Counter[str]:
    """How often each non-special token occurs in ``sentences``."""
    return Counter(t for s in sentences for t in tokenize(s) if t not in SPECIAL_TOKENS)


@functools.cache
def _shipped_counts() -> Counter[str]:
    """The token counts of the shipped corpus, counted once per process (never modified)."""
    from mlmcourse.corpus import load_corpus

    return _token_counts(load_corpus())
