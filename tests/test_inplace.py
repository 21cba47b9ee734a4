"""The in-place emitter (symdl.printing.inplace): same results as the plain printer, no aliasing.

(a) unit tests of ``emit_inplace`` on hand-written plain expressions: inputs are
    never written, results alias no input, buffers are reused only within one
    shape and dtype (full vs row-reduced arrays, float vs bool masks), float32
    stays float32, 0-d inputs work, unknown calls are left alone;
(b) every catalog op's generated kernels against the same kernels printed
    plainly (one expression per assignment): bit-identical on random inputs;
(c) ``emit_program``'s optimizer-step features, each run against the plain
    form (branches as Python if/elif/else): writable inputs updated in their own
    arrays and never while their old value is read, inputs not declared writable
    never written, scratch buffers instead of fresh arrays (and reused), axpy
    fusion only into a dying buffer, scalar-condition branches on every path.
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
from symdl.printing.inplace import ArraySpec, Branch, emit_inplace, emit_program
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


@pytest.mark.parametrize("name", [n for n, op in ACTIVATIONS_AND_LOSSES.items()
                                  if not (op.traits.over_rows or op.traits.loss)])  # elementwise
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


# ------------------------------------------------------------------ (c) writable inputs, scratch, axpy, branches
PARAM = ArraySpec("p", "p")  # the optimizer's arrays: all like the parameter


def plain_lines(assignments: list[tuple[str, object]]) -> list[str]:
    """The plain form of assignments that may be branches: Python if/elif/else, one fresh array per operator."""
    lines = []
    for name, text in assignments:
        if isinstance(text, str):
            lines.append(f"{name} = {text}")
            continue
        for k, (condition, value) in enumerate(text.arms):
            keyword = "else" if condition == "True" and k else ("if" if k == 0 else "elif")
            lines.append(f"{keyword}{'' if keyword == 'else' else ' ' + condition}:")
            lines.append(f"    {name} = {value}")
    return lines


def axpy_(c: float, a: np.ndarray, y: np.ndarray) -> None:
    """``y += c * a`` in place: the plain form's two roundings, so results stay bit-identical."""
    y += c * a


def emit_and_run(assignments, env, writable, *, scratch=True, axpy=None, scalars=(), arrays=None, outputs=()):
    """Run the plain form on copies and the emitted program on ``env``'s own arrays (with scratch buffers)."""
    arrays = arrays or {n: PARAM for n in env if isinstance(env[n], np.ndarray)}
    emitted = emit_program(assignments, list(outputs), scalars=scalars, arrays=arrays,
                           writable=writable, scratch_like="p" if scratch else None, axpy=axpy, comments=False)
    plain = run(plain_lines(assignments), {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in env.items()})
    like = env["p"]
    scratch_env = {f"s{i}": np.full_like(like, np.nan) for i in range(emitted.scratch)}
    done = run(emitted.lines, {**env, **scratch_env, "axpy_": axpy_})
    return emitted, plain, done


def arrays_like(rng: np.random.Generator, *names: str, dtype: type = np.float64) -> dict[str, np.ndarray]:
    return {name: rng.standard_normal(64).astype(dtype) for name in names}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_dead_writable_input_receives_its_new_value_in_place(dtype: type) -> None:
    rng = np.random.default_rng(1)
    env = arrays_like(rng, "p", "x", dtype=dtype)
    p_array, x_before = env["p"], env["x"].copy()
    assignments = [("p", "np.exp(p) * 2 - x")]
    emitted, plain, done = emit_and_run(assignments, env, ["p"])
    assert emitted.fresh == 0 and emitted.scratch == 0  # exp, * 2 and - x all run in p's own array
    assert "np.exp(p, out=p)" in emitted.lines
    assert identical(p_array, plain["p"]) and done["p"] is p_array
    assert np.array_equal(done["x"], x_before) and "x" not in written(emitted.lines)


def test_a_writable_input_is_not_written_while_its_old_value_is_still_read() -> None:
    rng = np.random.default_rng(2)
    env = arrays_like(rng, "p", "q", "x")
    p_array = env["p"]
    # q's update reads p's old value after p's own update is printed: p must be written after it, or not at all
    assignments = [("t", "p * 3"), ("p", "p + x"), ("q", "q * t + p")]
    _emitted, plain, done = emit_and_run(assignments, env, ["p", "q"])
    assert identical(done["p"], plain["p"]) and identical(done["q"], plain["q"])
    assert done["p"] is p_array
    # an alias of the old value read after the update: refused, not silently wrong
    with pytest.raises(ValueError, match="old value is still read"):
        emit_program([("old", "p"), ("p", "p * 2"), ("r", "old + 1")], ["r"], arrays={"p": PARAM},
                     writable=["p"])


def test_inputs_not_declared_writable_are_never_written_even_when_dead() -> None:
    rng = np.random.default_rng(3)
    env = arrays_like(rng, "p", "g", "x")
    before = {k: v.copy() for k, v in env.items()}
    assignments = [("d", "-g"), ("p", "p - (np.abs(x) + d) * 0.5")]
    emitted, plain, done = emit_and_run(assignments, env, ["p"])
    assert not written(emitted.lines) & {"g", "x"}
    assert np.array_equal(done["g"], before["g"]) and np.array_equal(done["x"], before["x"])
    assert identical(done["p"], plain["p"])


def test_scratch_buffers_replace_fresh_arrays_and_are_reused_once_dead() -> None:
    rng = np.random.default_rng(4)
    env = arrays_like(rng, "p", "q", "x")
    # two factors alive at once: two scratch buffers; the second update reuses them
    assignments = [("p", "(x * 2 + 1) * (np.exp(x) + 3)"), ("q", "q + np.sqrt(np.abs(x)) * np.tanh(x)")]
    emitted, plain, done = emit_and_run(assignments, env, ["p", "q"])
    assert (emitted.scratch, emitted.fresh) == (2, 0)
    assert all(not line.startswith(("t", "v")) or " = " not in line for line in emitted.lines)  # nothing allocates
    assert identical(done["p"], plain["p"]) and identical(done["q"], plain["q"])
    without = emit_program(assignments, [], arrays={n: PARAM for n in env}, writable=["p", "q"])
    assert without.scratch == 0 and without.fresh >= 2  # the same program allocating its temporaries


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpy_fuses_a_scaled_add_into_a_dying_buffer_only(dtype: type) -> None:
    rng = np.random.default_rng(5)
    env = {**arrays_like(rng, "p", "m", "g", dtype=dtype), "lr": 0.25, "beta": 0.9}
    assignments = [("m", "m * beta + g * (1 - beta)"), ("p", "p - np.sqrt(np.abs(m)) * lr"),
                   ("r", "g + g * beta")]
    emitted, plain, done = emit_and_run(assignments, env, ["p", "m"], axpy="axpy_", scalars=["lr", "beta"],
                                        outputs=["r"])
    assert "m *= beta" in emitted.lines and "axpy_(1 - beta, g, m)" in emitted.lines
    assert "axpy_(-lr, s0, p)" in emitted.lines
    # g is an input (not writable): g + g * beta cannot be formed in g, so it is not fused
    assert not any(line.startswith("axpy_") and line.endswith(", g)") for line in emitted.lines)
    for name in ("p", "m", "r"):
        assert identical(done[name], plain[name]), name
    unfused = emit_program(assignments, ["r"], scalars=["lr", "beta"], arrays={n: PARAM for n in ("p", "m", "g")},
                           writable=["p", "m"], scratch_like="p")
    assert not any("axpy" in line for line in unfused.lines)


def test_a_product_read_twice_is_not_fused_away() -> None:
    rng = np.random.default_rng(6)
    env = arrays_like(rng, "p", "q", "x")
    assignments = [("k", "np.exp(x) * 3"), ("p", "p + k"), ("q", "q - k")]
    emitted, plain, done = emit_and_run(assignments, env, ["p", "q"], axpy="axpy_")
    assert not any("axpy_" in line for line in emitted.lines)
    assert identical(done["p"], plain["p"]) and identical(done["q"], plain["q"])


BRANCHES = [
    ("d", Branch((("flip", "-g"), ("True", "g")))),
    ("d", Branch((("wd != 0", "d + p * wd"), ("True", "d")))),
    ("m", Branch((("k == 0", "m"), ("k == 1", "d"), ("k > 1", "np.maximum(m, np.abs(d))"), ("True", "m * k + d")))),
    ("u", Branch((("nest", "d + m * k"), ("True", "m")))),
    ("p", "p - u * lr"),
]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("k", [0, 1, 0.9, 2.0])
@pytest.mark.parametrize("nest", [False, True])
def test_scalar_branches_run_the_arm_python_runs(flip: bool, wd: float, k: float, nest: bool) -> None:
    rng = np.random.default_rng(7)
    env = {**arrays_like(rng, "p", "m", "g"), "flip": flip, "wd": wd, "k": k, "nest": nest, "lr": 0.5}
    g_before, arrays = env["g"].copy(), {"p": env["p"], "m": env["m"]}
    emitted, plain, done = emit_and_run(BRANCHES, env, ["p", "m"], axpy="axpy_",
                                        scalars=["flip", "wd", "k", "nest", "lr"])
    assert emitted.fresh == 0 and emitted.scratch <= 3
    for name in ("p", "m"):
        assert identical(done[name], plain[name]), name
        assert done[name] is arrays[name]  # updated in its own array on every path
    assert np.array_equal(done["g"], g_before)
    assert "g" not in written(emitted.lines)


@pytest.mark.parametrize("c", [False, True])
def test_a_value_an_earlier_arm_overwrites_is_intact_on_a_later_arm(c: bool) -> None:
    rng = np.random.default_rng(8)
    env = {**arrays_like(rng, "p", "q", "x"), "c": c}
    # t dies inside each arm (its exp may run in t's own buffer), and is read after the branch too
    assignments = [("t", "x * 2"), ("u", Branch((("c", "np.exp(t) + p"), ("True", "t * 3")))), ("p", "p + u"),
                   ("w", Branch((("c", "np.exp(t)"), ("True", "t - 1")))), ("q", "q + w * t")]
    emitted, plain, done = emit_and_run(assignments, env, ["p", "q"], scalars=["c"])
    assert identical(done["p"], plain["p"]) and identical(done["q"], plain["q"])
    # t's last read on the first arm frees its buffer there (sign never runs in place); the second arm still
    # reads t, so its own temporary (exp(x)) must go elsewhere
    assignments = [("t", "x * 2"), ("u", Branch((("c", "np.sign(t) + p"), ("True", "np.exp(x) * t")))),
                   ("p", "p + u")]
    _emitted, plain, done = emit_and_run(assignments, {**env, "p": env["p"].copy()}, ["p"], scratch=False,
                                        scalars=["c"])
    assert identical(done["p"], plain["p"])


def test_branches_between_scalars_are_one_python_expression() -> None:
    emitted = emit_program([("a", Branch((("c", "lr * 2"), ("True", "lr")))), ("p", "p * a")], [],
                           scalars=["c", "lr"], arrays={"p": PARAM}, writable=["p"], comments=False)
    assert emitted.lines == ["s0 = (lr * 2 if c else lr)", "p *= s0"]


def test_an_arm_updates_its_array_in_place_although_another_arm_keeps_the_old_value() -> None:
    emitted = emit_program([("p", Branch((("c", "p * 0.5"), ("True", "p"))))], [], scalars=["c"],
                           arrays={"p": PARAM}, writable=["p"], comments=False)
    assert emitted.lines == ["if c:", "    p *= 0.5"]
    for c in (False, True):
        p = np.linspace(-1, 1, 9)
        done = run(emitted.lines, {"p": p, "c": c})
        assert done["p"] is p and identical(p, np.linspace(-1, 1, 9) * (0.5 if c else 1.0))
