"""User-defined ops: one definition -> a catalog entry, its proofs and NumPy kernels.

:func:`define_op` builds an :class:`~symdl.catalog.spec.Op` of the same type as
the catalog's, derives and proves it with :func:`symdl.proofs.ops.derive`,
prints its kernels with :mod:`symdl.codegen.ops`'s templates (the printer and
stability rules of ``symdl.kernels``) and compiles them at run time. Every rule
is checked before any code is generated; a broken one raises
:class:`DefinitionError` naming the op and the rule:

* the name is a new snake_case identifier; inputs and parameters are identifiers;
* every input appears in the definition; every other name is a parameter with a
  (real) default;
* every function has a NumPy translation (and so a PyTorch and a JAX one);
* the definition is real and finite on the inputs' domains (``log(x)`` needs
  ``domain=`` with ``x > 0``);
* every point where the definition is not differentiable (``|u|``, ``max``,
  ``min``, a piecewise boundary) is declared in ``kinks=`` with the subgradient
  to use there, and the kernel's gradient there is that subgradient (proven;
  a ``max``/``min``'s step takes the value at its tie that gives it:
  :func:`_steps_at_ties`);
* the stable form, if given, is proven equal to the definition and is finite
  (float32 and float64) at the input's extremes; without one, a definition that
  is not finite there or misses its tolerance gets the most accurate of its
  exact rewrites, measured against mpmath (:mod:`symdl.export.accurate`), proven
  equal the same way;
* every closed form given is proven equal to the derived gradient.

Three kinds: ``elementwise`` (activations), ``row`` (softmax-like over ``dim``;
the definition uses ``rowsum``, a stable form may use ``rowmax``) and ``loss``
(elementwise, then PyTorch's ``reduction``).
"""

from __future__ import annotations

import itertools
import keyword
import linecache
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.catalog.activations import ACTIVATION_DOMAIN
from symdl.catalog.spec import Domain, Formula, Input, Kink, Op, Param, Rule, Tolerance
from symdl.check.errors import ExpressionError
from symdl.codegen.ops import TEMPLATES, kernel_names
from symdl.errors import SymdlError
from symdl.export.accurate import most_accurate, not_finite_at_extremes
from symdl.export.forms import with_origin
from symdl.functions import Grouped, accurate_derivatives, indicator, rowmax, rowsum
from symdl.printing.numpy_printer import ARRAY_FUNCTIONS

__all__ = ["DefinitionError", "UserOp", "define_op", "render_numpy"]

#: The op kinds a user may define, and the catalog kind each becomes.
KINDS: dict[str, str] = {"elementwise": "elementwise", "row": "row", "loss": "pointwise_loss"}

#: Names the generated kernels and exported modules use themselves: an input or parameter may not take them.
RESERVED = frozenset({"g", "grad", "out", "dim", "reduction", "np", "math", "keep", "loss", "self", "ctx", "shape",
                      "num_classes", "denominator", "residuals", "torch", "jax", "jnp", "functools"})

#: Functions a definition may call beyond the NumPy printer's table (printed by dedicated rules).
_STRUCTURAL = {"rowsum", "rowmax", "indicator", "Piecewise"}

#: Where a user-defined loss's inputs are sampled (the catalog's regression losses' domain).
LOSS_DOMAIN = Domain(-5.0, 5.0, extremes=(-1000.0, -1.0, 0.0, 1.0, 1000.0))

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class DefinitionError(SymdlError, ValueError):
    """A user-defined op breaks a rule of :func:`define_op` (the message names the op and the rule)."""


# --------------------------------------------------------------------------- parsing
def _parse_text(op_name: str, text: str, names: Sequence[str]) -> sp.Expr:
    """Expression text through symdl's safe parser (never ``sympify``), plus ``rowsum``/``rowmax``.

    The parser's function table is :func:`symdl.expr.functions`; row reductions are added to it
    here (a hook in :mod:`symdl.expr` for extra functions would make this one call).
    """
    from symdl.check.syntax import validate
    from symdl.expr import _Builder, functions  # noqa: PLC2701 - see the docstring

    table = {**functions(), "rowsum": (rowsum, 1), "rowmax": (rowmax, 1)}
    try:
        tree = validate(text, table)
        expr = _Builder(None, table).build(tree)
    except ExpressionError as error:
        raise DefinitionError(f"{op_name}: the definition text is not accepted: {error}") from None
    if not isinstance(expr, sp.Expr):
        raise DefinitionError(f"{op_name}: the definition is a condition, not a number; use where(cond, a, b)")
    return expr


def _expression(op_name: str, what: str, value: object, symbols: Mapping[str, sp.Symbol]) -> sp.Expr:
    """``value`` (text or SymPy) with its names bound to the op's symbols."""
    if isinstance(value, str):
        expr = _parse_text(op_name, value, list(symbols))
    elif isinstance(value, sp.Expr):
        expr = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        expr = sp.Float(value) if isinstance(value, float) else sp.Integer(value)
    else:
        raise DefinitionError(f"{op_name}: the {what} must be a SymPy expression or expression text, "
                              f"not {type(value).__name__}")
    unknown = sorted(s.name for s in expr.free_symbols if s.name not in symbols)
    if unknown:
        raise DefinitionError(f"{op_name}: {unknown[0]!r} in the {what} is neither an input nor a parameter with "
                              f"a default (declare it in params={{{unknown[0]!r}: default}})")
    expr = expr.xreplace({s: symbols[s.name] for s in expr.free_symbols})
    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise DefinitionError(f"{op_name}: the {what} is not finite ({expr})")
    return expr


# --------------------------------------------------------------------------- rules
def _check_name(op_name: str, name: str, what: str) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise DefinitionError(f"{op_name}: {what} name {name!r} is not a Python identifier")
    if name in RESERVED or re.fullmatch(r"t\d+|grad_.*|_.*", name):
        raise DefinitionError(f"{op_name}: {what} name {name!r} is reserved by the generated kernels")


def _check_functions(op_name: str, expr: sp.Expr, what: str) -> None:
    """Every function in ``expr`` has a translation in the kernel printers."""
    for function in sorted(expr.atoms(sp.Function), key=sp.default_sort_key):
        name = type(function).__name__
        if name not in ARRAY_FUNCTIONS and name not in _STRUCTURAL:
            raise DefinitionError(f"{op_name}: unsupported function {name} in the {what} (kernels translate: "
                                  f"{', '.join(sorted(ARRAY_FUNCTIONS))}, max, min, where, sqrt, powers)")
    if expr.has(sp.Derivative, sp.Subs, sp.DiracDelta, sp.Heaviside):
        raise DefinitionError(f"{op_name}: the {what} is not differentiable in closed form "
                              f"(SymPy leaves {expr.atoms(sp.Derivative, sp.Subs, sp.DiracDelta, sp.Heaviside)})")


def _nonsmooth_points(expr: sp.Expr, symbol: sp.Symbol) -> list[tuple[sp.Expr, sp.Expr]]:
    """``(where, point)`` for each point where ``expr`` may not be differentiable in ``symbol``:
    zeros of ``|u|`` and ``sign u``, ties of ``max``/``min``, piecewise boundaries (real solutions only)."""
    from symdl.proofs.proof import bounded

    candidates: list[tuple[sp.Expr, sp.Expr]] = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Abs, sp.sign)):
            candidates.append((node, node.args[0]))
        elif isinstance(node, (sp.Max, sp.Min)):
            candidates += [(node, a - b) for i, a in enumerate(node.args) for b in node.args[i + 1:]]
        elif isinstance(node, sp.Piecewise):
            for _, condition in node.args:
                candidates += [(node, r.lhs - r.rhs) for r in condition.atoms(sp.core.relational.Relational)]
        elif isinstance(node, indicator):
            candidates += [(node, r.lhs - r.rhs) for r in node.args[0].atoms(sp.core.relational.Relational)]
    points = []
    for where, zero in candidates:
        if symbol not in zero.free_symbols:
            continue
        solutions, finished = bounded(lambda z=zero: sp.solve(z, symbol), 2.0)
        for solution in (solutions if finished else []):
            if solution.is_real is not False and not solution.has(sp.I):
                points.append((where, solution))
    return points


def _uncovered_kinks(op_name: str, formula: Formula, symbol: sp.Symbol) -> None:
    """Every non-differentiable point of the definition is a declared kink."""
    from symdl.expr import simplify_within

    declared = [k.at for k in formula.kinks]
    for where, point in _nonsmooth_points(formula.definition, symbol):
        if not any(simplify_within(point - at)[0] == 0 for at in declared):
            raise DefinitionError(
                f"{op_name}: not differentiable at {symbol} = {point} (from {where}), but no kink is declared "
                f"there; pass kinks={{{sp.sstr(point)!r}: subgradient}} with the gradient to use at that point")


def _kinks(op_name: str, kinks: object, symbols: Mapping[str, sp.Symbol]) -> tuple[Kink, ...]:
    """``{at: subgradient}`` or ``[(at, subgradient), ...]`` or Kink objects, as Kinks."""
    if isinstance(kinks, Mapping):
        pairs: Iterable[object] = kinks.items()
    else:
        pairs = kinks or ()
    result = []
    for pair in pairs:
        if isinstance(pair, Kink):
            result.append(pair)
            continue
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise DefinitionError(f"{op_name}: kinks are {{at: subgradient}} pairs, not {pair!r}")
        at, subgradient = (_expression(op_name, "kink", v, symbols) for v in pair)
        result.append(Kink(at, subgradient, "declared by the user"))
    return tuple(result)


def _domain(op_name: str, value: object, default: Domain) -> Domain:
    if value is None:
        return default
    if isinstance(value, Domain):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3):
        try:
            low, high = float(value[0]), float(value[1])
            extremes = tuple(float(v) for v in value[2]) if len(value) == 3 else ()
        except (TypeError, ValueError):
            raise DefinitionError(f"{op_name}: a domain holds numbers, got {value!r}") from None
        if not low < high:
            raise DefinitionError(f"{op_name}: a domain's low must be below its high, got {value!r}")
        return Domain(low, high, extremes)
    raise DefinitionError(f"{op_name}: a domain is (low, high) or (low, high, extremes), not {value!r}")


def _tolerance(op_name: str, spec: Mapping[str, object], symbols: Mapping[str, sp.Symbol]) -> Tolerance:
    """``{"forward_ulp": 4, "forward_scale": "abs(x - y) + 1", ...}`` as a :class:`Tolerance`."""
    fields = {"forward_ulp", "grad_ulp", "forward_scale", "grad_scale"}
    unknown = set(spec) - fields
    if unknown:
        raise DefinitionError(f"{op_name}: tolerance has no field {sorted(unknown)[0]!r} (fields: {sorted(fields)})")
    values: dict[str, object] = {}
    for key, value in spec.items():
        if key.endswith("scale"):
            values[key] = _expression(op_name, key, value, symbols)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            values[key] = float(value)
        else:
            raise DefinitionError(f"{op_name}: tolerance {key} must be a positive number, got {value!r}")
    return Tolerance(**values)


def _params(op_name: str, params: Mapping[str, object] | Sequence[str] | None) -> list[Param]:
    if params is None:
        return []
    if not isinstance(params, Mapping):  # a list of names: no defaults
        params = {name: None for name in params}
    result = []
    for name, spec in params.items():
        _check_name(op_name, name, "parameter")
        default, sample = (spec if isinstance(spec, tuple) else (spec, None))
        if default is None:
            raise DefinitionError(f"{op_name}: parameter {name!r} has no default (give params={{{name!r}: value}}; "
                                  "every parameter is keyword-only with a default, as in PyTorch)")
        if isinstance(default, bool) or not isinstance(default, (int, float)) or not math.isfinite(default):
            raise DefinitionError(f"{op_name}: parameter {name!r} needs a finite real default, got {default!r}")
        domain = None if sample is None else _domain(op_name, tuple(sample), ACTIVATION_DOMAIN)
        result.append(Param(name, float(default), Rule("real"), sp.Symbol(name, real=True), sample=domain))
    return result


# --------------------------------------------------------------------------- row VJPs
def _row_vjp(op_name: str, expr: sp.Expr, x: sp.Symbol, g: sp.Symbol) -> sp.Expr:
    r"""The VJP of a row op :math:`y = F(x, S_1, \dots)` with :math:`S_k = \mathrm{rowsum}(h_k(x))`:

    .. math:: \bar x = g\, \partial_x F + \sum_k h_k'(x)\, \mathrm{rowsum}(g\, \partial_{S_k} F)

    ``rowmax`` terms (shifts in a stable form) are held constant: the definition is invariant
    under them, which the prover checks when it compares this VJP with the derived one.
    """
    sums = sorted(expr.atoms(rowsum), key=sp.default_sort_key)
    shifts = sorted(expr.atoms(rowmax), key=sp.default_sort_key)
    names = {s: sp.Dummy(f"S{i}", real=True) for i, s in enumerate(sums)}
    names.update({m: sp.Dummy(f"M{i}", real=True) for i, m in enumerate(shifts)})
    for inner in (s.args[0] for s in sums):
        if inner.has(rowsum):
            raise DefinitionError(f"{op_name}: nested row sums are not supported")
    flat = expr.xreplace(names)
    back = {v: k for k, v in names.items()}
    vjp = g * sp.diff(flat, x)
    for total in sums:
        inner = total.args[0].xreplace({m: names[m] for m in shifts})
        vjp += sp.diff(inner, x) * rowsum(g * sp.diff(flat, names[total]))
    # A power of a row sum is kept as one unit (its LaTeX and the kernel's printed parentheses).
    return vjp.xreplace(back).replace(lambda e: e.is_Pow and isinstance(e.base, (rowsum, rowmax)),
                                      lambda e: sp.Pow(Grouped(e.base), e.exp))


# --------------------------------------------------------------------------- numerics
def _finite_at_extremes(op: Op, expr: sp.Expr, what: str) -> None:
    """``expr`` is finite at the extremes (:func:`~symdl.export.accurate.not_finite_at_extremes`), else a
    :class:`DefinitionError`."""
    problem = not_finite_at_extremes(op, expr)
    if problem is not None:
        raise DefinitionError(f"{op.name}: the {what} is not finite at the extremes ({problem})")


def _accurate_forward(op: Op) -> Op:
    """``op`` with a stable form when its definition, evaluated as written, is not finite at the extremes or
    misses its forward tolerance and a form of :func:`~symdl.export.accurate.rewritten_forms` does better
    (``log(1 + exp(x))`` as softplus, the pseudo-Huber loss's root difference rationalized, ...): proven equal
    to the definition like one given in ``stable=``. The gradients are still derived from the definition
    (:func:`_stable_gradients` with ``textbook``)."""
    formula = op.formula()
    form = most_accurate(op, formula.definition, bound=op.tolerance.forward_ulp)
    if form == formula.definition:
        return op
    return replace(op, formulas={"": replace(formula, stable=form)})


def _stable_gradients(op: Op, *, textbook: bool = False) -> Op:
    """``op`` with closed forms for the derived gradients that SymPy writes in forms that lose accuracy or
    overflow, each proven equal to the derivative like one the user gives in ``grads=``.

    * The derivatives of saturating functions are written in forms accurate where they saturate
      (:func:`~symdl.functions.accurate_derivatives`): sigmoid's sigma (1 - sigma) as sigma(u) sigma(-u), tanh's
      1 - tanh^2 as 4 sigma(2u) sigma(-2u): where sigma or tanh round to 1 the first forms lose every digit (a
      user's sigmoid(x) had a 215-ulp gradient).
    * A gradient that is then not finite at the extremes, or misses its tolerance, is replaced by the best of
      its forms that :func:`~symdl.export.accurate.most_accurate` measures: those of
      :data:`~symdl.export.accurate.REWRITES` (reciprocals of sums of squares as powers of hypot, Gaussians'
      arguments clamped or their exponents kept exact, ``exp(u) / (1 + exp(u))`` as sigmoid, ...), from its
      simplification too (within :func:`~symdl.expr.simplify_within`'s time bound) when it is not finite at the
      extremes.

      SymPy's derivative of a quotient is a sum of terms that overflow apart where their sum does not: ISRU's
      x / sqrt(1 + a^2 x^2) differentiates to 1 / sqrt(1 + a^2 x^2) - a^2 x^2 / (1 + a^2 x^2)^(3/2), inf / inf
      at x = 1e30 in float32, where the simplification (1 + a^2 x^2)^(-3/2) underflows to 0 quietly; log(cosh
      x) to sinh x / cosh x, where tanh x is its simplification. arctan's 1 / (1 + x^2) overflows in the square,
      hypot(x, 1)^-2 does not. The derivative of a user's x Phi(x) squares x in a Gaussian. Gradients already
      finite and accurate are not rewritten (a simplification may overflow where they do not: softsign's is
      x^2 |x| in a denominator).

    Gradients are derived from the stable form; with ``textbook`` (a stable form chosen by
    :func:`_accurate_forward`, not the user) from the definition as the user wrote it, the stable form's
    derivative one more candidate: the pseudo-Huber loss's gradient reads x / sqrt(1 + (x/delta)^2), not the
    derivative of its rationalized form.
    """
    from symdl.expr import simplify_within

    formula = op.formula()
    closed = {}
    for item in op.differentiable_inputs:
        if item.name in formula.grads:
            continue
        of_forward = sp.diff(formula.forward, item.symbol)  # what the kernel derives itself
        derived = accurate_derivatives(sp.diff(formula.definition, item.symbol) if textbook else of_forward)
        starts = []
        if textbook:  # the stable form's derivative, unless a clamp in it left steps, which no kernel prints
            of_stable = accurate_derivatives(of_forward)
            starts += [] if of_stable.has(sp.Heaviside) else [of_stable]
        if not_finite_at_extremes(op, derived) is not None:
            simplified, finished = simplify_within(derived)
            starts += [simplified] if finished else []
        derived = most_accurate(op, derived, wrt=item, bound=op.tolerance.grad_ulp, starts=starts)
        if derived != of_forward:
            closed[item.name] = derived
    if not closed:
        return op
    return replace(op, formulas={"": replace(formula, grads={**formula.grads, **closed})})


#: How many points of the inputs' domains a definition is evaluated at before anything is proven.
_REAL_POINTS = 16


def _real_on_domain(op: Op, expr: sp.Expr, what: str) -> None:
    """``expr`` is real and finite at points drawn from the inputs' (and parameters') domains, evaluated by mpmath
    as the proofs evaluate it: log(x) or sqrt(x) on the default domain (-6, 6) is complex for x < 0, which no
    kernel computes and no proof can compare (the domain is then the user's to narrow)."""
    from symdl.functions import to_textbook
    from symdl.proofs.ops import _sample_values, _symbols_of

    symbols = _symbols_of(op)
    function = sp.lambdify(symbols, to_textbook(expr), modules="mpmath")
    for point in _sample_values(op, np.random.default_rng(0), _REAL_POINTS):
        try:
            value = function(*(mpmath.mpf(point[s]) for s in symbols))
            real = isinstance(value, (int, float, mpmath.mpf)) and mpmath.isfinite(value)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):  # max/min or a where of a complex value
            real = False
        if not real:
            at = ", ".join(f"{s} = {point[s]:.4g}" for s in symbols if s in expr.free_symbols)
            domains = ", ".join(f"{i.name} in [{i.domain.low:g}, {i.domain.high:g}]" for i in op.inputs)
            per_input = " or {input: (low, high)}" if len(op.inputs) > 1 else ""
            raise DefinitionError(f"{op.name}: the {what} is not real and finite at {at} ({domains}); pass "
                                  f"domain=(low, high){per_input} where it is")


# --------------------------------------------------------------------------- the op
def build_op(name: str, definition: object, *, inputs: Sequence[str] = ("x",), params: object = None,
             domain: object = None, kinks: object = (), stable: object = None,
             grads: Mapping[str, object] | None = None, kind: str = "elementwise", reduction: str = "mean",
             summary: str = "",
             tolerance: Mapping[str, object] | None = None) -> Op:
    """The catalog entry for a user definition (every rule that needs no proof checked). See :func:`define_op`."""
    if not isinstance(name, str) or not _SNAKE.match(name) or keyword.iskeyword(name):
        raise DefinitionError(f"op name {name!r} is not a snake_case identifier")
    if name in ACTIVATIONS_AND_LOSSES:
        raise DefinitionError(f"{name}: the catalog already has an op of that name; choose another")
    if kind not in KINDS:
        raise DefinitionError(f"{name}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if isinstance(inputs, str):
        inputs = (inputs,)
    if not inputs:
        raise DefinitionError(f"{name}: an op needs at least one input")
    for item in inputs:
        _check_name(name, item, "input")
    if kind == "row" and len(inputs) != 1:
        raise DefinitionError(f"{name}: a row op has one input")
    param_list = _params(name, params)
    clash = set(inputs) & {p.name for p in param_list}
    if clash or len(set(inputs)) != len(inputs):
        raise DefinitionError(f"{name}: the name {sorted(clash or set(inputs))[0]!r} is used twice")
    domains = domain if isinstance(domain, Mapping) else {item: domain for item in inputs}
    symbols = {item: sp.Symbol(item, real=True) for item in inputs} | {p.name: p.symbol for p in param_list}
    expr = _expression(name, "definition", definition, symbols)
    missing = [item for item in inputs if symbols[item] not in expr.free_symbols]
    if missing:
        raise DefinitionError(f"{name}: input {missing[0]!r} does not appear in the definition {sp.sstr(expr)}")
    _check_functions(name, expr, "definition")
    has_rows = expr.has(rowsum, rowmax)
    if kind == "row" and not expr.has(rowsum):
        raise DefinitionError(f"{name}: a row op's definition reduces along dim with rowsum(...)")
    if kind != "row" and has_rows:
        raise DefinitionError(f"{name}: rowsum/rowmax need kind='row'")
    stable_expr = None if stable is None else _expression(name, "stable form", stable, symbols)
    if stable_expr is not None:
        _check_functions(name, stable_expr, "stable form")
    x = symbols[inputs[0]]
    closed = {k: _expression(name, f"gradient for {k}", v, symbols | {"g": sp.Symbol("g", real=True)})
              for k, v in (grads or {}).items()}
    unknown_grads = set(closed) - set(inputs)
    if unknown_grads:
        raise DefinitionError(f"{name}: grads= names {sorted(unknown_grads)[0]!r}, which is not an input")
    default_domain = LOSS_DOMAIN if kind == "loss" else ACTIVATION_DOMAIN
    op_inputs = tuple(Input(item, symbols[item], _domain(name, domains.get(item), default_domain)) for item in inputs)
    if kind == "row":
        if inputs[0] not in closed:
            closed[inputs[0]] = _row_vjp(name, stable_expr if stable_expr is not None else expr, x,
                                         sp.Symbol("g", real=True))
        param_list.append(Param("dim", None, Rule("integer"), doc="the axis the row reduces along"))
    if kind == "loss":
        choices = ("none", "mean", "sum")
        if reduction not in choices:
            raise DefinitionError(f"{name}: reduction must be one of {choices}, got {reduction!r}")
        param_list.insert(0, Param("reduction", reduction, Rule("choice", choices)))
    formula = Formula(definition=expr, stable=stable_expr, grads=closed, kinks=_kinks(name, kinks, symbols))
    if kind != "row":
        _uncovered_kinks(name, formula, x)
    family = "loss" if kind == "loss" else "activation"
    upstream = sp.Symbol("g", real=True)
    promised = _tolerance(name, tolerance or {}, symbols | {"g": upstream})
    op = Op(name=name, family=family, kind=KINDS[kind], summary=summary or f"User-defined op {name}",
            inputs=op_inputs, params=tuple(param_list), formulas={"": formula},
            row_symbols=(x, upstream) if kind == "row" else (), upstream=upstream, tolerance=promised)
    if kind != "row":  # (a row op's definition reads whole rows: its proofs expand it on explicit rows)
        _real_on_domain(op, expr, "definition")
    if stable_expr is not None:
        _finite_at_extremes(op, stable_expr, "stable form")
    if kind == "row":
        return op
    textbook = stable_expr is None
    if textbook:
        op = _accurate_forward(op)
    return _stable_gradients(_steps_at_ties(op, textbook=textbook), textbook=textbook)


#: A step H(u) of a ``max``/``min``'s derivative, by its value at the tie u = 0: one side ([u > 0]), the other
#: ([u >= 0]), or halfway (torch.maximum's and torch.minimum's backward split the gradient evenly at a tie).
_AT_TIES: dict[sp.Number, Callable[[sp.Expr], sp.Expr]] = {
    sp.S.Zero: lambda u: indicator(u > 0),
    sp.S.One: lambda u: indicator(u >= 0),
    # a Piecewise, not [u > 0] + [u = 0] / 2: NumPy adds two boolean masks as a logical or, and a scaled mask
    # would be float64 whatever the input's dtype
    sp.S.Half: lambda u: sp.Piecewise((1, u > 0), (sp.S.Half, sp.Eq(u, 0)), (0, True)),
}

#: The most steps whose tie values are searched together (3**3 assignments, each checked exactly at 8 points).
_SEARCHED_STEPS = 3


def _differentiated(formula: Formula, textbook: bool) -> sp.Expr:
    """What a user op's gradients are derived from: the stable form, or with ``textbook`` (a stable form chosen
    by :func:`_accurate_forward`) the definition as written."""
    return formula.definition if textbook else formula.forward


def _steps_at_ties(op: Op, *, textbook: bool = False) -> Op:
    """``op`` with the Heaviside steps that SymPy's derivative of a ``max`` or ``min`` leaves (d/dx max(x, 0) =
    H(x), with SymPy's H(0) = 1/2, which no kernel printer translates) made indicators (:data:`_AT_TIES`), so
    that the gradient at every declared kink is the subgradient declared there: max(x, 0) with ``kinks={0: 0}``
    gets [x > 0] (PyTorch's relu), with ``{0: 1}`` [x >= 0], with ``{0: 1/2}`` torch.maximum's even split. The
    first assignment that gives every kink's subgradient is taken ([u > 0] everywhere when none does: the kink
    proof then names the kink). The gradients become closed forms, proven equal to the derived ones away from
    the kinks like any other. ``textbook``: as in :func:`_stable_gradients` (the clamps of a chosen stable form
    add no steps).
    """
    from symdl.proofs.ops import _kink_proof, _sample_values

    formula = op.formula()
    derived = {i.name: sp.diff(_differentiated(formula, textbook), i.symbol) for i in op.differentiable_inputs
               if i.name not in formula.grads}
    steps = sorted(set().union(*(d.atoms(sp.Heaviside) for d in derived.values())), key=sp.default_sort_key)
    if not steps:
        return op
    first = derived.get(op.inputs[0].name, sp.S.Zero)  # the kinks are the first input's
    searched = [step for step in steps if first.has(step)][:_SEARCHED_STEPS]
    points = _sample_values(op, np.random.default_rng(0), 8)

    def lowered(at_ties: Mapping[sp.Basic, sp.Number]) -> Formula:
        table = {step: _AT_TIES[at_ties.get(step, sp.S.Zero)](step.args[0]) for step in steps}
        return replace(formula, grads={**formula.grads, **{name: d.xreplace(table) for name, d in derived.items()}})

    for values in itertools.product(_AT_TIES, repeat=len(searched)):
        candidate = lowered(dict(zip(searched, values)))
        if all(_kink_proof(op, candidate, first, kink, points).holds for kink in formula.kinks):
            break
    else:
        candidate = lowered({})
    return replace(op, formulas={"": candidate})


def _check_derivation(op: Op) -> Any:
    """Derive and prove ``op``; a claim that does not hold is a :class:`DefinitionError`."""
    from symdl.codegen.ops import _gradient_expr
    from symdl.proofs.ops import derive

    derivation = derive(op)
    for proof in derivation.proofs:
        if not proof.holds:
            rule = "not differentiable where claimed" if proof.claim.startswith("subgradient") else "not proven"
            raise DefinitionError(f"{op.name}: {rule}: {proof.claim} does not hold ({proof.method})")
    for item in op.differentiable_inputs:
        _check_functions(op.name, _gradient_expr(op, op.formula(), item.name), f"gradient for {item.name}")
    return derivation


# --------------------------------------------------------------------------- kernels
def _header(names: Sequence[str], command: str) -> str:
    return (
        f'"""NumPy kernels of user-defined ops: {", ".join(names)}.\n\n'
        f"Generated by ``{command}`` with symdl's printer and stability rules (those of ``symdl.kernels``);\n"
        "do not edit by hand: change the definitions and regenerate.\n"
        '"""\n\n'
        "# fmt: off\n"
        "from __future__ import annotations\n\n"
        "import math  # noqa: F401 - scalar parameter arithmetic\n\n"
        "import numpy as np\n\n"
        "from symdl.kernels import _runtime as _rt\n"
        "from symdl.kernels._runtime import ArrayLike\n"
    )


def render_numpy(ops: Sequence[Op], command: str = "symdl.define_op") -> str:
    """A NumPy kernel module for ``ops`` (imports NumPy and ``symdl.kernels`` only, no SymPy)."""
    names = [n for op in ops for n in kernel_names(op)]
    exports = "__all__ = [\n" + "".join(f"    {n!r},\n" for n in names) + "]\n"
    body = "\n\n".join(with_origin(op, TEMPLATES[op.kind](op)) for op in ops)
    return _header([op.name for op in ops], command) + "\n" + exports + "\n\n" + body


def compile_module(source: str, name: str) -> types.ModuleType:
    """Execute generated kernel source as a module (registered with linecache for tracebacks)."""
    filename = f"<symdl user op {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    module = types.ModuleType(f"symdl_user_ops_{name}")
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own generated source
    return module


# --------------------------------------------------------------------------- the user's object
@dataclass
class UserOp:
    """A user-defined op: its entry, its derivation and proofs, and NumPy kernels compiled from them.

    Call it like a kernel: ``op(x, **params)`` is the forward, ``op.vjp(grad, x, **params)`` the
    vector-Jacobian product (one gradient per input).
    """

    op: Op
    derivation: Any
    source: str
    module: types.ModuleType = field(repr=False)

    @property
    def name(self) -> str:
        """The op's name."""
        return self.op.name

    @property
    def forward(self) -> Callable[..., np.ndarray]:
        """The NumPy forward kernel ``name(*inputs, **params)``."""
        return getattr(self.module, self.name)

    @property
    def vjp(self) -> Callable[..., tuple]:
        """The NumPy VJP kernel ``name_vjp(grad, *inputs, **params)``."""
        return getattr(self.module, f"{self.name}_vjp")

    def __call__(self, *inputs: Any, **params: Any) -> np.ndarray:
        return self.forward(*inputs, **params)

    @property
    def derived(self) -> dict[str, sp.Expr]:
        """SymPy's derivative (or row VJP) of the definition, by input name."""
        return dict(self.derivation.derived)

    @property
    def proofs(self) -> list[Any]:
        """The proofs the kernels rely on (each holds)."""
        return list(self.derivation.proofs)

    def latex(self) -> str:
        """The definition, stable form and gradients as reStructuredText math blocks (LaTeX)."""
        from symdl.printing.latex import formula_latex

        return "\n".join(formula_latex(self.op, self.op.formula()))

    def verify(self) -> Any:
        """The ``symdl verify`` row: proofs, finite differences, ulp against mpmath, finite at extremes."""
        from symdl.export.checks import verify_row

        return verify_row(self)

    def gradcheck(self, *inputs: Any, **params: Any) -> Any:
        """:func:`symdl.check.gradcheck` of the VJP kernel against the forward at ``inputs``."""
        from symdl.check import gradcheck

        def forward(*arrays: Any) -> np.ndarray:
            return self.forward(*arrays, **params)

        def vjp(grad: Any, *arrays: Any) -> tuple:
            return self.vjp(grad, *arrays, **params)

        return gradcheck(forward, tuple(inputs), vjp)

    def to_torch(self) -> types.ModuleType:
        """A PyTorch module exporting this op (``.name``, ``.NameFunction``, the ``nn.Module``)."""
        from symdl.export import export_source

        return compile_module(export_source([self], "torch"), f"{self.name}_torch")

    def to_jax(self) -> types.ModuleType:
        """A JAX module exporting this op as a ``jax.custom_vjp`` function."""
        from symdl.export import export_source

        return compile_module(export_source([self], "jax"), f"{self.name}_jax")


def define_op(name: str, definition: object, *, inputs: Sequence[str] = ("x",),
              params: Mapping[str, object] | Sequence[str] | None = None, domain: object = None,
              kinks: object = (), stable: object = None, grads: Mapping[str, object] | None = None,
              kind: str = "elementwise", reduction: str = "mean", summary: str = "",
              tolerance: Mapping[str, object] | None = None) -> UserOp:
    r"""Define an op from its math; derive, prove and compile it like a catalog op.

    Args:
        name: a new snake_case name (not a catalog op's).
        definition: the textbook expression, as a SymPy expression or as text (parsed by symdl's safe
            parser, e.g. ``"x * tanh(softplus(x))"``); row ops use ``rowsum(...)``.
        inputs: array argument names in positional order (symbols of the same names in the definition).
        params: keyword parameters with defaults, ``{"alpha": 1.0}`` or ``{"alpha": (1.0, (0.5, 2))}`` (a
            sample range for the proofs).
        domain: ``(low, high)`` or ``(low, high, extremes)`` for every input, or a dict by input name.
        kinks: ``{at: subgradient}``: every point where the definition is not differentiable (a ``max``'s or
            ``min``'s tie takes one side's slope, the other's or their mean, as declared).
        stable: an equal expression that stays finite where the definition overflows (proven equal); without
            it, one is looked for where the definition is not finite or accurate (:mod:`symdl.export.accurate`).
        grads: closed-form gradients by input name (VJPs with ``g`` for row ops), proven equal to the derived.
        kind: ``"elementwise"``, ``"row"`` (softmax-like over ``dim``) or ``"loss"`` (then ``reduction``).
        reduction: the default reduction of a loss.
        summary: one line for docstrings and listings.
        tolerance: what the verify row promises against mpmath, as :class:`~symdl.catalog.spec.Tolerance`'s
            fields (``forward_ulp``, ``grad_ulp``, and ``forward_scale``/``grad_scale`` expressions: the size of
            the terms a formula must combine, e.g. ``"abs(x - y) + 1"`` for a loss of ``x - y``).

    Returns:
        A :class:`UserOp`.

    Raises:
        DefinitionError: a rule is broken (the message names the op and the rule), before any code is generated.
    """
    op = build_op(name, definition, inputs=inputs, params=params, domain=domain, kinks=kinks, stable=stable,
                  grads=grads, kind=kind, reduction=reduction, summary=summary, tolerance=tolerance)
    derivation = _check_derivation(op)
    source = render_numpy([op])
    return UserOp(op, derivation, source, compile_module(source, name))
