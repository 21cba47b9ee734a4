"""What every exporter shares: which ops export, and each variant's proven forms printed for a framework.

An exported op computes exactly what the NumPy kernel computes: the forward is
the formula's stable form (:attr:`Formula.forward`), each gradient the VJP
expression :mod:`symdl.codegen.ops` prints (the proven closed form times the
upstream gradient ``g``, or SymPy's derivative of the stable form), with
shared subexpressions computed once (``sympy.cse``). Only the printer differs
(:mod:`symdl.printing.torch_printer`, :mod:`symdl.printing.jax_printer`).

A class loss whose row formulas are affine in the one-hot target row (nll_loss,
cross_entropy, multi_margin_loss) also gets a *gather form* for class-index
targets (:func:`gather_forms`, derived by :mod:`symdl.onehot` as for the NumPy
kernels): the forward reads each row's values at its target class instead of
a one-hot row, and each gradient is a base plus a scatter at the target class.

Parameter-range :class:`~symdl.catalog.spec.Case` forms (elu's and celu's at
alpha = 1, leaky_relu's max(x, slope x) for |slope| <= 1) are exported as the
NumPy kernels use them: each is an implementation of its own, which the public
function takes when the case's condition on the scalar parameters holds (the
forms are proven equal to the general ones there). They count after the fast
paths in the implementations' ``fast`` index (:func:`implementations`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import sympy as sp

from symdl.catalog.spec import RESULT, Case, Formula, Op, OutputForm, Param
from symdl.codegen.ops import _docstring, _gradient_expr
from symdl.errors import SymdlError
from symdl.functions import rowmax, rowsum
from symdl.onehot import NotAffineError, lower_row, lower_rowsums, picked_symbol
from symdl.printing.framework_printer import FrameworkPrinter
from symdl.printing.inplace import ArraySpec, kernel_arrays
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
    #: the gather form (:func:`gather_forms`): the target is class indices, which get no gradient
    gathered: bool = False
    #: what the implementation's docstring adds to its summary (the gather form's math)
    doc: list[str] = field(default_factory=list)
    #: intermediates the forward computes and saves, which the in-place backward reads instead of
    #: recomputing them (its plain branch, taken under create_graph, recomputes them from the inputs)
    saved: list[str] = field(default_factory=list)
    #: the expressions printed: ``out`` (and saved intermediates) from the inputs; each ``grad_<input>``
    forward_exprs: dict[str, sp.Expr] = field(default_factory=dict)
    backward_exprs: dict[str, sp.Expr] = field(default_factory=dict)


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


def output_form(op: Op, formula: Formula, costs: Mapping[str, float] | None = None,
                shared: Mapping[sp.Expr, sp.Symbol] | None = None) -> OutputForm | None:
    """The gradient form the backward prints from the saved output (PyTorch's ``result``), or None to print
    it from the input.

    Candidates are the catalog's proven gradients from the output (:attr:`Formula.output_forms`) that lose no
    accuracy (no ``accuracy`` caveat: softmax, log_softmax, logsigmoid, relu, sigmoid's ``y sigma(-x)``, ...),
    so the backward reads the output instead of recomputing the forward, as PyTorch's derivatives.yaml
    does. Forms that lose accuracy where the output has rounded (sigmoid's ``y (1 - y)``, tanh's ``1 - y^2``)
    are not used: the exported gradient stays as accurate as the NumPy kernel's from the input.

    Without ``costs`` the first candidate is printed. With a framework's ``costs`` (:func:`expression_cost`),
    the cheapest candidate, and only where it costs no more than the form from the input: all are proven,
    and the cheapest is printed. ``shared`` are the forward's intermediates the form from the input may read
    instead of computing them (:func:`_shared_intermediates`): they cost it nothing.
    """
    names = [i.name for i in op.differentiable_inputs]
    candidates = [form for form in formula.output_forms
                  if not form.accuracy and all(name in form.grads for name in names)]
    if op.traits.loss or not candidates:
        return None
    if costs is None:
        return candidates[0]

    def cost(form: OutputForm | None) -> float:
        read = shared if form is None and shared else {}
        return sum(expression_cost(_gradient_expr(op, formula, n, output_form=form).xreplace(read), costs)
                   for n in names)

    cheapest = min(candidates, key=cost)  # the first of equals: the catalog's order
    return cheapest if cost(cheapest) <= cost(None) else None


def expression_cost(expr: sp.Expr, costs: Mapping[str, float]) -> float:
    """What evaluating ``expr`` elementwise costs a framework, in passes over memory of one product: each
    function weighs ``costs[name]`` (1 if not listed; ``grouped``, a printing mark, 0), each arithmetic
    operation, maximum, minimum and select 1; a subexpression met twice is counted once, as the printed
    code computes it once (``sympy.cse``)."""
    total = 0.0
    for node in set(sp.preorder_traversal(expr)):
        if isinstance(node, (sp.Add, sp.Mul, sp.Max, sp.Min)):
            total += len(node.args) - 1
        elif isinstance(node, (sp.Pow, sp.Piecewise)):
            total += 1
        elif isinstance(node, sp.Function):
            total += costs.get(type(node).__name__, 1.0)
    return total


#: Lowers the in-place emitter's NumPy lines to a framework's: (lines, scalar names, maybe-float names) ->
#: (lines, helpers) (:func:`symdl.printing.torch_printer.lower_to_torch`).
Lower = Callable[[list[str], list[str], list[str]], tuple[list[str], set[str]]]


def print_forms(op: Op, formula: Formula, make_printer: Callable[..., FrameworkPrinter],
                inplace: Callable[..., FrameworkPrinter] | None = None, lower: Lower | None = None,
                from_output: bool = False, costs: Mapping[str, float] | None = None) -> Printed:
    """The forward and VJP lines of one formula of ``op`` for the framework ``make_printer`` prints.

    With ``inplace`` (a printer in :mod:`symdl.printing.inplace`'s NumPy names) and ``lower`` (those
    names to the framework's), the forward and a second backward are also compiled by
    :func:`symdl.printing.inplace.emit_inplace` into code writing into its own dead temporaries: the same
    operations on the same operands in the same association, so the same values bit for bit; inputs,
    ``g`` and parameters are never written. With ``from_output``, the backward reads the saved output
    in the form :func:`output_form` chooses, given the framework's function ``costs``
    (:attr:`Printed.uses_result`).
    """
    check_exportable(op)
    forward = {"out": formula.forward}
    # A softmax-like op's in-place backward may read the forward's intermediates instead of computing them
    # again (log_softmax's exp(x - max x) and its row sum, where it read its output: one full tensor saved either
    # way). The choice is the same with and without the in-place code, so that its plain form (create_graph, and
    # the plain module the tests compare with) computes the same form. (Not for the class losses' row forms:
    # SymPy prints a shared part differently in the two places, x / m in one and x * (1 / m) in the other.)
    shared = (_shared_intermediates(op, forward, {i.name: _gradient_expr(op, formula, i.name)
                                                  for i in op.differentiable_inputs}, dict(framework_arrays(op)))
              if op.kind == "row" else {})
    form = output_form(op, formula, costs, shared) if from_output else None
    grads = {f"grad_{i.name}": _gradient_expr(op, formula, i.name, output_form=form)
             for i in op.differentiable_inputs}
    printed = _print(op, forward, grads, framework_arrays(op), make_printer, inplace, lower,
                     reuse=bool(shared) and form is None)
    printed.uses_result = form is not None and any(g.has(RESULT) for g in grads.values())
    if printed.saved:
        printed.doc = ["The in-place backward reads what the forward computed instead of computing it again:", "",
                       *(f"    {symbol} = {sp.sstr(expr)}" for expr, symbol in shared.items())]
    if printed.uses_result:
        printed.doc = ["The backward reads the saved output y (``result``), proven equal to the derived gradient:",
                       "", *(f"    grad_{name} = {sp.sstr(grads[f'grad_{name}'].xreplace({RESULT: sp.Symbol('y')}))}"
                             for name in (i.name for i in op.differentiable_inputs))]
    return printed


def _print(op: Op, forward: dict[str, sp.Expr], backward: dict[str, sp.Expr], arrays: dict,
           make_printer: Callable[..., FrameworkPrinter], inplace: Callable[..., FrameworkPrinter] | None,
           lower: Lower | None, maybe_float: Iterable[str] = (), reuse: bool = False) -> Printed:
    """``forward`` and ``backward`` (name -> expression) printed plainly, and with ``inplace`` and ``lower``
    also into the code's own temporaries (:func:`print_forms`); ``arrays`` are the printers' array specs,
    ``maybe_float`` names besides the optional weights that may be the Python float 1.0. With ``reuse``
    (and ``inplace``), the in-place backward reads the forward's intermediates it would recompute
    (:func:`_shared_intermediates`, :attr:`Printed.saved`)."""
    names = {op.upstream: "g", **{p.symbol: p.name for p in op.symbol_params}}
    arrays = dict(arrays)
    shared = _shared_intermediates(op, forward, backward, arrays) if reuse and inplace is not None else {}
    forward = forward | {symbol.name: expr for expr, symbol in shared.items()}
    backward_reused = {name: expr.xreplace(shared) for name, expr in backward.items()}

    def printer(make: Callable[..., FrameworkPrinter]) -> FrameworkPrinter:
        return make(scalars=[p.symbol for p in scalar_params(op)], names=names, arrays=arrays)

    forward_printer, backward_printer = printer(make_printer), printer(make_printer)
    try:
        printed = Printed(print_assignments(forward, forward_printer, inplace=False),
                          print_assignments(backward, backward_printer, inplace=False),
                          forward_printer.used_helpers | backward_printer.used_helpers,
                          saved=[symbol.name for symbol in shared.values()], forward_exprs=forward,
                          backward_exprs=backward_reused)
        if inplace is not None and lower is not None:
            scalars = [p.name for p in scalar_params(op)]
            floats = [p.name for p in array_params(op)] + list(maybe_float)
            forward_inplace, forward_helpers = lower(print_assignments(forward, printer(inplace)), scalars, floats)
            backward_inplace, backward_helpers = lower(print_assignments(backward_reused, printer(inplace)),
                                                       scalars, floats)
            printed.forward_inplace, printed.backward_inplace = forward_inplace, backward_inplace
            printed.helpers |= forward_helpers | backward_helpers
    except NotImplementedError as error:
        raise ExportError(f"{op.name}: {error}") from None
    return printed


def _shared_intermediates(op: Op, forward: dict[str, sp.Expr], backward: dict[str, sp.Expr],
                          arrays: dict) -> dict[sp.Expr, sp.Symbol]:
    """Subexpressions of the forward that the backward computes again (softmax's ``exp(x - max x)`` and its
    row sum for cross_entropy), largest first, each reading an input's full row: expression -> the symbol
    the backward reads it as. Their array specs are added to ``arrays`` (a full row reading an input outside
    its row reductions has the input's shape, otherwise one value per row, ``g``'s)."""
    rows = {i.symbol for i in op.inputs if i.role not in ("class_index", "sign")}
    first = op.inputs[0].symbol.name
    remaining = list(backward.values())
    shared: dict[sp.Expr, sp.Symbol] = {}
    for expr in forward.values():
        for part in sp.preorder_traversal(expr):
            if (not isinstance(part, sp.Expr) or part.is_Atom or isinstance(part, sp.Piecewise)
                    or not part.free_symbols & rows or not any(e.has(part) for e in remaining)):
                continue
            symbol = sp.Symbol(f"saved{len(shared)}", real=True)
            replaced = [e.xreplace({part: symbol}) for e in remaining]
            if replaced == remaining:  # a product or sum inside a larger one: not a subtree of the backward
                continue
            shared[part], remaining = symbol, replaced
            reductions = {r: sp.Dummy() for r in part.atoms(rowsum, rowmax)}
            full = bool(part.xreplace(reductions).free_symbols & rows)
            arrays[symbol] = ArraySpec(first, first) if full else ArraySpec("g", first, within=first, vector=True)
    return shared


@dataclass(frozen=True)
class GatherForms:
    """A class loss's formula for one-hot target rows ``t`` of class indices, without the rows.

    For a row formula affine in ``t``, a row sum :math:`\\sum_j E_j(t_j)` is
    :math:`\\sum_j E_j(0) + (E_k(1) - E_k(0))` at the target class :math:`k`, and a gradient
    :math:`G(t) = G(0) + t\\,\\partial G/\\partial t`: :func:`symdl.onehot.lower_rowsums` and
    :func:`symdl.onehot.lower_row` rewrite them with each row array ``x`` read at the target
    (``x_k``, :func:`symdl.onehot.picked_symbol`); row reductions (``rowmax``, softmax's row sum)
    stay over the full row.

    Attributes:
        index: the class-index target's symbol (``t``).
        forward: the per-row loss.
        grads: input name -> ``(base, at_target)``: the gradient is ``base`` everywhere plus
            ``at_target`` added at the target class.
    """

    index: sp.Symbol
    forward: sp.Expr
    grads: dict[str, tuple[sp.Expr, sp.Expr]]

    def picked(self, op: Op) -> dict[sp.Symbol, sp.Symbol]:
        """The row arrays the forms read at the target class (``x`` -> ``x_k``), in the op's order."""
        wanted = set().union(self.forward.free_symbols, *(e.free_symbols for pair in self.grads.values() for e in pair))
        return {s: picked_symbol(s) for s in op.row_symbols if s != self.index and picked_symbol(s) in wanted}


def gather_forms(op: Op, formula: Formula) -> GatherForms | None:
    """``formula``'s gather form for class-index targets, or None where the target enters it non-affinely
    (or the op has no class-index target): the one-hot rows then stay."""
    index = next((i.symbol for i in op.inputs if i.role == "class_index"), None)
    if index is None:
        return None
    picked = {s: picked_symbol(s) for s in op.row_symbols if s != index}
    try:
        forward = lower_rowsums(formula.forward, index, picked)
        grads = {i.name: lower_row(_gradient_expr(op, formula, i.name), index, picked)
                 for i in op.differentiable_inputs if i.role != "class_index"}
    except NotAffineError:
        return None
    return GatherForms(index, forward, grads)


def gathers(op: Op) -> bool:
    """Whether class-index targets take ``op``'s gather forms (every formula has one)."""
    return all(gather_forms(op, formula) is not None for formula in op.formulas.values())


def print_gathered(op: Op, formula: Formula, make_printer: Callable[..., FrameworkPrinter],
                   inplace: Callable[..., FrameworkPrinter] | None = None, lower: Lower | None = None) -> Printed:
    """The forward and VJP lines of ``formula``'s gather form (:func:`gather_forms`), as :func:`print_forms`.

    The lines read ``t`` as class indices with a unit class axis (``_class_rows(..., gather=True)``),
    pick the row arrays at them (``_pick``) and scatter each gradient's ``at_target`` part into its
    base (``_add_at_targets``): passes over the per-row values only, besides the row reductions and a
    gradient's full base.
    """
    forms = gather_forms(op, formula)
    if forms is None:
        raise ExportError(f"{op.name}: its formula has no gather form for class-index targets")
    arrays = framework_arrays(op)
    weights = {p.symbol for p in array_params(op)}
    first = op.inputs[0].symbol.name
    picked = forms.picked(op)
    for symbol, value in picked.items():  # per-row values: shaped like g, the input's dtype
        arrays[value] = ArraySpec("g", first, within=first, maybe_float=symbol in weights, vector=True)
    names = {p.symbol: p.name for p in op.symbol_params}

    def picks(exprs: Iterable[sp.Expr]) -> list[str]:
        wanted = set().union(*(e.free_symbols for e in exprs))
        return [f"{k.name} = _pick({names.get(s, s.name)}, {forms.index.name}, dim)"
                for s, k in picked.items() if k in wanted]

    parts = {f"{kind}_{name}": expr for name, pair in forms.grads.items() for kind, expr in zip(("base", "at"), pair)}
    printed = _print(op, {"out": forms.forward}, parts, arrays, make_printer, inplace, lower,
                     [picked[s].name for s in weights if s in picked], reuse=True)
    printed.gathered = True
    index = forms.index.name
    printed.doc = [f"Gather form ({index} one-hot at class k, x_k = x at k; rowsum/rowmax over the full row):",
                   "", f"    out = {sp.sstr(forms.forward)}",
                   *(f"    grad_{name} = {sp.sstr(base)}, plus {sp.sstr(at)} at class k"
                     for name, (base, at) in forms.grads.items())]
    scatters = [f"grad_{name} = _add_at_targets(base_{name}, {forms.index.name}, at_{name}, dim, "
                f"{op.inputs[0].name}, {not base.is_Atom})"  # a base that is an input or a constant: never written
                for name, (base, _) in forms.grads.items()]
    printed.forward = picks([forms.forward]) + printed.forward
    printed.backward = picks(parts.values()) + printed.backward + scatters
    if printed.forward_inplace is not None and printed.backward_inplace is not None:
        printed.forward_inplace = picks([forms.forward]) + printed.forward_inplace
        printed.backward_inplace = picks(parts.values()) + printed.backward_inplace + scatters
    return printed


def docstring_lines(summary: str, printed: Printed, notes: Sequence[str] = ()) -> list[str]:
    """An implementation's docstring: ``summary``, then the lines of ``notes`` and :attr:`Printed.doc` if any,
    a paragraph each."""
    body = [*notes, *([""] if notes and printed.doc else []), *printed.doc]
    if not body:
        return [f'"""{summary}"""']
    return [f'"""{summary}', "", *body, '"""']


def camel(name: str) -> str:
    """``leaky_relu`` -> ``LeakyRelu``: the class names of an exported op."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def signature(op: Op, annotation: str) -> str:
    """``input: <annotation>, ..., *, param=default, ...``: the NumPy kernel's signature."""
    arrays = [f"{i.name}: {annotation}" for i in op.inputs]
    params = [f"{p.name}={p.default!r}" for p in op.params]
    return ", ".join(arrays + (["*", *params] if params else []))


def _choice_check(op: Op, p: Param) -> list[str]:
    choices = tuple(p.rule.args)
    return [f"if {p.name} not in {choices!r}:",
            f"    raise ValueError(f\"{op.name}: {p.name} must be one of {choices!r}, got {{{p.name}!r}}\")"]


def _at_least_check(op: Op, p: Param) -> list[str]:
    (other,) = p.rule.args
    message = f"{op.name}: {p.name} must be >= {other} ({{{other}!r}}), got {{{p.name}!r}}"
    return [f"if {p.name} < {other}:", f"    raise ValueError(f\"{message}\")"]


#: The parameter rules an exported function checks itself, by kind (the others are the caller's numbers).
_PARAMETER_CHECKS: dict[str, Callable[[Op, Param], list[str]]] = {"choice": _choice_check,
                                                                   "at_least": _at_least_check}


def parameter_checks(op: Op) -> list[str]:
    """Lines rejecting, with PyTorch's ValueError, a choice parameter outside its choices and a bound below the
    parameter it must reach (hardtanh's max_val < min_val)."""
    return [line for p in op.params if p.rule.kind in _PARAMETER_CHECKS
            for line in _PARAMETER_CHECKS[p.rule.kind](op, p)]


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


def implementations(op: Op) -> list[tuple[str, int | None, bool, Formula]]:
    """``(variant, fast path index or None, gathered, formula)`` for every function an exporter prints:
    the formulas with one-hot target rows, then (where the op :func:`gathers`) their gather forms.

    A fast path (:attr:`Op.fast_paths`: an omitted optional weight) gets a function of its own,
    printed from the formula with the path's values substituted (None as 1), so that an unweighted
    loss does not multiply by ones; the substitution is exact, so it needs no proof of its own.
    So does each :class:`~symdl.catalog.spec.Case` of an op without variants (:func:`cases`), with
    the index ``len(op.fast_paths) + i``: its forms, proven equal to the formula's where it holds.
    """
    result: list[tuple[str, int | None, bool, Formula]] = []
    for gathered in (False, True) if gathers(op) else (False,):
        for variant, formula in op.formulas.items():
            result.append((variant, None, gathered, formula))
            for index, values in enumerate(op.fast_paths):
                substituted = {op.param(n).symbol: 1 if v is None else v for n, v in values.items()}
                result.append((variant, index, gathered, formula.substituted(substituted)))
        result += [("", len(op.fast_paths) + index, gathered, formula.under(case))
                   for index, (formula, case) in enumerate(cases(op))]
    return result


def cases(op: Op) -> list[tuple[Formula, Case]]:
    """The parameter-range cases the exporters print, in the order the public function tries them: those
    of an op without variants (a case belongs to one variant's formula, and the variant table dispatches
    by variant only)."""
    if op.variant_param is not None:
        return []
    formula = op.formulas[""]
    return [(formula, case) for case in formula.cases]


def fast_path_condition(op: Op, index: int) -> str:
    """The Python condition under which fast path ``index`` applies (a case's: its condition on the scalar
    parameters, in Python)."""
    if index >= len(op.fast_paths):
        return sp.pycode(cases(op)[index - len(op.fast_paths)][1].when)
    return " and ".join(f"{n} is None" if v is None else f"{n} == {v!r}" for n, v in op.fast_paths[index].items())


def dispatch(op: Op, name_of: Callable[..., str], fast: int | None = None, gathered: bool = False) -> str:
    """The expression naming the implementation: ``name_of(op, variant, fast, gathered)``, or a table
    indexed by the variant parameter (``str`` of a bool) when the op has variants."""
    if op.variant_param is None:
        return name_of(op, "", fast, gathered)
    default = op.param(op.variant_param).default
    key = f"str({op.variant_param})" if isinstance(default, bool) else op.variant_param
    return ("{" + ", ".join(f"{str(v)!r}: {name_of(op, v, fast, gathered)}" for v in op.formulas) + "}"
            + f"[{key}]")


def _calls(op: Op, name_of: Callable[..., str], call: Callable[[str, list[str]], str], gathered: bool) -> list[str]:
    """A ``return`` per fast path (its omitted arrays passed as 1.0), then omitted arrays as 1.0 and the
    general implementation's ``return``."""
    arrays = [p.name for p in array_params(op)]
    lines = []
    for index, values in enumerate(op.fast_paths):
        args = ["1.0" if a in values and a in arrays else a for a in implementation_args(op)]
        lines += [f"if {fast_path_condition(op, index)}:  # fast path: the formulas with {values}",
                  f"    return {call(dispatch(op, name_of, index, gathered), args)}"]
    lines += [f"{n} = 1.0 if {n} is None else {n}  # omitted weights mean 1" for n in arrays]
    for index, (_, case) in enumerate(cases(op), start=len(op.fast_paths)):
        lines += [f"if {fast_path_condition(op, index)}:  # {case.why or 'a case'}: its forms, proven equal there",
                  f"    return {call(dispatch(op, name_of, index, gathered), implementation_args(op))}"]
    return lines + [f"return {call(dispatch(op, name_of, None, gathered), implementation_args(op))}"]


def public_body(op: Op, name_of: Callable[..., str], call: Callable[[str, list[str]], str],
                prelude: list[str], is_float: str = "") -> list[str]:
    """The exported function's body: parameter checks, ``prelude``, a ``return`` per fast path (its
    omitted arrays passed as 1.0), then omitted arrays as 1.0 and the general implementation.

    ``name_of(op, variant, fast, gathered)`` names an implementation (a class, a function); ``call(expression,
    args)`` is the source calling the implementation ``expression`` evaluates to with ``args``. Where the op
    :func:`gathers`, class-index targets (``is_float``, the framework's test of the array ``{x}``, false)
    first take the gather forms' implementations.
    """
    lines = parameter_checks(op) + prelude
    if gathers(op):
        target = next(i for i in op.inputs if i.role == "class_index").name
        lines += [f"if not {is_float.format(x=target)}:  # class indices: gathers and scatters, no one-hot rows",
                  *indent(_calls(op, name_of, call, gathered=True))]
    return lines + _calls(op, name_of, call, gathered=False)


def implementation_name(op: Op, variant: str, fast: int | None = None, gathered: bool = False) -> str:
    """``leaky_relu`` -> ``leaky_relu``, ``gelu``/``tanh`` -> ``gelu_tanh``, fast path 0 -> ``..._fast0``, case 0
    -> ``..._case0``,
    the gather form (:func:`gather_forms`) -> ``..._gather``: the exporters derive their class and function
    names from it."""
    name = op.name + (f"_{str(variant).lower()}" if op.variant_param else "") + ("_gather" if gathered else "")
    if fast is None:
        return name
    return name + (f"_fast{fast}" if fast < len(op.fast_paths) else f"_case{fast - len(op.fast_paths)}")


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
