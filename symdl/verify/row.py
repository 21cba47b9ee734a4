"""What every section of ``symdl verify`` shares: the row, the finite-difference check, the finite check,
and running rows in parallel processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass
from typing import TypeVar

import numpy as np

from symdl.pools import process_pool

#: The largest relative error of a VJP against central differences that passes (float64).
FD_TOLERANCE = 1e-6

Job = TypeVar("Job")


@dataclass(frozen=True)
class VerifyRow:
    """The outcome for one op variant."""

    op: str
    variant: str
    proof: str
    proofs_hold: bool
    fd_error: float
    forward_ulp: float
    grad_ulp: float
    forward_ulp_bound: float
    grad_ulp_bound: float
    finite: bool
    detail: str = ""
    #: For an op whose VJP takes the forward's output (``result=``): that path's float64 ulp error and
    #: its bound (None for other rows). Its proofs, fd and finite checks are part of the row's own.
    result_ulp: float | None = None
    result_ulp_bound: float | None = None

    def __post_init__(self) -> None:
        # Checks compute with NumPy and SymPy: store plain Python bools and floats (JSON, comparisons).
        for name in ("proofs_hold", "finite"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        for name in ("fd_error", "forward_ulp", "grad_ulp", "forward_ulp_bound", "grad_ulp_bound", "result_ulp",
                     "result_ulp_bound"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def passed(self) -> bool:
        """True when every check holds."""
        return (self.proofs_hold and self.fd_error <= FD_TOLERANCE and self.finite
                and self.forward_ulp <= self.forward_ulp_bound and self.grad_ulp <= self.grad_ulp_bound
                and (self.result_ulp is None or self.result_ulp <= (self.result_ulp_bound or 0.0)))

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields, plus ``passed``."""
        return {**asdict(self), "passed": self.passed}




def finite_and_typed(compute: Callable[[], Sequence[np.ndarray]], dtype: type, label: str) -> tuple[bool, str]:
    """Run ``compute`` with overflow, invalid and divide-by-zero raised (underflow is fine): every array
    it returns must be finite and of ``dtype``. Returns (holds, what failed, prefixed by ``label``)."""
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            arrays = compute()
    except FloatingPointError as error:
        return False, f"{label}: {error}"
    if not all(np.all(np.isfinite(a)) for a in arrays):
        return False, f"{label}: non-finite result"
    if any(a.dtype != dtype for a in arrays):
        return False, f"{label}: result dtype changed"
    return True, ""


def directional_error(forward: Callable[..., np.ndarray], arrays: Sequence[np.ndarray | None], index: int,
                      v: np.ndarray, gradient: np.ndarray, rng: np.random.Generator, h: float) -> float:
    r"""Relative error of a VJP along one random direction ``u`` of input ``index``:

    .. math:: \frac{|n - a|}{\max(|n|, |a|, 10^{-3})},\quad
              n = \frac{\langle v, f(x + h u) - f(x - h u)\rangle}{2h},\quad a = \langle \bar x, u\rangle

    where :math:`\bar x` = ``gradient`` is the VJP of ``v`` with respect to input ``index`` (float64).
    """
    u = rng.standard_normal(np.shape(arrays[index]))
    plus = [a + h * u if i == index else a for i, a in enumerate(arrays)]
    minus = [a - h * u if i == index else a for i, a in enumerate(arrays)]
    numeric = float(np.sum(v * (forward(*plus) - forward(*minus)))) / (2 * h)
    analytic = float(np.sum(gradient * u))
    return abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-3)


def parallel_rows(run: Callable[[Job], VerifyRow], jobs: Sequence[Job], *, workers: int | None = None,
                  cost: Callable[[Job], float] = lambda job: 0.0,
                  on_done: Callable[[], None] = lambda: None) -> list[VerifyRow]:
    """``[run(job) for job in jobs]``, computed in a process pool (the costliest jobs started first)."""
    order = sorted(range(len(jobs)), key=lambda i: -cost(jobs[i]))
    rows: dict[int, VerifyRow] = {}
    with process_pool(workers) as pool:
        futures = {pool.submit(run, jobs[i]): i for i in order}
        for future in as_completed(futures):
            rows[futures[future]] = future.result()
            on_done()
    return [rows[i] for i in range(len(jobs))]
