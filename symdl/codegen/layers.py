"""Write ``symdl/kernels/layers.py`` from the layer catalog (registered in ``codegen.EXTENSIONS``).

For each :class:`~symdl.catalog.layer_spec.Layer` ``name`` the module defines

* ``name(*arrays, **params)``: arrays positional in PyTorch's order, hyper-parameters
  keyword-only with PyTorch's defaults; converts the arrays, resolves the plan
  (validation, output shape) and runs the layer's forward program;
* ``name_vjp(grad, *arrays, **params)``: one gradient per array input, in input
  order (None for inputs without one: omitted bias, running statistics, masks).

The programs themselves are the closed forms in :mod:`symdl.kernels._layers` (gathered
by :mod:`symdl.kernels._layers_runtime`),
the same code :mod:`symdl.proofs.layers` proves equal to the index-level
definitions. Output is a pure function of the catalog.
"""

from __future__ import annotations

from symdl.catalog.layer_spec import Layer, LayerParam
from symdl.catalog.layers import LAYERS
from symdl.codegen.module import KERNEL_DIR, GeneratedModule, docstring, exports, function, header

PATH = KERNEL_DIR / "layers.py"


def _array_args(layer: Layer) -> list[str]:
    defaults = {"required": "ArrayLike", "nullable": "ArrayLike | None", "optional": "ArrayLike | None = None"}
    return [f"{i.name}: {defaults[i.presence]}" for i in layer.inputs]


def _param_args(params: tuple[LayerParam, ...]) -> list[str]:
    return [f"{p.name}: {p.annotation}" if p.required else f"{p.name}: {p.annotation} = {p.default!r}"
            for p in params]


def _signature(layer: Layer, where: str) -> str:
    leading = ["grad: ArrayLike"] if where == "backward" else []
    params = _param_args(layer.params_for(where))
    return ", ".join([*leading, *_array_args(layer), *(["*", *params] if params else [])])


def _docstring(layer: Layer, where: str) -> str:
    vjp = where == "backward"
    lines = [f"{layer.summary}{' (vector-Jacobian product)' if vjp else ''}.", "", ".. math::", ""]
    for formula in layer.math:
        lines += [f"    {formula}", ""]
    lines += [*layer.notes, ""] if layer.notes else []
    lines += [f"Proven equal to SymPy's derivative of the index-level definition on {len(layer.instances)} "
              f"instances ({'exactly' if layer.proof == 'exact' else 'at integer points'}); see ``symdl verify``.", ""]
    if vjp:
        names = ", ".join(f"d_{i.name}" for i in layer.inputs)
        skipped = " or, with ``input_grad=False``, for ``input``" if any(
            p.name == "input_grad" for p in layer.params_for(where)) else ""
        lines += ["Returns:", f"    ({names}): one gradient per array input, shaped like it "
                  f"(None for an omitted or non-differentiable input{skipped}).", ""]
    lines.append(f"Generated from the layer catalog entry ``{layer.name}``; do not edit.")
    return docstring(lines)


def _call_params(params: tuple[LayerParam, ...], layer: Layer) -> str:
    fixed = [f"{k}={v!r}" for k, v in layer.plan_args.items()]
    return ", ".join(fixed + [f"{p.name}={p.name}" for p in params])


def _function(layer: Layer, where: str) -> str:
    name = layer.name if where == "forward" else f"{layer.name}_vjp"
    names = layer.input_names
    required = tuple(i.name for i in layer.inputs if i.presence == "required")
    values = ", ".join(names) + ("," if len(names) == 1 else "")
    plan_params = _call_params(layer.params_for(where), layer)
    body = [
        f"arrays = _lr.floats({layer.name!r}, {names!r}, ({values}), {required!r})",
        f"plan = _lr.{layer.plan}({layer.name!r}, arrays{', ' + plan_params if plan_params else ''})",
    ]
    if where == "forward":
        body.append(f"return _lr.{layer.forward}(arrays, plan)")
        returns = layer.returns
    else:
        # The output's dtype is that of the real inputs: a mask (bool, say) must not promote it.
        real = [i for i, item in enumerate(layer.inputs) if item.role != "mask"]
        dtype_from = "arrays" if len(real) == len(layer.inputs) else f"({''.join(f'arrays[{i}], ' for i in real)})"
        body.append(f"return _lr.{layer.backward}(_lr.upstream({layer.name!r}, grad, plan.out_shape, {dtype_from}), "
                    "arrays, plan)")
        returns = "tuple[np.ndarray | None, ...]"
    return function(name, _signature(layer, where), returns, _docstring(layer, where), body)


def render_text() -> str:
    """Source of ``symdl/kernels/layers.py``."""
    names = [n for layer in LAYERS for n in (layer.name, f"{layer.name}_vjp")]
    text = header("Generated NumPy kernels: layers (convolution, pooling, linear, normalisation, dropout, flatten)",
                  "``symdl.catalog.layers``",
                  advice="change the catalog or the runtime in ``symdl/kernels/_layers/`` and regenerate",
                  imports=["from typing import Any", "", "import numpy as np", "",
                           "from symdl.kernels import _layers_runtime as _lr",
                           "from symdl.kernels._layers_runtime import ArrayLike"])
    functions = [_function(layer, where) for layer in LAYERS for where in ("forward", "backward")]
    return text + "\n" + exports(names) + "\n\n" + "\n\n".join(functions)


def render() -> list[GeneratedModule]:
    """The generated layer kernel module (its kernels re-exported from ``symdl.kernels``)."""
    exports = tuple(n for layer in LAYERS for n in (layer.name, f"{layer.name}_vjp"))
    return [GeneratedModule(path=PATH, text=render_text(), exports=exports)]
