"""TinyMLM: shapes, the padding mask, the predicted distribution, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlmcourse.model import TinyMLM, load_checkpoint, predicted_distribution, save_checkpoint
from mlmcourse.vocab import Vocabulary

VOCAB = Vocabulary(["the", "cat", "sat", "on", "mat", "dog", "rug", "."])
V = len(VOCAB)


@pytest.fixture
def model() -> TinyMLM:
    torch.manual_seed(0)
    return TinyMLM(V, d_model=32, n_heads=4, n_layers=2, max_len=16).eval()


def test_parts_are_the_encoder_theta_and_the_output_layer_w(model: TinyMLM) -> None:
    assert isinstance(model.output_layer, nn.Linear)
    assert (model.output_layer.in_features, model.output_layer.out_features) == (32, V)
    encoder_params = {id(p) for p in model.encoder.parameters()}
    output_params = {id(p) for p in model.output_layer.parameters()}
    assert encoder_params.isdisjoint(output_params)
    assert encoder_params | output_params == {id(p) for p in model.parameters()}


def test_logits_have_one_row_per_position_over_the_whole_vocabulary(model: TinyMLM) -> None:
    input_ids, attention_mask = VOCAB.encode_batch(["the cat sat on the mat .", "the dog"])
    logits = model(input_ids, attention_mask)
    assert logits.shape == (2, input_ids.shape[1], V)
    assert torch.isfinite(logits).all()


def test_logits_are_the_output_layer_applied_to_the_encoder(model: TinyMLM) -> None:
    input_ids, attention_mask = VOCAB.encode_batch(["the cat sat on the mat ."])
    hidden = model.encoder(input_ids, attention_mask)
    expected = hidden @ model.output_layer.weight.T + model.output_layer.bias
    torch.testing.assert_close(model(input_ids, attention_mask), expected)


@pytest.mark.parametrize("grad", [True, False], ids=["training-path", "inference-fast-path"])
def test_padding_changes_nothing_at_real_positions(model: TinyMLM, grad: bool) -> None:
    ids = torch.tensor([VOCAB.encode("the cat sat on the mat .")])
    n = ids.shape[1]
    padded = torch.cat([ids, torch.full((1, 4), VOCAB.pad_id)], dim=1)
    mask = (padded != VOCAB.pad_id).long()
    garbage = padded.clone()
    garbage[0, n:] = torch.tensor([5, 6, 7, 8])
    with torch.set_grad_enabled(grad):  # without gradients PyTorch runs a fused kernel
        alone = model(ids)
        torch.testing.assert_close(model(padded, mask)[:, :n], alone, atol=1e-5, rtol=1e-5)
        # Whatever sits at masked-out positions is invisible to the real positions ...
        torch.testing.assert_close(model(garbage, mask)[:, :n], alone, atol=1e-5, rtol=1e-5)
        # ... but the same tokens change them once the mask lets them be attended to.
        unmasked = model(garbage, torch.ones_like(mask))[:, :n]
    assert not torch.allclose(unmasked, alone, atol=1e-3)


def test_default_attention_mask_ignores_pad_ids(model: TinyMLM) -> None:
    input_ids, attention_mask = VOCAB.encode_batch(["the cat sat on the mat .", "the dog"])
    torch.testing.assert_close(model(input_ids), model(input_ids, attention_mask))


def test_batching_gives_the_same_logits_as_one_sentence_at_a_time(model: TinyMLM) -> None:
    texts = ["the cat sat on the mat .", "the dog", "dog on rug"]
    input_ids, attention_mask = VOCAB.encode_batch(texts)
    batched = model(input_ids, attention_mask)
    for row, text in enumerate(texts):
        ids = torch.tensor([VOCAB.encode(text)])
        torch.testing.assert_close(batched[row, : ids.shape[1]], model(ids)[0], atol=1e-5, rtol=0)


def test_predicted_distribution_is_the_softmax_at_the_position(model: TinyMLM) -> None:
    text = "the cat sat on the [MASK] ."
    position = VOCAB.encode(text).index(VOCAB.mask_id)
    assert position == 6  # 0 is [CLS]
    probs = predicted_distribution(model, text, position, VOCAB)
    assert probs.shape == (V,)
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
    logits = model(torch.tensor([VOCAB.encode(text)]))[0, position]
    torch.testing.assert_close(probs, torch.softmax(logits, dim=-1))
    torch.testing.assert_close(predicted_distribution(model, VOCAB.encode(text), position), probs)


def test_predicted_distribution_uses_eval_mode_and_restores_the_mode(model: TinyMLM) -> None:
    model.train()
    text = "the cat sat on the [MASK] ."
    first = predicted_distribution(model, text, 6, VOCAB)
    assert model.training
    torch.testing.assert_close(predicted_distribution(model, text, 6, VOCAB), first)
    assert not first.requires_grad


def test_predicted_distribution_errors(model: TinyMLM) -> None:
    with pytest.raises(IndexError, match="valid positions are 0 to 8"):
        predicted_distribution(model, "the cat sat on the [MASK] .", 9, VOCAB)
    with pytest.raises(ValueError, match="vocab"):
        predicted_distribution(model, "the cat", 1)


def test_too_long_input_says_how_to_fix_it(model: TinyMLM) -> None:
    with pytest.raises(ValueError, match="max_len=16"):
        model(torch.full((1, 17), 5))


def test_config_rebuilds_the_model_and_checkpoints_round_trip(model: TinyMLM, tmp_path) -> None:
    rebuilt = TinyMLM(**model.config)
    rebuilt.load_state_dict(model.state_dict())
    ids = torch.tensor([VOCAB.encode("the cat sat on the mat .")])
    torch.testing.assert_close(rebuilt.eval()(ids), model(ids))

    path = save_checkpoint(model, VOCAB, tmp_path / "m.pt")
    loaded, vocab = load_checkpoint(path)
    assert vocab.tokens == VOCAB.tokens
    assert loaded.config == model.config and not loaded.training
    torch.testing.assert_close(loaded(ids), model(ids))


def test_checkpoint_must_match_the_vocabulary(model: TinyMLM, tmp_path) -> None:
    with pytest.raises(ValueError, match="predicts over 13 tokens but the vocabulary has 6"):
        save_checkpoint(model, Vocabulary(["a"]), tmp_path / "m.pt")
