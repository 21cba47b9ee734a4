"""The safe expression parser: what it builds, what it rejects, and how fast it rejects it."""

from __future__ import annotations

import time

import numpy as np
import pytest
import sympy as sp

from symdl.check.errors import ExpressionError
from symdl.check.expression import evaluate
from symdl.expr import parse, simplify_within
from symdl.functions import sigmoid

x, y = sp.Symbol("x", real=True), sp.Symbol("y", real=True)


@pytest.mark.parametrize(("text", "expected"), [
    ("x*sigmoid(x)", x * sigmoid(x)),
    ("2*x**3 - x/4 + 1", 2 * x**3 - x / 4 + 1),
    ("exp(-x) * log(1 + y)", sp.exp(-x) * sp.log(1 + y)),
    ("max(x, 0) + min(x, y)", sp.Max(x, 0) + sp.Min(x, y)),
    ("where(x > 0, x, 0.5*x)", sp.Piecewise((x, x > 0), (0.5 * x, True))),
    ("x if x <= y else y", sp.Piecewise((x, x <= y), (y, True))),
    ("pi*e", sp.pi * sp.E),
    ("relu(x)", sp.Piecewise((0, x <= 0), (x, True))),
])
def test_builds_the_sympy_tree(text: str, expected: sp.Expr) -> None:
    assert parse(text) == expected


def test_catalog_activations_are_their_definitions() -> None:
    from symdl.catalog import get

    gelu = get("gelu")
    definition = gelu.formula().definition.xreplace({gelu.inputs[0].symbol: y})
    assert parse("gelu(y)") == definition
    assert parse("silu(y)").free_symbols == {y}


def test_declared_variables_only() -> None:
    assert parse("w*x + b", {"w", "x", "b"}).free_symbols == {sp.Symbol(n, real=True) for n in "wxb"}
    with pytest.raises(ExpressionError, match="unknown name 'z'"):
        parse("x + z", {"x"})


HOSTILE = [
    ("9**9**9**9", "exponent"), ("x**(10**10)", "exponent"), ("(10**999)**999", "digits"),
    ("(" * 10_000 + "x" + ")" * 10_000, "characters long"), ("x" * 1_000_000, "characters long"),
    ("(" * 150 + "x" + ")" * 150, "nests brackets"), ("-" * 1500 + "x", "nests operations"),
    ("__import__('os').system('true')", "only named functions"), ("x.real", "attribute access"),
    ("lambda: 1", "lambdas"), ("x[0]", "subscripts"), ("'x'", "strings"), ("b'x'", "strings"),
    ("foo(x)", "unknown function"), ("exp(x=1)", "keyword arguments"), ("exp(*x)", "starred"),
    ("[x]", "lists"), ("x // 2", "operator //"), ("True", "bool"), ("1j * x", "complex"),
    ("exp", "is a function"), ("_secret", "unknown name"), ("1/0", "undefined"), ("x +", "not a valid"),
    ("", "empty"), ("x if x else 1", "used as a condition"), ("x > 0", "is a condition"),
    ("(x > 0) * 2", "used as a number"), ("2**exp(exp(exp(10)))", "exponent"), ("max()", "argument"),
]


@pytest.mark.parametrize(("text", "rule"), HOSTILE, ids=[h[0][:24] for h in HOSTILE])
def test_hostile_input_is_one_clear_error_within_a_second(text: str, rule: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ExpressionError, match=rule) as caught:
        parse(text)
    assert time.perf_counter() - start < 1.0
    assert "\n" not in str(caught.value)


def test_evaluation_keeps_float32_and_runs_complex() -> None:
    expr = parse("relu(x) + x*sigmoid(x) + abs(x)")
    values = np.array([-1.5, 0.0, 2.0], dtype=np.float32)
    out = evaluate(expr, {x: values})
    assert out.dtype == np.float32
    expected = np.maximum(values, 0) + values / (1 + np.exp(-values)) + np.abs(values)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    derivative = evaluate(sp.diff(parse("x*sigmoid(x)"), x), {x: np.array([0.5 + 1e-20j])})
    assert derivative.dtype.kind == "c"


def test_simplify_is_time_limited() -> None:
    assert simplify_within(parse("sin(x)**2 + cos(x)**2"), 5.0) == (1, True)
    heavy = parse("+".join(f"sin({k}*x)**{k}*cos(x)**{k}" for k in range(2, 14)))
    start = time.perf_counter()
    result, finished = simplify_within(heavy, 0.05)
    assert time.perf_counter() - start < 1.0
    assert not finished and result == heavy
