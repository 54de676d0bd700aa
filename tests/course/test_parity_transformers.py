"""The course's mlm_loss gives the same number as PyTorch and as Hugging Face's BERT.

A tiny, randomly initialised ``BertForMaskedLM`` is built here from a ``BertConfig`` (nothing is
downloaded); given labels with -100 at unmasked positions it returns its own MLM loss, which
``mlm_loss(logits, labels, "mean")`` must reproduce from the logits it returns.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlmcourse.loss import mlm_loss
from mlmcourse.masking import mask_tokens
from mlmcourse.vocab import Vocabulary

transformers = pytest.importorskip("transformers")

VOCAB = Vocabulary.from_corpus()
TEXTS = [
    "the cat sat on the mat .",
    "the chef seasoned the soup with salt .",
    "bananas are yellow .",
    "in winter it is usually cold .",
]


@pytest.fixture(scope="module")
def bert_output() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, labels, BERT's own loss) for a batch masked with the course's masking step."""
    config = transformers.BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, pad_token_id=VOCAB.pad_id,
    )  # fmt: skip
    torch.manual_seed(0)
    bert = transformers.BertForMaskedLM(config).eval()
    input_ids, attention_mask = VOCAB.encode_batch(TEXTS)
    corrupted, labels = mask_tokens(
        input_ids, mask_id=VOCAB.mask_id, vocab_size=len(VOCAB), special_ids=VOCAB.special_ids,
        mlm_probability=0.3, generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    assert (labels != -100).sum() >= 3, "the test needs several masked positions"
    with torch.no_grad():
        out = bert(input_ids=corrupted, attention_mask=attention_mask, labels=labels)
    return out.logits, labels, out.loss


def test_mean_loss_equals_berts_built_in_loss(bert_output) -> None:
    logits, labels, bert_loss = bert_output
    torch.testing.assert_close(mlm_loss(logits, labels, reduction="mean"), bert_loss)


def test_mean_loss_equals_pytorch_cross_entropy_with_ignore_index(bert_output) -> None:
    logits, labels, _ = bert_output
    reference = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    torch.testing.assert_close(mlm_loss(logits, labels, reduction="mean"), reference)


def test_sum_is_mean_times_the_number_of_masked_positions(bert_output) -> None:
    logits, labels, bert_loss = bert_output
    n_masked = int((labels != -100).sum())
    torch.testing.assert_close(mlm_loss(logits, labels, reduction="sum"), bert_loss * n_masked)
    reference = F.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
    )
    torch.testing.assert_close(mlm_loss(logits, labels, reduction="sum"), reference)


def test_unmasked_positions_do_not_change_the_loss(bert_output) -> None:
    logits, labels, bert_loss = bert_output
    changed = logits.clone()
    changed[labels == -100] = torch.randn_like(changed[labels == -100]) * 10
    torch.testing.assert_close(mlm_loss(changed, labels, reduction="mean"), bert_loss)
