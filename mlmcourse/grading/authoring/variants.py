"""Per-class variants of an exercise: its numbers and the order of its multiple-choice options,
drawn from a secret seed, so that a class's answers differ from the published ones.

An exercise notebook declares, in its notebook-level metadata ``mlmcourse``:

``parameters``
    name -> spec. ``{"values": [3000, 2000, ...]}`` draws one of the values (the first is the
    published one, which no other seed draws);
    ``{"options": {"A": text, "B": text, ...}, "item": "* **{letter}.** {text}"}``
    shuffles a multiple-choice question's options (published: in the order given).
``templates``
    cell id -> the cell's source with placeholders ``{{expression}}`` or
    ``{{expression:format}}``. An expression is a parameter, a number, or ``+ - * /`` of them
    (``{{padded_length - real_first}}``); ``format`` is a Python format spec (``{{n_words:,}}``).
    An option set's name alone expands to its options, one ``item`` each, in drawn order;
    ``name[B]`` is the letter the published option B is shown as.

Hidden tests and solutions compute their expected values in Python from the substituted givens
(``diagnose_number(answer, {{n_words}} * 0.15 * 0.8, ...)``), so each class's tests follow its
own numbers. The committed notebooks are the rendering with :data:`DEFAULT_SEED`; the templates
stay out of every notebook a course folder or a release holds (:func:`without_templates`).

    values = draw(parameters(nb), "a secret", "ex2_masking")   # the same for the same seed
    rendered = render_notebook(nb, values)                     # without the templates
"""

from __future__ import annotations

import ast
import copy
import operator
import random
import re
from collections.abc import Mapping

from nbformat import NotebookNode

DEFAULT_SEED = "published"
METADATA_KEY = "mlmcourse"
PLACEHOLDER = re.compile(r"\{\{(.+?)\}\}")
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv}

Value = int | float | str | dict[str, str]  # a drawn number, or an option set's letters
Spec = Mapping[str, object]


class TemplateError(ValueError):
    """A template or parameter spec of an exercise notebook is malformed."""


def parameters(nb: NotebookNode) -> dict[str, Spec]:
    """The notebook's parameter specs (empty for a notebook without variants)."""
    return dict(nb.metadata.get(METADATA_KEY, {}).get("parameters", {}))


def templates(nb: NotebookNode) -> dict[str, str]:
    """The notebook's cell templates, by cell id (empty for a notebook without variants); a
    template may be stored as one string or, like a cell's source, as a list of lines."""
    found = nb.metadata.get(METADATA_KEY, {}).get("templates", {})
    return {cell_id: "".join(t) if isinstance(t, list) else t for cell_id, t in found.items()}


def draw(specs: Mapping[str, Spec], seed: str, assignment: str) -> dict[str, Value]:
    """One value per parameter, drawn from (``seed``, ``assignment``, the parameter's name) alone,
    so adding a parameter changes no other draw. :data:`DEFAULT_SEED` gives the published values,
    and any other seed a value other than the published one (the first) for every parameter.

    An option set's value maps each published letter to the letter it is shown as; any other
    seed shows every option under another letter, so a letter copied from the published
    solution is always wrong.
    """
    values: dict[str, Value] = {}
    for name, spec in specs.items():
        # a str seed and random() alone: the same draws on every Python version
        rng = random.Random(f"{seed}\x00{assignment}\x00{name}")
        if len(spec.get("values", ())) >= 2:
            choices = list(spec["values"])
            pick = 0 if seed == DEFAULT_SEED else 1 + int(rng.random() * (len(choices) - 1))
            values[name] = choices[pick]
        elif len(spec.get("options", ())) >= 2:
            letters = shown = list(spec["options"])
            while seed != DEFAULT_SEED and any(map(operator.eq, shown, letters)):
                shown = sorted(letters, key=lambda _: rng.random())
            values[name] = dict(sorted(zip(shown, letters, strict=True)))
        else:
            raise TemplateError(f"parameter {name!r} needs two 'values' or two 'options' or more")
    return values


def render(template: str, values: Mapping[str, Value], specs: Mapping[str, Spec]) -> str:
    """``template`` with every placeholder replaced (see the module's docstring)."""

    def substitute(match: re.Match[str]) -> str:
        expression, _, spec = match.group(1).partition(":")
        try:
            tree = ast.parse(expression.strip(), mode="eval").body
        except SyntaxError as exc:
            raise TemplateError(f"{match.group(0)}: not an expression") from exc
        if isinstance(tree, ast.Name) and "options" in specs.get(tree.id, {}):
            return _options(tree.id, values, specs)
        value = _evaluate(tree, values, match.group(0))
        if spec:
            return format(value, spec)
        return repr(round(value, 10)) if isinstance(value, float) else str(value)

    return PLACEHOLDER.sub(substitute, template)


def _evaluate(node: ast.expr, values: Mapping[str, Value], where: str) -> int | float | str:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.Name) and node.id in values:
        return values[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left, values, where), _evaluate(node.right, values, where)
        return _OPERATORS[type(node.op)](left, right)
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
            and isinstance(node.slice, ast.Name)
            and isinstance(values.get(node.value.id), dict)
            and node.slice.id in values[node.value.id]):
        return values[node.value.id][node.slice.id]
    raise TemplateError(f"{where}: only parameters, numbers, + - * / and option[LETTER] "
                        f"are allowed ({ast.unparse(node)!r} is not a known one)")


def _options(name: str, values: Mapping[str, Value], specs: Mapping[str, Spec]) -> str:
    """The options of ``name``, one ``item`` each, in the drawn order (their own placeholders
    rendered too)."""
    spec = specs[name]
    item, options = str(spec["item"]), spec["options"]
    shown = sorted((letter, published) for published, letter in values[name].items())
    lines = [item.replace("{letter}", letter).replace("{text}", options[published])
             for letter, published in shown]
    return render("\n".join(lines), values, specs)


def render_notebook(nb: NotebookNode, values: Mapping[str, Value]) -> NotebookNode:
    """A copy of ``nb`` with every templated cell rendered with ``values``, without templates."""
    specs, cells = parameters(nb), templates(nb)
    rendered = without_templates(nb)
    for cell in rendered.cells:
        if cell.get("id") in cells:
            cell.source = render(cells[cell.id], values, specs)
    return rendered


def without_templates(nb: NotebookNode) -> NotebookNode:
    """A copy of ``nb`` without the parameter specs and templates: what students and course
    folders get (the hidden tests' templates must not reach a student notebook)."""
    stripped = copy.deepcopy(nb)
    stripped.metadata.pop(METADATA_KEY, None)
    return stripped
