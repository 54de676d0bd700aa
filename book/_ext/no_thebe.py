"""A Sphinx extension of this book: no Thebe on its pages.

Jupyter Book 1.x always loads ``sphinx_thebe``, which adds its configuration script (a
``const THEBE_JS_URL`` pointing at a CDN) once per read of the sources: a rebuild adds it twice,
and the second declaration is a JavaScript error on every page. The book offers no live code
(``launch_buttons.thebe: false``) and loads nothing from a CDN, so each page drops Thebe's
script, configuration and style sheet.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def _is_thebe(asset: Any) -> bool:
    """Whether a page's script or style-sheet entry is Thebe's (its file or its inline body)."""
    filename = str(getattr(asset, "filename", asset) or "")
    body = str(getattr(asset, "attributes", {}).get("body", ""))
    return "thebe" in filename.lower() or "THEBE_JS_URL" in body


def drop_thebe(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
               doctree: Any) -> None:
    """Remove Thebe's entries from the page's scripts and style sheets."""
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [asset for asset in context[key] if not _is_thebe(asset)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
