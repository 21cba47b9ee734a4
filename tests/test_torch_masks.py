"""Which of the in-place emitter's masks the PyTorch lowering computes as floats (symdl.printing.torch_masks).

The rule under test: a mask becomes float arithmetic only where a bool mask would give the same numbers
(written by a tensor-scalar comparison or by mask algebra, read only by arithmetic); a select's
condition, a tensor-tensor comparison, any other use, and every mask combined with one of those stay
bool. That the float forms compute the comparisons exactly is tested on the generated helpers
(tests/test_export_torch.py).
"""

from __future__ import annotations

import pytest

from symdl.printing.torch_printer import lower_to_torch


def lowered(*lines: str) -> list[str]:
    return lower_to_torch(lines)[0]


def test_a_comparison_read_by_a_product_is_a_float_mask_and_the_product_reuses_its_buffer() -> None:
    assert lowered("m0 = x > 0", "t0 = g * m0", "grad = t0") == [
        "m0 = _mask(x, 'gt', 0)", "t0 = torch.mul(g, m0, out=m0 if _fits(m0, g) else None)", "grad = t0"]



def test_a_scalar_first_comparison_is_mirrored_and_np_asarray_unwrapped() -> None:
    assert lowered("m0 = np.asarray(3 > x)", "t0 = g * m0")[0] == "m0 = _mask(x, 'lt', 3)"
    assert lowered("np.greater_equal(x, 0.5, out=m0)", "t0 = g * m0")[0] == "_mask(x, 'ge', 0.5, out=m0)"


@pytest.mark.parametrize(("lines", "expected"), [
    (("m0 = x >= 3", "m1 = x <= -3", "m0 |= m1", "np.logical_not(m0, out=m0)", "t0 = g * m0"),
     ["m0 = _mask(x, 'ge', 3)", "m1 = _mask(x, 'le', -3)", "torch.maximum(m0, m1, out=m0)", "_rsub(m0, 1, out=m0)",
      "t0 = torch.mul(g, m0, out=m0 if _fits(m0, g) else None)"]),
    (("m0 = x > 0", "m1 = x < 6", "m0 &= m1", "t0 = g * m0"),
     ["m0 = _mask(x, 'gt', 0)", "m1 = _mask(x, 'lt', 6)", "m0 *= m1", "t0 = torch.mul(g, m0, out=m0 if _fits(m0, g) else None)"]),
    (("m0 = x <= 0", "t0 = np.multiply(m0, k, dtype=g.dtype)", "np.invert(m0, out=m0)", "t0 += m0"),
     ["m0 = _mask(x, 'le', 0)", "t0 = torch.mul(m0.to(g.dtype), k)", "_rsub(m0, 1, out=m0)", "t0 += m0"]),
])
def test_mask_algebra_becomes_float_arithmetic(lines: tuple[str, ...], expected: list[str]) -> None:
    assert lowered(*lines) == expected


@pytest.mark.parametrize("lines", [
    ("m0 = x > 0", "t0 = _rt.select(m0, x, y)"),  # torch.where takes a bool condition
    ("m0 = x > 0", "m1 = 3 > x", "m0 &= m1", "t0 = _rt.select(m0, a, b)"),  # combined with a select's condition
    ("m0 = x > y", "t0 = g * m0"),  # two tensors: _mask compares with a scalar only
    ("m0 = x == 0", "t0 = g * m0"),  # equality is not one of the four relations
    ("m0 = x > 0", "t0 = np.sum(m0)"),  # a count is not the arithmetic a bool mask promotes in
])
def test_masks_a_float_would_change_stay_bool(lines: tuple[str, ...]) -> None:
    result = lowered(*lines)
    assert not any("_mask" in line or "_fits" in line for line in result), result
    assert result[0] == lines[0]


def test_a_mask_read_after_the_product_keeps_its_buffer() -> None:
    assert lowered("m0 = x > 0", "t0 = g * m0", "t1 = t0 + m0")[1] == "t0 = g * m0"
