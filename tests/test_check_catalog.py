"""Every shipped kernel's VJP passes gradcheck (full and fast, float64 and float32) on inputs from the
op's domains, and the same VJP with one input's gradient scaled by 1.01 fails: the checker neither
cries wolf on symdl's own, correct gradients nor lets a 1% error through."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import symdl.kernels as kernels
from symdl.catalog.spec import Op
from symdl.check import gradcheck
from symdl.sampling import draw_inputs, draw_params
from tests.conftest import OP_VARIANTS


def _problem(op: Op, variant: str, dtype: type, seed: int):
    rng = np.random.default_rng(seed)
    params = draw_params(op, rng, variant or None)
    forward, vjp = getattr(kernels, op.name), getattr(kernels, f"{op.name}_vjp")
    inputs = draw_inputs(op, rng, (3, 4), dtype)
    wrt = [i for i, item in enumerate(op.inputs) if item.differentiable and inputs[i].dtype.kind == "f"]
    return (lambda *a: forward(*a, **params)), (lambda g, *a: vjp(g, *a, **params)), inputs, wrt


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(("op", "variant"), OP_VARIANTS)
def test_shipped_gradients_pass_and_a_scaled_one_fails(op: Op, variant: str, dtype: type) -> None:
    f, vjp, inputs, wrt = _problem(op, variant, dtype, seed=len(op.name))

    def scaled(g, *a):
        grads = list(vjp(g, *a))
        grads[wrt[0]] = (grads[wrt[0]] * 1.01).astype(grads[wrt[0]].dtype)
        return tuple(grads)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for mode in ("full", "fast"):
            report = gradcheck(f, inputs, vjp, wrt=wrt, mode=mode)
            assert report.passed, report.to_text()
        wrong = gradcheck(f, inputs, scaled, wrt=wrt)
    assert not wrong.passed, wrong.to_text()
