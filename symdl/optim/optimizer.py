"""The optimizer base class: param groups, per-parameter state, validation, ``step(grads)``.

Mirrors ``torch.optim.Optimizer`` over NumPy arrays: ``param_groups`` is a list
of dicts holding ``"params"`` and every hyper-parameter (schedulers write
``group["lr"]``), ``state`` maps a parameter's index to its state dict, and
``state_dict()``/``load_state_dict()`` use the same layout as torch (state
keyed by the parameter's position across groups). The update itself is a
generated kernel (:mod:`symdl.optim._generated`) working in place on the
parameter, its state and scratch buffers allocated once per optimizer.
Large contiguous parameters are updated in blocks of :data:`BLOCK_BYTES`: the
kernel makes several passes (one per ufunc), and on a block that fits in the
L2 cache those passes read cache instead of memory (1.5-2x faster at 1e6
elements). The update is elementwise, so blocking does not change a bit.
Small parameters go the other way: a group's small parameters of one dtype are
updated together, by one kernel call over flat arrays (:mod:`symdl.optim.packing`).

Everything is checked before any array is written: the hyper-parameters of
every group and the shape and dtype of every gradient. ``None`` gradients
skip their parameter, as torch skips parameters whose ``.grad`` is None.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from symdl.errors import OpInputError, OpParameterError, OpTypeError
from symdl.optim import packing

__all__ = ["Optimizer"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _is_real(value: object) -> bool:
    # type() first: the ABC check costs ~10x more, and this runs for every hyper-parameter every step
    return type(value) in (float, int) or (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)))


def _typed(value: object) -> tuple:
    """``value`` with its type (and its items', for betas), so that equal values of different
    types (1 and True, 0.9 and np.float32(0.9)) key different checks. Lists raise TypeError."""
    if type(value) is tuple:
        return (tuple, tuple(_typed(item) for item in value))
    hash(value)
    return (type(value), value)


#: What each kind of hyper-parameter must be (``pair``: betas), and how an error says it.
_KINDS: dict[str, Callable[[object], bool]] = {
    "bool": lambda v: isinstance(v, (bool, np.bool_)),
    "real": _is_real,
    "pair": lambda v: isinstance(v, Sequence) and len(v) == 2 and all(map(_is_real, v)),
}
_WANTED = {"bool": "True or False", "real": "a real number", "pair": "a pair of real numbers"}

#: Bytes of each array a kernel call sees at once when a parameter is updated
#: block by block (``scripts/bench_optim.py``: 64-256 KiB are within a few per
#: cent of each other on a 2.5 MiB L2 for Adam; SGD, with the least work per
#: block, prefers the larger end, and smaller blocks pay more Python per block).
BLOCK_BYTES = 256 * 1024


class Optimizer:
    """Base class; subclasses are generated from the update-rule catalog.

    Class attributes set by each generated subclass: ``_name`` (torch's class
    name), ``_hypers`` ((name, kind) pairs in signature order; kind ``real``,
    ``bool`` or ``pair``), ``_array_states``/``_scalar_states`` (state keys),
    ``_scratch`` (scratch buffers the kernel needs), ``_kernel``, ``_broken``
    (first broken constraint or None), ``_init`` (creates the state) and
    ``_one_pass`` (whether these hyper-parameters make the step one pass).
    """

    _name: ClassVar[str] = "Optimizer"
    _hypers: ClassVar[tuple[tuple[str, str], ...]] = ()
    _array_states: ClassVar[tuple[str, ...]] = ()
    _scalar_states: ClassVar[tuple[str, ...]] = ()
    _scratch: ClassVar[int] = 0
    _kernel: ClassVar[Callable[..., tuple]]
    _broken: ClassVar[Callable[..., str | None]]
    _init: ClassVar[Callable[..., None]]
    _one_pass: ClassVar[Callable[..., bool]]

    def __init__(self, params: Iterable[np.ndarray] | Iterable[dict[str, Any]], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: dict[int, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        self._buffers: dict[tuple[tuple[int, ...], np.dtype], list[np.ndarray]] = {}
        self._checked: dict[tuple, list[Any]] = {}  # hyper-parameter values (typed) -> kernel arguments
        self._last_checked: dict[int, tuple[dict, list, list]] = {}  # id(group) -> (group, values, arguments)
        self._initialised: dict[int, tuple[dict, list]] = {}  # parameter index -> (state, arguments) at init
        self._pack_plans: dict[int, tuple[list[list[int]], list[int]]] = {}  # group -> (packs' members, the rest)
        self._packs: dict[tuple[int, np.dtype], packing.Pack] = {}
        groups = list(params)
        if not groups:
            raise OpInputError(f"{self._name}: params must be a non-empty list of arrays")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- groups ------------------------------------------------------------------------
    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyper-parameters (missing ones take the defaults)."""
        if not isinstance(group, dict) or "params" not in group:
            raise OpInputError(f"{self._name}: a param group must be a dict with 'params'")
        params = group["params"]
        params = [params] if isinstance(params, np.ndarray) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for index, p in enumerate(params):
            if not isinstance(p, np.ndarray) or p.dtype not in _FLOATS:
                raise OpTypeError(f"{self._name}: params[{index}] must be a float32 or float64 NumPy array, "
                                  f"got {type(p).__name__}{'' if not isinstance(p, np.ndarray) else ' ' + str(p.dtype)}")
            if not p.flags.writeable:
                raise OpInputError(f"{self._name}: params[{index}] must be writeable (it is updated in place)")
            if id(p) in seen:
                raise OpInputError(f"{self._name}: params[{index}] appears in more than one place")
            seen.add(id(p))
        full = {**self.defaults, **group, "params": params}
        self._check_group(full)
        self.param_groups.append(full)

    def _kernel_args(self, group: dict[str, Any]) -> list[Any]:
        """The group's hyper-parameters as kernel arguments (``betas`` gives two)."""
        args: list[Any] = []
        for name, kind in self._hypers:
            value = group[name]
            args.extend((float(value[0]), float(value[1])) if kind == "pair" else
                        (bool(value),) if kind == "bool" else (float(value),))
        return args

    def _check_group(self, group: dict[str, Any]) -> list[Any]:
        """The group's kernel arguments; raise OpParameterError naming the optimizer and the rule
        its hyper-parameters break.

        This runs every step (a scheduler or the user may have written ``group["lr"]``). Arguments
        are remembered by the hyper-parameters' values *and types*, so values seen before are not
        checked again, while a changed, NaN or wrongly typed one (1 for True) always is.
        """
        values = [group[name] for name, _ in self._hypers]
        last = self._last_checked.get(id(group))
        if last is not None and last[0] is group and all(map(operator.is_, values, last[1])):
            return last[2]  # the very objects of the last step (immutable: hashable numbers and tuples)
        try:
            key = tuple(map(_typed, values))
            remembered = self._checked.get(key)
        except TypeError:  # an unhashable value (a list of betas): check it the long way
            key, remembered = None, None
        args = self._check_values(group) if remembered is None else remembered
        if key is not None:
            if len(self._checked) >= 64:  # a schedule makes a new lr every step: keep the table small
                self._checked.clear()
            self._checked[key] = args
            self._last_checked[id(group)] = (group, values, args)
        return args

    def _check_values(self, group: dict[str, Any]) -> list[Any]:
        for name, kind in self._hypers:
            value = group[name]
            if not _KINDS[kind](value):
                raise OpParameterError(f"{self._name}: {name} must be {_WANTED[kind]}, got {value!r}")
        args = self._kernel_args(group)
        if not all(map(math.isfinite, args)):
            name = next(n for n, k in self._hypers if k != "bool" and not np.all(np.isfinite(group[n])))
            raise OpParameterError(f"{self._name}: {name} must be finite, got {group[name]!r}")
        broken = self._broken(*args)
        if broken is not None:
            values = ", ".join(f"{n}={group[n]!r}" for n, _ in self._hypers)
            raise OpParameterError(f"{self._name}: {broken} ({values})")
        return args

    # -- stepping ------------------------------------------------------------------------
    def _params(self) -> list[np.ndarray]:
        return [p for g in self.param_groups for p in g["params"]]

    def _check_grads(self, grads: Sequence[np.ndarray | None]) -> None:
        params = self._params()
        if isinstance(grads, np.ndarray) or len(grads) != len(params):
            count = "an array" if isinstance(grads, np.ndarray) else f"{len(grads)} gradients"
            raise OpInputError(f"{self._name}: step needs one gradient per parameter ({len(params)}), got {count}")
        for index, (p, g) in enumerate(zip(params, grads)):
            # one cheap test for the usual case; the exact one, with its message, only on suspicion.
            # A gradient that owns its memory (base None: its own allocation) overlaps the parameter
            # only if it is the parameter or the array the parameter views (a parameter of a
            # flattened model is a view): np.shares_memory, the costliest test, runs for views only.
            if g is not None and (type(g) is not np.ndarray or g.shape != p.shape or g.dtype != p.dtype
                                  or g is p or p.base is g or (g.base is not None and np.shares_memory(g, p))):
                self._check_grad(index, p, g)

    def _check_grad(self, index: int, p: np.ndarray, g: object) -> None:
        """Raise the error naming what is wrong with ``grads[index]`` (an ndarray subclass may pass)."""
        if not isinstance(g, np.ndarray):
            raise OpTypeError(f"{self._name}: grads[{index}] must be a NumPy array, got {type(g).__name__}")
        if g.shape != p.shape:
            raise OpInputError(f"{self._name}: grads[{index}] has shape {g.shape}, its parameter {p.shape}; "
                               "shapes must match")
        if g.dtype != p.dtype:
            raise OpTypeError(f"{self._name}: grads[{index}] is {g.dtype}, its parameter {p.dtype}; "
                              "dtypes must match")
        if np.shares_memory(g, p):
            raise OpInputError(f"{self._name}: grads[{index}] shares memory with its parameter")

    def _scratch_for(self, shape: tuple[int, ...], dtype: np.dtype) -> list[np.ndarray]:
        """The kernel's scratch buffers of ``shape`` (a parameter's, or one block's), allocated once
        and shared by every parameter that needs that shape."""
        buffers = self._buffers.get((shape, dtype))
        if buffers is None:
            buffers = self._buffers[shape, dtype] = [np.empty(shape, dtype) for _ in range(self._scratch)]
        return buffers

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        """One update of every parameter from its gradient (in the order the parameters were given)."""
        self._check_grads(grads)
        group_args = [self._check_group(group) for group in self.param_groups]
        # The loop below runs once per large parameter per step; what does not change within a
        # step is bound once, here (its Python costs about a microsecond per parameter).
        prepared, run, array_names, scalar_names = self._prepared, self._run, self._array_states, self._scalar_states
        start = 0
        for number, (group, args) in enumerate(zip(self.param_groups, group_args)):
            params = group["params"]
            for position in self._step_packs(number, start, params, grads, args):
                g = grads[start + position]
                if g is not None:
                    state = prepared(start + position, params[position], args)
                    state["step"] = step = state["step"] + 1
                    new = run(params[position], g, list(map(state.get, array_names)), step,
                              list(map(state.__getitem__, scalar_names)) if scalar_names else (), args)
                    if new:
                        state.update(zip(scalar_names, new))
            start += len(params)

    def _prepared(self, index: int, param: np.ndarray, args: list[Any]) -> dict[str, Any]:
        """Parameter ``index``'s state, created on its first step. The state a flag needs is created
        when the flag turns on: once per state and kernel arguments (``_check_group`` returns the
        same list while nothing changes)."""
        state = self.state.get(index)
        if state is None:
            state = self.state[index] = {"step": 0}
        done = self._initialised.get(index)
        if done is None or done[1] is not args or done[0] is not state:
            self._init(state, param, *args)
            self._initialised[index] = (state, args)
        return state

    def _step_packs(self, number: int, start: int, params: list[np.ndarray], grads: Sequence[np.ndarray | None],
                    args: list[Any]) -> list[int]:
        """Update group ``number``'s small parameters pack by pack (:mod:`symdl.optim.packing`);
        return the positions (within the group) still to update one by one."""
        plan = self._pack_plans.get(number)
        if plan is None:
            packed = packing.packable(params)
            alone = sorted(set(range(len(params))).difference(*packed.values()))
            plan = self._pack_plans[number] = (list(packed.values()), alone)
        members_by_dtype, alone = plan
        if not members_by_dtype:
            return alone
        alone = list(alone)
        for members in members_by_dtype:
            if not self._step_pack(number, [start + m for m in members], [params[m] for m in members], grads, args):
                alone += members
        return alone

    def _step_pack(self, number: int, indices: list[int], params: list[np.ndarray],
                   grads: Sequence[np.ndarray | None], args: list[Any]) -> bool:
        """One kernel call for the parameters at ``indices``; False (nothing done) when they cannot
        share one this step: a gradient is None, or their step counts or scalar states differ."""
        member_grads = [grads[i] for i in indices]
        if any(g is None for g in member_grads):
            return False
        pack = self._packs.get((number, params[0].dtype))
        states = list(map(self.state.get, indices))
        # The usual step: the same arguments and state dicts as the last packed step, whose entries
        # still are the pack's views; anything else (a first step, a flag switched on, a loaded or
        # edited state) prepares the states and, if need be, packs them again.
        if pack is None or pack.args is not args or not all(map(operator.is_, states, pack.states)) \
                or not packing.holds(pack, states, self._array_states):
            states = [self._prepared(i, p, args) for i, p in zip(indices, params)]
            if pack is None or pack.positions != indices or not packing.holds(pack, states, self._array_states):
                pack = packing.build(indices, params, states, self._array_states)
                if pack is None:
                    return False
                self._packs[number, params[0].dtype] = pack
            pack.args, pack.states = args, states
        step = states[0]["step"]
        scalars = [states[0][name] for name in self._scalar_states]
        if any(s["step"] != step for s in states) or (
                scalars and any([s[name] for name in self._scalar_states] != scalars for s in states)):
            return False
        pack.gather(member_grads)
        new = self._run(pack.flat_param, pack.flat_grad, pack.flat_states, step + 1, scalars, args)
        pack.scatter()
        for state in states:
            state["step"] = step + 1
        if new:
            for state in states:
                state.update(zip(self._scalar_states, new))
        return True

    def _run(self, p: np.ndarray, g: np.ndarray, arrays: list[np.ndarray | None], step: int, scalars: Sequence[Any],
             args: list[Any]) -> tuple:
        """The kernel on one parameter (or one pack's flat arrays): in one call, or block by block
        when it is large and contiguous and the step makes more than one pass over it."""
        if p.nbytes <= BLOCK_BYTES or self._one_pass(*args) or not all(
                a is None or a.flags.c_contiguous for a in (p, g, *arrays)):
            scratch = self._buffers.get((p.shape, p.dtype)) or self._scratch_for(p.shape, p.dtype)
            return self._kernel(p, g, *arrays, scratch, step, *scalars, *args)
        return self._update_blocks(p, g, arrays, step, scalars, args)

    def _update_blocks(self, p: np.ndarray, g: np.ndarray, arrays: list[np.ndarray | None], step: int,
                       scalars: list[Any], args: list[Any]) -> tuple:
        """The kernel on consecutive blocks of the flattened (contiguous) arrays. Scalar states
        depend on scalars only, so every block computes the same new values from the same old ones."""
        flat = [None if a is None else a.reshape(-1) for a in (p, g, *arrays)]
        scratch = self._scratch_for((BLOCK_BYTES // p.itemsize,), p.dtype)
        size, block, kernel, tail = p.size, scratch[0].size, self._kernel, (step, *scalars, *args)
        new: tuple = ()
        for start in range(0, size, block):
            if size - start < block:  # the last, partial block
                scratch = [s[:size - start] for s in scratch]
            piece = slice(start, start + block)
            new = kernel(*[None if a is None else a[piece] for a in flat], scratch, *tail)
        return new

    def zero_state(self) -> None:
        """Forget every parameter's state (step counts, moments), as if no step had been taken."""
        self.state.clear()
        self._initialised.clear()
        self._packs.clear()

    # -- saving ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data: ``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``.

        Arrays are copies (a saved state does not change as training goes on);
        everything else is Python scalars, lists and dicts.
        """
        groups, start = [], 0
        for group in self.param_groups:
            saved = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
            saved["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(saved)
        state = {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for i, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` exactly (checked completely before anything changes)."""
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if not isinstance(groups, list) or len(groups) != len(self.param_groups):
            raise OpInputError(f"{self._name}: load_state_dict needs {len(self.param_groups)} param groups")
        for saved, group in zip(groups, self.param_groups):
            if len(saved.get("params", ())) != len(group["params"]):
                raise OpInputError(f"{self._name}: a saved param group has a different number of parameters")
        params = self._params()
        new_state: dict[int, dict[str, Any]] = {}
        for key, saved in dict(state_dict.get("state", {})).items():
            index = int(key)
            if not 0 <= index < len(params):
                raise OpInputError(f"{self._name}: state for parameter {index}, which does not exist")
            entry = {}
            for name, value in saved.items():
                if isinstance(value, np.ndarray):
                    if value.shape != params[index].shape:
                        raise OpInputError(f"{self._name}: saved {name} of parameter {index} has shape "
                                           f"{value.shape}, the parameter {params[index].shape}")
                    value = np.array(value, dtype=params[index].dtype, copy=True)
                entry[name] = value
            new_state[index] = entry
        new_groups = []
        for saved, group in zip(groups, self.param_groups):
            restored = {**group, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items()
                                    if k != "params"}}
            restored["params"] = group["params"]
            self._check_group(restored)
            new_groups.append(restored)
        self.param_groups[:] = new_groups
        self.state = new_state
        self._initialised.clear()
        self._packs.clear()
        self._last_checked.clear()

    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])
