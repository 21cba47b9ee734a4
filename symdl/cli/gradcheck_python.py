"""``symdl gradcheck FILE.py:f``: Python targets, their inputs, and hand-written layers.

Every input of a Python target is named by its parameter or by its position
(``--shape x=3,4`` or ``--shape 0=3,4``; ``--at 1=0.5``; ``--range w=-1:1``),
so ``def f(x, *params)`` is checked with ``--shape 0=3 --shape 1=4,3`` (the
report names the extra inputs ``params[0]``, ``params[1]``, ...). Each input is

* ``--at name=v``: the value ``v`` (an array of ``--shape`` filled with it, or a scalar);
* ``--range name=lo:hi``: uniform in ``[lo, hi)``, of ``--shape`` (``--samples`` values without one);
* ``--shape name=3,4`` alone: standard normal (``name=`` for a scalar).

``--wrt`` picks the inputs checked, by name or position. Three kinds of
target share this: a function with ``--vjp`` (``vjp(v, *inputs)`` or
``grad(*inputs)``), a CS231n-style forward returning ``(out, cache)`` with
``--backward`` (``backward(dout, cache)``), and a layer object with
``--layer`` (a class or factory, called with ``--params``, or an instance).
With ``--backward``, ``--params`` gives the forward's trailing non-array
arguments: ``--params bn_param.mode=train,bn_param.eps=1e-5`` passes the dict
``{"mode": "train", "eps": 1e-5}`` as ``bn_param`` (``--params stride=2`` a
plain value), deep-copied for every call as :func:`symdl.check.check_cache_layer`
does with ``extra``.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from symdl.check.errors import GradcheckInputError


@dataclass(frozen=True)
class Slot:
    """One positional input of a Python target: its position and the name the report gives it."""

    index: int
    name: str
    keys: tuple[str, ...]  # how options may name it: the parameter name (if any) and the position


def _signature(function: Callable[..., object], target: str) -> tuple[list[tuple[str, bool]], str | None]:
    """The positional parameters ``(name, has_default)`` and the name of ``*args`` (None without)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        raise GradcheckInputError(f"{target}: cannot read the function's parameters") from None
    named = [(p.name, p.default is not p.empty) for p in parameters if p.kind in (p.POSITIONAL_ONLY,
                                                                                 p.POSITIONAL_OR_KEYWORD)]
    variadic = next((p.name for p in parameters if p.kind == p.VAR_POSITIONAL), None)
    return named, variadic


def slots(function: Callable[..., object], target: str, mentioned: set[str], until: int | None = None
          ) -> list[Slot]:
    """The inputs of ``function``: its required positional parameters, those with defaults that an option
    names, and the positions of ``*args`` that an option names (by position); only the first ``until``
    parameters when the rest are given otherwise (a forward's non-array arguments, ``--params``)."""
    named, variadic = _signature(function, target)
    if until is not None:
        given = [n for n, _ in named[until:] if n in mentioned]
        if given:
            raise GradcheckInputError(f"{given[0]} is given by --params, not as an array input")
        named, variadic = named[:until], None
    names = [n for n, _ in named]
    for key in sorted(mentioned):
        if not key.isdigit() and key not in names:
            known = ", ".join(names + ([f"*{variadic} (by position)"] if variadic else [])) or "none"
            raise GradcheckInputError(f"{target} has no parameter {key!r} (parameters: {known})")
    positions = [int(k) for k in mentioned if k.isdigit()] + [names.index(k) for k in mentioned if k in names]
    required = sum(1 for _, default in named if not default)
    count = max([required, *(p + 1 for p in positions)])
    if count > len(named) and variadic is None:
        raise GradcheckInputError(f"{target} has no parameter at position {count - 1} "
                                  f"(it takes {len(named)} positional parameters)")
    out = []
    for i in range(count):
        name = names[i] if i < len(names) else f"{variadic}[{i - len(names)}]"
        out.append(Slot(i, name, (names[i], str(i)) if i < len(names) else (str(i),)))
    return out


def _lookup(slot: Slot, values: dict[str, object], option: str) -> object | None:
    given = [k for k in slot.keys if k in values]
    if len(given) > 1:
        raise GradcheckInputError(f"{option}: {slot.name} is given twice (as {given[0]} and {given[1]})")
    return values[given[0]] if given else None


def draw_inputs(args: argparse.Namespace, target: str, inputs: list[Slot], parsed: dict[str, dict]) -> list[np.ndarray]:
    """One array per slot from ``--at``, ``--range`` and ``--shape`` (see the module docstring)."""
    rng = np.random.default_rng(args.seed)
    arrays = []
    for slot in inputs:
        at, span, shape = (_lookup(slot, parsed[o], o) for o in ("--at", "--range", "--shape"))
        if at is not None and span is not None:
            raise GradcheckInputError(f"{slot.name} has both --at and --range; give one")
        if at is not None:
            value = np.full(shape if shape is not None else (), at)
        elif span is not None:
            value = rng.uniform(*span, shape if shape is not None else (args.samples,))
        elif shape is not None:
            value = rng.standard_normal(shape)
        else:
            key = slot.keys[0]
            raise GradcheckInputError(f"no --shape, --at or --range for {slot.name!r} of {target} "
                                      f"(give --shape {key}=3,4, --shape {key}= for a scalar, or --at {key}=0.5)")
        arrays.append(np.asarray(value).astype(args.dtype))
    return arrays


def wrt_indices(args: argparse.Namespace, names: list[str], keys: list[tuple[str, ...]]) -> list[int] | None:
    """``--wrt`` (names or positions) as input indices; None for every input."""
    if not args.wrt:
        return None
    chosen = []
    for item in filter(None, (w.strip() for w in args.wrt.split(","))):
        match = [i for i, k in enumerate(keys) if item in k or item == names[i]]
        if not match:
            raise GradcheckInputError(f"--wrt: no input {item!r} (inputs: {', '.join(names)})")
        if match[0] in chosen:
            raise GradcheckInputError(f"--wrt: {item} is given twice")
        chosen.append(match[0])
    return chosen


def _constructor_arguments(text: str) -> dict[str, object]:
    """``--params n_out=4,scale=0.5,bias=true`` for a layer's constructor: ints, floats, booleans, else text."""
    from symdl.cli.gradcheck import _pairs

    values: dict[str, object] = {}
    for name, raw in _pairs([text], "--params").items():
        lowered = raw.lower()
        if lowered in ("true", "false"):
            values[name] = lowered == "true"
            continue
        for kind in (int, float):
            try:
                values[name] = kind(raw)
                break
            except ValueError:
                continue
        else:
            values[name] = raw
    return values


def _extra_arguments(function: Callable[..., object], text: str, target: str) -> tuple[int, list[object]]:
    """``--params`` of a ``--backward`` target: the forward's trailing non-array arguments, in order, and the
    position of the first. ``name.key=value`` parts build a dict ``name`` (``bn_param.mode=train``)."""
    plain: list[str] = []
    nested: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, dot, rest = part.partition(".")
        if dot and "=" in name:  # the dot is in the value (eps=0.5), not in the name
            name, dot, rest = part, "", ""
        if dot:
            nested.setdefault(name.strip(), []).append(rest)
        else:
            plain.append(part)
    values = _constructor_arguments(",".join(plain))
    for name, parts in nested.items():
        if name in values or not name.isidentifier():
            raise GradcheckInputError(f"--params: {name} is given twice" if name in values
                                      else f"--params: expected name=value or name.key=value, got {name!r}")
        values[name] = _constructor_arguments(",".join(parts))
    named, _ = _signature(function, target)
    names = [n for n, _ in named]
    unknown = [n for n in values if n not in names]
    if unknown:
        raise GradcheckInputError(f"--params: {target} has no parameter {unknown[0]!r} "
                                  f"(parameters: {', '.join(names) or 'none'})")
    positions = sorted(names.index(n) for n in values)
    first = positions[0]
    required_after = [n for n, default in named[first + len(positions):] if not default]
    if positions != list(range(first, first + len(positions))) or required_after:
        raise GradcheckInputError(f"--params: the non-array arguments of {target} must be its last parameters, "
                                  f"after the arrays; got {', '.join(names[p] for p in positions)}")
    return first, [values[names[p]] for p in positions]


def build_layer(obj: object, args: argparse.Namespace, target: str) -> object:
    """The layer object: ``obj`` called with ``--params`` when it is a class or a factory, else ``obj``."""
    if inspect.isclass(obj) or inspect.isfunction(obj):
        try:
            return obj(**_constructor_arguments(args.params))  # type: ignore[operator]
        except GradcheckInputError:
            raise
        except Exception as error:  # noqa: BLE001 - the user's constructor failed: one line
            text = " ".join(str(error).split())
            raise GradcheckInputError(f"constructing {target} failed: {type(error).__name__}: {text}") from None
    if args.params:
        raise GradcheckInputError(f"--params: {target} is an instance, not a class or factory to call")
    return obj


def run_python(args: argparse.Namespace) -> object:
    """The outcome of checking a Python target (``--vjp``, ``--backward`` or ``--layer``)."""
    from symdl.check.layers import cache_layer, object_layer
    from symdl.cli import gradcheck as cli

    kinds = [bool(args.vjp), bool(getattr(args, "backward", None)), bool(getattr(args, "layer", False))]
    if sum(kinds) != 1:
        raise GradcheckInputError("a Python target needs exactly one of --vjp file.py:df (vjp(v, *inputs) or "
                                  "grad(*inputs)), --backward file.py:backward (forward returns (out, cache)) "
                                  "or --layer (an object with forward/backward)")
    if args.grad:
        raise GradcheckInputError("--grad applies to expressions; a Python target's gradient is --vjp")
    if args.params and not (args.layer or getattr(args, "backward", None)):
        raise GradcheckInputError("--params applies to --op, --layer and --backward")
    parsed = {"--at": {k: cli._number(v, "--at") for k, v in cli._pairs(args.at, "--at").items()},
              "--range": cli._ranges(args.ranges), "--shape": cli._shapes(args.shape)}
    mentioned = set().union(*parsed.values())
    obj = cli.load_callable(args.target) if not args.layer else _load_object(args.target)
    outcome = cli.Outcome(args.target)
    if args.layer:
        layer = build_layer(obj, args, args.target)
        forward = getattr(layer, "forward", None)
        if not callable(forward):
            raise GradcheckInputError(f"--layer: {args.target} has no forward method")
        (slot, *rest) = slots(forward, args.target, mentioned) or [None]
        if slot is None or rest:
            raise GradcheckInputError(f"--layer: {args.target}.forward must take one input array")
        (x,) = draw_inputs(args, args.target, [slot], parsed)
        built = cli._evaluating(lambda: object_layer(layer, x, input_name=slot.name))
        keys = [(slot.name, "0"), *((n,) for n in built.names[1:])]
        f, vjp, inputs, names = built.f, built.vjp, list(built.inputs), list(built.names)
        title = f"{args.target}.backward"
        outcome.notes.extend(built.notes)
    else:
        until, extra = _extra_arguments(obj, args.params, args.target) if args.params else (None, [])
        found = slots(obj, args.target, mentioned, until)
        if until is not None and len(found) < until:  # the extras follow the arrays positionally: no gap between
            gap = _signature(obj, args.target)[0][len(found)][0]
            raise GradcheckInputError(f"--params: {gap} of {args.target} comes before the --params arguments; "
                                      f"give it too (--params {gap}=..., or --shape/--at {gap}=... for an array)")
        inputs = draw_inputs(args, args.target, found, parsed)
        names, keys = [s.name for s in found], [s.keys for s in found]
        if args.vjp:
            f, vjp, title = obj, cli.load_callable(args.vjp), args.vjp
        else:
            pair = cache_layer(obj, cli.load_callable(args.backward), *inputs, extra=extra, names=names)
            f, vjp, title = pair.f, pair.vjp, args.backward
        cli._unchanged_by(f, inputs, names, args.target)
    wrt = wrt_indices(args, names, keys)
    cli._choose_mode(args, inputs, wrt if wrt is not None else list(range(len(inputs))), outcome)
    outcome.checks.append((f"{title} vs finite differences", cli._check(f, inputs, vjp, args, names, wrt)))
    return outcome


def _load_object(target: str) -> object:
    """The object ``file.py:Name`` names (a class, a factory or an instance)."""
    from symdl.cli import gradcheck as cli

    location, _, name = target.rpartition(":")
    module = cli.load_module(location)
    if not hasattr(module, name):
        raise GradcheckInputError(f"{location} has no {name!r}")
    return getattr(module, name)
