"""Derive every gradient of a catalog op from its definition and prove the
closed forms the kernels use.

For an op's formula, :func:`derive` produces a :class:`Derivation`:

* the gradient SymPy takes of the *definition* (the derivative for
  elementwise ops; for row ops the vector-Jacobian product
  :math:`\\bar z_j = \\sum_i g_i\\, \\partial y_i / \\partial z_j`, built on
  explicit instances of ``n = 2, 3, 4`` components);
* a :class:`Proof` for each claim a kernel relies on: the stable form equals
  the definition, each closed-form gradient equals the derived one, and each
  gradient written with the forward's output (:class:`~symdl.catalog.spec.OutputForm`,
  the kernels' ``result=``) equals the derived one once the forward is
  substituted for the output.

Each claim goes through the bounded prover (:mod:`symdl.proofs.proof`):
*symbolic* when ``sympy.simplify`` reduces the difference to 0 within a CPU-time
limit, otherwise a *numeric identity* check at 50 significant digits on many
points drawn from the op's domain (mpmath). Reductions along a
row (``rowmax``) are replaced by a free symbol in row proofs: softmax is
shift-invariant, so an identity that holds for every shift ``m`` holds for the
maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import sympy as sp

from symdl.catalog.spec import DERIVATIVE, RESULT, Case, Formula, Kink, Op
from symdl.functions import expand_row, row_components, rowmax, rowsum, to_textbook
from symdl.proofs.proof import PROOF_POINTS, Proof, numeric_identity, prove_identity, symbolic_zero

#: Row sizes on which row-op identities are proven.
ROW_SIZES = (2, 3, 4)


@dataclass
class Derivation:
    """Everything derived for one formula of one op."""

    op: Op
    variant: str
    formula: Formula
    derived: dict[str, sp.Expr] = field(default_factory=dict)  # by input name
    proofs: list[Proof] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        """True when every proof holds."""
        return all(p.holds for p in self.proofs)

    @property
    def method(self) -> str:
        """The weakest proof method used (numeric beats symbolic in the summary)."""
        methods = {p.method.split(" ")[0] for p in self.proofs}
        return "numeric" if "numeric" in methods else ("symbolic" if methods else "none")


# --------------------------------------------------------------------------- sampling
def _sample_values(op: Op, rng: np.random.Generator, count: int) -> list[dict[sp.Symbol, float]]:
    """Points for numeric proofs: inputs from their domains, parameters from theirs."""
    points = []
    labels = {"sign": (-1.0, 1.0), "binary": (0.0, 1.0)}
    for _ in range(count):
        values: dict[sp.Symbol, float] = {}
        for item in op.inputs:
            if item.role in labels:
                values[item.symbol] = float(rng.choice(labels[item.role]))
            else:
                values[item.symbol] = float(rng.uniform(item.domain.low, item.domain.high))
        for p in op.symbol_params:
            domain = p.sample
            default = 1.0 if p.default is None else float(p.default)  # optional arrays default to 1
            values[p.symbol] = float(rng.uniform(domain.low, domain.high)) if domain else default
        points.append(values)
    return points


def _away_from_kinks(formula: Formula, point: dict[sp.Symbol, float], symbol: sp.Symbol) -> bool:
    """True when ``point`` is not within 1e-6 of a kink of ``formula``."""
    for kink in formula.kinks:
        at = float(kink.at.subs(point))
        if abs(point[symbol] - at) < 1e-6:
            return False
    return True


# --------------------------------------------------------------------------- elementwise
def _symbols_of(op: Op) -> list[sp.Symbol]:
    return [i.symbol for i in op.inputs] + [p.symbol for p in op.symbol_params]


def _derive_elementwise(derivation: Derivation, rng: np.random.Generator) -> None:
    op, formula = derivation.op, derivation.formula
    symbols = _symbols_of(op)
    raw_points = _sample_values(op, rng, PROOF_POINTS * 2)
    x0 = op.inputs[0].symbol
    points = [[p[s] for s in symbols] for p in raw_points if _away_from_kinks(formula, p, x0)][:PROOF_POINTS]
    if formula.stable is not None:
        derivation.proofs.append(
            prove_identity("stable form = definition", formula.stable, formula.definition, symbols, points)
        )
    for item in op.differentiable_inputs:
        derived = sp.diff(formula.definition, item.symbol)
        derivation.derived[item.name] = derived
        closed = formula.grads.get(item.name)
        if closed is not None:
            derivation.proofs.append(
                prove_identity(f"d/d{item.name} closed form = derived", closed, derived, symbols, points)
            )
    first = derivation.derived.get(op.inputs[0].name)
    for claim, lhs, rhs in formula.facts:
        derivation.proofs.append(prove_identity(claim, lhs.xreplace({DERIVATIVE: first}), rhs, symbols, points))
    for kink in formula.kinks:
        derivation.proofs.append(_kink_proof(op, formula, derivation.derived[op.inputs[0].name], kink, raw_points))
    for label, name, closed in output_gradients(formula):
        claim = f"d/d{name} {label} = derived"
        derivation.proofs.append(prove_identity(claim, closed, derivation.derived[name], symbols, points))
        for kink in formula.kinks:
            proof = _kink_proof(op, replace(formula, grads={name: closed}), derivation.derived[name], kink, raw_points)
            derivation.proofs.append(Proof(f"{label}: " + proof.claim, proof.method, proof.holds))
    for case in formula.cases:
        _prove_case(derivation, case, rng)


def output_gradients(formula: Formula) -> list[tuple[str, str, sp.Expr]]:
    """Every output form's gradients (:attr:`Formula.output_forms`) with the forward substituted for the
    output, what is proven of them: (label for the claims, input name, gradient)."""
    labels = ["from the output"] + [f"from the output (form {k})" for k in range(2, len(formula.output_forms) + 1)]
    return [(label, name, expr.xreplace({RESULT: formula.forward}))
            for label, form in zip(labels, formula.output_forms) for name, expr in form.grads.items()]


def _points_where(op: Op, when: sp.Basic, rng: np.random.Generator) -> list[dict[sp.Symbol, float]]:
    """Sample points whose parameters satisfy ``when`` (drawn from the parameters' domains)."""
    pinned = {when.lhs: float(when.rhs)} if isinstance(when, sp.Eq) and when.lhs.is_Symbol else {}
    points: list[dict[sp.Symbol, float]] = []
    for _ in range(50):
        drawn = [{**p, **pinned} for p in _sample_values(op, rng, PROOF_POINTS * 2)]
        points += [p for p in drawn if bool(when.subs(p))]
        if len(points) >= PROOF_POINTS:
            break
    if not points:
        raise ValueError(f"{op.name}: no sample point satisfies the case condition {when}")
    return points


def _prove_case(derivation: Derivation, case: Case, rng: np.random.Generator) -> None:
    """A case's forms equal the definition where its condition holds, kinks included."""
    op, formula = derivation.op, derivation.formula
    symbols = _symbols_of(op)
    raw_points = _points_where(op, case.when, rng)
    x0 = op.inputs[0].symbol
    points = [[p[s] for s in symbols] for p in raw_points if _away_from_kinks(formula, p, x0)][:PROOF_POINTS]
    where = f"where {case.when}: "
    if case.stable is not None:
        derivation.proofs.append(prove_identity(where + "stable form = definition", case.stable, formula.definition,
                                                symbols, points))
    for name, closed in case.grads.items():
        derivation.proofs.append(prove_identity(where + f"d/d{name} closed form = derived", closed,
                                                derivation.derived[name], symbols, points))
    for name, closed in case.from_output.items():
        derivation.proofs.append(prove_identity(where + f"d/d{name} from the output = derived",
                                                closed.xreplace({RESULT: formula.forward}), derivation.derived[name],
                                                symbols, points))
    for kink in formula.kinks:
        proof = _kink_proof(op, formula.under(case), derivation.derived[op.inputs[0].name], kink, raw_points)
        derivation.proofs.append(Proof(where + proof.claim, proof.method, proof.holds, proof.max_error))


def _kink_proof(op: Op, formula: Formula, derived: sp.Expr, kink: Kink, points: list[dict]) -> Proof:
    """The kernel's gradient at the kink equals the chosen subgradient.

    Exact (rational) arithmetic at sample values of the other inputs and
    parameters: kinks such as ``x = x2 + margin y`` move with them.
    """
    x0 = op.inputs[0].symbol
    chosen = sp.piecewise_fold(formula.grads.get(op.inputs[0].name, derived))
    claim = f"subgradient at {kink.at} = {kink.subgradient}"
    for point in points[:8]:
        values = {s: sp.Rational(v).limit_denominator(1000) for s, v in point.items() if s != x0}
        at = kink.at.xreplace(values)
        value = to_textbook(chosen.xreplace(values).subs(x0, at))
        expected = to_textbook(kink.subgradient.xreplace(values))
        if sp.simplify(value - expected) != 0:
            return Proof(claim, "exact at sample points", False)
    return Proof(claim, "exact at sample points", True)


# --------------------------------------------------------------------------- rows
def _free_shifts(expr: sp.Expr) -> sp.Expr:
    """Replace every ``rowmax(...)`` by a free symbol (valid by shift invariance)."""
    shifts = sp.numbered_symbols("m", real=True)
    return expr.xreplace({m: next(shifts) for m in sorted(expr.atoms(rowmax), key=sp.default_sort_key)})


def _row_vjp(definition: sp.Expr, op: Op, wrt: sp.Symbol, n: int) -> list[sp.Expr]:
    """VJP components of ``definition`` w.r.t. ``wrt`` for an ``n``-component row.

    A class loss maps a row to one number (every expanded component is the
    same), so its VJP uses one component and a scalar upstream gradient.
    """
    outputs = expand_row(definition, op.row_symbols, n)
    upstream = expand_row(op.upstream, op.row_symbols, n)
    if op.traits.class_targets:
        outputs, upstream = outputs[:1], [op.upstream]
    variables = expand_row(wrt, op.row_symbols, n)
    return [sum(gi * sp.diff(yi, zj) for gi, yi in zip(upstream, outputs)) for zj in variables]


def _row_points(op: Op, symbols: Sequence[sp.Symbol], rng: np.random.Generator) -> list[list[float]]:
    domain = op.inputs[0].domain
    return [[float(v) for v in rng.uniform(domain.low, domain.high, len(symbols))] for _ in range(PROOF_POINTS)]


def _prove_rows(claim: str, lhs_rows: list[list[sp.Expr]], rhs_rows: list[list[sp.Expr]], op: Op,
                rng: np.random.Generator) -> Proof:
    """Prove componentwise equality for every row size in :data:`ROW_SIZES`.

    The claim is symbolic only if every component is. Once one component is proven only numerically (SymPy
    gave up or ran out of time), the others are checked numerically without a symbolic attempt: the claim's
    method is numeric whatever they give, and each attempt that fails costs the full time limit
    (cosine_embedding_loss's 18 components took 36 s of CPU that way, of its 42).
    """
    sizes = ",".join(str(n) for n in ROW_SIZES)
    methods, errors = set(), [0.0]
    for lhs, rhs in zip(lhs_rows, rhs_rows):
        symbols = sorted(set().union(*(e.free_symbols for e in lhs + rhs)), key=str)
        points = _row_points(op, symbols, rng)
        for a, b in zip(lhs, rhs):
            proof = prove_identity(claim, a, b, symbols, points, symbolic_label="symbolic",
                                   try_symbolic=methods <= {"symbolic"})
            if not proof.holds:
                return Proof(claim, proof.method + f" (n={sizes})", False, proof.max_error)
            methods.add(proof.method)
            errors.append(proof.max_error)
    method = next(iter(methods)) if len(methods) == 1 else sorted(methods)[0]
    return Proof(claim, f"{method} (n={sizes})", True, max(errors))


def _derive_row(derivation: Derivation, rng: np.random.Generator) -> None:
    op, formula = derivation.op, derivation.formula
    if formula.stable is not None:
        derivation.proofs.append(_prove_rows(
            "stable form = definition",
            [expand_row(_free_shifts(formula.stable), op.row_symbols, n) for n in ROW_SIZES],
            [expand_row(formula.definition, op.row_symbols, n) for n in ROW_SIZES],
            op, rng,
        ))
    derived_rows: dict[str, list[list[sp.Expr]]] = {}
    for item in op.differentiable_inputs:
        derived = [_row_vjp(formula.definition, op, item.symbol, n) for n in ROW_SIZES]
        derived_rows[item.name] = derived
        derivation.derived[item.name] = sp.Matrix(derived[0])
        closed = formula.grads.get(item.name)
        if closed is None:
            raise ValueError(f"{op.name}: row ops need a closed-form VJP for {item.name}")
        derivation.proofs.append(_prove_rows(
            f"VJP d/d{item.name} closed form = derived",
            [expand_row(_free_shifts(closed), op.row_symbols, n) for n in ROW_SIZES],
            derived,
            op, rng,
        ))
    for label, name, closed in output_gradients(formula):
        derivation.proofs.append(_prove_rows(
            f"VJP d/d{name} {label} = derived",
            [expand_row(_free_shifts(closed), op.row_symbols, n) for n in ROW_SIZES],
            derived_rows[name],
            op, rng,
        ))
    for claim, lhs, rhs in formula.facts:
        derivation.proofs.append(_prove_rows(
            claim,
            [_assume(expand_row(_free_shifts(lhs), op.row_symbols, n), formula, op, n) for n in ROW_SIZES],
            [_assume(expand_row(_free_shifts(rhs), op.row_symbols, n), formula, op, n) for n in ROW_SIZES],
            op, rng,
        ))


def _assume(components: list[sp.Expr], formula: Formula, op: Op, n: int) -> list[sp.Expr]:
    """Apply the formula's row assumptions, e.g. ``rowsum(t) = 1``: solve for the last component."""
    for lhs, rhs in formula.assumptions:
        (symbol,) = (s for s in op.row_symbols if lhs == rowsum(s))
        parts = row_components(symbol, n)
        last = rhs - sum(parts[:-1])
        components = [c.xreplace({parts[-1]: last}) for c in components]
    return components


_DERIVERS = {
    "elementwise": _derive_elementwise,
    "pointwise_loss": _derive_elementwise,
    "row": _derive_row,
    "class_loss": _derive_row,
}


def derive(op: Op, variant: str = "", *, seed: int = 0) -> Derivation:
    """Derive and prove everything for one formula of ``op``."""
    variant = op.variant(variant)
    derivation = Derivation(op, variant, op.formulas[variant])
    _DERIVERS[op.kind](derivation, np.random.default_rng(seed))
    return derivation


def derive_all(op: Op, *, seed: int = 0) -> list[Derivation]:
    """Derivations of every variant of ``op``."""
    return [derive(op, variant, seed=seed) for variant in op.formulas]
