"""``symdl gradcheck``: the real command in a subprocess (exit codes 0 / 1 / 2, text and JSON)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

LAYER = '''
import numpy as np

def f(x, w):
    return np.tanh(x @ w).sum()

def df(x, w):
    g = 1 - np.tanh(x @ w) ** 2
    return g @ w.T, x.T @ g

def df_wrong(x, w):
    g = 1 - np.tanh(x @ w) ** 2
    return g @ w.T, x.T @ g * np.array([1.0, 1.0, 1.0, 1.0, 1.02])
'''


def symdl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "symdl.cli", "gradcheck", *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=cwd)


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "layer.py"
    path.write_text(LAYER, encoding="utf-8")
    return path


def test_expression_at_a_point_passes() -> None:
    result = symdl("x*sigmoid(x)", "--at", "x=0.5")
    assert result.returncode == 0, result.stderr
    assert "PASS" in result.stdout and "SymPy's derivative vs finite differences" in result.stdout


def test_expression_over_a_range_as_json() -> None:
    result = symdl("x*sigmoid(x)", "--range", "x=-5:5", "--samples", "50", "--json")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["passed"] and outcome["checks"][0]["report"]["inputs"][0]["shape"] == [50]


def test_hand_written_derivatives_of_several_variables() -> None:
    good = symdl("w*x + b", "--wrt", "w,b", "--at", "w=0.3,x=2,b=-1", "--grad", "w=x", "--grad", "b=1")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = symdl("w*x + b", "--wrt", "w,b", "--at", "w=0.3,x=2,b=-1", "--grad", "w=2*x", "--grad", "b=1", "--json")
    assert bad.returncode == 1
    outcome = json.loads(bad.stdout)
    assert [c["passed"] for c in outcome["checks"]] == [True, False]
    assert any("differs from SymPy" in f["finding"] and not f["holds"] for f in outcome["findings"])


def test_python_function_float32_and_a_wrong_vjp(layer: Path) -> None:
    good = symdl(f"{layer}:f", "--vjp", f"{layer}:df", "--shape", "x=3,4", "--shape", "w=4,5", "--dtype", "float32")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "float32" in good.stdout
    bad = symdl(f"{layer}:f", "--vjp", f"{layer}:df_wrong", "--shape", "x=3,4", "--shape", "w=4,5", "--mode", "fast")
    assert bad.returncode == 1
    row = next(line for line in bad.stdout.splitlines() if line.startswith("w "))
    assert "FAIL" in row and ", 4]" in row  # the worst element is in the last column, the one scaled by 1.02


def test_module_target_and_catalog_op(layer: Path) -> None:
    result = symdl("layer:f", "--vjp", "layer:df", "--shape", "x=2,4", "--shape", "w=4,5", cwd=layer.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    op = symdl("--op", "gelu", "--params", "approximate=tanh", "--dtype", "float32", "--json")
    assert op.returncode == 0, op.stderr
    assert json.loads(op.stdout)["checks"][0]["check"] == "symdl.kernels.gelu_vjp vs finite differences"


HOSTILE = ["9**9**9**9", "x**(10**10)", "(" * 10_000 + "x" + ")" * 10_000, "x+" * 50_000 + "x",
           "__import__('os').system('touch pwned')", "x.real", "lambda: x", "x[0]", "'x'"]


@pytest.mark.parametrize("text", HOSTILE, ids=[h[:16] for h in HOSTILE])
def test_hostile_expressions_exit_2_on_one_line(text: str, tmp_path: Path) -> None:
    start = time.perf_counter()
    result = symdl(text, "--at", "x=1", cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert result.returncode == 2
    assert result.stderr.startswith("symdl: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == "" and not (tmp_path / "pwned").exists()
    assert elapsed < 3.0  # interpreter start included; the parser itself takes microseconds (tests/test_expr.py)


@pytest.mark.parametrize("args", [
    ("x*y", "--at", "x=1"),                                  # a variable without a value
    ("x*sigmoid(x)", "--at", "x=abc"),                        # not a number
    ("--op", "gelu", "--params", "approximate=cubic"),       # outside the parameter's choices
    ("--op", "nope"),                                          # unknown op
    ("missing.py:f", "--vjp", "missing.py:df", "--shape", "x=3"),
])
def test_bad_usage_exits_2(args: tuple[str, ...]) -> None:
    result = symdl(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("symdl: error: ") and result.stderr.count("\n") == 1, result.stderr
