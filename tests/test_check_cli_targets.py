"""``symdl gradcheck FILE.py:f`` as a user runs it (subprocess): inputs by name or position from --at,
--range, --samples and --shape, --wrt, ``def f(x, *params)``, layers (--backward, --layer), messages in
the command line's spelling, names and scalars as the table shows them, and a target that changes its input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

USER_CODE = '''
import numpy as np

def cube(x):
    return np.sum(x ** 3)

def dcube(x):
    return 3 * x ** 2

def dcube_wrong(x):
    return 3 * x ** 2 + 1e-3

def scaled(x, *params):
    out = np.tanh(x)
    for p in params:
        out = out * p
    return np.sum(out)

def dscaled(v, x, *params):   # with *params the arity cannot tell: a VJP is v first
    s = np.prod([np.asarray(p) for p in params]) if params else 1.0
    t = np.sum(np.tanh(x))
    return (v * s * (1 - np.tanh(x) ** 2), *[v * t * s / p for p in params])

def affine(x, w):
    return np.tanh(x @ w)

def daffine(v, x, w):
    g = v * (1 - np.tanh(x @ w) ** 2)
    return g @ w.T, x.T @ g

def daffine_transposed(v, x, w):
    g = v * (1 - np.tanh(x @ w) ** 2)
    return g @ w.T, (x.T @ g).T

def changes_input(x):
    x += 1.0
    return np.sum(x)

def zero_grad(x):
    return np.zeros_like(x)

def identity(x):
    return np.tanh(x)

def didentity(v, x):
    return v * (1 - np.tanh(x) ** 2)

def affine_forward(x, w, b):
    return x @ w + b, (x, w)

def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)

def affine_backward_wrong(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.mean(axis=0)   # the bias gradient averaged, not summed

def batchnorm_forward(x, gamma, beta, bn_param):   # CS231n's shape: a dict of settings and running statistics
    eps = bn_param.get("eps", 1e-5)
    mean = bn_param.setdefault("running_mean", np.zeros(x.shape[1]))
    var = bn_param.setdefault("running_var", np.ones(x.shape[1]))
    if bn_param["mode"] == "train":
        mu, sigma2 = x.mean(axis=0), x.var(axis=0)
        bn_param["running_mean"], bn_param["running_var"] = 0.9 * mean + 0.1 * mu, 0.9 * var + 0.1 * sigma2
    else:
        mu, sigma2 = mean, var
    xhat = (x - mu) / np.sqrt(sigma2 + eps)
    return gamma * xhat + beta, (xhat, gamma, sigma2 + eps)

def batchnorm_backward(dout, cache):   # the training-mode gradient
    xhat, gamma, var = cache
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / np.sqrt(var)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)

def scale_forward(x, factor=1.0, offset=0.0):
    return x * factor + offset, factor

def scale_backward(dout, factor):
    return dout * factor

class Dense:
    def __init__(self, n_out=3):
        self.n_out, self.params, self.grads = n_out, {}, {}

    def forward(self, x):
        if not self.params:  # lazy: created at the first call
            rng = np.random.default_rng(0)
            self.params = {"W": rng.standard_normal((x.shape[-1], self.n_out)), "b": np.zeros(self.n_out)}
            self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        self.grads["W"] += self.x.T @ dout
        self.grads["b"] += dout.sum(axis=0)
        return dout @ self.params["W"].T

class DenseWrongBias(Dense):
    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["b"] *= 2
        return dx
'''


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user")
    (folder / "user.py").write_text(USER_CODE, encoding="utf-8")
    return folder


def symdl(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "symdl.cli", "gradcheck", *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=folder)


def report(result: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(result.stdout)["checks"][0]["report"]


def test_at_gives_a_scalar_that_prints_as_a_scalar(code: Path) -> None:
    result = symdl(code, "user.py:cube", "--vjp", "user.py:dcube", "--at", "x=0.5")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("x "))
    assert "()" in row and "(scalar)" in row and "[]" not in result.stdout
    data = report(symdl(code, "user.py:cube", "--vjp", "user.py:dcube", "--at", "x=0.5", "--json"))
    assert data["inputs"][0]["analytic"] == pytest.approx(0.75, rel=1e-12)


def test_range_and_samples_by_position_and_a_wrong_gradient(code: Path) -> None:
    data = report(symdl(code, "user.py:cube", "--vjp", "user.py:dcube", "--range", "0=-1:1", "--samples", "7",
                        "--json"))
    assert data["passed"] and data["inputs"][0]["shape"] == [7] and data["inputs"][0]["name"] == "x"
    wrong = symdl(code, "user.py:cube", "--vjp", "user.py:dcube_wrong", "--range", "x=-1:1", "--samples", "7")
    assert wrong.returncode == 1 and "FAIL" in wrong.stdout


def test_wrt_checks_only_the_named_inputs(code: Path) -> None:
    for wrt in ("w", "1"):
        data = report(symdl(code, "user.py:affine", "--vjp", "user.py:daffine", "--shape", "x=2,3",
                            "--shape", "w=3,4", "--wrt", wrt, "--json"))
        assert [r["name"] for r in data["inputs"]] == ["w"] and data["passed"]


def test_variadic_parameters_by_position_and_their_names(code: Path) -> None:
    result = symdl(code, "user.py:scaled", "--vjp", "user.py:dscaled", "--shape", "x=3", "--at", "1=0.5",
                   "--at", "2=2", "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    data = report(result)
    assert [r["name"] for r in data["inputs"]] == ["x", "params[0]", "params[1]"]
    assert [r["shape"] for r in data["inputs"]] == [[3], [], []] and data["passed"]


def test_detail_lines_use_the_names_in_the_table(code: Path) -> None:
    result = symdl(code, "user.py:affine", "--vjp", "user.py:daffine_transposed", "--shape", "x=2,3",
                   "--shape", "w=3,4")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("w ") and line.endswith("FAIL") for line in lines), result.stdout
    assert "  w: gradient of w has shape (4, 3), the input has shape (3, 4)" in lines
    assert "input 1" not in result.stdout


def test_jacobian_too_large_is_explained_in_the_command_lines_spelling(code: Path) -> None:
    result = symdl(code, "user.py:identity", "--vjp", "user.py:didentity", "--shape", "x=9000", "--mode", "full")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--mode fast" in result.stderr and "--wrt" in result.stderr and "mode='fast'" not in result.stderr


def test_a_target_that_modifies_its_input_exits_2(code: Path) -> None:
    result = symdl(code, "user.py:changes_input", "--vjp", "user.py:zero_grad", "--shape", "x=3,4")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "modif" in result.stderr, result.stderr


def test_unknown_parameter_and_missing_values_exit_2(code: Path) -> None:
    for args in (("--shape", "y=3"), ("--at", "5=1.0"), ()):
        result = symdl(code, "user.py:cube", "--vjp", "user.py:dcube", *args)
        assert result.returncode == 2 and result.stderr.startswith("symdl: error: "), result.stderr
        assert result.stderr.count("\n") == 1


def test_cache_passing_layer_from_the_command_line(code: Path) -> None:
    shapes = ("--shape", "x=4,3", "--shape", "w=3,2", "--shape", "b=2")
    good = symdl(code, "user.py:affine_forward", "--backward", "user.py:affine_backward", *shapes, "--json")
    assert good.returncode == 0, good.stderr
    assert [r["name"] for r in report(good)["inputs"]] == ["x", "w", "b"]
    bad = symdl(code, "user.py:affine_forward", "--backward", "user.py:affine_backward_wrong", *shapes, "--json")
    assert bad.returncode == 1
    assert [r["passed"] for r in report(bad)["inputs"]] == [True, True, False]


def test_layer_object_from_the_command_line(code: Path) -> None:
    good = symdl(code, "user.py:Dense", "--layer", "--params", "n_out=2", "--shape", "x=4,3", "--json")
    assert good.returncode == 0, good.stderr
    assert [r["name"] for r in report(good)["inputs"]] == ["x", "W", "b"]
    bad = symdl(code, "user.py:DenseWrongBias", "--layer", "--shape", "x=4,3", "--json")
    assert bad.returncode == 1
    assert [r["passed"] for r in report(bad)["inputs"]] == [True, True, False]


def test_cache_passing_layer_with_a_settings_dict_from_the_command_line(code: Path) -> None:
    # --params gives the forward's trailing non-array arguments; name.key=value builds a dict (bn_param).
    shapes = ("user.py:batchnorm_forward", "--backward", "user.py:batchnorm_backward", "--shape", "x=5,3",
              "--shape", "gamma=3", "--shape", "beta=3")
    good = symdl(code, *shapes, "--params", "bn_param.mode=train,bn_param.eps=1e-5", "--json")
    assert good.returncode == 0, good.stderr + good.stdout
    assert [r["name"] for r in report(good)["inputs"]] == ["x", "gamma", "beta"]
    # the dict reaches forward: in test mode it normalises with running statistics, so the training-mode
    # gradient of x is wrong there (and those of gamma and beta stay right)
    test_mode = symdl(code, *shapes, "--params", "bn_param.mode=test", "--json")
    assert test_mode.returncode == 1, test_mode.stderr
    assert [r["passed"] for r in report(test_mode)["inputs"]] == [False, True, True]
    for args in ((), ("--params", "bn_param.mode=train,gamma.x=1"), ("--params", "bn_params.mode=train"),
                 ("--params", "bn_param.mode=train", "--shape", "bn_param=3")):
        result = symdl(code, *shapes, *args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (args, result.stderr)
    # plain values, by name; they follow the arrays positionally, so none may be left out in between
    scale = ("user.py:scale_forward", "--backward", "user.py:scale_backward", "--at", "x=0.5")
    data = report(symdl(code, *scale, "--params", "factor=2.5,offset=1", "--json"))
    assert data["passed"] and data["inputs"][0]["analytic"] == pytest.approx(2.5, rel=1e-12)
    gap = symdl(code, *scale, "--params", "offset=1")
    assert gap.returncode == 2 and "factor" in gap.stderr and gap.stderr.count("\n") == 1, gap.stderr
