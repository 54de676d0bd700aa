"""Correct answers written genuinely differently from the source solutions.

Each :class:`~cases.variants.Variant` here has no ``fails``: it must get full marks on every
auto-graded cell, through nbclient and through ``mlmcourse grade``. They prove that the tests
accept what the questions allow (loops instead of vectorised code, float64 where the question
permits it, another valid algorithm, any real number type for a numeric answer) rather than the
one way the solution happens to be written.
"""

from __future__ import annotations

from cases.variants import Variant


def _code(name: str, grade_id: str, source: str) -> Variant:
    return Variant(name, fails={}, cells={grade_id: source.strip("\n") + "\n"})


def _number(name: str, grade_id: str, expression: str) -> Variant:
    source = (f"from decimal import Decimal\nfrom fractions import Fraction\n\nimport numpy as np"
              f"\n\n{grade_id} = {expression}")
    return Variant(name, fails={}, cells={grade_id: source})


_EX2 = [
    _code(
        "corrupt-python-loops",
        "corrupt",
        """
def corrupt(input_ids, seed, mlm_probability=0.15):
    # one position at a time, every draw from the seeded generator
    generator = torch.Generator().manual_seed(seed)
    words = [i for i in range(VOCAB_SIZE) if i not in SPECIAL_IDS]
    corrupted_ids = input_ids.clone().long()
    labels = torch.full(tuple(input_ids.shape), IGNORE_INDEX, dtype=torch.long)
    flat_corrupted, flat_labels = corrupted_ids.view(-1), labels.view(-1)
    for k, token in enumerate(input_ids.reshape(-1).tolist()):
        if token in SPECIAL_IDS:
            continue
        if torch.rand((), generator=generator).item() >= mlm_probability:
            continue
        flat_labels[k] = token
        u = torch.rand((), generator=generator).item()
        if u < 0.8:
            flat_corrupted[k] = MASK_ID
        elif u < 0.9:
            flat_corrupted[k] = words[int(torch.randint(len(words), (), generator=generator))]
    return corrupted_ids, labels
""",
    ),
    _code(
        "corrupt-bernoulli-multinomial",
        "corrupt",
        """
def corrupt(input_ids, seed, mlm_probability=0.15):
    # Bernoulli selection, one categorical fate per position, torch.where instead of indexing
    g = torch.Generator().manual_seed(seed)
    x = input_ids.to(torch.int64)
    candidate = ~(x.unsqueeze(-1) == torch.tensor(SPECIAL_IDS)).any(dim=-1)
    chance = torch.full(x.shape, float(mlm_probability))
    selected = torch.bernoulli(chance, generator=g).bool() & candidate
    fate = torch.multinomial(
        torch.tensor([0.8, 0.1, 0.1]), x.numel(), replacement=True, generator=g
    ).view(x.shape)
    pool = torch.tensor([i for i in range(VOCAB_SIZE) if i not in SPECIAL_IDS])
    replacement = pool[torch.randint(len(pool), x.shape, generator=g)]
    corrupted = torch.where(selected & (fate == 0), torch.full_like(x, MASK_ID), x)
    corrupted = torch.where(selected & (fate == 1), replacement, corrupted)
    labels = torch.where(selected, x, torch.full_like(x, IGNORE_INDEX))
    return corrupted, labels
""",
    ),
    _code(
        "corrupt-one-draw-int32",
        "corrupt",
        """
def corrupt(input_ids, seed, mlm_probability=0.15):
    # a single float64 draw decides selection and fate (u / p is uniform once u < p);
    # the results are int32, which the question allows (integer tensors)
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(input_ids.shape, generator=generator, dtype=torch.float64)
    special = torch.zeros(input_ids.shape, dtype=torch.bool)
    for special_id in SPECIAL_IDS:
        special |= input_ids == special_id
    selected = (u < mlm_probability) & ~special
    v = u / mlm_probability if mlm_probability > 0 else u
    words = torch.randint(max(SPECIAL_IDS) + 1, VOCAB_SIZE, input_ids.shape, generator=generator)
    corrupted = input_ids.to(torch.int32).clone()
    corrupted[selected & (v < 0.8)] = MASK_ID
    randomised = selected & (v >= 0.8) & (v < 0.9)
    corrupted[randomised] = words[randomised].to(torch.int32)
    labels = torch.full(input_ids.shape, IGNORE_INDEX, dtype=torch.int32)
    labels[selected] = input_ids[selected].to(torch.int32)
    return corrupted, labels
""",
    ),
    _number("answer_n_mask-numpy", "answer_n_mask", "np.float64(3000) * 0.15 * 0.8"),
    _number("answer_n_mask-int", "answer_n_mask", "360"),
    _number("answer_n_mask-fraction", "answer_n_mask", "3000 * Fraction('0.15') * Fraction(4, 5)"),
]

_EX3 = [
    _code(
        "softmax-python-loops-float64",
        "softmax",
        """
import math


def softmax(logits, temperature=1.0):
    # row by row in Python floats, returned as float64
    rows = []
    for row in logits.reshape(-1, logits.shape[-1]).tolist():
        scaled = [z / temperature for z in row]
        top = max(scaled)
        exps = [math.exp(z - top) for z in scaled]
        total = sum(exps)
        rows.append([e / total for e in exps])
    return torch.tensor(rows, dtype=torch.float64).reshape(logits.shape)
""",
    ),
    _code(
        "softmax-logsumexp",
        "softmax",
        """
def softmax(logits, temperature=1.0):
    # exp(z - log Σ exp z): torch.logsumexp is stable for large logits
    z = logits / temperature
    return torch.exp(z - torch.logsumexp(z, dim=-1, keepdim=True))
""",
    ),
    _code(
        "softmax-pairwise-differences",
        "softmax",
        """
def softmax(logits, temperature=1.0):
    # p_j = 1 / Σ_k exp(z_k - z_j): an overflow to inf only ever turns a tiny p_j into 0
    z = logits.double() / temperature
    return 1.0 / torch.exp(z.unsqueeze(-2) - z.unsqueeze(-1)).sum(dim=-1)
""",
    ),
    _code(
        "valid-python-loops",
        "is_valid_distribution",
        """
import math


def is_valid_distribution(probs, vocab_size):
    if probs.shape[-1] != vocab_size:
        return False
    for row in probs.reshape(-1, vocab_size).tolist():
        if min(row) < 0 or abs(math.fsum(row) - 1.0) > 1e-6:
            return False
    return True
""",
    ),
    _code(
        "valid-numpy",
        "is_valid_distribution",
        """
import numpy as np


def is_valid_distribution(probs, vocab_size):
    p = probs.detach().cpu().numpy().astype(np.float64)
    return (
        p.shape[-1] == vocab_size
        and bool((p >= 0).all())
        and bool(np.allclose(p.sum(axis=-1), 1.0, rtol=0.0, atol=1e-6))
    )
""",
    ),
    _code(
        "valid-bool-tensor",
        "is_valid_distribution",
        """
def is_valid_distribution(probs, vocab_size):
    # a 0-dim bool tensor, which the tests accept as a bool
    if probs.shape[-1] != vocab_size:
        return torch.tensor(False)
    no_negative = (probs >= 0).all()
    sums_to_one = torch.isclose(
        probs.double().sum(dim=-1), torch.tensor(1.0, dtype=torch.float64), rtol=0.0, atol=1e-6
    ).all()
    return no_negative & sums_to_one
""",
    ),
]

_EX4 = [
    _code(
        "token-python-logsumexp",
        "token_cross_entropy",
        """
import math


def token_cross_entropy(logits, target):
    # log Σ exp z - z_target, in Python floats, shifted by the maximum
    values = logits.tolist()
    top = max(values)
    log_total = top + math.log(sum(math.exp(z - top) for z in values))
    return log_total - values[target]
""",
    ),
    _code(
        "token-float64-tensor",
        "token_cross_entropy",
        """
def token_cross_entropy(logits, target):
    # a 0-dim float64 tensor, which the tests accept as a number
    z = logits.double()
    return torch.logsumexp(z, dim=0) - z[target]
""",
    ),
    _code(
        "token-numpy",
        "token_cross_entropy",
        """
import numpy as np


def token_cross_entropy(logits, target):
    z = logits.numpy().astype(np.float64)
    return float(np.logaddexp.reduce(z) - z[target])
""",
    ),
    _code(
        "cross-entropy-loop",
        "cross_entropy",
        """
import math


def cross_entropy(p_gold, probs):
    total = 0.0
    for weight, q in zip(p_gold.tolist(), probs.tolist(), strict=True):
        if weight != 0:
            total -= weight * math.log(q) if q > 0 else -math.inf
    return total
""",
    ),
    _code(
        "cross-entropy-xlogy",
        "cross_entropy",
        """
def cross_entropy(p_gold, probs):
    # xlogy(0, 0) is 0 by definition: the convention of the question; a 0-dim tensor result
    return -torch.special.xlogy(p_gold, probs).sum()
""",
    ),
    _code(
        "cross-entropy-numpy",
        "cross_entropy",
        """
import numpy as np


def cross_entropy(p_gold, probs):
    p, q = p_gold.numpy().astype(np.float64), probs.numpy().astype(np.float64)
    keep = p != 0
    return float(-(p[keep] * np.log(q[keep])).sum())
""",
    ),
    _number("answer_loss-numpy", "answer_loss", "-np.log(0.6)"),
    _number("answer_loss-tensor", "answer_loss", "-torch.tensor(0.6).log()"),
    _number("answer_loss-three-decimals", "answer_loss", "0.511"),
    _number("answer_loss-inverse", "answer_loss", "math.log(1 / 0.6)"),
    _number("answer_loss-decimal", "answer_loss", "Decimal('0.5108')"),
]

_EX5 = [
    _code(
        "loss-python-loops",
        "masked_lm_loss",
        """
def masked_lm_loss(logits, labels, reduction="sum"):
    # one selected position at a time, each with its own max-shifted log-sum-exp
    total = torch.zeros((), dtype=logits.dtype)
    count = 0
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            true_id = int(labels[b, t])
            if true_id == IGNORE_INDEX:
                continue
            row = logits[b, t]
            top = row.max()
            total = total + (top + (row - top).exp().sum().log() - row[true_id])
            count += 1
    return total if reduction == "sum" else total / count
""",
    ),
    _code(
        "loss-one-hot-float64",
        "masked_lm_loss",
        """
def masked_lm_loss(logits, labels, reduction="sum"):
    # cross-entropy against one-hot targets, zeroed outside A(x), computed in float64
    z = logits.double()
    log_probs = z - torch.logsumexp(z, dim=-1, keepdim=True)
    keep = labels != IGNORE_INDEX
    gold = torch.nn.functional.one_hot(labels.clamp(min=0), logits.shape[-1]).double()
    per_position = -(gold * log_probs).sum(dim=-1) * keep
    total = per_position.sum()
    return total if reduction == "sum" else total / keep.sum()
""",
    ),
    _code(
        "loss-flattened-where",
        "masked_lm_loss",
        """
def masked_lm_loss(logits, labels, reduction="sum"):
    # flatten to (B·T, V), pick every position's true log-probability, zero the ignored ones
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1)
    keep = flat_labels.ne(IGNORE_INDEX)
    log_probs = flat_logits.log_softmax(dim=1)
    picked = log_probs.gather(1, torch.where(keep, flat_labels, 0).unsqueeze(1)).squeeze(1)
    losses = torch.where(keep, -picked, torch.zeros_like(picked))
    if reduction == "mean":
        return losses.sum() / torch.count_nonzero(keep)
    return losses.sum()
""",
    ),
    _number("answer_n_terms-numpy", "answer_n_terms", "np.int64(3)"),
    _number("answer_n_terms-tensor", "answer_n_terms", "torch.tensor(3)"),
    _number("answer_n_terms-float", "answer_n_terms", "3.0"),
    _number("answer_reported-numpy", "answer_reported", "np.float64(6.0) / 4"),
    _number("answer_reported-tensor", "answer_reported", "torch.tensor(6.0) / 4"),
    _number("answer_reported-fraction", "answer_reported", "Fraction(6, 4)"),
    _number("answer_n_terms-fraction", "answer_n_terms", "Fraction(3)"),
]

_EX6 = [
    _code(
        "sgd-loop-in-place-on-copies",
        "sgd_step",
        """
def sgd_step(params, grads, lr):
    updated = {}
    for name in params:
        value = params[name].clone()
        value.sub_(grads[name], alpha=lr)
        updated[name] = value
    return updated
""",
    ),
    _code(
        "sgd-torch-add",
        "sgd_step",
        """
def sgd_step(params, grads, lr):
    return {name: torch.add(value, grads[name], alpha=-lr) for name, value in params.items()}
""",
    ),
    _code(
        "sgd-float64",
        "sgd_step",
        """
def sgd_step(params, grads, lr):
    return {name: params[name].double() - lr * grads[name].double() for name in sorted(params)}
""",
    ),
    _code(
        "accuracy-python-loops",
        "selected_accuracy",
        """
def selected_accuracy(logits, labels):
    correct = total = 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            label = int(labels[b, t])
            if label == IGNORE_INDEX:
                continue
            scores = logits[b, t].tolist()
            correct += scores.index(max(scores)) == label
            total += 1
    return correct / total
""",
    ),
    _code(
        "accuracy-numpy",
        "selected_accuracy",
        """
def selected_accuracy(logits, labels):
    predicted = logits.numpy().argmax(axis=-1)
    keep = labels.numpy() != IGNORE_INDEX
    return float((predicted[keep] == labels.numpy()[keep]).mean())
""",
    ),
    _code(
        "accuracy-topk-tensor",
        "selected_accuracy",
        """
def selected_accuracy(logits, labels):
    # a 0-dim tensor, which the tests accept as a number
    top = logits.topk(1, dim=-1).indices.squeeze(-1)
    keep = labels.ne(IGNORE_INDEX)
    return (top.eq(labels) & keep).sum() / keep.sum()
""",
    ),
    _code(
        "train-cross-entropy-epochs",
        "train_model",
        """
trained_state = None
loss_history = []
# shuffled passes over the data, PyTorch's cross_entropy on flattened logits, 150 steps
torch.manual_seed(1)
model = TinyMLM(VOCAB_SIZE)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
generator = torch.Generator().manual_seed(1)
order = torch.randperm(len(train_ids), generator=generator)
for step in range(150):
    start = (step * 32) % (len(order) - 32)
    rows = order[start : start + 32]
    corrupted_ids, labels = mask_tokens(
        train_ids[rows], mask_id=vocab.mask_id, vocab_size=VOCAB_SIZE,
        special_ids=vocab.special_ids, generator=generator,
    )
    logits = model(corrupted_ids, train_mask[rows])
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, VOCAB_SIZE), labels.reshape(-1), ignore_index=IGNORE_INDEX
    )
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    loss_history.append(loss.item())
trained_state = model.state_dict()
""",
    ),
    _code(
        "train-until-target",
        "train_model",
        """
trained_state = None
loss_history = []
# train until the held-out loss is below the target (checked every 25 steps), batches of 64,
# the summed loss divided by the number of selected positions
torch.manual_seed(2)
model = TinyMLM(VOCAB_SIZE)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
generator = torch.Generator().manual_seed(2)
while len(loss_history) < 400:
    rows = torch.randint(len(train_ids), (64,), generator=generator)
    corrupted_ids, labels = mask_tokens(
        train_ids[rows], mask_id=vocab.mask_id, vocab_size=VOCAB_SIZE,
        special_ids=vocab.special_ids, generator=generator,
    )
    summed = mlm_loss(model(corrupted_ids, train_mask[rows]), labels, reduction="sum")
    loss = summed / (labels != IGNORE_INDEX).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    loss_history.append(loss.item())
    if len(loss_history) % 25 == 0:
        if evaluate(model, heldout_sentences, vocab)["loss"] < TARGET_LOSS - 0.3:
            break
model.train()
trained_state = model.state_dict()
""",
    ),
    _code(
        "train-adam-clipped-copy",
        "train_model",
        """
import copy

trained_state = None
loss_history = []
# Adam with gradient clipping, no dropout; hands in a deep copy of the weights
torch.manual_seed(3)
model = TinyMLM(VOCAB_SIZE, dropout=0.0)
optimizer = torch.optim.Adam(model.parameters(), lr=4e-3)
generator = torch.Generator().manual_seed(3)
for _ in range(120):
    rows = torch.randint(len(train_ids), (48,), generator=generator)
    corrupted_ids, labels = mask_tokens(
        train_ids[rows], mask_id=vocab.mask_id, vocab_size=VOCAB_SIZE,
        special_ids=vocab.special_ids, generator=generator,
    )
    loss = mlm_loss(model(corrupted_ids, train_mask[rows]), labels, reduction="mean")
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    loss_history.append(float(loss.detach()))
trained_state = copy.deepcopy(model.state_dict())
""",
    ),
    _number("answer_initial_loss-numpy", "answer_initial_loss", "np.log(VOCAB_SIZE)"),
    _number(
        "answer_initial_loss-tensor", "answer_initial_loss", "torch.tensor(float(VOCAB_SIZE)).log()"
    ),
    _number("answer_initial_loss-measured", "answer_initial_loss", "6.45"),
    _number("answer_initial_loss-minus-log", "answer_initial_loss", "-math.log(1 / VOCAB_SIZE)"),
]

_EX7 = [
    _code(
        "whole-words-python-loops",
        "whole_word_corrupt",
        """
def whole_word_corrupt(input_ids, word_ids, seed, mlm_probability=0.15):
    # one word at a time, in order of appearance, then one piece at a time
    generator = torch.Generator().manual_seed(seed)
    pool = [i for i in range(VOCAB_SIZE) if i not in SPECIAL_IDS]
    chosen = {}
    for w in word_ids:
        if w is not None and w not in chosen:
            chosen[w] = torch.rand((), generator=generator).item() < mlm_probability
    corrupted_ids = input_ids.clone().long()
    labels = torch.full(tuple(input_ids.shape), IGNORE_INDEX, dtype=torch.long)
    for i, w in enumerate(word_ids):
        if w is None or not chosen[w]:
            continue
        labels[i] = input_ids[i]
        u = torch.rand((), generator=generator).item()
        if u < 0.8:
            corrupted_ids[i] = MASK_ID
        elif u < 0.9:
            corrupted_ids[i] = pool[int(torch.randint(len(pool), (), generator=generator))]
    return corrupted_ids, labels
""",
    ),
    _code(
        "whole-words-bernoulli-multinomial",
        "whole_word_corrupt",
        """
def whole_word_corrupt(input_ids, word_ids, seed, mlm_probability=0.15):
    # Bernoulli per word, a categorical fate per piece, torch.where instead of indexing
    g = torch.Generator().manual_seed(seed)
    x = input_ids.to(torch.int64)
    index = torch.tensor([-1 if w is None else w for w in word_ids])
    n_words = int(index.max()) + 1
    word_chosen = torch.bernoulli(torch.full((max(n_words, 1),), float(mlm_probability)),
                                  generator=g).bool()
    selected = (index >= 0) & word_chosen[index.clamp(min=0)]
    fate = torch.multinomial(torch.tensor([0.8, 0.1, 0.1]), x.numel(), replacement=True,
                             generator=g)
    allowed = torch.tensor([i for i in range(VOCAB_SIZE) if i not in SPECIAL_IDS])
    replacement = allowed[torch.randint(len(allowed), x.shape, generator=g)]
    corrupted = torch.where(selected & (fate == 0), torch.tensor(MASK_ID), x)
    corrupted = torch.where(selected & (fate == 1), replacement, corrupted)
    return corrupted, torch.where(selected, x, torch.tensor(IGNORE_INDEX))
""",
    ),
    _code(
        "whole-words-fates-first-int32",
        "whole_word_corrupt",
        """
def whole_word_corrupt(input_ids, word_ids, seed, mlm_probability=0.15):
    # the fates and replacements drawn before the selection; int32 results
    generator = torch.Generator().manual_seed(seed)
    length = len(word_ids)
    fate = torch.rand(length, generator=generator)
    replacement = torch.randint(max(SPECIAL_IDS) + 1, VOCAB_SIZE, (length,), generator=generator)
    words = sorted({w for w in word_ids if w is not None})
    draws = dict(zip(words, torch.rand(len(words), generator=generator).tolist(), strict=True))
    corrupted_ids, labels = input_ids.int().clone(), torch.full((length,), -100, dtype=torch.int32)
    for i, w in enumerate(word_ids):
        if w is not None and draws[w] < mlm_probability:
            labels[i] = int(input_ids[i])
            if fate[i] < 0.8:
                corrupted_ids[i] = MASK_ID
            elif fate[i] < 0.9:
                corrupted_ids[i] = int(replacement[i])
    return corrupted_ids, labels
""",
    ),
    _code(
        "ece-numpy-ceil",
        "expected_calibration_error",
        """
import numpy as np


def expected_calibration_error(confidence, correct, n_bins=5):
    # the bin of c is ceil(c * n) - 1, so that (k/n, (k+1)/n] is bin k
    c = confidence.double().numpy()
    right = correct.numpy().astype(float)
    bins = np.clip(np.ceil(c * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        members = bins == b
        ece += members.mean() * abs(c[members].mean() - right[members].mean())
    return ece
""",
    ),
    _code(
        "ece-bucketize-tensor",
        "expected_calibration_error",
        """
def expected_calibration_error(confidence, correct, n_bins=5):
    # torch.bucketize on the inner edges; a 0-dim tensor, which the tests accept as a number
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)[1:-1]
    conf = confidence.to(torch.float64)
    bins = torch.bucketize(conf, edges)
    count = torch.bincount(bins, minlength=n_bins).double()
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, conf)
    right_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, correct.double())
    return (conf_sum - right_sum).abs().sum() / count.sum()
""",
    ),
    _code(
        "ece-python-loops",
        "expected_calibration_error",
        """
def expected_calibration_error(confidence, correct, n_bins=5):
    # one position at a time into per-bin sums
    sums = {}
    for c, right in zip(confidence.tolist(), correct.tolist(), strict=True):
        k = 0
        while c > (k + 1) / n_bins and k < n_bins - 1:
            k += 1
        n, conf, hits = sums.get(k, (0, 0.0, 0))
        sums[k] = (n + 1, conf + c, hits + bool(right))
    total = sum(n for n, _, _ in sums.values())
    return sum(n / total * abs(conf / n - hits / n) for n, conf, hits in sums.values())
""",
    ),
    _number("answer_tying_saving-numpy", "answer_tying_saving", "np.int64(30522) * 768"),
    _number("answer_tying_saving-float", "answer_tying_saving", "30522 * 768.0"),
    _number("answer_tying_saving-fraction", "answer_tying_saving", "Fraction(30522) * 768"),
]

ALTERNATIVES: dict[str, list[Variant]] = {
    "ex2_masking": _EX2,
    "ex3_distribution": _EX3,
    "ex4_cross_entropy": _EX4,
    "ex5_masked_loss": _EX5,
    "ex6_training": _EX6,
    "ex7_reading_and_scale": _EX7,
}
