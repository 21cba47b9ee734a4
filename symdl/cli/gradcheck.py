"""``symdl gradcheck``: check a gradient from the command line.

Three kinds of target:

* an expression: ``symdl gradcheck "x*sigmoid(x)" --at x=0.5`` (or ``--range
  x=-5:5 --samples 200``) checks SymPy's derivative against finite
  differences; ``--grad "..."`` also checks a hand-written derivative against
  both. ``--wrt w,b`` picks the variables, ``--shape x=3,4`` makes one an array.
  Expressions are parsed safely (:mod:`symdl.expr`), never evaluated.
* Python code: ``symdl gradcheck file.py:f --vjp file.py:df --shape x=3,4``
  (or ``package.module:f``); one input per parameter of ``f``, named or by
  position (``--at 1=0.5``, ``--range x=-1:1``, ``--shape 0=3,4``; standard
  normal from ``--shape`` alone), ``--wrt`` picks some; ``--backward`` for a
  forward returning ``(out, cache)``, ``--layer`` for a layer object
  (:mod:`symdl.cli.gradcheck_python`).
* a catalog op: ``symdl gradcheck --op gelu --params approximate=tanh``
  re-checks the shipped kernel on inputs from the op's domains.

Output is a table (``--json`` for machines). Exit 0 when every gradient
matches, 1 when one does not, 2 for bad usage or bad input.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from symdl.check.errors import GradcheckInputError
from symdl.check.syntax import normalized
from symdl.cli.usercode import DEFAULT_TIMEOUT, MAX_TIMEOUT, run_guarded

HELP = "check a gradient (expression, Python function or catalog op) against finite differences"
#: Checked input elements past which the default full mode (2 evaluations of f per element, so a cost
#: quadratic in the size: 41 s at 1e5 elements on the 2-core test machine) gives way to fast mode.
_FULL_MODE_ELEMENTS = 20_000
#: Seconds full mode took on 1e5 elements of an elementwise f there (its estimate scales with the size squared).
_FULL_MODE_SECONDS_AT_1E5 = 41.0
#: Largest --samples, array element count and rank accepted (a 1e7-element float64 array is 80 MB).
_MAX_SAMPLES = 1_000_000
_MAX_ELEMENTS = 10**7
_MAX_NDIM = 32
_PYTHON_TARGET = re.compile(r"^(?:[^\s:]+\.py|[A-Za-z_][\w.]*):[A-Za-z_]\w*$")
_MODES = ("full", "fast", "complex", "richardson")
#: Options each kind of target ignores, as (argparse dest, option): giving one is an error, not a no-op.
_UNUSED = {
    "--op": (("at", "--at"), ("ranges", "--range"), ("wrt", "--wrt"), ("grad", "--grad"), ("vjp", "--vjp"),
             ("backward", "--backward"), ("layer", "--layer")),
    "an expression": (("vjp", "--vjp"), ("backward", "--backward"), ("layer", "--layer"), ("params", "--params")),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options."""
    parser.add_argument("target", nargs="?", help='an expression ("x*sigmoid(x)"), file.py:f or package.module:f')
    parser.add_argument("--op", help="re-check a catalog op's kernel")
    parser.add_argument("--params", default="", help="parameters of --op, of a --layer's constructor, or a --backward "
                        "target's trailing non-array arguments: name=value[,name=value] (name.key=value builds a dict)")
    parser.add_argument("--at", action="append", default=[], help="point: name=value[,name=value]")
    parser.add_argument("--range", action="append", default=[], dest="ranges", help="sample range: name=low:high")
    parser.add_argument("--samples", type=int, default=100, help="points drawn per --range (default 100)")
    parser.add_argument("--wrt", help="variables to differentiate, comma-separated (default: all)")
    parser.add_argument("--grad", action="append", default=[], help="hand-written derivative: expr, or name=expr")
    parser.add_argument("--shape", action="append", default=[], help="array shape: name=3,4")
    parser.add_argument("--vjp", help="the gradient of a Python target: file.py:df or package.module:df")
    parser.add_argument("--backward", help="a Python target returning (out, cache): its backward(dout, cache)")
    parser.add_argument("--layer", action="store_true",
                        help="the Python target is a layer object (or a class or factory, called with --params) "
                             "with forward(x), backward(dout) and params/grads dicts")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--mode", choices=_MODES, default=None,
                        help="full (default; fast instead, with a note, past %d checked elements), fast, complex, "
                             "richardson" % _FULL_MODE_ELEMENTS)
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs and directions, 0 to 2**64-1")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds the check (the user's code included) may take (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


@dataclass
class Outcome:
    """What one run checked: named reports, and further findings as text."""

    target: str
    checks: list[tuple[str, object]] = field(default_factory=list)  # (title, GradcheckReport)
    findings: list[tuple[str, bool]] = field(default_factory=list)  # (statement, holds)
    notes: list[str] = field(default_factory=list)  # how the check was run (a mode switched, ...)

    @property
    def passed(self) -> bool:
        return all(r.passed for _, r in self.checks) and all(ok for _, ok in self.findings)

    def as_dict(self) -> dict[str, object]:
        return {"target": self.target, "passed": self.passed,
                "checks": [{"check": t, "passed": r.passed, "report": r.as_dict()} for t, r in self.checks],
                "findings": [{"finding": s, "holds": ok} for s, ok in self.findings], "notes": self.notes}

    def to_text(self) -> str:
        lines = [f"symdl gradcheck {self.target}: {'PASS' if self.passed else 'FAIL'}"]
        for title, report in self.checks:
            lines += ["", f"== {title}", report.to_text()]
        lines += [""] * bool(self.findings) + [f"{'ok' if ok else 'FAIL'}: {s}" for s, ok in self.findings]
        lines += [""] * bool(self.notes) + [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the check; exit code 0 (pass), 1 (a gradient is wrong).

    The options are checked here, before any work; the check itself (the user's
    code included) runs under :func:`symdl.cli.usercode.run_guarded`: a time
    limit, ``sys.exit``/``os._exit`` reported as errors, the user's prints on stderr.
    """
    _normalize(args)
    _validate(args)
    if args.op:
        work, kind = _run_op, "--op"
    elif not args.target:
        raise GradcheckInputError("give an expression, a Python target (file.py:f) or --op NAME")
    elif _PYTHON_TARGET.match(args.target):
        work, kind = _run_python, ""
    else:
        work, kind = _run_expression, "an expression"
    for dest, option in _UNUSED.get(kind, ()):  # an option the target ignores would be silently ignored
        if getattr(args, dest, None):
            raise GradcheckInputError(f"{option} does not apply to {kind}")
    outcome = run_guarded(lambda: _quietly(work, args), args.timeout,
                          hint="--mode fast checks large inputs in seconds; or give a larger --timeout")
    code = 0 if outcome.passed else 1
    try:
        print(json.dumps(outcome.as_dict(), indent=2) if args.json else outcome.to_text())
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader left; keep the exit code, drop the rest quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def _quietly(work: Callable[[argparse.Namespace], Outcome], args: argparse.Namespace) -> Outcome:
    """``work(args)`` without NumPy's floating-point warnings: a non-finite value is reported by the
    check itself, on one line (``leaky_relu`` with ``negative_slope=1e308`` overflows to -inf)."""
    with np.errstate(all="ignore"):
        return work(args)


# --------------------------------------------------------------------------- option parsing
def _normalize(args: argparse.Namespace) -> None:
    """Names and expressions in Unicode NFKC (:func:`symdl.check.syntax.normalized`; paths of Python targets
    are left as given)."""
    args.at, args.ranges, args.shape, args.grad = ([normalized(t) for t in items]
                                                   for items in (args.at, args.ranges, args.shape, args.grad))
    args.wrt = normalized(args.wrt) if args.wrt else args.wrt
    if args.target and not _PYTHON_TARGET.match(args.target):
        args.target = normalized(args.target)


def _validate(args: argparse.Namespace) -> None:
    """Every option's domain, checked before any work starts (the values themselves are parsed again where used)."""
    if not 0 <= args.seed < 2**64:
        raise GradcheckInputError(f"--seed must be an integer from 0 to 2**64-1, got {args.seed}")
    if not 1 <= args.samples <= _MAX_SAMPLES:
        raise GradcheckInputError(f"--samples must be from 1 to {_MAX_SAMPLES}, got {args.samples}")
    if not 0 < args.timeout <= MAX_TIMEOUT:  # NaN fails too
        raise GradcheckInputError(f"--timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}], got {args.timeout}")
    at, ranges = _pairs(args.at, "--at"), _ranges(args.ranges)
    both = sorted(set(at) & set(ranges))
    if both:
        raise GradcheckInputError(f"{both[0]} has both --at and --range; give one")
    for name, text in at.items():
        _finite_point(name, _number(text, "--at"), args.dtype, "--at")
    for name, ends in ranges.items():
        for end in ends:
            _finite_point(name, end, args.dtype, "--range")
    wrt = [w.strip() for w in (args.wrt or "").split(",") if w.strip()]
    twice = sorted({w for w in wrt if wrt.count(w) > 1})
    if twice:  # `--wrt x,x` would check x twice and report it twice; a slip, not a request
        raise GradcheckInputError(f"--wrt: {twice[0]} is given twice")
    total = sum(int(np.prod(shape, dtype=object)) for shape in _shapes(args.shape).values())
    if total > _MAX_ELEMENTS:  # each input is capped; so are all of them together (80 MB of float64)
        raise GradcheckInputError(f"--shape: the inputs hold {total} elements together; at most {_MAX_ELEMENTS:.0e}")


def _finite_point(name: str, value: float, dtype: str, option: str) -> None:
    """A value finite differences can step around: its steps (up to ``1e-4 |x|``) must not overflow ``dtype``."""
    limit = float(np.finfo(dtype).max) / 2
    if not abs(value) <= limit:
        raise GradcheckInputError(f"{option}: {name}={value:g} is beyond half the largest {dtype} ({limit:.3g}): "
                                  "finite differences there would overflow")


def _pairs(items: list[str], option: str) -> dict[str, str]:
    """``name=value`` pairs from comma-separated items."""
    pairs: dict[str, str] = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            name, sep, value = part.partition("=")
            if not sep or not _key(name.strip()) or not value.strip():
                raise GradcheckInputError(f"{option}: expected name=value, got {part!r}")
            if name.strip() in pairs:
                raise GradcheckInputError(f"{option}: {name.strip()} is given twice")
            pairs[name.strip()] = value.strip()
    return pairs


def _key(name: str) -> bool:
    """A variable name, or (for a Python target's inputs) a position such as ``0``."""
    return name.isidentifier() or (name.isdigit() and len(name) < 6)


def _number(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise GradcheckInputError(f"{option}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise GradcheckInputError(f"{option}: {text!r} is not finite")
    return value


def _shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """``name=3,4`` items (``name=`` for a scalar): sides >= 1, at most 32 of them and 1e7 elements, names once."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.partition("=")
        name = name.strip()
        if not sep or not _key(name):
            raise GradcheckInputError(f"--shape: expected name=3,4, got {item!r}")
        if name in shapes:
            raise GradcheckInputError(f"--shape: {name} is given twice")
        parts = dims.split(",") if dims.strip() else []
        if len(parts) > _MAX_NDIM:
            raise GradcheckInputError(f"--shape: {name} has {len(parts)} sides; at most {_MAX_NDIM}")
        try:
            shape = tuple(int(d) for d in parts)  # int(" ") fails: "x=,,," is not a scalar
        except ValueError:
            raise GradcheckInputError(f"--shape: {dims!r} is not a list of integers (name= for a scalar)") from None
        count = 1
        for side in shape:  # Python integers: the product cannot wrap around as NumPy's would
            count *= side
        if any(d < 1 for d in shape) or count > _MAX_ELEMENTS:
            raise GradcheckInputError(f"--shape: {name} needs sides >= 1 and at most {_MAX_ELEMENTS:.0e} elements, "
                                      f"got {dims.strip()}")
        shapes[name] = shape
    return shapes


def _ranges(items: list[str]) -> dict[str, tuple[float, float]]:
    ranges = {}
    for name, text in _pairs(items, "--range").items():
        low, sep, high = text.partition(":")
        if not sep:
            raise GradcheckInputError(f"--range: expected {name}=low:high, got {name}={text}")
        low_value, high_value = _number(low, "--range"), _number(high, "--range")
        if not low_value < high_value:
            raise GradcheckInputError(f"--range: {name} needs low < high, got {text}")
        if not np.isfinite(high_value - low_value):
            raise GradcheckInputError(f"--range: {name}={text} is wider than the largest float (1.8e308)")
        ranges[name] = (low_value, high_value)
    return ranges


def _choose_mode(args: argparse.Namespace, inputs: list[np.ndarray], wrt: list[int], outcome: Outcome) -> None:
    """``args.mode``, or full mode unless that would take minutes: then fast mode, with a note saying so.

    Full mode evaluates ``f`` twice per checked element, each call costing about the
    input's size, so its time grows as the square of the size.
    """
    if args.mode is not None:
        return
    elements = sum(int(inputs[i].size) for i in wrt)
    args.mode = "full" if elements <= _FULL_MODE_ELEMENTS else "fast"
    if args.mode == "fast":
        outcome.notes.append(f"{elements} checked elements: full mode would evaluate f {2 * elements} times (minutes); "
                             "fast mode (random projections, full mode only where one disagrees) was used instead; "
                             "give --mode full to insist")


def _say_what_full_mode_costs(f: Callable[..., object], inputs: list[np.ndarray], args: argparse.Namespace,
                              wrt: list[int] | None) -> None:
    """Full mode insisted on (``--mode full``) past the size where it would have given way to fast mode: say on
    stderr, before it starts, what it will cost (2 evaluations of f per element, so the square of the size).
    Said only where the check will run: past the Jacobian limit the check refuses at once, on its one line."""
    from symdl.check.api import MAX_JACOBIAN

    elements = sum(int(inputs[i].size) for i in (wrt if wrt is not None else range(len(inputs))))
    if args.mode != "full" or elements <= _FULL_MODE_ELEMENTS:
        return
    if elements * int(np.size(f(*[a.copy() for a in inputs]))) > MAX_JACOBIAN:
        return
    seconds = _FULL_MODE_SECONDS_AT_1E5 * (elements / 1e5) ** 2
    print(f"symdl: note: full mode on {elements} checked elements evaluates f {2 * elements} times: about "
          f"{seconds:.0f} s where it was measured (2 cores), longer for a costlier f; --mode fast takes seconds",
          file=sys.stderr, flush=True)


def _check(f: Callable[..., object], inputs: list[np.ndarray], vjp: Callable[..., object], args: argparse.Namespace,
           names: list[str], wrt: list[int] | None = None) -> object:
    """``gradcheck``; an exception from the user's code is bad input (exit 2), on one line."""
    from symdl.check import gradcheck
    from symdl.errors import SymdlError

    from symdl.check.errors import JacobianTooLargeError

    _say_what_full_mode_costs(f, inputs, args, wrt)
    try:
        return gradcheck(f, inputs, vjp, mode=args.mode, seed=args.seed, names=names, wrt=wrt)
    except JacobianTooLargeError as error:  # the API's advice in the command line's spelling
        fewer = ", check fewer inputs (--wrt)" if not args.op else ", or a smaller --shape"
        raise GradcheckInputError(f"the full Jacobian has {error.outputs} x {error.elements} = "
                                  f"{error.outputs * error.elements:.3g} entries (limit {error.limit:.3g}); use "
                                  f"--mode fast{fewer} or reduce f to a scalar") from None
    except SymdlError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's function failed: say so on one line
        text = " ".join(str(error).split())
        raise GradcheckInputError(f"evaluating the target failed: {type(error).__name__}: {text}") from None


# --------------------------------------------------------------------------- expressions
def _run_expression(args: argparse.Namespace) -> Outcome:
    from symdl.check.syntax import validate

    at = {k: _number(v, "--at") for k, v in _pairs(args.at, "--at").items()}
    ranges, shapes = _ranges(args.ranges), _shapes(args.shape)
    wrt_names = [w.strip() for w in args.wrt.split(",") if w.strip()] if args.wrt else []
    declared = set(at) | set(ranges) | set(shapes) | set(wrt_names)
    for text in [args.target, *args.grad]:  # hostile input fails here, before SymPy is even imported
        validate(text.partition("=")[2] if text is not args.target and _named(text) else text, None, declared)
    import sympy as sp

    from symdl.check.expression import ExpressionFunction, evaluate
    from symdl.expr import parse, simplify_within

    expr = parse(args.target, declared)
    names = sorted(s.name for s in expr.free_symbols)
    for name in sorted(declared - set(names)):
        raise GradcheckInputError(f"variable {name!r} does not occur in the expression")
    missing = [n for n in names if n not in at and n not in ranges]
    if missing:
        raise GradcheckInputError(f"no value for {', '.join(missing)}: give --at {missing[0]}=... "
                                  f"or --range {missing[0]}=low:high")
    if not names:
        raise GradcheckInputError("the expression has no variables to differentiate")
    symbols = [sp.Symbol(n, real=True) for n in names]
    rng = np.random.default_rng(args.seed)
    dtype = np.dtype(args.dtype)
    arrays = [(rng.uniform(*ranges[n], shapes.get(n, (args.samples,))) if n in ranges
               else np.full(shapes.get(n, ()), at[n])).astype(dtype) for n in names]
    wrt = wrt_names or names
    derived = {s: sp.diff(expr, s) for s in symbols if s.name in wrt}
    outcome = Outcome(args.target)
    function = ExpressionFunction(expr, symbols, derived)
    indices = [names.index(n) for n in wrt]
    _choose_mode(args, arrays, indices, outcome)
    outcome.checks.append(("SymPy's derivative vs finite differences",
                           _check(function, arrays, function.vjp, args, names, indices)))
    if args.grad:
        hand = _hand_derivatives(args.grad, wrt, declared, parse)
        written = {s: hand[s.name] for s in symbols if s.name in hand}
        mine = ExpressionFunction(expr, symbols, written)
        outcome.checks.append(("your derivative vs finite differences", _check(mine, arrays, mine.vjp, args, names,
                                                                                 [names.index(n) for n in hand])))
        values = dict(zip(symbols, arrays))
        for symbol, given in written.items():
            outcome.findings.append(_agreement(symbol, given, derived[symbol], values, evaluate, simplify_within))
    return outcome


def _named(item: str) -> bool:
    """Whether a ``--grad`` item is ``name=expr`` (and not an expression such as ``x==0``)."""
    name, sep, text = item.partition("=")
    return bool(sep) and name.strip().isidentifier() and not text.startswith("=")


def _hand_derivatives(items: list[str], wrt: list[str], declared: set[str], parse: Callable[..., object]
                      ) -> dict[str, object]:
    """``--grad`` values: ``name=expr`` each, or one bare expression when there is one variable."""
    hand = {}
    for item in items:
        name, _, text = item.partition("=")
        if _named(item):
            hand[name.strip()] = text
        elif len(wrt) == 1:
            hand[wrt[0]] = item
        else:
            raise GradcheckInputError(f"--grad: with several variables write name=expr (variables: {', '.join(wrt)})")
    unknown = sorted(set(hand) - set(wrt))
    if unknown:
        raise GradcheckInputError(f"--grad: {unknown[0]!r} is not a variable being differentiated ({', '.join(wrt)})")
    return {name: parse(text, declared) for name, text in hand.items()}


def _agreement(symbol: object, given: object, derived: object, values: dict, evaluate: Callable[..., object],
               simplify_within: Callable[..., tuple[object, bool]]) -> tuple[str, bool]:
    """Whether a hand-written derivative equals SymPy's: symbolically, or at every sample point."""
    difference, done = simplify_within(given - derived, 2.0)
    if done and difference == 0:
        return f"d/d{symbol} = {given} equals SymPy's {derived} symbolically", True
    ours = np.asarray(evaluate(given, values), dtype=np.float64)
    theirs = np.asarray(evaluate(derived, values), dtype=np.float64)
    ours, theirs = np.broadcast_arrays(ours, theirs)
    scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
    with np.errstate(invalid="ignore"):
        close = np.abs(ours - theirs) <= 1e-9 * (np.abs(theirs) + scale)
    if close.all():
        how = "not shown symbolically within 2 s" if not done else "not simplified to 0"
        return f"d/d{symbol} = {given} agrees with SymPy's {derived} at all {close.size} points ({how})", True
    worst = np.unravel_index(int(np.argmax(~close)), close.shape)
    return (f"d/d{symbol} = {given} differs from SymPy's {derived}: at point {list(map(int, worst))} "
            f"{float(ours[worst]):.6g} vs {float(theirs[worst]):.6g}"), False


# --------------------------------------------------------------------------- Python targets
def load_callable(target: str) -> Callable[..., object]:
    """The function named by ``file.py:name`` or ``package.module:name``."""
    location, _, name = target.rpartition(":")
    module = load_module(location)
    function = getattr(module, name, None)
    if not callable(function):
        raise GradcheckInputError(f"{location} has no function {name!r}")
    return function


def load_module(location: str) -> object:
    """The module ``file.py`` or ``package.module``; a failing import is bad input, on one line."""
    try:
        if location.endswith(".py"):
            path = Path(location)
            if not path.is_file():
                raise GradcheckInputError(f"{location}: no such file")
            spec = importlib.util.spec_from_file_location(f"_symdl_target_{abs(hash(path.resolve()))}", path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[spec.name] = module  # type: ignore[union-attr]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:  # the console script omits the cwd
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(location)
    except GradcheckInputError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's module failed to import
        text = " ".join(str(error).split())
        raise GradcheckInputError(f"cannot import {location}: {type(error).__name__}: {text}") from None
    return module


def _run_python(args: argparse.Namespace) -> Outcome:
    """A Python target: --vjp, --backward (a forward returning (out, cache)) or --layer (see gradcheck_python)."""
    from symdl.cli.gradcheck_python import run_python

    return run_python(args)  # type: ignore[return-value]


def _evaluating(work: Callable[[], object]) -> object:
    """``work()``; an exception from the user's code is bad input (exit 2), on one line."""
    from symdl.errors import SymdlError

    try:
        return work()
    except SymdlError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's code failed: say so on one line
        text = " ".join(str(error).split())
        raise GradcheckInputError(f"evaluating the target failed: {type(error).__name__}: {text}") from None


def _unchanged_by(f: Callable[..., object], inputs: list[np.ndarray], names: list[str], target: str) -> None:
    """Call ``f`` once on copies of the inputs: a function that modifies its input cannot be checked
    (every finite difference would start from a moved point), so that is bad input, not a verdict."""
    copies = [x.copy() for x in inputs]
    try:
        f(*copies)
    except Exception as error:  # noqa: BLE001 - the user's function failed: say so on one line
        text = " ".join(str(error).split())
        raise GradcheckInputError(f"evaluating the target failed: {type(error).__name__}: {text}") from None
    for name, before, after in zip(names, inputs, copies):
        if not np.array_equal(before, after, equal_nan=True):
            raise GradcheckInputError(f"{target} modified its input {name!r} in place; a function under check "
                                      "must leave its inputs unchanged")


# --------------------------------------------------------------------------- catalog ops
def _param_value(op: object, name: str, text: str) -> object:
    """A parameter value from text, typed like the parameter's default."""
    try:
        param = op.param(name)  # type: ignore[attr-defined]
    except KeyError:
        known = ", ".join(p.name for p in op.params) or "none"  # type: ignore[attr-defined]
        raise GradcheckInputError(f"--params: {op.name} has no parameter {name!r} (parameters: {known})") from None  # type: ignore[attr-defined]
    if param.rule.kind == "array":
        raise GradcheckInputError(f"--params: {name} takes an array; it cannot be given on the command line")
    default = param.default
    if isinstance(default, bool) or param.rule.kind == "bool":
        if text.lower() not in ("true", "false"):
            raise GradcheckInputError(f"--params: {name} must be true or false, got {text!r}")
        return text.lower() == "true"
    if isinstance(default, str):
        return text
    if param.rule.kind == "integer" or isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise GradcheckInputError(f"--params: {name} must be an integer, got {text!r}") from None
    return _number(text, "--params")


def _run_op(args: argparse.Namespace) -> Outcome:
    import symdl.kernels as kernels

    if args.target:
        raise GradcheckInputError("give either a target or --op, not both")
    if not hasattr(kernels, f"{args.op}_vjp"):  # before the catalog (and SymPy) loads
        raise GradcheckInputError(f"unknown op {args.op!r}; `symdl kernels` lists the ops")
    from symdl.catalog import get
    from symdl.sampling import draw_inputs

    op = get(args.op)
    params = {k: _param_value(op, k, v) for k, v in _pairs([args.params], "--params").items()}
    shapes = _shapes(args.shape)
    first = op.inputs[0].name
    for name in shapes:
        if name != first:  # the other inputs' shapes follow from the first's
            raise GradcheckInputError(f"--shape {name}: --op {op.name} takes the shape of its first input, "
                                      f"{first} (--shape {first}=4,5)")
    batch = shapes.get(first, (4, 5))
    forward, backward = getattr(kernels, op.name), getattr(kernels, f"{op.name}_vjp")
    rng = np.random.default_rng(args.seed)
    inputs = draw_inputs(op, rng, batch, np.dtype(args.dtype))
    wrt = [i for i, item in enumerate(op.inputs) if item.differentiable and inputs[i].dtype.kind == "f"]
    outcome = Outcome(f"--op {op.name}" + (f" --params {args.params}" if args.params else ""))
    _choose_mode(args, inputs, wrt, outcome)
    report = _check(lambda *a: forward(*a, **params), inputs, lambda g, *a: backward(g, *a, **params), args,
                    [i.name for i in op.inputs], wrt)
    outcome.checks.append((f"symdl.kernels.{op.name}_vjp vs finite differences", report))
    return outcome
