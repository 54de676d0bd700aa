"""``mlmcourse.book``: the one set-up every lesson imports."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import torch

from mlmcourse.book import setup, show, table


def test_setup_seeds_threads_and_quiets_warnings() -> None:
    setup(seed=3)
    first = torch.rand(3)
    setup(seed=3)
    assert torch.equal(first, torch.rand(3))
    assert torch.get_num_threads() == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("known library noise", FutureWarning, stacklevel=1)
    assert caught == []


def test_show_closes_and_table_escapes() -> None:
    fig = plt.figure()
    assert show(fig) is fig and not plt.fignum_exists(fig.number)
    rendered = table(["a<b"], [["<script>", 1]]).data
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered and "a&lt;b" in rendered
