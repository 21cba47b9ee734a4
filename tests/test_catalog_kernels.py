"""Every catalog op's kernels, checked generically (parametrised over the catalog).

(a) VJP against central finite differences of the forward kernel (float64),
    along random directions and, for small inputs, the full Jacobian;
(b) forward and VJP against the mpmath reference of the definition, within the
    op's stated ulp bound, with the domain extremes pinned by ``@example``;
(c) float32 in, float32 out, within float32 accuracy;
plus PyTorch's subgradient at every kink and finiteness at the extremes.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import example, given
from hypothesis import strategies as st

import symdl.kernels as kernels
from symdl.catalog.spec import Input, Op
from symdl.sampling import variant_value
from symdl.strategies import OpCase, op_cases
from symdl.strategies import off_kinks as off_kinks_of
from symdl.verify.ops import finite_at_extremes, tolerance_scale
from symdl.verify.reference import Reference, ulp_error
from tests.conftest import OP_VARIANTS


def forward(case: OpCase, inputs: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    return getattr(kernels, case.op.name)(*(inputs or case.inputs), **case.params)


def vjp(case: OpCase, grad: np.ndarray, inputs: tuple[np.ndarray, ...] | None = None) -> tuple:
    return getattr(kernels, f"{case.op.name}_vjp")(grad, *(inputs or case.inputs), **case.params)


def unreduced(case: OpCase) -> OpCase:
    """The same case with ``reduction='none'`` where the op reduces."""
    if any(p.name == "reduction" for p in case.op.params):
        return OpCase(case.op, case.variant, {**case.params, "reduction": "none"}, case.inputs)
    return case


def kink_points(case: OpCase) -> list[np.ndarray]:
    """Where the first input's kinks are, per element (kinks may move with other inputs)."""
    formula = case.op.formulas[case.variant]
    values = {p.symbol: case.params.get(p.name, p.default) for p in case.op.symbol_params}
    symbols = [i.symbol for i in case.op.inputs]
    shape = np.shape(case.inputs[0])
    return [np.broadcast_to(np.asarray(sp.lambdify(symbols, k.at.xreplace(values), "numpy")(*case.inputs),
                                       dtype=np.float64), shape)
            for k in formula.kinks]


def off_kinks(case: OpCase, margin: float) -> OpCase:
    """``case`` with first-input elements within ``margin`` of a kink moved 2 margins off it
    (:func:`symdl.strategies.off_kinks`: kinks closer than 4 margins are one span).

    Hypothesis favours values such as 0.0, which sit on kinks; moving them keeps
    every drawn example instead of discarding most of them.
    """
    x = off_kinks_of(case.inputs[0], kink_points(case), margin)
    return OpCase(case.op, case.variant, case.params, (x, *case.inputs[1:]))


def jitter_class_loss(case: OpCase, rng: np.random.Generator) -> OpCase:
    """Class losses hinge where two logits tie (multi_margin) or cos(x1, x2) = margin, and the
    cosine's gradient grows like 1/|x2|: hypothesis hits all-zero rows exactly. A jitter of
    0.05-0.1 moves every real input off these measure-zero sets (other kinds are returned as is),
    kept within the input's domain and extremes (a multi-hot target stays in [0, 1], where the
    loss is a sum of non-negative terms)."""
    if case.op.kind != "class_loss":
        return case

    def jittered(a: np.ndarray, item: Input) -> np.ndarray:
        bounds = (item.domain.low, item.domain.high, *item.domain.extremes)
        moved = a + rng.uniform(0.05, 0.1, a.shape) * rng.choice([-1.0, 1.0], a.shape)
        return np.clip(moved, min(bounds), max(bounds)).astype(a.dtype)

    return OpCase(case.op, case.variant, case.params, tuple(
        jittered(a, item) if item.role == "real" else a for a, item in zip(case.inputs, case.op.inputs)))


def random_like(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


# --------------------------------------------------------------------------- (a) finite differences
@pytest.mark.parametrize(("op", "variant"), OP_VARIANTS)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_vjp_matches_central_differences(op: Op, variant: str, data: st.DataObject, seed: int) -> None:
    case = off_kinks(data.draw(op_cases(op, variant)), 1e-3)
    rng = np.random.default_rng(seed)
    case = jitter_class_loss(case, rng)
    out = forward(case)
    v = random_like(rng, np.shape(out))
    grads = vjp(case, v)
    for index, item in enumerate(op.inputs):
        x = case.inputs[index]
        if not item.differentiable or x.dtype.kind in "iu":  # labels and class indices get no gradient
            assert grads[index] is None
            continue
        assert grads[index].shape == x.shape
        # 1e-7: small enough that straddling a jump of f'' (softsign, huber at 0) costs < 1e-6,
        # large enough that rounding (eps |f| / h) stays near 1e-9.
        h = 1e-7 * max(1.0, float(np.max(np.abs(x), initial=0.0)))

        def directional(u: np.ndarray, i: int = index, h: float = h) -> float:
            plus = tuple(a + h * u if j == i else a for j, a in enumerate(case.inputs))
            minus = tuple(a - h * u if j == i else a for j, a in enumerate(case.inputs))
            return float(np.sum(v * (forward(case, plus) - forward(case, minus)))) / (2 * h)

        u = random_like(rng, x.shape)
        numeric, analytic = directional(u), float(np.sum(grads[index] * u))
        assert abs(numeric - analytic) <= 1e-5 * max(1.0, abs(numeric), abs(analytic)), (numeric, analytic)
        if x.size <= 12:  # the full Jacobian, one basis direction at a time
            for flat in range(x.size):
                e = np.zeros(x.size)
                e[flat] = 1.0
                numeric = directional(e.reshape(x.shape))
                analytic = float(grads[index].ravel()[flat])
                assert abs(numeric - analytic) <= 1e-5 * max(1.0, abs(numeric)), (flat, numeric, analytic)


# --------------------------------------------------------------------------- (b) reference
def _extreme_case(op: Op, variant: str, case: OpCase) -> OpCase:
    """``case`` with the first input replaced by the op's extremes."""
    extremes = np.array(op.inputs[0].domain.extremes)
    if op.kind == "class_loss":
        from symdl.sampling import draw_inputs

        inputs = draw_inputs(op, np.random.default_rng(0), (len(extremes), 3))
        inputs[0] = np.stack([extremes, np.zeros_like(extremes), -extremes], axis=1)
        return OpCase(op, variant, case.params, tuple(inputs))
    if op.kind == "row":
        first = np.stack([extremes, np.zeros_like(extremes), -extremes], axis=1)
        return OpCase(op, variant, case.params, (first,))
    rng = np.random.default_rng(0)
    from symdl.sampling import draw_inputs

    inputs = draw_inputs(op, rng, extremes.shape)
    inputs[0] = extremes
    return OpCase(op, variant, case.params, tuple(inputs))


@pytest.mark.parametrize(("op", "variant"), OP_VARIANTS)
@given(data=st.data(), use_extremes=st.booleans())
@example(data=None, use_extremes=True)  # pins every op's domain extremes (softplus(1000), sigmoid(-1000), ...)
def test_matches_mpmath_reference_within_ulp_bound(op: Op, variant: str, data: st.DataObject | None,
                                                   use_extremes: bool) -> None:
    if data is None:
        params = {op.variant_param: variant_value(op, variant)} if op.variant_param else {}
        case = _extreme_case(op, variant, OpCase(op, variant, params, ()))
    else:
        case = data.draw(op_cases(op, variant))
        if use_extremes and op.inputs[0].domain.extremes:
            case = _extreme_case(op, variant, case)
    case = unreduced(off_kinks(jitter_class_loss(case, np.random.default_rng(1)), 1e-9))
    tolerance = op.tolerance_for(variant)
    reference = Reference(op, variant, case.params)
    out = forward(case)
    grad = np.ones(np.shape(out)) if op.kind != "row" else np.linspace(-1, 1, out.size).reshape(out.shape)
    forward_scale = tolerance_scale(op, tolerance.forward_scale, case.inputs, case.params, grad)
    if forward_scale is not None and op.kind == "class_loss":
        forward_scale = np.max(forward_scale, axis=-1)  # one loss per row
    assert ulp_error(out, reference.forward(case.inputs), forward_scale) <= tolerance.forward_ulp
    computed = [g for g, item, a in zip(vjp(case, grad), op.inputs, case.inputs)
                if item.differentiable and a.dtype.kind not in "iu"]
    grad_scale = tolerance_scale(op, tolerance.grad_scale, case.inputs, case.params, grad)
    for value, exact in zip(computed, reference.gradients(case.inputs, grad)):
        assert ulp_error(value, exact, grad_scale) <= tolerance.grad_ulp


# --------------------------------------------------------------------------- (c) float32
@pytest.mark.parametrize(("op", "variant"), OP_VARIANTS)
@given(data=st.data())
def test_float32_stays_float32_and_accurate(op: Op, variant: str, data: st.DataObject) -> None:
    # No kink filtering: float32 inputs are exact in float64, so both take the same branch, except at
    # data-dependent hinges of class losses, where the sums themselves round differently.
    case32 = unreduced(jitter_class_loss(data.draw(op_cases(op, variant, dtype=np.float32)),
                                         np.random.default_rng(0)))
    case64 = OpCase(op, variant, case32.params,
                    tuple(a.astype(np.float64) if a.dtype == np.float32 else a for a in case32.inputs))
    out32, out64 = forward(case32), forward(case64)
    assert out32.dtype == np.float32
    tolerance = op.tolerance_for(variant)
    # float64 on the same (exactly representable) inputs is exact to float32 precision.
    scale = tolerance_scale(op, tolerance.forward_scale, case64.inputs, case64.params)
    if scale is not None and op.kind == "class_loss":
        scale = np.max(scale, axis=-1)  # one loss per row
    assert ulp_error(out32, out64, scale) <= 2 * tolerance.forward_ulp + 2
    grad32 = np.ones(np.shape(out32), dtype=np.float32)
    grads32 = vjp(case32, grad32)
    grads64 = vjp(case64, grad32.astype(np.float64))
    grad_scale = tolerance_scale(op, tolerance.grad_scale, case64.inputs, case64.params)
    for g32, g64, item in zip(grads32, grads64, op.inputs):
        if g32 is not None:
            assert g32.dtype == np.float32
            assert ulp_error(g32, g64, grad_scale) <= 2 * tolerance.grad_ulp + 2


# --------------------------------------------------------------------------- kinks and extremes
KINKS = [
    pytest.param(op, variant, kink, id=f"{op.name}{'-' + variant if variant else ''}@{kink.at}")
    for op, variant in ((p.values[0], p.values[1]) for p in OP_VARIANTS)
    for kink in op.formulas[variant].kinks
]


@pytest.mark.parametrize(("op", "variant", "kink"), KINKS)
def test_kink_gradient_is_pytorch_subgradient(op: Op, variant: str, kink: object) -> None:
    from symdl.sampling import draw_inputs

    params = {op.variant_param: variant_value(op, variant)} if op.variant_param else {}
    if any(p.name == "reduction" for p in op.params):
        params["reduction"] = "none"
    defaults = {p.symbol: p.default for p in op.symbol_params}
    inputs = draw_inputs(op, np.random.default_rng(0), (6,))
    symbols = [i.symbol for i in op.inputs]
    at = sp.lambdify(symbols, kink.at.xreplace(defaults), "numpy")
    inputs[0] = np.broadcast_to(np.asarray(at(*inputs), dtype=np.float64), inputs[0].shape).copy()
    expected = np.broadcast_to(sp.lambdify(symbols, sp.sympify(kink.subgradient).xreplace(defaults), "numpy")(*inputs),
                               inputs[0].shape)
    grads = getattr(kernels, f"{op.name}_vjp")(np.ones(inputs[0].shape), *inputs, **params)
    np.testing.assert_allclose(grads[0], expected, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize(("op", "variant"), OP_VARIANTS)
def test_finite_and_warning_free_at_extremes(op: Op, variant: str) -> None:
    finite, detail = finite_at_extremes(op, variant)
    assert finite, detail


ELEMENTWISE = [p for p in OP_VARIANTS if p.values[0].kind == "elementwise"]


@pytest.mark.parametrize(("op", "variant"), ELEMENTWISE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [None, 0, 3])  # 3: alpha, beta, negative_slope < 1
def test_activations_at_the_ends_of_the_float_range(op: Op, variant: str, dtype: type, seed: int | None) -> None:
    """At +-max, +-max/4 and the smallest normal and subnormal numbers, with the default parameters
    (seed None) and drawn ones: every activation's derivative is bounded, so its gradient is finite
    and warning-free (2x, -2|x|, x / alpha or beta x overflowing there gave NaN or a flag); the
    forward is too, except where the true value (mpmath) exceeds the format."""
    from symdl.sampling import draw_params

    finfo = np.finfo(dtype)
    ends = [finfo.max, finfo.max / 4, finfo.smallest_normal, finfo.smallest_subnormal]
    x = np.array([*ends, *(-v for v in ends)], dtype=dtype)
    params = ({op.variant_param: variant_value(op, variant)} if op.variant_param else {}) if seed is None else (
        draw_params(op, np.random.default_rng(seed), variant or None))
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        (grad,) = getattr(kernels, f"{op.name}_vjp")(np.ones_like(x), x, **params)
    assert grad.dtype == dtype and np.all(np.isfinite(grad)), grad
    true = Reference(op, variant, params).forward([x.astype(np.float64)])
    overflows = np.array([abs(v) > finfo.max for v in true])
    with np.errstate(over="ignore" if overflows.any() else "raise", invalid="raise", divide="raise", under="ignore"):
        out = getattr(kernels, op.name)(x, **params)
    assert out.dtype == dtype
    assert np.all(np.isfinite(out[~overflows])) and np.all(np.isinf(out[overflows])), (out, overflows)


ISSUE_EXTREMES = [
    ("softplus", (np.array([1000.0]),), {}, [1000.0], [1.0]),
    ("sigmoid", (np.array([-1000.0]),), {}, [0.0], [0.0]),
    ("silu", (np.array([-1000.0, 1000.0], np.float32),), {}, [-0.0, 1000.0], [0.0, 1.0]),
    ("mish", (np.array([-1000.0, 1000.0], np.float32),), {}, [-0.0, 1000.0], [0.0, 1.0]),
    ("log_softmax", (np.array([0.0, 1e4]),), {"dim": 0}, [-1e4, 0.0], None),
]


@pytest.mark.parametrize(("name", "inputs", "params", "expected", "expected_grad"), ISSUE_EXTREMES,
                         ids=[c[0] for c in ISSUE_EXTREMES])
def test_named_extremes_from_the_issue(name: str, inputs: tuple, params: dict, expected: list,
                                       expected_grad: list | None) -> None:
    with np.errstate(all="raise", under="ignore"):
        out = getattr(kernels, name)(*inputs, **params)
        (grad,) = getattr(kernels, f"{name}_vjp")(np.ones_like(out), *inputs, **params)
    assert out.dtype == inputs[0].dtype
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=0)
    if expected_grad is not None:
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-30)
    assert np.all(np.isfinite(grad))


def _real_line(item: Input) -> bool:
    """An input whose domain is the whole real line (its pinned extremes reach +-1000)."""
    return item.domain.extremes != () and min(item.domain.extremes) <= -1000 and max(item.domain.extremes) >= 1000


LOSS_ENDS = [pytest.param(op, variant, index, id=f"{op.name}{'-' + variant if variant else ''}-{op.inputs[index].name}")
             for op, variant in (p.values for p in OP_VARIANTS if p.values[0].kind in ("pointwise_loss", "class_loss"))
             for index, item in enumerate(op.inputs)
             if item.differentiable and _real_line(item)]


def _as_float(values: np.ndarray) -> np.ndarray:
    """mpf values as float64, with +-inf where they leave the float64 range."""
    return np.array([float(v) for v in np.ravel(values)]).reshape(np.shape(values))


@pytest.mark.parametrize(("op", "variant", "index"), LOSS_ENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_at_the_ends_of_the_float_range(op: Op, variant: str, index: int, dtype: type) -> None:
    """A real-valued loss input at +-max, +-max/4 and the smallest normal and subnormal numbers (the
    other inputs drawn from their domains; reduction='none'): the loss and every gradient are finite
    wherever the exact value (mpmath) is, and overflow only where it does. Where mpmath itself cannot
    evaluate the definition at 1e308 (it raises), the values must still not be NaN: each of these
    losses is a real number or an infinity there."""
    from symdl.sampling import draw_inputs, draw_params

    finfo = np.finfo(dtype)
    ends = np.array([finfo.max, finfo.max / 4, finfo.smallest_normal, finfo.smallest_subnormal], dtype=dtype)
    ends = np.concatenate([ends, -ends])
    rng = np.random.default_rng(4)
    inputs = draw_inputs(op, rng, (len(ends), 3) if op.kind == "class_loss" else (len(ends),))
    moved = np.asarray(inputs[index], dtype=np.float64).copy()
    moved.reshape(len(ends), -1)[:, 0] = ends  # one end per row (in a class loss, the row's first class)
    inputs[index] = moved
    inputs = [a.astype(dtype) if a.dtype.kind == "f" else a for a in inputs]
    names = {p.name for p in op.params}
    params = {k: v for k, v in {**draw_params(op, rng, variant or None), "reduction": "none"}.items() if k in names}
    with np.errstate(all="ignore"):
        loss = getattr(kernels, op.name)(*inputs, **params)
        grads = [g for g, item in zip(getattr(kernels, f"{op.name}_vjp")(np.ones(loss.shape, dtype), *inputs, **params),
                                      op.inputs) if item.differentiable]
    computed = [("loss", loss), *((f"grad of {item.name}", g) for item, g in zip(op.differentiable_inputs, grads))]
    reference = Reference(op, variant, params)
    exact_inputs = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in inputs]
    try:
        exact = [_as_float(reference.forward(exact_inputs)), *(_as_float(g) for g in reference.gradients(exact_inputs))]
    except (ZeroDivisionError, OverflowError, ValueError):
        for name, value in computed:
            assert value.dtype == dtype and not np.any(np.isnan(value)), (name, value)
        return
    for (name, value), truth in zip(computed, exact):
        assert value.dtype == dtype, name
        representable = np.abs(truth) <= finfo.max
        assert np.all(np.isfinite(value[representable])), (name, value, truth)
        assert np.all(np.isinf(value[~representable])), (name, value, truth)
