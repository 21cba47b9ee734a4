"""The in-place emitter (symdl.printing.inplace): same results as the plain printer, no aliasing.

(a) unit tests of ``emit_inplace`` on hand-written plain expressions: inputs are
    never written, results alias no input, buffers are reused only within one
    shape and dtype (full vs row-reduced arrays, float vs bool masks), float32
    stays float32, 0-d inputs work, unknown calls are left alone;
(b) every catalog op's generated kernels against the same kernels printed
    plainly (one expression per assignment): bit-identical on random inputs.
"""

from __future__ import annotations

import ast
import functools
import math
import types

import numpy as np
import pytest

import symdl.codegen.ops as codegen
from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.catalog.spec import Op
from symdl.kernels import _runtime as _rt
from symdl.printing.inplace import ArraySpec, emit_inplace
from symdl.printing.numpy_printer import print_assignments
from symdl.sampling import draw_inputs, draw_params, variant_value
from tests.conftest import OP_VARIANTS

FULL = ArraySpec("x", "x")
GRAD = ArraySpec("x", "g")  # g: the input's shape, a dtype of its own


def run(lines: list[str], env: dict[str, object]) -> dict[str, object]:
    """Execute emitted lines with ``env`` as the local variables."""
    scope = {"np": np, "math": math, "_rt": _rt, **env}
    exec(compile("\n".join(lines), "<emitted>", "exec"), scope)  # noqa: S102 - our own generated code
    return scope


def plain_and_inplace(assignments: list[tuple[str, str]], outputs: list[str], env: dict[str, object],
                      **kwargs: object) -> tuple[dict[str, object], dict[str, object], list[str]]:
    plain = [f"{name} = {text}" for name, text in assignments]
    lines = emit_inplace(assignments, outputs, **kwargs)
    return run(plain, dict(env)), run(lines, dict(env)), lines


def identical(a: object, b: object) -> bool:
    """Same dtype, shape and bits (any NaN equals any NaN; the sign of zero counts)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    signs = np.signbit(a) == np.signbit(b)
    return bool(np.array_equal(a, b, equal_nan=True) and np.all(signs | np.isnan(a)))


def written(lines: list[str]) -> set[str]:
    """Every name the lines assign, augment, or pass as ``out=``."""
    names = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        if isinstance(node, ast.keyword) and node.arg == "out" and isinstance(node.value, ast.Name):
            names.add(node.value.id)
    return names


# --------------------------------------------------------------------------- (a) the emitter
def test_inputs_are_never_written_and_results_alias_none() -> None:
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal(50), rng.standard_normal(50)
    env = {"x": x.copy(), "g": g.copy(), "alpha": 0.7}
    assignments = [("t0", "np.exp(np.clip(x, -math.inf, 0))"), ("grad", "g * alpha * t0 * (1 - t0) + x"),
                   ("same", "x"), ("twice", "t0")]
    outputs = ["grad", "same", "twice"]
    plain, done, lines = plain_and_inplace(assignments, outputs, env, scalars=["alpha"],
                                           arrays={"x": FULL, "g": GRAD})
    assert not written(lines) & {"x", "g", "alpha"}
    assert np.array_equal(done["x"], x) and np.array_equal(done["g"], g)
    for name in outputs:
        assert identical(done[name], plain[name]), name
        assert not np.shares_memory(done[name], done["x"]) and not np.shares_memory(done[name], done["g"])
    assert not np.shares_memory(done["grad"], done["twice"])


def test_dead_temporaries_are_reused_in_place() -> None:
    lines = emit_inplace([("out", "np.exp(-np.abs(x)) * 2 + 1")], ["out"], arrays={"x": FULL}, comments=False)
    assert lines == ["t0 = np.asarray(np.abs(x))", "np.negative(t0, out=t0)", "np.exp(t0, out=t0)",
                     "t0 *= 2", "t0 += 1", "out = t0"]


def test_noncommutative_ops_keep_their_operand_order() -> None:
    env = {"x": np.linspace(0.5, 3.0, 7)}
    assignments = [("t0", "np.exp(x)"), ("out", "(1 - np.sqrt(x)) / (2 - t0) - t0 ** 3")]
    plain, done, lines = plain_and_inplace(assignments, ["out"], env, arrays={"x": FULL})
    assert identical(done["out"], plain["out"])
    assert any("np.subtract(1, " in line for line in lines)


def test_row_reductions_never_receive_full_results() -> None:
    rng = np.random.default_rng(1)
    env = {"x": rng.standard_normal((6, 5)), "g": rng.standard_normal((6, 5)), "dim": 1}
    assignments = [
        ("t0", "np.exp(x - np.max(x, axis=dim, keepdims=True))"),
        ("t1", "t0/np.sum(t0, axis=dim, keepdims=True)"),
        ("grad", "t1*(g - np.sum(g*t1, axis=dim, keepdims=True))"),
        ("lse", "-np.log(np.sum(t0, axis=dim, keepdims=True)) + 1"),
    ]
    outputs = ["grad", "lse"]
    plain, done, lines = plain_and_inplace(assignments, outputs, env, arrays={"x": FULL, "g": GRAD})
    for name in outputs:
        assert identical(done[name], plain[name]), name
    assert done["lse"].shape == (6, 1)
    # a buffer holds either a reduced row or a full array, never both
    shapes: dict[str, set[tuple[int, ...]]] = {}
    for i in range(1, len(lines) + 1):
        scope = run(lines[:i], dict(env))
        for name in written(lines[:i]) - set(outputs):
            shapes.setdefault(name, set()).add(np.shape(scope[name]))
    assert all(len(s) == 1 for s in shapes.values()), shapes


def test_bool_masks_never_hold_float_results() -> None:
    rng = np.random.default_rng(2)
    env = {"x": rng.standard_normal(40), "g": rng.standard_normal(40), "lambd": 0.5}
    assignments = [("grad", "g * ~((x >= 3) | (x <= -3)) + x * ((lambd < x) | (lambd < -x))"),
                   ("hs", "np.where((x >= 3), g, g*(0.3333333333333333*x + 0.5)) * (x > -3)")]
    plain, done, lines = plain_and_inplace(assignments, ["grad", "hs"], env, scalars=["lambd"],
                                           arrays={"x": FULL, "g": GRAD})
    for name in ("grad", "hs"):
        assert identical(done[name], plain[name]), name
    masks = {name for name in written(lines) if name.startswith("m")}
    assert masks
    for i in range(1, len(lines) + 1):
        scope = run(lines[:i], dict(env))
        assert all(np.asarray(scope[m]).dtype == bool for m in masks if m in scope)


def test_where_with_a_shared_factor_becomes_a_product() -> None:
    rng = np.random.default_rng(3)
    for dtype in (np.float64, np.float32):
        env = {"x": rng.standard_normal(64).astype(dtype), "g": rng.standard_normal(64).astype(dtype), "s": 0.01}
        assignments = [("grad", "np.where((x <= 0), g*s, g)")]
        plain, done, lines = plain_and_inplace(assignments, ["grad"], env, scalars=["s"],
                                               arrays={"x": FULL, "g": GRAD})
        assert identical(done["grad"], plain["grad"])
        assert not any("np.where" in line for line in lines if not line.startswith("#"))


def test_float32_stays_float32_and_mixed_dtypes_promote_as_before() -> None:
    rng = np.random.default_rng(4)
    x32 = rng.standard_normal(30).astype(np.float32)
    assignments = [("t0", "_rt.sigmoid(x)"), ("grad", "g*t0*(x*(1 - t0) + 1)")]
    for g in (rng.standard_normal(30).astype(np.float32), rng.standard_normal(30)):
        plain, done, _ = plain_and_inplace(assignments, ["grad"], {"x": x32, "g": g},
                                           arrays={"x": FULL, "g": GRAD})
        assert identical(done["grad"], plain["grad"])
        assert done["grad"].dtype == np.result_type(x32, g)


def test_python_scalar_parameters_stay_python_scalars() -> None:
    env = {"x": np.linspace(-2, 2, 9, dtype=np.float32), "alpha": 1.5}
    assignments = [("t0", "1/alpha"), ("out", "alpha*np.expm1(np.clip(x, -math.inf, 0)*t0)")]
    plain, done, lines = plain_and_inplace(assignments, ["out"], env, scalars=["alpha"], arrays={"x": FULL})
    assert identical(done["out"], plain["out"]) and done["out"].dtype == np.float32
    assert "s0 = 1/alpha" in lines or "s0 = 1 / alpha" in lines


def test_zero_dimensional_inputs() -> None:
    env = {"x": np.asarray(-0.75), "g": np.asarray(2.0)}
    assignments = [("t0", "np.exp(-np.abs(x))"), ("grad", "g*t0*(1 / (t0 + 1)) ** 2")]
    plain, done, _ = plain_and_inplace(assignments, ["grad"], env, arrays={"x": FULL, "g": GRAD})
    assert np.array_equal(done["grad"], plain["grad"]) and np.shape(done["grad"]) == ()


def test_unknown_calls_and_inputs_are_computed_as_printed_and_never_written() -> None:
    env = {"x": np.arange(5.0), "idx": np.array([4, 3, 2, 1, 0])}
    assignments = [("t0", "np.take(x, idx) + idx"), ("out", "np.exp(t0) * x")]
    plain, done, lines = plain_and_inplace(assignments, ["out"], env, arrays={"x": FULL})
    assert identical(done["out"], plain["out"])
    assert not written(lines) & {"x", "idx"}
    opaque = next(line for line in lines if "np.take" in line)
    assert opaque.split(" = ")[0] not in written([line for line in lines if line is not opaque and "out=" in line])


def test_buffers_seen_by_unknown_calls_are_never_overwritten() -> None:
    env = {"x": np.linspace(-1.0, 1.0, 6).reshape(1, 6)}
    assignments = [("t0", "np.exp(x)"), ("t1", "np.squeeze(t0)"), ("out", "t1 + np.exp(np.abs(x)) * 2")]
    plain, done, lines = plain_and_inplace(assignments, ["out"], env, arrays={"x": FULL})
    assert identical(done["out"], plain["out"])
    at = next(i for i, line in enumerate(lines) if "np.squeeze" in line)
    viewed = lines[at].split("np.squeeze(")[1].rstrip(")")
    assert viewed not in written(lines[at + 1:])  # np.squeeze returned a view of it


def test_generation_is_deterministic() -> None:
    assignments = [("t0", "np.exp(x - np.max(x, axis=dim, keepdims=True))"),
                   ("out", "t0/np.sum(t0, axis=dim, keepdims=True)")]
    runs = {tuple(emit_inplace(assignments, ["out"], arrays={"x": FULL})) for _ in range(3)}
    assert len(runs) == 1


# --------------------------------------------------------------------------- (b) the catalog
@pytest.fixture(scope="module")
def modules() -> dict[bool, dict[str, types.ModuleType]]:
    """Every family's kernel module, generated in place (True) and plainly (False)."""
    built: dict[bool, dict[str, types.ModuleType]] = {}
    for inplace in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(codegen, "print_assignments", functools.partial(print_assignments, inplace=inplace))
            built[inplace] = {}
            for family, name in codegen.FAMILY_MODULES.items():
                if not any(op.family == family for op in ACTIVATIONS_AND_LOSSES.values()):
                    continue
                module = types.ModuleType(f"symdl_test_{name}_{inplace}")
                exec(compile(codegen.render_module(family), module.__name__, "exec"), module.__dict__)  # noqa: S102
                built[inplace][family] = module
    return built


def _calls(op: Op, variant: str, seed: int) -> list[tuple[tuple, dict]]:
    """Random calls of ``op``: float64 and float32, drawn and default parameters, array weights."""
    rng = np.random.default_rng(seed)
    batch = (7, 5) if op.kind in ("row", "class_loss") else (3, 4, 5)
    calls = []
    for dtype in (np.float64, np.float32):
        for params in (draw_params(op, rng, variant), {p.name: p.default for p in op.params}):
            if op.variant_param:
                params[op.variant_param] = variant_value(op, variant)
            for p in op.params:
                if p.rule.kind == "array" and rng.random() < 0.5:  # per class / along the last axis
                    params[p.name] = rng.uniform(0.5, 2.0, batch[-1:]).astype(dtype)
            if op.kind == "row":
                params["dim"] = 1
            calls.append((tuple(draw_inputs(op, rng, batch, dtype)), params))
    return calls


@pytest.mark.parametrize(("op", "variant"), OP_VARIANTS)
def test_inplace_kernels_are_bit_identical_to_plain_kernels(modules, op: Op, variant: str) -> None:
    fast, plain = modules[True][op.family], modules[False][op.family]
    for seed in range(3):
        for inputs, params in _calls(op, variant, seed):
            before = [a.copy() for a in inputs]
            result = getattr(fast, op.name)(*inputs, **params)
            assert identical(result, getattr(plain, op.name)(*inputs, **params)), (op.name, params)
            out = getattr(fast, op.name)(*inputs, **params)
            upstream = np.random.default_rng(seed).standard_normal(np.shape(out))
            # the output's dtype, and float64 against float32 inputs (mixed dtypes promote)
            for dtype in sorted({np.asarray(out).dtype.str, np.dtype(np.float64).str}):
                g = upstream.astype(dtype)
                grads = getattr(fast, f"{op.name}_vjp")(g, *inputs, **params)
                expected = getattr(plain, f"{op.name}_vjp")(g.copy(), *inputs, **params)
                for got, want in zip(grads, expected, strict=True):
                    assert (got is None) == (want is None)
                    if got is not None:
                        assert identical(got, want), (op.name, params, dtype)
                        assert not any(np.shares_memory(got, a) for a in (*inputs, g))
                assert np.array_equal(g, upstream.astype(dtype)), "the upstream gradient was written"
            assert all(np.array_equal(a, b) for a, b in zip(inputs, before, strict=True)), "an input was written"


@pytest.mark.parametrize("name", [n for n, op in ACTIVATIONS_AND_LOSSES.items() if op.kind == "elementwise"])
def test_elementwise_kernels_accept_0d_input(modules, name: str) -> None:
    op = ACTIVATIONS_AND_LOSSES[name]
    fast, plain = modules[True][op.family], modules[False][op.family]
    x = np.asarray(-0.3)
    assert np.array_equal(getattr(fast, name)(x), getattr(plain, name)(x))
    for g, x in ((np.asarray(1.5), x), (np.asarray(1.5), x.astype(np.float32)),
                 (np.asarray(1.5, np.float32), x)):  # same dtypes, and mixed
        (grad,) = getattr(fast, f"{name}_vjp")(g, x)
        (want,) = getattr(plain, f"{name}_vjp")(g, x)
        assert np.array_equal(grad, want) and np.result_type(grad) == np.result_type(want)


@pytest.mark.parametrize("value", [True, False, np.array([True, False])])
def test_printed_logical_not_negates_python_bools_and_arrays(value) -> None:
    import sympy as sp

    from symdl.printing.numpy_printer import KernelPrinter

    flag = sp.Symbol("flag")
    code = KernelPrinter().doprint(sp.Not(flag))
    result = eval(code, {"np": np, "flag": value})  # noqa: S307 - our own printer's output
    np.testing.assert_array_equal(result, np.logical_not(value))


@pytest.mark.parametrize("where_out", ["none", "a", "b", "other"])
@pytest.mark.parametrize("taken", ["nowhere", "somewhere", "everywhere", "python-true", "python-false"])
def test_select_is_np_where_whichever_buffer_it_writes(where_out: str, taken: str) -> None:
    from symdl.kernels import _runtime as rt

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(50), rng.standard_normal(50)
    a[3], b[7] = np.nan, -np.inf
    condition = {"nowhere": np.zeros(50, bool), "somewhere": rng.random(50) < 0.3,
                 "everywhere": np.ones(50, bool), "python-true": True, "python-false": False}[taken]
    expected = np.where(condition, a, b)
    a_buffer, b_buffer = a.copy(), b.copy()
    out = {"none": None, "a": a_buffer, "b": b_buffer, "other": np.full(50, 7.0)}[where_out]
    result = rt.select(condition, a_buffer, b_buffer, out=out)
    np.testing.assert_array_equal(result, expected)
    if out is not None:
        assert result is out
