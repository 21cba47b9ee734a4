"""The typed pieces a catalog entry is made of.

An :class:`Op` is pure data: SymPy expressions for the math, plain Python for
names, defaults, domains and validation rules. Derivation
(:mod:`symdl.proofs`), code generation (:mod:`symdl.codegen`), verification
(:mod:`symdl.verify`), the tests and the CLI all read these objects; none of
them lists ops by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import sympy as sp

Family = Literal["activation", "loss"]

#: Placeholder for "the derivative SymPy derived" inside :attr:`Formula.facts`.
DERIVATIVE = sp.Symbol("DERIVATIVE")
#: The forward's saved output in :class:`OutputForm` gradients (PyTorch's ``result``); printed as ``result``.
RESULT = sp.Symbol("result", real=True)

#: How an op maps arrays, which selects the kernel template in codegen:
#: ``elementwise``     y = f(x) elementwise (activations);
#: ``row``             y = f(x) along ``dim`` (softmax family);
#: ``pointwise_loss``  l = reduce(f(input, target, ...)) elementwise before reduction;
#: ``class_loss``      l = reduce(f(row of logits, target)) over a class axis.
Kind = Literal["elementwise", "row", "pointwise_loss", "class_loss"]


@dataclass(frozen=True)
class KindTraits:
    """What an op's :data:`Kind` means to every stage: the one place that knows it.

    Stages ask these questions instead of comparing kind names, so a new kind is
    one row of :data:`KIND_TRAITS` plus a template per stage.

    Attributes:
        over_rows: maps a row along an axis to a value (the softmax family and
            class losses): inputs are at least 1-d, the gradient is a
            vector-Jacobian product over each row, not a pointwise derivative.
        loss: reduces to a loss with PyTorch's ``reduction=``, so the
            upstream gradient broadcasts to the input instead of having its
            shape, and nothing like the input is saved as the output.
        dim_param: takes PyTorch's ``dim`` (with its legacy default) and
            returns an array of the input's shape (the softmax family).
        class_targets: targets are class indices or per-class probabilities
            along the class axis (class losses).
        broadcast_targets: targets and weights broadcast to the input
            elementwise (pointwise losses).
    """

    over_rows: bool
    loss: bool

    @property
    def dim_param(self) -> bool:
        return self.over_rows and not self.loss

    @property
    def class_targets(self) -> bool:
        return self.over_rows and self.loss

    @property
    def broadcast_targets(self) -> bool:
        return self.loss and not self.over_rows


KIND_TRAITS: dict[str, KindTraits] = {
    "elementwise": KindTraits(over_rows=False, loss=False),
    "row": KindTraits(over_rows=True, loss=False),
    "pointwise_loss": KindTraits(over_rows=False, loss=True),
    "class_loss": KindTraits(over_rows=True, loss=True),
}

#: What values an input holds, which decides sampling and validation.
InputRole = Literal["real", "probability", "sign", "binary", "class_index", "positive", "distribution"]


@dataclass(frozen=True)
class Domain:
    """Where to sample an input or a parameter from.

    Attributes:
        low, high: the closed interval hypothesis draws ordinary values from.
        extremes: values far outside it where the kernel must stay finite and
            accurate (pinned with ``@example`` and checked by ``symdl verify``).
    """

    low: float
    high: float
    extremes: tuple[float, ...] = ()


@dataclass(frozen=True)
class Input:
    """An array argument of an op, in PyTorch's positional order."""

    name: str
    symbol: sp.Symbol
    domain: Domain
    role: InputRole = "real"
    differentiable: bool = True
    broadcast: bool = False  # may broadcast against the first input; its gradient is summed back


@dataclass(frozen=True)
class Rule:
    """A validation rule for a parameter, checked before any work is done.

    ``kind`` names a checker in :mod:`symdl.kernels._runtime`
    (``check_<kind>``), called as ``check_<kind>(op, name, value, *args)``.
    """

    kind: Literal["real", "positive", "nonnegative", "interval", "at_least", "choice", "integer", "bool", "array"]
    args: tuple[object, ...] = ()

    def describe(self) -> str:
        """The rule in words, for docs and the CLI listing."""
        texts = {
            "real": "a real number",
            "positive": "> 0",
            "nonnegative": ">= 0",
            "interval": "in [{}, {}]",
            "at_least": ">= {}",  # another parameter (hardtanh's max_val >= min_val, as PyTorch requires)
            "choice": "one of {}",
            "integer": "an integer",
            "bool": "True or False",
            "array": "an array broadcastable to the input, or None",
        }
        text = texts[self.kind]
        if self.kind == "choice":
            return text.format(", ".join(repr(a) for a in self.args))
        return text.format(*self.args)


@dataclass(frozen=True)
class Param:
    """A keyword parameter with PyTorch's name and default.

    ``symbol`` is the SymPy symbol standing for it in formulas (None for
    structural parameters such as ``reduction`` or ``dim``). ``sample`` is the
    range tests draw it from (None: always the default).
    """

    name: str
    default: object
    rule: Rule
    symbol: sp.Symbol | None = None
    sample: Domain | None = None
    doc: str = ""


@dataclass(frozen=True)
class Kink:
    """A point where the op is not differentiable and the value chosen there.

    ``at`` and ``subgradient`` may use parameter symbols. The subgradient is
    PyTorch's choice; ``why`` documents it.
    """

    at: sp.Expr
    subgradient: sp.Expr
    why: str = ""


@dataclass(frozen=True)
class Tolerance:
    """Accuracy the kernel promises against the mpmath reference.

    Errors are counted in units in the last place of ``max(|true|, |scale|)``:
    ``scale`` (an expression in the inputs, default 0) is the size of the terms
    the formula must combine, so that an op that subtracts two nearly equal
    terms (``x - tanh x``) is judged on the error its textbook formula cannot
    avoid, and nothing looser.
    """

    forward_ulp: float = 4.0
    grad_ulp: float = 8.0
    forward_scale: sp.Expr = sp.S.Zero
    grad_scale: sp.Expr = sp.S.Zero


@dataclass(frozen=True, eq=False)
class Case:
    """Faster forms that hold where a condition on scalar parameters holds.

    The generated kernel tests ``when`` in a Python ``if`` (free at run
    time) and computes these forms instead of the formula's. Each is proven
    equal to the definition at points where ``when`` holds, and its gradient
    is checked at every kink, like the formula's own.

    Attributes:
        when: a condition on scalar parameters only (``Abs(negative_slope) <= 1``).
        stable: the forward form there, or None for the formula's.
        grads: closed-form gradients there, by input name (missing: the formula's).
        why: one line on why the forms agree under ``when``.
        from_output: output-form gradients there (:class:`OutputForm`), by input name (missing: the
            formula's, with the condition's value substituted).
    """

    when: sp.Basic
    stable: sp.Expr | None = None
    grads: dict[str, sp.Expr] = field(default_factory=dict)
    why: str = ""
    from_output: dict[str, sp.Expr] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class OutputForm:
    """The gradient written with the forward's output, for ``name_vjp(grad, x, *, result=y)``.

    ``grads`` are expressions in :data:`RESULT` (``y``), the upstream gradient
    (row ops) and, where a mask needs it, the input; each is proven equal to the
    derived gradient after substituting the definition for ``y``. The kernel
    uses them when the caller passes the saved output, skipping the exp or tanh
    the forward already computed.

    Attributes:
        grads: by input name, as in :attr:`Formula.grads`.
        scale: the size the output form's rounding error is relative to (as
            :attr:`Tolerance.grad_scale`; None: the op's own). It is larger
            than the gradient where ``y`` has already rounded away what the
            gradient depends on (``1 - y^2`` once ``tanh x`` rounds to 1).
        grad_ulp: the promised error in units in the last place of
            ``max(|true|, |scale|)``.
        accuracy: one line for the docstring: how much accuracy is lost, and
            where ("" when none).
    """

    grads: dict[str, sp.Expr]
    scale: sp.Expr | None = None
    grad_ulp: float = 4.0
    accuracy: str = ""

    def mapped(self, change: Callable[[sp.Expr], sp.Expr], extra: dict[str, sp.Expr] | None = None) -> OutputForm:
        """This form with ``change`` applied to each gradient (``extra`` gradients first replacing its own)."""
        return replace(self, grads={k: change(v) for k, v in {**self.grads, **(extra or {})}.items()})


@dataclass(frozen=True, eq=False)  # identity semantics: entries are singletons, usable as cache keys
class Formula:
    """The math of one variant of an op.

    Attributes:
        definition: the textbook expression (what a student would write).
        stable: an equal expression that cannot overflow, or None when the
            definition is already stable; proven equal to ``definition``.
        grads: closed-form partial derivatives (elementwise ops) or
            vector-Jacobian products (row ops, with the upstream gradient
            symbol), keyed by input name; each is proven equal to what SymPy
            derives from ``definition``. Inputs missing here use the derived
            form directly.
        kinks: non-differentiable points and the subgradient chosen there.
        assumptions: equalities the closed forms rely on, as ``(lhs, rhs)``
            (``sum(y) = 1`` for cross-entropy with probabilities).
        facts: further textbook identities proven about the derivative, as
            ``(claim, lhs, rhs)``; ``lhs`` may use :data:`DERIVATIVE` for the
            derived gradient of the first input (``sigma' = sigma (1 - sigma)``
            when the kernel uses a form that is more accurate in the tails).
    cases: faster forms for parameter ranges (:class:`Case`), tried in
            order before the general forms.
        from_output: the gradient from the saved forward output
            (:class:`OutputForm`), or None when recomputing from the input is
            as cheap. The NumPy kernels' ``result=`` path prints it.
        more_from_output: further gradients from the output, proven as
            ``from_output`` is, that NumPy would compute more slowly (sigmoid's
            ``y sigma(-x)`` beside ``y (1 - y)``); an export prints whichever proven
            form loses no accuracy and costs its framework least
            (:func:`symdl.export.forms.output_form`).
    """

    definition: sp.Expr
    stable: sp.Expr | None = None
    grads: dict[str, sp.Expr] = field(default_factory=dict)
    kinks: tuple[Kink, ...] = ()
    assumptions: tuple[tuple[sp.Expr, sp.Expr], ...] = ()
    facts: tuple[tuple[str, sp.Expr, sp.Expr], ...] = ()
    tolerance: Tolerance | None = None  # None: the op's tolerance
    cases: tuple[Case, ...] = ()
    from_output: OutputForm | None = None
    more_from_output: tuple[OutputForm, ...] = ()

    @property
    def forward(self) -> sp.Expr:
        """The expression the kernel computes."""
        return self.stable if self.stable is not None else self.definition

    @property
    def output_forms(self) -> tuple[OutputForm, ...]:
        """Every proven gradient from the output: ``from_output`` first, then ``more_from_output``."""
        return tuple(f for f in (self.from_output, *self.more_from_output) if f is not None)

    def substituted(self, values: dict[sp.Symbol, object]) -> Formula:
        """This formula with parameter values substituted into every form (and its cases)."""
        if not values:
            return self

        def sub(expr: sp.Expr | None) -> sp.Expr | None:
            return None if expr is None else expr.xreplace(values)

        return replace(self, definition=sub(self.definition), stable=sub(self.stable),
                       grads={k: sub(v) for k, v in self.grads.items()},
                       from_output=self.from_output and self.from_output.mapped(sub),
                       more_from_output=tuple(f.mapped(sub) for f in self.more_from_output),
                       cases=tuple(replace(c, when=sub(c.when), stable=sub(c.stable),
                                           grads={k: sub(v) for k, v in c.grads.items()}) for c in self.cases))

    def under(self, case: Case) -> Formula:
        """This formula with ``case``'s forms in place of its own (and no further cases).

        An equality condition (``Eq(alpha, 1)``) is substituted into the forms.
        """
        fixed = {case.when.lhs: case.when.rhs} if isinstance(case.when, sp.Eq) and case.when.lhs.is_Symbol else {}
        stable = case.stable if case.stable is not None else self.stable
        def fix(expr: sp.Expr) -> sp.Expr:
            return expr.xreplace(fixed)

        return replace(self, stable=None if stable is None else fix(stable),
                       grads={k: fix(v) for k, v in {**self.grads, **case.grads}.items()}, cases=(),
                       from_output=self.from_output and self.from_output.mapped(fix, case.from_output),
                       more_from_output=tuple(f.mapped(fix) for f in self.more_from_output))


@dataclass(frozen=True, eq=False)  # identity semantics: entries are singletons, usable as cache keys
class Op:
    """One catalog entry.

    Attributes:
        name: the snake_case name used everywhere (kernels, CLI, LaTeX).
        family: ``activation`` or ``loss``.
        kind: the kernel template (see :data:`Kind`).
        summary: one line for listings.
        inputs: array arguments in PyTorch's positional order.
        params: keyword parameters with PyTorch's names and defaults.
        formulas: the math, keyed by the value of ``variant_param``
            (a single entry keyed ``""`` when the op has no variants).
        variant_param: the string parameter that selects a formula
            (``approximate`` for gelu), or None.
        torch: the PyTorch callable this op matches, or None.
        tolerance: accuracy promised against the mpmath reference.
        notes: documented differences or conventions (appear in docstrings).
        row_symbols: for ``row``/``class_loss`` kinds, the symbols that are
            vectors along the reduction axis.
        upstream: the symbol standing for the upstream gradient in VJPs.
        weighted_mean: class losses: 'mean' divides by the summed weight of
            the targets (PyTorch's rule for class-index targets).
        fast_paths: parameter values that get a branch of their own in the
            generated kernel, the formulas simplified by substituting them
            (``label_smoothing=0`` drops cross-entropy's smoothing pass; an
            optional array's ``None`` is substituted as 1). The substitution
            is exact, so the branch needs no proof of its own.
    """

    name: str
    family: Family
    kind: Kind
    summary: str
    inputs: tuple[Input, ...]
    params: tuple[Param, ...]
    formulas: dict[str, Formula]
    variant_param: str | None = None
    torch: str | None = None
    tolerance: Tolerance = Tolerance()
    notes: tuple[str, ...] = ()
    row_symbols: tuple[sp.Symbol, ...] = ()
    upstream: sp.Symbol = sp.Symbol("g")
    weighted_mean: bool = False
    fast_paths: tuple[dict[str, object], ...] = ()

    def param(self, name: str) -> Param:
        """The parameter called ``name``."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.name} has no parameter {name!r}")

    @property
    def traits(self) -> KindTraits:
        """What this op's kind means (:data:`KIND_TRAITS`)."""
        return KIND_TRAITS[self.kind]

    @property
    def defaults(self) -> dict[str, object]:
        """Parameter defaults by name."""
        return {p.name: p.default for p in self.params}

    @property
    def symbol_params(self) -> tuple[Param, ...]:
        """Parameters that appear in formulas."""
        return tuple(p for p in self.params if p.symbol is not None)

    def tolerance_for(self, variant: str = "") -> Tolerance:
        """The accuracy promised by one variant."""
        return self.formula(variant).tolerance or self.tolerance

    def variant(self, variant: str = "") -> str:
        """``variant``, or the default variant (the ``variant_param``'s PyTorch default) when empty."""
        if variant:
            return variant
        return str(self.param(self.variant_param).default) if self.variant_param else ""

    def formula(self, variant: str = "") -> Formula:
        """The formula for ``variant`` (the default variant when empty)."""
        return self.formulas[self.variant(variant)]

    @property
    def differentiable_inputs(self) -> tuple[Input, ...]:
        """Inputs that receive a gradient."""
        return tuple(i for i in self.inputs if i.differentiable)
