"""What an op's kind adds around its printed forms, in every framework: the exporters ask the kind's traits here.

The forward prints ``out`` per element and the backward the gradients from ``g``, the upstream
gradient per element (:func:`symdl.export.forms.print_forms`). Around them:

* a pointwise loss (:attr:`~symdl.catalog.spec.KindTraits.broadcast_targets`) broadcasts its
  inputs to one shape, reduces ``out`` over it as PyTorch does, spreads the upstream gradient back
  over it and sums each input's gradient back to that input's shape;
* a class loss (:attr:`~symdl.catalog.spec.KindTraits.class_targets`) turns its target into rows
  along the class axis (``dim``, of length ``num_classes``; class indices stay indices, with a unit
  class axis, where the loss has gather forms: :func:`~symdl.export.forms.gathers`), reduces each row
  of ``out`` with the mask of counted rows, and spreads the upstream gradient back along that axis;
* a row op (:attr:`~symdl.catalog.spec.KindTraits.dim_param`) takes ``dim`` with PyTorch's legacy
  default; its upstream gradient, like every other op's, already has the output's shape.

The lines are written with an :class:`~symdl.export.runtime.ArrayApi` and call the runtime helpers
of :func:`~symdl.export.runtime.runtime_source`.
"""

from __future__ import annotations

from symdl.catalog.spec import Input, Op
from symdl.export.forms import array_params, gathers
from symdl.export.runtime import ArrayApi


def _broadcast_shape(op: Op, api: ArrayApi) -> str:
    return f"shape = {api.xp}.broadcast_shapes(" + ", ".join(f"{i.name}.shape" for i in op.inputs) + ")"


def public_prelude(op: Op) -> list[str]:
    """The exported function's lines before it calls an implementation: a row op's default ``dim``
    (PyTorch's legacy one), a class loss's target as rows (``_class_rows``)."""
    if op.traits.dim_param:
        return [f"dim = _softmax_dim({op.inputs[0].name}.ndim, dim)"]
    return [class_prelude(op)] if op.traits.class_targets else []


def class_prelude(op: Op) -> str:
    """The call of the generated ``_class_rows`` (each exporter defines one) that turns a class loss's target
    into rows (class indices kept as such where the op has gather forms: :func:`~symdl.export.forms.gathers`),
    a mask and a denominator."""
    first = op.inputs[0].name
    target = next((i for i in op.inputs if i.role in ("class_index", "sign")), op.inputs[-1])
    options = [f"index={target.role == 'class_index'}", f"sign={target.role == 'sign'}",
               f"weighted={op.weighted_mean}"]
    if gathers(op):
        options.append("gather=True")
    if any(p.name == "weight" for p in array_params(op)):
        options.append("weight=weight")
    if any(p.name == "ignore_index" for p in op.params):
        options.append("ignore_index=ignore_index")
    weight = ", weight" if any(p.name == "weight" for p in array_params(op)) else ", _"
    return (f"dim, {target.name}, keep, denominator{weight} = _class_rows({first}, {target.name}, "
            f"{', '.join(options)})")


def prelude_lines(op: Op) -> list[str]:
    """Names the printed forms use besides the parameters: each input under its symbol's name, a class
    loss's ``num_classes``."""
    rename = [f"{i.symbol.name} = {i.name}" for i in op.inputs if i.symbol.name != i.name]
    return rename + ([f"num_classes = {op.inputs[0].name}.shape[dim]"] if op.traits.class_targets else [])


def reduce_lines(op: Op, api: ArrayApi) -> list[str]:
    """After the forward's per-element ``out``: ``out`` reduced to the op's output."""
    if op.traits.broadcast_targets:
        return [_broadcast_shape(op, api), f"out = _reduce({api.xp}.broadcast_to(out, shape), reduction)"]
    if op.traits.class_targets:
        return [f"out = _class_reduce({api.xp}.squeeze(out, dim) * keep, reduction, denominator)"]
    return []


def upstream_lines(op: Op, api: ArrayApi) -> list[str]:
    """Before the backward's forms: ``g``, the upstream gradient ``grad`` per element of the unreduced ``out``."""
    if op.traits.broadcast_targets:
        # g may be 0-d: every input, g included, is its own shape group for the in-place code (forms.framework_arrays)
        return [_broadcast_shape(op, api), "g = _spread(grad, shape, reduction, broadcast=False)"]
    if op.traits.class_targets:
        first = op.inputs[0].name
        spread = f"_spread(grad, {first}.shape[:dim] + {first}.shape[dim + 1:], reduction, denominator) * keep"
        return [f"g = {api.expand_dims.format(x=spread, axis='dim')}"]
    return ["g = grad"]


def has_gradient(item: Input, gathered: bool) -> bool:
    """Whether an implementation returns a gradient for ``item``: a differentiable input, except the
    class indices of a gather form (:attr:`~symdl.export.forms.Printed.gathered`), integers."""
    return item.differentiable and not (gathered and item.role == "class_index")


def gradient_shape_line(op: Op, item: Input, api: ArrayApi) -> str:
    """After the backward's forms: ``grad_<item>`` with ``item``'s shape (summed back over what broadcast)."""
    reshape = "_sum_to" if op.traits.broadcast_targets else f"{api.xp}.broadcast_to"
    return f"grad_{item.name} = {reshape}(grad_{item.name}, {item.name}.shape)"
