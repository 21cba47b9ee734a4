"""JSON: ``{"expression", "wrt", "result": {name: text}, "steps": [...], "verified", "latex"}``.

Each step is ``{"rule", "expression", "result", "verified", "method", "children"}`` (a rewrite also
has ``"reason"``; ``expression`` is what the rule differentiates, or a rewrite's left side). Every
expression text is symdl's expression language, which symdl's parser and SymPy's ``parse_expr``
both read; an index-level expression (a sum over k, z_j) is given on its checked instance
(n = 4, j = 2), where it has a plain form.
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable
from typing import Any

import sympy as sp

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
    return {"expression": _text(derivation.expression, table), "wrt": [_text(v, None) for v in derivation.wrt],
            "result": {k: _text(v, table) for k, v in derivation.result.items()}, "steps": steps,
            "verified": derivation.verified, "latex": body(derivation)}


@printer("json")
def to_json(derivation: Derivation) -> str:
    """The derivation as indented JSON text."""
    return _json.dumps(to_data(derivation), indent=2) + "\n"
