"""The only makers of :class:`~symdl.handouts.model.Formula`: each checks its object before printing it.

* :func:`op_definition`, :func:`op_gradient`: a catalog op's definition and closed-form gradient, with
  the proofs ``symdl verify`` runs (from its on-disk cache when present);
* :func:`fact`: a derived fact of :mod:`symdl.catalog.facts` (its derivation re-run);
* :func:`update_rule`: an optimizer's update rule from the catalog, specialised to PyTorch's
  defaults by exact substitution;
* :func:`schedule`: a learning-rate schedule's closed form (proven equal to torch's chainable update
  by the facts, and tested against the scheduler);
* :func:`layer`: a layer's closed forms (proven on the catalog's instances by ``symdl verify``);
* :func:`chain`: a derivation written as SymPy expressions ``e0 = e1 = ... (<= ...)``, each link
  proven here: symbolically by a time-bounded ``simplify``, else by a 50-digit numeric identity
  (:func:`symdl.proofs.proof.prove_identity`); a ``<=`` link holds when the difference simplifies to an
  expression SymPy knows is nonnegative;
* :func:`computed`: ``lhs = rhs`` with an independent check supplied by the topic (an instance, counting);
* :func:`derivation`: a step-by-step derivation from :mod:`symdl.steps`, every step verified;
* :func:`integral`: a definite integral, by 50-digit quadrature (and SymPy's ``integrate`` when it can);
* :func:`matrix_gradient`: a matrix gradient from :mod:`symdl.steps.matrix`, checked by finite differences.
* :func:`matrix_derivation`: the same engine's derivation shown step by step (reverse mode), every step checked.

Any check that fails raises :class:`~symdl.handouts.model.HandoutError`: a handout never prints an
unproven formula.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import sympy as sp

from symdl.handouts.model import Formula, HandoutError
from symdl.printing.latex import latex

Relation = Literal["=", "<=", "<"]
_RELATION_LATEX = {"=": "=", "<=": r"\le", "<": "<"}

#: Points per free symbol for numeric identity proofs of handout claims.
POINTS = 12


def _methods(methods: Sequence[str]) -> str:
    return "; ".join(dict.fromkeys(methods))


def _substitution(op: object, values: Mapping[str, object]) -> dict[sp.Symbol, sp.Expr]:
    """Parameter symbols of ``op`` mapped to the given values (by parameter name)."""
    symbols = {p.name: p.symbol for p in op.params if p.symbol is not None}  # type: ignore[attr-defined]
    unknown = set(values) - set(symbols)
    if unknown:
        name = getattr(op, "name", "")
        raise HandoutError(f"{name} has no symbolic parameter {', '.join(sorted(unknown))}")
    return {symbols[k]: sp.sympify(v) for k, v in values.items()}


def _shown(values: Mapping[str, object]) -> str:
    return f" ({', '.join(f'{k}={v}' for k, v in values.items())})" if values else ""


def op_definition(name: str, variant: str = "", **values: object) -> Formula:
    """``y = definition`` of catalog op ``name`` (the textbook form; its stable form is proven equal).

    ``values`` fix parameters by name (``label_smoothing=0``): an exact substitution into a formula proven for
    every parameter value.
    """
    from symdl.catalog import get
    from symdl.printing.latex import equation_latex

    op = get(name)
    variant = variant or (str(op.param(op.variant_param).default) if op.variant_param else "")
    proofs = _proofs(name, variant)
    definition = op.formulas[variant].definition.xreplace(_substitution(op, values))
    return Formula(f"{_label(op, name, variant)}.definition", equation_latex(op, _readable(definition)),
                   f"catalog op {name}{_shown(values)}", "definition (catalog); kernel's stable form proven equal: "
                   + _methods([p.method for p in proofs]) + _rounded(definition))


def op_gradient(name: str, variant: str = "", input_name: str = "input", **values: object) -> Formula:
    """The derivative of catalog op ``name`` for one input.

    Elementwise ops and pointwise losses print SymPy's derivative of the textbook definition (the kernel's
    closed form, often a clamped stable form, is proven equal to it); row ops and class losses print their
    closed-form vector-Jacobian product.
    """
    from symdl.catalog import get
    from symdl.printing.latex import derivative_latex, gradient_latex

    op = get(name)
    variant = variant or (str(op.param(op.variant_param).default) if op.variant_param else "")
    formula = op.formulas[variant].substituted(_substitution(op, values))
    proofs = _methods([p.method for p in _proofs(name, variant)])
    if op.traits.over_rows:
        return Formula(f"{_label(op, name, variant)}.gradient", gradient_latex(op, formula, input_name),
                       f"catalog op {name}{_shown(values)}",
                       "closed form proven equal to SymPy's vector-Jacobian product of the definition: " + proofs)
    item = next(i for i in op.inputs if i.name == input_name)
    exact = sp.diff(formula.definition, item.symbol)
    derived = _readable(exact)
    return Formula(f"{_label(op, name, variant)}.gradient",
                   f"{derivative_latex(op, latex(item.symbol))} = {latex(derived)}",
                   f"catalog op {name}{_shown(values)}",
                   "SymPy's derivative of the definition; the kernel's closed form is proven equal to it: " + proofs
                   + _rounded(exact))


def _readable(expr: sp.Expr) -> sp.Expr:
    """``expr`` with long exact constants (SELU's 30-digit rationals) shown to 6 significant digits.

    Only the printing rounds: the proofs are of the exact catalog expression (the method says so).
    """
    long = {r: sp.Float(r, 6) for r in expr.atoms(sp.Rational) if r.q > 1000 or abs(r.p) > 10**6}
    return expr.xreplace(long) if long else expr


def _rounded(expr: sp.Expr) -> str:
    return "; exact constants printed to 6 digits" if _readable(expr) != expr else ""


def _label(op: object, name: str, variant: str) -> str:
    """``gelu[tanh]`` for an op with variants, else its name."""
    return f"{name}[{variant}]" if getattr(op, "variant_param", None) else name


def _proofs(name: str, variant: str) -> list:  # noqa: ANN401 - symdl.proofs.proof.Proof
    from symdl.verify.ops import proofs_for

    proofs = proofs_for([(name, variant)], workers=0)[(name, variant)]
    failed = [p.claim for p in proofs if not p.holds]
    if failed:
        raise HandoutError(f"catalog op {name}: proofs failed: {'; '.join(failed)}")
    return proofs


def fact(name: str) -> Formula:
    """A derived fact of :mod:`symdl.catalog.facts`, its derivation re-run."""
    from symdl.catalog.facts import FACTS

    holds, method = FACTS[name].prove()
    if not holds:
        raise HandoutError(f"fact {name} did not hold: {method}")
    return Formula(f"fact.{name}", FACTS[name].latex, f"fact {name} (symdl.catalog.facts)", method)


#: Values that turn an update rule into its plain textbook form (PyTorch's defaults).
_PLAIN = {"maximize": False, "weight_decay": 0, "decoupled_weight_decay": False, "amsgrad": False,
          "nesterov": False, "dampening": 0, "lr_decay": 0, "centered": False, "initial_accumulator_value": 0}


def update_rule(name: str, **values: object) -> Formula:
    """Optimizer ``name``'s update with PyTorch's defaults substituted (exactly), as ``target <- value`` lines."""
    from symdl.catalog import OPTIMIZERS
    from symdl.catalog.optimizers import LATEX_NAMES

    rule = OPTIMIZERS[name]
    settings = {**_PLAIN, **values}
    subs = {s: sp.sympify(settings[h.name]) for h in rule.hypers if h.name in settings for s in h.symbols}
    lines = []
    for target, expr in rule.steps:
        expr = sp.piecewise_fold(expr.xreplace(subs))
        if expr != target:
            lines.append(rf"{latex(target, symbol_names=LATEX_NAMES)} &\leftarrow "
                         rf"{latex(expr, symbol_names=LATEX_NAMES)}")
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    return Formula(f"{name}.update", r"\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}",
                   f"catalog update rule {name}" + (f" ({shown})" if shown else ""),
                   "the catalog's rule (its generated optimizer is tested against torch.optim), defaults "
                   "substituted exactly")


#: The fact proving each schedule's closed form equal to torch's chainable update (symdl.catalog.facts).
SCHEDULE_FACTS = {"StepLR": "step_lr_closed_form", "ExponentialLR": "exponential_closed_form",
                  "CosineAnnealingLR": "cosine_annealing_closed_form", "LinearLR": "linear_warmup_closed_form"}


def schedule(name: str) -> Formula:
    """A learning-rate schedule's closed form from the catalog, its fact re-proven."""
    from symdl.catalog import SCHEDULES
    from symdl.catalog.facts import FACTS

    if name not in SCHEDULE_FACTS:
        raise HandoutError(f"schedule {name}: no fact proves its closed form; schedules: {', '.join(SCHEDULE_FACTS)}")
    holds, method = FACTS[SCHEDULE_FACTS[name]].prove()
    if not holds:
        raise HandoutError(f"schedule {name}: {method}")
    entry = SCHEDULES[name]
    eta = sp.Symbol(r"\eta_t")
    return Formula(f"schedule.{name}", f"{latex(eta)} = {latex(entry.closed)}", f"catalog schedule {name}",
                   f"equal to torch's chainable update: fact {SCHEDULE_FACTS[name]}, {method}")


def layer(name: str, index: int) -> Formula:
    """Line ``index`` of layer ``name``'s closed forms (the catalog's LaTeX), its kernel proven and checked.

    The proof is ``symdl verify``'s (from the proof cache when present): the kernel's forward and VJP equal
    SymPy's derivative of the index-level definition on the catalog's instances; the kernel's VJP is also
    checked against finite differences here.
    """
    from symdl.catalog import LAYERS
    from symdl.proofs.layers import prove_layers
    from symdl.verify.layers import finite_difference_error

    entry = next(entry for entry in LAYERS if entry.name == name)
    proof = prove_layers([name], workers=0)[name]
    if proof.failures:
        raise HandoutError(f"layer {name}: proof failed: {'; '.join(proof.failures)}")
    error = finite_difference_error(entry)
    if not error < 1e-6:
        raise HandoutError(f"layer {name}: the VJP disagrees with finite differences (relative error {error:.1e})")
    return Formula(f"{name}.math{index}", entry.math[index], f"catalog layer {name}",
                   f"kernel proven equal to SymPy's derivative of the index-level definition on {proof.instances} "
                   f"instances ({entry.proof}); VJP against finite differences: max relative error {error:.0e}")


def _points(symbols: Sequence[sp.Symbol], domain: Mapping[sp.Symbol, tuple[float, float]], seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [[float(rng.uniform(*domain.get(s, (0.3, 2.0)))) for s in symbols] for _ in range(POINTS)]


def _prove_link(lhs: sp.Expr, rhs: sp.Expr, relation: Relation, symbols: Sequence[sp.Symbol],
                domain: Mapping[sp.Symbol, tuple[float, float]], seed: int) -> str:
    """Prove ``lhs relation rhs``; the method, or raise."""
    from symdl.proofs.proof import SIMPLIFY_SECONDS, ProofTimeout, prove_identity, time_limit

    if relation == "=":
        proof = prove_identity("link", lhs, rhs, symbols, _points(symbols, domain, seed))
        if not proof.holds:
            raise HandoutError(f"{latex(lhs)} = {latex(rhs)} does not hold (max relative error {proof.max_error:.2g})")
        return proof.method
    try:
        with time_limit(SIMPLIFY_SECONDS):
            gap = sp.factor(sp.simplify(rhs - lhs))
    except ProofTimeout:
        gap = None
    strict = relation == "<"
    if gap is not None and (gap.is_positive if strict else gap.is_nonnegative):
        return "symbolic (the difference is " + ("positive" if strict else "nonnegative") + ")"
    raise HandoutError(f"{latex(lhs)} {relation} {latex(rhs)} not proven (difference {gap})")


def chain(key: str, first: sp.Expr, *links: tuple[Relation, sp.Expr], meaning: Mapping[sp.Basic, sp.Expr] | None = None,
          domain: Mapping[sp.Symbol, tuple[float, float]] | None = None, source: str = "handout derivation",
          seed: int = 0, aligned: bool = False) -> Formula:
    """A derivation ``first rel e1 rel e2 ...`` with every link proven.

    Args:
        key: the formula's name.
        first, links: the expressions as printed (they may use undefined functions such as sigma(x)).
        meaning: what those functions and symbols stand for in the proofs (``{sigma: Lambda(x, 1/(1+exp(-x)))}``),
            substituted and ``doit()``-ed before each link is proven.
        domain: sampling interval per symbol for numeric proofs (default (0.3, 2)).
        aligned: print one link per line.
    """
    meaning, domain = dict(meaning or {}), dict(domain or {})

    def concrete(expr: sp.Expr) -> sp.Expr:
        for name, value in meaning.items():
            expr = expr.replace(name, value) if isinstance(value, sp.Lambda) else expr.xreplace({name: value})
        return expr.doit()

    methods, previous = [], first
    for index, (relation, expr) in enumerate(links):
        a, b = concrete(previous), concrete(expr)
        symbols = sorted(a.free_symbols | b.free_symbols, key=lambda s: s.name)
        methods.append(_prove_link(a, b, relation, symbols, domain, seed + index))
        previous = expr
    pieces = [f"{_RELATION_LATEX[r]} {latex(e)}" for r, e in links]
    if aligned:
        body = rf"{latex(first)} &" + r" \\ &".join(pieces)
        text = r"\begin{aligned}" + body + r"\end{aligned}"
    else:
        text = " ".join([latex(first), *pieces])
    return Formula(key, text, source, _methods(methods))


def equation(key: str, lhs: sp.Expr, rhs: sp.Expr, **options: object) -> Formula:
    """``lhs = rhs`` proven (:func:`chain` with one link)."""
    return chain(key, lhs, ("=", rhs), **options)  # type: ignore[arg-type]


def computed(key: str, lhs: sp.Expr, rhs: sp.Expr, check: Callable[[], tuple[bool, str]],
             source: str = "handout computation") -> Formula:
    """``lhs = rhs`` where ``rhs`` came from a SymPy computation (``integrate``, ``solve``) or a numeric
    fact; ``check()`` returns (holds, method) from an independent check (mpmath quadrature, an instance)."""
    holds, method = check()
    if not holds:
        raise HandoutError(f"{key}: {latex(lhs)} = {latex(rhs)} failed its check ({method})")
    return Formula(key, f"{latex(lhs)} = {latex(rhs)}", source, method)


def derivation(key: str, expr: sp.Expr, wrt: sp.Symbol) -> Formula:
    """A step-by-step derivation of ``d expr / d wrt`` from :func:`symdl.steps.derive`, every step verified.

    Printed as one ``aligned`` block from the engine's reading order (:func:`symdl.steps.printers.lines.part_lines`):
    ``lhs &= rhs`` per line, sub-steps indented, each rule's sentence and verification mark after it.
    """
    from symdl.steps import derive
    from symdl.steps.printers.latex import expr_latex
    from symdl.steps.printers.lines import part_lines, verification_word

    result = derive(expr, wrt)
    checks = [result.check(step) for step in result.steps()]
    failed = [c for c in checks if c is None or not c.ok]
    if failed or not checks:
        raise HandoutError(f"{key}: the step-by-step derivation of {expr} is not verified ({len(failed)} steps)")

    def why(segments: tuple[object, ...], check: object) -> str:
        text = "".join(rf"\text{{{s}}}" if isinstance(s, str) else expr_latex(s) for s in segments if s != "")
        mark = verification_word(check)  # type: ignore[arg-type]
        text += rf"\ \text{{[{mark}]}}" if mark else ""
        return text

    rows = []
    for line in (line for part in result.parts for line in part_lines(result, part)):
        indent = r"\quad " * line.depth
        reason = why(line.why, line.check)
        if reason:  # the justification on its own row, above the line it justifies (keeps rows narrow)
            rows.append(rf"& \qquad {indent}{{\small {reason}}}")
        lhs = indent + expr_latex(line.lhs) if line.lhs is not None else ""
        rows.append(f"{lhs} &= {expr_latex(line.rhs)}")
    methods = sorted({c.method for c in checks})
    return Formula(key, r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}", "symdl.steps derivation",
                   f"{len(checks)} steps, each verified ({', '.join(methods)})")


def integral(key: str, integrand: sp.Expr, limits: tuple[sp.Symbol, sp.Expr, sp.Expr], value: sp.Expr,
             domain: Mapping[sp.Symbol, tuple[float, float]] | None = None, *, symbolic: bool = True,
             source: str = "handout derivation") -> Formula:
    """``Integral(integrand, limits) = value``, proven by quadrature and, if SymPy manages, symbolically.

    Numeric: mpmath quadrature at 50 digits at sample values of the parameters (relative error below
    1e-30). Symbolic: ``integrate`` then ``simplify`` of the difference, within the time limit.
    """
    import mpmath

    from symdl.proofs.proof import SIMPLIFY_SECONDS, ProofTimeout, time_limit

    var, low, high = limits
    parameters = sorted((integrand.free_symbols | value.free_symbols) - {var}, key=lambda s: s.name)
    points = _points(parameters, dict(domain or {}), 0)[:4] if parameters else [[]]
    worst = 0.0
    with mpmath.workdps(50):
        for point in points:
            subs = {p: sp.Rational(str(round(v, 4))) for p, v in zip(parameters, point)}  # exact: no 16-digit floats
            f = sp.lambdify(var, integrand.subs(subs), modules="mpmath")
            lo, hi = (mpmath.mpf(float(v)) if v.is_finite else (mpmath.inf if v > 0 else -mpmath.inf)
                      for v in (sp.sympify(low).subs(subs), sp.sympify(high).subs(subs)))
            got, want = mpmath.quad(f, [lo, hi]), mpmath.mpf(sp.N(value.subs(subs), 60))
            worst = max(worst, float(abs(got - want) / max(abs(want), 1)))
    if worst > 1e-30:
        raise HandoutError(f"{key}: quadrature disagrees with the closed form (relative error {worst:.1e})")
    method = f"numeric (mpmath quadrature, 50 digits, {len(points)} parameter points, error < 1e-30)"
    if symbolic:
        try:
            with time_limit(SIMPLIFY_SECONDS * 2):
                done = sp.simplify(sp.integrate(integrand, limits) - value) == 0
        except (ProofTimeout, RecursionError, ValueError, TypeError, NotImplementedError):
            done = False
        if done:
            method = "symbolic (SymPy integrate); " + method
    return Formula(key, f"{latex(sp.Integral(integrand, limits))} = {latex(value)}", source, method)


def matrix_gradient(key: str, text: str, wrt: str, shapes: Mapping[str, str], *, assume: Sequence[str] = (),
                    check: Callable[[], tuple[bool, str]] | None = None) -> Formula:
    """The gradient of a scalar matrix expression from :func:`symdl.steps.matrix.derive_matrix`.

    Every step of the engine's derivation and its result are checked by finite differences at random sizes;
    ``check`` adds an independent proof (e.g. symbolic, entry by entry, on explicit instances).
    """
    from symdl.steps.matrix import derive_matrix

    result = derive_matrix(text, wrt, dict(shapes), assume=list(assume))
    gradient = result.results[wrt]
    if not result.verified:
        raise HandoutError(f"{key}: the matrix derivative of {text} is not verified")
    shown = gradient.result_shown if gradient.result_shown is not None else gradient.result
    f = result.latex_of(result.expression, abbreviate=False)
    checks = [gradient.check, *([gradient.assumed_check] if gradient.assumed_check is not None else [])]
    method = (f"symdl.steps.matrix: {len(result.steps)} steps and the result checked by finite differences at "
              f"random sizes (max error {max(c.error for c in checks):.0e})")
    if assume:
        method += f", assuming {', '.join(assume)}"
    if check is not None:
        holds, how = check()
        if not holds:
            raise HandoutError(f"{key}: {how}")
        method += f"; {how}"
    return Formula(key, rf"\nabla_{{{wrt}}} \left({f}\right) = {result.latex_of(shown, abbreviate=False)}",
                   f"matrix derivative of {text}", method)


def matrix_derivation(key: str, text: str, wrt: Sequence[str], shapes: Mapping[str, str], *,
                      assume: Sequence[str] = ()) -> Formula:
    """The reverse-mode derivation of a scalar matrix expression by :func:`symdl.steps.matrix.derive_matrix`.

    One ``aligned`` block: the intermediate values (``u_1 = W X``), then from the output back to the inputs each
    node's gradient :math:`\bar u` with the identity used and its finite-difference check on a row of its own
    (keeps rows narrow), the contributions it passes to its operands, and each variable's gradient. Refused
    (:class:`HandoutError`) unless every step and every result passed its check.
    """
    from symdl.steps.matrix import derive_matrix
    from symdl.steps.matrix.printers import _bar, _lx

    result = derive_matrix(text, list(wrt), dict(shapes), assume=list(assume))
    failed = [s.name for s in result.steps if not s.check.ok]
    if failed or not result.verified:
        raise HandoutError(f"{key}: the matrix derivation of {text} is not verified (steps {', '.join(failed)})")
    rows = [rf"{_lx(name)} &= {result.latex_of(node, skip=node)}"
            for node, name in sorted(result.lets.items(), key=lambda kv: int(kv[1][1:]))]
    for step in result.steps:
        rule = step.rule.replace("_", " ")
        rows.append(rf"& \qquad \text{{{rule}: }} {step.latex_identity}"
                    rf"\ \text{{[verified, error {step.check.error:.0e}]}}")
        rows.append(rf"{_bar(step.name)} &= {result.latex_of(step.gradient)}")
        rows += [rf"& \qquad \to {_lx(name)}:\ {result.latex_of(c)}" for name, c in step.contributions]
    for name in wrt:
        shown = result.results[name]
        rows.append(rf"\frac{{\partial f}}{{\partial {_lx(name)}}} &= {result.latex_of(shown.shown)}")
    errors = [s.check.error for s in result.steps] + [r.check.error for r in result.results.values()]
    method = (f"symdl.steps.matrix: {len(result.steps)} steps and {len(result.results)} gradient(s), each checked by "
              f"finite differences at 3 random sizes (max relative error {max(errors):.0e})")
    return Formula(key, r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}",
                   f"matrix derivation of {text}", method + (f", assuming {', '.join(assume)}" if assume else ""))
