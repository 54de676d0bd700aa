"""The explorers' Python mirrors agree with independent references (torch.softmax, -log), and
their browser front ends (run here with node) compute the same numbers and the same fates."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from mlmcourse.masking import Fate
from mlmcourse.widgets import (
    LowestLossExplorer,
    MaskingSampler,
    MaskPredictExplorer,
    SoftmaxExplorer,
)
from mlmcourse.widgets.prng import corrupt, mulberry32, sample_fates

WIDGETS = Path(__file__).resolve().parents[2] / "mlmcourse" / "widgets"
SENTENCE = "[CLS] the cat sat on the mat because it was tired [SEP]".split()


def _reference(logits: list[float], true_index: int, temperature: float) -> tuple[list, float]:
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float64) / temperature, dim=-1)
    return probs.tolist(), -math.log(probs[true_index].item())


def test_softmax_explorer_mirrors_probs_and_loss() -> None:
    w = SoftmaxExplorer(["cat", "dog", "mat", "sat"], [2.0, 1.0, 0.5, -1.0], true_index=0)
    probs, loss = _reference([2.0, 1.0, 0.5, -1.0], 0, 1.0)
    assert w.probs == pytest.approx(probs, abs=1e-12)
    assert w.loss == pytest.approx(loss, abs=1e-12)

    w.logits = [0.0, 3.0, 0.5, -1.0]
    w.temperature = 0.5
    w.true_index = 1
    probs, loss = _reference([0.0, 3.0, 0.5, -1.0], 1, 0.5)
    assert w.probs == pytest.approx(probs, abs=1e-12)
    assert w.loss == pytest.approx(loss, abs=1e-12)
    assert sum(w.probs) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tokens": ["a", "b"], "logits": [1.0], "true_index": 0}, "one logit per token"),
        ({"tokens": ["a", "b"], "logits": [1.0, 2.0], "true_index": 2}, "true_index=2"),
        ({"tokens": ["a"], "logits": [1.0], "true_index": 0, "temperature": 0.0}, "> 0"),
    ],
)
def test_softmax_explorer_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SoftmaxExplorer(**kwargs)


def test_lowest_loss_explorer_mirrors_losses() -> None:
    candidates = {"A": [0.6, 0.3, 0.1], "B": [0.5, 0.1, 0.4], "C": [0.7, 0.2, 0.1]}
    w = LowestLossExplorer(["cat", "dog", "mat"], candidates, true_index=0)
    assert w.losses == pytest.approx({k: -math.log(p[0]) for k, p in candidates.items()})
    assert w.lowest == "C"
    w.picked = "B"
    assert w.picked == "B"
    w.true_index = 2
    assert w.losses == pytest.approx({k: -math.log(p[2]) for k, p in candidates.items()})
    assert w.lowest == "B"
    with pytest.raises(Exception, match="not a candidate"):
        w.picked = "Z"


def test_lowest_loss_explorer_follows_an_edited_candidate() -> None:
    """What the edit slider does in the browser: the true token's share changes, the rest keep
    their proportions; the losses and the lowest candidate follow."""
    w = LowestLossExplorer(["cat", "dog", "mat"], {"A": [0.6, 0.3, 0.1], "B": [0.5, 0.1, 0.4]}, 0)
    assert w.lowest == "A"
    w.candidates = {**w.candidates, "B": [0.8, 0.04, 0.16]}
    assert w.losses["B"] == pytest.approx(-math.log(0.8))
    assert w.lowest == "B"


def test_lowest_loss_explorer_rejects_an_invalid_distribution() -> None:
    with pytest.raises(ValueError, match="sum"):
        LowestLossExplorer(["a", "b"], {"A": [0.6, 0.6]}, true_index=0)


def test_masking_sampler_mirrors_the_fates() -> None:
    w = MaskingSampler(SENTENCE, seed=7)
    latest = sample_fates(SENTENCE, 0.15, 0.8, 0.1, seed=7, draws=1)[-1]
    assert w.fates == [int(f) for f in latest.fates]
    w.resample(3)
    assert w.draws == 4
    latest = sample_fates(SENTENCE, 0.15, 0.8, 0.1, seed=7, draws=4)[-1]
    assert w.fates == [int(f) for f in latest.fates]
    for token, fate, shown, label in zip(SENTENCE, w.fates, w.corrupted, w.labels, strict=True):
        assert (fate == Fate.MASKED) == (shown == "[MASK]")
        assert label == ("-100" if fate == Fate.NOT_SELECTED else token)
        if fate in (Fate.NOT_SELECTED, Fate.UNCHANGED):
            assert shown == token
    assert w.fates[0] == w.fates[-1] == Fate.NOT_SELECTED  # [CLS] and [SEP] are never selected


def test_masking_sampler_draws_random_replacements_from_the_vocabulary() -> None:
    from mlmcourse.vocab import Vocabulary

    vocab = Vocabulary.from_corpus()
    w = MaskingSampler(SENTENCE, seed=3, mlm_probability=1.0, mask_prob=0.0, random_prob=1.0)
    assert w.replacements == [t for t in vocab.tokens if not t.startswith("[")]
    w.resample(20)
    shown = {t for t, f in zip(w.corrupted, w.fates, strict=True) if f == Fate.RANDOM}
    assert shown and shown <= set(w.replacements)
    assert not shown <= set(SENTENCE)  # not only the sentence's own words
    small = MaskingSampler(SENTENCE, vocab=["[PAD]", "ant", "bee"])
    assert small.replacements == ["ant", "bee"]
    with pytest.raises(ValueError, match="no ordinary token"):
        MaskingSampler(SENTENCE, vocab=["[PAD]"])


def test_masking_sampler_follows_its_seed() -> None:
    w = MaskingSampler(SENTENCE, seed=7)
    w.seed = 11
    assert w.fates == [int(f) for f in sample_fates(SENTENCE, 0.15, 0.8, 0.1, 11, 1)[-1].fates]


def test_masking_sampler_counts_approach_the_expected_shares() -> None:
    w = MaskingSampler(SENTENCE, seed=1)
    w.resample(1999)
    c = w.counts
    assert c["eligible"] == 10 * 2000
    assert c["selected"] == c["masked"] + c["random"] + c["unchanged"]
    assert c["selected"] / c["eligible"] == pytest.approx(0.15, abs=0.01)
    assert c["masked"] / c["selected"] == pytest.approx(0.8, abs=0.03)
    assert c["random"] / c["selected"] == pytest.approx(0.1, abs=0.03)
    w.mlm_probability = 1.0
    w.mask_prob = 1.0
    assert set(w.fates[1:-1]) == {Fate.MASKED}


def _node(tmp_path: Path, script: str, data: object, unavailable) -> object:
    """Run ``script`` (an ES module; ``data`` is its argv[2] as JSON) next to the front ends."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed; it runs the explorers' ES modules")
    for name in ("masking_sampler.js", "softmax_explorer.js", "lowest_loss_explorer.js"):
        shutil.copy(WIDGETS / name, tmp_path / name.replace(".js", ".mjs"))
    (tmp_path / "run.mjs").write_text(script)
    done = subprocess.run(
        [node, "run.mjs", json.dumps(data)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_js_and_python_prngs_agree(tmp_path: Path, unavailable) -> None:
    seeds = [0, 1, 42, 2**31 - 1, 2**32 - 1]
    script = """
import { mulberry32 } from "./masking_sampler.mjs";
const seeds = JSON.parse(process.argv[2]);
console.log(JSON.stringify(seeds.map((s) => {
  const next = mulberry32(s);
  return Array.from({ length: 500 }, () => next());
})));
"""
    from_js = _node(tmp_path, script, seeds, unavailable)
    for seed, values in zip(seeds, from_js, strict=True):
        rng = mulberry32(seed)
        assert [next(rng) for _ in range(500)] == values


def test_js_and_python_fates_and_corruption_agree(tmp_path: Path, unavailable) -> None:
    settings = {"seed": 5, "mlm_probability": 0.4, "mask_prob": 0.6, "random_prob": 0.25}
    pool = sorted(set(SENTENCE[1:-1]))
    script = """
import { sampleFates, corrupt, isSpecial } from "./masking_sampler.mjs";
const { tokens, pool, settings } = JSON.parse(process.argv[2]);
const all = sampleFates(tokens.length, tokens.map(isSpecial), settings, 50);
const shown = all.map((r) => ({ fates: r.fates, ...corrupt(tokens, r.fates, r.picks, pool) }));
console.log(JSON.stringify(shown));
"""
    data = {"tokens": SENTENCE, "pool": pool, "settings": settings}
    from_js = _node(tmp_path, script, data, unavailable)
    from_py = sample_fates(
        SENTENCE,
        settings["mlm_probability"],
        settings["mask_prob"],
        settings["random_prob"],
        settings["seed"],
        draws=50,
    )
    assert len(from_js) == len(from_py) == 50
    for js, py in zip(from_js, from_py, strict=True):
        corrupted, labels = corrupt(SENTENCE, py, pool)
        assert js == {"fates": [int(f) for f in py.fates], "corrupted": corrupted, "labels": labels}
    assert {f for js in from_js for f in js["fates"]} == {0, 1, 2, 3}


def test_js_softmax_and_losses_match_python(tmp_path: Path, unavailable) -> None:
    script = """
import { softmax, tokenLoss } from "./softmax_explorer.mjs";
import { candidateLosses } from "./lowest_loss_explorer.mjs";
const p = softmax([2, 1, 0.5, -1, 1e4 / 1e3], 0.7);
console.log(JSON.stringify({ p, loss: tokenLoss(p, 1),
  losses: candidateLosses({ A: [0.6, 0.4], B: [0.2, 0.8] }, 1) }));
"""
    js = _node(tmp_path, script, None, unavailable)
    w = SoftmaxExplorer(list("abcde"), [2, 1, 0.5, -1, 10.0], true_index=1, temperature=0.7)
    assert js["p"] == pytest.approx(w.probs, abs=1e-15)
    assert js["loss"] == pytest.approx(w.loss, abs=1e-12)
    ll = LowestLossExplorer(["x", "y"], {"A": [0.6, 0.4], "B": [0.2, 0.8]}, true_index=1)
    assert js["losses"] == pytest.approx(ll.losses, abs=1e-15)


def _tiny_model():
    from mlmcourse.model import TinyMLM
    from mlmcourse.vocab import Vocabulary

    vocab = Vocabulary("the cat sat on mat dog".split())
    torch.manual_seed(0)
    return TinyMLM(len(vocab), d_model=16, n_heads=2, n_layers=1).eval(), vocab


def test_mask_predict_explorer_updates_when_a_word_is_toggled() -> None:
    from mlmcourse.model import predicted_distribution

    model, vocab = _tiny_model()
    w = MaskPredictExplorer("the cat sat on the mat", model=model, vocab=vocab, k=3)
    assert w.masked == [] and w.predictions == []
    assert "Click a word" in w.output.value
    w.toggles[1].value = True  # mask "cat"
    assert w.corrupted_text() == "the [MASK] sat on the mat"
    (pred,) = w.predictions
    probs = predicted_distribution(model, "the [MASK] sat on the mat", 2, vocab)
    assert pred.position == 2 and pred.word == "cat"
    assert pred.true_probability == pytest.approx(probs[vocab.token_to_id("cat")].item())
    assert pred.loss == pytest.approx(-math.log(pred.true_probability))
    assert [t for t, _ in pred.top] == [vocab.id_to_token(i) for i in probs.topk(3).indices]
    assert f"{pred.loss:.3f}" in w.output.value
    w.toggles[5].value = True
    assert [p.position for p in w.predictions] == [2, 6]
    w.toggles[1].value = False
    assert [p.word for p in w.predictions] == ["mat"]


def test_mask_predict_explorer_uses_the_pretrained_model() -> None:
    try:
        w = MaskPredictExplorer("the cat sat on the mat .", masked=[1])
    except FileNotFoundError as missing:
        pytest.skip(f"the pretrained checkpoint is not there yet: {missing}")
    (pred,) = w.predictions
    assert pred.word == "cat" and 0.0 < pred.true_probability <= 1.0
    assert len(pred.top) == 5
    assert "mlm-mask-predict" in w._dom_classes


def test_mask_predict_note_hides_itself_when_a_kernel_answers() -> None:
    """The browser pings the note's model; only a live kernel answers, and the note then hides."""
    model, vocab = _tiny_model()
    w = MaskPredictExplorer("the cat sat", model=model, vocab=vocab)
    sent = []
    w.note.send = sent.append
    w.note._handle_custom_msg({"kind": "ping"}, [])
    assert sent == [{"kind": "live"}]
    assert "needs a live kernel" in w.note.text
