"""JSON: ``{"expression", "wrt", "result": {name: text}, "steps": [...], "verified", "latex", "symbols"}``.

Each step is ``{"rule", "expression", "result", "verified", "method", "children"}`` (a rewrite also
has ``"reason"``; ``expression`` is what the rule differentiates, or a rewrite's left side). Every
expression text is symdl's expression language, which symdl's parser and SymPy's ``parse_expr``
both read; an index-level expression (a sum over k, z_j) is given on its checked instance
(n = 4, j = 2), where it has a plain form. ``symbols`` names every symbol in the texts: SymPy reads
them back with ``parse_expr(text, local_dict={n: Symbol(n) for n in data["symbols"]})`` (without it,
``beta`` and ``gamma`` are SymPy's Beta and Gamma functions).
"""

from __future__ import annotations

import ast
import json as _json
from collections.abc import Callable
from typing import Any

import sympy as sp

from symdl.expr import CONSTANT_NAMES
from symdl.steps.exprtext import expression_text
from symdl.steps.printers.latex import body
from symdl.steps.tree import Derivation, Step, printer
from symdl.steps.verify import _index_instance, _indexed

__all__ = ["to_data", "to_json"]


def _text(expr: sp.Basic, substitute: Callable[[sp.Expr], sp.Expr] | None) -> str:
    if substitute is not None:
        expr = substitute(expr)
    # a stated derivative (a kernel form's left side) is given by its value: the text must parse
    expr = expr.replace(lambda e: isinstance(e, sp.Derivative), lambda e: e.doit())
    if isinstance(expr, sp.Expr) and _indexed(expr):
        expr = _index_instance(expr)
    return expression_text(expr)


def _step(derivation: Derivation, step: Step, table: Callable[[sp.Expr], sp.Expr]) -> dict[str, Any]:
    check = derivation.check(step)
    data: dict[str, Any] = {"rule": step.rule_name(), "expression": _text(step.expr, table),
                            "wrt": None if step.var is None else _text(step.var, None),
                            "result": _text(step.eval(), table), "verified": bool(check and check.ok),
                            "method": check.method if check else None}
    reason = getattr(step, "reason", None)
    if reason:
        data["reason"] = reason
    data["children"] = [_step(derivation, c, table) for c in step.children]
    return data


def _texts(step: dict[str, Any]) -> list[str]:
    """Every expression text of a step and its children."""
    own = [step["expression"], step["result"], *([step["wrt"]] if step.get("wrt") else [])]
    return own + [t for child in step["children"] for t in _texts(child)]


def _symbol_names(data: dict[str, Any]) -> list[str]:
    """The names of every symbol in the texts, sorted: a reader builds SymPy's ``local_dict`` from them,
    since ``parse_expr`` otherwise reads ``beta``, ``gamma``, ``zeta``, ``N``, ``S`` or ``Q`` as its own
    functions and objects (``beta*x`` raises a TypeError)."""
    texts = [data["expression"], *data["wrt"], *data["result"].values(), *(t for s in data["steps"] for t in _texts(s))]
    names: set[str] = set()
    for text in dict.fromkeys(texts):  # read as Python syntax: a step's text may exceed the parser's length cap
        tree = ast.parse(text, mode="eval")
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        names |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and id(node) not in called}
    return sorted(names - CONSTANT_NAMES)


def to_data(derivation: Derivation) -> dict[str, Any]:
    """The derivation as JSON-ready data."""
    table = derivation.substitute
    steps = []
    for part in derivation.parts:
        entries = [] if part.tree is None else [_step(derivation, part.tree, table)]
        entries += [_step(derivation, r, table) for r in part.rewrites]
        steps.append({"rule": "part", "title": part.title, "expression": _text(derivation.expression, table),
                      "result": _text(part.result, table), "verified": all(e["verified"] for e in entries),
                      "children": entries})
    data = {"expression": _text(derivation.expression, table), "wrt": [_text(v, None) for v in derivation.wrt],
            "result": {k: _text(v, table) for k, v in derivation.result.items()}, "steps": steps,
            "verified": derivation.verified, "latex": body(derivation)}
    data["symbols"] = _symbol_names(data)
    return data


@printer("json")
def to_json(derivation: Derivation) -> str:
    """The derivation as indented JSON text."""
    return _json.dumps(to_data(derivation), indent=2) + "\n"
