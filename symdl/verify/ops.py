"""``symdl verify`` for the activations and losses: one row per op and variant.

For each op and variant:

1. **proof** — :func:`symdl.proofs.ops.derive` proves the stable form and every
   closed-form gradient equal to the definition (symbolic, or numeric identity
   at 50 digits). Proofs are cached on disk by a hash of the entry.
   Each gradient written with the forward's output (``name_vjp(..., result=y)``) is proven too, and
   that path is checked like the other (fd, finiteness); its float64 ulp error, in the same units,
   is the row's ``result_ulp``.
2. **fd** — the float64 gradient kernel against central finite differences of
   the forward kernel along random directions (relative error).
3. **ulp** — forward and gradient kernels (float64) against the mpmath
   reference of the definition, on domain samples plus the extremes.
4. **finite** — forward and gradient at the extremes, float32 and float64,
   raise no overflow/invalid/divide warning and are finite where the true value
   is finite.

A row passes when every proof holds, fd <= 1e-6, the ulp errors are within the
op's :class:`~symdl.catalog.spec.Tolerance`, and it is finite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import mpmath
import numpy as np
import sympy as sp

import symdl.kernels as kernels
from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.catalog.spec import Op
from symdl.functions import NUM_CLASSES
from symdl.kernels import _runtime as _rt
from symdl.proofs import cache
from symdl.proofs.ops import derive
from symdl.proofs.proof import Proof
from symdl.sampling import draw_inputs, draw_params
from symdl.verify.reference import Reference, ulp_error
from symdl.verify.row import VerifyRow, directional_error, finite_and_typed, parallel_rows

# --------------------------------------------------------------------------- kernels
def kernel_call(op: Op, params: dict[str, object], *, from_output: bool = False
                ) -> tuple[Callable[..., np.ndarray], Callable[..., tuple]]:
    """The forward and VJP kernels of ``op`` bound to ``params`` (``from_output``: the VJP is given the
    forward's output as ``result=``, as a layer that saved it would)."""
    forward, vjp = getattr(kernels, op.name), getattr(kernels, f"{op.name}_vjp")
    if from_output:
        return (lambda *a: forward(*a, **params)), (
            lambda g, *a: vjp(g, *a, result=forward(*a, **params), **params))
    return (lambda *a: forward(*a, **params)), (lambda g, *a: vjp(g, *a, **params))


def unreduced(op: Op, params: dict[str, object]) -> dict[str, object]:
    """Losses are checked element by element (``reduction='none'``)."""
    return {**params, "reduction": "none"} if any(p.name == "reduction" for p in op.params) else params


# --------------------------------------------------------------------------- proofs
def _prover_files() -> list[Path]:
    """The code proofs depend on: a change to it invalidates every cached proof."""
    import symdl.functions
    import symdl.proofs.ops
    import symdl.proofs.proof

    return [Path(m.__file__) for m in (symdl.proofs.proof, symdl.proofs.ops, symdl.functions)]


def _entry_key(target: tuple[str, str]) -> str:
    """The proof cache's name for one (op, variant): a hash of the prover and of the entry's formulas."""
    op, variant = ACTIVATIONS_AND_LOSSES[target[0]], target[1]
    formula = op.formulas[variant]
    output = {**{f"{n} {k}" if n else k: v for n, f in enumerate(formula.output_forms) for k, v in f.grads.items()},
              **{f"{c.when} {k}": v for c in formula.cases for k, v in c.from_output.items()}}
    return cache.source_key(_prover_files(), op.name, variant, sp.srepr(formula.definition), sp.srepr(formula.stable),
                            *(f"{k}={sp.srepr(v)}" for k, v in sorted(formula.grads.items())),
                            *(f"result {k}={sp.srepr(v)}" for k, v in sorted(output.items())),
                            *(f"{sp.srepr(k.at)}:{sp.srepr(k.subgradient)}" for k in formula.kinks),
                            *(f"{sp.srepr(c.when)}:{sp.srepr(c.stable)}:{sorted((k, sp.srepr(v)) for k, v in c.grads.items())}"
                              for c in formula.cases))


def _derive_proofs(name_variant: tuple[str, str]) -> list[Proof]:
    name, variant = name_variant
    return derive(ACTIVATIONS_AND_LOSSES[name], variant).proofs


def proofs_for(targets: Sequence[tuple[str, str]], *, use_cache: bool = True, workers: int | None = None,
               on_done: Callable[[], None] = lambda: None) -> dict[tuple[str, str], list[Proof]]:
    """Proofs for each (op, variant), from the proof cache or derived in parallel processes."""
    return cache.cached_map(_derive_proofs, targets, _entry_key, use_cache=use_cache, workers=workers,
                            on_done=on_done)


# --------------------------------------------------------------------------- numeric checks
def _batch_shape(op: Op) -> tuple[int, ...]:
    return (4, 5)


def finite_difference_error(op: Op, variant: str, seed: int = 0, directions: int = 4, *,
                            from_output: bool = False) -> float:
    """Max relative error of the VJP (``from_output``: given ``result=``) against central differences (float64)."""
    rng = np.random.default_rng(seed)
    params = {**draw_params(op, rng, variant or None)}
    forward, vjp = kernel_call(op, params, from_output=from_output)
    inputs = draw_inputs(op, rng, _batch_shape(op))
    out = forward(*inputs)
    worst = 0.0
    for _ in range(directions):
        v = rng.standard_normal(np.shape(out))
        grads = vjp(v if np.ndim(out) else float(v), *inputs)
        for index, item in enumerate(op.inputs):
            if not item.differentiable or inputs[index].dtype.kind in "iu":  # class indices
                continue
            h = 1e-6 * max(1.0, float(np.max(np.abs(inputs[index]))))
            error = directional_error(lambda *a: forward(*a), inputs, index, v, grads[index], rng, h)
            worst = float(np.maximum(worst, error))  # a NaN must not vanish
    return worst


def _extreme_inputs(op: Op, rng: np.random.Generator, dtype: type) -> list[np.ndarray] | None:
    """Inputs holding the first input's extremes (others from their domains)."""
    extremes = [v for v in op.inputs[0].domain.extremes if np.isfinite(dtype(v))]
    if not extremes:
        return None
    if op.traits.dim_param:
        values = np.array([[e, 0.0, -e] for e in extremes], dtype=dtype)
        return [values]
    if op.traits.class_targets:
        inputs = draw_inputs(op, rng, (len(extremes), 3), dtype)
        inputs[0] = np.array([[e, 0.0, -e] for e in extremes], dtype=dtype)
        return inputs
    inputs = draw_inputs(op, rng, (len(extremes),), dtype)
    inputs[0] = np.array(extremes, dtype=dtype)
    return inputs


def _domain_inputs(op: Op, rng: np.random.Generator) -> list[np.ndarray]:
    return draw_inputs(op, rng, (6, 5) if op.traits.over_rows else (60,))


def sample_batches(op: Op, rng: np.random.Generator, dtype: type = np.float64) -> list[list[np.ndarray]]:
    """The inputs an op's accuracy is measured on, in ``dtype``: samples of its domains, then its extremes."""
    batches = [[a.astype(dtype) if a.dtype.kind == "f" else a for a in _domain_inputs(op, rng)],
               _extreme_inputs(op, rng, dtype)]
    return [b for b in batches if b is not None]


def tolerance_scale(op: Op, expr: sp.Expr, inputs: Sequence[np.ndarray], params: dict[str, object],
                    grad: np.ndarray | None = None) -> np.ndarray | None:
    """The op's tolerance scale expression evaluated in float64 (None for 0)."""
    if expr == 0:
        return None
    # a flag such as poisson_nll_loss's `full` is a 0/1 factor in the formulas: a number, not a SymPy boolean
    values = {p.symbol: 1.0 if (value := params.get(p.name, p.default)) is None else
              float(value) if isinstance(value, bool) else value for p in op.symbol_params}
    axis = _rt.legacy_softmax_dim(np.ndim(inputs[0]), params.get("dim"), op.name) if op.traits.dim_param else -1
    if op.traits.class_targets:
        arrays = Reference(op, "", params).class_arrays(inputs)
        inputs = [arrays[i.symbol] for i in op.inputs]
        values = {k: (1.0 if op.param(k.name).rule.kind == "array" else v) for k, v in values.items()}
        values[NUM_CLASSES] = np.shape(inputs[0])[-1]
    functions = {
        "rowsum": lambda e: np.sum(e, axis=axis, keepdims=True),
        "rowmax": lambda e: np.max(e, axis=axis, keepdims=True),
        "sigmoid": _rt.sigmoid, "softplus": _rt.softplus, "normal_cdf": _rt.normal_cdf,
    }
    symbols = [i.symbol for i in op.inputs] + [op.upstream]
    f = sp.lambdify(symbols, expr.xreplace(values), modules=[functions, "numpy"])
    # float64 even for float32 inputs: (1 + x^2) at x = 1e30 overflows float32 into inf * 0 = nan
    inputs = [np.asarray(a, dtype=np.float64) if np.issubdtype(np.asarray(a).dtype, np.floating) else a
              for a in inputs]
    grad = None if grad is None else np.asarray(grad, dtype=np.float64)
    upstream = np.ones_like(inputs[0]) if grad is None or np.shape(grad) != np.shape(inputs[0]) else grad
    with np.errstate(divide="ignore", invalid="ignore"):  # an infinite scale at a pole (log 0): any error is fine
        return np.broadcast_to(f(*inputs, upstream), np.shape(inputs[0]))


def ulp_errors(op: Op, variant: str, seed: int = 1) -> tuple[float, float]:
    """Max forward and gradient ulp errors (float64) against the mpmath reference."""
    rng = np.random.default_rng(seed)
    params = unreduced(op, draw_params(op, rng, variant or None))
    reference = Reference(op, variant, params)
    forward, vjp = kernel_call(op, params)
    worst_forward = worst_grad = 0.0
    batches = [_domain_inputs(op, rng), _extreme_inputs(op, rng, np.float64)]
    for inputs in (b for b in batches if b is not None):
        out = forward(*inputs)
        grad = np.ones(np.shape(out)) if not op.traits.dim_param else rng.standard_normal(inputs[0].shape)
        exact = reference.forward(inputs)
        forward_scale = tolerance_scale(op, op.tolerance_for(variant).forward_scale, inputs, params, grad)
        if forward_scale is not None and op.traits.class_targets:
            forward_scale = np.max(forward_scale, axis=-1)  # one loss per row
        worst_forward = float(np.maximum(worst_forward, ulp_error(out, exact, forward_scale)))
        computed = vjp(grad, *inputs)
        exact_grads = reference.gradients(inputs, grad)
        for value, exact_grad in zip((c for c, i in zip(computed, op.inputs) if i.differentiable), exact_grads):
            worst_grad = float(np.maximum(worst_grad, ulp_error(
                value, exact_grad, tolerance_scale(op, op.tolerance_for(variant).grad_scale, inputs, params, grad))))
    return worst_forward, worst_grad


def output_form_ulp(op: Op, variant: str = "", dtype: type = np.float64, seed: int = 1,
                    params: dict[str, object] | None = None) -> float:
    """Max ulp error (in ``dtype``) of the VJP given the forward's output as ``result=``, against the
    mpmath reference (:func:`implementation_ulps`), relative to ``max(|true|, |scale|)`` with the output
    form's scale (:class:`~symdl.catalog.spec.OutputForm`).

    ``params`` default to values drawn from their sample domains.
    """
    form = op.formula(variant).from_output
    if form is None:
        raise ValueError(f"{op.name} has no gradient from its output")
    return implementation_ulps(op, variant, lambda p: kernel_call(op, p, from_output=True), dtype, seed, params,
                               form.scale)[1]


Implementation = Callable[[dict[str, object]], tuple[Callable[..., object], Callable[..., Sequence]]]


def implementation_ulps(op: Op, variant: str, implementation: Implementation, dtype: type = np.float64,
                        seed: int = 1, params: dict[str, object] | None = None,
                        grad_scale: sp.Expr | None = None) -> tuple[float, float]:
    """Max ulp errors (in ``dtype``) of an implementation of ``op``, forward and VJP, against the mpmath
    reference, on domain samples plus the extremes; units as :func:`ulp_errors`, relative to
    ``max(|true|, |scale|)`` with the op's scales (``grad_scale`` given: that one for the VJP). Losses are
    checked element by element (``reduction='none'``). Any implementation's: the NumPy kernels', an
    export's.

    ``implementation(params)`` returns ``(forward, vjp)``: ``forward(*inputs)`` and ``vjp(grad, *inputs)``
    (one gradient per input, None for those without), on NumPy arrays. ``params`` default to values drawn
    from their sample domains.
    """
    rng = np.random.default_rng(seed)
    drawn = draw_params(op, rng, variant or None)
    # each float parameter as the dtype holds it, for the reference too: a float32 kernel computes
    # hinge_embedding_loss's margin - x with float32(margin), and that rounding is not the kernel's error
    params = {k: float(dtype(v)) if isinstance(v, float) else v
              for k, v in unreduced(op, drawn if params is None else params).items()}
    reference = Reference(op, variant, params)
    forward, vjp = implementation(params)
    tolerance = op.tolerance_for(variant)
    grad_scale = tolerance.grad_scale if grad_scale is None else grad_scale
    worst_forward = worst_grad = 0.0
    for inputs in sample_batches(op, rng, dtype):
        out = forward(*inputs)
        grad = rng.standard_normal(np.shape(out)).astype(dtype)
        forward_scale = tolerance_scale(op, tolerance.forward_scale, inputs, params, grad)
        if forward_scale is not None and op.traits.class_targets:
            forward_scale = np.max(forward_scale, axis=-1)  # one loss per row
        worst_forward = float(np.maximum(worst_forward, ulp_error(out, reference.forward(inputs), forward_scale)))
        computed = vjp(grad, *inputs)
        exact = reference.gradients(inputs, grad)
        for value, exact_grad in zip((c for c, i in zip(computed, op.inputs) if i.differentiable), exact):
            worst_grad = float(np.maximum(worst_grad, ulp_error(
                value, exact_grad, tolerance_scale(op, grad_scale, inputs, params, grad))))
    return worst_forward, worst_grad


def finite_at_extremes(op: Op, variant: str, seed: int = 2, *, from_output: bool = False) -> tuple[bool, str]:
    """Forward and VJP (``from_output``: given ``result=``) at the extremes raise no FP warning and stay finite."""
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(seed)
        params = unreduced(op, draw_params(op, rng, variant or None))
        inputs = _extreme_inputs(op, rng, dtype)
        if inputs is None:
            continue
        forward, vjp = kernel_call(op, params, from_output=from_output)

        def run() -> list[np.ndarray]:  # called at once, in this iteration
            out = forward(*inputs)
            return [out, *(g for g in vjp(np.ones_like(out), *inputs) if g is not None)]

        holds, detail = finite_and_typed(run, dtype, f"{np.dtype(dtype).name} at the extremes")
        if not holds:
            return False, detail
    return True, ""


def verify_op(op: Op, variant: str, proofs: list[Proof]) -> VerifyRow:
    """All numeric checks for one op variant, given its proofs (the output-form identities' among them).

    Where the VJP takes the forward's output (``result=``), that path is checked too: its finite
    differences and finiteness count with the row's own, and its float64 ulp error is the row's
    ``result_ulp`` (printed in parentheses after the grad ulp).
    """
    fwd_ulp, grad_ulp = ulp_errors(op, variant)
    form = op.formula(variant).from_output
    paths = (False, True) if form is not None else (False,)
    checks = [finite_at_extremes(op, variant, from_output=from_output) for from_output in paths]
    finite = all(holds for holds, _ in checks)
    details = [detail for _, detail in checks if detail]
    failed = [p.claim for p in proofs if not p.holds]
    methods = sorted({p.method for p in proofs if "from the output" not in p.claim}) or ["none needed"]
    output_methods = sorted({p.method for p in proofs if "from the output" in p.claim})
    if form is not None:  # the output-form identities, listed apart
        methods.append(f"result=: {', '.join(output_methods)}" if output_methods else "result=: NOT PROVEN")
    return VerifyRow(
        op=op.name, variant=variant, proof="; ".join(methods),
        proofs_hold=not failed and (form is None or bool(output_methods)),
        fd_error=max(finite_difference_error(op, variant, from_output=from_output) for from_output in paths),
        forward_ulp=fwd_ulp, grad_ulp=grad_ulp,
        forward_ulp_bound=op.tolerance_for(variant).forward_ulp, grad_ulp_bound=op.tolerance_for(variant).grad_ulp,
        finite=finite, detail="; ".join([*(f"proof failed: {c}" for c in failed), *details]),
        result_ulp=None if form is None else output_form_ulp(op, variant),
        result_ulp_bound=None if form is None else form.grad_ulp,
    )


# --------------------------------------------------------------------------- erf, erfc, normal CDF
#: The row name of the runtime's erf, erfc and normal CDF (one row per dtype).
SPECIAL = "erf"
#: Their promised accuracy, in units in the last place of the dtype.
SPECIAL_ULP = 4.0


def special_points(dtype: type, count: int = 2000, seed: int = 5) -> np.ndarray:
    """Arguments over the whole float range of ``dtype``: log-uniform magnitudes from the smallest
    subnormal to the largest finite number, uniform ones where erf and erfc vary (|x| < 40), the
    neighbours of the runtime's switch points, 0, and both signs of each."""
    info = np.finfo(dtype)
    rng = np.random.default_rng(seed)
    smallest = float(np.nextafter(dtype(0), dtype(1)))
    magnitudes = [10 ** rng.uniform(np.log10(smallest), np.log10(float(info.max)), count),
                  rng.uniform(0, 10, count), rng.uniform(0, 40, count // 2)]
    switches = [v for s in (0.5, 0.7071067811865476, 26.6, 37.6)
                for v in (np.nextafter(dtype(s), dtype(0)), dtype(s), np.nextafter(dtype(s), dtype(100)))]
    values = np.concatenate([*magnitudes, np.array(switches, dtype=np.float64), [0.0, float(info.max)]]).astype(dtype)
    return np.concatenate([values, -values])


def special_function_errors(dtype: type, count: int = 2000) -> dict[str, float]:
    """Largest ulp error (in ``dtype``) of the runtime's erf, erfc, normal CDF and x Phi(x) against mpmath at
    :func:`special_points` (subnormal results in units of the smallest normal number)."""
    x = special_points(dtype, count)

    def near(v: float) -> mpmath.mpf:  # beyond |x| = 1e4 every function is at its limit (mpmath's erfc
        return mpmath.mpf(float(np.clip(v, -1e4, 1e4)))  # overflows an int there)

    references = {"erf": lambda v: mpmath.erf(near(v)), "erfc": lambda v: mpmath.erfc(near(v)),
                  "normal_cdf": lambda v: mpmath.ncdf(near(v)),
                  # GELU's fused x Phi(x) (float32: its own polynomial, evaluated in float32)
                  "x_normal_cdf": lambda v: mpmath.mpf(float(v)) * mpmath.ncdf(near(v))}
    errors = {}
    with mpmath.workdps(40):
        for name, reference in references.items():
            errors[name] = ulp_error(getattr(_rt, name)(x), [reference(v) for v in x])
    return errors


def verify_special(dtype_name: str) -> VerifyRow:
    """The row of the runtime's erf, erfc, normal CDF and x Phi(x) in one dtype: the fit (scripts/fit_erf.py)
    and the largest ulp error of the four against mpmath over the whole float range (fwd ulp column);
    finite and typed at the extremes."""
    dtype = np.dtype(dtype_name).type
    errors = special_function_errors(dtype)
    x = special_points(dtype, 50)
    finite, detail = finite_and_typed(lambda: [_rt.erf(x), _rt.erfc(x), _rt.normal_cdf(x), _rt.x_normal_cdf(x)], dtype,
                                      f"{dtype_name} over the float range")
    worst = max(errors, key=errors.get)
    points = special_points(dtype).size  # the points special_function_errors used
    return VerifyRow(
        op=SPECIAL, variant=dtype_name,
        proof=f"polynomial fits (scripts/fit_erf.py) vs mpmath at {points} points over the float range: "
              + ", ".join(f"{name} {error:.1f} ulp" for name, error in errors.items()),
        proofs_hold=True, fd_error=0.0, forward_ulp=errors[worst], grad_ulp=0.0,
        forward_ulp_bound=SPECIAL_ULP, grad_ulp_bound=0.0, finite=finite, detail=detail)


def _verify_target(job: tuple[str, str, bool]) -> VerifyRow:
    """One (op, variant): cached or derived proofs, then every numeric check (a worker's job); the special
    functions' row for ``SPECIAL`` (its variant is the dtype)."""
    name, variant, use_cache = job
    if name == SPECIAL:
        return verify_special(variant)
    (proofs,) = proofs_for([(name, variant)], use_cache=use_cache, workers=0).values()
    return verify_op(ACTIVATIONS_AND_LOSSES[name], variant, proofs)


def targets(names: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(op, variant) pairs to verify: every variant of the named ops (default: all)."""
    ops = [ACTIVATIONS_AND_LOSSES[n] for n in names] if names else list(ACTIVATIONS_AND_LOSSES.values())
    return [(op.name, str(variant)) for op in ops for variant in op.formulas]


def names() -> list[str]:
    """Row names: the catalog's activations and losses, and the runtime's erf (with erfc and the normal CDF)."""
    return [*ACTIVATIONS_AND_LOSSES, SPECIAL]


def _jobs(chosen: Sequence[str], use_cache: bool) -> list[tuple[str, str, bool]]:
    """One job per row: each (op, variant), then the special functions (one row per dtype)."""
    op_names = [n for n in chosen if n != SPECIAL]
    jobs = [(*t, use_cache) for t in (targets(op_names) if op_names else [])]
    return jobs + [(SPECIAL, dtype, use_cache) for dtype in ("float32", "float64") if SPECIAL in chosen]


def row_count(chosen: Sequence[str]) -> int:
    """How many rows verifying ``chosen`` prints."""
    return len(_jobs(chosen, True))


def _expected_cost(target: tuple[str, str]) -> int:
    """Row and class ops derive on explicit rows and take longest: start them first."""
    if target[0] == SPECIAL:
        return 1
    traits = ACTIVATIONS_AND_LOSSES[target[0]].traits
    return traits.over_rows + traits.class_targets


def verify(chosen: Sequence[str], *, use_cache: bool = True, workers: int | None = None,
           on_done: Callable[[], None] = lambda: None) -> list[VerifyRow]:
    """Every variant of the chosen ops, in parallel processes; rows in catalog order."""
    return parallel_rows(_verify_target, _jobs(chosen, use_cache), workers=workers, on_done=on_done,
                         cost=lambda job: _expected_cost(job[:2]))
