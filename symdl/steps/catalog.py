r"""Step-by-step derivations of the catalog's activations and losses (``symdl derive NAME``).

Each entry reads like a textbook:

1. **the textbook case**: the definition at the default parameters (cross-entropy without weights
   or label smoothing) differentiated rule by rule, then moved by named, verified rewrites to the
   catalog's identities (:math:`\sigma' = \sigma(1 - \sigma)`, :math:`\tanh' = 1 - \tanh^2`,
   softplus' = sigmoid, GELU' = :math:`\Phi + x\varphi`, softmax cross-entropy's
   :math:`p_j - y_j` with :math:`\sum_k y_k = 1` stated as an assumption);
2. **the general case** (when the entry has parameters): the same with its parameters as symbols;
3. **what the kernel computes**: the stable forward form and the closed-form gradient as their own
   labelled lines, each proven equal to the derived one (clamps are named once, with their reason).

Row ops and class losses are written at index level: ``x`` becomes the component :math:`x_i` (the
output) or the differentiated :math:`x_j`, ``rowsum`` a sum over ``k``, the row maximum a constant
shift ``m`` (any shift gives the same value; the maximum keeps ``exp`` from overflowing), and the
number of classes ``n``. Index-level steps are verified on the instance n = 4, j = 2.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sympy as sp

from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.catalog.spec import DERIVATIVE, Formula, Op
from symdl.errors import UnknownOpError
from symdl.functions import NUM_CLASSES, rowmax, rowsum, sigmoid, softplus
from symdl.steps.api import DEFAULT_TIMEOUT, DeriveError, finish
from symdl.steps.rules import steps
from symdl.steps.tree import Derivation, Let, Part, Rewrite, Step, derivative

__all__ = ["derive_op", "catalog_names"]

N = sp.Symbol("n", integer=True, positive=True)
I, J = sp.symbols("i j", integer=True, positive=True)  # noqa: E741 - the textbook's component indices
SUM_INDICES = sp.symbols("k l q", integer=True, positive=True)
SHIFT = sp.Symbol("m", real=True)


def _base(name: str) -> sp.IndexedBase:
    """A real vector (its components real, so that a sum of them can be compared in a condition)."""
    return sp.IndexedBase(name, real=True)


def catalog_names() -> list[str]:
    """The catalog entries ``symdl derive`` derives (activations and losses)."""
    return [name for name, op in ACTIVATIONS_AND_LOSSES.items() if op.family in ("activation", "loss")]


# --------------------------------------------------------------------------- parameters
def _defaults(op: Op) -> dict[sp.Symbol, sp.Expr]:
    """Symbol parameters at their defaults (an optional array's None as 1, a bool as 0/1)."""
    values = {}
    for p in op.symbol_params:
        default = p.default
        if default is None:
            values[p.symbol] = sp.S.One
        elif isinstance(default, bool):
            values[p.symbol] = sp.Integer(int(default))
        elif isinstance(default, int):
            values[p.symbol] = sp.Integer(default)
        elif isinstance(default, float):
            values[p.symbol] = sp.Rational(str(default)) if len(str(default)) < 12 else sp.Float(default)
    return values


def _check_values(op: Op) -> tuple[tuple[sp.Expr, sp.Expr], ...]:
    """Parameter values the kernel's forms are checked at: inside each parameter's sampling domain."""
    values = _defaults(op)
    for p in op.symbol_params:
        if p.sample is not None:
            values[p.symbol] = sp.Rational(str(round((2 * p.sample.low + p.sample.high) / 3, 4)))
    # an array parameter (cross-entropy's class weights) stays general: its components are sampled
    return tuple((s, v) for s, v in values.items() if s not in op.row_symbols)


def _domain_values(op: Op) -> tuple[tuple[sp.Expr, sp.Expr], ...]:
    """Inputs confined to a half line or an interval, mapped onto it (``x -> low + (high - low) sigmoid(x)``),
    so that the kernel's forms are compared where the kernel is defined (e.g. a probability in (0, 1))."""
    mapped = []
    for item in op.inputs:
        d = item.domain
        if d.low >= 0 and item.role != "class_index":
            low, high = sp.Rational(str(d.low)), sp.Rational(str(d.high))
            mapped.append((item.symbol, low + (high - low) * sigmoid(item.symbol)))
    return tuple(mapped)


def _describe(values: dict[sp.Symbol, sp.Expr], op: Op) -> str:
    names = {p.symbol: p.name for p in op.symbol_params}
    return ", ".join(f"{names[s]} = {'None (1)' if v == 1 and op.param(names[s]).default is None else v}"
                     for s, v in values.items())


# --------------------------------------------------------------------------- clamps, named once
def _clamps(expr: sp.Expr) -> list[sp.Max]:
    return sorted({m for m in expr.atoms(sp.Max) if any(isinstance(a, sp.Min) for a in m.args)
                   and any(a.is_number for a in m.args)}, key=sp.default_sort_key)


def _name_clamps(exprs: list[sp.Expr], var: sp.Symbol) -> tuple[list[sp.Expr], list[Let]]:
    lets = []
    table = {}
    for k, clamp in enumerate(_clamps(sp.Add(*exprs))):
        symbol = sp.Symbol(f"{var.name}_c{'' if k == 0 else k}", real=True)
        low = next(a for a in clamp.args if a.is_number)
        high = next(a for a in next(a for a in clamp.args if isinstance(a, sp.Min)).args if a.is_number)
        table[clamp] = symbol
        lets.append(Let(symbol, clamp, f"{var} clamped to [{low}, {high}]: past the clamp the function's value "
                                        "no longer changes in floating point, and exp cannot overflow"))
    return [e.xreplace(table) for e in exprs], lets


# --------------------------------------------------------------------------- index-level form of row formulas
def _indexed(expr: sp.Expr, op: Op, component: sp.Expr) -> sp.Expr:
    """A row formula at index level: row symbols as ``x[component]``, ``rowsum`` as a sum over k (then l, q)."""
    bases = {s: _base(s.name) for s in op.row_symbols}
    depth = [0]

    def convert(e: sp.Expr, index: sp.Expr) -> sp.Expr:
        if e in bases:
            return bases[e][index]
        if e == NUM_CLASSES:
            return N
        if isinstance(e, rowsum):
            k = SUM_INDICES[depth[0]]
            depth[0] += 1
            inner = convert(e.args[0], k)
            depth[0] -= 1
            return sp.Sum(inner, (k, 1, N))
        if isinstance(e, rowmax):
            return SHIFT if e.args[0] in bases else -SHIFT if (-e.args[0]) in bases else sp.Max(*[])
        if not e.args:
            return e
        args = [convert(a, index) for a in e.args]
        if isinstance(e, sp.core.relational.Relational):  # a sum is not known to be real: keep the comparison
            return e.func(*args, evaluate=False)
        return e.func(*args)

    return convert(expr, component)


# --------------------------------------------------------------------------- hand-written rewrite chains
def _sigmoid_chain(result: sp.Expr, x: sp.Symbol) -> tuple[Rewrite, ...]:
    e = sp.exp(-x)
    split = sp.Mul(1 / (1 + e), e / (1 + e), evaluate=False)
    named = sp.Mul(sigmoid(x), e / (1 + e), evaluate=False)
    complement = sp.Mul(sigmoid(x), sp.Add(1, -1 / (1 + e), evaluate=False), evaluate=False)
    final = sigmoid(x) * (1 - sigmoid(x))
    return (Rewrite(result, None, split, "split the square in the denominator"),
            Rewrite(split, None, named, "name sigma(x) = 1/(1 + exp(-x))",
                    words=("name ", _eq(sigmoid(x), 1 / (1 + e)))),
            Rewrite(named, None, complement, "exp(-x)/(1 + exp(-x)) = 1 - 1/(1 + exp(-x))",
                    words=(_eq(e / (1 + e), sp.Add(1, -1 / (1 + e), evaluate=False)),)),
            Rewrite(complement, None, final, "factor sigma(x): sigma' = sigma (1 - sigma)",
                    words=("factor ", sigmoid(x), ": ", _eq(derivative(sigmoid(x), x), final))))


def _eq(lhs: sp.Expr, rhs: sp.Expr) -> sp.Eq:
    """``lhs = rhs`` as a justification's math (unevaluated: SymPy would decide it)."""
    return sp.Eq(lhs, rhs, evaluate=False)


def _tanh_chain(result: sp.Expr, x: sp.Symbol) -> tuple[Rewrite, ...]:
    return ()  # tanh's table rule already states 1 - tanh^2


def _gelu_chain(result: sp.Expr, x: sp.Symbol) -> tuple[Rewrite, ...]:
    from symdl.functions import normal_cdf

    phi = sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)
    target = normal_cdf(x) + x * phi
    pdf = sp.Function("phi")
    words = ("name ", _eq(normal_cdf(x), (1 + sp.erf(x / sp.sqrt(2))) / 2), " and the normal pdf ",
             _eq(pdf(x), phi), ": GELU' = ", normal_cdf(x) + x * pdf(x))
    return (Rewrite(result, None, target, "name Phi(x) = (1 + erf(x/sqrt(2)))/2 and the normal pdf "
                                          "phi(x) = exp(-x^2/2)/sqrt(2 pi): GELU' = Phi + x phi", words=words),)


CHAINS: dict[str, Callable[[sp.Expr, sp.Symbol], tuple[Rewrite, ...]]] = {
    "sigmoid": _sigmoid_chain, "gelu": _gelu_chain,
}


# --------------------------------------------------------------------------- elementwise entries
def _facts(formula: Formula, result: sp.Expr) -> list[Rewrite]:
    """The catalog's identities about the derivative, each a rewrite (skipped where the result already is one)."""
    return [Rewrite(result, None, rhs, claim) for claim, lhs, rhs in formula.facts
            if lhs == DERIVATIVE and sp.expand(rhs - result) != 0]


def _kink_notes(op: Op, formula: Formula, x: sp.Symbol) -> tuple[str, ...]:
    from symdl.steps.exprtext import expression_text

    return tuple(f"kink at {x} = {expression_text(k.at)}: PyTorch's subgradient there is "
                 f"{expression_text(k.subgradient)}" + (f" ({k.why})" if k.why else "") for k in formula.kinks)


def _elementwise(op: Op, formula: Formula, variant: str) -> Derivation:
    defaults = _defaults(op)
    definition = formula.definition
    parts: list[Part] = []
    lets: list[Let] = []
    inputs = op.differentiable_inputs
    x = op.inputs[0].symbol
    textbook_def = definition.xreplace(defaults)
    general = bool(defaults) and textbook_def != definition
    label = f" ({_describe(defaults, op)})" if general else ""
    chain = CHAINS.get(op.name) if op.name != "gelu" or definition.has(sp.erf) else None
    if op.name in ("sigmoid", "softplus", "tanh"):  # first by the primitive's known derivative
        primitive = {"sigmoid": sigmoid(x), "softplus": softplus(x), "tanh": sp.tanh(x)}[op.name]
        parts.append(Part(f"by the known derivative of {op.name}", steps(primitive, x), key=f"d/d{x}"))
    for item in inputs:
        var = item.symbol
        tree = steps(textbook_def, var)
        result = tree.eval()
        rewrites = list(chain(result, var)) if chain is not None and var == x else []
        if not rewrites:
            named = _name_inner(tree, result, lets)
            rewrites += [named] if named is not None else []
        rewrites += _facts(formula, rewrites[-1].after if rewrites else result) if var == x else []
        key = f"d/d{var}" if not parts or parts[0].key != f"d/d{var}" else None
        title = "textbook case" + label + ("" if len(inputs) == 1 else f": d/d{var}")
        if len(parts) == 1 and op.name in ("sigmoid", "softplus", "tanh"):
            title = f"from the definition, {op.name} = " + _definition_text(definition)
        parts.append(Part(title, tree, tuple(rewrites), _kink_notes(op, formula, x) if var == x else (), key))
    if general:
        for item in inputs:
            tree = steps(definition, item.symbol)
            parts.append(Part("general case" + ("" if len(inputs) == 1 else f": d/d{item.symbol}"), tree,
                              key=f"d/d{item.symbol} (general)"))
    parts += _kernel_parts(op, formula, lets)
    return Derivation(definition, tuple(i.symbol for i in inputs), parts, title=_title(op, variant), lets=tuple(lets),
                      notes=op.notes[:0])


def _name_inner(tree: Step, result: sp.Expr, lets: list[Let]) -> Rewrite | None:
    """A rewrite naming the largest inner function of a chain rule that the result repeats (u = ...)."""
    from symdl.steps.exprtext import expression_text
    from symdl.steps.rules import ChainRule

    inners = [s for s in tree.walk() if isinstance(s, ChainRule) and sp.count_ops(s.inner) >= NAMED_OPS
              and _occurrences(result, s.inner) >= 2]
    if not inners:
        return None
    chain = max(inners, key=lambda s: sp.count_ops(s.inner))
    lets.append(Let(chain.u, chain.inner, "the chain rule's inner function"))
    return Rewrite(result, None, result.xreplace({chain.inner: chain.u}),
                   f"name {chain.u} = {expression_text(chain.inner)}, which appears more than once",
                   words=("name ", _eq(chain.u, chain.inner), ", which appears more than once"))


def _occurrences(expr: sp.Expr, part: sp.Expr) -> int:
    return sum(1 for node in sp.preorder_traversal(expr) if node == part)


#: Inner functions at least this large (SymPy operations) are named when the result repeats them.
NAMED_OPS = 4


def _definition_text(expr: sp.Expr) -> str:
    from symdl.steps.exprtext import expression_text

    return expression_text(expr)


def _kernel_parts(op: Op, formula: Formula, lets: list[Let]) -> list[Part]:
    """The stable forward form and the closed-form gradients the kernel computes, as checked rewrites."""
    x = op.inputs[0].symbol
    given = _check_values(op) + _domain_values(op)
    where = (f"checked at {', '.join(f'{s} = {v}' for s, v in given)}; `symdl verify` proves them over the "
             "parameters' domains") if given else ""
    rewrites = []
    forms = [formula.stable] if formula.stable is not None else []
    grads = [(i, formula.grads[i.name]) for i in op.differentiable_inputs if i.name in formula.grads]
    named, new_lets = _name_clamps([*forms, *(g for _, g in grads)], x)
    lets.extend(new_lets)
    table = {let.symbol: let.value for let in new_lets}
    if forms:
        rewrites.append(Rewrite(formula.definition, None, named[0], "the stable form the kernel computes", given))
    for (item, _), closed in zip(grads, named[len(forms):], strict=True):
        rewrites.append(Rewrite(derivative(formula.definition, item.symbol), None, closed,
                                f"the closed-form gradient the kernel computes (with respect to {item.name})", given))
    del table
    if not rewrites:
        return []
    return [Part("what the kernel computes", None, tuple(rewrites), (where,) if where else ())]


# --------------------------------------------------------------------------- row ops and class losses
def _row(op: Op, formula: Formula, variant: str) -> Derivation:
    x = op.inputs[0].symbol
    z = _base(x.name)
    defaults = _defaults(op)
    lets: list[Let] = []
    assumptions: list[tuple[sp.Expr, sp.Expr, str]] = []
    parts: list[Part] = []
    component = I if op.traits.dim_param else J
    definition = _indexed(formula.definition.xreplace(defaults), op, component)
    var = z[J]
    start = _log_quotient(definition)
    label = f" ({_describe(defaults, op)})" if defaults else ""
    if start != definition:  # the textbook case's first step (at the default parameters, as what follows)
        parts.append(Part(f"textbook case{label}: rewrite the definition", None,
                          (_log_quotient_rewrite(definition, start),)))
    tree = steps(start, var)
    rewrites = _row_chain(op, tree.eval(), lets, assumptions)
    parts.append(Part("textbook case" + label, tree, tuple(rewrites), key=f"d/d{x.name}_j"))
    general = _indexed(formula.definition, op, component)
    if general != definition:
        gstart = _log_quotient(general)
        if gstart != general:
            parts.append(Part("general case: rewrite the definition", None, (_log_quotient_rewrite(general, gstart),)))
        gtree = steps(gstart, var)
        parts.append(Part("general case", gtree, tuple(_general_chain(op, gtree.eval(), lets)),
                          key=f"d/d{x.name}_j (general)"))
    stable = [] if formula.stable is None else [
        Rewrite(_indexed(formula.definition, op, component), None, _indexed(formula.stable, op, component),
                f"the stable form the kernel computes, with m = max_k {x.name}_k", _check_values(op))]
    closed = formula.grads.get(op.inputs[0].name)
    if closed is not None:  # the vector-Jacobian product the kernel computes, from the general derivative
        jacobian = [p for p in parts if p.key is not None][-1].result  # the general case, in its named form
        g = _base(op.upstream.name)
        vjp = sp.Sum(g[I] * jacobian, (I, 1, N)) if op.traits.dim_param else op.upstream * jacobian
        stable.append(Rewrite(vjp, None, _indexed(closed, op, J),
                              "the vector-Jacobian product the kernel computes (upstream gradient "
                              f"{op.upstream}{'_i' if op.traits.dim_param else ''})", _check_values(op)))
    if stable:
        parts.append(Part("what the kernel computes", None, tuple(stable),
                          ("m is any constant shift: exp(x_k - m)/sum exp(x_k - m) is the same for every m; "
                           "the row maximum keeps every exp <= 1, so nothing overflows",)))
    return Derivation(definition, (var,), parts, title=_title(op, variant), lets=tuple(lets),
                      assumptions=tuple(assumptions))


def _log_quotient(expr: sp.Expr) -> sp.Expr:
    """``log(exp(a) / b)`` as ``a - log(b)`` wherever it occurs (log-softmax's textbook first step)."""
    def split(e: sp.log) -> sp.Expr:
        numerator, denominator = e.args[0].as_numer_denom()
        if isinstance(numerator, sp.exp) and denominator != 1:
            return numerator.args[0] - sp.log(denominator)
        return e
    return expr.replace(lambda e: isinstance(e, sp.log), split)


def _log_quotient_rewrite(before: sp.Expr, after: sp.Expr) -> Rewrite:
    a, b = sp.symbols("a b", positive=True)
    return Rewrite(before, None, after, "log of a quotient: log(exp(a)/b) = a - log b",
                   words=("log of a quotient: ", _eq(sp.log(sp.exp(a) / b, evaluate=False), a - sp.log(b))))


def _row_chain(op: Op, result: sp.Expr, lets: list[Let], assumptions: list) -> list[Rewrite]:
    """Named rewrites to the textbook endpoint: softmax's Jacobian, softmax cross-entropy's p_j - t_j."""
    x = op.inputs[0].symbol
    z = _base(x.name)
    k = SUM_INDICES[0]
    l_ = SUM_INDICES[1]
    if op.name not in ("softmax", "cross_entropy", "log_softmax", "softmin"):
        return []
    sign = -1 if op.name == "softmin" else 1
    softmax = {idx: sp.exp(sign * z[idx]) / sp.Sum(sp.exp(sign * z[k]), (k, 1, N)) for idx in (I, J)}
    p = _base("p")
    lets.append(Let(p[J], softmax[J], f"the {'softmin' if sign < 0 else 'softmax'} of the inputs, component j"))
    if op.name in ("softmax", "softmin"):
        target = sign * p[I] * (sp.KroneckerDelta(I, J) - p[J])
        word = "softmin" if sign < 0 else "softmax"
        jacobian = _eq(derivative(p[I], z[J]), sign * p[I] * sp.Add(sp.KroneckerDelta(I, J), -p[J], evaluate=False))
        return [Rewrite(result, None, target, f"name p = {word}(x): d p_i / d x_j = "
                                              f"{'-' if sign < 0 else ''}p_i (delta_ij - p_j)",
                        words=(f"name p = {word}(x): ", jacobian))]
    if op.name == "log_softmax":
        return [Rewrite(result, None, sp.KroneckerDelta(I, J) - p[J], "name p_j = softmax_j(x)")]
    t = _base(op.inputs[1].symbol.name)
    total = sp.Sum(t[k], (k, 1, N))
    expanded = p[J] * total - t[J]
    rows = [Rewrite(result, None, expanded, "take p_j = exp(x_j) / sum_l exp(x_l) out of the sum over k",
                    words=("take ", _eq(p[J], softmax[J]), " out of the sum over ", k))]
    assumptions.append((total, sp.S.One, "the target is a probability distribution over the classes "
                                         "(a class index is its one-hot row)"))
    rows.append(Rewrite(expanded, None, p[J] - t[J], "use sum_k t_k = 1: softmax(x) - t", ((total, sp.S.One),),
                        words=("use ", _eq(total, 1), ": the gradient is softmax(x) - t")))
    del l_
    return rows


def _general_chain(op: Op, result: sp.Expr, lets: list[Let]) -> list[Rewrite]:
    """Cross-entropy with class weights w and label smoothing s: name the smoothed target q_k and read off
    p_j sum_k w_k q_k - w_j q_j (which is p_j - t_j again when w = 1, s = 0 and sum_k t_k = 1)."""
    if op.name != "cross_entropy":
        return []
    k = SUM_INDICES[0]
    t, w, p, q = (_base(name) for name in ("t", "weight", "p", "q"))
    smoothing = op.param("label_smoothing").symbol
    lets.append(Let(q[k], smoothing / N + (1 - smoothing) * t[k], "the smoothed target: label smoothing moves that "
                                                                    "share of the mass evenly onto all n classes"))
    target = p[J] * sp.Sum(w[k] * q[k], (k, 1, N)) - w[J] * q[J]
    return [Rewrite(result, None, target, "name the smoothed target q_k and take p_j out of the sum over k",
                    words=("name the smoothed target ", q[k], " and take ", p[J], " out of the sum over ", k))]


def _title(op: Op, variant: str) -> str:
    label = f" ({op.variant_param}={variant!r})" if variant and op.variant_param else ""
    return f"{op.name}{label}: {op.summary}"


def derive_op(name: str, variant: str = "", *, verify: bool = True, timeout: float | None = DEFAULT_TIMEOUT,
              simplify_seconds: float | None = None) -> Derivation:
    """The step-by-step derivation of a catalog activation or loss (``simplify_seconds``: see
    :meth:`symdl.steps.tree.Derivation.verify`).

    Raises:
        UnknownOpError: no such catalog entry.
        DeriveError: an unknown variant.
    """
    op = ACTIVATIONS_AND_LOSSES.get(name)
    if op is None:
        raise UnknownOpError(f"no catalog entry named {name!r}")
    if variant and variant not in op.formulas:
        known = ", ".join(repr(v) for v in op.formulas) or "none"
        raise DeriveError(f"{name} has no variant {variant!r} (variants: {known})")
    start = time.monotonic()
    formula = op.formula(variant)
    build = _row if op.traits.over_rows else _elementwise
    try:
        default = str(op.param(op.variant_param).default) if op.variant_param else ""
        derivation = build(op, formula, variant or default)
    except (TypeError, ValueError, NotImplementedError) as error:  # SymPy refusing an index-level form
        raise DeriveError(f"no step-by-step derivation of {name} yet: SymPy cannot build its index-level form "
                          f"({type(error).__name__})") from None
    if verify:
        finish(derivation, start, timeout, simplify_seconds)
    return derivation
