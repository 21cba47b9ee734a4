"""Export ops to PyTorch: a ``torch.autograd.Function`` per op variant, printed from the proven forms.

For an op ``name`` the generated module defines

* ``NameFunction`` (``NameVariantFunction`` per variant): ``forward`` prints the
  stable form, saves the inputs the backward needs (``ctx.save_for_backward``;
  also the output, as ``result``, where the catalog proves an output form of the
  gradient that loses no accuracy: :func:`symdl.export.forms.output_form`)
  and the scalar parameters on ``ctx``; ``backward`` prints the proven VJP.
  Constants are Python floats, so the dtype and the device of the inputs are
  kept; there is no data-dependent Python control flow, so ``torch.compile``
  traces it;
* both compute into their own temporaries (``t0 *= x``, ``torch.exp(t0, out=t0)``):
  :func:`symdl.printing.inplace.emit_inplace` compiles each plain expression into
  the same operations on the same operands, bit for bit the plain form's values,
  and :func:`symdl.printing.torch_printer.lower_to_torch` names them in PyTorch;
  inputs, ``grad`` and saved tensors are never written. PyTorch records no
  ``out=`` operation, so the backward keeps its plain form for ``create_graph=True``
  (``torch.is_grad_enabled()``); autograd never records a forward;
* on the CPU an elementwise op's forward and backward run first as one C++
  loop each where it applies (:mod:`symdl.export.fused`: the same forms over
  ATen's vectors, compiled on first use), between the plain branch and the
  in-place one; where the backward would evaluate again an exponential the
  forward evaluates, the forward's loop also saves the local derivative
  (where an input requires grad) and the backward is one product with it;
* ``name(*inputs, **params)``: the NumPy kernel's signature and defaults, the
  math in its docstring; under ``torch.no_grad`` or ``torch.inference_mode``
  it runs the Function's forward without ``Function.apply`` (``_apply``: the
  same values, no graph node to build);
* ``Name(torch.nn.Module)``: the parameters fixed at construction.

Losses reduce as PyTorch does (``reduction='none'|'mean'|'sum'``); an omitted
optional weight means 1 (and selects a function printed with it substituted).
Row ops take ``dim`` with ``torch.nn.functional.softmax``'s legacy default.
Class losses turn class-index targets into one-hot rows along the class axis
(``_class_rows``), mask ``ignore_index`` rows and divide 'mean' by the counted
rows' summed weight, as PyTorch does. Where the row formulas are affine in the
target row (:func:`symdl.export.forms.gather_forms`), class-index targets take
``NameGather...Function`` instead: the forward gathers each row's values at its
target class (``_pick``) and the backward scatters the gradient's target part
into its base (``_add_at_targets``), with no one-hot rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from symdl.catalog.spec import Op
from symdl.export.forms import (
    Printed,
    array_params,
    camel,
    docstring,
    docstring_lines,
    fast_path_condition,
    implementation_args,
    implementation_name,
    implementations,
    indent,
    module_source,
    print_forms,
    print_gathered,
    public_body,
    scalar_params,
    signature,
    structural_args,
)
from symdl.export.fused import (
    FUSED_RUNTIME,
    FusedCall,
    FusedKernels,
    fused_kernels,
    fused_source,
)
from symdl.export.kinds import (
    gradient_shape_line,
    has_gradient,
    prelude_lines,
    public_prelude,
    reduce_lines,
    upstream_lines,
)
from symdl.export.runtime import TORCH_API, runtime_source
from symdl.printing.framework_printer import helper_sources
from symdl.printing.torch_printer import (
    TORCH_CPU_COSTS,
    TORCH_HELPERS,
    TorchInplacePrinter,
    TorchPrinter,
    lower_to_torch,
)

#: Runtime helpers of every generated module (beside the printer's), in this framework's names.
_RUNTIME = runtime_source(TORCH_API)

#: How an exported function calls its Function: through autograd only where grad mode is on.
_APPLY = r'''class _NoGradContext:
    """What a Function's forward gets in place of autograd's ctx where it runs without autograd (_apply): no
    input needs a gradient, and what it saves is dropped."""

    class _Never:
        def __getitem__(self, index):
            return False

    needs_input_grad = _Never()

    def save_for_backward(self, *tensors):
        pass


def _apply(function, *args):
    """``function.apply(*args)`` where grad mode is on; under ``torch.no_grad`` or ``torch.inference_mode``
    the Function's forward alone, which autograd would run the same way but with a graph node to build and
    drop (about 10 us of a call on a small tensor)."""
    if torch.is_grad_enabled():
        return function.apply(*args)
    return function.forward(_NoGradContext(), *args)'''


def _branches(plain: list[str], inplace: list[str] | None, condition: str, why: str,
              fused: FusedCall | None = None, first: Sequence[tuple[str, str, list[str]]] = ()) -> list[str]:
    """The plain lines where ``condition`` holds, else each of ``first`` (condition, why, lines) where its
    condition holds, else the ``fused`` loop where it applies (the same forms in one C++ loop), else the
    in-place lines (which compute the same as the plain ones, bit for bit)."""
    if inplace is None:
        return plain
    lines = [f"if {condition}:  # {why}", *indent(plain)]
    for test, reason, taken in first:
        lines += [f"elif {test}:  # {reason}", *indent(taken)]
    if fused is not None:
        call, taken = fused.lines()
        lines += [f"elif {call}:  # one C++ loop over the elements (_FUSED_SOURCE)", *indent(taken)]
    return lines + ["else:  # the same operations, into the function's own temporaries", *indent(inplace)]


def _function_class(op: Op, variant: str, fast: int | None, printed: Printed,
                    fused: FusedKernels | None = None) -> list[str]:
    """The ``torch.autograd.Function`` of one variant."""
    scalars = [p.name for p in scalar_params(op)]
    arrays = [p.name for p in array_params(op)]
    structural = structural_args(op)
    inputs = [i.name for i in op.inputs]
    args = implementation_args(op)
    stored = structural + scalars
    names = prelude_lines(op)
    derivatives = fused.derivatives if fused else {}  # empty unless there is a saving loop
    saving: list[tuple[str, str, list[str]]] = []
    if fused and fused.saving:  # (then derivatives names its outputs)
        call, taken = fused.saving.lines()
        wanted = " or ".join(f"ctx.needs_input_grad[{inputs.index(grad.removeprefix('grad_'))}]"
                             for grad in derivatives)
        saving = [(f"({wanted}) and {call}", "one C++ loop, saving the derivatives for the backward", taken)]
    forward = names + _branches(printed.forward, printed.forward_inplace, "torch.compiler.is_compiling()",
                                "torch.compile: plain, inductor fuses it", fused and fused.forward, saving)
    if derivatives:  # set where the saving loop ran
        forward = [f"{', '.join(derivatives.values())} = {', '.join(['None'] * len(derivatives))}", *forward]
    forward += reduce_lines(op, TORCH_API)
    # Array parameters may be the Python float 1.0 (omitted weights): kept on ctx, not saved as tensors.
    saved = inputs + (["out"] if printed.uses_result else [])  # the output: the backward's ``result``
    saved += printed.saved  # intermediates the in-place backward reads (forward runs without autograd)
    saved += list(derivatives.values())  # None unless the saving loop ran
    forward += [f"ctx.save_for_backward({', '.join(saved)}{',' if len(saved) == 1 else ''})"]
    forward += [f"ctx.{name} = {name}" for name in arrays + stored]
    forward.append("return out")
    restored = inputs + (["result"] if printed.uses_result else []) + printed.saved + list(derivatives.values())
    backward = [f"{', '.join(restored)}{',' if len(restored) == 1 else ''} = ctx.saved_tensors"]
    backward += [f"{name} = ctx.{name}" for name in arrays + stored]
    backward += names + upstream_lines(op, TORCH_API)
    products = [(f"{' and '.join(f'{d} is not None' for d in derivatives.values())}",
                 "the forward's saved derivatives: one product each",
                 [f"{grad} = torch.mul(g, {d})" for grad, d in derivatives.items()])] if derivatives else []
    # autograd records a backward only for create_graph=True, and no out= operation can be recorded
    backward += _branches(printed.backward, printed.backward_inplace,
                          "torch.is_grad_enabled() or torch.compiler.is_compiling()",
                          "create_graph or torch.compile: plain", fused and fused.backward, products)
    results = []
    for item in op.inputs:
        if not has_gradient(item, printed.gathered):
            results.append("None")
            continue
        backward.append(gradient_shape_line(op, item, TORCH_API))
        results.append(f"grad_{item.name}")
    results += ["None"] * (len(args) - len(inputs))
    backward.append(f"return {', '.join(results)}")
    what = f" with ``{op.variant_param}={variant!r}``" if op.variant_param else ""
    what += f" where {fast_path_condition(op, fast)}" if fast is not None else ""
    what += " for class-index targets, gathered at the target class" if printed.gathered else ""
    summary = f"{op.name}{what} as a torch.autograd.Function: forward and backward printed from the proven forms."
    notes = ["On the CPU, where an input requires grad, the forward's loop also saves the derivative (one tensor",
             "the size of the input) and the backward is g times it."] if derivatives else []
    return [
        f"class {_class_name(op, variant, fast, printed.gathered)}(torch.autograd.Function):",
        *indent(docstring_lines(summary, printed, notes)),
        "",
        "    @staticmethod",
        f"    def forward(ctx, {', '.join(args)}):",
        *indent(forward, 2),
        "",
        "    @staticmethod",
        "    def backward(ctx, grad):",
        *indent(backward, 2),
    ]


def _class_name(op: Op, variant: str, fast: int | None = None, gathered: bool = False) -> str:
    return camel(implementation_name(op, variant, fast, gathered)) + "Function"


def _public(op: Op) -> list[str]:
    """``name(*inputs, **params)`` and its ``nn.Module``."""
    inputs = [i.name for i in op.inputs]
    lines = [f"def {op.name}({signature(op, 'torch.Tensor')}) -> torch.Tensor:", *indent(docstring(op).splitlines())]
    lines += indent(public_body(op, _class_name, lambda function, args: f"_apply({', '.join([function, *args])})",
                                public_prelude(op), TORCH_API.is_float))
    params = [p.name for p in op.params]
    module = [
        "",
        "",
        f"class {camel(op.name)}(torch.nn.Module):",
        f'    """``{op.name}`` as a module: parameters fixed at construction (see ``{op.name}``)."""',
        "",
        f"    def __init__(self{', *, ' + ', '.join(f'{p.name}={p.default!r}' for p in op.params) if params else ''}):",
        "        super().__init__()",
        *[f"        self.{name} = {name}" for name in params],
        "",
        f"    def forward(self, {', '.join(inputs)}):",
        f"        return {op.name}({', '.join(inputs + [f'{n}=self.{n}' for n in params])})",
    ]
    return lines + module


def render_op(op: Op, inplace: bool = True, from_output: bool = True,
              fused: bool = True) -> tuple[list[str], set[str], list[FusedKernels]]:
    """Source lines for one op (every variant and fast path), the helpers they call and their fused loops.

    ``inplace=False`` prints every expression in its plain form only (each operation a fresh tensor);
    ``from_output=False`` prints every backward from the inputs (none reads the saved output);
    ``fused=False`` prints no fused loops (:mod:`symdl.export.fused`): the references the exported code
    is tested and benchmarked against.
    """
    blocks, helpers, loops = [], set(), []
    for variant, fast, gathered, formula in implementations(op):
        if gathered and inplace:
            printed = print_gathered(op, formula, TorchPrinter, TorchInplacePrinter, lower_to_torch)
        elif gathered:
            printed = print_gathered(op, formula, TorchPrinter)
        elif inplace:
            printed = print_forms(op, formula, TorchPrinter, TorchInplacePrinter, lower_to_torch, from_output,
                                  TORCH_CPU_COSTS)
        else:
            printed = print_forms(op, formula, TorchPrinter, from_output=from_output, costs=TORCH_CPU_COSTS)
        helpers |= printed.helpers
        kernels = (fused_kernels(op, implementation_name(op, variant, fast, gathered), printed)
                   if fused and inplace else None)
        loops += [kernels] if kernels else []
        blocks += [*_function_class(op, variant, fast, printed, kernels), "", ""]
    return blocks + _public(op), helpers, loops


def render(ops: Sequence[Op], command: str = "symdl export --to torch", inplace: bool = True,
           from_output: bool = True, fused: bool = True) -> str:
    """Source of a standalone PyTorch module (imports torch only) exporting ``ops`` (``inplace``,
    ``from_output``, ``fused``: see :func:`render_op`)."""
    bodies, helpers, loops = [], set(), []
    for op in ops:
        lines, used, kernels = render_op(op, inplace, from_output, fused)
        bodies += [*lines, "", ""]
        helpers |= used
        loops += kernels
    exports = [name for op in ops for name in (op.name, camel(op.name),
                                                *(_class_name(op, v, f, c) for v, f, c, _ in implementations(op)))]
    sources = [_RUNTIME, _APPLY, *helper_sources(helpers, TORCH_HELPERS)]
    sources += [FUSED_RUNTIME, fused_source(loops)] if loops else []
    return module_source("PyTorch", ["import torch"], ops, command, exports, sources, bodies)
