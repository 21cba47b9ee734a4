r"""Gradient checks of hand-written layers, in the two shapes course and library code takes.

* **An object** with ``forward(x)``, ``backward(dout)`` and dicts of
  parameters and of their gradients (``layer.params["W"]``,
  ``layer.grads["W"]``): :func:`check_layer`. Before each evaluation the
  layer's state is restored (running statistics that ``forward`` updates,
  inputs it caches), the accumulated gradients are zeroed (``grads["W"] +=
  ...`` is common), and parameters created lazily by the first ``forward``
  exist before they are read (the helper calls ``forward`` once first).
* **A pair of functions** passing a cache, CS231n-style:
  ``forward(x, w, b) -> (out, cache)`` and ``backward(dout, cache) -> (dx,
  dw, db)``: :func:`check_cache_layer`. Extra non-array arguments (a
  ``conv_param`` or ``bn_param`` dict, which ``forward`` may update) are
  deep-copied for every call.

Both check :math:`v^T \partial\,\mathrm{out} / \partial x` and the same for
every parameter with :func:`symdl.check.gradcheck` (every mode, the same
tolerances), and return its report, with the inputs named (``x``, ``W``,
``b``).

>>> import numpy as np
>>> from symdl.check.layers import check_cache_layer
>>> def forward(x, w, b):
...     return x @ w + b, (x, w)
>>> def backward(dout, cache):
...     x, w = cache
...     return dout @ w.T, x.T @ dout, dout.sum(axis=0)
>>> rng = np.random.default_rng(0)
>>> check_cache_layer(forward, backward, rng.standard_normal((2, 3)), rng.standard_normal((3, 4)),
...                   rng.standard_normal(4)).passed
True
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from symdl.check.api import ModeName, gradcheck
from symdl.check.errors import GradcheckInputError
from symdl.check.report import GradcheckReport

__all__ = ["LayerTarget", "cache_layer", "check_cache_layer", "check_layer", "object_layer"]


@dataclass
class LayerTarget:
    """A layer as ``gradcheck`` takes it: ``f(*inputs)``, ``vjp(v, *inputs)``, the inputs and their names."""

    f: Callable[..., object]
    vjp: Callable[..., object]
    inputs: tuple[np.ndarray, ...]
    names: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    restore: Callable[[], None] = lambda: None  # noqa: E731 - puts the layer back as it was before the check

    def check(self, *, mode: ModeName = "full", rtol: float | None = None, seed: int = 0,
              wrt: Sequence[int] | None = None) -> GradcheckReport:
        """:func:`symdl.check.gradcheck` of this layer."""
        try:
            report = gradcheck(self.f, self.inputs, self.vjp, mode=mode, rtol=rtol, seed=seed, wrt=wrt,
                               names=self.names, kind="vjp")
        finally:
            self.restore()
        report.notes.extend(self.notes)
        return report


# --------------------------------------------------------------------------- forward/backward with a cache
def _parameter_names(function: Callable[..., object], count: int) -> tuple[str, ...]:
    """The names of ``function``'s first ``count`` positional parameters (``input k`` past them)."""
    try:
        names = [p.name for p in inspect.signature(function).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        names = []
    return tuple(names[k] if k < len(names) else f"input {k}" for k in range(count))


def cache_layer(forward: Callable[..., tuple[object, object]], backward: Callable[..., object],
                *inputs: np.ndarray, extra: Sequence[object] = (), names: Sequence[str] | None = None
                ) -> LayerTarget:
    """A CS231n-style pair ``forward(*inputs, *extra) -> (out, cache)``, ``backward(dout, cache) -> grads``.

    ``backward`` returns one gradient per array input (a single array for one
    input). ``extra`` arguments (``conv_param``, ``bn_param``) follow the
    arrays and are deep-copied for every call, so running statistics that
    ``forward`` writes into them never leak from one evaluation into the next.
    """
    if not inputs:
        raise GradcheckInputError("check_cache_layer: give the forward function's array inputs")
    extra = tuple(extra)

    def run(arrays: Sequence[np.ndarray]) -> tuple[object, object]:
        result = forward(*arrays, *copy.deepcopy(extra))
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise GradcheckInputError("check_cache_layer: forward must return (out, cache)")
        return result[0], result[1]

    def f(*arrays: np.ndarray) -> object:
        return run(arrays)[0]

    def vjp(v: np.ndarray, *arrays: np.ndarray) -> object:
        grads = backward(v, copy.deepcopy(run(arrays)[1]))
        return tuple(grads) if isinstance(grads, (tuple, list)) else grads

    arrays = tuple(np.asarray(x) for x in inputs)
    return LayerTarget(f, vjp, arrays, tuple(names) if names else _parameter_names(forward, len(arrays)))


def check_cache_layer(forward: Callable[..., tuple[object, object]], backward: Callable[..., object],
                      *inputs: np.ndarray, extra: Sequence[object] = (), names: Sequence[str] | None = None,
                      mode: ModeName = "full", rtol: float | None = None, seed: int = 0,
                      wrt: Sequence[int] | None = None) -> GradcheckReport:
    """Check a forward/backward pair passing a cache (:func:`cache_layer`); the report names the inputs."""
    return cache_layer(forward, backward, *inputs, extra=extra, names=names).check(mode=mode, rtol=rtol, seed=seed,
                                                                                   wrt=wrt)


# --------------------------------------------------------------------------- objects with parameter dicts
def _read(layer: object, what: str | Callable[[object], Mapping[str, object]], role: str) -> Mapping[str, object]:
    """``layer.<what>`` (called if it is a method) or ``what(layer)``: a mapping name -> array."""
    value = what(layer) if callable(what) else getattr(layer, what, None)
    if callable(value) and not isinstance(value, Mapping):
        value = value()
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise GradcheckInputError(f"check_layer: the layer's {role} ({what!r}) must be a dict of name -> array, "
                                  f"got {type(value).__name__}")
    return value


def _replace(container: object, old: object, new: np.ndarray, seen: set[int]) -> None:
    """Every reference to ``old`` in the layer's attributes, dicts and lists (recursively) becomes ``new``:
    a parameter held both as ``self.W`` and as ``self.params["W"]`` stays one array."""
    if id(container) in seen:
        return
    seen.add(id(container))
    items: list[tuple[object, object]]
    if isinstance(container, dict):
        items = list(container.items())
    elif isinstance(container, list):
        items = list(enumerate(container))
    elif hasattr(container, "__dict__") and not isinstance(container, (np.ndarray, type)):
        items = list(vars(container).items())
        container = vars(container)
    else:
        return
    for key, value in items:
        if value is old:
            container[key] = new  # type: ignore[index]
        elif isinstance(value, (dict, list)) or (hasattr(value, "__dict__") and not isinstance(
                value, (np.ndarray, type)) and not callable(value)):
            _replace(value, old, new, seen)


def object_layer(layer: object, x: np.ndarray, *, params: str | Callable[[object], Mapping[str, object]] = "params",
                 grads: str | Callable[[object], Mapping[str, object]] = "grads", forward: str = "forward",
                 backward: str = "backward", input_name: str = "x") -> LayerTarget:
    r"""An object ``layer`` with ``forward(x)``, ``backward(dout) -> dx`` and parameter/gradient dicts.

    ``params`` and ``grads`` name the attributes (or methods) holding
    ``name -> array``; ``backward`` may fill ``grads`` by assignment or by
    ``+=``. The checked inputs are ``x`` and every parameter, named by its key.

    * ``forward`` is called once first, so that lazily created parameters exist;
    * the layer's whole state (``vars(layer)``, deep-copied) is restored before
      every evaluation, so running statistics and caches written by
      ``forward`` never change a later evaluation;
    * the gradients are zeroed before every ``backward``, so accumulation with
      ``+=`` reports one call's gradient;
    * a parameter is replaced by the value being evaluated everywhere the layer
      refers to it (an array held as ``self.W`` and ``self.params["W"]``);
    * after the check the layer holds its own objects again, as after one
      ``forward`` call (:meth:`LayerTarget.check` restores it).
    """
    for method in (forward, backward):
        if not callable(getattr(layer, method, None)):
            raise GradcheckInputError(f"check_layer: the layer has no method {method!r}")
    x = np.asarray(x)
    getattr(layer, forward)(x.copy())  # lazy initialisation: parameters may only exist after a first call
    parameters = dict(_read(layer, params, "parameters"))
    if not parameters:
        raise GradcheckInputError(f"check_layer: the layer's {params!r} holds no parameters after a forward call")
    names = tuple(parameters)
    # Restored (deep-copied again) before every evaluation; the evaluation then swaps in the values being tried.
    # The layer's own objects are put back at the end, untouched since (evaluations work on copies).
    snapshot, original = copy.deepcopy(vars(layer)), dict(vars(layer))

    def restore() -> None:
        vars(layer).clear()
        vars(layer).update(original)

    def prepare(values: Sequence[np.ndarray]) -> None:
        state = copy.deepcopy(snapshot)
        vars(layer).clear()
        vars(layer).update(state)
        current = _read(layer, params, "parameters")
        for name, value in zip(names, values):
            _replace(layer, current[name], np.array(value, copy=True), set())

    def f(x_value: np.ndarray, *values: np.ndarray) -> object:
        prepare(values)
        return getattr(layer, forward)(np.array(x_value, copy=True))

    def vjp(v: np.ndarray, x_value: np.ndarray, *values: np.ndarray) -> tuple[object, ...]:
        prepare(values)
        for g in _read(layer, grads, "gradients").values():
            if isinstance(g, np.ndarray) and g.flags.writeable:
                g[...] = 0  # accumulated gradients: one backward's worth is what is checked
        getattr(layer, forward)(np.array(x_value, copy=True))
        dx = getattr(layer, backward)(v)
        if isinstance(dx, (tuple, list)):
            dx = dx[0]
        found = _read(layer, grads, "gradients")
        return (None if dx is None else np.array(dx, copy=True),
                *(None if found.get(n) is None else np.array(found[n], copy=True) for n in names))

    inputs = (x, *(np.array(parameters[n], copy=True) for n in names))
    return LayerTarget(f, vjp, inputs, (input_name, *names),
                       [f"layer {type(layer).__name__}: state restored before every evaluation, gradients zeroed "
                        "before every backward; left as after one forward call"], restore)


def check_layer(layer: object, x: np.ndarray, *, params: str | Callable[[object], Mapping[str, object]] = "params",
                grads: str | Callable[[object], Mapping[str, object]] = "grads", forward: str = "forward",
                backward: str = "backward", mode: ModeName = "full", rtol: float | None = None, seed: int = 0,
                input_name: str = "x") -> GradcheckReport:
    """Check a layer object's ``backward`` for its input and every parameter (:func:`object_layer`).

    >>> import numpy as np
    >>> class Dense:
    ...     def __init__(self, n_out):
    ...         self.n_out, self.params, self.grads = n_out, {}, {}
    ...     def forward(self, x):
    ...         if not self.params:  # lazy: the input size is known at the first call
    ...             rng = np.random.default_rng(0)
    ...             self.params = {"W": rng.standard_normal((x.shape[-1], self.n_out)), "b": np.zeros(self.n_out)}
    ...             self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
    ...         self.x = x
    ...         return x @ self.params["W"] + self.params["b"]
    ...     def backward(self, dout):
    ...         self.grads["W"] += self.x.T @ dout   # accumulates, as many libraries do
    ...         self.grads["b"] += dout.sum(axis=0)
    ...         return dout @ self.params["W"].T
    >>> check_layer(Dense(4), np.ones((2, 3))).passed
    True
    """
    target = object_layer(layer, x, params=params, grads=grads, forward=forward, backward=backward,
                          input_name=input_name)
    return target.check(mode=mode, rtol=rtol, seed=seed)
