"""Neutralise a student's notebook before nbgrader's formgrader shows it to an instructor.

Formgrader renders the autograded notebook into its own page (same origin as the Jupyter
server, with the instructor's cookies): markdown through nbconvert's mistune renderer, which
passes raw HTML and ``javascript:`` links through; raw cells and ``text/html``,
``image/svg+xml``, ``application/javascript`` and widget outputs verbatim. Anything a student
writes there runs as the instructor. :func:`neutralise_notebook` returns a copy in which every
student-controlled renderable part is inert:

* markdown and raw cells are sanitised with ``nh3`` (the Ammonia sanitiser) against a small
  allowlist of harmless tags and attributes (no scripts, event handlers, styles, forms, frames,
  objects, images, SVG, ``class``/``id``/``name``); markdown links and images whose destination
  is not ``http``, ``https``, ``mailto`` or relative lose it, images become links (nothing is
  fetched when the page opens); when nbconvert is importable the cleaned markdown is rendered
  with formgrader's own renderer and checked once more, and a cell that still renders anything
  outside the allowlist, or a heading whose anchor id is one formgrader's script looks up (a
  grade's score box), is shown as a literal code block instead;
* cell ``attachments`` are dropped;
* outputs keep only ``text/plain`` (and PNG/JPEG bitmaps that are strictly valid base64), stream
  text and error tracebacks; other outputs are removed;
* cell and notebook metadata keep only what nbgrader needs (``metadata.nbgrader`` with its known
  keys and types, ``kernelspec``, ``language_info``), e.g. widget state is dropped;
* every kept string is bounded in size and has lone surrogates and NULs replaced.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import html.parser
import math
import re
from typing import Any

import nh3

__all__ = ["neutralise_notebook", "sanitise_markdown", "sanitise_html", "formgrader_ids"]

MAX_SOURCE = 100_000  # characters of one code cell's source
MAX_MARKDOWN = 30_000  # characters of a markdown or raw cell (rendering markdown is superlinear)
MAX_TEXT = 100_000  # characters of one output's text
MAX_OUTPUTS = 100  # outputs kept per code cell
MAX_IMAGE = 2_000_000  # base64 characters of one bitmap output
MAX_META = 200  # characters of one kept metadata string
MAX_REMEMBERED = 4_000  # characters of a markdown text whose sanitised form is remembered
TRUNCATED = "\n… [truncated]"

# --- the allowlist -----------------------------------------------------------------------------

TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "ins", "kbd", "li", "mark", "ol", "p", "pre",
    "q", "s", "samp", "small", "strike", "strong", "sub", "summary", "sup", "table", "tbody",
    "td", "tfoot", "th", "thead", "tr", "u", "ul", "var",
})
ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "ol": {"start"},
    "td": {"align", "colspan", "rowspan"},
    "th": {"align", "colspan", "rowspan"},
}
# removed together with their content (the rest of the disallowed tags keep their text)
CLEAN_CONTENT = frozenset({"script", "style", "template", "iframe", "object", "embed", "svg",
                           "math", "noscript", "textarea", "select", "title", "xmp", "noembed",
                           "noframes", "plaintext"})
URL_SCHEMES = frozenset({"http", "https", "mailto"})

# what formgrader's markdown renderer adds by itself to the allowlisted tags (checked after
# rendering): anchors on headings, task-list checkboxes, pygments spans, mermaid blocks
RENDERED_TAGS = TAGS | {"div", "span", "input", "img"}
RENDERED_ATTRIBUTES = {"href", "title", "start", "align", "colspan", "rowspan", "id", "class",
                       "rel", "type", "checked", "disabled", "alt", "style"}
URL_ATTRIBUTES = {"href", "src"}

_SURROGATE_OR_NUL = re.compile("[\ud800-\udfff\x00]")
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\\]+")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,100}\Z")
_SAFE_CELL_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}\Z")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_+.#/ \-]{1,100}\Z")
_HEX = re.compile(r"^[0-9a-fA-F]{1,128}\Z")

# markdown syntax that reaches URLs: inline links/images ``[x](dest`` and reference definitions
# ``[x]: dest``; the destination is checked after full entity decoding (mistune decodes twice)
_INLINE_DEST = re.compile(r"(\]\s*\(\s*<?)([^\s)>]*)")
_REF_DEST = re.compile(r"(^[ \t]{0,3}\[[^\]\n]*\]:[ \t]*\n?[ \t]*<?)(\S*)", re.M)
_IMAGE = re.compile(r"!(?=\s*\[)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^\s<>]*)>", re.I)
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$", re.S)
# Which ``<`` opens a tag for nh3 (everything else becomes ``&lt;`` before nh3 sees it, so that
# ``a<b and q>r``, ``List<int>`` or a typed ``<b onclick=...>`` stay visible as text instead of
# being parsed as tags and removed with the text around them): a comment, a complete tag of an
# HTML element that is not allowlisted (nh3 removes it, and the content of scripts, styles,
# frames...), or a complete allowlisted tag whose attributes are all allowlisted. This is for
# readability only: nh3 parses and cleans the whole text either way.
HTML_ELEMENTS = TAGS | CLEAN_CONTENT | frozenset({
    "address", "applet", "area", "article", "aside", "audio", "base", "basefont", "bdi", "bdo",
    "big", "blink", "body", "button", "canvas", "caption", "center", "cite", "col", "colgroup",
    "data", "datalist", "dfn", "dialog", "dir", "div", "fieldset", "figcaption", "figure",
    "font", "footer", "form", "frame", "frameset", "head", "header", "hgroup", "html", "image",
    "img", "input", "keygen", "label", "legend", "link", "listing", "main", "map", "marquee",
    "menu", "meta", "meter", "nav", "nobr", "optgroup", "option", "output", "param", "picture",
    "portal", "progress", "rb", "rp", "rt", "rtc", "ruby", "search", "section", "slot", "source",
    "span", "time", "track", "tt", "video", "wbr"})
_ATTRIBUTE = r"""([A-Za-z_:][-A-Za-z0-9_:.]*)(?:\s*=\s*(?:"[^"<]*"|'[^'<]*'|[^\s"'=<>`]+))?"""
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)((?:\s+" + _ATTRIBUTE + r")*)\s*/?>")
_LT = re.compile(r"<")


def _escape_non_tags(text: str) -> str:
    def keep(m: re.Match[str]) -> str:
        if text.startswith("<!--", m.start()):
            return "<"
        tag = _TAG.match(text, m.start())
        if tag is None:
            return "&lt;"
        name = tag.group(2).lower()
        if name not in HTML_ELEMENTS:
            return "&lt;"
        if name in TAGS:
            names = {a.lower() for a in re.findall(r"\s+" + _ATTRIBUTE, tag.group(3))}
            # (``rel`` on links is the one nh3 adds itself: a second pass keeps the link)
            allowed = ATTRIBUTES.get(name, set()) | ({"rel"} if name == "a" else set())
            if tag.group(1) and names or not names <= allowed:
                return "&lt;"
        return "<"

    return _LT.sub(keep, text)



# --- strings -----------------------------------------------------------------------------------


def _text(value: Any, limit: int) -> str:
    """A well-formed, bounded string: a notebook's list of lines joined, lone surrogates and NUL
    replaced by U+FFFD, cut at ``limit`` characters."""
    if isinstance(value, list):
        value = "".join(v for v in value if isinstance(v, str))
    if not isinstance(value, str):
        return ""
    if _SURROGATE_OR_NUL.search(value):
        # a valid pair written as two code points is joined; a lone one becomes U+FFFD
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        value = value.replace("\x00", "\ufffd")
    if len(value) > limit:
        value = value[:limit] + TRUNCATED
    return value


def _decoded(url: str) -> str:
    """A URL as a browser would finally see it: entities decoded until nothing changes (mistune
    decodes a link destination twice), whitespace, controls and backslashes removed, lower
    case."""
    for _ in range(10):
        decoded = html.unescape(url)
        if decoded == url:
            break
        url = decoded
    return _CONTROL.sub("", url).lower()


def safe_url(url: str) -> bool:
    """Whether a link destination is relative, a fragment, or ``http``, ``https``, ``mailto``."""
    match = _SCHEME.match(_decoded(url))
    return match is None or match.group(1) in URL_SCHEMES


# --- HTML and markdown -------------------------------------------------------------------------


def sanitise_html(text: str) -> str:
    """HTML reduced to the allowlist by ``nh3``: no script, style, event handler, form, frame,
    object, image or SVG; links only to ``http``, ``https``, ``mailto`` or relative URLs."""
    return nh3.clean(
        _text(text, MAX_MARKDOWN),
        tags=set(TAGS),
        clean_content_tags=set(CLEAN_CONTENT),
        attributes={k: set(v) for k, v in ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    )


def _protect_math(text: str) -> str:
    """``<`` and ``>`` inside ``$...$`` become TeX's ``\\lt`` and ``\\gt``, so that the HTML
    sanitiser does not read ``$a<b$`` as a tag (harmless where the guess of math is wrong)."""
    return _MATH.sub(lambda m: m.group(0).replace("<", r" \lt ").replace(">", r" \gt "), text)


def _neutralise_links(text: str) -> str:
    def inline(m: re.Match[str]) -> str:
        return m.group(1) + (m.group(2) if safe_url(m.group(2)) else "#")

    text = _INLINE_DEST.sub(inline, text)
    text = _REF_DEST.sub(inline, text)
    # an image would be fetched as the page opens: it becomes a link to the same place
    return _IMAGE.sub("&#33;", text)


class _RenderedCheck(html.parser.HTMLParser):
    """Collects what, in formgrader's rendering of a markdown cell, is outside the allowlist."""

    def __init__(self, reserved_ids: frozenset[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.reserved_ids = reserved_ids
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in RENDERED_TAGS:
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            if name not in RENDERED_ATTRIBUTES:
                self.problems.append(f"<{tag} {name}>")
            elif name == "style" and tag != "span":
                self.problems.append(f"<{tag} style>")
            elif name in URL_ATTRIBUTES and not safe_url(value or ""):
                self.problems.append(f"<{tag} {name}={value!r}>")
            elif tag == "img" and name == "src" and value is not None:
                self.problems.append("<img src>")
            elif name == "class" and "mermaid" in (value or "").lower():
                self.problems.append("mermaid diagram (rendered by a script)")
            elif name == "id" and value in self.reserved_ids:
                # a heading anchor that would take the place of formgrader's score box
                self.problems.append(f"<{tag} id={value!r}>")

    handle_startendtag = handle_starttag


def _renderer() -> Any:
    try:
        from nbconvert.filters.markdown_mistune import markdown2html_mistune
    except Exception:  # nbconvert missing or changed: nh3 alone
        return None
    return markdown2html_mistune


def _renders_safely(markdown: str, reserved_ids: frozenset[str] = frozenset()) -> bool:
    """Whether formgrader's markdown renderer (nbconvert's mistune) turns this into nothing but
    allowlisted tags, attributes and URLs, and no element ``id`` among ``reserved_ids``
    (``True`` when nbconvert is not importable)."""
    render = _renderer()
    if render is None:
        return True
    try:
        rendered = render(markdown)
    except Exception:
        return False
    check = _RenderedCheck(reserved_ids)
    check.feed(rendered)
    check.close()
    return not check.problems


def _literal_block(text: str) -> str:
    """The text as a fenced code block, which the renderer escapes whole."""
    longest = max((len(run) for run in re.findall(r"~+", text)), default=0)
    fence = "~" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def formgrader_ids(nb: dict) -> frozenset[str]:
    """The element ids formgrader's page uses (its layout and each grade's score, extra credit
    and comment boxes, which its script finds by id): a heading of the student's with such an
    id would capture a score box."""
    ids = {"notebook", "notebook-container", "statusmessage"}
    cells = nb.get("cells") if isinstance(nb.get("cells"), list) else []
    for cell in cells:
        meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
        nbgrader = meta.get("nbgrader") if isinstance(meta, dict) else None
        grade_id = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
        if isinstance(grade_id, str):
            ids |= {grade_id, f"{grade_id}-comment", f"{grade_id}_extra_credit"}
    return frozenset(ids)


def sanitise_markdown(text: str, reserved_ids: frozenset[str] = frozenset()) -> str:
    """Markdown whose rendering by formgrader runs nothing and fetches nothing (see
    :func:`_sanitise_markdown`). Short texts are remembered: the cells every submission shares
    with the exercise (its statement and questions) are checked once per run, not per student."""
    if isinstance(text, str) and len(text) <= MAX_REMEMBERED:
        return _remembered_markdown(text, reserved_ids)
    return _sanitise_markdown(text, reserved_ids)


def _sanitise_markdown(text: str, reserved_ids: frozenset[str] = frozenset()) -> str:
    """Markdown whose rendering by formgrader runs nothing and fetches nothing.

    Raw HTML in it is cleaned by :func:`sanitise_html`; ``<`` that does not open an
    allowlisted tag becomes ``&lt;`` first, which the renderer shows as ``<`` (but literally
    as ``&lt;`` inside a code span), so a ``<script>`` a student typed stays visible as text;
    link destinations of markdown syntax outside ``http``, ``https``, ``mailto`` or
    relative URLs become ``#``; images become links. If the result still renders to anything
    outside the allowlist, or gives an element one of ``reserved_ids`` (see
    :func:`formgrader_ids`), the original text is shown as a literal code block."""
    original = _text(text, MAX_MARKDOWN)
    cleaned = _AUTOLINK.sub(r"\1", _protect_math(original))
    cleaned = sanitise_html(_escape_non_tags(cleaned))
    # the serialiser writes ``>`` in text as ``&gt;`` (never in attributes): ``>`` alone opens
    # no tag and keeps markdown's block quotes
    cleaned = cleaned.replace("&gt;", ">")
    cleaned = _neutralise_links(cleaned)
    if _renders_safely(cleaned, reserved_ids):
        return cleaned
    literal = _literal_block(original)
    if _renders_safely(literal, reserved_ids):
        return literal
    return "*(this answer could not be shown safely; open the submitted notebook as text)*"


_remembered_markdown = functools.lru_cache(maxsize=1024)(_sanitise_markdown)


# --- outputs -----------------------------------------------------------------------------------


def _bitmap(value: Any, magic: tuple[bytes, ...]) -> str | None:
    """A base64 bitmap kept only when it is strict base64 of an image of the right kind."""
    data = _text(value, MAX_IMAGE + 1)
    if len(data) > MAX_IMAGE:
        return None
    compact = "".join(data.split())
    try:
        head = base64.b64decode(compact[:64], validate=True)
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    return compact if head.startswith(magic) else None


def _execution_count(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value < 10**9 else None


def _output(output: Any) -> dict | None:
    """One output reduced to inert data, or ``None`` when nothing inert is left."""
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return {"output_type": "stream", "name": name, "text": _text(output.get("text"),
                                                                       MAX_TEXT)}
    if kind == "error":
        traceback = output.get("traceback")
        lines = [_text(t, MAX_TEXT) for t in traceback[:200]] if isinstance(traceback, list) \
            else []
        return {"output_type": "error", "ename": _text(output.get("ename"), MAX_META),
                "evalue": _text(output.get("evalue"), MAX_TEXT), "traceback": lines}
    if kind in ("display_data", "execute_result"):
        data = output.get("data") if isinstance(output.get("data"), dict) else {}
        kept: dict[str, str] = {}
        if "text/plain" in data:
            kept["text/plain"] = _text(data["text/plain"], MAX_TEXT)
        for mime, magic in (("image/png", (b"\x89PNG\r\n\x1a\n",)),
                            ("image/jpeg", (b"\xff\xd8\xff",))):
            image = _bitmap(data.get(mime), magic) if mime in data else None
            if image is not None:
                kept[mime] = image
        if not kept:
            return None
        result: dict[str, Any] = {"output_type": kind, "data": kept, "metadata": {}}
        if kind == "execute_result":
            result["execution_count"] = _execution_count(output.get("execution_count"))
        return result
    return None


# --- metadata ----------------------------------------------------------------------------------


def _nbgrader(meta: Any) -> dict | None:
    """nbgrader's cell metadata with its known keys, each of the right type; ``None`` when the
    grade id is not a plain identifier (formgrader writes it unescaped into the page)."""
    if not isinstance(meta, dict):
        return None
    kept: dict[str, Any] = {}
    grade_id = meta.get("grade_id")
    if grade_id is not None:
        if not isinstance(grade_id, str) or not _SAFE_ID.match(grade_id):
            return None
        kept["grade_id"] = grade_id
    for key in ("grade", "solution", "locked", "task"):
        if isinstance(meta.get(key), bool):
            kept[key] = meta[key]
    points = meta.get("points")
    if type(points) in (int, float) and math.isfinite(points) and 0 <= points < 10**6:
        kept["points"] = points
    if type(meta.get("schema_version")) is int:
        kept["schema_version"] = meta["schema_version"]
    if isinstance(meta.get("checksum"), str) and _HEX.match(meta["checksum"]):
        kept["checksum"] = meta["checksum"]
    if meta.get("cell_type") in ("code", "markdown", "raw"):
        kept["cell_type"] = meta["cell_type"]
    return kept


def _names(value: Any, keys: tuple[str, ...]) -> dict | None:
    """A kernelspec or language_info: the given keys whose values are short plain names."""
    if not isinstance(value, dict):
        return None
    kept = {k: value[k] for k in keys
            if isinstance(value.get(k), str) and _SAFE_NAME.match(value[k])}
    return kept or None


def _cell_metadata(meta: Any) -> dict:
    kept: dict[str, Any] = {}
    if isinstance(meta, dict) and "nbgrader" in meta:
        nbgrader = _nbgrader(meta["nbgrader"])
        if nbgrader is not None:
            kept["nbgrader"] = nbgrader
    return kept


# --- the notebook ------------------------------------------------------------------------------


def _cell(cell: Any, index: int, seen_ids: set[str], reserved_ids: frozenset[str]
          ) -> dict | None:
    if not isinstance(cell, dict):
        return None
    kind = cell.get("cell_type")
    if kind not in ("code", "markdown", "raw"):
        kind = "raw"
    cell_id = cell.get("id")
    if not isinstance(cell_id, str) or not _SAFE_CELL_ID.match(cell_id) or cell_id in seen_ids:
        cell_id = f"cell-{index}"
        while cell_id in seen_ids:
            cell_id += "-x"
    seen_ids.add(cell_id)
    result: dict[str, Any] = {"cell_type": kind, "id": cell_id,
                              "metadata": _cell_metadata(cell.get("metadata"))}
    source = cell.get("source")
    if kind == "markdown":
        result["source"] = sanitise_markdown(_text(source, MAX_MARKDOWN), reserved_ids)
    elif kind == "raw":
        result["source"] = sanitise_html(_text(source, MAX_MARKDOWN))
    else:
        # shown through pygments, which escapes it
        result["source"] = _text(source, MAX_SOURCE)
        outputs = cell.get("outputs") if isinstance(cell.get("outputs"), list) else []
        kept = [o for o in (_output(o) for o in outputs[:MAX_OUTPUTS]) if o is not None]
        result["outputs"] = kept
        result["execution_count"] = _execution_count(cell.get("execution_count"))
    return result


def neutralise_notebook(nb: dict) -> dict:
    """A copy of a notebook (nbformat 4 JSON as a dict) safe to show in nbgrader's formgrader.

    Every student-controlled part that formgrader renders is made inert: markdown and raw cells
    sanitised with ``nh3`` (plus markdown link and image neutralisation), attachments dropped,
    outputs reduced to plain text (and validated PNG/JPEG), metadata reduced to
    ``metadata.nbgrader`` per cell and ``kernelspec`` / ``language_info`` for the notebook,
    strings bounded and made well-formed. Cell order, cell types, nbgrader metadata and code
    sources are kept, so grade ids still match the gradebook. ``nb`` itself is not modified.
    """
    if not isinstance(nb, dict):
        raise TypeError(f"a notebook is a dict, not {type(nb).__name__}")
    seen_ids: set[str] = set()
    cells_in = nb.get("cells") if isinstance(nb.get("cells"), list) else []
    reserved_ids = formgrader_ids(nb)
    cells = [c for c in (_cell(cell, i, seen_ids, reserved_ids)
                         for i, cell in enumerate(cells_in)) if c is not None]
    meta_in = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    metadata: dict[str, Any] = {}
    kernelspec = _names(meta_in.get("kernelspec"), ("name", "display_name", "language"))
    if kernelspec:
        metadata["kernelspec"] = kernelspec
    language_info = _names(meta_in.get("language_info"),
                           ("name", "version", "mimetype", "file_extension", "pygments_lexer",
                            "nbconvert_exporter"))
    if language_info:
        metadata["language_info"] = language_info
    nbgrader = meta_in.get("nbgrader")
    if isinstance(nbgrader, dict):
        kept = {k: v for k, v in nbgrader.items()
                if isinstance(k, str) and _SAFE_ID.match(k)
                and (type(v) in (bool, int) or (isinstance(v, str) and _SAFE_NAME.match(v)))}
        if kept:
            metadata["nbgrader"] = kept
    return {
        "cells": cells,
        "metadata": metadata,
        "nbformat": 4,
        "nbformat_minor": 5,
    }
