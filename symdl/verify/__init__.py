"""``symdl verify``: re-derive every catalog entry, prove its closed forms and check its kernels.

One module per family, each exposing ``names() -> list[str]`` (its rows' names, unique across
the catalog) and ``verify(names, *, use_cache) -> list[VerifyRow]``:

* :mod:`~symdl.verify.ops`: activations and losses (proofs, finite differences, ulp errors
  against the mpmath reference of :mod:`~symdl.verify.reference`, finiteness at the extremes);
* :mod:`~symdl.verify.optimizers`: update rules against their SymPy assignments evaluated
  directly (:mod:`~symdl.verify.rule_eval`, :mod:`~symdl.verify.rounding`), and derived facts;
* :mod:`~symdl.verify.layers`: layers against SymPy's derivative of their index-level definitions.

:mod:`~symdl.verify.row` holds what they share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

from symdl.errors import UnknownOpError
from symdl.verify import layers, ops, optimizers
from symdl.verify.row import VerifyRow

__all__ = ["SECTIONS", "VerifyRow", "plan", "verify_everything"]

#: The sections of the table, in the order they print.
SECTIONS: tuple[ModuleType, ...] = (ops, optimizers, layers)


def plan(names: Sequence[str] | None = None) -> dict[ModuleType, list[str]]:
    """The rows ``names`` select in each section (default: every row, in :data:`SECTIONS`' order).

    The catalog's ops come first (they are verified in parallel); the other sections follow in
    the order their first name was asked for.
    """
    by_name = {name: section for section in SECTIONS for name in section.names()}
    unknown = [n for n in names or () if n not in by_name]
    if unknown:
        raise UnknownOpError(f"unknown op {unknown[0]!r}; `symdl kernels` lists the ops")
    chosen: dict[ModuleType, list[str]] = {ops: []}
    for name in names or by_name:
        chosen.setdefault(by_name[name], []).append(name)
    return {section: rows for section, rows in chosen.items() if rows}


def row_count(chosen: dict[ModuleType, list[str]]) -> int:
    """How many rows verifying ``chosen`` prints (an op with variants prints one per variant)."""
    return sum(ops.row_count(rows) if section is ops else len(rows) for section, rows in chosen.items())


def verify_everything(names: Sequence[str] | None = None, *, use_cache: bool = True,
                      on_done: Callable[[], None] = lambda: None) -> list[VerifyRow]:
    """The whole verify table: the catalog's ops (in parallel processes), optimizers and facts, layers."""
    rows: list[VerifyRow] = []
    for section, chosen in plan(names).items():
        rows += section.verify(chosen, use_cache=use_cache, on_done=on_done)
    return rows
