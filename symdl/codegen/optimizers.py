"""Generate the optimizer module ``symdl/optim/_generated.py`` from the update-rule catalog.

For each :class:`~symdl.catalog.optimizers.UpdateRule` it writes

* ``_<name>_step(param, grad, <states>, scratch, step, <hypers>)``: one step
  on one parameter, in place on ``param`` and the state arrays, returning the
  new scalar states (NAdam's ``mu_product``);
* ``_<name>_broken(<hypers>)``: the first constraint the hyper-parameters
  break, or None;
* ``_<name>_init(state, param, <hypers>)``: creates the state PyTorch keeps for
  these hyper-parameters;
* the class ``<ClassName>(Optimizer)`` with PyTorch's signature and the rule in
  its docstring.

The kernels go to ``symdl/optim/`` rather than ``symdl/kernels/`` because they
are not ops (no ``name``/``name_vjp`` pair) and only ``symdl.optim`` calls them.

How a step becomes in-place NumPy (:class:`StepEmitter`): scalar
sub-expressions (hyper-parameters, ``step``) stay Python floats; each array
expression is written into its target's buffer one ufunc at a time
(``exp_avg_sq *= beta2``), with parameter-sized scratch buffers (allocated once
per optimizer, passed in as ``scratch``) for the sub-expressions that need
their own. A target that appears in its own expression (``m <- m + k (d - m)``)
is written only after every other read of its old value. Intermediates that are
a bare array (``d = grad``) are Python aliases, never copies; a scratch buffer
is reused once the intermediate it holds is dead.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp

from symdl.catalog.optimizers import OPTIMIZERS, PARAM, STEP, UpdateRule
from symdl.codegen.module import GeneratedModule, docstring, header
from symdl.printing.latex import rule_latex
from symdl.printing.numpy_printer import KernelPrinter, constants_to_floats

OUTPUT = Path(__file__).resolve().parent.parent / "optim" / "_generated.py"

#: Array functions of one argument: SymPy class -> NumPy ufunc.
UNARY_UFUNCS: dict[type, str] = {sp.sign: "np.sign", sp.Abs: "np.abs"}
#: Elementwise extrema of two arrays.
BINARY_UFUNCS: dict[type, str] = {sp.Max: "np.maximum", sp.Min: "np.minimum"}
#: Positive powers of an array.
POWERS: dict[sp.Expr, str] = {sp.Integer(2): "np.square", sp.S.Half: "np.sqrt"}
#: In-place operator for each combining ufunc.
AUGMENTED: dict[str, str] = {"add": "+=", "subtract": "-=", "multiply": "*=", "divide": "/="}


class GenerationError(Exception):
    """An update rule uses a form the in-place emitter cannot write safely."""


class ScalarPrinter(KernelPrinter):
    """Python source for scalar expressions and conditions (``math.*``, ``and``/``or``/``not``)."""

    def _print_And(self, expr: sp.And) -> str:
        return "(" + " and ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr: sp.Or) -> str:
        return "(" + " or ".join(self._print(a) for a in expr.args) + ")"

    def _print_Not(self, expr: sp.Not) -> str:
        return f"(not {self._print(expr.args[0])})"

    def _print_BooleanTrue(self, expr: sp.Basic) -> str:
        return "True"

    def _print_BooleanFalse(self, expr: sp.Basic) -> str:
        return "False"

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        text = self._print(expr.args[-1].expr)
        for value, condition in reversed(expr.args[:-1]):
            text = f"({self._print(value)} if {self._print(condition)} else {text})"
        return text

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.exp == -1:
            return f"1 / {self.parenthesize(expr.base, sp.printing.precedence.PRECEDENCE['Mul'] + 1)}"
        return super()._print_Pow(expr, rational)


@dataclass
class Binding:
    """What an intermediate's Python name may refer to: scratch buffers and (never written) arrays."""

    scratch: frozenset[str] = frozenset()
    arrays: frozenset[str] = frozenset()

    def __or__(self, other: Binding) -> Binding:
        return Binding(self.scratch | other.scratch, self.arrays | other.arrays)


@dataclass
class _Term:
    negative: bool
    magnitude: sp.Expr


@dataclass
class StepEmitter:
    """Writes one rule's step as straight-line in-place NumPy (see the module docstring)."""

    rule: UpdateRule
    lines: list[str] = field(default_factory=list)
    depth: int = 1
    scalars: set[sp.Symbol] = field(default_factory=set)
    in_place: set[sp.Symbol] = field(default_factory=set)
    bound: dict[sp.Symbol, Binding] = field(default_factory=dict)
    free: list[str] = field(default_factory=list)
    scratch_count: int = 0

    def __post_init__(self) -> None:
        self.scalars = {*self.rule.hyper_symbols, STEP, *(s.symbol for s in self.rule.states if s.scalar)}
        self.in_place = {PARAM, *(s.symbol for s in self.rule.states if not s.scalar)}
        self.printer = ScalarPrinter(scalars=self.scalars)

    # -- bookkeeping ---------------------------------------------------------------
    def _line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def _take(self) -> str:
        if not self.free:
            self.free.append(f"s{self.scratch_count}")
            self.scratch_count += 1
        return self.free.pop(0)

    def _give(self, name: str) -> None:
        self.free = sorted({*self.free, name}, key=lambda n: int(n[1:]))

    def _is_scalar(self, expr: sp.Basic) -> bool:
        return expr.free_symbols <= self.scalars

    def _scalar(self, expr: sp.Expr) -> str:
        return self.printer.doprint(constants_to_floats(expr))

    @staticmethod
    def _name(symbol: sp.Symbol) -> str:
        return symbol.name

    def _bare(self, expr: sp.Expr) -> str | None:
        """The Python name of an array symbol, or None for anything else."""
        return expr.name if isinstance(expr, sp.Symbol) and expr not in self.scalars else None

    def _reads(self, expr: sp.Expr, target: sp.Symbol | None) -> bool:
        """Whether computing ``expr`` reads ``target``'s buffer (directly or through an alias)."""
        if target is None:
            return False
        return any(s == target or target.name in self.bound.get(s, Binding()).arrays for s in expr.free_symbols)

    # -- expressions ---------------------------------------------------------------------
    def emit(self, expr: sp.Expr, out: str, target: sp.Symbol | None) -> None:
        """Write the value of array expression ``expr`` into buffer ``out`` (``target``'s buffer, or scratch)."""
        name = self._bare(expr)
        if name is not None:
            if name != out:
                self._line(f"np.copyto({out}, {name})")
        elif isinstance(expr, sp.Add):
            self._sum(expr, out, target)
        elif isinstance(expr, sp.Mul) or (isinstance(expr, sp.Pow) and expr.exp.is_negative):
            self._product(expr, out, target)
        elif isinstance(expr, sp.Pow) and expr.exp in POWERS:
            self._unary(POWERS[expr.exp], expr.base, out, target)
        elif type(expr) in UNARY_UFUNCS:
            self._unary(UNARY_UFUNCS[type(expr)], expr.args[0], out, target)
        elif type(expr) in BINARY_UFUNCS and len(expr.args) == 2:
            self._extremum(BINARY_UFUNCS[type(expr)], expr.args, out, target)
        else:
            raise GenerationError(f"{self.rule.name}: no in-place form for {expr}")

    def _operand(self, expr: sp.Expr, pre: dict[sp.Expr, str]) -> str | None:
        """Text of an operand that needs no buffer of its own (array name, precomputed buffer, scalar)."""
        if expr in pre:
            return pre[expr]
        if self._is_scalar(expr):
            return self._scalar(expr)
        return self._bare(expr)

    def _precompute(self, parts: Sequence[sp.Expr], head: sp.Expr | None, target: sp.Symbol | None,
                    scaled: bool = False) -> dict:
        """Parts other than ``head`` that read ``target``: computed into scratch before ``target`` is written.
        With ``scaled`` (terms of a sum into an in-place target), a part ``c * compound`` has only its
        compound precomputed: the sum then adds ``c`` times it in one axpy pass."""
        pre = {}
        for part in parts:
            if part is not head and part not in pre and self._reads(part, target) and part != target:
                split = self._coefficient_split(part) if scaled else None
                part = part if split is None else split[1]
                if part not in pre:
                    pre[part] = buffer = self._take()
                    self.emit(part, buffer, None)
        return pre

    def _coefficient_split(self, expr: sp.Expr) -> tuple[sp.Expr, sp.Expr] | None:
        """``(c, compound)`` for a product of a scalar ``c != 1`` and an array expression, else None."""
        if not isinstance(expr, sp.Mul):
            return None
        factors = sp.Mul.make_args(expr)
        coefficient = sp.Mul(*(f for f in factors if self._is_scalar(f)))
        if coefficient == 1:
            return None
        return coefficient, sp.Mul(*(f for f in factors if not self._is_scalar(f)))

    def _apply(self, ufunc: str, out: str, operand: sp.Expr, pre: dict[sp.Expr, str],
               target: sp.Symbol | None = None) -> None:
        """``out = ufunc(out, operand)``, in place, through a scratch buffer if the operand needs one;
        ``out +=/-= c * array`` as one axpy pass (:func:`symdl.optim._blas.axpy`), and so is an
        in-place update's ``+=/-= c * (compound)`` once the compound is in scratch."""
        if ufunc in ("add", "subtract"):
            scaled = self._scaled_array(operand, pre)
            if scaled is not None:
                self._axpy(ufunc, out, *scaled)
                return
            scaled = self._scaled_compound(operand, pre) if target in self.in_place else None
            if scaled is not None:
                self._axpy(ufunc, out, *scaled)
                self._give(scaled[1])
                return
        text = self._operand(operand, pre)
        if text is None:
            text = self._take()
            self.emit(operand, text, None)
            self._line(f"{out} {AUGMENTED[ufunc]} {text}")
            self._give(text)
        else:
            self._line(f"{out} {AUGMENTED[ufunc]} {text}")

    def _axpy(self, ufunc: str, out: str, coefficient: sp.Expr, array: str) -> None:
        """``out +=/-= coefficient * array`` as one axpy pass."""
        self._line(f"_axpy({self._scalar(-coefficient if ufunc == 'subtract' else coefficient)}, {array}, {out})")

    def _scaled_compound(self, expr: sp.Expr, pre: dict[sp.Expr, str]) -> tuple[sp.Expr, str] | None:
        """``(c, buffer)`` for a scalar ``c != 1`` times an array expression that needs a buffer (call it
        when :meth:`_scaled_array` found none): the expression is computed into a scratch ``buffer``
        (the caller gives it back). In-place updates
        (the parameter, moments) use it, so that ``y += c * compound`` is the compound's passes plus
        one axpy, not plus a scaling pass and an addition pass."""
        split = self._coefficient_split(expr)
        if split is None:
            return None
        buffer = self._take()
        self.emit(split[1], buffer, None)
        return split[0], buffer

    def _scaled_array(self, expr: sp.Expr, pre: dict[sp.Expr, str]) -> tuple[sp.Expr, str] | None:
        """``(c, name)`` when ``expr`` is a scalar ``c`` times an array that needs no buffer (a name,
        or a compound already in scratch), else None."""
        split = self._coefficient_split(expr)
        name = None if split is None else self._operand(split[1], pre)
        return None if name is None else (split[0], name)

    def _release(self, pre: dict[sp.Expr, str]) -> None:
        for buffer in pre.values():
            self._give(buffer)

    def _sum(self, expr: sp.Add, out: str, target: sp.Symbol | None) -> None:
        constant = sp.Add(*(t for t in expr.args if self._is_scalar(t)))
        terms = [_Term(t.could_extract_minus_sign(), -t if t.could_extract_minus_sign() else t)
                 for t in expr.args if not self._is_scalar(t)]
        aliased = [t for t in terms if self._reads(t.magnitude, target)]
        compound = [t for t in terms if self._bare(t.magnitude) is None]
        head = (next((t for t in aliased if not t.negative), aliased[0]) if aliased
                else next((t for t in compound if not t.negative), None))
        pre = self._precompute([t.magnitude for t in terms], head.magnitude if head else None, target,
                               scaled=target in self.in_place)
        rest = [t for t in terms if t is not head]
        if head is not None:
            self.emit(head.magnitude, out, target)
            if head.negative:
                self._line(f"np.negative({out}, out={out})")
        else:  # only bare arrays, or compound terms that are all subtracted
            positive = next((t for t in rest if not t.negative), None)
            subtracted = next((t for t in rest if t.negative and self._operand(t.magnitude, pre) is None), None)
            first = positive or rest[0]
            rest.remove(first)
            if subtracted is not None and positive is not None:  # out = a - (compound)
                rest.remove(subtracted)
                self.emit(subtracted.magnitude, out, None)
                self._line(f"np.subtract({self._operand(first.magnitude, pre)}, {out}, out={out})")
            elif rest and self._operand(rest[0].magnitude, pre) is not None:
                second = rest.pop(0)
                ufunc = "np.subtract" if second.negative != first.negative else "np.add"
                self._line(f"{ufunc}({self._operand(first.magnitude, pre)}, "
                           f"{self._operand(second.magnitude, pre)}, out={out})")
                if first.negative:
                    self._line(f"np.negative({out}, out={out})")
            elif constant != 0 and not first.negative:
                self._line(f"np.add({self._operand(first.magnitude, pre)}, {self._scalar(constant)}, out={out})")
                constant = sp.S.Zero
            else:
                self.emit(first.magnitude, out, target)
                if first.negative:
                    self._line(f"np.negative({out}, out={out})")
        for term in rest:
            self._apply("subtract" if term.negative else "add", out, term.magnitude, pre, target)
        if constant != 0:
            self._line(f"{out} += {self._scalar(constant)}")
        self._release(pre)

    def _product(self, expr: sp.Expr, out: str, target: sp.Symbol | None) -> None:
        factors = sp.Mul.make_args(expr)
        coefficient = sp.Mul(*(f for f in factors if self._is_scalar(f)))
        arrays = [f for f in factors if not self._is_scalar(f)]
        numerators = [f for f in arrays if not (f.is_Pow and f.exp.is_negative)]
        denominators = [f.base ** -f.exp for f in arrays if f.is_Pow and f.exp.is_negative]
        aliased = [f for f in numerators + denominators if self._reads(f, target)]
        if any(self._reads(f, target) for f in denominators) and not numerators:
            raise GenerationError(f"{self.rule.name}: cannot divide {target} in place in {expr}")
        compound_num = [f for f in numerators if self._bare(f) is None]
        compound_den = [f for f in denominators if self._bare(f) is None]
        head = aliased[0] if aliased else (compound_num or compound_den or [None])[0]
        if head in denominators and aliased:
            raise GenerationError(f"{self.rule.name}: cannot divide {target} in place in {expr}")
        pre = self._precompute(numerators + denominators, head, target)
        numerators, denominators = list(numerators), list(denominators)
        if head is not None and head in numerators:
            numerators.remove(head)
            self.emit(head, out, target)
        elif head is not None:  # a compound denominator first, then divide the (bare) numerator by it
            denominators.remove(head)
            self.emit(head, out, target)
            if numerators:
                over = self._operand(numerators.pop(0), pre)
            else:
                over, coefficient = self._scalar(coefficient), sp.S.One
            self._line(f"np.divide({over}, {out}, out={out})")
        elif not numerators:  # k / a
            self._line(f"np.divide({self._scalar(coefficient)}, {self._operand(denominators.pop(0), pre)}, out={out})")
            coefficient = sp.S.One
        else:  # bare arrays only
            first = self._operand(numerators.pop(0), pre)
            if numerators or denominators:
                other, ufunc = ((numerators.pop(0), "np.multiply") if numerators else (denominators.pop(0), "np.divide"))
                self._line(f"{ufunc}({first}, {self._operand(other, pre)}, out={out})")
            elif coefficient != 1:
                self._scale(out, coefficient, first)
                coefficient = sp.S.One
            else:
                self._line(f"np.copyto({out}, {first})")
        for factor in numerators:
            self._apply("multiply", out, factor, pre)
        for factor in denominators:
            self._apply("divide", out, factor, pre)
        self._scale(out, coefficient)
        self._release(pre)

    def _scale(self, out: str, coefficient: sp.Expr, source: str | None = None) -> None:
        """``out = source * coefficient`` (``source`` defaults to ``out``: in place)."""
        if coefficient == 1:
            return
        source = source or out
        numerator, denominator = sp.fraction(coefficient)
        if coefficient == -1:
            self._line(f"np.negative({source}, out={out})")
        elif numerator == 1:  # divide by the scalar, as PyTorch does (x / sqrt(bc2)), not by its reciprocal
            self._line(f"np.divide({source}, {self._scalar(denominator)}, out={out})" if source != out
                       else f"{out} /= {self._scalar(denominator)}")
        else:
            self._line(f"np.multiply({source}, {self._scalar(coefficient)}, out={out})" if source != out
                       else f"{out} *= {self._scalar(coefficient)}")

    def _unary(self, ufunc: str, argument: sp.Expr, out: str, target: sp.Symbol | None) -> None:
        name = self._bare(argument)
        if name is not None:
            self._line(f"{ufunc}({name}, out={out})")
        elif ufunc == "np.sign":  # np.sign in place is ~10x slower than into another buffer (measured)
            buffer = self._take()
            self.emit(argument, buffer, None)
            self._line(f"{ufunc}({buffer}, out={out})")
            self._give(buffer)
        else:
            self.emit(argument, out, target)
            self._line(f"{ufunc}({out}, out={out})")

    def _extremum(self, ufunc: str, args: Sequence[sp.Expr], out: str, target: sp.Symbol | None) -> None:
        aliased = [a for a in args if self._reads(a, target)]
        compound = [a for a in args if self._operand(a, {}) is None]
        head = (aliased or compound or [None])[0]
        pre = self._precompute(args, head, target)
        if head is None:
            first, second = (self._operand(a, pre) for a in args)
        else:
            self.emit(head, out, target)
            other = next(a for a in args if a is not head)
            first, second = out, self._operand(other, pre)
            if second is None:
                second = pre[other] = self._take()
                self.emit(other, second, None)
        self._line(f"{ufunc}({first}, {second}, out={out})")
        self._release(pre)

    # -- assignments -----------------------------------------------------------------------
    def assign(self, target: sp.Symbol, expr: sp.Expr) -> None:
        """One assignment of the rule."""
        if target in self.scalars or self._is_scalar(expr):
            self.scalars.add(target)
            self.printer.scalars = frozenset(self.scalars)
            self._line(f"{target.name} = {self._scalar(expr)}")
            return
        if target in self.in_place:
            self._check_aliases(target)
        branches = list(expr.args) if isinstance(expr, sp.Piecewise) else [(expr, sp.true)]
        if any(not self._is_scalar(c) for _, c in branches):
            raise GenerationError(f"{self.rule.name}: {target} branches on an array condition")
        buffer = None
        if target not in self.in_place and any(self._bare(e) is None for e, _ in branches):
            buffer = self._take()
        binding = Binding()
        keyword = ""
        for index, (value, condition) in enumerate(branches):
            if len(branches) > 1:
                keyword = "if" if index == 0 else ("else" if condition == sp.true else "elif")
                self._line(f"{keyword}{'' if keyword == 'else' else ' ' + self._scalar(condition)}:")
                self.depth += 1
            if keyword == "else" and value == target:
                self.lines.pop()  # a no-op else branch: the target keeps its binding
                self.depth -= 1
                binding = binding | self.bound.get(target, Binding())
                continue
            binding = binding | self._assign_value(target, value, buffer)
            if len(branches) > 1:
                self.depth -= 1
        if target not in self.in_place:
            self.bound[target] = binding

    def _assign_value(self, target: sp.Symbol, value: sp.Expr, buffer: str | None) -> Binding:
        if value == target:
            self._line("pass")
            return self.bound.get(target, Binding())
        if target in self.in_place:
            self.emit(value, target.name, target)
            return Binding()
        name = self._bare(value)
        if name is not None:
            self._line(f"{target.name} = {name}")
            return self.bound.get(value, Binding(arrays=frozenset({name})))
        self.emit(value, buffer, None)
        self._line(f"{target.name} = {buffer}")
        return Binding(scratch=frozenset({buffer}))

    def _check_aliases(self, target: sp.Symbol) -> None:
        for symbol, binding in self.bound.items():
            if target.name in binding.arrays and self._live.get(symbol, False):
                raise GenerationError(f"{self.rule.name}: {symbol} aliases {target}, which is updated "
                                      "in place while it is still needed")

    def run(self) -> list[str]:
        """The kernel body."""
        steps = self.rule.steps
        for index, (target, expr) in enumerate(steps):
            self._live = {s: _read_later(steps, index - 1, s) for s in self.bound}
            self.assign(target, expr)
            live = {s: b for s, b in self.bound.items() if _read_later(steps, index, s)}
            self.bound = live
            held = {name for b in live.values() for name in b.scratch}
            self.free = sorted({f"s{i}" for i in range(self.scratch_count)} - held, key=lambda n: int(n[1:]))
        return self.lines


def _read_later(steps: Sequence[tuple[sp.Symbol, sp.Expr]], index: int, symbol: sp.Symbol) -> bool:
    """Whether ``symbol``'s value after assignment ``index`` is read before being reassigned."""
    for target, expr in steps[index + 1:]:
        if symbol in expr.free_symbols:
            return True
        if target == symbol:
            return False
    return False


# --------------------------------------------------------------------------- module pieces
def _hyper_names(rule: UpdateRule) -> list[str]:
    return [s.name for h in rule.hypers for s in h.symbols]


def _array_states(rule: UpdateRule) -> list[str]:
    return [s.name for s in rule.states if not s.scalar]


def _step_function(rule: UpdateRule) -> tuple[str, int]:
    emitter = StepEmitter(rule)
    body = emitter.run()
    scalar_states = [s.symbol.name for s in rule.states if s.scalar]
    args = ", ".join(["param", "grad", *_array_states(rule), "scratch", "step", *scalar_states, *_hyper_names(rule)])
    head = [f"def _{rule.name}_step({args}):",
            f'    """One {rule.class_name} step on one parameter, in place; returns the new scalar states."""']
    if emitter.scratch_count:
        names = ", ".join(f"s{i}" for i in range(emitter.scratch_count))
        head.append(f"    {names}{',' if emitter.scratch_count == 1 else ''} = scratch")
    returns = f"    return ({''.join(f'{s}, ' for s in scalar_states)})"
    return "\n".join(head + body + [returns]) + "\n", emitter.scratch_count


def _broken_function(rule: UpdateRule) -> str:
    printer = ScalarPrinter(scalars=rule.hyper_symbols)
    lines = [f"def _{rule.name}_broken({', '.join(_hyper_names(rule))}):",
             '    """The first rule the hyper-parameters break, or None."""']
    for constraint in rule.constraints:
        lines.append(f"    if not {printer.doprint(constraint.holds.xreplace(_fixed(rule)))}:")
        lines.append(f"        return {constraint.rule!r}")
    lines.append("    return None")
    return "\n".join(lines) + "\n"


def _one_pass_function(rule: UpdateRule) -> str:
    printer = ScalarPrinter(scalars=rule.hyper_symbols)
    return "\n".join([
        f"def _{rule.name}_one_pass({', '.join(_hyper_names(rule))}):",
        '    """Whether the step is the single pass param <- param - lr * grad (updated unblocked)."""',
        f"    return {printer.doprint(rule.one_pass.xreplace(_fixed(rule)))}",
    ]) + "\n"


def _fixed(rule: UpdateRule) -> dict[sp.Symbol, sp.Basic]:
    return {k: sp.sympify(v) for k, v in rule.fixed.items()}


def _init_function(rule: UpdateRule) -> str:
    printer = ScalarPrinter(scalars=rule.hyper_symbols)
    lines = [f"def _{rule.name}_init(state, param, {', '.join(_hyper_names(rule))}):",
             '    """Create the state PyTorch keeps for these hyper-parameters (on the first step, or when a '
             'flag turns it on)."""']
    for item in rule.states:
        when = item.when.xreplace(_fixed(rule))
        if item.scalar:
            value = repr(float(item.init))
        elif item.init == 0:
            value = "np.zeros_like(param)"
        else:
            value = f"np.full_like(param, {printer.doprint(item.init)})"
        guard = "" if when == sp.true else f"{printer.doprint(when)} and "
        lines.append(f"    if {guard}{item.name!r} not in state:")
        lines.append(f"        state[{item.name!r}] = {value}")
    return "\n".join(lines) + "\n"


def _signature(rule: UpdateRule) -> str:
    parts = ["self", "params"]
    starred = False
    for h in rule.hypers:
        if h.keyword_only and not starred:
            parts.append("*")
            starred = True
        parts.append(f"{h.name}={h.default!r}")
    return ", ".join(parts)


def _class(rule: UpdateRule, scratch: int) -> str:
    source = f"``torch.optim.{rule.class_name}``" if rule.in_torch else "no torch.optim counterpart"
    doc = [f"{rule.class_name}: {rule.summary} ({source}).", "", "Each step, for every parameter:", "",
           ".. math::", "", r"    \begin{aligned}"]
    doc += [f"    & {line} \\\\" for line in rule_latex(rule)]
    doc += [r"    \end{aligned}", ""]
    doc += ["Args:", "    params: the parameters (float32 or float64 NumPy arrays, updated in place), or "
            "a list of param-group dicts."]
    doc += [f"    {h.name}: {h.doc} (default {h.default!r})." for h in rule.hypers]
    notes = [*rule.notes, *([f"Reference: {rule.reference}."] if rule.reference else [])]
    if notes:
        doc += ["", *notes]
    doc += ["", f"Generated from the catalog entry ``{rule.name}``; do not edit."]
    values = ", ".join(f"{h.name!r}: {h.name}" for h in rule.hypers)
    hyper_spec = ", ".join(f"({h.name!r}, {h.kind!r})" for h in rule.hypers)
    return "\n".join([
        f"class {rule.class_name}(Optimizer):",
        textwrap.indent(docstring(doc), "    "),
        "",
        f"    _name = {rule.class_name!r}",
        f"    _hypers = ({hyper_spec},)",
        f"    _state_names = {tuple(s.name for s in rule.states)!r}",
        f"    _scalar_states = {tuple(s.name for s in rule.states if s.scalar)!r}",
        f"    _array_states = {tuple(_array_states(rule))!r}",
        f"    _scratch = {scratch}",
        f"    _kernel = staticmethod(_{rule.name}_step)",
        f"    _broken = staticmethod(_{rule.name}_broken)",
        f"    _init = staticmethod(_{rule.name}_init)",
        f"    _one_pass = staticmethod(_{rule.name}_one_pass)",
        "",
        f"    def __init__({_signature(rule)}) -> None:",
        f"        super().__init__(params, {{{values}}})",
    ]) + "\n"


def render_source(rules: Sequence[UpdateRule] | None = None) -> str:
    """Source of ``symdl/optim/_generated.py``."""
    rules = list(OPTIMIZERS.values()) if rules is None else list(rules)
    parts = [
        header("Generated optimizer kernels and classes: one step of each update rule, in place",
               "``symdl.catalog.optimizers`` by ``symdl.codegen.optimizers``",
               pragmas=("# fmt: off", "# ruff: noqa"),
               imports=["import math  # noqa: F401 - scalar arithmetic", "", "import numpy as np", "",
                        "from symdl.optim._blas import axpy as _axpy", "from symdl.optim.optimizer import Optimizer"]),
        "__all__ = [" + ", ".join(repr(r.class_name) for r in rules) + "]",
        "",
    ]
    for rule in rules:
        step, scratch = _step_function(rule)
        parts += ["", step, _broken_function(rule), _init_function(rule), _one_pass_function(rule),
                  _class(rule, scratch)]
    return "\n".join(parts).rstrip() + "\n"


def kernels_source_lines(rule: UpdateRule) -> Iterator[str]:
    """The step kernel's source for one rule (for docs and the CLI)."""
    yield from _step_function(rule)[0].splitlines()


def render() -> list[GeneratedModule]:
    """The files this generator writes (gathered by :mod:`symdl.codegen`)."""
    return [GeneratedModule(OUTPUT, render_source())]
