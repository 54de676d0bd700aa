"""The misconception submissions of each exercise: one per wrong option and per coding mistake.

Each :class:`~cases.variants.Variant` writes one mistake into the solution (a text
edit of a code answer, or a wrong multiple-choice or numeric answer) and names the test cells it
must fail and the misconception code each failure must carry.
"""

from __future__ import annotations

from cases.variants import Variant


def _choices(grade_id: str, test_id: str, wrong: dict[str, str]) -> list[Variant]:
    """One variant per wrong answer of a multiple-choice or numeric question.

    ``wrong`` maps the answer's Python source (e.g. ``'"A"'`` or ``'450'``) to its misconception.
    """
    return [
        Variant(
            f"{grade_id}.{number}-{code}",
            fails={test_id: code},
            cells={grade_id: f"{grade_id} = {answer}"},
        )
        for number, (answer, code) in enumerate(wrong.items(), start=1)
    ]


_CORRUPT = "corrupt"
_EX2 = [
    Variant(  # [UNK] and [MASK] inside the text taken for words
        "selects-unk-and-mask",
        fails={"test_corrupt_selection": "selects-special-tokens"},
        edits={
            _CORRUPT: (
                (
                    "special = torch.isin(ids, torch.tensor(SPECIAL_IDS))",
                    "special = torch.isin(ids, torch.tensor([PAD_ID, CLS_ID, SEP_ID]))",
                ),
            )
        },
    ),
    Variant(  # the selection's random number also decides the fate: right only at rate 1
        "fate-from-selection-number",
        fails={"test_corrupt_replacement": "always-mask-token"},
        edits={
            _CORRUPT: (
                (
                    "fate = torch.rand(ids.shape, generator=generator)",
                    "fate = torch.rand(ids.shape, generator=generator)\n"
                    "    draw = torch.rand(ids.shape, generator=generator)\n"
                    "    selected = (draw < mlm_probability) & ~special\n"
                    "    fate = draw",
                ),
            )
        },
    ),
    Variant(  # the masking writes into the caller's tensor (input_ids.long() is input_ids)
        "modifies-input",
        fails=dict.fromkeys(
            ("test_corrupt_basics", "test_corrupt_selection", "test_corrupt_replacement"),
            "modifies-input",
        ),
        edits={
            _CORRUPT: (
                ("corrupted_ids = ids.clone()", "original = ids.clone()\n    corrupted_ids = ids"),
                ("labels[selected] = ids[selected]", "labels[selected] = original[selected]"),
            )
        },
    ),
    Variant(  # a fixed share of every sequence (BERT's recipe), not one draw per word
        "fixed-count-per-row",
        fails={"test_corrupt_selection": "selection-not-independent"},
        edits={
            _CORRUPT: (
                (
                    "selected = (torch.rand(ids.shape, generator=generator) < mlm_probability)"
                    " & ~special",
                    "selected = torch.zeros_like(special)\n"
                    "    for row in range(ids.shape[0]):\n"
                    "        words = (~special[row]).nonzero().flatten()\n"
                    "        count = round(mlm_probability * len(words))\n"
                    "        order = torch.randperm(len(words), generator=generator)\n"
                    "        selected[row, words[order[:count]]] = True",
                ),
            )
        },
    ),
    Variant(  # a generator seeded afresh for every sequence: every row draws the same numbers
        "same-selection-every-row",
        fails={"test_corrupt_selection": "selection-not-independent"},
        edits={
            _CORRUPT: (
                (
                    "selected = (torch.rand(ids.shape, generator=generator) < mlm_probability)",
                    "rows = [torch.Generator().manual_seed(seed) for _ in range(len(ids))]\n"
                    "    width = ids.shape[1]\n"
                    "    draws = torch.stack([torch.rand(width, generator=r) for r in rows])\n"
                    "    selected = (draws < mlm_probability)",
                ),
            )
        },
    ),
    Variant(
        "ignores-seed",
        fails={"test_corrupt_basics": "ignores-seed"},
        edits={
            _CORRUPT: (("generator = torch.Generator().manual_seed(seed)", "generator = None"),)
        },
    ),
    Variant(
        "selects-special-tokens",
        fails={"test_corrupt_selection": "selects-special-tokens"},
        edits={_CORRUPT: (("torch.isin(ids, torch.tensor(SPECIAL_IDS))", "ids == PAD_ID"),)},
    ),
    Variant(
        "counting-padding",
        fails={"test_corrupt_selection": "counting-padding"},
        edits={
            _CORRUPT: (("torch.tensor(SPECIAL_IDS)", "torch.tensor([CLS_ID, SEP_ID, MASK_ID])"),)
        },
    ),
    Variant(
        "always-mask-token",
        fails={"test_corrupt_replacement": "always-mask-token"},
        edits={
            _CORRUPT: (
                ("masked = selected & (fate < 0.8)", "masked = selected"),
                (
                    "randomised = selected & (fate >= 0.8) & (fate < 0.9)",
                    "randomised = torch.zeros_like(selected)",
                ),
            )
        },
    ),
    Variant(
        "labels-only-on-mask",
        fails={"test_corrupt_selection": "labels-only-on-mask"},
        edits={_CORRUPT: (("labels[selected] = ids[selected]", "labels[masked] = ids[masked]"),)},
    ),
    Variant(
        "labels-on-all-positions",
        fails={"test_corrupt_selection": "labels-on-all-positions"},
        edits={
            _CORRUPT: (("labels = torch.full_like(ids, IGNORE_INDEX)", "labels = ids.clone()"),)
        },
    ),
    Variant(
        "labels-from-corrupted-input",
        fails={"test_corrupt_selection": "labels-from-corrupted-input"},
        edits={
            _CORRUPT: (
                ("labels[selected] = ids[selected]", "labels[selected] = corrupted_ids[selected]"),
            )
        },
    ),
    Variant(
        "selection-rate",
        fails={"test_corrupt_selection": "selection-rate"},
        edits={_CORRUPT: (("< mlm_probability", "< 0.15"),)},
    ),
    Variant(
        "random-positions-unlabelled",
        fails={"test_corrupt_selection": "random-positions-unlabelled"},
        edits={
            _CORRUPT: (
                (
                    "labels[selected] = ids[selected]",
                    "labels[selected & ~randomised] = ids[selected & ~randomised]",
                ),
            )
        },
    ),
    Variant(
        "unchanged-positions-unlabelled",
        fails={"test_corrupt_selection": "unchanged-positions-unlabelled"},
        edits={
            _CORRUPT: (
                (
                    "labels[selected] = ids[selected]",
                    "labels[masked | randomised] = ids[masked | randomised]",
                ),
            )
        },
    ),
    Variant(
        "random-special-token",
        fails={"test_corrupt_replacement": "random-special-token"},
        edits={
            _CORRUPT: (("torch.randint(first_word, VOCAB_SIZE", "torch.randint(0, VOCAB_SIZE"),)
        },
    ),
    Variant(
        "eighty-percent-of-all-tokens",
        fails={"test_corrupt_selection": "eighty-percent-of-all-tokens"},
        edits={
            _CORRUPT: (("masked = selected & (fate < 0.8)", "masked = ~special & (fate < 0.8)"),)
        },
    ),
    *_choices(
        "answer_unchanged",
        "test_answer_unchanged",
        {
            '"A"': "unchanged-positions-skipped",
            '"C"': "copying-is-the-goal",
            '"D"': "eighty-percent-of-all-tokens",
        },
    ),
    *_choices(
        "answer_n_mask",
        "test_answer_n_mask",
        {"450": "always-mask-token", "2400": "eighty-percent-of-all-tokens"},
    ),
]

_VALID = "is_valid_distribution"
_EX3 = [
    Variant(
        "temperature-multiplied",
        fails={"test_softmax": "temperature-multiplied"},
        edits={"softmax": (("logits / temperature", "logits * temperature"),)},
    ),
    Variant(
        "temperature-ignored",
        fails={"test_softmax": "temperature-no-effect"},
        edits={"softmax": (("logits / temperature", "logits"),)},
    ),
    Variant(
        "global-max-shift",
        fails={"test_softmax_large_logits": "global-max-shift"},
        edits={"softmax": (("scaled.amax(dim=-1, keepdim=True)", "scaled.max()"),)},
    ),
    Variant(
        "zero-probability-invalid",
        fails={"test_is_valid_distribution": "zero-probability-invalid"},
        edits={_VALID: (("if (probs < 0).any():", "if (probs <= 0).any():"),)},
    ),
    Variant(
        "vocabulary-axis-first",
        fails={"test_is_valid_distribution": "normalise-wrong-axis"},
        edits={_VALID: (("probs.shape[-1] != vocab_size", "probs.shape[0] != vocab_size"),)},
    ),
    Variant(
        "normalise-wrong-axis",
        fails={"test_softmax": "normalise-wrong-axis"},  # stable: no second penalty
        edits={"softmax": (("dim=-1", "dim=0"),)},
    ),
    Variant(
        "normalise-without-exp",
        # logits divided by their sum are not shift invariant: both tests name it
        fails=dict.fromkeys(("test_softmax", "test_softmax_large_logits"), "normalise-without-exp"),
        edits={"softmax": (("exp = shifted.exp()", "exp = scaled"),)},
    ),
    Variant(
        "softmax-overflow",
        fails={"test_softmax_large_logits": "softmax-overflow"},
        edits={"softmax": (("scaled - scaled.amax(dim=-1, keepdim=True)", "scaled"),)},
    ),
    Variant(  # the mean of the row sums is 1, each row need not be
        "mean-of-row-sums",
        fails={"test_is_valid_distribution": "checks-total-sum"},
        edits={
            _VALID: (
                (
                    "return bool(((probs.sum(dim=-1) - 1).abs() <= 1e-6).all())",
                    "return bool((probs.sum(dim=-1).mean() - 1).abs() <= 1e-6)",
                ),
            )
        },
    ),
    Variant(
        "negative-probability",
        fails={"test_is_valid_distribution": "negative-probability"},
        edits={"is_valid_distribution": (("if (probs < 0).any():", "if False:"),)},
    ),
    Variant(
        "sum-above-one",
        fails={"test_is_valid_distribution": "sum-above-one"},
        edits={
            "is_valid_distribution": (
                (
                    "return bool(((probs.sum(dim=-1) - 1).abs() <= 1e-6).all())",
                    "return bool((probs <= 1).all())",
                ),
            )
        },
    ),
    Variant(
        "missing-vocabulary-word",
        fails={"test_is_valid_distribution": "missing-vocabulary-word"},
        edits={"is_valid_distribution": (("if probs.shape[-1] != vocab_size:", "if False:"),)},
    ),
    Variant(
        "checks-total-sum",
        fails={"test_is_valid_distribution": "checks-total-sum"},
        edits={"is_valid_distribution": (("probs.sum(dim=-1)", "probs.sum()"),)},
    ),
    Variant(
        "exact-float-equality",
        fails={"test_is_valid_distribution": "exact-float-equality"},
        edits={
            "is_valid_distribution": (
                (
                    "((probs.sum(dim=-1) - 1).abs() <= 1e-6).all()",
                    "(probs.sum(dim=-1) == 1).all()",
                ),
            )
        },
    ),
    *_choices(
        "answer_valid_distribution",
        "test_answer_valid_distribution",
        {
            '"A"': "negative-probability",
            '"B"': "distribution-over-positions",
            '"D"': "sum-above-one",
            '"E"': "missing-vocabulary-word",
        },
    ),
    *_choices(
        "answer_temperature",
        "test_answer_temperature",
        {
            '"B"': "temperature-direction",
            '"C"': "temperature-no-effect",
            '"D"': "temperature-changes-argmax",
        },
    ),
]

_TOKEN_RETURN = "return float(-log_probs[target])"
_EX4 = [
    Variant(
        "dropped-minus-sign",
        fails={"test_token_cross_entropy": "dropped-minus-sign"},
        edits={"token_cross_entropy": ((_TOKEN_RETURN, "return float(log_probs[target])"),)},
    ),
    Variant(
        "log-base-10",
        fails={"test_token_cross_entropy": "log-base-10"},
        edits={
            "token_cross_entropy": (
                (_TOKEN_RETURN, "return float(-log_probs[target]) / math.log(10)"),
            )
        },
    ),
    Variant(
        "probability-not-log",
        fails={"test_token_cross_entropy": "probability-not-log"},
        edits={
            "token_cross_entropy": ((_TOKEN_RETURN, "return float(1 - log_probs[target].exp())"),)
        },
    ),
    Variant(
        "skips-softmax",  # not a softmax, so not shift invariant either: both tests name it
        fails=dict.fromkeys(
            ("test_token_cross_entropy", "test_token_cross_entropy_large_logits"), "skips-softmax"
        ),
        edits={"token_cross_entropy": ((_TOKEN_RETURN, "return float(-logits[target])"),)},
    ),
    Variant(
        "log-of-softmax-underflow",
        fails={"test_token_cross_entropy_large_logits": "log-of-softmax-underflow"},
        edits={
            "token_cross_entropy": (
                (
                    "log_probs = shifted - shifted.exp().sum().log()",
                    "log_probs = torch.log(shifted.exp() / shifted.exp().sum())",
                ),
            )
        },
    ),
    Variant(
        "cross-entropy-arguments-swapped",
        fails={"test_cross_entropy": "cross-entropy-arguments-swapped"},
        edits={
            "cross_entropy": (
                ("-(p_gold[keep] * probs[keep].log()).sum()", "-(probs * p_gold.log()).sum()"),
            )
        },
    ),
    Variant(
        "log-base-2",
        fails={"test_token_cross_entropy": "log-base-2"},
        edits={
            "token_cross_entropy": (
                (_TOKEN_RETURN, "return float(-log_probs[target]) / math.log(2)"),
            )
        },
    ),
    Variant(
        "uses-top-prediction",
        fails={"test_token_cross_entropy": "uses-top-prediction"},
        edits={"token_cross_entropy": ((_TOKEN_RETURN, "return float(-log_probs.max())"),)},
    ),
    Variant(
        "softmax-overflow",
        fails={"test_token_cross_entropy_large_logits": "softmax-overflow"},
        edits={"token_cross_entropy": (("shifted = logits - logits.max()", "shifted = logits"),)},
    ),
    Variant(
        "zero-weight-terms",
        fails={"test_cross_entropy": "zero-weight-terms"},
        edits={
            "cross_entropy": (
                ("-(p_gold[keep] * probs[keep].log()).sum()", "-(p_gold * probs.log()).sum()"),
            )
        },
    ),
    Variant(
        "cross-entropy-dropped-minus-sign",
        fails={"test_cross_entropy": "dropped-minus-sign"},
        edits={"cross_entropy": (("float(-(p_gold[keep]", "float((p_gold[keep]"),)},
    ),
    *_choices(
        "answer_lowest_loss",
        "test_answer_lowest_loss",
        {
            '"A"': "margin-not-probability",  # the widest gap to the runner-up
            '"B"': "confident-means-low-loss",
            '"D"': "spread-changes-loss",  # the rest of the mass shared most evenly
        },
    ),
    *_choices(
        "answer_loss",
        "test_answer_loss",
        {
            "math.log(0.6)": "dropped-minus-sign",
            "-math.log10(0.6)": "log-base-10",
            "-math.log2(0.6)": "log-base-2",
            "0.4": "loss-is-missing-mass",
            "0.6": "probability-not-log",
        },
    ),
    *_choices(
        "answer_interpretation",
        "test_answer_interpretation",
        {
            '"A"': "top-prediction-zero-loss",
            '"B"': "loss-is-missing-mass",
            '"C"': "spread-changes-loss",
        },
    ),
]

_LOSS = "masked_lm_loss"
_BOTH = ("test_loss_sum", "test_loss_mean")
_EX5 = [
    Variant(
        "dropped-minus-sign",
        fails=dict.fromkeys(_BOTH, "dropped-minus-sign"),
        edits={_LOSS: (("total = -true_log_probs.sum()", "total = true_log_probs.sum()"),)},
    ),
    Variant(
        "sum-mean-swapped",
        fails=dict.fromkeys(_BOTH, "sum-mean-swapped"),
        edits={_LOSS: (('if reduction == "sum":', 'if reduction == "mean":'),)},
    ),
    Variant(
        "log-base-2",
        fails=dict.fromkeys(_BOTH, "log-base-2"),
        edits={
            _LOSS: (
                ("total = -true_log_probs.sum()", "total = -true_log_probs.sum() / math.log(2)"),
            )
        },
    ),
    Variant(  # softmax over the sequences of the batch (axis 0), not over the vocabulary
        "normalise-over-batch",
        fails=dict.fromkeys(_BOTH, "normalise-wrong-axis"),
        edits={
            _LOSS: (
                (
                    "torch.log_softmax(logits[in_loss], dim=-1)",
                    "torch.log_softmax(logits, dim=0)[in_loss]",
                ),
            )
        },
    ),
    Variant(  # the logits taken as log-probabilities (right on the visible worked example,
        # whose logits are log-probabilities)
        "skips-softmax",
        fails=dict.fromkeys(_BOTH, "skips-softmax"),
        edits={
            _LOSS: (
                (
                    "log_probs = torch.log_softmax(logits[in_loss], dim=-1)",
                    "log_probs = logits[in_loss]",
                ),
            )
        },
    ),
    Variant(  # stable, and bounded for large logits: it loses no stability point
        "uses-top-prediction",
        fails=dict.fromkeys(_BOTH, "uses-top-prediction"),
        edits={_LOSS: (("labels[in_loss].unsqueeze(-1)", "log_probs.argmax(-1, keepdim=True)"),)},
    ),
    Variant(
        "loss-is-missing-mass",
        fails=dict.fromkeys(_BOTH, "loss-is-missing-mass"),
        edits={
            _LOSS: (("total = -true_log_probs.sum()", "total = (1 - true_log_probs.exp()).sum()"),)
        },
    ),
    Variant(
        "probability-not-log",
        fails=dict.fromkeys(_BOTH, "probability-not-log"),
        edits={_LOSS: (("total = -true_log_probs.sum()", "total = true_log_probs.exp().sum()"),)},
    ),
    Variant(
        "averaging-over-all-positions",
        fails={"test_loss_mean": "averaging-over-all-positions"},
        edits={_LOSS: (("return total / n_selected", "return total / labels.numel()"),)},
    ),
    Variant(
        "off-by-one-from-cls",
        fails=dict.fromkeys(_BOTH, "off-by-one-from-cls"),
        edits={
            _LOSS: (
                ("in_loss = labels != IGNORE_INDEX", "in_loss = labels[:, :-1] != IGNORE_INDEX"),
                ("logits[in_loss]", "logits[:, 1:][in_loss]"),
                ("labels[in_loss]", "labels[:, :-1][in_loss]"),
            )
        },
    ),
    Variant(
        "normalise-wrong-axis",
        fails=dict.fromkeys(_BOTH, "normalise-wrong-axis"),
        edits={
            _LOSS: (
                (
                    "torch.log_softmax(logits[in_loss], dim=-1)",
                    "torch.log_softmax(logits, dim=1)[in_loss]",
                ),
            )
        },
    ),
    Variant(
        "log-of-softmax-underflow",
        fails={"test_loss_large_logits": "log-of-softmax-underflow"},
        edits={
            _LOSS: (
                (
                    "torch.log_softmax(logits[in_loss], dim=-1)",
                    "torch.log(torch.softmax(logits[in_loss], dim=-1))",
                ),
            )
        },
    ),
    Variant(
        "mean-of-sequence-means",
        fails={"test_loss_mean": "mean-of-sequence-means"},
        edits={
            _LOSS: (
                (
                    "return total / n_selected",
                    "per_row = -(log_probs.gather(-1, labels[in_loss].unsqueeze(-1)).squeeze(-1))\n"
                    "    rows = in_loss.nonzero()[:, 0]\n"
                    "    sums = per_row.new_zeros(labels.shape[0]).index_add(0, rows, per_row)\n"
                    "    counts = in_loss.sum(dim=1)\n"
                    "    return (sums[counts > 0] / counts[counts > 0]).mean()",
                ),
            )
        },
    ),
    Variant(
        "divides-by-batch-size",
        fails={"test_loss_mean": "divides-by-batch-size"},
        edits={_LOSS: (("return total / n_selected", "return total / labels.shape[0]"),)},
    ),
    Variant(
        "batch-log-base-10",
        fails=dict.fromkeys(_BOTH, "log-base-10"),
        edits={
            _LOSS: (
                ("total = -true_log_probs.sum()", "total = -true_log_probs.sum() / math.log(10)"),
            )
        },
    ),
    *_choices(
        "answer_single_token", "test_answer_single_token", {'"True"': "single-token-objective"}
    ),
    *_choices(
        "answer_n_terms",
        "test_answer_n_terms",
        {
            "1": "single-token-objective",
            "19": "unmasked-positions-in-loss",
            "28": "counting-padding",
        },
    ),
    *_choices(
        "answer_reported",
        "test_answer_reported",
        {
            "0.15": "averaging-over-all-positions",
            "6.0": "sum-mean-swapped",
            "3.0": "mean-over-sequences",
        },
    ),
]

_EX6 = [
    Variant(  # updates the caller's dict and hands it back instead of a new one
        "sgd-returns-mutated-params",
        fails={"test_sgd_step": "modifies-input"},
        cells={
            "sgd_step": "def sgd_step(params, grads, lr):\n"
            "    for name in params:\n"
            "        params[name] = params[name] - lr * grads[name]\n"
            "    return params\n"
        },
    ),
    Variant(  # a new dict, but every tensor updated in place
        "sgd-in-place-tensors",
        fails={"test_sgd_step": "modifies-input"},
        cells={
            "sgd_step": "def sgd_step(params, grads, lr):\n"
            "    return {name: value.sub_(lr * grads[name]) for name, value in params.items()}\n"
        },
    ),
    Variant(
        "gradient-ascent",
        fails={"test_sgd_step": "gradient-ascent"},
        edits={"sgd_step": (("value - lr * grads[name]", "value + lr * grads[name]"),)},
    ),
    Variant(
        "learning-rate-ignored",
        fails={"test_sgd_step": "learning-rate-ignored"},
        edits={"sgd_step": (("value - lr * grads[name]", "value - grads[name]"),)},
    ),
    Variant(
        "averaging-over-all-positions",
        fails={"test_selected_accuracy": "averaging-over-all-positions"},
        edits={
            "selected_accuracy": (
                ("(predicted[in_loss] == labels[in_loss])", "(predicted == labels)"),
            )
        },
    ),
    Variant(
        "argmax-wrong-axis",
        fails={"test_selected_accuracy": "argmax-wrong-axis"},
        edits={"selected_accuracy": (("logits.argmax(dim=-1)", "logits.argmax(dim=1)"),)},
    ),
    Variant(
        "untrained-model",
        fails={"test_trained_model": "untrained-model"},
        edits={"train_model": (("    optimizer.step()\n", ""), ("range(100)", "range(10)"))},
    ),
    Variant(
        "target-loss-not-reached",
        fails={"test_trained_model": "target-loss-not-reached"},
        edits={"train_model": (("range(100)", "range(25)"),)},
    ),
    Variant(
        "state-dict-mismatch",
        fails={"test_trained_model": "state-dict-mismatch"},
        edits={
            "train_model": (
                ("TinyMLM(VOCAB_SIZE)", "TinyMLM(VOCAB_SIZE, d_model=32)"),
                ("range(100)", "range(30)"),
            )
        },
    ),
    Variant(
        "pretrained-weights-handed-in",
        fails={"test_trained_model": "pretrained-weights-handed-in"},
        edits={
            "train_model": (
                (
                    "trained_state = model.state_dict()",
                    "from mlmcourse.model import load_pretrained\n\n"
                    "trained_state = load_pretrained()[0].state_dict()",
                ),
            )
        },
    ),
    Variant(  # the checkpoint with each layer's feed-forward units reordered: every weight
        # moves (the old weight-distance check passed it), no prediction changes
        "pretrained-weights-permuted",
        fails={"test_trained_model": "pretrained-weights-handed-in"},
        edits={
            "train_model": (
                (
                    "trained_state = model.state_dict()",
                    "from mlmcourse.model import load_pretrained\n\n"
                    "trained_state = load_pretrained()[0].state_dict()\n"
                    "for layer in range(2):\n"
                    "    order = torch.randperm(256)\n"
                    "    ffn = f'encoder.layers.layers.{layer}.linear'\n"
                    "    for key in (f'{ffn}1.weight', f'{ffn}1.bias'):\n"
                    "        trained_state[key] = trained_state[key][order]\n"
                    "    second = trained_state[f'{ffn}2.weight']\n"
                    "    trained_state[f'{ffn}2.weight'] = second[:, order]",
                ),
            )
        },
    ),
    Variant(  # the held-out sentences, which measure the model, used to train it
        "trained-on-heldout",
        fails={"test_trained_model": "trained-on-heldout"},
        edits={
            "train_model": (
                (
                    "torch.manual_seed(0)\n",
                    "train_ids, train_mask = vocab.encode_batch(heldout_sentences)\n"
                    "torch.manual_seed(0)\n",
                ),
            )
        },
    ),
    Variant(  # the summed loss of each batch recorded, though the question asks for the mean
        "loss-history-summed",
        fails={"test_trained_model": "loss-history-not-recorded"},
        edits={
            "train_model": (
                (
                    "loss_history.append(loss.item())",
                    "loss_history.append(loss.item() * int((labels != IGNORE_INDEX).sum()))",
                ),
            )
        },
    ),
    Variant(
        "non-finite-parameters",
        fails={"test_trained_model": "non-finite-parameters"},
        edits={
            "train_model": (
                (
                    "trained_state = model.state_dict()",
                    "trained_state = {k: v * float('nan') for k, v in model.state_dict().items()}",
                ),
            )
        },
    ),
    Variant(
        "loss-history-last-only",
        fails={"test_trained_model": "loss-history-not-recorded"},
        edits={
            "train_model": (
                ("    loss_history.append(loss.item())\n", ""),
                (
                    "trained_state = model.state_dict()",
                    "trained_state = model.state_dict()\nloss_history = [loss.item()]",
                ),
            )
        },
    ),
    Variant(
        "loss-history-empty",
        fails={"test_trained_model": "loss-history-not-recorded"},
        edits={"train_model": (("    loss_history.append(loss.item())\n", ""),)},
    ),
    Variant(
        "fresh-model-constant-history",
        fails={"test_trained_model": "untrained-model"},
        edits={
            "train_model": (
                ("range(100)", "range(0)"),
                (
                    "trained_state = model.state_dict()",
                    "trained_state = model.state_dict()\n"
                    "loss_history = [math.log(VOCAB_SIZE)] * 20",
                ),
            )
        },
    ),
    Variant(
        "training-ascends-the-loss",
        fails={"test_trained_model": "gradient-ascent"},
        edits={
            "train_model": (
                ("    loss.backward()", "    (-loss).backward()"),
                ("range(100)", "range(30)"),
            )
        },
    ),
    Variant(
        "accuracy-mean-of-sequence-means",
        fails={"test_selected_accuracy": "mean-of-sequence-means"},
        edits={
            "selected_accuracy": (
                (
                    "return float((predicted[in_loss] == labels[in_loss]).float().mean())",
                    "hits = ((predicted == labels) & in_loss).sum(dim=1).float()\n"
                    "    counts = in_loss.sum(dim=1)\n"
                    "    return float((hits[counts > 0] / counts[counts > 0]).mean())",
                ),
            )
        },
    ),
    *_choices(
        "answer_initial_loss",
        "test_answer_initial_loss",
        {
            "math.log10(VOCAB_SIZE)": "log-base-10",
            "math.log2(VOCAB_SIZE)": "log-base-2",
            "1 / VOCAB_SIZE": "probability-not-log",
        },
    ),
    *_choices(
        "answer_updated",
        "test_answer_updated",
        {
            '"A"': "only-one-part-trained",
            '"B"': "only-one-part-trained",
            '"D"': "loss-only-measures",
        },
    ),
]


_WHOLE = "whole_word_corrupt"
_ECE = "expected_calibration_error"
_EX7 = [
    Variant(  # lesson 2's selection, one draw per piece: a word can be partly selected
        "per-piece-selection",
        fails={"test_whole_word_selection": "splits-words"},
        edits={
            _WHOLE: (
                (
                    "chosen = torch.rand(n_words, generator=generator) < mlm_probability\n"
                    "    selected = torch.tensor([w is not None and bool(chosen[w]) for w in "
                    "word_ids],\n                            dtype=torch.bool)",
                    "chosen = torch.rand(len(word_ids), generator=generator) < mlm_probability\n"
                    "    selected = chosen & torch.tensor([w is not None for w in word_ids])",
                ),
            )
        },
    ),
    Variant(  # a draw per piece, and a word selected when any of its pieces is drawn: a word
        # of several pieces is selected more often than a word of one
        "any-piece-selects-word",
        fails={"test_whole_word_selection": "word-selection-rate"},
        edits={
            _WHOLE: (
                (
                    "chosen = torch.rand(n_words, generator=generator) < mlm_probability\n",
                    "draw = torch.rand(len(word_ids), generator=generator) < mlm_probability\n"
                    "    chosen = torch.zeros(max(n_words, 1), dtype=torch.bool)\n"
                    "    for i, w in enumerate(word_ids):\n"
                    "        if w is not None and draw[i]:\n"
                    "            chosen[w] = True\n",
                ),
            )
        },
    ),
    Variant(  # one fate per word, shared by its pieces
        "fate-per-word",
        fails={"test_whole_word_fates": "fate-per-word"},
        edits={
            _WHOLE: (
                (
                    "fate = torch.rand(ids.shape, generator=generator)",
                    "fate = torch.rand(max(n_words, 1), generator=generator)[\n"
                    "        [0 if w is None else w for w in word_ids]]",
                ),
            )
        },
    ),
    Variant(  # the Hugging Face course's collator: every selected piece becomes [MASK]
        "every-selected-piece-masked",
        fails={"test_whole_word_fates": "always-mask-token"},
        edits={
            _WHOLE: (
                ("masked = selected & (fate < 0.8)", "masked = selected"),
                ("randomised = selected & (fate >= 0.8) & (fate < 0.9)",
                 "randomised = selected & (fate < 0)"),
            )
        },
    ),
    Variant(  # [CLS] and [SEP] (word None) read as word 0
        "special-pieces-as-word-zero",
        fails={"test_whole_word_selection": "selects-special-tokens"},
        edits={
            _WHOLE: (
                ("[w is not None and bool(chosen[w]) for w in word_ids]",
                 "[bool(chosen[0 if w is None else w]) for w in word_ids]"),
            )
        },
    ),
    Variant(  # x̄ written into the caller's tensor (input_ids.long() is input_ids itself)
        "whole-words-in-place",
        fails=dict.fromkeys(
            ("test_whole_word_basics", "test_whole_word_selection", "test_whole_word_fates"),
            "modifies-input",
        ),
        edits={_WHOLE: (("corrupted_ids = ids.clone()", "corrupted_ids = ids"),)},
    ),
    Variant(  # the global random state instead of the seeded generator
        "whole-words-ignores-seed",
        fails={"test_whole_word_basics": "ignores-seed"},
        edits={_WHOLE: (("generator = torch.Generator().manual_seed(seed)", "generator = None"),)},
    ),
    Variant(
        "ece-unweighted-bins",
        fails={"test_calibration_error": "ece-unweighted-bins"},
        edits={
            _ECE: (
                ("total = 0.0", "gaps = []"),
                ("total += n * abs(", "gaps.append(abs("),
                ("correct[in_bin].mean()))", "correct[in_bin].mean())))"),
                ("return total / len(confidence)", "return sum(gaps) / len(gaps)"),
            )
        },
    ),
    Variant(
        "ece-signed-gap",
        fails={"test_calibration_error": "ece-signed-gap"},
        edits={_ECE: (("n * abs(float(", "n * (float("),)},
    ),
    Variant(
        "ece-bin-centre",
        fails={"test_calibration_error": "ece-bin-centre"},
        edits={
            _ECE: (
                ("float(confidence[in_bin].mean() - correct", "float((k + 0.5) / n_bins - correct"),
            )
        },
    ),
    *_choices(
        "answer_tying_saving",
        "test_answer_tying_saving",
        {"30522 * 768 + 30522": "tying-saves-bias", "2 * 30522 * 768": "tying-saves-both-matrices"},
    ),
    *_choices(
        "answer_calibration_promise",
        "test_answer_calibration_promise",
        {
            '"A"': "loss-guarantees-calibration",
            '"C"': "proper-scoring-rule-ignored",
            '"D"': "accuracy-is-calibration",
        },
    ),
    *_choices(
        "answer_cosine",
        "test_answer_cosine",
        {
            '"A"': "position-confound",
            '"C"': "position-added-every-layer",
            '"D"': "positive-cosine-same-meaning",
        },
    ),
]


def _degenerate(grade_id: str, old: str, tests: tuple[str, ...], returns: dict[str, str]):
    """One submission per degenerate answer: the solution's ``old`` line (its result) replaced
    by each of ``returns`` (name -> new line); each must fail every test in ``tests`` with a
    plain message, naming no misconception."""
    return [
        Variant(name, fails=dict.fromkeys(tests, None), edits={grade_id: ((old, new),)})
        for name, new in returns.items()
    ]


_CORRUPT_TESTS = ("test_corrupt_basics", "test_corrupt_selection", "test_corrupt_replacement")
_EX2_DEGENERATE = _degenerate(
    _CORRUPT,
    "return corrupted_ids, labels",
    _CORRUPT_TESTS,
    {
        "corrupt-empty": "return torch.empty(0, dtype=torch.long), torch.empty(0).long()",
        "corrupt-wrong-shape": "return corrupted_ids.flatten(), labels.flatten()",
        "corrupt-constant": "return input_ids.clone(), torch.full_like(input_ids, IGNORE_INDEX)",
        "corrupt-nan": "return corrupted_ids * float('nan'), labels.float()",
        "corrupt-none": "return None",
    },
)

VARIANTS: dict[str, list[Variant]] = {
    "ex2_masking": _EX2,
    "ex3_distribution": _EX3,
    "ex4_cross_entropy": _EX4,
    "ex5_masked_loss": _EX5,
    "ex6_training": _EX6,
    "ex7_reading_and_scale": _EX7,
}

_VALID_FIRST = "if probs.shape[-1] != vocab_size:"
_EX3_DEGENERATE = [
    *_degenerate(
        "softmax",
        "return exp / exp.sum(dim=-1, keepdim=True)",
        ("test_softmax", "test_softmax_large_logits"),
        {
            "softmax-zeros": "return torch.zeros_like(logits)",
            "softmax-uniform": "return torch.full_like(logits, 1 / logits.shape[-1])",
            "softmax-nan": "return torch.full_like(logits, float('nan'))",
            "softmax-inf": "return exp / 0.0",
            "softmax-empty": "return torch.empty(0)",
            "softmax-wrong-shape": "return (exp / exp.sum(dim=-1, keepdim=True)).flatten()",
            "softmax-none": "return None",
        },
    ),
    *_degenerate(
        "is_valid_distribution",
        _VALID_FIRST,
        ("test_is_valid_distribution",),
        {
            "valid-always-true": f"return True\n    {_VALID_FIRST}",
            "valid-always-false": f"return False\n    {_VALID_FIRST}",
            "valid-nan": f"return float('nan')\n    {_VALID_FIRST}",
            "valid-empty": f"return torch.empty(0)\n    {_VALID_FIRST}",
            "valid-none": f"return None\n    {_VALID_FIRST}",
        },
    ),
    Variant(  # a loop whose verdict each row overwrites: the last row decides (issue 17: it
        # was told negative-probability); a plain failure that says what went wrong
        "valid-last-row-only",
        fails={"test_is_valid_distribution": None},
        cells={
            _VALID: "def is_valid_distribution(probs, vocab_size):\n"
            "    if probs.shape[-1] != vocab_size:\n"
            "        return False\n"
            "    valid = False\n"
            "    for row in probs.reshape(-1, vocab_size):\n"
            "        valid = bool((row >= 0).all()) and abs(float(row.sum()) - 1) <= 1e-6\n"
            "    return valid\n"
        },
    ),
]

_EX4_DEGENERATE = [
    *_degenerate(
        "token_cross_entropy",
        _TOKEN_RETURN,
        ("test_token_cross_entropy", "test_token_cross_entropy_large_logits"),
        {
            "token-zero": "return 0.0",
            "token-nan": "return float('nan')",
            "token-inf": "return math.inf",
            "token-empty": "return torch.empty(0)",
            "token-wrong-shape": "return -log_probs",
            "token-none": "return None",
        },
    ),
    *_degenerate(
        "cross_entropy",
        "return float(-(p_gold[keep] * probs[keep].log()).sum())",
        ("test_cross_entropy",),
        {
            "cross-entropy-zero": "return 0.0",
            "cross-entropy-nan": "return float('nan')",
            "cross-entropy-inf": "return math.inf",
            "cross-entropy-empty": "return torch.empty(0)",
            "cross-entropy-none": "return None",
            # finite where the true word has probability 0 (-log 0 is +inf): right elsewhere
            "cross-entropy-clamped":
                "return float(-(p_gold[keep] * probs[keep].clamp_min(1e-12).log()).sum())",
        },
    ),
]

_EX5_DEGENERATE = _degenerate(
    _LOSS,
    "total = -true_log_probs.sum()",
    ("test_loss_sum", "test_loss_mean", "test_loss_large_logits"),
    {
        "loss-zero": "return torch.tensor(0.0)",
        "loss-nan": "return torch.tensor(float('nan'))",
        "loss-inf": "return torch.tensor(math.inf)",
        "loss-empty": "return torch.empty(0)",
        "loss-wrong-shape": "return -true_log_probs",
        "loss-python-float": "return float(-true_log_probs.sum())",
        "loss-none": "return None",
    },
)

_EX6_DEGENERATE = [
    *_degenerate(
        "sgd_step",
        "return {name: value - lr * grads[name] for name, value in params.items()}",
        ("test_sgd_step",),
        {
            "sgd-unchanged": "return dict(params)",
            "sgd-nan": "return {name: value * float('nan') for name, value in params.items()}",
            "sgd-empty": "return {}",
            "sgd-wrong-shape": "return {name: value.flatten() for name, value in params.items()}",
            "sgd-none": "return None",
        },
    ),
    *_degenerate(
        "selected_accuracy",
        "return float((predicted[in_loss] == labels[in_loss]).float().mean())",
        ("test_selected_accuracy",),
        {
            "accuracy-zero": "return 0.0",
            "accuracy-one": "return 1.0",
            "accuracy-nan": "return float('nan')",
            "accuracy-empty": "return torch.empty(0)",
            "accuracy-none": "return None",
        },
    ),
    *_degenerate(
        "train_model",
        "trained_state = model.state_dict()",
        ("test_trained_model",),
        {
            "train-empty-state": "trained_state = {}",
            "train-history-of-strings": "trained_state = model.state_dict()\n"
            "loss_history = [str(v) for v in loss_history]",
        },
    ),
]

_EX7_DEGENERATE = [
    *_degenerate(
        _WHOLE,
        "return corrupted_ids, labels",
        ("test_whole_word_basics", "test_whole_word_selection", "test_whole_word_fates"),
        {
            "whole-words-empty": "return torch.empty(0, dtype=torch.long), torch.empty(0).long()",
            "whole-words-wrong-shape": "return corrupted_ids[None], labels[None]",
            "whole-words-constant": "return ids.clone(), torch.full_like(ids, IGNORE_INDEX)",
            "whole-words-nan": "return corrupted_ids * float('nan'), labels.float()",
            "whole-words-none": "return None",
        },
    ),
    *_degenerate(
        _ECE,
        "return total / len(confidence)",
        ("test_calibration_error",),
        {
            "ece-zero": "return 0.0",
            "ece-one": "return 1.0",
            "ece-nan": "return float('nan')",
            "ece-empty": "return torch.empty(0)",
            "ece-none": "return None",
        },
    ),
]

DEGENERATE: dict[str, list[Variant]] = {
    "ex2_masking": _EX2_DEGENERATE,
    "ex3_distribution": _EX3_DEGENERATE,
    "ex4_cross_entropy": _EX4_DEGENERATE,
    "ex5_masked_loss": _EX5_DEGENERATE,
    "ex6_training": _EX6_DEGENERATE,
    "ex7_reading_and_scale": _EX7_DEGENERATE,
}


# Correct answers that call the library's reference implementation the question forbids (its
# cell's metadata["mlmcourse"]["forbidden"]). The grader must make the call raise
# ForbiddenShortcut, so each fails exactly the tests of its question.
SHORTCUTS: dict[str, Variant] = {
    "ex2_masking": Variant(
        "calls-mask-tokens",
        fails=dict.fromkeys(_CORRUPT_TESTS, None),
        cells={
            _CORRUPT: "from mlmcourse.masking import mask_tokens\n\n\n"
            "def corrupt(input_ids, seed, mlm_probability=0.15):\n"
            "    return mask_tokens(\n"
            "        input_ids, mask_id=MASK_ID, vocab_size=VOCAB_SIZE, special_ids=SPECIAL_IDS,\n"
            "        mlm_probability=mlm_probability,\n"
            "        generator=torch.Generator().manual_seed(seed),\n"
            "    )\n"
        },
    ),
    "ex3_distribution": Variant(
        "calls-torch-softmax",
        fails=dict.fromkeys(("test_softmax", "test_softmax_large_logits"), None),
        cells={
            "softmax": "def softmax(logits, temperature=1.0):\n"
            "    return torch.softmax(logits / temperature, dim=-1)\n"
        },
    ),
    "ex4_cross_entropy": Variant(
        "calls-torch-cross-entropy",
        fails=dict.fromkeys(
            ("test_token_cross_entropy", "test_token_cross_entropy_large_logits"), None
        ),
        cells={
            "token_cross_entropy": "def token_cross_entropy(logits, target):\n"
            "    return float(torch.nn.functional.cross_entropy(logits[None], "
            "torch.tensor([target])))\n"
        },
    ),
    "ex5_masked_loss": Variant(
        "calls-mlm-loss",
        fails=dict.fromkeys(("test_loss_sum", "test_loss_mean", "test_loss_large_logits"), None),
        cells={
            "masked_lm_loss": "from mlmcourse.loss import mlm_loss\n\n\n"
            "def masked_lm_loss(logits, labels, reduction='sum'):\n"
            "    return mlm_loss(logits, labels, reduction=reduction)\n"
        },
    ),
    "ex7_reading_and_scale": Variant(
        "calls-select-positions",
        fails=dict.fromkeys(
            ("test_whole_word_basics", "test_whole_word_selection", "test_whole_word_fates"), None
        ),
        cells={
            _WHOLE: "from mlmcourse.subwords import corrupt_selected, select_positions\n\n\n"
            "def whole_word_corrupt(input_ids, word_ids, seed, mlm_probability=0.15):\n"
            "    generator = torch.Generator().manual_seed(seed)\n"
            "    selected = select_positions(\n"
            "        word_ids, whole_words=True, mlm_probability=mlm_probability,\n"
            "        generator=generator,\n"
            "    )\n"
            "    pool = [i for i in range(VOCAB_SIZE) if i not in SPECIAL_IDS]\n"
            "    corrupted_ids, labels, _ = corrupt_selected(\n"
            "        input_ids, selected, mask_id=MASK_ID, replacement_ids=pool,\n"
            "        generator=generator,\n"
            "    )\n"
            "    return corrupted_ids, labels\n"
        },
    ),
}
