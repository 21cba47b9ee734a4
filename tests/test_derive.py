"""Derivation: every catalog proof holds, and a planted wrong factor is caught."""

from __future__ import annotations

import dataclasses

import pytest
import sympy as sp

from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.catalog.spec import RESULT, Op, OutputForm
from symdl.proofs.ops import derive
from symdl.functions import sigmoid
from symdl.verify.ops import proofs_for, targets
from tests.conftest import OP_VARIANTS


@pytest.fixture(scope="session")
def all_proofs() -> dict:
    return proofs_for(targets())


@pytest.mark.parametrize(("op", "variant"), OP_VARIANTS)
def test_every_proof_holds(op: Op, variant: str, all_proofs: dict) -> None:
    proofs = all_proofs[(op.name, variant)]
    failed = [p.claim for p in proofs if not p.holds]
    assert not failed, failed


def _with_grad(op: Op, grad: sp.Expr) -> Op:
    formula = dataclasses.replace(op.formula(), grads={"input": grad})
    return dataclasses.replace(op, formulas={"": formula})


def test_planted_wrong_factor_fails_the_symbolic_proof() -> None:
    op = ACTIVATIONS_AND_LOSSES["silu"]
    x = op.inputs[0].symbol
    wrong = _with_grad(op, 2 * sigmoid(x) * (1 + x * (1 - sigmoid(x))))
    proofs = derive(wrong).proofs
    assert not all(p.holds for p in proofs)


def test_planted_wrong_factor_fails_the_numeric_proof() -> None:
    op = ACTIVATIONS_AND_LOSSES["elu"]  # elu's closed form is only provable numerically (Min inside exp)
    x, alpha = op.inputs[0].symbol, op.param("alpha").symbol
    wrong = _with_grad(op, sp.Piecewise((alpha * sp.exp(sp.Min(x, 0)), x <= 0), (sp.Rational(11, 10), True)))
    failing = [p for p in derive(wrong).proofs if not p.holds]
    assert failing and failing[0].method.startswith("numeric")


def test_planted_wrong_subgradient_is_caught() -> None:
    op = ACTIVATIONS_AND_LOSSES["relu"]
    kink = dataclasses.replace(op.formula().kinks[0], subgradient=sp.S.Half)
    wrong = dataclasses.replace(op, formulas={"": dataclasses.replace(op.formula(), kinks=(kink,))})
    assert not all(p.holds for p in derive(wrong).proofs)


def test_planted_wrong_second_output_form_is_caught() -> None:
    """Every gradient from the output is proven, not only the NumPy kernel's: the exports may print any."""
    op = ACTIVATIONS_AND_LOSSES["sigmoid"]
    x = op.inputs[0].symbol
    form = OutputForm({"input": RESULT * sigmoid(x)})  # sigma(x)^2, not sigma(x) sigma(-x)
    wrong = dataclasses.replace(op, formulas={"": dataclasses.replace(op.formula(), more_from_output=(form,))})
    failing = [p.claim for p in derive(wrong).proofs if not p.holds]
    assert failing == ["d/dinput from the output (form 2) = derived"]


def test_softmax_cross_checks_textbook_identities() -> None:
    proofs = derive(ACTIVATIONS_AND_LOSSES["sigmoid"]).proofs
    assert any("sigma (1 - sigma)" in p.claim and p.holds for p in proofs)
    assert all(p.method.startswith("symbolic") for p in derive(ACTIVATIONS_AND_LOSSES["softmax"]).proofs)


def test_numeric_identity_does_not_prove_what_evaluates_to_nan() -> None:
    """``max`` ignores NaN: an identity whose sides are NaN at every point must not come out proven."""
    import math

    import sympy as sp

    from symdl.proofs.proof import numeric_identity

    x = sp.Symbol("x", real=True)
    assert numeric_identity(sp.nan, x, [x], [(0.5,), (2.0,)]) == math.inf
    assert numeric_identity(x + 1, 1 + x, [x], [(0.5,), (2.0,)]) == 0.0


def test_numeric_identity_does_not_prove_what_is_complex() -> None:
    """At x < 0, log(x) is complex: equal complex sides prove nothing of real kernels, and a max of one raises
    inside mpmath; both are 'not proven' (infinite error), never an exception."""
    import math

    import sympy as sp

    from symdl.proofs.proof import numeric_identity

    x = sp.Symbol("x", real=True)
    assert numeric_identity(sp.log(x), sp.log(x), [x], [(-2.0,)]) == math.inf
    assert numeric_identity(sp.Max(sp.log(x), x), sp.Max(sp.log(x), x), [x], [(0.5,), (-2.0,)]) == math.inf
    assert numeric_identity(sp.log(x), sp.log(x), [x], [(2.0,)]) == 0.0


@pytest.mark.parametrize("settles", [True, False], ids=["symbolic", "sympy-gives-up"])
def test_a_row_claim_tries_symbolically_until_one_component_is_numeric(monkeypatch: pytest.MonkeyPatch,
                                                                       settles: bool) -> None:
    """Each component of a row claim is tried symbolically until one is proven only numerically; from then on
    the claim is numeric whatever the others give, so they are checked numerically alone (a failed attempt costs
    the whole time limit). Every component is still checked: a wrong one after that fails the claim."""
    import numpy as np

    from symdl.proofs import proof as proof_module
    from symdl.proofs.ops import _prove_rows

    attempts = []
    monkeypatch.setattr(proof_module, "symbolic_zero", lambda difference, *a: attempts.append(difference) or settles)
    op = ACTIVATIONS_AND_LOSSES["softmax"]
    z = [sp.Symbol(f"z_{i}", real=True) for i in range(3)]
    rows = [[z[0] * 2, z[1] + z[2], sp.exp(z[2])], [z[0] ** 2, sp.log(1 + z[1] ** 2)]]
    proof = _prove_rows("claim", rows, rows, op, np.random.default_rng(0))
    assert proof.holds
    assert len(attempts) == (5 if settles else 1)
    assert proof.method.startswith("symbolic" if settles else "numeric")
    if not settles:  # numeric from the first component on: a wrong last one is still caught
        wrong = [rows[0], [z[0] ** 2, sp.log(2 + z[1] ** 2)]]
        assert not _prove_rows("claim", rows, wrong, op, np.random.default_rng(0)).holds
