"""Bad input: typed errors that name the op and the problem."""

from __future__ import annotations

import numpy as np
import pytest

import symdl.kernels as kernels
from symdl.catalog import CATALOG
from symdl.errors import OpInputError, OpParameterError, OpTypeError, UnknownOpError
from symdl.sampling import draw_inputs

#: A value that breaks each rule kind.
BREAKS = {"positive": -1.0, "nonnegative": -0.5, "real": float("nan"), "choice": "bogus",
          "integer": 1.5, "bool": "yes", "interval": 7.5}

PARAMS = [pytest.param(op, p, id=f"{op.name}.{p.name}") for op in CATALOG.values() for p in op.params
          if p.rule.kind in BREAKS and not (p.rule.kind == "interval" and p.rule.args[1] >= 7.5)]


def _inputs(op):  # noqa: ANN001, ANN202
    return draw_inputs(op, np.random.default_rng(0), (3, 4))


@pytest.mark.parametrize(("op", "param"), PARAMS)
def test_out_of_domain_parameter_names_op_and_parameter(op, param) -> None:  # noqa: ANN001
    for function in (getattr(kernels, op.name), lambda *a, **k: getattr(kernels, f"{op.name}_vjp")(1.0, *a, **k)):
        with pytest.raises(OpParameterError, match=rf"^{op.name}: {param.name} "):
            function(*_inputs(op), **{param.name: BREAKS[param.rule.kind]})


@pytest.mark.parametrize("op", CATALOG.values(), ids=CATALOG.keys())
def test_non_numeric_input_is_a_type_error(op) -> None:  # noqa: ANN001
    inputs = _inputs(op)
    inputs[0] = np.array([["a", "b"]])
    with pytest.raises(OpTypeError, match=rf"^{op.name}: {op.inputs[0].name} must be"):
        getattr(kernels, op.name)(*inputs)


@pytest.mark.parametrize("op", CATALOG.values(), ids=CATALOG.keys())
def test_unknown_keyword_is_rejected(op) -> None:  # noqa: ANN001
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        getattr(kernels, op.name)(*_inputs(op), bogus=1)


@pytest.mark.parametrize("op", [op for op in CATALOG.values() if op.family == "activation"],
                         ids=[n for n, op in CATALOG.items() if op.family == "activation"])
def test_upstream_gradient_of_wrong_shape(op) -> None:  # noqa: ANN001
    x = np.zeros((3, 4))
    with pytest.raises(OpInputError, match=rf"^{op.name}: grad has shape \(4, 3\)"):
        getattr(kernels, f"{op.name}_vjp")(np.zeros((4, 3)), x)


def test_softmax_dim_out_of_range() -> None:
    with pytest.raises(OpParameterError, match="softmax: dim=2 is out of range"):
        kernels.softmax(np.zeros((3, 4)), dim=2)


def test_integer_input_is_promoted_like_numpy() -> None:
    assert kernels.relu(np.array([-1, 2])).dtype == np.float64


def test_unknown_op() -> None:
    from symdl.catalog import get

    with pytest.raises(UnknownOpError, match="unknown op 'reluu'"):
        get("reluu")
