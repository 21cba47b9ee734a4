r"""The data model of step-by-step derivations: rule nodes, their verification records, the container.

A derivation is a tree of **steps**, after the pattern of SymPy's ``manualintegrate``: one small
frozen dataclass per rule, whose one-line docstring is the rule in math. A step knows

* ``expr`` and ``var``: it claims :math:`\frac{d}{d\,var}\,expr` (a :class:`Rewrite` instead claims
  ``before = after``);
* ``children``: the steps it needs (the factors of a product, the inner and outer derivative of a
  chain, ...);
* ``combine(*child_values)``: the rule itself, given its children's derivatives. ``eval()`` is
  ``combine`` of the children's results (the result *this rule* claims, never SymPy's ``diff``);
  ``form()`` is ``combine`` of the children's unevaluated ``Derivative`` objects, the middle of a
  textbook line such as :math:`\frac{d}{dx}\sigma(x)^2 = 2\sigma(x)\,\frac{d}{dx}\sigma(x)`;
* ``claim(substitute)``: the two sides the verifier proves equal (for a derivative step
  ``diff(expr, var)`` and ``eval()``; a rewrite's ``before`` and ``after``), with the derivation's
  named subexpressions substituted back by ``substitute``; override it for steps proven another way;
* ``sentence()``: the justification as segments, plain text (``str``) and math (SymPy objects), so
  that each printer sets the text and the math its own way ("chain rule with", u, "=", inner).

**Adding a rule**: subclass :class:`Step` (``@dataclass(frozen=True, eq=False)``), give it a
docstring (the rule in math, one line), a ``rule`` class attribute (the snake_case name used in
JSON and tests), its own fields (children are fields holding :class:`Step` objects, listed by
``children``), ``combine`` and ``sentence``. The builder in :mod:`symdl.steps.rules` picks rules
from a table keyed on SymPy class; other packages (graphs, matrix calculus) build trees of their
own step classes directly and may override ``claim`` or ``verify``.

**Verification** (:mod:`symdl.steps.verify`) proves each step's claim: ``expand(a - b) == 0``,
else a time-bounded ``simplify``, else a 50-digit numeric identity at sample points away from
kinks. :class:`Check` records the outcome and the method; :meth:`Derivation.verify` fills
``Derivation.checks`` (keyed by the step's identity: the steps stay frozen).

**Printers** (:mod:`symdl.steps.printers`: text, latex, markdown, json, html) consume a
:class:`Derivation`: its :class:`Part` s in order, each a tree walked through ``children`` (each
node printed as ``d/dvar expr = form()`` with its ``sentence()``, then its children, then
``= eval()`` when the form had unevaluated derivatives) followed by the part's rewrite chain, and
``Derivation.checks`` for the verification marks. ``Derivation.render(fmt)`` dispatches through
``PRINTERS``; a printer registers itself with :func:`printer`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from typing import ClassVar, Literal

import sympy as sp

__all__ = ["Step", "Rewrite", "Check", "Part", "Let", "Derivation", "Segment", "PRINTERS", "printer", "derivative"]

#: A piece of a sentence: plain text, or math that each printer typesets.
Segment = str | sp.Basic

Method = Literal["expand", "simplify", "numeric", "instance", "failed", "unchecked"]


def derivative(expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """The unevaluated ``d expr / d var``, as printed in a step's middle form."""
    return sp.Derivative(expr, var, evaluate=False)


@dataclass(frozen=True)
class Check:
    """How a step's claim was verified.

    Attributes:
        ok: the two sides are equal.
        method: ``expand`` (expand(a - b) == 0), ``simplify`` (a bounded simplify of a - b is 0),
            ``numeric`` (equal to 50 digits at every sample point), ``instance`` (on an explicit
            instance, e.g. n = 4, j = 2), ``failed`` or ``unchecked`` (over the time budget).
        detail: what was compared or why it failed (a sample point, the instance).
    """

    ok: bool
    method: Method
    detail: str = ""


@dataclass(frozen=True, eq=False)
class Step:
    """Base class of every rule: the derivative of ``expr`` with respect to ``var``."""

    expr: sp.Expr
    var: sp.Symbol

    #: The snake_case rule name (JSON ``rule``, tests).
    rule: ClassVar[str] = "step"

    @property
    def children(self) -> tuple[Step, ...]:
        """The sub-steps, in printing order: every field holding a :class:`Step` (or a tuple of them)."""
        found: list[Step] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Step):
                found.append(value)
            elif isinstance(value, tuple):
                found.extend(v for v in value if isinstance(v, Step))
        return tuple(found)

    def rule_name(self) -> str:
        """The rule's name for this node (``rule``; the function table names its entry: ``exp``, ``sigmoid``)."""
        return self.rule

    def combine(self, *values: sp.Expr) -> sp.Expr:
        """The rule: this step's result from its children's derivatives (in ``children`` order)."""
        raise NotImplementedError(type(self).__name__)

    def eval(self) -> sp.Expr:
        """The result this rule claims (its children's results combined by the rule)."""
        return self.combine(*(c.eval() for c in self.children))

    def form(self) -> sp.Expr:
        """The rule applied with the children's derivatives left unevaluated."""
        return self.combine(*(derivative(c.expr, c.var) for c in self.children))

    def claim(self, substitute: Callable[[sp.Expr], sp.Expr] | None = None) -> tuple[sp.Expr, sp.Expr]:
        """The two sides verification proves equal: the true derivative and the claimed one, with the
        derivation's named subexpressions substituted back by ``substitute`` (None: as they are)."""
        truth, claimed = sp.diff(self.expr, self.var), self.eval()
        if substitute is None:
            return truth, claimed
        return substitute(truth), substitute(claimed)

    def sentence(self) -> tuple[Segment, ...]:
        """The justification, as segments of text and math."""
        return (self.title(),)

    @classmethod
    def title(cls) -> str:
        """The first line of the class docstring: the rule in math."""
        return (cls.__doc__ or cls.rule).strip().splitlines()[0]

    def lhs(self) -> sp.Expr:
        """What the step's line starts with (``d/dvar expr``)."""
        return derivative(self.expr, self.var)

    def walk(self) -> Iterator[Step]:
        """This step and every descendant, depth first (pre-order)."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, eq=False)
class Rewrite(Step):
    """before = after (an algebraic identity, named)."""

    expr: sp.Expr  # the expression before
    var: sp.Symbol | None = None
    after: sp.Expr = sp.S.Zero
    reason: str = ""
    #: Symbols the identity assumes a relation for (``sum_k y_k = 1``): checked with these substitutions.
    given: tuple[tuple[sp.Expr, sp.Expr], ...] = ()
    #: The justification with its math as math (``"name ", Eq(sigma(x), 1/(1 + e^-x))``), which each printer
    #: typesets; empty: the ``reason`` as plain text. ``reason`` stays the rewrite's name (JSON, tests).
    words: tuple[Segment, ...] = ()

    rule: ClassVar[str] = "rewrite"

    @property
    def children(self) -> tuple[Step, ...]:
        return ()

    def eval(self) -> sp.Expr:
        return self.after

    def form(self) -> sp.Expr:
        return self.after

    def claim(self, substitute: Callable[[sp.Expr], sp.Expr] | None = None) -> tuple[sp.Expr, sp.Expr]:
        before, after = (side.replace(lambda e: isinstance(e, sp.Derivative), lambda e: e.doit())
                         for side in (self.expr, self.after))  # a stated derivative is compared by its value
        if substitute is not None:  # the names first: the relation assumed may hold between what they stand for
            before, after = substitute(before), substitute(after)
        for old, new in self.given:
            before, after = before.subs(old, new), after.subs(old, new)
        return before, after

    def sentence(self) -> tuple[Segment, ...]:
        return self.words or (self.reason,)

    def lhs(self) -> sp.Expr:
        return self.expr


@dataclass(frozen=True)
class Let:
    """A named subexpression: ``symbol`` stands for ``value`` in printed steps (and is substituted back
    before verification)."""

    symbol: sp.Basic
    value: sp.Expr
    text: str = ""  # what the name is, in words


@dataclass(frozen=True, eq=False)
class Part:
    """One section of a derivation: a rule tree for ``d expr / d var`` then a chain of rewrites.

    Attributes:
        title: the section heading ("textbook case", "from the definition", "what the kernel computes").
        tree: the rule tree (None: a section of rewrites only, starting from ``start``).
        rewrites: identities moving the tree's result to the target form, in order.
        notes: sentences printed after the section (a kink's subgradient, a clamp's threshold).
        key: the name of the result this part gives in ``Derivation.result`` (None: not a result).
    """

    title: str
    tree: Step | None
    rewrites: tuple[Rewrite, ...] = ()
    notes: tuple[str, ...] = ()
    key: str | None = None

    @property
    def result(self) -> sp.Expr:
        """The last right-hand side: the final rewrite's, else the tree's."""
        if self.rewrites:
            return self.rewrites[-1].after
        assert self.tree is not None
        return self.tree.eval()

    def steps(self) -> Iterator[Step]:
        """Every step of the part: the tree's (pre-order) then the rewrites."""
        if self.tree is not None:
            yield from self.tree.walk()
        yield from self.rewrites


#: Printers by format name: each takes a derivation and returns the document text.
PRINTERS: dict[str, Callable[[Derivation], str]] = {}


def printer(name: str) -> Callable[[Callable[[Derivation], str]], Callable[[Derivation], str]]:
    """Register a printer for ``Derivation.render(name)``."""

    def register(function: Callable[[Derivation], str]) -> Callable[[Derivation], str]:
        PRINTERS[name] = function
        return function

    return register


@dataclass(eq=False)
class Derivation:
    """A derivation: what is differentiated, the named subexpressions and assumptions, the parts.

    Attributes:
        expression: the function differentiated (for display and JSON ``expression``).
        wrt: the variables.
        parts: the sections, in reading order (textbook case first).
        title: a heading (a catalog name, ``f(x, y)``).
        lets: named subexpressions used in the steps.
        assumptions: relations assumed, ``(lhs, rhs, words)`` (``sum_k y_k = 1``), stated as such.
        notes: sentences printed at the end.
        source: for a Python function, its source rendered by latexify-py (LaTeX, one row per statement), else None.
        source_lines: for a Python function, each line as written, ``(latex, text)`` (``symdl.steps.python``).
        checks: verification records by ``id(step)`` (filled by :meth:`verify`).
    """

    expression: sp.Expr
    wrt: tuple[sp.Symbol, ...]
    parts: list[Part]
    title: str = ""
    lets: tuple[Let, ...] = ()
    assumptions: tuple[tuple[sp.Expr, sp.Expr, str], ...] = ()
    notes: tuple[str, ...] = ()
    source: str | None = None
    source_lines: tuple[tuple[str, str], ...] = ()
    checks: dict[int, Check] = field(default_factory=dict)
    _printed: dict[sp.Basic, sp.Basic] = field(default_factory=dict, repr=False)  # abbreviate's results

    def steps(self) -> Iterator[Step]:
        """Every step of every part."""
        for part in self.parts:
            yield from part.steps()

    @property
    def result(self) -> dict[str, sp.Expr]:
        """The results by name (``d/dx``: the derivative with respect to x), in part order."""
        return {p.key: p.result for p in self.parts if p.key is not None}

    def check(self, step: Step) -> Check | None:
        """The verification record of ``step`` (None before :meth:`verify`)."""
        return self.checks.get(id(step))

    @property
    def verified(self) -> bool:
        """Every step has been verified and holds."""
        return all((c := self.check(s)) is not None and c.ok for s in self.steps())

    def verify(self, seconds: float | None = None, simplify_seconds: float | None = None) -> Derivation:
        """Verify every step (see :mod:`symdl.steps.verify`) within ``seconds``, each ``simplify`` within
        ``simplify_seconds`` (None: the default; 0: never); returns ``self``."""
        from symdl.steps.verify import SIMPLIFY_SECONDS, verify_derivation

        verify_derivation(self, seconds, SIMPLIFY_SECONDS if simplify_seconds is None else simplify_seconds)
        return self

    def failures(self) -> list[tuple[Step, Check | None]]:
        """The steps that did not verify (or were not checked)."""
        return [(s, self.check(s)) for s in self.steps() if not ((c := self.check(s)) and c.ok)]

    def render(self, fmt: str = "text") -> str:
        """The derivation printed as ``fmt`` (a key of :data:`PRINTERS`)."""
        import symdl.steps.printers  # noqa: F401 - registers the printers

        if fmt not in PRINTERS:
            from symdl.errors import UsageError

            raise UsageError(f"unknown format {fmt!r}; known: {', '.join(sorted(PRINTERS))}")
        return PRINTERS[fmt](self)

    def _repr_latex_(self) -> str:
        return self.render("jupyter_latex")

    def _repr_html_(self) -> str:
        return self.render("html_fragment")

    def abbreviate(self, expr: sp.Basic) -> sp.Basic:
        """``expr`` as printed: each let's value replaced by its name, the reverse of :meth:`substitute` (a step
        reads ``d p_i / d x_j``, not the softmax written out; an indexed let such as ``p_j`` matches its value at
        any index, whatever its sums' indices are called). For printing only: verification substitutes back."""
        if expr not in self._printed:
            shorter = expr
            if isinstance(expr, sp.Mul) and all(isinstance(a, sp.Derivative) for a in expr.args):
                # a chain rule's d/du f(u) * d/dx u(x): kept unevaluated, in the order the rule states it
                shorter = sp.Mul(*(self.abbreviate(a) for a in expr.args), evaluate=False)
            else:
                for pattern, name in _let_patterns(self.lets):
                    shorter = shorter.replace(pattern, name) if pattern.has(sp.Wild) \
                        else shorter.xreplace({pattern: name})
            self._printed[expr] = shorter
        return self._printed[expr]

    def substitutions(self) -> dict[sp.Basic, sp.Expr]:
        """The lets as a substitution (later lets may use earlier ones)."""
        table: dict[sp.Basic, sp.Expr] = {}
        for let in reversed(self.lets):
            table[let.symbol] = let.value
        return table

    def substitute(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` with every let replaced by its value; a let named by an indexed symbol (``p_j``)
        stands for every component (``p_i``, ``p_k``, ...), its index renamed."""
        for let in reversed(self.lets):
            symbol = let.symbol
            if isinstance(symbol, sp.Indexed) and len(symbol.indices) == 1 and symbol.indices[0].is_Symbol:
                index = symbol.indices[0]
                expr = expr.replace(lambda e, s=symbol: isinstance(e, sp.Indexed) and e.base == s.base,
                                    lambda e, v=let.value, i=index: v.xreplace({i: e.indices[0]}))
            else:
                expr = expr.subs(symbol, let.value)
        return expr


@cache
def _let_patterns(lets: tuple[Let, ...]) -> tuple[tuple[sp.Basic, sp.Basic], ...]:
    """For :meth:`Derivation.abbreviate`: per let, ``(value, name)``; for a let named by an indexed symbol
    (``p_j``), the value with its index and its sums' indices as wildcards, and as a factor of any product."""
    found = []
    for let in lets:
        symbol, value = let.symbol, let.value
        if not (isinstance(symbol, sp.Indexed) and len(symbol.indices) == 1 and symbol.indices[0].is_Symbol):
            found.append((value, symbol))
            continue
        holes = {symbol.indices[0]: sp.Wild("index_")}
        holes.update((limit[0], sp.Wild(f"{limit[0]}_")) for s in value.atoms(sp.Sum) for limit in s.limits)
        pattern, name = value.xreplace(holes), symbol.base[holes[symbol.indices[0]]]
        if isinstance(pattern, sp.Mul):  # exp(x_j)/sum_l exp(x_l) inside -t_k exp(x_j)/sum_l exp(x_l)
            rest = sp.Wild("rest_")
            pattern, name = rest * pattern, rest * name
        found.append((pattern, name))
    return tuple(found)


def as_tuple(items: Sequence[Step]) -> tuple[Step, ...]:
    """A tuple of steps (a helper for rules with a variable number of children)."""
    return tuple(items)
