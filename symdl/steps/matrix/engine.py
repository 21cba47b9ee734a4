r"""Derivations of matrix derivatives in steps, each step and each result checked by finite differences.

**Gradients** (a scalar f, any variable): reverse mode over the expression's distinct subexpressions.
Each intermediate node gets a name (``u1``, ``u2``, ...); a step says which identity
(:mod:`.identities`) sends the node's gradient :math:`\bar u = \partial f / \partial u` (it has u's shape) to
its operands, in the order the product is written, and where a value is used twice the contributions add.
The gradient of the variable has the variable's shape (layout: "the gradient has the shape of the
variable"; :math:`df = \operatorname{tr}(\bar X^\top dX)`).

**Jacobians** (a vector f of a vector or scalar variable): forward identities (:mod:`.jacobian`), numerator
layout: :math:`J_{ij} = \partial f_i / \partial x_j`, shape ``f.shape + x.shape``.

**Checks.** Every node's gradient (the node's value treated as an input) and every result is compared
with central finite differences on three random instances with independently drawn sizes
(:mod:`.numeric`). A result that fails is marked failed and never printed as true. A declared probability
vector (``sum(y) = 1``) adds a rewrite step using the assumption, checked on instances that satisfy it.

**Textbook form.** The simplified result is moved to the form a textbook prints by named rewrites
(:mod:`.textbook`: name the function's value ``R``, take a common divisor out, ``A + A.T``, ...), each step's
two sides compared on the random instances; under ``symmetric(A)`` the symmetric rules follow, checked on
symmetric instances. With ``stationary=True`` the zeros of each gradient are derived (:mod:`.stationary`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from symdl.steps import budget
from symdl.steps.matrix import nodes as n
from symdl.steps.matrix.errors import MatrixError, NotScalarError, ShapeError
from symdl.steps.matrix.identities import DERIVATIVE_TEXT, Identity, identity_for
from symdl.steps.matrix.jacobian import Forward
from symdl.steps.matrix.numeric import Evaluator, close, draw, evaluate, finite_difference
from symdl.steps.matrix.parser import parse_matrix, parse_shapes
from symdl.steps.matrix.printing import to_latex, to_text
from symdl.steps.matrix.simplify import simplify
from symdl.steps.matrix.stationary import Stationary, stationary_points
from symdl.steps.matrix.textbook import RewriteStep, general_rules, rewrite, same_value, symmetric_rules

INSTANCES = 3
MAX_NODES = 200
#: The largest derived expression (in tree nodes) kept: a bigger one is refused, not printed for pages.
MAX_RESULT_NODES = 4000


@dataclass(frozen=True)
class Check:
    """A finite-difference check: ``ok``, the largest relative error, and the sizes of each instance."""

    ok: bool
    error: float
    sizes: tuple[dict[str, int], ...] = ()
    detail: str = ""

    def describe(self) -> str:
        sizes = "; ".join(", ".join(f"{k}={v}" for k, v in s.items()) for s in self.sizes if s) or "fixed sizes"
        verdict = "verified" if self.ok else "FAILED"
        return f"{verdict} by finite differences at {len(self.sizes)} random instances ({sizes}), " \
               f"max relative error {self.error:.1e}" + (f"; {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class MatrixStep:
    """One step: the gradient (or Jacobian) of a named node and how it flows on.

    Attributes:
        name: the node's let-name (``u1``), or the variable's or expression's name.
        node: the subexpression.
        rule: the identity's snake_case name.
        identity: the identity in text.
        latex_identity: the identity in LaTeX.
        gradient: the node's gradient (reverse mode) or Jacobian (forward mode), simplified.
        contributions: ``(operand name, contribution)`` for each operand that depends on the variable.
        check: the finite-difference check of ``gradient``.
    """

    name: str
    node: n.Node
    rule: str
    identity: str
    latex_identity: str
    gradient: n.Node
    contributions: tuple[tuple[str, n.Node], ...]
    check: Check


@dataclass(frozen=True)
class MatrixResult:
    """The derivative with respect to one variable: the general form, then the form under the assumptions."""

    wrt: str
    shape: n.Shape
    general: n.Node
    result: n.Node
    check: Check
    assumed_check: Check | None = None
    #: The named rewrites to the textbook form (:mod:`.textbook`), general ones first, then the assumptions'.
    rewrites: tuple[RewriteStep, ...] = ()
    #: ``general`` and ``result`` as printed: with named subexpressions (``R``), before they are expanded.
    general_shown: n.Node | None = None
    result_shown: n.Node | None = None
    #: With ``stationary=True``: the stationary points, derived and checked (:mod:`.stationary`).
    stationary: Stationary | None = None

    @property
    def verified(self) -> bool:
        return self.check.ok and (self.assumed_check is None or self.assumed_check.ok) and \
            all(r.ok for r in self.rewrites) and (self.stationary is None or self.stationary.ok is not False)

    @property
    def shown_general(self) -> n.Node:
        """The general result as printed (named subexpressions kept)."""
        return self.general if self.general_shown is None else self.general_shown

    @property
    def shown(self) -> n.Node:
        """The final result as printed (named subexpressions kept)."""
        return self.result if self.result_shown is None else self.result_shown


@dataclass
class MatrixDerivation:
    """A matrix derivative derived in steps: ``kind`` is ``gradient`` or ``jacobian``."""

    text: str
    expression: n.Node
    shapes: dict[str, n.Shape]
    wrt: tuple[str, ...]
    kind: str
    lets: dict[n.Node, str]
    steps: list[MatrixStep]
    results: dict[str, MatrixResult]
    assumptions: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return all(r.verified for r in self.results.values()) and all(s.check.ok for s in self.steps)

    def text_of(self, node: n.Node, abbreviate: bool = True, skip: n.Node | None = None) -> str:
        names = {k: v for k, v in self.lets.items() if k != skip} if abbreviate else None
        return to_text(node, names)

    def latex_of(self, node: n.Node, abbreviate: bool = True, skip: n.Node | None = None) -> str:
        names = {k: v for k, v in self.lets.items() if k != skip} if abbreviate else None
        return to_latex(node, names)

    def render(self, fmt: str = "text") -> str:
        """The derivation in ``fmt`` (text, latex, markdown, html, json)."""
        from symdl.steps.matrix.printers import render

        return render(self, fmt)

    def _repr_markdown_(self) -> str:  # Jupyter renders the steps with their math
        return self.render("markdown")


# ----------------------------------------------------------------------------------------------- helpers
def _topological(root: n.Node) -> list[n.Node]:
    """Distinct subexpressions, operands before users (through the identities' operands)."""
    order: list[n.Node] = []
    seen: set[n.Node] = set()
    stack: list[tuple[n.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        if len(seen) > MAX_NODES:
            raise MatrixError(f"expression has more than {MAX_NODES} distinct subexpressions")
        stack.append((node, True))
        identity = identity_for(node)
        for child in reversed(identity.operands(node) if identity else ()):
            if child not in seen:
                stack.append((child, False))
    return order


def _let_names(order: list[n.Node], used: Iterable[str], relevant: set[n.Node], root: n.Node) -> dict[n.Node, str]:
    taken, names, k = set(used), {}, 0
    for node in order:
        if node in relevant and node != root and not isinstance(node, (n.Var, n.Num, n.Size, n.Ones, n.Eye)):
            k += 1
            while f"u{k}" in taken:
                k += 1
            names[node] = f"u{k}"
    return names


class _Checker:
    """Finite-difference checks of a derivative on :data:`INSTANCES` random instances."""

    def __init__(self, expr: n.Node, shapes: Mapping[str, n.Shape], seed: int,
                 simplex: frozenset[str] = frozenset(), symmetric: frozenset[str] = frozenset()) -> None:
        self.expr, self.shapes, self.simplex, self.symmetric = expr, shapes, simplex, symmetric
        self.instances = []
        rng = np.random.default_rng(seed)
        for _ in range(INSTANCES):
            self.instances.append(self._instance(rng))

    def _instance(self, rng: np.random.Generator):  # noqa: ANN202 - an Instance
        instance = draw(self.expr, self.shapes, rng, self.simplex, symmetric=self.symmetric)
        with np.errstate(all="ignore"):
            finite = np.all(np.isfinite(evaluate(self.expr, instance.values, instance.sizes)))
        if not finite:  # outside the domain: draw every variable positive
            instance = draw(self.expr, self.shapes, rng, self.simplex, positive=set(self.shapes),
                            symmetric=self.symmetric)
        return instance

    def check(self, derivative: n.Node, wrt: n.Var, at: n.Node | None = None) -> Check:
        """``derivative`` against finite differences of the expression in ``wrt`` (or in node ``at``'s value)."""
        worst, ok = 0.0, True
        for inst in self.instances:
            budget.check()
            with np.errstate(all="ignore"):
                if at is None:
                    def f(values: dict[str, np.ndarray]) -> np.ndarray:
                        return evaluate(self.expr, values, inst.sizes)
                    reference = finite_difference(f, inst.values, wrt.name)
                else:
                    base = Evaluator(inst.values, inst.sizes)(at)
                    key = "__node__"

                    def f(values: dict[str, np.ndarray]) -> np.ndarray:
                        return Evaluator(inst.values, inst.sizes, {at: values[key]})(self.expr)
                    reference = finite_difference(f, {key: np.asarray(base, float)}, key)
                derived = evaluate(derivative, inst.values, inst.sizes)
            good, error = close(derived, reference)
            ok, worst = ok and good, max(worst, error)
        return Check(ok, worst, tuple(i.sizes for i in self.instances))


# ----------------------------------------------------------------------------------------------- gradients
def _gradient(expr: n.Node, variables: list[n.Var], simplex: frozenset[str], checker: _Checker,
              lets_out: dict[n.Node, str], shapes: Mapping[str, n.Shape]) -> tuple[list[MatrixStep], dict[str, n.Node]]:
    order = _topological(expr)
    depends: set[n.Node] = set()
    for node in order:  # operands come first
        identity = identity_for(node)
        if node in variables or (identity and any(c in depends for c in identity.operands(node))):
            depends.add(node)
    lets_out.update(_let_names(order, list(shapes) + [d for s in shapes.values() for d in s if isinstance(d, str)],
                               depends, expr))
    name_of = {**lets_out, expr: "f", **{v: v.name for v in variables}}
    pending: dict[n.Node, list[n.Node]] = {expr: [n.Num(1.0)]}
    steps: list[MatrixStep] = []
    gradients: dict[str, n.Node] = {}
    for node in reversed(order):
        if node not in depends or node not in pending:
            continue
        gradient = _total(pending.pop(node), simplex=frozenset())
        if isinstance(node, n.Var):
            gradients[node.name] = gradient
            continue
        identity: Identity = identity_for(node)  # type: ignore[assignment]
        contributions = []
        for operand, contribution in identity.flow(node, gradient):
            if operand in depends:
                pending.setdefault(operand, []).append(contribution)
                contributions.append((name_of.get(operand, to_text(operand)), simplify(contribution)))
        check = checker.check(gradient, variables[0], at=node)
        text = identity.text
        if isinstance(node, n.Func) and identity.rule == "elementwise_chain":  # name this f'
            text += f"; here f = {node.name}, f'(u) = {DERIVATIVE_TEXT[node.name]}"
        steps.append(MatrixStep(name_of.get(node, to_text(node)), node, identity.rule, text,
                                identity.latex, gradient, tuple(contributions), check))
    return steps, gradients


def _total(parts: list[n.Node], simplex: frozenset[str]) -> n.Node:
    """The sum of a node's gradient contributions (where its value is used twice or more), simplified."""
    total = parts[0]
    for p in parts[1:]:
        total = n.Add(total, p)
    total = simplify(total, simplex)
    _bounded(total)
    return total


def _bounded(node: n.Node) -> None:
    """Refuse a derivative that has grown past :data:`MAX_RESULT_NODES` tree nodes (counted up to the cap)."""
    count, stack = 0, [node]
    while stack:
        count += 1
        if count > MAX_RESULT_NODES:
            raise MatrixError(f"the derivative grows past {MAX_RESULT_NODES} terms; simplify the expression "
                              f"(e.g. name a repeated subexpression as a variable)")
        stack.extend(stack.pop().args)


def read_names(expr: n.Node) -> set[str]:
    """The declared variables ``expr`` reads."""
    return {node.name for node in expr.walk() if isinstance(node, n.Var)}


def derive_matrix(text: str, wrt: str | Iterable[str] | None, shapes: Mapping[str, object] | Iterable[str],
                  assume: Iterable[str] = (), jacobian: bool = False, seed: int = 0,
                  stationary: bool = False) -> MatrixDerivation:
    """Derive ``d text / d wrt`` in steps and verify it.

    Args:
        text: the expression, e.g. ``"norm(X @ w - y)**2"``.
        wrt: the variable(s), e.g. ``"w"`` or ``["W", "b"]``; None: every declared variable the expression reads
            (a name declared and unused has no gradient worth a line).
        shapes: ``{"X": "n,d", "w": "d"}`` or ``["X=n,d", "w=d"]``; sizes are integers or names.
        assume: assumptions, each ``"sum(y) = 1"`` (y is a probability vector) or ``"symmetric(A)"``.
        jacobian: for a vector expression, derive its Jacobian (numerator layout) instead of refusing.
        seed: the seed of the random instances.
        stationary: also derive where each gradient vanishes (:mod:`.stationary`), checked numerically.

    Raises:
        MatrixError: bad syntax or shapes, an undeclared name, a gradient of a non-scalar, no identity known.
    """
    declared = parse_shapes(shapes if isinstance(shapes, Mapping) else list(shapes))
    expr = parse_matrix(text, declared)
    if wrt is None:
        names = [name for name in declared if name in read_names(expr)]
    else:
        names = [wrt] if isinstance(wrt, str) else list(wrt)
    if not names:
        raise MatrixError("name a variable to differentiate with respect to (--wrt)")
    simplex, symmetric = _assumptions(assume, declared)
    variables = []
    for name in names:
        if name not in declared:
            raise MatrixError(f"--wrt {name}: not a declared variable (declared: {', '.join(sorted(declared))})")
        variables.append(n.Var(name, declared[name]))
    lets: dict[n.Node, str] = {}
    checker = _Checker(expr, declared, seed)
    if expr.shape != ():
        if not jacobian:
            raise NotScalarError(f"{text} has shape {n.show_shape(expr.shape)}, not a scalar: a gradient needs a "
                                 f"scalar; ask for the Jacobian (--jacobian) or reduce it (e.g. sum(...))")
        return _jacobian_derivation(text, expr, declared, variables, checker)
    results: dict[str, MatrixResult] = {}
    steps, gradients = _gradient(expr, variables, simplex, checker, lets, declared)
    for var in variables:
        general = gradients.get(var.name)
        if general is None:
            general = n.Mul(n.Num(0.0), n.Ones(var.shape)) if var.shape else n.Num(0.0)
        general = simplify(n.Mul(general, n.Ones(var.shape)) if general.shape != var.shape else general)
        results[var.name] = _result(var, general, (simplex, symmetric), checker, expr, declared, seed, stationary)
    derivation = MatrixDerivation(text, expr, declared, tuple(names), "gradient", lets, steps, results,
                                  tuple(f"sum({s}) = 1" for s in sorted(simplex))
                                  + tuple(f"symmetric({s})" for s in sorted(symmetric)))
    derivation.notes.append("Layout: each gradient has the shape of its variable (df = tr(G^T dX)).")
    _symmetric_note(derivation)
    _failed_steps_note(derivation)
    return derivation


def _result(var: n.Var, general: n.Node, assumptions: tuple[frozenset[str], frozenset[str]], checker: _Checker,
            expr: n.Node, shapes: Mapping[str, n.Shape], seed: int, stationary: bool = False) -> MatrixResult:
    """The result for ``var``: the general form moved to the textbook form by named rewrites (:mod:`.textbook`),
    checked by finite differences; then the form under the assumptions (probability vectors, symmetric
    matrices), its own rewrites checked on instances that satisfy them."""
    simplex, symmetric = assumptions
    shown, steps = rewrite(general, general_rules(expr), "", checker.instances)
    general = n.expand_names(shown)
    check = checker.check(general, var)
    assumed_shown, assumed_check, assumed_checker = shown, None, checker
    if simplex or symmetric:
        assumed_checker = _Checker(expr, shapes, seed + 1, simplex, symmetric)
        if simplex:
            used = simplify(assumed_shown, simplex)
            if used != assumed_shown:
                words = ", ".join(f"sum({s}) = 1" for s in sorted(simplex))
                ok, error = same_value(assumed_shown, used, assumed_checker.instances)
                steps.append(RewriteStep("use_assumption", f"use {words} (probability vectors sum to 1)",
                                         assumed_shown, used, words, ok, error))
                assumed_shown = used
        assumed_shown, more = rewrite(assumed_shown, symmetric_rules(sorted(symmetric), expr),
                                      ", ".join(f"symmetric({s})" for s in sorted(symmetric)),
                                      assumed_checker.instances)
        steps += more
        if assumed_shown != shown:
            assumed_check = assumed_checker.check(n.expand_names(assumed_shown), var)
    points = None
    if stationary:
        points = stationary_points(expr, var, assumed_shown, n.expand_names(assumed_shown),
                                   assumed_checker.instances, symmetric, seed)
    return MatrixResult(var.name, var.shape, general, n.expand_names(assumed_shown), check, assumed_check,
                        tuple(steps), shown, assumed_shown, points)


def _assumptions(assume: Iterable[str], shapes: Mapping[str, n.Shape]) -> tuple[frozenset[str], frozenset[str]]:
    """``sum(y) = 1`` (y a probability vector) and ``symmetric(A)`` (A a symmetric matrix), by name."""
    simplex, symmetric = set(), set()
    for text in assume:
        compact = text.replace(" ", "")
        if compact.startswith("symmetric(") and compact.endswith(")"):
            name = compact[len("symmetric("):-1]
            shape = shapes.get(name)
            if shape is None or len(shape) != 2 or shape[0] != shape[1]:
                raise ShapeError(f"assumption {text!r}: {name} must be a declared square matrix")
            symmetric.add(name)
            continue
        if not (compact.startswith("sum(") and compact.endswith(")=1")):
            raise MatrixError(f"assumption {text!r} not understood; the known forms are sum(y) = 1 and "
                              f"symmetric(A)")
        name = compact[4:-3]
        if name not in shapes or len(shapes[name]) != 1:
            raise ShapeError(f"assumption {text!r}: {name} must be a declared vector")
        simplex.add(name)
    return frozenset(simplex), frozenset(symmetric)


def _symmetric_note(derivation: MatrixDerivation) -> None:
    square = [w for w in derivation.wrt if len(derivation.shapes[w]) == 2
              and derivation.shapes[w][0] == derivation.shapes[w][1]]
    for w in square:
        derivation.notes.append(
            f"{w} is treated as unconstrained (its {derivation.shapes[w][0]}^2 entries independent). "
            f"If {w} is constrained symmetric, "
            f"the gradient on the symmetric matrices is G + G.T - diag(diag(G)) for the G above "
            f"(e.g. d log det S / dS = 2 inv(S) - diag(diag(inv(S))) entrywise).")


def _failed_steps_note(derivation: MatrixDerivation) -> None:
    """Say it where a step failed its check: the results' lines speak of the results only (each checked on its
    own), so without this line a reader could take the derivation for verified."""
    failed = [str(i) for i, s in enumerate(derivation.steps, 1) if not s.check.ok]
    if failed:
        derivation.notes.append(
            f"NOT VERIFIED: step {', '.join(failed)} disagrees with finite differences, so the derivation is not "
            f"verified (exit code 1), even where a result passes its own check.")


# ----------------------------------------------------------------------------------------------- Jacobians
def _jacobian_derivation(text: str, expr: n.Node, shapes: dict[str, n.Shape], variables: list[n.Var],
                         checker: _Checker) -> MatrixDerivation:
    steps: list[MatrixStep] = []
    results: dict[str, MatrixResult] = {}
    lets: dict[n.Node, str] = {}
    for var in variables:
        if len(var.shape) > 1:
            raise NotScalarError(f"the Jacobian of {text} (shape {n.show_shape(expr.shape)}) with respect to the "
                                 f"matrix {var.name} is a tensor; ask for the gradient of a scalar, e.g. sum(G * f)")
        forward = Forward(var)
        jac = forward(expr)
        if jac is None:
            jac = n.Mul(n.Num(0.0), n.Ones(expr.shape + var.shape))
        order = [node for node, _, _ in forward.steps]
        lets.update({k: v for k, v in _let_names(order, shapes, set(order), expr).items() if k not in lets})
        for node, rule, jacobian in forward.steps:
            simplified = simplify(jacobian)
            name = "f" if node == expr else lets.get(node, to_text(node))
            rule_name = re.sub(r"[^a-z]+", "_", rule.split(":")[0].split("(")[0].strip().lower()).strip("_")
            steps.append(MatrixStep(f"{name}", node, rule_name, rule, "",
                                    simplified, (), _jacobian_check(checker, node, simplified, var)))
        result = simplify(jac)
        results[var.name] = MatrixResult(var.name, expr.shape + var.shape, result, result,
                                         _jacobian_check(checker, expr, result, var))
    derivation = MatrixDerivation(text, expr, shapes, tuple(v.name for v in variables), "jacobian", lets, steps,
                                  results)
    derivation.notes.append("Layout: numerator layout, J[i, j] = d f_i / d x_j (shape: f's shape then x's).")
    _failed_steps_note(derivation)
    return derivation


def _jacobian_check(checker: _Checker, node: n.Node, jacobian: n.Node, var: n.Var) -> Check:
    sub = _Checker.__new__(_Checker)
    sub.expr, sub.shapes, sub.simplex, sub.instances = node, checker.shapes, checker.simplex, checker.instances
    return sub.check(jacobian, var)


__all__ = ["derive_matrix", "MatrixDerivation", "MatrixStep", "MatrixResult", "Check"]
