"""Optional: every op matches its PyTorch counterpart (skipped without torch)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import symdl.kernels as kernels
from symdl.catalog.spec import Op
from symdl.sampling import draw_inputs, draw_params
from tests.conftest import OP_VARIANTS, boundary_params

torch = pytest.importorskip("torch")

#: Where PyTorch rounds a constant to float32 even for float64 tensors: hardsigmoid's 1/6,
#: and celu's backward, which uses 1 / alpha.toFloat().
LOOSER = {"hardsigmoid": 1e-7, "celu": 1e-7}
#: Absolute floor: PyTorch's gelu forms 1 + erf(x / sqrt 2), which cancels for x < 0 (ours does not).
ATOL = 1e-14


def _torch_function(path: str):  # noqa: ANN202
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


# symdl keeps PyTorch's current defaults (softmax's implicit dim, kl_div's reduction='mean'), so the
# reference is called with them too, and torch warns that it will change them some day.
@pytest.mark.filterwarnings("ignore:Implicit dimension choice for:UserWarning")
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")
@pytest.mark.parametrize(("op", "variant"), [p for p in OP_VARIANTS if p.values[0].torch])
@pytest.mark.parametrize("seed", range(3))
def test_forward_and_gradients_match_torch(op: Op, variant: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    params = draw_params(op, rng, variant or None)
    inputs = draw_inputs(op, rng, (4, 5))
    tensors = [torch.tensor(a, requires_grad=a.dtype.kind == "f" and item.differentiable)
               for a, item in zip(inputs, op.inputs)]
    expected = _torch_function(op.torch)(*tensors, **params)
    out = getattr(kernels, op.name)(*inputs, **params)
    rtol = LOOSER.get(op.name, 1e-12)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=rtol, atol=ATOL)
    upstream = rng.standard_normal(np.shape(out))
    expected.backward(torch.tensor(upstream))
    grads = getattr(kernels, f"{op.name}_vjp")(upstream, *inputs, **params)
    for grad, tensor in zip(grads, tensors):
        if tensor.requires_grad:
            np.testing.assert_allclose(grad, tensor.grad.numpy(), rtol=max(rtol, 1e-11), atol=ATOL)


@pytest.mark.parametrize(("min_val", "max_val"), [(1.0, -1.0), (0.5, 0.5), (-1.0, 1.0), (0.0, -1e-300)])
def test_hardtanh_refuses_the_bounds_pytorch_refuses(min_val: float, max_val: float) -> None:
    # PyTorch: ValueError "min_val cannot be greater than max_val"; symdl's OpParameterError is a ValueError too
    x = np.linspace(-2.0, 2.0, 9)
    refused = {}
    for side, call in (("torch", lambda: torch.nn.functional.hardtanh(torch.from_numpy(x), min_val, max_val)),
                       ("symdl", lambda: kernels.hardtanh(x, min_val=min_val, max_val=max_val)),
                       ("symdl vjp", lambda: kernels.hardtanh_vjp(np.ones_like(x), x, min_val=min_val,
                                                                  max_val=max_val))):
        try:
            call()
            refused[side] = False
        except ValueError:
            refused[side] = True
    assert refused["symdl"] == refused["symdl vjp"] == refused["torch"] == (min_val > max_val)


@pytest.mark.parametrize(("op", "variant"), [p for p in OP_VARIANTS if p.values[0].torch
                                             and p.values[0].kind == "elementwise"])
def test_forward_at_infinities_matches_torch_where_torch_has_a_number(op: Op, variant: str) -> None:
    """At x = +-inf each elementwise kernel gives PyTorch's value wherever PyTorch gives one (not NaN;
    where PyTorch gives NaN, as gelu at -inf, symdl may give the limit), for every boundary setting of
    its parameters."""
    x = np.array([np.inf, -np.inf])
    for params in boundary_params(op, variant):
        expected = _torch_function(op.torch)(torch.from_numpy(x), **params).numpy()
        with np.errstate(all="ignore"):
            out = getattr(kernels, op.name)(x, **params)
        has_number = ~np.isnan(expected)
        # equal infinities; a finite limit within rounding (selu's scale * alpha is one product, rounded)
        np.testing.assert_allclose(out[has_number], expected[has_number], rtol=4e-16, err_msg=f"{op.name} {params}")
