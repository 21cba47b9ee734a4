"""Export ops to PyTorch: a ``torch.autograd.Function`` per op variant, printed from the proven forms.

For an op ``name`` the generated module defines

* ``NameFunction`` (``NameVariantFunction`` per variant): ``forward`` prints the
  stable form, saves the inputs the backward needs (``ctx.save_for_backward``;
  also the output, as ``result``, where the catalog proves an output form of the
  gradient that loses no accuracy: :func:`symdl.export.forms.uses_output_form`)
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
* ``name(*inputs, **params)``: the NumPy kernel's signature and defaults, the
  math in its docstring;
* ``Name(torch.nn.Module)``: the parameters fixed at construction.

Losses reduce as PyTorch does (``reduction='none'|'mean'|'sum'``); an omitted
optional weight means 1 (and selects a function printed with it substituted).
Row ops take ``dim`` with ``torch.nn.functional.softmax``'s legacy default.
Class losses turn class-index targets into one-hot rows along the class axis
(``_class_rows``), mask ``ignore_index`` rows and divide 'mean' by the counted
rows' summed weight, as PyTorch does.
"""

from __future__ import annotations

from collections.abc import Sequence

from symdl.catalog.spec import Op
from symdl.export.forms import (
    SOFTMAX_DIM_SOURCE,
    Printed,
    array_params,
    class_prelude,
    camel,
    docstring,
    fast_path_condition,
    implementation_name,
    implementations,
    indent,
    module_header,
    print_forms,
    public_body,
    scalar_params,
    signature,
    structural_args,
)
from symdl.printing.torch_printer import TORCH_HELPERS, TorchInplacePrinter, TorchPrinter, lower_to_torch

#: Runtime helpers of every generated PyTorch module (beside the printer's).
_RUNTIME = SOFTMAX_DIM_SOURCE + '''\
def _reduce(out, reduction):
    """PyTorch's loss reduction."""
    if reduction == "none":
        return out
    return out.sum() if reduction == "sum" else out.mean()


def _spread(grad, shape, reduction, denominator=None):
    """The upstream gradient of a reduced loss, per element of the unreduced one."""
    if reduction == "none":
        return grad
    count = math.prod(shape) if denominator is None else denominator
    return (grad / count if reduction == "mean" else grad).expand(shape)


def _class_reduce(loss, reduction, denominator):
    """A class loss's reduction: 'mean' divides by ``denominator`` (the counted rows' summed weight)."""
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / denominator


def _class_rows(input, target, *, index, weight=None, ignore_index=None, weighted=False, sign=False):
    """Targets as rows along the class axis, the mask of counted rows and 'mean''s denominator.

    Class indices become one-hot rows (ignored rows point at class 0 and are masked out); 'mean'
    divides by the counted rows' summed weight (``weighted``) or by the number of rows.
    Returns (dim, target rows, keep, denominator, weight shaped to broadcast along the class axis).
    """
    dim = 1 if input.dim() >= 2 else 0
    num_classes = input.shape[dim]
    rows = input.numel() // max(num_classes, 1)
    keep, denominator = 1.0, rows
    if weight is not None:
        weight = weight.to(input.dtype).reshape((-1,) + (1,) * (input.dim() - dim - 1))
    if index and not torch.is_floating_point(target):
        counted = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
        safe = torch.where(counted, target, 0)
        if weighted:
            picked = weight.reshape(-1)[safe] if weight is not None else torch.ones_like(safe, dtype=input.dtype)
            denominator = (picked * counted).sum()
        keep = counted.to(input.dtype)
        target = torch.nn.functional.one_hot(safe, num_classes).movedim(-1, dim).to(input.dtype)
    elif sign:
        target = target.to(input.dtype).unsqueeze(dim)
    return dim, target, keep, denominator, weight


def _sum_to(grad, shape):
    """A broadcast input's gradient summed back to the input's shape."""
    grad = torch.broadcast_to(grad, torch.broadcast_shapes(grad.shape, shape))
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(dims, keepdim=True) if dims else grad
'''


def _branches(plain: list[str], inplace: list[str] | None, condition: str, why: str) -> list[str]:
    """The plain lines where ``condition`` holds, else the in-place lines (which compute the same, bit for bit)."""
    if inplace is None:
        return plain
    return [f"if {condition}:  # {why}", *indent(plain),
            "else:  # the same operations, into the function's own temporaries", *indent(inplace)]


def _function_class(op: Op, variant: str, fast: int | None, printed: Printed) -> list[str]:
    """The ``torch.autograd.Function`` of one variant."""
    scalars = [p.name for p in scalar_params(op)]
    arrays = [p.name for p in array_params(op)]
    structural = structural_args(op)
    inputs = [i.name for i in op.inputs]
    args = inputs + arrays + structural + scalars
    rename = [f"{i.symbol.name} = {i.name}" for i in op.inputs if i.symbol.name != i.name]
    stored = structural + scalars
    classes = [f"num_classes = {inputs[0]}.shape[dim]"] if op.kind == "class_loss" else []
    forward = rename + classes + _branches(printed.forward, printed.forward_inplace, "torch.compiler.is_compiling()",
                                           "torch.compile: plain, inductor fuses it")
    if op.kind == "pointwise_loss":
        forward.append("shape = torch.broadcast_shapes(" + ", ".join(f"{n}.shape" for n in inputs) + ")")
        forward.append("out = _reduce(torch.broadcast_to(out, shape), reduction)")
    if op.kind == "class_loss":
        forward.append("out = _class_reduce(out.squeeze(dim) * keep, reduction, denominator)")
    # Array parameters may be the Python float 1.0 (omitted weights): kept on ctx, not saved as tensors.
    saved = inputs + (["out"] if printed.uses_result else [])  # the output: the backward's ``result``
    forward += [f"ctx.save_for_backward({', '.join(saved)}{',' if len(saved) == 1 else ''})"]
    forward += [f"ctx.{name} = {name}" for name in arrays + stored]
    forward.append("return out")
    restored = inputs + (["result"] if printed.uses_result else [])
    backward = [f"{', '.join(restored)}{',' if len(restored) == 1 else ''} = ctx.saved_tensors"]
    backward += [f"{name} = ctx.{name}" for name in arrays + stored]
    backward += rename + classes
    if op.kind == "pointwise_loss":
        backward.append("shape = torch.broadcast_shapes(" + ", ".join(f"{n}.shape" for n in inputs) + ")")
        backward.append("g = _spread(grad, shape, reduction)")
    elif op.kind == "class_loss":
        rows = f"{inputs[0]}.shape[:dim] + {inputs[0]}.shape[dim + 1:]"
        backward.append(f"g = (_spread(grad, {rows}, reduction, denominator) * keep).unsqueeze(dim)")
    else:
        backward.append("g = grad")
    # autograd records a backward only for create_graph=True, and no out= operation can be recorded
    backward += _branches(printed.backward, printed.backward_inplace,
                          "torch.is_grad_enabled() or torch.compiler.is_compiling()",
                          "create_graph or torch.compile: plain")
    results = []
    for item in op.inputs:
        if not item.differentiable:
            results.append("None")
            continue
        name = f"grad_{item.name}"
        if op.kind == "pointwise_loss":
            backward.append(f"{name} = _sum_to({name}, {item.name}.shape)")
        else:
            backward.append(f"{name} = torch.broadcast_to({name}, {item.name}.shape)")
        results.append(name)
    results += ["None"] * (len(args) - len(inputs))
    backward.append(f"return {', '.join(results)}")
    what = f" with ``{op.variant_param}={variant!r}``" if op.variant_param else ""
    what += f" where {fast_path_condition(op, fast)}" if fast is not None else ""
    return [
        f"class {_class_name(op, variant, fast)}(torch.autograd.Function):",
        f'    """{op.name}{what} as a torch.autograd.Function: forward and backward printed from the proven forms."""',
        "",
        "    @staticmethod",
        f"    def forward(ctx, {', '.join(args)}):",
        *indent(forward, 2),
        "",
        "    @staticmethod",
        "    def backward(ctx, grad):",
        *indent(backward, 2),
    ]


def _class_name(op: Op, variant: str, fast: int | None = None) -> str:
    return camel(implementation_name(op, variant, fast)) + "Function"


def _public(op: Op) -> list[str]:
    """``name(*inputs, **params)`` and its ``nn.Module``."""
    inputs = [i.name for i in op.inputs]
    lines = [f"def {op.name}({signature(op, 'torch.Tensor')}) -> torch.Tensor:", *indent(docstring(op).splitlines())]
    prelude = [f"dim = _softmax_dim({inputs[0]}.dim(), dim)"] if op.kind == "row" else []
    if op.kind == "class_loss":
        prelude = [class_prelude(op)]
    lines += indent(public_body(op, _class_name, lambda function, args: f"{function}.apply({', '.join(args)})",
                                prelude))
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


def render_op(op: Op, inplace: bool = True, from_output: bool = True) -> tuple[list[str], set[str]]:
    """Source lines for one op (every variant and fast path) and the helpers they call.

    ``inplace=False`` prints every expression in its plain form only (each operation a fresh tensor);
    ``from_output=False`` prints every backward from the inputs (none reads the saved output): the
    references the exported code is tested and benchmarked against.
    """
    blocks, helpers = [], set()
    for variant, fast, formula in implementations(op):
        if inplace:
            printed = print_forms(op, formula, TorchPrinter, TorchInplacePrinter, lower_to_torch, from_output)
        else:
            printed = print_forms(op, formula, TorchPrinter, from_output=from_output)
        helpers |= printed.helpers
        blocks += [*_function_class(op, variant, fast, printed), "", ""]
    return blocks + _public(op), helpers


def render(ops: Sequence[Op], command: str = "symdl export --to torch", inplace: bool = True,
           from_output: bool = True) -> str:
    """Source of a standalone PyTorch module (imports torch only) exporting ``ops`` (``inplace``,
    ``from_output``: see :func:`render_op`)."""
    bodies, helpers = [], set()
    for op in ops:
        lines, used = render_op(op, inplace, from_output)
        bodies += [*lines, "", ""]
        helpers |= used
    exports = [name for op in ops for name in (op.name, camel(op.name),
                                                *(_class_name(op, v, f) for v, f, _ in implementations(op)))]
    lines = module_header("PyTorch", ["import torch"], ops, command)
    lines += ["__all__ = [", *(f"    {name!r}," for name in exports), "]", "", ""]
    lines += [*_RUNTIME.splitlines(), "", ""]
    for name in sorted(helpers):
        lines += [*TORCH_HELPERS[name].splitlines(), "", ""]
    return "\n".join(lines + bodies).rstrip() + "\n"
