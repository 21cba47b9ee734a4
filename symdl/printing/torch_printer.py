"""Print SymPy expressions as PyTorch code: the NumPy kernel printer's rules with PyTorch's names.

``softplus`` is printed as a helper, :math:`\\max(x, 0) + \\log(1 + e^{-|x|})`, rather than
``torch.nn.functional.softplus``, whose ``threshold`` returns ``x`` above 20 (an approximation;
the catalog's forms are exact). ``normal_cdf`` is ``torch.special.ndtr``; ``xlogy`` is
``torch.xlogy`` (0 where x = 0, as the NumPy runtime's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sympy as sp

from symdl.printing.inplace import ArraySpec
from symdl.printing.framework_printer import FrameworkNames, FrameworkPrinter

#: Helpers a generated PyTorch module defines when its code calls them.
TORCH_HELPERS: dict[str, str] = {
    "_softplus": (
        "def _softplus(x):\n"
        '    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): stable for every finite x, no threshold."""\n'
        "    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-torch.abs(x)))\n"
    ),
    "_class_sum": (
        "def _class_sum(values, num_classes):\n"
        '    """The sum over the classes of per-class weights (num_classes times a scalar)."""\n'
        "    return values * num_classes if not torch.is_tensor(values) or values.dim() == 0 else values.sum()\n"
    ),
    "_clamped_log": (
        "def _clamped_log(u, floor):\n"
        '    """max(log u, floor): log 0 = -inf is clamped like any value below the floor."""\n'
        "    return torch.clamp(torch.log(u), min=floor)\n"
    ),
    "_clamped_log1p": (
        "def _clamped_log1p(u, floor):\n"
        '    """max(log(1 + u), floor)."""\n'
        "    return torch.clamp(torch.log1p(u), min=floor)\n"
    ),
}

TORCH_NAMES = FrameworkNames(
    module="torch",
    functions={
        "exp": "torch.exp", "log": "torch.log", "tanh": "torch.tanh", "cosh": "torch.cosh",
        "log1p": "torch.log1p", "expm1": "torch.expm1", "Abs": "torch.abs", "sign": "torch.sign",
        "erf": "torch.erf", "erfc": "torch.erfc", "sigmoid": "torch.sigmoid", "softplus": "_softplus",
        "xlogy": "torch.xlogy", "normal_cdf": "torch.special.ndtr", "clamped_log": "_clamped_log",
        "clamped_log1p": "_clamped_log1p", "sin": "torch.sin", "cos": "torch.cos", "tan": "torch.tan",
        "sinh": "torch.sinh", "asinh": "torch.asinh", "atan": "torch.atan",
    },
    clamp="torch.clamp({x}, min={low}, max={high})",
    maximum="torch.maximum",
    minimum="torch.minimum",
    where="torch.where",
    logical_not="torch.logical_not",
    reduce_sum="torch.sum({x}, dim={axis}, keepdim=True)",
    reduce_max="torch.amax({x}, dim={axis}, keepdim=True)",
    helpers=TORCH_HELPERS,
)


class TorchPrinter(FrameworkPrinter):
    """Prints one expression of an exported op as PyTorch code."""

    def __init__(self, scalars: Iterable[sp.Symbol] = (), names: Mapping[sp.Symbol, str] | None = None,
                 axis: str = "dim", arrays: Mapping[sp.Symbol, ArraySpec] | None = None) -> None:
        super().__init__(TORCH_NAMES, scalars=scalars, names=names, axis=axis, arrays=arrays)
