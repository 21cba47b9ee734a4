"""Export ops to JAX: a ``jax.custom_vjp`` function per op variant, printed from the proven forms.

For an op ``name`` the generated module defines ``name(*inputs, **params)``
(the NumPy kernel's signature and defaults, the math in its docstring) calling
``_name_<variant>``, a ``jax.custom_vjp`` function whose forward prints the
stable form and whose backward prints the proven VJP, with the inputs as
residuals. Scalar parameters, ``dim`` and ``reduction`` are
``nondiff_argnums`` (static Python values), so the functions jit and vmap;
an optional weight is an array argument whose cotangent is zero (an omitted
weight means 1).
"""

from __future__ import annotations

from collections.abc import Sequence

from symdl.catalog.spec import Op
from symdl.export.forms import (
    SOFTMAX_DIM_SOURCE,
    Printed,
    array_params,
    class_prelude,
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
from symdl.printing.jax_printer import JAX_HELPERS, JaxPrinter

_RUNTIME = SOFTMAX_DIM_SOURCE + '''\
def _reduce(out, reduction):
    """PyTorch's loss reduction."""
    if reduction == "none":
        return out
    return jnp.sum(out) if reduction == "sum" else jnp.mean(out)


def _spread(grad, shape, reduction, denominator=None):
    """The upstream gradient of a reduced loss, per element of the unreduced one."""
    if reduction == "none":
        return grad
    count = math.prod(shape) if denominator is None else denominator
    return jnp.broadcast_to(grad / count if reduction == "mean" else grad, shape)


def _class_reduce(loss, reduction, denominator):
    """A class loss's reduction: 'mean' divides by ``denominator`` (the counted rows' summed weight)."""
    if reduction == "none":
        return loss
    return jnp.sum(loss) if reduction == "sum" else jnp.sum(loss) / denominator


def _class_rows(input, target, *, index, weight=None, ignore_index=None, weighted=False, sign=False):
    """Targets as rows along the class axis, the mask of counted rows and 'mean''s denominator.

    Class indices become one-hot rows (ignored rows point at class 0 and are masked out); 'mean'
    divides by the counted rows' summed weight (``weighted``) or by the number of rows.
    Returns (dim, target rows, keep, denominator, weight shaped to broadcast along the class axis).
    """
    dim = 1 if input.ndim >= 2 else 0
    num_classes = input.shape[dim]
    rows = input.size // max(num_classes, 1)
    keep, denominator = jnp.ones((), input.dtype), jnp.asarray(rows, input.dtype)
    if weight is not None:
        weight = jnp.asarray(weight, input.dtype).reshape((-1,) + (1,) * (input.ndim - dim - 1))
    if index and not jnp.issubdtype(target.dtype, jnp.floating):
        counted = target != ignore_index if ignore_index is not None else jnp.ones(target.shape, bool)
        safe = jnp.where(counted, target, 0)
        if weighted:
            picked = weight.reshape(-1)[safe] if weight is not None else jnp.ones(safe.shape, input.dtype)
            denominator = jnp.sum(picked * counted)
        keep = counted.astype(input.dtype)
        target = jnp.moveaxis(jax.nn.one_hot(safe, num_classes, dtype=input.dtype), -1, dim)
    elif sign:
        target = jnp.expand_dims(target.astype(input.dtype), dim)
    return dim, target, keep, denominator, weight


def _sum_to(grad, shape):
    """A broadcast input's gradient summed back to the input's shape."""
    grad = jnp.broadcast_to(grad, jnp.broadcast_shapes(grad.shape, shape))
    extra = grad.ndim - len(shape)
    grad = jnp.sum(grad, axis=tuple(range(extra))) if extra else grad
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return jnp.sum(grad, axis=dims, keepdims=True) if dims else grad
'''


def _private(op: Op, variant: str, fast: int | None = None) -> str:
    return f"_custom_{implementation_name(op, variant, fast)}"


#: Structural arguments that are static Python values (``nondiff_argnums``); the others (a class loss's
#: mask of counted rows and its 'mean' denominator) are arrays with zero cotangents.
_STATIC = frozenset({"dim", "reduction"})


def _arguments(op: Op) -> tuple[list[str], list[str], list[str]]:
    """(array arguments, static arguments, every argument in the public function's order)."""
    args = [i.name for i in op.inputs] + [p.name for p in array_params(op)] + structural_args(op)
    args += [p.name for p in scalar_params(op)]
    static = [a for a in args if a in _STATIC or a in {p.name for p in scalar_params(op)}]
    return [a for a in args if a not in static], static, args


def _custom_vjp(op: Op, variant: str, fast: int | None, printed: Printed) -> list[str]:
    """The ``jax.custom_vjp`` function of one variant (or fast path), its forward and its backward rule."""
    name = _private(op, variant, fast)
    arrays, static, args = _arguments(op)
    inputs = [i.name for i in op.inputs]
    rename = [f"{i.symbol.name} = {i.name}" for i in op.inputs if i.symbol.name != i.name]
    classes = [f"num_classes = jnp.shape({inputs[0]})[dim]"] if op.kind == "class_loss" else []
    value = rename + classes + printed.forward
    shape = "shape = jnp.broadcast_shapes(" + ", ".join(f"jnp.shape({n})" for n in inputs) + ")"
    if op.kind == "pointwise_loss":
        value += [shape, "out = _reduce(jnp.broadcast_to(out, shape), reduction)"]
    if op.kind == "class_loss":
        value.append("out = _class_reduce(jnp.squeeze(out, dim) * keep, reduction, denominator)")
    value.append("return out")
    backward = [f"{', '.join(arrays)}{',' if len(arrays) == 1 else ''} = residuals", *rename, *classes]
    if op.kind == "pointwise_loss":
        backward += [shape, "g = _spread(grad, shape, reduction)"]
    elif op.kind == "class_loss":
        rows = f"jnp.shape({inputs[0]})[:dim] + jnp.shape({inputs[0]})[dim + 1:]"
        backward.append(f"g = jnp.expand_dims(_spread(grad, {rows}, reduction, denominator) * keep, dim)")
    else:
        backward.append("g = grad")
    backward += printed.backward
    results = []
    for item in op.inputs:
        if not item.differentiable:
            results.append(f"jnp.zeros_like({item.name})")
            continue
        gradient = f"grad_{item.name}"
        reshape = "_sum_to" if op.kind == "pointwise_loss" else "jnp.broadcast_to"
        backward.append(f"{gradient} = {reshape}({gradient}, jnp.shape({item.name}))")
        results.append(gradient)
    results += [f"jnp.zeros_like({name})" for name in arrays[len(op.inputs):]]
    backward.append(f"return ({', '.join(results)},)")
    positions = tuple(k for k, a in enumerate(args) if a in static)
    decorator = (f"@functools.partial(jax.custom_vjp, nondiff_argnums={positions!r})" if positions
                 else "@jax.custom_vjp")
    what = f" with ``{op.variant_param}={variant!r}``" if op.variant_param else ""
    what += f" where {fast_path_condition(op, fast)}" if fast is not None else ""
    return [
        decorator,
        f"def {name}({', '.join(args)}):",
        f'    """{op.name}{what}: the stable form; its VJP is the proven closed form ({name}_bwd)."""',
        *indent(value),
        "",
        "",
        f"def {name}_fwd({', '.join(args)}):",
        f"    return {name}({', '.join(args)}), ({', '.join(arrays)}{',' if len(arrays) == 1 else ''})",
        "",
        "",
        f"def {name}_bwd({', '.join([*static, 'residuals', 'grad'])}):",
        *indent(backward),
        "",
        "",
        f"{name}.defvjp({name}_fwd, {name}_bwd)",
    ]


def _public(op: Op) -> list[str]:
    inputs = [i.name for i in op.inputs]
    lines = [f"def {op.name}({signature(op, 'jax.Array')}) -> jax.Array:", *indent(docstring(op).splitlines())]
    prelude = [f"{i} = jnp.asarray({i})" for i in inputs]
    prelude += [f"dim = _softmax_dim({inputs[0]}.ndim, dim)"] if op.kind == "row" else []
    prelude += [class_prelude(op)] if op.kind == "class_loss" else []
    # Arrays (an omitted weight as 1.0) are the custom_vjp's differentiable-position arguments: JAX arrays.
    arrays = {p.name for p in array_params(op)}

    def call(function: str, args: list[str]) -> str:
        converted = [f"jnp.asarray({a}, dtype={inputs[0]}.dtype)" if a in arrays or a == "1.0" else a for a in args]
        return f"{function}({', '.join(converted)})"

    return lines + indent(public_body(op, _private, call, prelude))


def render(ops: Sequence[Op], command: str = "symdl export --to jax") -> str:
    """Source of a standalone JAX module (imports jax only) exporting ``ops``."""
    bodies, helpers = [], set()
    for op in ops:
        for variant, fast, formula in implementations(op):
            printed = print_forms(op, formula, JaxPrinter)
            helpers |= printed.helpers
            bodies += [*_custom_vjp(op, variant, fast, printed), "", ""]
        bodies += [*_public(op), "", ""]
    lines = module_header("JAX", ["import functools", "", "import jax", "import jax.numpy as jnp",
                                  "import jax.scipy.special  # noqa: F401 - erf, ndtr, xlogy"], ops, command)
    lines += ["__all__ = [", *(f"    {op.name!r}," for op in ops), "]", "", ""]
    lines += [*_RUNTIME.splitlines(), "", ""]
    for name in sorted(helpers):
        lines += [*JAX_HELPERS[name].splitlines(), "", ""]
    return "\n".join(lines + bodies).rstrip() + "\n"
