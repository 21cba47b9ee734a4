"""Small parameters updated together: one kernel call over flat arrays instead of one per parameter.

A network's biases and small weights cost the update kernel's per-call overhead (about a
microsecond per NumPy call, ten calls per parameter, plus the Python around them) many times
over their arithmetic: Adam over the six parameters of a small CNN (6,090 numbers) takes about
80 us one parameter at a time and 25-45 us packed. So the optimizer keeps the state of a
group's small parameters of one dtype in flat buffers, each parameter's state entries being
views into them (``optimizer.state`` looks as before, and ``state_dict`` copies them as
before). A step gathers the gradients (and the parameters, unless they already are
consecutive pieces of one buffer, see :func:`consecutive`) into flat arrays, runs the kernel
once and copies the parameters back.

Every update rule is elementwise, so a packed step ends bit for bit where one kernel call per
parameter does (``tests/test_optim_packing.py``).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PACK_BYTES", "Pack", "build", "consecutive", "holds", "packable"]

#: Parameters of at most this many bytes are packed, and consecutive views of one buffer of at most
#: twice as many. Gathering and scattering a parameter costs two passes over it, cheaper than the
#: calls it saves up to about this size; views have nothing to copy (``scripts/bench_packing.py``,
#: docs/bench_packing.md: Adam over 16 parameters of 16 KiB, 0.8x the time gathered and 0.65x in
#: place; of 32 KiB, 1.1-1.2x gathered and 0.85-0.95x in place; of 1 KiB, 0.3-0.4x and 0.3x).
PACK_BYTES = 16 * 1024


@dataclass
class Pack:
    """Flat storage for the parameters at ``positions`` (indices into ``optimizer.state``)."""

    positions: list[int]
    params: list[np.ndarray]
    flat_param: np.ndarray
    #: ``flat_param`` is the parameters' own memory (nothing to gather or scatter).
    shares_memory: bool
    flat_grad: np.ndarray
    #: One flat buffer per array state of the rule (None where these hyper-parameters keep none).
    flat_states: list[np.ndarray | None]
    #: Per member, per array state: the view of ``flat_states`` its state entry must be.
    views: list[list[np.ndarray | None]]
    #: The kernel arguments and the members' state dicts of the last packed step (the optimizer's).
    args: list[Any] | None = None
    states: list[dict[str, Any]] = field(default_factory=list)

    def gather(self, grads: Sequence[np.ndarray]) -> None:
        """Copy the members' gradients (and parameters, unless shared) into the flat arrays."""
        np.concatenate(grads, axis=None, out=self.flat_grad)
        if not self.shares_memory:
            np.concatenate(self.params, axis=None, out=self.flat_param)

    def scatter(self) -> None:
        """Copy the updated flat parameters back into the members (unless shared)."""
        if not self.shares_memory:
            for param, piece in zip(self.params, _pieces(self.flat_param, self.params)):
                np.copyto(param, piece)


def packable(params: Sequence[np.ndarray]) -> dict[np.dtype, list[int]]:
    """Positions (within ``params``) of the parameters to pack, by dtype (dtypes with one left out):
    those of at most ``2 * PACK_BYTES`` if they are consecutive views of one buffer, else those of
    at most ``PACK_BYTES``."""
    by_dtype: dict[np.dtype, list[int]] = {}
    for position, param in enumerate(params):
        if param.nbytes <= 2 * PACK_BYTES:
            by_dtype.setdefault(param.dtype, []).append(position)
    packs = {}
    for dtype, positions in by_dtype.items():
        if consecutive([params[i] for i in positions]) is None:
            positions = [i for i in positions if params[i].nbytes <= PACK_BYTES]
        if len(positions) > 1:
            packs[dtype] = positions
    return packs


def _pieces(flat: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Views of consecutive pieces of ``flat``, shaped like each array of ``like``."""
    pieces, start = [], 0
    for array in like:
        pieces.append(flat[start:start + array.size].reshape(array.shape))
        start += array.size
    return pieces


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def consecutive(params: Sequence[np.ndarray]) -> np.ndarray | None:
    """A flat view over ``params`` when they are C-contiguous pieces of one buffer, in order and
    without gaps (as ``symdl.nn`` lays out a model's parameters), else None."""
    base = params[0].base
    if not isinstance(base, np.ndarray) or not base.flags.c_contiguous:
        return None
    address = _address(params[0])
    for param in params:
        if param.base is not base or not param.flags.c_contiguous or _address(param) != address:
            return None
        address += param.nbytes
    flat = base.reshape(-1)  # a view: base is contiguous
    start = (_address(params[0]) - _address(flat)) // flat.itemsize
    view = flat[start:start + sum(p.size for p in params)]
    return view if view.dtype == params[0].dtype and view.flags.writeable else None


def build(positions: list[int], params: list[np.ndarray], states: list[dict[str, Any]],
          names: Sequence[str]) -> Pack | None:
    """A pack adopting the members' current state arrays (copied into flat buffers, the entries
    replaced by views), or None when the members keep different sets of state arrays."""
    dtype, size = params[0].dtype, sum(p.size for p in params)
    flat_states: list[np.ndarray | None] = []
    views: list[list[np.ndarray | None]] = [[] for _ in params]
    for name in names:
        arrays = [state.get(name) for state in states]
        if all(a is None for a in arrays):
            flat_states.append(None)
            for member in views:
                member.append(None)
            continue
        if any(a is None or a.shape != p.shape for a, p in zip(arrays, params)):
            return None
        flat = np.concatenate(arrays, axis=None).astype(dtype, copy=False)
        flat_states.append(flat)
        for member, state, piece in zip(views, states, _pieces(flat, params)):
            state[name] = piece
            member.append(piece)
    shared = consecutive(params)
    return Pack(positions=positions, params=params,
                flat_param=np.empty(size, dtype) if shared is None else shared, shares_memory=shared is not None,
                flat_grad=np.empty(size, dtype), flat_states=flat_states, views=views)


def holds(pack: Pack, states: list[dict[str, Any]], names: Sequence[str]) -> bool:
    """Whether every member's state entries still are the pack's views (not after ``zero_state``,
    ``load_state_dict``, a flag that adds a state, or a user's assignment)."""
    return all(all(map(operator.is_, map(state.get, names), views)) for state, views in zip(states, pack.views))
