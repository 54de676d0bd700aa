"""What training the distribution leaves behind: the encoder θ's vectors, and a classifier ω on θ.

The MLM loss trains θ and W together, but only through Pr_i^{W,θ}(x_i | x̄). What θ learns on
the way is a vector ``h_i = Encoder_θ(x)_i`` for every position, which depends on the whole
sentence: the same word gets different vectors in different contexts. A task classifier ω put
on top of θ (Xiao & Zhu's notation: the task's distribution is Pr^{ω,θ}(y | x)) reuses them.

- :func:`contextual_vectors`, :func:`input_vectors`, :func:`occurrences`,
  :func:`cosine_similarities`, :func:`nearest_neighbours`: read θ's vectors (and, as the control,
  the vectors θ starts from, before any attention) and compare them;
- :class:`SentenceClassifier`, :func:`fit_classifier`, :func:`classifier_accuracy`: a linear ω
  on the mean of θ's vectors, trained with θ frozen (probing) or with θ (fine-tuning).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mlmcourse.model import Encoder
from mlmcourse.vocab import Vocabulary


def _ids(text_or_ids: str | Sequence[int] | torch.Tensor, vocab: Vocabulary | None) -> torch.Tensor:
    if isinstance(text_or_ids, str):
        if vocab is None:
            raise ValueError("text needs a vocabulary to encode it: pass vocab=...")
        return torch.tensor(vocab.encode(text_or_ids), dtype=torch.long)
    ids = torch.as_tensor(text_or_ids, dtype=torch.long)
    if ids.dim() != 1:
        raise ValueError(
            f"pass one sequence (1-D ids), got shape {tuple(ids.shape)}; "
            "call contextual_vectors once per sequence."
        )
    return ids


@torch.no_grad()
def contextual_vectors(
    encoder: Encoder, text_or_ids: str | Sequence[int] | torch.Tensor,
    vocab: Vocabulary | None = None,
) -> torch.Tensor:  # fmt: skip
    """θ's vectors ``h_i = Encoder_θ(x)_i`` of one uncorrupted sequence, a (T, d_model) tensor.

    ``text_or_ids`` is ``x``, as text (encoded with ``vocab``: row 0 is [CLS]) or as ids. The
    encoder runs in eval mode (no dropout) without gradients; its mode is restored after.
    """
    ids = _ids(text_or_ids, vocab)
    was_training = encoder.training
    encoder.eval()
    try:
        hidden = encoder(ids.unsqueeze(0), torch.ones_like(ids).unsqueeze(0))[0]
    finally:
        encoder.train(was_training)
    return hidden


@torch.no_grad()
def input_vectors(
    encoder: Encoder, text_or_ids: str | Sequence[int] | torch.Tensor,
    vocab: Vocabulary | None = None,
) -> torch.Tensor:  # fmt: skip
    """The vectors θ starts from, before any attention: ``LayerNorm(E_{x_i} + P_i)``, (T, d_model).

    ``E_{x_i}`` is the token's row of the embedding table and ``P_i`` the position's; the
    position embedding is added once, here, at the input. Two occurrences of a word at the same
    position therefore get the same input vector, whatever their sentences: the control for
    :func:`contextual_vectors`. Arguments as there.
    """
    ids = _ids(text_or_ids, vocab)
    if len(ids) > encoder.max_len:
        raise ValueError(
            f"the sequence has {len(ids)} tokens but the encoder takes at most "
            f"max_len={encoder.max_len}; shorten the text."
        )
    positions = torch.arange(len(ids))
    summed = encoder.token_embedding(ids) + encoder.position_embedding(positions)
    return encoder.embedding_norm(summed)


def occurrences(sentences: Sequence[str], word: str, vocab: Vocabulary) -> list[tuple[int, int]]:
    """``(sentence index, position i)`` of every occurrence of ``word`` in ``sentences``.

    Positions count as in ``vocab.encode(sentence)``, so position 0 is [CLS] and a word's first
    occurrence in ``"the cat sat"`` (``"cat"``) is at position 2.
    """
    if word not in vocab:
        raise KeyError(f"{word!r} is not in the vocabulary; pick a word of the corpus.")
    target = vocab.token_to_id(word)
    return [
        (s, i)
        for s, sentence in enumerate(sentences)
        for i, t in enumerate(vocab.encode(sentence))
        if t == target
    ]


def cosine_similarities(vectors: torch.Tensor) -> torch.Tensor:
    """The (n, n) matrix of ``cos(h_a, h_b) = h_a·h_b / (‖h_a‖ ‖h_b‖)`` for (n, d) ``vectors``."""
    if vectors.dim() != 2:
        raise ValueError(f"vectors must have shape (n, d), got {tuple(vectors.shape)}.")
    unit = F.normalize(vectors.float(), dim=-1)
    return unit @ unit.T


def nearest_neighbours(
    query: torch.Tensor, vectors: torch.Tensor, k: int = 5, exclude: int | None = None
) -> list[tuple[int, float]]:
    """The ``k`` rows of ``vectors`` most cosine-similar to ``query``: ``(row, similarity)``.

    ``exclude`` leaves one row out (the query's own row when it is one of ``vectors``).
    """
    if vectors.dim() != 2 or query.shape != vectors.shape[1:]:
        raise ValueError(
            f"query must be one (d,) vector and vectors (n, d), got {tuple(query.shape)} and "
            f"{tuple(vectors.shape)}."
        )
    sims = F.normalize(vectors.float(), dim=-1) @ F.normalize(query.float(), dim=0)
    if exclude is not None:
        sims[exclude] = -torch.inf
    k = min(k, len(vectors) - (exclude is not None))
    top = torch.topk(sims, k)
    return [(int(i), float(s)) for s, i in zip(top.values, top.indices, strict=True)]


class SentenceClassifier(nn.Module):
    """Pr^{ω,θ}(y | x) = softmax(ω(mean_i h_i)): a linear classifier ω on the encoder θ.

    The sentence vector is the mean of θ's vectors ``h_i`` over the real positions of ``x``
    (padding excluded, [CLS] and [SEP] included). ``encoder`` is θ (for example a pretrained
    ``model.encoder``, copied so that the language model is left untouched), ``classifier`` is
    ω, a fresh ``nn.Linear(d_model, n_classes)``.
    """

    def __init__(self, encoder: Encoder, n_classes: int, copy_encoder: bool = True) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got n_classes={n_classes}.")
        self.encoder = copy.deepcopy(encoder) if copy_encoder else encoder  # θ
        d_model = encoder.token_embedding.embedding_dim
        self.classifier = nn.Linear(d_model, n_classes)  # ω

    def sentence_vectors(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, d_model): the mean of ``h_i`` over the positions where the mask is 1."""
        hidden = self.encoder(input_ids, attention_mask)
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes); their softmax is Pr^{ω,θ}(· | x)."""
        return self.classifier(self.sentence_vectors(input_ids, attention_mask))


def fit_classifier(
    model: SentenceClassifier,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    train_encoder: bool,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Train ω (and θ if ``train_encoder``) by minimising ``-log Pr^{ω,θ}(y | x)`` (mean, nats).

    ``train_encoder=False`` is a probe: θ stays as it is and only ω learns (θ's sentence
    vectors are then computed once, not at every step).
    ``train_encoder=True`` is fine-tuning: θ and ω learn together from the task's labels.
    Dropout stays off (eval mode) in both. Returns the loss of every step's batch; the model is
    left in eval mode.
    """
    if not len(input_ids) == len(attention_mask) == len(labels):
        raise ValueError(
            f"input_ids, attention_mask and labels must have one row per example, got "
            f"{len(input_ids)}, {len(attention_mask)} and {len(labels)}."
        )
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    model.encoder.requires_grad_(train_encoder)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    frozen = None
    if not train_encoder:  # θ does not change: compute the sentence vectors once
        with torch.no_grad():
            frozen = model.sentence_vectors(input_ids, attention_mask)
    losses = []
    try:
        for _ in range(steps):
            rows = torch.randint(len(labels), (min(batch_size, len(labels)),), generator=generator)
            if frozen is None:
                logits = model(input_ids[rows], attention_mask[rows])
            else:
                logits = model.classifier(frozen[rows])
            loss = F.cross_entropy(logits, labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        model.encoder.requires_grad_(True)
    return losses


@torch.no_grad()
def classifier_accuracy(
    model: SentenceClassifier,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
) -> float:
    """The share of examples whose most probable class under Pr^{ω,θ}(· | x) is the label."""
    model.eval()
    predicted = model(input_ids, attention_mask).argmax(dim=-1)
    return float((predicted == labels).float().mean())
