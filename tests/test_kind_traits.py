"""The op kinds' traits (``symdl.catalog.spec.KIND_TRAITS``) agree with what each catalog entry declares.

Every stage asks the traits instead of comparing kind names, so a wrong trait would send an op through
the wrong template: these checks read the answer from the entries' own signatures (PyTorch's
parameters), not from the traits.
"""

from __future__ import annotations

import typing

import pytest

from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.catalog.spec import KIND_TRAITS, Kind

OPS = list(ACTIVATIONS_AND_LOSSES.values())


def test_every_kind_has_traits_and_every_trait_combination_is_one_kind() -> None:
    assert set(KIND_TRAITS) == set(typing.get_args(Kind))
    assert len({(t.over_rows, t.loss) for t in KIND_TRAITS.values()}) == len(KIND_TRAITS)


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_traits_match_the_signature(op) -> None:
    traits = op.traits
    assert traits.loss == ("reduction" in op.defaults) == (op.family == "loss")
    assert traits.dim_param == ("dim" in op.defaults)  # the softmax family takes PyTorch's dim
    assert traits.over_rows == bool(op.row_symbols)  # row-wise ops declare their row vectors
    assert traits.class_targets == (traits.loss and bool(op.row_symbols))
    assert traits.broadcast_targets == (traits.loss and not op.row_symbols)
