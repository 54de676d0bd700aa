"""θ's contextual vectors, similarities, and a classifier ω on θ, against direct computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlmcourse.model import TinyMLM
from mlmcourse.representations import (
    SentenceClassifier,
    classifier_accuracy,
    contextual_vectors,
    cosine_similarities,
    fit_classifier,
    input_vectors,
    nearest_neighbours,
    occurrences,
)
from mlmcourse.vocab import Vocabulary

VOCAB = Vocabulary(["the", "cat", "sat", "on", "mat", "dog", "rug", ".", "orange", "is"])


@pytest.fixture
def model() -> TinyMLM:
    torch.manual_seed(0)
    return TinyMLM(len(VOCAB), d_model=16, n_heads=2, n_layers=1, max_len=16, dropout=0.0)


def test_input_vectors_are_the_embeddings_before_any_layer(model: TinyMLM) -> None:
    text = "the cat sat on the mat ."
    theta = model.encoder
    got = input_vectors(theta, text, VOCAB)
    captured = []  # what the first encoder layer receives (dropout is 0)
    first_layer = theta.layers.layers[0]
    handle = first_layer.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    try:
        ids, mask = VOCAB.encode_batch([text])
        theta(ids, mask)
    finally:
        handle.remove()
    torch.testing.assert_close(got, captured[0][0])
    assert not got.requires_grad
    # the same word at the same position gets the same input vector in another sentence
    other = input_vectors(theta, "the dog sat on the rug .", VOCAB)
    torch.testing.assert_close(got[3], other[3])  # "sat" at position 3 in both
    assert not torch.allclose(got[2], other[2])  # "cat" and "dog"
    with pytest.raises(ValueError, match="max_len"):
        input_vectors(theta, " ".join(["the"] * 20), VOCAB)


def test_contextual_vectors_are_the_encoder_output(model: TinyMLM) -> None:
    text = "the cat sat on the mat ."
    ids, mask = VOCAB.encode_batch([text])
    expected = model.encoder(ids, mask)[0]
    model.train()
    got = contextual_vectors(model.encoder, text, VOCAB)
    assert model.encoder.training  # mode restored
    torch.testing.assert_close(got, expected)
    assert got.shape == (len(VOCAB.encode(text)), 16)
    assert not got.requires_grad


def test_same_word_different_context_different_vector(model: TinyMLM) -> None:
    a = contextual_vectors(model.encoder, "the orange is orange .", VOCAB)
    # positions 2 and 4 hold the same token, but their vectors differ (context, position)
    assert not torch.allclose(a[2], a[4])
    # the token embedding, by contrast, is one row for every occurrence
    row = model.encoder.token_embedding.weight[VOCAB.token_to_id("orange")]
    assert row.shape == (16,)


def test_occurrences_count_positions_from_cls() -> None:
    sentences = ["the cat sat .", "the orange is orange ."]
    assert occurrences(sentences, "orange", VOCAB) == [(1, 2), (1, 4)]
    assert occurrences(sentences, "the", VOCAB) == [(0, 1), (1, 1)]
    with pytest.raises(KeyError, match="not in the vocabulary"):
        occurrences(sentences, "zebra", VOCAB)


def test_cosine_similarities_match_torch() -> None:
    torch.manual_seed(1)
    v = torch.randn(5, 7)
    expected = F.cosine_similarity(v.unsqueeze(1), v.unsqueeze(0), dim=-1)
    torch.testing.assert_close(cosine_similarities(v), expected)
    with pytest.raises(ValueError, match="shape"):
        cosine_similarities(torch.randn(3))


def test_nearest_neighbours_rank_by_cosine_and_exclude_self() -> None:
    v = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    got = nearest_neighbours(v[0], v, k=2, exclude=0)
    assert [i for i, _ in got] == [1, 2]
    assert got[0][1] == pytest.approx(float(F.cosine_similarity(v[0], v[1], dim=0)))
    assert len(nearest_neighbours(v[0], v, k=10, exclude=0)) == 3


def _toy_task() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    texts = ["the cat sat on the mat .", "the dog sat on the rug .", "the cat sat .",
             "the dog sat .", "the cat is on the mat .", "the dog is on the rug ."]  # fmt: skip
    ids, mask = VOCAB.encode_batch(texts)
    return ids, mask, torch.tensor([0, 1, 0, 1, 0, 1])


def test_classifier_is_a_linear_omega_on_mean_pooled_theta(model: TinyMLM) -> None:
    ids, mask, _ = _toy_task()
    clf = SentenceClassifier(model.encoder, 2).eval()
    assert clf.encoder is not model.encoder  # the language model's θ is left untouched
    hidden = clf.encoder(ids, mask)
    pooled = torch.stack([hidden[b, mask[b] == 1].mean(0) for b in range(len(ids))])
    expected = pooled @ clf.classifier.weight.T + clf.classifier.bias
    torch.testing.assert_close(clf(ids, mask), expected)


def test_probe_trains_omega_only_and_fine_tuning_trains_both(model: TinyMLM) -> None:
    ids, mask, labels = _toy_task()
    probe = SentenceClassifier(model.encoder, 2)
    theta_before = [p.clone() for p in probe.encoder.parameters()]
    omega_before = probe.classifier.weight.clone()
    losses = fit_classifier(probe, ids, mask, labels, train_encoder=False, steps=150, lr=3e-2)
    after = probe.encoder.parameters()
    assert all(torch.equal(a, b) for a, b in zip(theta_before, after, strict=True))
    assert not torch.equal(omega_before, probe.classifier.weight)
    assert losses[-1] < losses[0]
    assert classifier_accuracy(probe, ids, mask, labels) == 1.0
    assert all(p.requires_grad for p in probe.parameters())  # restored

    tuned = SentenceClassifier(model.encoder, 2)
    fit_classifier(tuned, ids, mask, labels, train_encoder=True, steps=20, lr=1e-3)
    theta, tuned_theta = model.encoder.token_embedding, tuned.encoder.token_embedding
    assert not torch.equal(theta.weight, tuned_theta.weight)


def test_training_loss_is_the_mean_negative_log_probability(model: TinyMLM) -> None:
    ids, mask, labels = _toy_task()
    clf = SentenceClassifier(model.encoder, 2)
    # the first step's batch (rows drawn with the seed), its loss before the update:
    # -mean log Pr^{ω,θ}(y|x), computed here with log_softmax, not cross_entropy
    rows = torch.randint(len(labels), (len(labels),), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logp = torch.log_softmax(clf(ids[rows], mask[rows]), dim=-1)
        expected = -logp[torch.arange(len(rows)), labels[rows]].mean()
    losses = fit_classifier(clf, ids, mask, labels, train_encoder=False, steps=1,
                            batch_size=len(labels), seed=0)  # fmt: skip
    assert losses[0] == pytest.approx(float(expected), rel=1e-5)


def test_bad_inputs_say_what_to_fix(model: TinyMLM) -> None:
    ids, mask, labels = _toy_task()
    with pytest.raises(ValueError, match="one row per example"):
        fit_classifier(SentenceClassifier(model.encoder, 2), ids, mask, labels[:3],
                       train_encoder=False)  # fmt: skip
    with pytest.raises(ValueError, match="at least 2 classes"):
        SentenceClassifier(model.encoder, 1)
    with pytest.raises(ValueError, match="vocabulary"):
        contextual_vectors(model.encoder, "the cat")
