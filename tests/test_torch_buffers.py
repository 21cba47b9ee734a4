"""Which fresh results the PyTorch lowering writes into a dead operand's buffer (symdl.printing.torch_buffers).

The rule under test: ``t = a op b`` goes into ``a``'s or ``b``'s buffer, guarded by ``_fits`` at run time,
only where that operand is the function's own temporary (no name assigned from it, not the ``out=`` of an
assigned call, never indexed) and no later statement reads it. That the guarded writes compute what the
plain form does, bit for bit, with broadcasting and mixed dtypes, is tested on the generated modules
(tests/test_export_torch.py).
"""

from __future__ import annotations

import pytest

from symdl.printing.torch_printer import lower_to_torch


def lowered(*lines: str) -> list[str]:
    return lower_to_torch(lines)[0]


def test_a_dead_temporary_takes_the_result_left_operand_first() -> None:
    assert lowered("t0 = 2 * g", "t1 = x - y", "t2 = t0 * t1", "grad = t2")[2] == (
        "t2 = torch.mul(t0, t1, out=t0 if _fits(t0, t1) else t1 if _fits(t1, t0) else None)")


@pytest.mark.parametrize(("operator", "call"), [("+", "torch.add"), ("-", "torch.sub"), ("/", "torch.div")])
def test_sums_differences_and_quotients_too(operator: str, call: str) -> None:
    assert lowered("t0 = x - y", f"t1 = g {operator} t0", "grad = t1")[1] == (
        f"t1 = {call}(g, t0, out=t0 if _fits(t0, g) else None)")


@pytest.mark.parametrize(("lines", "why"), [
    (("t0 = x - y", "out = t0", "t1 = t0 * g"), "t0 is the output"),
    (("t0 = x - y", "t1 = t0 * g", "t2 = np.exp(t0)"), "t0 is read later"),
    (("t0 = x - y", "t1 = np.exp(t0, out=t0)", "t2 = t1 * g"), "t1 is t0's buffer"),
    (("t0 = x - y", "t1 = np.exp(t0, out=t0)", "t2 = t0 * g"), "t0 is t1's buffer"),
    (("t0 = x - y", "t1 = t0[0]", "t2 = t0 * g"), "t1 is a view of t0"),
    (("t0 = x - y", "t1 = t0.T", "t2 = t0 * g"), "t1 is a view of t0"),
    (("t1 = x * g",), "x is an input"),
])
def test_no_buffer_another_name_can_reach_takes_a_result(lines: tuple[str, ...], why: str) -> None:
    result = lowered(*lines)
    assert not any("_fits" in line for line in result), (why, result)
