"""What every exporter shares: which ops export, and each variant's proven forms printed for a framework.

An exported op computes exactly what the NumPy kernel computes: the forward is
the formula's stable form (:attr:`Formula.forward`), each gradient the VJP
expression :mod:`symdl.codegen.ops` prints (the proven closed form times the
upstream gradient ``g``, or SymPy's derivative of the stable form), with
shared subexpressions computed once (``sympy.cse``). Only the printer differs
(:mod:`symdl.printing.torch_printer`, :mod:`symdl.printing.jax_printer`).

Parameter-range :class:`~symdl.catalog.spec.Case` forms are not exported:
they are faster forms proven equal to the general one where they hold, and
the general form holds everywhere.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from symdl.catalog.spec import RESULT, Formula, Op, Param
from symdl.codegen.ops import _docstring, _gradient_expr
from symdl.errors import SymdlError
from symdl.printing.framework_printer import FrameworkPrinter
from symdl.printing.inplace import kernel_arrays
from symdl.printing.numpy_printer import print_assignments

#: Op kinds the exporters print (every kind of the catalog; a new kind must be taught to them first).
EXPORTED_KINDS = frozenset({"elementwise", "row", "pointwise_loss", "class_loss"})


class ExportError(SymdlError, ValueError):
    """An op cannot be exported (its kind or a function in it has no translation)."""


@dataclass
class Printed:
    """One variant of one op, printed for a framework.

    Attributes:
        forward: lines computing ``out`` (per element, before any reduction) from the input symbols.
        backward: lines computing ``grad_<input>`` for each differentiable input from ``g`` too.
        helpers: helper functions the lines call (their source goes in the module header).
    """

    forward: list[str]
    backward: list[str]
    helpers: set[str] = field(default_factory=set)
    #: the backward reads the forward's output as ``result`` (the op's proven output form)
    uses_result: bool = False
    #: the forward and the backward computed into their own temporaries (None: not printed)
    forward_inplace: list[str] | None = None
    backward_inplace: list[str] | None = None


def check_exportable(op: Op) -> None:
    """Raise :class:`ExportError` unless the exporters handle ``op``'s kind."""
    if op.kind not in EXPORTED_KINDS:
        raise ExportError(f"{op.name}: ops of kind {op.kind!r} are not exported yet "
                          f"(exported kinds: {', '.join(sorted(EXPORTED_KINDS))})")


#: Arguments of an implementation that are neither inputs nor parameters, by op kind: the row axis; the
#: reduction; for class losses also the mask of counted rows and the 'mean' denominator.
STRUCTURAL: dict[str, list[str]] = {"elementwise": [], "row": ["dim"], "pointwise_loss": ["reduction"],
                                    "class_loss": ["dim", "keep", "denominator", "reduction"]}


def structural_args(op: Op) -> list[str]:
    """The structural arguments of ``op``'s implementations (:data:`STRUCTURAL`)."""
    return list(STRUCTURAL[op.kind])


def implementation_args(op: Op) -> list[str]:
    """The arguments of each implementation, in order: inputs, array parameters, structural arguments,
    scalar parameters."""
    return ([i.name for i in op.inputs] + [p.name for p in array_params(op)] + structural_args(op)
            + [p.name for p in scalar_params(op)])


def scalar_params(op: Op) -> tuple[Param, ...]:
    """Parameters that are Python scalars inside the formulas (not arrays, not structural)."""
    return tuple(p for p in op.symbol_params if p.rule.kind != "array")


def array_params(op: Op) -> tuple[Param, ...]:
    """Optional array parameters (weights): tensors, or None meaning 1."""
    return tuple(p for p in op.params if p.rule.kind == "array")


def framework_arrays(op: Op) -> dict:
    """What the exported code may assume about its arrays (:class:`symdl.printing.inplace.ArraySpec`).

    The NumPy kernels' guarantees (:func:`symdl.printing.inplace.kernel_arrays`), except for pointwise
    losses, whose exported functions broadcast their inputs with one another as PyTorch does: there each
    input, the upstream gradient (its shape is the broadcast one, its dtype the promoted one) and each
    weight is an array of its own shape and dtype.
    """
    from symdl.printing.inplace import ArraySpec

    specs = kernel_arrays(op)
    first = op.inputs[0].symbol
    if not op.traits.loss:  # the saved output: the first input's shape and dtype
        specs[RESULT] = ArraySpec(first.name, first.name, vector=op.traits.over_rows)
    if not op.traits.broadcast_targets:
        return specs
    for symbol, spec in specs.items():
        if symbol != first:
            specs[symbol] = ArraySpec(symbol.name, symbol.name, maybe_float=spec.maybe_float)
    return specs


def uses_output_form(op: Op, formula: Formula) -> bool:
    """Whether the backward is printed from the saved output (PyTorch's ``result``).

    Where the catalog proves a gradient written with the forward's output (:class:`OutputForm`) that
    loses no accuracy (no ``accuracy`` caveat: softmax, log_softmax, logsigmoid, relu, ...), the backward
    reads the output instead of recomputing the forward, as PyTorch's derivatives.yaml does. Forms that
    lose accuracy where the output has rounded (sigmoid's ``y (1 - y)``, tanh's ``1 - y^2``) are not used:
    the exported gradient stays as accurate as the NumPy kernel's from the input.
    """
    form = formula.from_output
    return (not op.traits.loss and form is not None and not form.accuracy
            and all(i.name in form.grads for i in op.differentiable_inputs))


def print_forms(op: Op, formula: Formula, make_printer: Callable[..., FrameworkPrinter],
                inplace: Callable[..., FrameworkPrinter] | None = None,
                lower: Callable[[list[str], list[str], list[str]], tuple[list[str], set[str]]] | None = None,
                from_output: bool = False) -> Printed:
    """The forward and VJP lines of one formula of ``op`` for the framework ``make_printer`` prints.

    With ``inplace`` (a printer in :mod:`symdl.printing.inplace`'s NumPy names) and ``lower`` (those
    names to the framework's), the forward and a second backward are also compiled by
    :func:`symdl.printing.inplace.emit_inplace` into code writing into its own dead temporaries: the same
    operations on the same operands in the same association, so the same values bit for bit; inputs,
    ``g`` and parameters are never written. With ``from_output``, the backward reads the saved output
    where :func:`uses_output_form` allows (:attr:`Printed.uses_result`).
    """
    check_exportable(op)
    names = {op.upstream: "g", **{p.symbol: p.name for p in op.symbol_params}}

    def printer(make: Callable[..., FrameworkPrinter]) -> FrameworkPrinter:
        return make(scalars=[p.symbol for p in scalar_params(op)], names=names, arrays=framework_arrays(op))

    from_output = from_output and uses_output_form(op, formula)
    grads = {f"grad_{i.name}": _gradient_expr(op, formula, i.name, from_output=from_output)
             for i in op.differentiable_inputs}
    forward_printer, backward_printer = printer(make_printer), printer(make_printer)
    try:
        forward = print_assignments({"out": formula.forward}, forward_printer, inplace=False)
        backward = print_assignments(grads, backward_printer, inplace=False)
        printed = Printed(forward, backward, forward_printer.used_helpers | backward_printer.used_helpers,
                          uses_result=from_output)
        if inplace is not None and lower is not None:
            scalars, floats = [p.name for p in scalar_params(op)], [p.name for p in array_params(op)]
            forward_inplace, forward_helpers = lower(print_assignments({"out": formula.forward}, printer(inplace)),
                                                     scalars, floats)
            backward_inplace, backward_helpers = lower(print_assignments(grads, printer(inplace)), scalars, floats)
            printed.forward_inplace, printed.backward_inplace = forward_inplace, backward_inplace
            printed.helpers |= forward_helpers | backward_helpers
    except NotImplementedError as error:
        raise ExportError(f"{op.name}: {error}") from None
    return printed


def camel(name: str) -> str:
    """``leaky_relu`` -> ``LeakyRelu``: the class names of an exported op."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def signature(op: Op, annotation: str) -> str:
    """``input: <annotation>, ..., *, param=default, ...``: the NumPy kernel's signature."""
    arrays = [f"{i.name}: {annotation}" for i in op.inputs]
    params = [f"{p.name}={p.default!r}" for p in op.params]
    return ", ".join(arrays + (["*", *params] if params else []))


def choice_checks(op: Op) -> list[str]:
    """Lines rejecting a choice parameter outside its choices (ValueError, as PyTorch raises)."""
    lines = []
    for p in op.params:
        if p.rule.kind == "choice":
            choices = tuple(p.rule.args)
            lines += [f"if {p.name} not in {choices!r}:",
                      f"    raise ValueError(f\"{op.name}: {p.name} must be one of {choices!r}, got {{{p.name}!r}}\")"]
    return lines


def catalog_origin(op: Op) -> str:
    """The last line :mod:`symdl.codegen.ops` gives a kernel's docstring: where it was generated from."""
    return f"Generated from the catalog entry ``{op.name}``; do not edit."


def origin(op: Op) -> str:
    """Where ``op``'s generated code came from: the catalog, or a user's ``symdl.define_op`` definition."""
    from symdl.catalog import ACTIVATIONS_AND_LOSSES

    if ACTIVATIONS_AND_LOSSES.get(op.name) is op:
        return catalog_origin(op)
    return f"Generated from the user op ``{op.name}`` defined with ``symdl.define_op``; do not edit."


def with_origin(op: Op, source: str) -> str:
    """Generated ``source`` for ``op`` with its docstrings naming where it came from (:func:`origin`)."""
    return source.replace(catalog_origin(op), origin(op))


def docstring(op: Op) -> str:
    """The NumPy kernel's docstring (the math in LaTeX, kinks, numerics), for the exported function."""
    return with_origin(op, _docstring(op, None, vjp=False))


def indent(lines: Iterable[str], depth: int = 1) -> list[str]:
    """``lines`` indented ``depth`` levels of four spaces."""
    return [textwrap.indent(line, "    " * depth) if line else line for line in lines]


def implementations(op: Op) -> list[tuple[str, int | None, Formula]]:
    """``(variant, fast path index or None, formula)`` for every function an exporter prints.

    A fast path (:attr:`Op.fast_paths`: an omitted optional weight) gets a function of its own,
    printed from the formula with the path's values substituted (None as 1), so that an unweighted
    loss does not multiply by ones; the substitution is exact, so it needs no proof of its own.
    """
    result: list[tuple[str, int | None, Formula]] = []
    for variant, formula in op.formulas.items():
        result.append((variant, None, formula))
        for index, values in enumerate(op.fast_paths):
            substituted = {op.param(n).symbol: 1 if v is None else v for n, v in values.items()}
            result.append((variant, index, formula.substituted(substituted)))
    return result


def fast_path_condition(op: Op, index: int) -> str:
    """The Python condition under which fast path ``index`` applies."""
    return " and ".join(f"{n} is None" if v is None else f"{n} == {v!r}" for n, v in op.fast_paths[index].items())


def dispatch(op: Op, name_of: Callable[[Op, str, int | None], str], fast: int | None = None) -> str:
    """The expression naming the implementation: ``name_of(op, variant, fast)``, or a table indexed
    by the variant parameter (``str`` of a bool) when the op has variants."""
    if op.variant_param is None:
        return name_of(op, "", fast)
    default = op.param(op.variant_param).default
    key = f"str({op.variant_param})" if isinstance(default, bool) else op.variant_param
    return "{" + ", ".join(f"{str(v)!r}: {name_of(op, v, fast)}" for v in op.formulas) + "}" + f"[{key}]"


def public_body(op: Op, name_of: Callable[[Op, str, int | None], str], call: Callable[[str, list[str]], str],
                prelude: list[str]) -> list[str]:
    """The exported function's body: parameter checks, ``prelude``, a ``return`` per fast path (its
    omitted arrays passed as 1.0), then omitted arrays as 1.0 and the general implementation.

    ``name_of(op, variant, fast)`` names an implementation (a class, a function); ``call(expression,
    args)`` is the source calling the implementation ``expression`` evaluates to with ``args``.
    """
    arrays = [p.name for p in array_params(op)]
    lines = choice_checks(op) + prelude
    for index, values in enumerate(op.fast_paths):
        args = ["1.0" if a in values and a in arrays else a for a in implementation_args(op)]
        lines += [f"if {fast_path_condition(op, index)}:  # fast path: the formulas with {values}",
                  f"    return {call(dispatch(op, name_of, index), args)}"]
    lines += [f"{n} = 1.0 if {n} is None else {n}  # omitted weights mean 1" for n in arrays]
    return lines + [f"return {call(dispatch(op, name_of), implementation_args(op))}"]


def implementation_name(op: Op, variant: str, fast: int | None = None) -> str:
    """``leaky_relu`` -> ``leaky_relu``, ``gelu``/``tanh`` -> ``gelu_tanh``, fast path 0 -> ``..._fast0``:
    the exporters derive their class and function names from it."""
    name = op.name + (f"_{str(variant).lower()}" if op.variant_param else "")
    return name + ("" if fast is None else f"_fast{fast}")


def module_header(target: str, framework_imports: list[str], ops: Iterable[Op], command: str) -> list[str]:
    """The generated module's docstring and imports."""
    names = ", ".join(op.name for op in ops)
    return [
        f'"""{target} functions exported by symdl, with derived and proven gradients: {names}.',
        "",
        f"Generated by ``{command}``; do not edit by hand: change the definitions and re-export.",
        "Each op's forward and backward are printed from the same proven closed forms and stable forms",
        "as symdl's NumPy kernels (``symdl verify`` lists the proofs).",
        '"""',
        "",
        "# fmt: off",
        "from __future__ import annotations",
        "",
        "import math  # noqa: F401 - scalar parameter arithmetic",
        "",
        *framework_imports,
        "",
    ]


def module_source(target: str, framework_imports: list[str], ops: Sequence[Op], command: str,
                  exports: Iterable[str], sources: Iterable[str], bodies: list[str]) -> str:
    """The generated module: its docstring and imports (:func:`module_header`), ``__all__`` naming
    ``exports``, the helpers' ``sources`` in order, then the ``bodies`` (each op's lines)."""
    lines = module_header(target, framework_imports, ops, command)
    lines += ["__all__ = [", *(f"    {name!r}," for name in exports), "]", "", ""]
    for source in sources:
        lines += [*source.splitlines(), "", ""]
    return "\n".join(lines + bodies).rstrip() + "\n"
