"""The reading order every printer shares: a derivation as lines ``lhs = rhs  (why)`` with depths.

A step with sub-steps reads as three things: its rule applied with the sub-derivatives left
unevaluated (``d/dx sigma(x)^2 = d/du u^2 * d/dx sigma(x)``, with the rule's sentence), the sub-steps
one level deeper, and the combined result (``= 2 sigma(x)^2 (1 - sigma(x))``, carrying the
verification mark). Named subexpressions print by their names (:meth:`Derivation.abbreviate`). A leaf is one
line. Trivial leaves (``d/dx x = 1``, ``d/dx c = 0``) are left out
of the printed page (they stay in the tree and the JSON). A part's rewrites follow, one line each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sympy as sp

from symdl.steps.tree import Check, Derivation, Part, Segment, Step

__all__ = ["Line", "part_lines", "HIDDEN_RULES", "verification_word"]

#: Rules whose steps are obvious and not printed (still verified, and in JSON).
HIDDEN_RULES = frozenset({"constant", "identity"})


@dataclass(frozen=True)
class Line:
    """One printed line: ``lhs = rhs`` (``lhs`` None: it continues the line above), and why."""

    depth: int
    lhs: sp.Expr | None
    rhs: sp.Expr
    why: tuple[Segment, ...]
    check: Check | None
    rule: str


def _step_lines(derivation: Derivation, step: Step, depth: int) -> Iterator[Line]:
    check = derivation.check(step)
    shown = [c for c in step.children if c.rule not in HIDDEN_RULES]
    short = derivation.abbreviate  # named subexpressions by their names (let p_j = softmax_j(x): p_j)
    result = step.eval()
    why = _sentence(derivation, step)
    if not step.children:
        yield Line(depth, short(step.lhs()), short(result), why, check, step.rule_name())
        return
    form = step.form()
    if form == result:
        yield Line(depth, short(step.lhs()), short(result), why, check, step.rule_name())
        return
    yield Line(depth, short(step.lhs()), short(form), why, None, step.rule_name())
    for child in shown:
        yield from _step_lines(derivation, child, depth + 1)
    yield Line(depth, None, short(result), ("",), check, step.rule_name())


def _sentence(derivation: Derivation, step: Step) -> tuple[Segment, ...]:
    """The step's sentence with its math abbreviated, except its equations (``u = ...`` defines a name, and
    ``name p_j = ...`` states what a name stands for: abbreviated, they would read ``u = u``)."""
    return tuple(derivation.abbreviate(s) if isinstance(s, sp.Basic) and not isinstance(s, sp.Equality) else s
                 for s in step.sentence())


def part_lines(derivation: Derivation, part: Part) -> list[Line]:
    """The printed lines of one part."""
    lines = list(_step_lines(derivation, part.tree, 0)) if part.tree is not None else []
    previous = part.tree.eval() if part.tree is not None else None
    for rewrite in part.rewrites:
        # a rewrite continues the line above when it starts where that ended, else it states its left side
        left = None if previous is not None and rewrite.expr == previous else derivation.abbreviate(rewrite.expr)
        shown = derivation.abbreviate(rewrite.after)
        if left is None and shown == derivation.abbreviate(previous):
            previous = rewrite.after  # a rewrite that only names a subexpression: the names already print
            continue
        lines.append(Line(0, left, shown, _sentence(derivation, rewrite),
                          derivation.check(rewrite), rewrite.rule))
        previous = rewrite.after
    return lines


def verification_word(check: Check | None) -> str:
    """A short mark for a step's verification: ``verified (expand)``, ``FAILED``, ``unchecked``."""
    if check is None:
        return ""
    if check.ok:
        return f"verified ({check.method})"
    return "FAILED" if check.method == "failed" else "unchecked"
