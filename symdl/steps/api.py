"""``derive(expr, wrt=...)``: a verified step-by-step derivation of an expression, a catalog name or a
Python function.

Bounded: the rule tree is refused past :data:`symdl.steps.rules.MAX_NODES` steps, a result past
:data:`MAX_RESULT_OPS` operations, and verification stops at the time limit (steps past it are
recorded ``unchecked``, so the derivation does not claim to be verified).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import sympy as sp

from symdl.errors import SymdlError
from symdl.steps.rules import SizeLimitError, steps
from symdl.steps.tree import Derivation, Part, Rewrite

__all__ = ["derive", "derive_expression", "DeriveError", "MAX_RESULT_OPS", "DEFAULT_TIMEOUT"]

#: A derivative larger than this many operations is refused as an explosion.
MAX_RESULT_OPS = 5000
#: Seconds a derivation (building and verifying) may take by default.
DEFAULT_TIMEOUT = 20.0
#: CPU seconds the final tidying ``simplify`` may take.
TIDY_SECONDS = 0.5


class DeriveError(SymdlError, ValueError):
    """An expression that cannot be derived within the limits, or a bad ``wrt``."""


def _variables(expr: sp.Expr, wrt: str | sp.Symbol | Iterable[str | sp.Symbol] | None) -> tuple[sp.Symbol, ...]:
    free = sorted(expr.free_symbols, key=lambda s: s.name)
    if wrt is None:
        if not free:
            raise DeriveError("the expression has no variables to differentiate with respect to")
        return tuple(free)
    if isinstance(wrt, str):
        names: list[str | sp.Basic] = [w.strip() for w in wrt.split(",")]
    else:
        items = [wrt] if isinstance(wrt, sp.Basic) else list(wrt)
        names = [w if isinstance(w, sp.Basic) else str(w) for w in items]
    by_name = {s.name: s for s in free}
    chosen = []
    for name in names:
        if isinstance(name, sp.Basic):
            chosen.append(name)
        elif not name.isidentifier():
            raise DeriveError(f"--wrt: {name!r} is not a variable name")
        else:  # a name the expression lacks is legitimate: d/dx (y^2 + 3) = 0 is the constant rule
            chosen.append(by_name.get(name, sp.Symbol(name, real=True)))
    if not chosen:
        raise DeriveError("--wrt names no variable")
    if len(set(chosen)) != len(chosen):
        raise DeriveError(f"--wrt names {next(str(c) for c in chosen if chosen.count(c) > 1)!r} twice")
    return tuple(chosen)


def _tidy(result: sp.Expr, seconds: float) -> Rewrite | None:
    """A 'simplify' rewrite when a bounded simplify shortens the result."""
    from symdl.steps.verify import _simplify_within, verify_claim

    if seconds <= 0:
        return None
    simpler, finished = _simplify_within(result, min(TIDY_SECONDS, seconds))
    if finished and sp.count_ops(simpler) < sp.count_ops(result):
        # SymPy's simplify can change a piecewise function with decimal thresholds: offer only what holds
        if verify_claim(result, simpler, 0).ok:
            return Rewrite(result, None, simpler, "simplify")
    return None


def derive_expression(expr: sp.Expr, wrt: str | sp.Symbol | Iterable[str | sp.Symbol] | None = None, *,
                      title: str = "", verify: bool = True, timeout: float | None = DEFAULT_TIMEOUT) -> Derivation:
    """The derivation of a SymPy expression with respect to each variable of ``wrt``."""
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    variables = _variables(expr, wrt)
    parts = []
    for var in variables:
        try:
            tree = steps(expr, var, deadline)
        except SizeLimitError as error:
            raise DeriveError(f"refused: {error} (the expression would explode; derive a smaller piece)") from None
        result = tree.eval()
        if sp.count_ops(result) > MAX_RESULT_OPS:
            raise DeriveError(f"refused: the derivative with respect to {var} has more than {MAX_RESULT_OPS} "
                              "operations (the expression would explode)")
        left = None if timeout is None else timeout - (time.monotonic() - start)
        tidy = _tidy(result, TIDY_SECONDS if left is None else left / 4)
        parts.append(Part(f"d/d{var}", tree, (tidy,) if tidy else (), key=f"d/d{var}"))
    derivation = Derivation(expr, variables, parts, title=title)
    if verify:
        finish(derivation, start, timeout)
    return derivation


def finish(derivation: Derivation, start: float, timeout: float | None, simplify_seconds: float | None = None) -> None:
    """Verify within what is left of ``timeout``; a derivation not verified in time is refused."""
    derivation.verify(None if timeout is None else max(0.0, timeout - (time.monotonic() - start)), simplify_seconds)
    late = [s for s in derivation.steps() if (c := derivation.check(s)) is not None and c.method == "unchecked"
            and c.detail == "over the time limit"]
    if late:
        raise DeriveError(f"refused: verifying the steps did not finish within {timeout:g} s "
                          f"({len(late)} step(s) left); raise --timeout or derive a smaller piece")


def _refuse_other_catalog_name(name: str) -> None:
    """A layer, update rule, schedule or fact has no step-by-step derivation: say so (the name would otherwise
    be read as a variable, and ``symdl derive conv2d`` print d/dconv2d conv2d = 1)."""
    from symdl.catalog.facts import FACTS
    from symdl.catalog.layers import LAYERS
    from symdl.catalog.optimizers import OPTIMIZERS
    from symdl.catalog.schedules import SCHEDULES
    from symdl.steps.facts import FACT_DERIVATIONS

    kinds = {"layer": {layer.name for layer in LAYERS}, "update rule": set(OPTIMIZERS),
             "learning-rate schedule": set(SCHEDULES), "fact": set(FACTS)}
    kind = next((k for k, names in kinds.items() if name in names), None)
    if kind is not None:
        raise DeriveError(f"{name} is a catalog {kind}, which symdl derive does not derive step by step (it derives "
                          f"activations, losses and the facts {', '.join(FACT_DERIVATIONS)}); "
                          f"`symdl show {name}` prints its math")


def derive(expr: str | sp.Expr, wrt: str | sp.Symbol | Iterable[str | sp.Symbol] | None = None, *,
           variant: str = "", verify: bool = True, timeout: float | None = DEFAULT_TIMEOUT) -> Derivation:
    """A step-by-step derivation, every step verified.

    Args:
        expr: expression text (read by symdl's safe parser, never ``eval``), a catalog name
            (``"sigmoid"``, ``"cross_entropy"``, the optimizer facts ``"adam_bias_correction"`` and
            ``"momentum_steady_state"``), ``"FILE.py:f"`` (a Python function), or a SymPy expression.
        wrt: the variables (``"x,y"``, a symbol, or a list); default: every free variable.
        variant: a catalog entry's formula variant (gelu's ``"tanh"``).
        verify: verify every step (see :mod:`symdl.steps.verify`).
        timeout: seconds for building and verifying (None: no limit).

    Raises:
        symdl.check.errors.ExpressionError: the text is not a safe expression.
        DeriveError: a bad ``wrt``, or an expression too large to derive within the limits.
    """
    if isinstance(expr, str):
        text = expr.strip()
        if text.isidentifier():  # a name: the catalog is imported only to look it up (never for other text)
            from symdl.catalog import ACTIVATIONS_AND_LOSSES
            from symdl.steps.facts import FACT_DERIVATIONS, derive_fact

            if text in FACT_DERIVATIONS:
                return derive_fact(text, verify=verify)
            if text in ACTIVATIONS_AND_LOSSES:
                from symdl.steps.catalog import derive_op

                return derive_op(text, variant=variant, verify=verify, timeout=timeout)
            _refuse_other_catalog_name(text)
        if ":" in text and text.split(":", 1)[0].endswith(".py"):
            from symdl.steps.python import derive_function

            return derive_function(text, wrt, verify=verify, timeout=timeout)
        from symdl.expr import parse

        return derive_expression(parse(text), wrt, title=text, verify=verify, timeout=timeout)
    if not isinstance(expr, sp.Expr):
        raise DeriveError(f"cannot derive a {type(expr).__name__}; give expression text or a SymPy expression")
    return derive_expression(expr, wrt, verify=verify, timeout=timeout)
