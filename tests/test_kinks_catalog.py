"""Every declared kink, with every sign of every input and parameter that moves it or changes its branch.

``tests/test_catalog_kernels.py`` checks each kink at inputs drawn once; a kink
whose subgradient depends on another input (hinge_embedding_loss's target
y = +1 or -1, margin_ranking_loss's y, l1_loss's target) is only pinned when
the drawn values cover both branches. Here the other inputs take both signs
(``sign`` inputs exactly +1 and -1), in every combination, element by element,
and so do the real-valued parameters the kink's location or subgradient uses;
the first input is put exactly on the kink and the kernel's VJP must equal the
catalog's subgradient (PyTorch's choice) there. The subgradient is evaluated by
SymPy from the catalog, not by the kernel under test.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy as sp

import symdl.kernels as kernels
from symdl.catalog.spec import Op
from symdl.sampling import variant_value
from tests.conftest import OP_VARIANTS

#: Magnitudes of the other inputs' values (each used with both signs): off 0 and away from the kink's mirror.
MAGNITUDES = (0.375, 1.25, 2.5)


def _kinks() -> list[object]:
    return [pytest.param(op, variant, index, id=f"{op.name}{'-' + variant if variant else ''}@{kink.at}")
            for op, variant in ((p.values[0], p.values[1]) for p in OP_VARIANTS)
            for index, kink in enumerate(op.formulas[variant].kinks)]


def _signed_parameters(op: Op, kink: object) -> list[dict[str, float]]:
    """Both signs of every real parameter the kink uses (the defaults otherwise)."""
    used = sp.sympify(kink.at).free_symbols | sp.sympify(kink.subgradient).free_symbols
    signed = [p for p in op.symbol_params if p.symbol in used and p.rule.kind == "real"]
    return [dict(zip((p.name for p in signed), values))
            for values in itertools.product(*[(0.75, -0.75) for _ in signed])]


def _other_inputs(op: Op) -> tuple[list[np.ndarray], list[tuple[float, ...]]]:
    """Inputs 1.. with every combination of signs, element by element, and the combinations used."""
    others = op.inputs[1:]
    choices = [(1.0, -1.0) for _ in others]
    combos = list(itertools.product(*choices))
    rows = [(combo, m) for combo in combos for m in MAGNITUDES]
    arrays = []
    for j, item in enumerate(others):
        values = [combo[j] * (1.0 if item.role == "sign" else m) for combo, m in rows]
        arrays.append(np.array(values))
    return arrays, combos


@pytest.mark.parametrize(("op", "variant", "index"), _kinks())
def test_kink_subgradient_for_every_sign(op: Op, variant: str, index: int) -> None:
    kink = op.formulas[variant].kinks[index]
    assert all(item.role in ("real", "sign") for item in op.inputs[1:]), "a new input role: extend the sign choices"
    base = {op.variant_param: variant_value(op, variant)} if op.variant_param else {}
    if any(p.name == "reduction" for p in op.params):
        base["reduction"] = "none"
    symbols = [i.symbol for i in op.inputs]
    for signed in _signed_parameters(op, kink):
        values = {p.symbol: signed.get(p.name, p.default) for p in op.symbol_params}
        others, combos = _other_inputs(op)
        size = len(combos) * len(MAGNITUDES)
        placeholder = np.zeros(size)
        at = sp.lambdify(symbols, sp.sympify(kink.at).xreplace(values), "numpy")(placeholder, *others)
        x = np.broadcast_to(np.asarray(at, dtype=np.float64), (size,)).copy()
        inputs = [x, *others]
        expected = np.broadcast_to(np.asarray(sp.lambdify(symbols, sp.sympify(kink.subgradient).xreplace(values),
                                                          "numpy")(*inputs), dtype=np.float64), (size,))
        grads = getattr(kernels, f"{op.name}_vjp")(np.ones(size), *inputs, **base, **signed)
        np.testing.assert_allclose(grads[0], expected, rtol=1e-12, atol=1e-300,
                                   err_msg=f"{op.name} at {kink.at} with {signed or 'default parameters'}")
        # Not vacuous: every sign combination of the other inputs sits on the kink in some element.
        seen = {tuple(np.sign(a[i]) for a in others) for i in range(size)}
        assert seen == set(combos)


def test_hinge_target_of_both_signs_pins_the_boundary_branch() -> None:
    """The mutation that survived before: ``margin >= x`` changed to ``margin > x`` in hinge_embedding_loss.

    At x = margin the loss for y = -1 is max(0, margin - x): PyTorch's clamp_min passes the gradient at
    the boundary, so d/dx = -1 there (and +1 for y = +1, from the x term)."""
    x = np.array([1.0, 1.0, -0.5, -0.5])
    y = np.array([1.0, -1.0, 1.0, -1.0])
    margins = np.array([1.0, 1.0, -0.5, -0.5])
    for margin in (1.0, -0.5):
        rows = margins == margin
        (grad, _) = kernels.hinge_embedding_loss_vjp(np.ones(rows.sum()), x[rows], y[rows], margin=margin,
                                                     reduction="none")
        np.testing.assert_array_equal(grad, y[rows])
