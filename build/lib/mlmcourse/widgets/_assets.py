"""Where the explorers' front ends (ES modules and the shared stylesheet) live."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

CSS = _HERE / "widgets.css"
"""The stylesheet every anywidget explorer shares."""


def esm(name: str) -> Path:
    """Path of the ES module ``name`` (e.g. ``"softmax_explorer.js"``) next to this file."""
    return _HERE / name
