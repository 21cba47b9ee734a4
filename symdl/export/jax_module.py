"""Export ops to JAX: a ``jax.custom_vjp`` function per op variant, printed from the proven forms.

For an op ``name`` the generated module defines ``name(*inputs, **params)``
(the NumPy kernel's signature and defaults, the math in its docstring) calling
``_name_<variant>``, a ``jax.custom_vjp`` function whose forward prints the
stable form and whose backward prints the proven VJP, with the inputs as
residuals. Scalar parameters, ``dim`` and ``reduction`` are
``nondiff_argnums`` (static Python values), so the functions jit and vmap;
an optional weight is an array argument whose cotangent is zero (an omitted
weight means 1). Class-index targets of a class loss with gather forms
(:func:`symdl.export.forms.gather_forms`) take ``_custom_<name>_gather...``:
gathers at the target class and a scatter (``.at[].add``) in the backward,
with no one-hot rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from symdl.catalog.spec import Op
from symdl.export.forms import (
    Printed,
    array_params,
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
)
from symdl.export.kinds import (gradient_shape_line, has_gradient, prelude_lines, public_prelude, reduce_lines,
                                upstream_lines)
from symdl.export.runtime import JAX_API, runtime_source
from symdl.printing.framework_printer import helper_sources
from symdl.printing.jax_printer import JAX_HELPERS, JaxPrinter

#: Runtime helpers of every generated module (beside the printer's), in this framework's names.
_RUNTIME = runtime_source(JAX_API)


def _private(op: Op, variant: str, fast: int | None = None, gathered: bool = False) -> str:
    return f"_custom_{implementation_name(op, variant, fast, gathered)}"


#: Structural arguments that are static Python values (``nondiff_argnums``); the others (a class loss's
#: mask of counted rows and its 'mean' denominator) are arrays with zero cotangents.
_STATIC = frozenset({"dim", "reduction"})


def _arguments(op: Op) -> tuple[list[str], list[str], list[str]]:
    """(array arguments, static arguments, every argument in the public function's order)."""
    args = implementation_args(op)
    static = [a for a in args if a in _STATIC or a in {p.name for p in scalar_params(op)}]
    return [a for a in args if a not in static], static, args


def _custom_vjp(op: Op, variant: str, fast: int | None, printed: Printed) -> list[str]:
    """The ``jax.custom_vjp`` function of one variant (or fast path), its forward and its backward rule."""
    name = _private(op, variant, fast, printed.gathered)
    arrays, static, args = _arguments(op)
    names = prelude_lines(op)
    value = [*names, *printed.forward, *reduce_lines(op, JAX_API), "return out"]
    backward = [f"{', '.join(arrays)}{',' if len(arrays) == 1 else ''} = residuals", *names,
                *upstream_lines(op, JAX_API), *printed.backward]
    results = []
    for item in op.inputs:
        if not has_gradient(item, printed.gathered):  # integer class indices: no cotangent (None)
            integer = printed.gathered and item.role == "class_index"
            results.append("None" if integer else f"jnp.zeros_like({item.name})")
            continue
        backward.append(gradient_shape_line(op, item, JAX_API))
        results.append(f"grad_{item.name}")
    results += [f"jnp.zeros_like({name})" for name in arrays[len(op.inputs):]]
    backward.append(f"return ({', '.join(results)},)")
    positions = tuple(k for k, a in enumerate(args) if a in static)
    decorator = (f"@functools.partial(jax.custom_vjp, nondiff_argnums={positions!r})" if positions
                 else "@jax.custom_vjp")
    what = f" with ``{op.variant_param}={variant!r}``" if op.variant_param else ""
    what += f" where {fast_path_condition(op, fast)}" if fast is not None else ""
    what += " for class-index targets, gathered at the target class" if printed.gathered else ""
    return [
        decorator,
        f"def {name}({', '.join(args)}):",
        *indent(docstring_lines(f"{op.name}{what}: the stable form; its VJP is the proven closed form ({name}_bwd).",
                                printed)),
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
    prelude += public_prelude(op)
    # Arrays (an omitted weight as 1.0) are the custom_vjp's differentiable-position arguments: JAX arrays.
    arrays = {p.name for p in array_params(op)}

    def call(function: str, args: list[str]) -> str:
        converted = [f"jnp.asarray({a}, dtype={inputs[0]}.dtype)" if a in arrays or a == "1.0" else a for a in args]
        return f"{function}({', '.join(converted)})"

    return lines + indent(public_body(op, _private, call, prelude, JAX_API.is_float))


def render(ops: Sequence[Op], command: str = "symdl export --to jax") -> str:
    """Source of a standalone JAX module (imports jax only) exporting ``ops``."""
    bodies, helpers = [], set()
    for op in ops:
        for variant, fast, gathered, formula in implementations(op):
            printed = print_gathered(op, formula, JaxPrinter) if gathered else print_forms(op, formula, JaxPrinter)
            helpers |= printed.helpers
            bodies += [*_custom_vjp(op, variant, fast, printed), "", ""]
        bodies += [*_public(op), "", ""]
    imports = ["import functools", "", "import jax", "import jax.numpy as jnp",
               "import jax.scipy.special  # noqa: F401 - erf, ndtr, xlogy"]
    sources = [_RUNTIME, *helper_sources(helpers, JAX_HELPERS)]
    return module_source("JAX", imports, ops, command, [op.name for op in ops], sources, bodies)
