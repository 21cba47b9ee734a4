"""Write the NumPy kernel modules under ``symdl/kernels/`` from the catalog.

For each op ``name`` the generated module defines ``name(*inputs, **params)``
and ``name_vjp(grad, *inputs, **params)``. The forward prints the op's stable
form, each gradient its proven closed form (or SymPy's derivative where the
catalog gives none), with shared subexpressions computed once. One template
per op kind builds the surrounding code (validation, reductions); templates
are chosen from :data:`TEMPLATES`.

Output is a pure function of the catalog: regenerating twice gives identical
bytes, which ``tests/test_generated.py`` and ``.ci/run`` check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sympy as sp

from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.catalog.spec import RESULT, Case, Formula, Op, OutputForm, Param, Rule
from symdl.codegen.module import KERNEL_DIR, GeneratedModule, docstring, exports, function, header
from symdl.functions import NUM_CLASSES
from symdl.onehot import NotAffineError, lower_row, lower_rowsums, picked_symbol
from symdl.printing.inplace import ArraySpec, kernel_arrays
from symdl.printing.latex import OUTPUT_SYMBOLS, equation_latex, formula_latex, gradient_latex
from symdl.printing.numpy_printer import KernelPrinter, print_assignments

#: Module each family's kernels are written to.
FAMILY_MODULES: dict[str, str] = {"activation": "activations", "loss": "losses"}


# --------------------------------------------------------------------------- pieces
def _param_annotation(p: Param) -> str:
    annotations = {"real": "float", "positive": "float", "nonnegative": "float", "interval": "float",
                   "at_least": "float", "choice": "str", "integer": "int | None", "bool": "bool", "array": "ArrayLike | None"}
    return annotations[p.rule.kind]


def _signature(op: Op, leading: Iterable[str] = (), *, result: bool = False) -> str:
    arrays = [*leading, *(f"{i.name}: ArrayLike" for i in op.inputs)]
    params = [f"{p.name}: {_param_annotation(p)} = {p.default!r}" for p in op.params]
    params += ["result: ArrayLike | None = None"] if result else []
    return ", ".join(arrays + (["*", *params] if params else []))


def _output_forms(op: Op) -> dict[str, OutputForm]:
    """Each variant's gradient from its saved output, by variant (a variant without one recomputes)."""
    return {variant: f.from_output for variant, f in op.formulas.items() if f.from_output is not None}


def _literal_arguments(rule: Rule) -> str:
    return "".join(f", {a!r}" for a in rule.args)


#: How a rule's arguments follow the value in its ``_rt.check_<kind>`` call (default: each as a literal): the
#: choices as one tuple; another parameter by its name and its (already checked) value.
_RULE_ARGUMENTS: dict[str, Callable[[Rule], str]] = {
    "choice": lambda rule: f", {rule.args!r}",
    "at_least": lambda rule: f", {rule.args[0]!r}, {rule.args[0]}",
}


def _validation(op: Op) -> list[str]:
    """Lines that turn arguments into checked arrays and Python scalars."""
    lines = []
    for p in op.params:
        if p.rule.kind == "array":
            continue
        extra = _RULE_ARGUMENTS.get(p.rule.kind, _literal_arguments)(p.rule)
        lines.append(f"{p.name} = _rt.check_{p.rule.kind}({op.name!r}, {p.name!r}, {p.name}{extra})")
    for item in op.inputs:
        lines.append(f"{item.symbol.name} = _rt.float_array({item.name}, {op.name!r}, {item.name!r})")
    return lines


def _printer(op: Op, axis: str = "dim") -> KernelPrinter:
    names = {op.upstream: "g"}
    scalars = [p.symbol for p in op.symbol_params if p.rule.kind != "array"]
    arrays = kernel_arrays(op)
    # the saved output has the first input's shape and dtype (``_rt.result_like``)
    arrays[RESULT] = arrays[op.inputs[0].symbol]
    return KernelPrinter(scalars=scalars, names=names, axis=axis, arrays=arrays)


def _gradient_expr(op: Op, formula: Formula, input_name: str, *, output_form: OutputForm | None = None) -> sp.Expr:
    """The VJP expression the kernel prints for one input (from ``output_form``'s gradients when given)."""
    item = next(i for i in op.inputs if i.name == input_name)
    grads = output_form.grads if output_form is not None else formula.grads
    if input_name in grads:
        closed = grads[input_name]
        return closed if op.traits.over_rows else op.upstream * closed
    return op.upstream * sp.diff(formula.forward, item.symbol)


def _result_lines(op: Op, make_body: Callable[[Formula], list[str]]) -> list[str]:
    """``if result is not None:`` the saved output validated, then the output-form body (none without one).

    With variants, the saved output is validated for every variant and each variant that has an output
    form takes it behind ``if <variant_param> == <variant>:``; the others fall through to the body that
    recomputes the forward (``result`` is accepted, and unused, there).
    """
    forms = _output_forms(op)
    if not forms:
        return []
    x = op.inputs[0].symbol.name
    lines = ["if result is not None:  # the saved forward output: the gradient without recomputing the forward",
             f"    result = _rt.result_like(result, {x}, {op.name!r})"]
    for variant in forms:
        body = _with_cases(op, make_body, _output_cases)(op.formula(variant))
        if op.variant_param is None:
            lines += [f"    {line}" for line in body]
            continue
        others = [v for v in op.formulas if v not in forms]
        why = f"  # {', '.join(map(repr, others))} recomputes the forward" if others else ""
        lines += [f"    if {op.variant_param} == {variant!r}:{why}", *(f"        {line}" for line in body)]
    return lines


def _output_cases(case: Case) -> bool:
    """Cases that fix a parameter's value change the output form by substitution (elu's alpha = 1)."""
    return isinstance(case.when, sp.Eq)


def _docstring(op: Op, formula: Formula | None, *, vjp: bool, value: bool = False) -> str:
    """The kernel's docstring: summary, the math in LaTeX, kinks, numerics (``value``: the kernel
    returning the forward's value with the VJP). A VJP's docstring refers to the forward's math
    instead of repeating it, and adds only what is its own: the gradient from ``result``."""
    what = " (value and vector-Jacobian product)" if value else " (vector-Jacobian product)" if vjp else ""
    lines = [f"{op.summary}{what}.", ""]
    if vjp:
        lines += [f"The math (definition, gradient, kinks, numerics) is in ``{op.name}``'s docstring; this kernel"
                  f" computes the gradient shown there.", ""]
        lines += _result_doc(op)
    else:
        lines += _math_doc(op, formula)
    if value:
        lines += ["Returns:", f"    ``(loss, gradients)``: the loss as ``{op.name}`` returns it and the"
                  f" gradients as ``{op.name}_vjp`` returns them, computing what they share (row maxima,"
                  " exponentials, sums) once; equal to a few units in the last place (a shared subexpression"
                  " may group a sum differently).", ""]
    elif vjp:
        lines += ["Returns:", "    One gradient per input, in input order, each shaped like its input"
                  " (None for a non-differentiable input).", ""]
    lines += [f"Generated from the catalog entry ``{op.name}``; do not edit."]
    return docstring(lines)


def _math_doc(op: Op, formula: Formula | None) -> list[str]:
    """The forward's docstring body: each variant's math, kinks, cases, numerics and notes."""
    lines: list[str] = []
    formulas = op.formulas.items() if formula is None else [("", formula)]
    for variant, f in formulas:
        if variant:
            lines.append(f"With ``{op.variant_param}={variant!r}``:")
            lines.append("")
        lines.extend(formula_latex(op, f))
        lines.append("")
    kinks = [k for _, f in formulas for k in f.kinks]
    if kinks:
        lines.append("Kinks (PyTorch's subgradient): " + "; ".join(
            f"at x = {sp.sstr(k.at)} the gradient is {sp.sstr(k.subgradient)} ({k.why})" for k in kinks) + ".")
    for case in (c for _, f in formulas for c in f.cases):
        forms = [equation_latex(op, case.stable)] if case.stable is not None else []
        forms += [gradient_latex(op, dataclasses.replace(f, grads=case.grads), name) for name in case.grads]
        lines += [f"Where ``{sp.sstr(case.when)}`` ({case.why}), proven equal:" if case.why else
                  f"Where ``{sp.sstr(case.when)}``, proven equal:", "", ".. math::", "",
                  *(f"    {form}" for form in forms), ""]
    stables = [f for _, f in formulas if f.stable is not None]
    if stables:
        lines.append("Numerics: computes the stable form, proven equal to the definition; "
                     "finite wherever the true value is finite.")
    lines.extend(op.notes)
    return lines + [""] if lines and lines[-1] else lines


def _result_doc(op: Op) -> list[str]:
    """The ``result=`` argument: the output form of the gradient, proven, and its accuracy."""
    forms = _output_forms(op)
    if not forms:
        return []
    y = sp.Symbol(OUTPUT_SYMBOLS[op.family])
    others = ", ".join(f"``{v!r}``" for v in op.formulas if v not in forms)
    variants = "" if op.variant_param is None else (
        " (only with " + ", ".join(f"``{op.variant_param}={v!r}``" for v in forms)
        + (f"; {others} recomputes the forward)" if others else ")"))
    lines = ["Args:", f"    result: the output ``{op.name}`` returned for this input (PyTorch's saved ``result``):"
             f" when given, the gradient is computed from it{variants}, proven equal to the gradient from the input,"
             " instead of recomputing the forward; it must have the input's shape and dtype.", ""]
    for variant, form in forms.items():
        shown = dataclasses.replace(op.formula(variant),
                                    grads={k: v.xreplace({RESULT: y}) for k, v in form.grads.items()})
        accuracy = (f"Accuracy from ``result``: {form.accuracy}" if form.accuracy else
                    "Accuracy from ``result``: no loss (as accurate as the gradient from the input).")
        where = "" if op.variant_param is None else f" (``{op.variant_param}={variant!r}``)"
        lines += [f"From the output :math:`y`{where}:", "", ".. math::", "",
                  *(f"    {gradient_latex(op, shown, name)}" for name in form.grads), "", accuracy, ""]
    return lines


def _variant_dispatch(op: Op, make_body: Callable[[Formula], list[str]], suffix: str,
                      args: str, returns: str) -> tuple[list[str], list[str]]:
    """Body lines for an op, with private per-variant helpers when it has variants.

    Returns (helper source blocks, lines for the public function's body).
    """
    if op.variant_param is None:
        return [], make_body(op.formula())
    helpers, table = [], []
    for variant, formula in op.formulas.items():
        helper = f"_{op.name}_{str(variant).lower()}{suffix}"
        helpers.append(function(helper, args, returns, f'"""{op.name} with {op.variant_param}={variant!r}."""',
                                 make_body(formula)))
        table.append(f"{variant!r}: {helper}")
    call = ", ".join(arg.split(":")[0].strip() for arg in args.split(","))
    dispatch = "{" + ", ".join(table) + "}"
    key = f"str({op.variant_param})" if isinstance(op.param(op.variant_param).default, bool) else op.variant_param
    return helpers, [f"return {dispatch}[{key}]({call})"]


def _with_cases(op: Op, make_body: Callable[[Formula], list[str]], uses: Callable[[Case], bool]
                ) -> Callable[[Formula], list[str]]:
    """``make_body`` preceded by an ``if`` per :class:`Case` whose forms this body ``uses``."""
    def body(formula: Formula) -> list[str]:
        lines: list[str] = []
        for case in (c for c in formula.cases if uses(c)):
            lines.append(f"if {_printer(op).doprint(case.when)}:  # {case.why}" if case.why else
                         f"if {_printer(op).doprint(case.when)}:")
            lines += [f"    {line}" for line in make_body(formula.under(case))]
        return lines + make_body(formula)

    return body


def _forward_cases(case: Case) -> bool:
    return case.stable is not None


def _gradient_cases(case: Case) -> bool:
    return bool(case.grads)


# --------------------------------------------------------------------------- templates
def _first_input_vjp(op: Op) -> Callable[..., list[str]]:
    """The lines of a one-input kernel's VJP body for a formula (``from_output``: from its saved output)."""
    def vjp_body(formula: Formula, from_output: bool = False) -> list[str]:
        expr = _gradient_expr(op, formula, op.inputs[0].name,
                              output_form=formula.from_output if from_output else None)
        return print_assignments({"grad_input": expr}, _printer(op)) + ["return (grad_input,)"]

    return vjp_body


def _elementwise(op: Op) -> str:
    x = op.inputs[0].symbol.name
    scalar_args = "".join(f", {p.name}: float" for p in op.symbol_params)

    def forward_body(formula: Formula) -> list[str]:
        return print_assignments({"out": formula.forward}, _printer(op)) + ["return out"]

    vjp_body = _first_input_vjp(op)
    result_lines = _result_lines(op, lambda formula: vjp_body(formula, from_output=True))
    fwd_helpers, fwd_body = _variant_dispatch(op, _with_cases(op, forward_body, _forward_cases), "",
                                              f"{x}: np.ndarray{scalar_args}", "np.ndarray")
    vjp_helpers, vjp_tail = _variant_dispatch(op, _with_cases(op, vjp_body, _gradient_cases), "_vjp",
                                              f"g: np.ndarray, {x}: np.ndarray{scalar_args}", "tuple[np.ndarray]")
    checks = _validation(op)
    grad_check = [f"g = _rt.grad_like(grad, {x}.shape, {op.name!r})"]
    return "\n\n".join([
        *fwd_helpers, *vjp_helpers,
        function(op.name, _signature(op), "np.ndarray", _docstring(op, None, vjp=False), checks + fwd_body),
        function(f"{op.name}_vjp", _signature(op, ["grad: ArrayLike"], result=bool(result_lines)),
                  "tuple[np.ndarray]", _docstring(op, None, vjp=True), checks + grad_check + result_lines + vjp_tail),
    ])


def _row(op: Op) -> str:
    x = op.inputs[0].symbol.name
    formula = op.formula()
    checks = _validation(op) + [f"dim = _rt.legacy_softmax_dim({x}.ndim, dim, {op.name!r})"]
    forward = print_assignments({"out": formula.forward}, _printer(op)) + ["return out"]
    vjp_body = _first_input_vjp(op)
    result_lines = _result_lines(op, lambda formula: vjp_body(formula, from_output=True))
    grad_check = [f"g = _rt.grad_like(grad, {x}.shape, {op.name!r})"]
    return "\n\n".join([
        function(op.name, _signature(op), "np.ndarray", _docstring(op, None, vjp=False), checks + forward),
        function(f"{op.name}_vjp", _signature(op, ["grad: ArrayLike"], result=bool(result_lines)),
                  "tuple[np.ndarray]", _docstring(op, None, vjp=True),
                  checks + grad_check + result_lines + vjp_body(formula)),
    ])


def _pointwise_loss(op: Op) -> str:
    """Elementwise loss, optional array weights, then PyTorch's reduction."""
    first = op.inputs[0].symbol.name
    plain = {i.name: i.symbol.name for i in op.inputs if not i.broadcast}
    checks = _validation(op)
    if len(plain) > 1:
        checks.append(f"_rt.same_shape({op.name!r}, {{{', '.join(f'{k!r}: {v}' for k, v in plain.items())}}})")
    checks += [f"{i.symbol.name} = _rt.broadcast_input({i.symbol.name}, {op.name!r}, {i.name!r}, {first})"
               for i in op.inputs if i.broadcast]
    checks += [f"{p.name} = _rt.optional_array({p.name}, {op.name!r}, {p.name!r}, {first})"
               for p in op.params if p.rule.kind == "array"]
    variables = [i.symbol.name for i in op.inputs] + [p.name for p in op.symbol_params]
    args = ", ".join(f"{name}: np.ndarray" for name in variables)

    def forward_body(formula: Formula) -> list[str]:
        return print_assignments({"out": formula.forward}, _printer(op)) + ["return _rt.reduce(out, reduction)"]

    def vjp_body(formula: Formula) -> list[str]:
        outputs = {f"grad_{i.name}": _gradient_expr(op, formula, i.name) for i in op.differentiable_inputs}
        lines = print_assignments(outputs, _printer(op))
        lines += [f"grad_{i.name} = _rt.full_size(grad_{i.name}, {first})" for i in op.differentiable_inputs]
        lines += [f"grad_{i.name} = _rt.sum_to(grad_{i.name}, {i.name}_shape)" for i in op.differentiable_inputs
                  if i.broadcast]
        results = [f"grad_{i.name}" if i.differentiable else "None" for i in op.inputs]
        return lines + [f"return ({', '.join(results)},)"]

    fwd_helpers, fwd_body = _variant_dispatch(op, _with_fast_paths(op, _with_cases(op, forward_body, _forward_cases)),
                                              "", f"{args}, reduction: str", "np.ndarray")
    shapes = [f"{i.name}_shape = np.shape({i.name})" for i in op.inputs if i.broadcast and i.differentiable]
    vjp_args = f"g: np.ndarray, {args}" + "".join(
        f", {i.name}_shape: tuple[int, ...]" for i in op.inputs if i.broadcast and i.differentiable)
    vjp_helpers, vjp_tail = _variant_dispatch(op, _with_fast_paths(op, _with_cases(op, vjp_body, _gradient_cases)),
                                              "_vjp", vjp_args, "tuple")
    grad_check = [f"g = _rt.reduce_vjp(grad, {first}.shape, {first}.dtype, reduction, {op.name!r}, spread=False)"]
    return "\n\n".join([
        *fwd_helpers, *vjp_helpers,
        function(op.name, _signature(op), "np.ndarray", _docstring(op, None, vjp=False), checks + fwd_body),
        function(f"{op.name}_vjp", _signature(op, ["grad: ArrayLike"]), "tuple",
                  _docstring(op, None, vjp=True), shapes + checks + grad_check + vjp_tail),
    ])


def _picked_arrays(op: Op, exprs: Iterable[sp.Expr]) -> dict[sp.Symbol, sp.Symbol]:
    """Row arrays whose per-row value at the target class ``exprs`` read (``x`` -> ``x_k``)."""
    index = next(i.symbol for i in op.inputs if i.role == "class_index")
    wanted = set().union(*(e.free_symbols for e in exprs))
    return {s: picked_symbol(s) for s in op.row_symbols if s != index and picked_symbol(s) in wanted}


def _index_printer(op: Op) -> KernelPrinter:
    """The class-loss printer, plus the per-row picked arrays (shaped like ``g``, the input's dtype)."""
    printer = _printer(op)
    first = op.inputs[0].symbol.name
    for symbol in op.row_symbols:
        weight = symbol in {p.symbol for p in op.params if p.rule.kind == "array"}
        printer.arrays[picked_symbol(symbol)] = ArraySpec("g", first, within=first, maybe_float=weight, vector=True)
    return printer


def _pick_lines(op: Op, exprs: Iterable[sp.Expr]) -> list[str]:
    names = {p.symbol: p.name for p in op.params}
    return [f"{k.name} = _rt.pick({names.get(s, s.name)}, t, dim)" for s, k in _picked_arrays(op, exprs).items()]


def _fast_path_condition(op: Op, name: str, value: object) -> str:
    if value is None:  # an optional array left out: validation turned it into the float 1.0
        return f"isinstance({name}, float)"
    return f"{name} == {value!r}"


def _fast_path_branches(op: Op, make_body: Callable[[dict[sp.Symbol, object]], list[str]]) -> list[str]:
    """``if`` branches for :attr:`Op.fast_paths`, each with its values substituted, then the
    general body. An optional array's ``None`` is substituted as 1 (its meaning)."""
    if not op.fast_paths:
        return make_body({})
    lines: list[str] = []
    for keyword, values in zip(("if", *["elif"] * len(op.fast_paths)), op.fast_paths):
        condition = " and ".join(_fast_path_condition(op, n, v) for n, v in values.items())
        shown = ", ".join(f"{n}={v!r}" for n, v in values.items())
        lines.append(f"{keyword} {condition}:  # fast path: the formulas with {shown}")
        substitution = {op.param(n).symbol: sp.S.One if v is None else v for n, v in values.items()}
        lines += [f"    {line}" for line in make_body(substitution)]
    return lines + ["else:"] + [f"    {line}" for line in make_body({})]


def _with_fast_paths(op: Op, make_body: Callable[[Formula], list[str]]) -> Callable[[Formula], list[str]]:
    """``make_body`` behind the op's fast-path branches (formulas with their values substituted)."""
    def body(formula: Formula) -> list[str]:
        return _fast_path_branches(op, lambda values: make_body(formula.substituted(values)))

    return body


def _index_lines(op: Op, formula: Formula, *, forward: bool, gradients: bool) -> list[str]:
    """Class-index targets: gathers instead of one-hot rows. The forward's per-row ``out`` (if
    ``forward``) and each gradient as a full base row plus a scatter at the target class (if
    ``gradients``), printed together so that what they share (softmax's exp and row sum) is
    computed once."""
    index = next(i.symbol for i in op.inputs if i.role == "class_index")
    first = op.inputs[0].symbol.name
    inputs = [i for i in op.differentiable_inputs if i.role != "class_index"] if gradients else []
    picked = {s: picked_symbol(s) for s in op.row_symbols if s != index}

    def body(values: dict[sp.Symbol, object]) -> list[str]:
        outputs: dict[str, sp.Expr] = {}
        if forward:
            outputs["out"] = lower_rowsums(formula.forward.xreplace(values), index, picked)
        for item in inputs:
            gradient = _gradient_expr(op, formula, item.name).xreplace(values)
            outputs[f"base_{item.name}"], outputs[f"at_{item.name}"] = lower_row(gradient, index, picked)
        lines = _pick_lines(op, outputs.values()) + print_assignments(outputs, _index_printer(op))
        for item in inputs:
            fresh = not (outputs[f"base_{item.name}"].is_Atom)  # an input or a constant is never written into
            lines.append(f"grad_{item.name} = _rt.add_at_targets(base_{item.name}, t, at_{item.name}, dim, "
                         f"{first}, fresh={fresh})")
        return lines

    return _fast_path_branches(op, body)


def _lowerable(op: Op, formula: Formula, index: sp.Symbol | None) -> bool:
    """Whether every formula of a class-index op has a gather form."""
    if index is None:
        return False
    picked = {s: picked_symbol(s) for s in op.row_symbols if s != index}
    try:
        lower_rowsums(formula.forward, index, picked)
        for item in op.differentiable_inputs:
            if item.role != "class_index":
                lower_row(_gradient_expr(op, formula, item.name), index, picked)
    except NotAffineError:
        return False
    return True


def _by_target_kind(index_lines: list[str], row_lines: list[str], allow_rows: bool) -> list[str]:
    """Class-index targets take ``index_lines``; probability targets (if allowed) ``row_lines``."""
    if not allow_rows:
        return index_lines
    return (["if keep is not None:  # class indices: gathers, no one-hot rows"] + [f"    {line}" for line in index_lines]
            + ["else:  # probability rows"] + [f"    {line}" for line in row_lines])


def _class_loss(op: Op) -> str:
    """A loss per row along the class axis (dim 1), then PyTorch's reduction.

    Class-index targets are lowered to gathers and scatters at the target
    class (:mod:`symdl.onehot`; one-hot rows where a formula has no such
    form), ``ignore_index`` rows are masked out of the loss, the gradient and
    the mean's denominator; per-row targets (+-1 labels) broadcast along the
    class axis.
    """
    first = op.inputs[0].symbol.name
    formula = op.formula()
    index_target = next((i for i in op.inputs if i.role == "class_index"), None)
    index_symbol = index_target.symbol if index_target else None
    lowered = _lowerable(op, formula, index_symbol)
    has_ignore = any(p.name == "ignore_index" for p in op.params)
    allow_rows = index_target is None or "target" in formula.grads
    checks = [line for line in _validation(op) if not any(
        line.startswith(f"{i.symbol.name} = _rt.float_array") for i in op.inputs if i.role in ("class_index", "sign"))]
    checks.append(f"dim = _rt.class_axis({first}, {op.name!r})")
    if any(e.has(NUM_CLASSES) for e in (formula.forward, *formula.grads.values())):
        checks.append(f"num_classes = {first}.shape[dim]")  # label smoothing's uniform share, e / C
    for item in op.inputs[1:]:
        name = item.symbol.name
        if item.role == "class_index":
            ignore = "ignore_index" if has_ignore else "None"
            checks.append(f"{name}, keep = _rt.class_targets({item.name}, {op.name!r}, {first}, dim, {ignore}, "
                          f"{allow_rows})")
        elif item.role == "sign":
            checks.append(f"{name} = _rt.row_target({item.name}, {op.name!r}, {first}, dim)")
        else:
            checks.append(f"_rt.same_shape({op.name!r}, {{{op.inputs[0].name!r}: {first}, {item.name!r}: {name}}})")
    if index_target is None:
        checks.append("keep = None")
    checks += [f"{p.name} = _rt.class_weight({p.name}, {op.name!r}, {first}, dim)"
               for p in op.params if p.rule.kind == "array"]
    weight = "weight" if any(p.name == "weight" for p in op.params) else "1.0"
    target_rows = index_target.symbol.name if index_target else first
    denominator = (f"_rt.class_mean_denominator(keep, {weight}, {target_rows}, dim, loss.size)"
                   if op.weighted_mean else "None")
    one_hot = [f"{index_symbol} = _rt.one_hot({index_symbol}, {first}, dim)"] if index_target else []

    outputs = {f"grad_{i.name}": _gradient_expr(op, formula, i.name) for i in op.differentiable_inputs}

    def compute(forward: bool, gradients: bool) -> list[str]:
        """Lines computing the per-row ``out`` (``forward``) and the gradients (``gradients``), for
        each kind of target; printed together, what they share is computed once."""
        wanted = ({"out": formula.forward} if forward else {}) | (outputs if gradients else {})
        row_lines = print_assignments(wanted, _printer(op))
        if index_target is None:
            return row_lines
        index_lines = _index_lines(op, formula, forward=forward, gradients=gradients) if lowered else one_hot + \
            print_assignments({k: v for k, v in wanted.items() if k != f"grad_{index_target.name}"}, _printer(op))
        return _by_target_kind(index_lines, row_lines, allow_rows)

    reduced = ["loss = _rt.counted(np.squeeze(out, axis=dim), keep)"]
    value = f"_rt.reduce(loss, reduction, {denominator})"
    rows = f"{first}.shape[:dim] + {first}.shape[dim + 1:]"
    upstream = [
        f"loss = np.empty({rows}, dtype={first}.dtype)",
        f"g = _rt.reduce_vjp(grad, loss.shape, {first}.dtype, reduction, {op.name!r}, "
        f"{denominator if op.weighted_mean else 'None'})",
        "g = _rt.counted(g, keep)",
        "g = _rt.unit_axis(g, dim)",
    ]
    results = []
    for item in op.inputs:
        if not item.differentiable:
            results.append("None")
        elif item.role == "class_index":
            results.append(f"grad_{item.name} if keep is None else None")
        else:
            results.append(f"grad_{item.name}")
    gradients = f"({', '.join(results)},)"
    with_grad = _signature(op, ["grad: ArrayLike"])
    return "\n\n".join([
        function(op.name, _signature(op), "np.ndarray", _docstring(op, None, vjp=False),
                  checks + compute(True, False) + reduced + [f"return {value}"]),
        function(f"{op.name}_vjp", with_grad, "tuple", _docstring(op, None, vjp=True),
                  checks + upstream + compute(False, True) + [f"return {gradients}"]),
        function(f"{op.name}_value_and_vjp", with_grad, "tuple", _docstring(op, None, vjp=True, value=True),
                  checks + upstream + compute(True, True) + reduced + [f"return {value}, {gradients}"]),
    ])


def kernel_names(op: Op) -> tuple[str, ...]:
    """The kernels generated for ``op``: ``name``, ``name_vjp`` and, for class losses, ``name_value_and_vjp``.

    A loss over classes computes its value and gradient from the same row maxima, exponentials and sums
    (a trainer needs both every step), so it gets the fused kernel too.
    """
    return (op.name, f"{op.name}_vjp", *((f"{op.name}_value_and_vjp",) if op.traits.class_targets else ()))


#: Kernel template for each op kind.
TEMPLATES: dict[str, Callable[[Op], str]] = {
    "elementwise": _elementwise,
    "row": _row,
    "pointwise_loss": _pointwise_loss,
    "class_loss": _class_loss,
}


# --------------------------------------------------------------------------- modules
def _header(family: str) -> str:
    return header(f"Generated NumPy kernels: {family}s", f"the ``{family}`` entries of ``symdl.catalog``",
                  imports=["import math  # noqa: F401 - scalar parameter arithmetic", "", "import numpy as np", "",
                           "from symdl.kernels import _runtime as _rt", "from symdl.kernels._runtime import ArrayLike"])


def render_module(family: str) -> str:
    """Source of the kernel module for one family."""
    ops = [op for op in ACTIVATIONS_AND_LOSSES.values() if op.family == family]
    names = [n for op in ops for n in kernel_names(op)]
    body = "\n\n".join(TEMPLATES[op.kind](op) for op in ops)
    return _header(family) + "\n" + exports(names) + "\n\n" + body


def _exported(family: str) -> tuple[str, ...]:
    return tuple(n for op in ACTIVATIONS_AND_LOSSES.values() if op.family == family for n in kernel_names(op))


def render() -> list[GeneratedModule]:
    """The activation and loss kernel modules."""
    return [GeneratedModule(KERNEL_DIR / f"{module}.py", render_module(family), exports=_exported(family))
            for family, module in FAMILY_MODULES.items() if any(op.family == family for op in ACTIVATIONS_AND_LOSSES.values())]
