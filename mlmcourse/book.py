"""What every lesson notebook does first: one import instead of a pasted set-up cell.

A lesson starts with::

    from mlmcourse.book import setup, show, table
    setup()

:func:`setup` quiets known library warnings, fixes the seeds, uses one thread and sets small
figures; :func:`show` and :func:`table` display a figure once and a small HTML table.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Iterable, Sequence

import matplotlib.pyplot as plt
import torch
from IPython.display import HTML
from matplotlib.figure import Figure

SEED = 0
FIGURE_DPI = 90


def setup(seed: int = SEED) -> None:
    """Quiet known library warnings, seed PyTorch with ``seed``, use one thread (the models are
    tiny: one thread is fastest, and fair on shared machines), print tensors to four decimals and
    draw small figures."""
    for category in (UserWarning, FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.set_printoptions(precision=4, sci_mode=False)
    plt.rcParams["figure.dpi"] = FIGURE_DPI


def show(fig: Figure) -> Figure:
    """Display ``fig`` once (the inline backend would otherwise show it twice)."""
    plt.close(fig)
    return fig


def table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> HTML:
    """A small HTML table of ``rows`` under ``header``, every cell escaped (no pandas needed)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
