"""The function under test, evaluated at perturbed inputs in blocks.

:class:`Problem` holds ``f``, the inputs and the precision the numeric side
evaluates in; :meth:`Problem.rows` evaluates ``f`` at many perturbed copies of
one input. Where ``f`` broadcasts over a leading batch axis (checked once per
input by :meth:`Problem.batched`), a block of perturbed copies goes through one
call; otherwise a tight loop calls ``f`` once per copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from symdl.check.errors import GradcheckInputError
from symdl.check.tolerances import element_steps, machine_epsilon

#: Elements per evaluated block (rows x input size): large enough to amortise calls, small enough for caches.
BLOCK_ELEMENTS = 1 << 18

Precision = Literal["auto", "input"]
#: Builds rows ``[start, stop)`` of perturbed copies of one input, flattened: shape (stop - start, size).
Builder = Callable[[int, int], np.ndarray]


def _floating(x: np.ndarray) -> bool:
    return x.dtype.kind == "f"


@dataclass
class Problem:
    """``f`` at ``inputs``; ``wrt`` are the indices of the inputs whose gradient is checked.

    Attributes:
        eval_inputs: the inputs the numeric side evaluates ``f`` at: float inputs
            promoted to float64 when ``f`` then returns float64 (``precision="auto"``).
        eval_dtype: the dtype of ``f``'s output at ``eval_inputs``.
        f0: ``f(eval_inputs)``, flattened.
        out_shape, out_dtype: shape and dtype of ``f(inputs)`` (what the VJP receives).
        evaluations: calls of ``f`` so far, counting each row of a block.
    """

    f: Callable[..., object]
    inputs: tuple[np.ndarray, ...]
    wrt: tuple[int, ...]
    precision: Precision = "auto"
    eval_inputs: tuple[np.ndarray, ...] = ()
    eval_dtype: np.dtype = np.dtype(np.float64)
    f0: np.ndarray = field(default_factory=lambda: np.zeros(0))
    out_shape: tuple[int, ...] = ()
    out_dtype: np.dtype = np.dtype(np.float64)
    evaluations: int = 0
    _batched: dict[tuple[int, str], bool] = field(default_factory=dict)

    @classmethod
    def build(cls, f: Callable[..., object], inputs: Sequence[object], wrt: Sequence[int] | None,
              precision: Precision = "auto") -> Problem:
        """Validate the inputs, evaluate ``f`` once and choose the evaluation precision."""
        # Private copies: f never sees (so can never change) the caller's arrays, and a change it makes to
        # these is caught at the first call, before it could shift any evaluation the verdict rests on.
        arrays = tuple(np.array(x, copy=True) for x in inputs)
        if not arrays:
            raise GradcheckInputError("gradcheck: inputs is empty; give at least one array")
        if wrt is None:
            wrt = tuple(i for i, x in enumerate(arrays) if _floating(x))
        wrt = tuple(wrt)
        for i in wrt:
            if not 0 <= i < len(arrays):
                raise GradcheckInputError(f"gradcheck: wrt index {i} is out of range for {len(arrays)} inputs")
            if not _floating(arrays[i]):
                raise GradcheckInputError(
                    f"gradcheck: input {i} has dtype {arrays[i].dtype}; only real floating inputs have gradients")
            if not np.all(np.isfinite(arrays[i])):
                raise GradcheckInputError(f"gradcheck: input {i} holds non-finite values")
        if not wrt:
            raise GradcheckInputError("gradcheck: no real floating input to check the gradient of")
        problem = cls(f, arrays, wrt, precision)
        out = problem._call(arrays)
        problem.out_shape, problem.out_dtype = out.shape, out.dtype
        problem._choose_precision(out)
        return problem

    # ----------------------------------------------------------------- calls
    def _call(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        before = [np.array(x, copy=True) for x in arrays]
        out = np.asarray(self.f(*arrays))
        unchanged(before, arrays, "f")
        if out.dtype.kind not in "fc":
            raise GradcheckInputError(f"gradcheck: f returned dtype {out.dtype}; it must return floats")
        return out

    def _choose_precision(self, out: np.ndarray) -> None:
        promoted = tuple(x.astype(np.float64) if _floating(x) else x for x in self.inputs)
        chosen, value = self.inputs, out
        if self.precision == "auto" and any(x.dtype != np.float64 for x in self.inputs if _floating(x)):
            try:
                wide = self._call(promoted)
            except Exception:  # noqa: BLE001 - f may reject float64: evaluate in the input's precision
                wide = None
            if wide is not None and wide.dtype == np.float64 and wide.shape == out.shape:
                chosen, value = promoted, wide
        if value.dtype.kind == "c":
            raise GradcheckInputError("gradcheck: f returned complex values for real inputs")
        # Non-finite values are reported first, with their entries, in the checked dtype and in the evaluation
        # dtype: a float32 forward that overflows is a finding even where float64 is finite.
        for values, dtype in ((out, out.dtype), (value, value.dtype)):
            if not np.all(np.isfinite(values)):
                other = "" if values is value else f" (finite in {value.dtype}: the {dtype} evaluation overflows)"
                raise GradcheckInputError(f"gradcheck: f is not finite at the given inputs in {dtype}: "
                                          f"{non_finite_entries(values, 'out')}{other}; nothing to check there")
        self.eval_inputs, self.eval_dtype, self.f0 = chosen, value.dtype, value.ravel()

    @property
    def size(self) -> int:
        """Number of output elements."""
        return int(self.f0.size)

    def steps(self, k: int) -> np.ndarray:
        """Central-difference steps of every element of input ``k`` (flattened)."""
        return element_steps(self.eval_inputs[k], self.eval_dtype)

    def base(self, k: int, dtype: np.dtype | None = None) -> np.ndarray:
        """Input ``k`` flattened, in the evaluation dtype (or ``dtype``)."""
        return self.eval_inputs[k].ravel().astype(dtype or self.eval_inputs[k].dtype)

    def _with(self, k: int, value: np.ndarray) -> list[np.ndarray]:
        arrays = list(self.eval_inputs)
        arrays[k] = value
        return arrays

    # ----------------------------------------------------------------- blocks
    def _single(self, k: int, row: np.ndarray) -> np.ndarray:
        return np.asarray(self.f(*self._with(k, row.reshape(self.eval_inputs[k].shape)))).ravel()

    def _batch(self, k: int, block: np.ndarray) -> np.ndarray:
        count = block.shape[0]
        out = np.asarray(self.f(*self._with(k, block.reshape((count,) + self.eval_inputs[k].shape))))
        if out.shape != (count,) + self.out_shape:
            raise ValueError("f does not map a batch axis to a batch axis")
        return out.reshape(count, -1)

    def _first_block(self, k: int, block: np.ndarray) -> np.ndarray | None:
        """``f`` on the block in one call if ``f`` broadcasts over a leading batch axis, else None.

        Checked once per input and dtype: the batched call must give the
        output shape with a batch axis, and its last row must reproduce a
        single call to far better than the perturbation changes the value
        (this rejects functions that reduce over the whole array, such as
        ``x - x.mean()``, which would mix the rows of a batch; comparing with
        ``f(x)`` instead would not do: symmetric perturbations cancel in a mean).
        """
        before = block.copy()
        try:
            together = self._batch(k, block)
        except Exception:  # noqa: BLE001 - anything but a clean batched call means: loop
            unchanged([before], [block], "f")
            return None
        unchanged([before], [block], "f")
        last = block[-1].copy()
        alone = self._single(k, block[-1])
        unchanged([last], [block[-1]], "f")
        signal = np.abs(alone - self.f0)
        noise = 64 * machine_epsilon(self.eval_dtype) * (np.abs(alone) + np.abs(self.f0))
        if not np.all(np.abs(together[-1] - alone) <= 1e-4 * signal + noise):
            return None
        return together

    def rows(self, k: int, count: int, build: Builder, dtype: np.dtype | None = None) -> np.ndarray:
        """``f`` at ``count`` perturbed copies of input ``k`` made by ``build``: shape (count, outputs).

        Where ``f`` broadcasts over a leading batch axis, blocks of copies go
        through one call each; otherwise a tight loop calls ``f`` per copy.
        """
        dtype = np.dtype(dtype or self.eval_inputs[k].dtype)
        key = (k, dtype.str)
        values = np.empty((count, self.size), np.result_type(self.eval_dtype, dtype))
        self.evaluations += count
        block = max(1, BLOCK_ELEMENTS // max(1, self.eval_inputs[k].size))
        start = 0
        with np.errstate(all="ignore"):  # non-finite values are judged, not warned about
            if key not in self._batched and count >= 2:
                stop = min(count, block)
                first = self._first_block(k, build(0, stop))
                self._batched[key] = first is not None
                if first is not None:
                    values[:stop], start = first, stop
            if self._batched.get(key):
                for start in range(start, count, block):
                    stop = min(count, start + block)
                    values[start:stop] = self._batch(k, build(start, stop))
            else:
                for row in range(start, count):
                    values[row] = self._single(k, build(row, row + 1)[0])
        return values


def unchanged(before: Sequence[np.ndarray], after: Sequence[np.ndarray], who: str) -> None:
    """Raise when a call changed an array it was given (a mutated input shifts every later evaluation)."""
    for k, (old, new) in enumerate(zip(before, after)):
        if not np.array_equal(old, new, equal_nan=True):
            raise GradcheckInputError(f"gradcheck: input {k} was modified in place by {who}; "
                                      "f and the gradient function must leave their inputs unchanged")


def non_finite_entries(values: np.ndarray, name: str, limit: int = 5) -> str:
    """``name[i] = nan, ...`` for the first ``limit`` non-finite entries (``name = inf`` for a 0-d array)."""
    values = np.asarray(values)
    bad = np.argwhere(~np.isfinite(values))
    shown = [f"{name}{list(map(int, i)) if values.ndim else ''} = {values[tuple(i)]}" for i in bad[:limit]]
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return ", ".join(shown) + more


class element_builder:  # noqa: N801 - used like a function: element_builder(base, index, values)
    """Rows equal to ``base`` except ``row[index[r]] = values[r]`` (one element changed per row).

    One buffer of base rows is filled once and reused: each block restores the
    elements the previous block changed and sets its own, so a block costs
    O(rows), not O(rows x size) (``f`` must not modify its inputs, as with any
    gradient checker).
    """

    def __init__(self, base: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
        self.base, self.index, self.values = base, index, values
        self.buffer = np.empty((0, base.size), base.dtype)
        self.changed: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, start: int, stop: int) -> np.ndarray:
        count = stop - start
        if self.buffer.shape[0] < count:
            self.buffer = np.repeat(self.base[None, :], count, axis=0)
            self.changed = None
        if self.changed is not None:
            rows, columns = self.changed
            self.buffer[rows, columns] = self.base[columns]
        rows, columns = np.arange(count), self.index[start:stop]
        self.buffer[rows, columns] = self.values[start:stop]
        self.changed = (rows, columns)
        return self.buffer[:count]
