"""Training and evaluation: reproducible, learning, and a shipped checkpoint that works."""

from __future__ import annotations

import math
from importlib.resources import files

import pytest
import torch
import torch.nn.functional as F

from mlmcourse.corpus import load_corpus, split_corpus
from mlmcourse.masking import mask_tokens
from mlmcourse.model import TinyMLM, load_pretrained, predicted_distribution
from mlmcourse.train import TrainingHistory, evaluate, train
from mlmcourse.vocab import Vocabulary

SENTENCES = load_corpus()[:400]


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.from_corpus()


def _small_model(vocab: Vocabulary, seed: int = 0) -> TinyMLM:
    torch.manual_seed(seed)
    return TinyMLM(len(vocab), d_model=32, n_heads=2, n_layers=1, max_len=32)


def _train(vocab: Vocabulary, seed: int, **kwargs) -> tuple[TinyMLM, TrainingHistory]:
    model = _small_model(vocab)
    options = dict(steps=6, batch_size=8, progress=False, device="cpu") | kwargs
    return model, train(model, SENTENCES, vocab, seed=seed, **options)


def test_same_seed_gives_the_same_losses_and_weights(vocab: Vocabulary) -> None:
    model_a, history_a = _train(vocab, seed=3)
    model_b, history_b = _train(vocab, seed=3)
    _, history_c = _train(vocab, seed=4)
    assert len(history_a.losses) == 6
    assert history_a.losses == history_b.losses
    assert history_a.losses != history_c.losses
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)


def test_loss_decreases_on_a_short_run(vocab: Vocabulary) -> None:
    model, history = _train(vocab, seed=0, steps=80, batch_size=32, lr=5e-3)
    start = sum(history.losses[:5]) / 5
    end = sum(history.losses[-10:]) / 10
    assert start == pytest.approx(math.log(len(vocab)), abs=0.3)  # untrained: about uniform
    assert end < start - 1.0, (start, end)
    assert model.training


def test_eval_losses_and_callback_follow_the_schedule(vocab: Vocabulary) -> None:
    calls: list[tuple[int, bool]] = []
    _, history = _train(
        vocab, seed=0, steps=7, eval_sentences=SENTENCES[:50], eval_every=3,
        callback=lambda step, model: calls.append((step, model.training)),
    )  # fmt: skip
    assert [step for step, _ in history.eval_losses] == [0, 3, 6, 7]
    assert all(loss > 0 for _, loss in history.eval_losses)
    assert [step for step, _ in calls] == list(range(8))
    assert history.seconds > 0


def test_train_leaves_torch_threads_as_they_were(vocab: Vocabulary) -> None:
    before = torch.get_num_threads()
    _train(vocab, seed=0, steps=2)
    assert torch.get_num_threads() == before


def test_train_rejects_a_model_for_another_vocabulary(vocab: Vocabulary) -> None:
    with pytest.raises(ValueError, match="TinyMLM\\(len\\(vocab\\)\\)"):
        train(TinyMLM(10), SENTENCES, vocab, steps=1, progress=False)


def test_evaluate_matches_cross_entropy_on_the_same_masks(vocab: Vocabulary) -> None:
    model = _small_model(vocab).eval()
    sentences = SENTENCES[:100]
    result = evaluate(model, sentences, vocab, seed=5, batch_size=40)

    input_ids, attention_mask = vocab.encode_batch(sentences)
    generator = torch.Generator().manual_seed(5)
    all_logits, all_labels = [], []
    for start in range(0, len(sentences), 40):
        corrupted, labels = mask_tokens(
            input_ids[start : start + 40], mask_id=vocab.mask_id, vocab_size=len(vocab),
            special_ids=vocab.special_ids, generator=generator,
        )  # fmt: skip
        with torch.no_grad():
            all_logits.append(model(corrupted, attention_mask[start : start + 40]).flatten(0, 1))
        all_labels.append(labels.flatten())
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    selected = labels != -100
    assert result["n"] == int(selected.sum())
    expected = F.cross_entropy(logits, labels, ignore_index=-100).item()
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    accuracy = (logits[selected].argmax(-1) == labels[selected]).float().mean().item()
    assert result["accuracy"] == pytest.approx(accuracy)
    assert evaluate(model, sentences, vocab, seed=5, batch_size=40) == result


# --- the shipped checkpoint ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pretrained() -> tuple[TinyMLM, Vocabulary]:
    return load_pretrained()


def test_checkpoint_is_small_and_loads_on_cpu_in_eval_mode(pretrained) -> None:
    model, vocab = pretrained
    path = files("mlmcourse").joinpath("data", "tinymlm.pt")
    assert path.stat().st_size < 3_000_000
    assert not model.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert vocab.tokens == Vocabulary.from_corpus().tokens
    assert model.config["vocab_size"] == len(vocab)


def test_pretrained_beats_the_uniform_distribution_on_held_out_sentences(pretrained) -> None:
    model, vocab = pretrained
    _, test = split_corpus()
    result = evaluate(model, test, vocab)
    uniform = math.log(len(vocab))  # the loss of Pr_i = 1/V for every token
    assert result["n"] > 300
    assert result["loss"] < 0.35 * uniform, (result, uniform)
    assert result["accuracy"] > 0.55, result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the cat sat on the [MASK] .", "mat"),
        ("the [MASK] sat on the mat .", "cat"),
        ("the chef seasoned the [MASK] with salt .", "soup"),
    ],
)
def test_pretrained_predicts_the_running_examples(pretrained, text: str, expected: str) -> None:
    model, vocab = pretrained
    position = vocab.encode(text).index(vocab.mask_id)
    probs = predicted_distribution(model, text, position, vocab)
    assert vocab.id_to_token(int(probs.argmax())) == expected
    assert probs[vocab.token_to_id(expected)] > 0.5


# --- the `mlmcourse train` sub-command -------------------------------------------------------
def test_train_command_writes_a_checkpoint_in_the_current_directory(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlmcourse.cli import main
    from mlmcourse.model import load_checkpoint

    shipped = files("mlmcourse").joinpath("data", "tinymlm.pt")
    shipped_before = shipped.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--steps", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "held-out" in out and "accuracy" in out and "log V = 6.3" in out
    model, vocab = load_checkpoint(tmp_path / "tinymlm.pt")
    assert model.config["vocab_size"] == len(vocab) == len(Vocabulary.from_corpus())
    assert shipped.read_bytes() == shipped_before


def test_train_command_rejects_bad_options(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlmcourse.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--steps", "0"])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "missing" / "m.pt")]) == 2
    assert "does not exist" in capsys.readouterr().out


def test_sentences_without_a_maskable_word_are_rejected(vocab: Vocabulary) -> None:
    with pytest.raises(ValueError, match="no vocabulary word that could be selected, e.g. 'zebra'"):
        train(_small_model(vocab), ["the cat sat", "zebra"], vocab, steps=1, progress=False)


def test_training_loss_equals_mlm_loss_over_all_positions_in_value_and_gradient(
    vocab: Vocabulary,
) -> None:
    from mlmcourse.train import _selected_loss

    model = _small_model(vocab).eval()  # no dropout: both losses see the same network
    input_ids, attention_mask = vocab.encode_batch(SENTENCES[:16])
    generator = torch.Generator().manual_seed(3)
    corrupted, labels = mask_tokens(
        input_ids, mask_id=vocab.mask_id, vocab_size=len(vocab),
        special_ids=vocab.special_ids, generator=generator,
    )
    shortcut = _selected_loss(model, corrupted, attention_mask, labels)
    shortcut_grads = torch.autograd.grad(shortcut, list(model.parameters()), allow_unused=True)
    full = F.cross_entropy(
        model(corrupted, attention_mask).flatten(0, 1), labels.flatten(), ignore_index=-100
    )
    full_grads = torch.autograd.grad(full, list(model.parameters()), allow_unused=True)
    assert torch.allclose(shortcut, full, atol=1e-6)
    for a, b in zip(shortcut_grads, full_grads, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            assert torch.allclose(a, b, atol=1e-6)
