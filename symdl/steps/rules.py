r"""The differentiation rules, one small frozen dataclass each, and the builder that picks them.

:func:`steps` builds the tree for :math:`\frac{d}{dx} f` by dispatching on ``type(f)`` through
:data:`DISPATCH` (an entry per SymPy class, found along the class's MRO, so ``sigmoid`` finds the
``Function`` entry), never through a chain of ``elif``. A composite argument goes through the
chain rule, naming the inner function ``u`` (then ``v``, ``w``, ...: a letter the expression does
not use). Where no rule fits, :class:`SympyDiffRule` says which subexpression and uses SymPy's
``diff``: a labelled step, never a silent gap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import sympy as sp

from symdl import functions as fn
from symdl.steps.tree import Segment, Step, derivative

__all__ = ["steps", "DISPATCH", "TABLE", "RULES", "SizeLimitError", "MAX_NODES"]

#: A tree bigger than this many steps is refused (an exploding derivation).
MAX_NODES = 2000


class SizeLimitError(Exception):
    """The derivation grew past :data:`MAX_NODES` steps (caught and reported by the API)."""


# --------------------------------------------------------------------------- basic rules
@dataclass(frozen=True, eq=False)
class ConstantRule(Step):
    """d/dx c = 0 (c does not depend on x)"""

    rule: ClassVar[str] = "constant"

    def combine(self) -> sp.Expr:
        return sp.S.Zero

    def sentence(self) -> tuple[Segment, ...]:
        return ("constant: its derivative is 0",)


@dataclass(frozen=True, eq=False)
class IdentityRule(Step):
    """d/dx x = 1"""

    rule: ClassVar[str] = "identity"

    def combine(self) -> sp.Expr:
        return sp.S.One

    def sentence(self) -> tuple[Segment, ...]:
        return ("the variable itself: ", derivative(self.var, self.var), " = 1")


@dataclass(frozen=True, eq=False)
class SumRule(Step):
    """(f + g)' = f' + g'"""

    terms: tuple[Step, ...] = ()
    rule: ClassVar[str] = "sum"

    def combine(self, *values: sp.Expr) -> sp.Expr:
        return sp.Add(*values)

    def sentence(self) -> tuple[Segment, ...]:
        return ("sum rule: differentiate term by term",)


@dataclass(frozen=True, eq=False)
class ConstantMultipleRule(Step):
    """(c f)' = c f'"""

    constant: sp.Expr = sp.S.One
    inner: Step | None = None
    rule: ClassVar[str] = "constant_multiple"

    def combine(self, value: sp.Expr) -> sp.Expr:
        return self.constant * value

    def sentence(self) -> tuple[Segment, ...]:
        return ("constant multiple: ", self.constant, " stays a factor")


@dataclass(frozen=True, eq=False)
class ProductRule(Step):
    """(f g)' = f' g + f g'"""

    factors: tuple[Step, ...] = ()
    rule: ClassVar[str] = "product"

    def combine(self, *values: sp.Expr) -> sp.Expr:
        parts = [f.expr for f in self.factors]
        return sp.Add(*(sp.Mul(*parts[:i], value, *parts[i + 1:]) for i, value in enumerate(values)))

    def sentence(self) -> tuple[Segment, ...]:
        return ("product rule: each factor differentiated in turn, times the others",)


@dataclass(frozen=True, eq=False)
class QuotientRule(Step):
    """(f / g)' = (f' g - f g') / g^2"""

    numerator: Step | None = None
    denominator: Step | None = None
    rule: ClassVar[str] = "quotient"

    def combine(self, top: sp.Expr, bottom: sp.Expr) -> sp.Expr:
        f, g = self.numerator.expr, self.denominator.expr  # type: ignore[union-attr]
        return (top * g - f * bottom) / g**2

    def sentence(self) -> tuple[Segment, ...]:
        return ("quotient rule: ", sp.Symbol("(f'g - fg')/g^2"))


@dataclass(frozen=True, eq=False)
class PowerRule(Step):
    """d/dx x^n = n x^(n-1)"""

    rule: ClassVar[str] = "power"

    def combine(self) -> sp.Expr:
        n = self.expr.exp
        return n * self.var ** (n - 1)

    def sentence(self) -> tuple[Segment, ...]:
        n = sp.Symbol("n", integer=True)  # (a constant exponent; integer only so that printers read it as one)
        return ("power rule: ", derivative(self.var ** n, self.var), " = ", n * self.var ** (n - 1))


@dataclass(frozen=True, eq=False)
class ExponentialRule(Step):
    """d/dx a^x = a^x log a (a constant)"""

    rule: ClassVar[str] = "exponential"

    def combine(self) -> sp.Expr:
        return self.expr * sp.log(self.expr.base)

    def sentence(self) -> tuple[Segment, ...]:
        a = sp.Symbol("a")
        return ("exponential with constant base: ", derivative(a**self.var, self.var), " = ",
                a**self.var * sp.log(a))


@dataclass(frozen=True, eq=False)
class GeneralPowerRule(Step):
    """(f^g)' = f^g (g' log f + g f'/f)"""

    base: Step | None = None
    exponent: Step | None = None
    rule: ClassVar[str] = "general_power"

    def combine(self, df: sp.Expr, dg: sp.Expr) -> sp.Expr:
        f, g = self.expr.base, self.expr.exp
        return self.expr * (dg * sp.log(f) + g * df / f)

    def sentence(self) -> tuple[Segment, ...]:
        return ("variable base and exponent: write ", self.expr, " = ",
                sp.exp(self.expr.exp * sp.log(self.expr.base)), " (where the base is positive)")


# --------------------------------------------------------------------------- functions: the table
#: Rule names of known functions (by class); any other ``Function`` with an ``fdiff`` is "function".
TABLE: dict[type, str] = {
    sp.exp: "exp", sp.log: "log", sp.sin: "trig", sp.cos: "trig", sp.tan: "trig", sp.sinh: "hyperbolic",
    sp.cosh: "hyperbolic", sp.tanh: "hyperbolic", sp.asinh: "inverse_hyperbolic", sp.atan: "inverse_trig",
    sp.asin: "inverse_trig", sp.acos: "inverse_trig", sp.erf: "erf", fn.normal_cdf: "normal_cdf",
    fn.sigmoid: "sigmoid", fn.softplus: "softplus", fn.log1p: "log1p", fn.expm1: "expm1",
}
#: What each primitive is, in words, where the rule sentence names it.
FUNCTION_WORDS: dict[type, str] = {
    fn.normal_cdf: "the standard normal CDF Phi (its derivative is the normal pdf phi)",
    fn.sigmoid: "sigmoid's known derivative",
    fn.softplus: "softplus' = sigmoid",
    sp.tanh: "tanh's known derivative",  # (the formula that follows says 1 - tanh^2, set as math)
}


def _u() -> sp.Symbol:
    return sp.Symbol("u", real=True)


@dataclass(frozen=True, eq=False)
class TableRule(Step):
    """d/du f(u) = f'(u) for a function with a known derivative"""

    rule: ClassVar[str] = "function"

    @property
    def name(self) -> str:
        return TABLE.get(type(self.expr), "function")

    def rule_name(self) -> str:
        return self.name

    def combine(self) -> sp.Expr:
        known = self.expr.fdiff(1)
        if type(self.expr) is sp.tanh:  # the textbook's form, 1 - tanh^2 (SymPy's fdiff says the same)
            return 1 - sp.tanh(self.expr.args[0]) ** 2
        return known

    def sentence(self) -> tuple[Segment, ...]:
        default = f"{self.name} rule" if self.name != "function" else "known derivative"
        words = FUNCTION_WORDS.get(type(self.expr), default)
        generic = type(self.expr)(_u())
        return (f"{words}: ", derivative(generic, _u()), " = ", TableRule(generic, _u()).combine())


@dataclass(frozen=True, eq=False)
class ChainRule(Step):
    """d/dx f(u(x)) = f'(u) u'(x)"""

    u: sp.Symbol | None = None
    inner: sp.Expr = sp.S.Zero
    outer: Step | None = None  # d/du f(u)
    inner_step: Step | None = None  # d/dx u(x)
    rule: ClassVar[str] = "chain"

    def combine(self, outer: sp.Expr, inner: sp.Expr) -> sp.Expr:
        return outer.subs(self.u, self.inner) * inner

    def form(self) -> sp.Expr:
        return sp.Mul(derivative(self.outer.expr, self.u), derivative(self.inner, self.var),  # type: ignore[union-attr]
                      evaluate=False)

    def sentence(self) -> tuple[Segment, ...]:
        return ("chain rule with ", sp.Eq(self.u, self.inner, evaluate=False))


@dataclass(frozen=True, eq=False)
class PartialsRule(Step):
    """d/dx f(g_1, ..., g_m) = sum_i (df/dg_i) g_i'"""

    arguments: tuple[Step, ...] = ()
    rule: ClassVar[str] = "partials"

    def combine(self, *values: sp.Expr) -> sp.Expr:
        return sp.Add(*(self.expr.fdiff(i + 1) * v for i, v in enumerate(values)))

    def sentence(self) -> tuple[Segment, ...]:
        return (f"chain rule through each argument of {type(self.expr).__name__} (its known partial derivatives)",)


# --------------------------------------------------------------------------- kinks: abs, max, min, piecewise
@dataclass(frozen=True, eq=False)
class AbsRule(Step):
    """d/dx |x| = sign(x); PyTorch's subgradient at 0 is 0 (sign(0) = 0)"""

    rule: ClassVar[str] = "abs"

    def combine(self) -> sp.Expr:
        return sp.sign(self.var)

    def sentence(self) -> tuple[Segment, ...]:
        return ("absolute value: ", derivative(sp.Abs(self.var), self.var), " = ", sp.sign(self.var),
                "; at the kink ", sp.Eq(self.var, 0), " PyTorch uses sign(0) = 0")


@dataclass(frozen=True, eq=False)
class MaxMinRule(Step):
    """max(f, g)' = f' where f > g, g' where g > f (min: the reverse); at a tie PyTorch gives each half"""

    left: Step | None = None
    right: Step | None = None
    rule: ClassVar[str] = "max_min"

    @property
    def is_max(self) -> bool:
        return isinstance(self.expr, sp.Max)

    def combine(self, df: sp.Expr, dg: sp.Expr) -> sp.Expr:
        f, g = self.left.expr, self.right.expr  # type: ignore[union-attr]
        first = f > g if self.is_max else f < g
        second = f < g if self.is_max else f > g
        return sp.Piecewise((df, first), (dg, second), ((df + dg) / 2, True))

    def sentence(self) -> tuple[Segment, ...]:
        which = "max" if self.is_max else "min"
        return (f"{which}: the derivative of the branch that wins; at a tie ",
                sp.Eq(self.left.expr, self.right.expr),  # type: ignore[union-attr]
                f" torch.{which}imum gives each branch half (relu, a max with 0, takes 0 at 0)")


@dataclass(frozen=True, eq=False)
class PiecewiseRule(Step):
    """(f_i where c_i)' = f_i' where c_i, branch by branch"""

    branches: tuple[Step, ...] = ()
    rule: ClassVar[str] = "piecewise"

    def combine(self, *values: sp.Expr) -> sp.Expr:
        return sp.Piecewise(*((v, c) for v, (_, c) in zip(values, self.expr.args, strict=True)))

    def sentence(self) -> tuple[Segment, ...]:
        return ("piecewise: each branch differentiated; on a boundary the branch whose condition holds "
                "there gives the subgradient (as torch.where's gradient)",)


# --------------------------------------------------------------------------- index sums
@dataclass(frozen=True, eq=False)
class KroneckerRule(Step):
    """d z_k / d z_j = delta_kj"""

    rule: ClassVar[str] = "kronecker"

    def combine(self) -> sp.Expr:
        return sp.KroneckerDelta(self.expr.indices[0], self.var.indices[0])

    def sentence(self) -> tuple[Segment, ...]:
        return ("Kronecker delta: ", derivative(self.expr, self.var), " = ", self.combine())


@dataclass(frozen=True, eq=False)
class IndexSumRule(Step):
    """d/dz_j sum_k f_k = sum_k d f_k / d z_j, the delta picking out k = j"""

    summand: Step | None = None
    rule: ClassVar[str] = "index_sum"

    def combine(self, value: sp.Expr) -> sp.Expr:
        return in_range(sp.Sum(value, *self.expr.limits).doit(), self.var.indices[0], self.expr.limits[0][2])

    def form(self) -> sp.Expr:
        return sp.Sum(derivative(self.summand.expr, self.var), *self.expr.limits)  # type: ignore[union-attr]

    def sentence(self) -> tuple[Segment, ...]:
        k, low, high = self.expr.limits[0]
        return ("sum over an index: differentiate each term; the Kronecker delta keeps the term ",
                sp.Eq(k, self.var.indices[0]), f" ({self.var.indices[0]} is one of {low}..{high})")


def in_range(expr: sp.Expr, j: sp.Expr, n: sp.Expr) -> sp.Expr:
    """``expr`` with the index ``j`` assumed in ``1..n``: SymPy's range conditions (``j <= n``) on the
    delta's collapsed sum replaced by True."""
    def holds(relation: sp.Basic) -> bool:
        return all(bool(relation.subs({j: jj, n: nn})) for nn in (1, 4, 9) for jj in {1, nn, (nn + 1) // 2})

    def decide(condition: sp.Basic) -> sp.Basic:
        return condition.replace(
            lambda c: isinstance(c, sp.core.relational.Relational) and c.free_symbols <= {j, n} and j in c.free_symbols,
            lambda c: sp.true if holds(c) else c)

    return expr.replace(lambda e: isinstance(e, sp.Piecewise),
                        lambda e: sp.Piecewise(*((v, decide(c)) for v, c in e.args)))


# --------------------------------------------------------------------------- fallback
@dataclass(frozen=True, eq=False)
class SympyDiffRule(Step):
    """no rule of symdl's applies: SymPy's diff, labelled"""

    rule: ClassVar[str] = "sympy_diff"

    def combine(self) -> sp.Expr:
        return sp.diff(self.expr, self.var)

    def sentence(self) -> tuple[Segment, ...]:
        return ("no step-by-step rule for ", self.expr, ": SymPy's diff (verified like every step)")


RULES: tuple[type[Step], ...] = (
    ConstantRule, IdentityRule, SumRule, ConstantMultipleRule, ProductRule, QuotientRule, PowerRule,
    ExponentialRule, GeneralPowerRule, TableRule, ChainRule, PartialsRule, AbsRule, MaxMinRule, PiecewiseRule,
    KroneckerRule, IndexSumRule, SympyDiffRule,
)


# --------------------------------------------------------------------------- the builder
def depends(expr: sp.Expr, var: sp.Basic) -> bool:
    """Whether ``expr`` depends on ``var``; for an indexed ``z[j]``, on any component ``z[k]`` (k may equal j)."""
    if isinstance(var, sp.Indexed):
        return any(i.base == var.base for i in expr.atoms(sp.Indexed))
    return expr.has(var)


class _Builder:
    """Builds a tree; counts its nodes (refusing past :data:`MAX_NODES`) and hands out fresh letters."""

    LETTERS = ("u", "v", "w", "s", "t", "r", "q")

    def __init__(self, taken: set[str], deadline: float | None = None) -> None:
        self.taken = set(taken)
        self.nodes = 0
        self.deadline = deadline

    def fresh(self) -> sp.Symbol:
        for name in (*self.LETTERS, *(f"u_{i}" for i in range(1, 1000))):
            if name not in self.taken:
                self.taken.add(name)
                return sp.Symbol(name, real=True)
        raise SizeLimitError("too many nested functions")

    def build(self, expr: sp.Expr, var: sp.Symbol) -> Step:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SizeLimitError(f"the derivation needs more than {MAX_NODES} steps")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise SizeLimitError("building the steps ran over the time limit")
        if not depends(expr, var):
            return ConstantRule(expr, var)
        if expr == var:
            return IdentityRule(expr, var)
        for cls in type(expr).__mro__:
            handler = DISPATCH.get(cls)
            if handler is not None:
                return handler(self, expr, var)
        return SympyDiffRule(expr, var)

    # one method per SymPy class (the DISPATCH table below maps classes to them)
    def add(self, expr: sp.Add, var: sp.Symbol) -> Step:
        return SumRule(expr, var, tuple(self.build(t, var) for t in expr.as_ordered_terms()))

    def mul(self, expr: sp.Mul, var: sp.Symbol) -> Step:
        factors = sp.Mul.make_args(expr)
        constant = sp.Mul(*(f for f in factors if not depends(f, var)))
        rest = sp.Mul(*(f for f in factors if depends(f, var)))
        if constant != 1:
            return ConstantMultipleRule(expr, var, constant, self.build(rest, var))
        numerator, denominator = expr.as_numer_denom()
        if depends(denominator, var) and depends(numerator, var) and not isinstance(denominator, sp.Mul | sp.Pow):
            return QuotientRule(expr, var, self.build(numerator, var), self.build(denominator, var))
        factors = sp.Mul.make_args(expr)
        return ProductRule(expr, var, tuple(self.build(f, var) for f in factors))

    def pow(self, expr: sp.Pow, var: sp.Symbol) -> Step:
        base, exponent = expr.base, expr.exp
        if depends(exponent, var) and depends(base, var):
            return GeneralPowerRule(expr, var, self.build(base, var), self.build(exponent, var))
        if depends(exponent, var):
            if base == sp.E:
                return self.function(sp.exp(exponent), var)
            if exponent == var:
                return ExponentialRule(expr, var)
            return self.chain(expr, var, exponent, lambda u: base**u, ExponentialRule)
        if base == var:
            return PowerRule(expr, var)
        return self.chain(expr, var, base, lambda u: u**exponent, PowerRule)

    def function(self, expr: sp.Function, var: sp.Symbol) -> Step:
        try:
            for index in range(len(expr.args)):
                expr.fdiff(index + 1)
        except (sp.core.function.ArgumentIndexError, NotImplementedError, AttributeError, TypeError):
            return SympyDiffRule(expr, var)
        if len(expr.args) != 1:
            return PartialsRule(expr, var, tuple(self.build(a, var) for a in expr.args))
        rule = TableRule
        if expr.args[0] == var:
            return rule(expr, var)
        return self.chain(expr, var, expr.args[0], lambda u: type(expr)(u), rule)

    def abs(self, expr: sp.Abs, var: sp.Symbol) -> Step:
        if expr.args[0] == var:
            return AbsRule(expr, var)
        return self.chain(expr, var, expr.args[0], sp.Abs, AbsRule)

    def maxmin(self, expr: sp.Max | sp.Min, var: sp.Symbol) -> Step:
        first, *rest = expr.args
        second = rest[0] if len(rest) == 1 else type(expr)(*rest, evaluate=False)
        return MaxMinRule(expr, var, self.build(first, var), self.build(second, var))

    def piecewise(self, expr: sp.Piecewise, var: sp.Symbol) -> Step:
        return PiecewiseRule(expr, var, tuple(self.build(e, var) for e, _ in expr.args))

    def indexed(self, expr: sp.Indexed, var: sp.Symbol) -> Step:
        if isinstance(var, sp.Indexed) and expr.base == var.base:
            return KroneckerRule(expr, var)
        return SympyDiffRule(expr, var)

    def sum(self, expr: sp.Sum, var: sp.Symbol) -> Step:
        if len(expr.limits) != 1 or not isinstance(var, sp.Indexed):
            return SympyDiffRule(expr, var)
        return IndexSumRule(expr, var, self.build(expr.function, var))

    def chain(self, expr: sp.Expr, var: sp.Symbol, inner: sp.Expr, outer: Callable[[sp.Expr], sp.Expr],
              rule: type[Step]) -> Step:
        """f(inner(x)) by the chain rule with a fresh letter u = inner."""
        u = self.fresh()
        shape = outer(u)
        self.nodes += 1
        return ChainRule(expr, var, u, inner, rule(shape, u), self.build(inner, var))


#: Rule builders by SymPy class (looked up along the class's MRO: the first match wins).
DISPATCH: dict[type, Callable[[_Builder, sp.Expr, sp.Symbol], Step]] = {
    sp.Add: _Builder.add, sp.Mul: _Builder.mul, sp.Pow: _Builder.pow, sp.Abs: _Builder.abs,
    sp.Max: _Builder.maxmin, sp.Min: _Builder.maxmin, sp.Piecewise: _Builder.piecewise,
    sp.Indexed: _Builder.indexed, sp.Sum: _Builder.sum, sp.Function: _Builder.function,
}


def steps(expr: sp.Expr, var: sp.Symbol, deadline: float | None = None) -> Step:
    """The rule tree of ``d expr / d var``.

    Args:
        deadline: a ``time.monotonic()`` time past which building stops.

    Raises:
        SizeLimitError: the tree would have more than :data:`MAX_NODES` steps, or the deadline passed.
    """
    names = {s.name for s in expr.free_symbols} | {str(var)}
    return _Builder(names, deadline).build(expr, var)
