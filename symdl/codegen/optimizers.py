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

How a step becomes in-place NumPy: this module only prints. Each assignment of
the rule is printed as one plain NumPy expression (:class:`UpdatePrinter`; a
Piecewise on scalar conditions as a :class:`~symdl.printing.inplace.Branch`),
in the association PyTorch evaluates it in, and
:func:`symdl.printing.inplace.emit_program` compiles the whole step: ``param``
and the array states are its writable inputs (updated in place), scratch
buffers like ``param`` (allocated once per optimizer, passed in as
``scratch``) replace fresh arrays, and ``x + c * a`` into a dying ``x`` is one
BLAS axpy pass (:func:`symdl.optim._blas.axpy`). A step that would allocate is
an error.

What the printing fixes (the values, bit for bit, that PyTorch computes):

* a product is its array factors, numerators multiplied then denominators
  divided, times its scalar coefficient, a Python float computed once
  (``math.*``): :math:`c a / b` is ``a / b * c``; a coefficient :math:`1/k` divides
  (``a / k``, as PyTorch divides by ``sqrt(bias_correction2)``);
* a sum adds its terms from the one that reads the assigned name (PyTorch's
  ``param.add_(...)``: :math:`p + t_1 + t_2` is :math:`(p + t_1) + t_2`), positive
  before negative, a scalar constant last.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from symdl.catalog.optimizers import OPTIMIZERS, PARAM, STEP, UpdateRule
from symdl.codegen.module import GeneratedModule, docstring, header
from symdl.printing.inplace import ArraySpec, Branch, Emitted, emit_program
from symdl.printing.latex import rule_latex
from symdl.printing.numpy_printer import KernelPrinter, constants_to_floats

OUTPUT = Path(__file__).resolve().parent.parent / "optim" / "_generated.py"
#: The scratch buffers' names: ``s0, s1, ...``.
SCRATCH_PREFIX = "s"


class GenerationError(Exception):
    """An update rule uses a form the in-place emitter cannot write safely."""


class ScalarPrinter(KernelPrinter):
    """Python source for scalar expressions and conditions (``math.*``, ``and``/``or``/``not``)."""

    choose_in_python = True

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

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.exp == -1:
            return f"1 / {self.parenthesize(expr.base, PRECEDENCE['Mul'] + 1)}"
        return super()._print_Pow(expr, rational)


class UpdatePrinter(ScalarPrinter):
    """One assignment of an update rule as a plain NumPy expression, associated as PyTorch computes it.

    Args:
        scalars: the symbols that are Python scalars.
        target: the assigned symbol: terms and factors that read it come first.
    """

    def __init__(self, scalars: Sequence[sp.Symbol] | set[sp.Symbol], target: sp.Symbol) -> None:
        super().__init__(scalars=scalars)
        self.target = target

    def _first(self, items: Sequence[sp.Expr]) -> list[sp.Expr]:
        """``items`` with those that read the target first (otherwise in order)."""
        return sorted(items, key=lambda e: self.target not in e.free_symbols)

    def _print_Add(self, expr: sp.Add, order: str | None = None) -> str:
        if self._is_scalar(expr):
            return super()._print_Add(expr, order)
        constant = sp.Add(*(t for t in expr.args if self._is_scalar(t)))
        # target-reading terms first, positive before negative within each group (x - y, not -y + x)
        terms = self._first(sorted((t for t in expr.args if not self._is_scalar(t)),
                                   key=lambda t: t.could_extract_minus_sign()))
        text = ""
        for term in terms:
            negative = term.could_extract_minus_sign()
            magnitude = self.parenthesize(-term if negative else term, PRECEDENCE["Add"] + 1)
            text = (f"{text} - {magnitude}" if text else f"-{magnitude}") if negative else (
                f"{text} + {magnitude}" if text else magnitude)
        if constant != 0:
            text = f"{text} + {self.parenthesize(constant, PRECEDENCE['Add'] + 1)}"
        return text

    def _print_Mul(self, expr: sp.Mul) -> str:
        if self._is_scalar(expr):
            return super()._print_Mul(expr)
        factors = sp.Mul.make_args(expr)
        coefficient = sp.Mul(*(f for f in factors if self._is_scalar(f)))
        arrays = [f for f in factors if not self._is_scalar(f)]
        numerators = self._first([f for f in arrays if not (f.is_Pow and f.exp.is_negative)])
        denominators = self._first([f.base ** -f.exp for f in arrays if f.is_Pow and f.exp.is_negative])
        above = PRECEDENCE["Mul"] + 1
        if numerators:
            text = " * ".join(self.parenthesize(f, PRECEDENCE["Mul"]) for f in numerators)
        else:  # k / a: the coefficient is the numerator
            text, coefficient = self.parenthesize(coefficient, PRECEDENCE["Mul"]), sp.S.One
        for factor in denominators:
            text = f"{text} / {self.parenthesize(factor, above)}"
        numerator, denominator = sp.fraction(coefficient)
        if coefficient == 1:
            return text
        if coefficient == -1:
            return f"-({text})" if len(arrays) > 1 else f"-{text}"
        if numerator == 1:  # divide by the scalar, as PyTorch does (x / sqrt(bc2)), not by its reciprocal
            return f"{text} / {self.parenthesize(denominator, above)}"
        return f"{text} * {self.parenthesize(coefficient, above)}"

    def _print_MinMax(self, expr: sp.Expr, array_fn: str, scalar_fn: str) -> str:
        if self._is_scalar(expr):
            return super()._print_MinMax(expr, array_fn, scalar_fn)
        args = self._first([a for a in expr.args if not self._is_scalar(a)]) + [
            a for a in expr.args if self._is_scalar(a)]
        text = self._print(args[0])
        for a in args[1:]:
            text = f"{array_fn}({text}, {self._print(a)})"
        return text

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        if self._is_scalar(expr):
            return super()._print_Piecewise(expr)
        raise GenerationError(f"an array Piecewise inside an expression: {expr}")


def _assignment(rule: UpdateRule, target: sp.Symbol, expr: sp.Expr,
                scalars: set[sp.Symbol]) -> tuple[str, str | Branch]:
    """``(name, plain text or Branch)`` for one assignment of the rule."""
    printer = UpdatePrinter(scalars, target)
    expr = constants_to_floats(expr)
    if isinstance(expr, sp.Piecewise) and not expr.free_symbols <= scalars:
        if any(not c.free_symbols <= scalars for _, c in expr.args):
            raise GenerationError(f"{rule.name}: {target} branches on an array condition")
        return target.name, Branch(tuple((printer.doprint(c), printer.doprint(v)) for v, c in expr.args))
    return target.name, printer.doprint(expr)


def step_program(rule: UpdateRule) -> Emitted:
    """One step of ``rule`` as in-place NumPy (:func:`symdl.printing.inplace.emit_program`)."""
    scalars = {*rule.hyper_symbols, STEP, *(s.symbol for s in rule.states if s.scalar)}
    assignments, kept = [], [s.symbol.name for s in rule.states if s.scalar]
    for target, expr in rule.steps:
        if target in scalars or expr.free_symbols <= scalars:
            scalars.add(target)
            kept.append(target.name)  # scalar intermediates keep their names (mu, rho_t)
        assignments.append(_assignment(rule, target, expr, scalars))
    like = ArraySpec(PARAM.name, PARAM.name)  # symdl.optim checks grads and states are like the parameter
    arrays = {name: like for name in ["param", "grad", *_array_states(rule)]}
    try:
        emitted = emit_program(assignments, list(dict.fromkeys(kept)), scalars=[s.name for s in scalars],
                               arrays=arrays, writable=["param", *_array_states(rule)], scratch_like="param",
                               scratch_prefix=SCRATCH_PREFIX, axpy="_axpy", comments=False)
    except ValueError as error:
        raise GenerationError(f"{rule.name}: {error}") from error
    if emitted.fresh:
        raise GenerationError(f"{rule.name}: the step would allocate {emitted.fresh} array(s) each call")
    return emitted


# --------------------------------------------------------------------------- module pieces
def _hyper_names(rule: UpdateRule) -> list[str]:
    return [s.name for h in rule.hypers for s in h.symbols]


def _array_states(rule: UpdateRule) -> list[str]:
    return [s.name for s in rule.states if not s.scalar]


def _step_function(rule: UpdateRule) -> tuple[str, int]:
    emitted = step_program(rule)
    scalar_states = [s.symbol.name for s in rule.states if s.scalar]
    args = ", ".join(["param", "grad", *_array_states(rule), "scratch", "step", *scalar_states, *_hyper_names(rule)])
    head = [f"def _{rule.name}_step({args}):",
            f'    """One {rule.class_name} step on one parameter, in place; returns the new scalar states."""']
    if emitted.scratch:
        names = ", ".join(f"{SCRATCH_PREFIX}{i}" for i in range(emitted.scratch))
        head.append(f"    {names}{',' if emitted.scratch == 1 else ''} = scratch")
    returns = f"    return ({''.join(f'{s}, ' for s in scalar_states)})"
    return "\n".join(head + [f"    {line}" for line in emitted.lines] + [returns]) + "\n", emitted.scratch


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
