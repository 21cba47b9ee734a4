"""Print SymPy expressions as PyTorch code: the NumPy kernel printer's rules with PyTorch's names.

``softplus`` is printed as a helper, :math:`\\max(x, 0) + \\log(1 + e^{-|x|})`, rather than
``torch.nn.functional.softplus``, whose ``threshold`` returns ``x`` above 20 (an approximation;
the catalog's forms are exact). ``normal_cdf`` is a helper too, :math:`\\tfrac12\\operatorname{erfc}(-x/\\sqrt2)`:
``torch.special.ndtr`` loses its relative accuracy in the left tail (measured, torch 2.13 CPU: 2% off at
x = -8, 0 from x = -8.3 on in float64, where :math:`\\Phi(x) = 6 \\cdot 10^{-17}`). ``xlogy`` is ``torch.xlogy`` (0 where x = 0, as the NumPy runtime's).

In place: :class:`TorchInplacePrinter` prints the same expressions in the names
:mod:`symdl.printing.inplace` models (NumPy's ufuncs, ``symdl.kernels._runtime``'s
primitives), the emitter compiles them into one operation per line writing into
dead temporaries, and :func:`lower_to_torch` maps each call to the PyTorch call
computing the same elementwise function (``np.multiply(a, b, out=t)`` ->
``torch.mul(a, b, out=t)``). Where PyTorch's functions differ from NumPy's
ufuncs, the lowering computes what PyTorch's Python operators compute in the
plain form: a scalar first (``2 * t``, ``1 - t``, ``1 / t``: PyTorch's
``Tensor.__rtruediv__`` is ``t.reciprocal() * s``), a boolean mask in a
subtraction (PyTorch subtracts no bool tensor: the mask becomes 0/1 in the
other operand's dtype, exactly). A mask that is only multiplied and added is
computed as 0.0/1.0 floats instead (:mod:`symdl.printing.torch_masks`, the
helper ``_mask``), and a select is done on the values' bits (``_select``): this
build's CPU loops over bool tensors are several times slower than float ones.
A result the emitter gives a fresh tensor (it cannot prove the shapes: a loss's
broadcast inputs, a reduced loss's 0-d upstream gradient) goes into a dead
operand's buffer where ``_fits`` allows at run time (:mod:`symdl.printing.torch_buffers`).

Measured (1e6 elements, one thread, this machine, loaded): forward + backward
of the plain-form sigmoid export took about 1900 (float32) and 4500 (float64)
minor page faults per step (fresh 4 and 8 MB tensors paged in, 1000 and 2000
faults each), the built-in 0 to 800; the in-place export 0 and about 3000. In a
tight loop of one expression the allocator reuses the freed block (no fault),
and there ``g * x * x * x`` into fresh tensors still takes 1.9x (float32) and
1.6x (float64) the time of ``(g * x).mul_(x).mul_(x)``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from symdl.printing.framework_printer import SCALAR_HELPERS, FrameworkNames, FrameworkPrinter, exp_of_square_helper
from symdl.printing.inplace import dotted_name
from symdl.printing.torch_buffers import into_dead_operand, own_temporaries
from symdl.printing.torch_masks import FloatMaskStatements, float_masks, is_mask

#: Helpers a generated PyTorch module defines when its code calls them. Those taking ``out=`` compute
#: the plain form's operations in the same order, only into ``out`` (which may be their argument) or into
#: a temporary of their own.
TORCH_HELPERS: dict[str, str] = {
    "_softplus": (
        "def _softplus(x, out=None):\n"
        '    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): stable for every finite x, no threshold."""\n'
        "    if out is None:  # the plain form (autograd records it under create_graph)\n"
        "        return torch.clamp(x, min=0) + torch.log1p(torch.exp(-torch.abs(x)))\n"
        "    t = torch.abs(x).neg_().exp_().log1p_()\n"
        "    return torch.add(torch.clamp(x, min=0), t, out=out)\n"
    ),
    "_normal_cdf": (
        "def _normal_cdf(x, out=None):\n"
        '    """The standard normal CDF Phi(x) = erfc(-x / sqrt(2)) / 2, accurate in both tails (relative to Phi\n'
        "    up to the rounding of x / sqrt(2)). torch.special.ndtr loses its relative accuracy in the left tail\n"
        '    (torch 2.13 CPU, measured: 2% off at x = -8 and 0 from x = -8.3 on in float64)."""\n'
        "    if out is None:  # the plain form (autograd records it under create_graph)\n"
        "        return 0.5 * torch.erfc(x * -0.7071067811865476)\n"
        "    return torch.mul(x, -0.7071067811865476, out=out).erfc_().mul_(0.5)\n"
    ),
    "_class_sum": (
        "def _class_sum(values, num_classes):\n"
        '    """The sum over the classes of per-class weights (num_classes times a scalar)."""\n'
        "    return values * num_classes if not torch.is_tensor(values) or values.dim() == 0 else values.sum()\n"
    ),
    "_clamped_log": (
        "def _clamped_log(u, floor, out=None):\n"
        '    """max(log u, floor): log 0 = -inf is clamped like any value below the floor."""\n'
        "    if out is None:  # the plain form (autograd records it under create_graph)\n"
        "        return torch.clamp(torch.log(u), min=floor)\n"
        "    return torch.log(u, out=out).clamp_(min=floor)\n"
    ),
    "_clamped_log1p": (
        "def _clamped_log1p(u, floor, out=None):\n"
        '    """max(log(1 + u), floor)."""\n'
        "    if out is None:  # the plain form (autograd records it under create_graph)\n"
        "        return torch.clamp(torch.log1p(u), min=floor)\n"
        "    return torch.log1p(u, out=out).clamp_(min=floor)\n"
    ),
    "_select": (
        "_BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,\n"
        "         torch.bfloat16: torch.int16}\n"
        "\n"
        "\n"
        "def _select(condition, a, b, out=None):\n"
        '    """torch.where(condition, a, b), into ``out`` (which may be ``a`` or ``b``) when given.\n'
        "\n"
        "    On the CPU, into ``out``, two tensors of one floating dtype and the condition's shape are selected without\n"
        "    torch.where's loop over a bool condition (3.5 ms per 1e6 float32 values when the condition is random,\n"
        "    0.55 ms when it is uniform: docs/export.md). A condition that holds everywhere or nowhere (a byte\n"
        "    min and max, 0.03 ms) picks one branch whole: nothing to compute when it is in ``out`` already.\n"
        "    Otherwise the values are selected on their bits as integers: with k the branch whose buffer holds\n"
        "    the result, o the other and c all ones where o is taken, r = o ^ ((k ^ o) & ~c), computed in place\n"
        "    as r = k; r ^= o; c &= r; r ^= c; r ^= o (0.6 ms): every value, inf and NaN included, copied\n"
        "    unchanged.\n"
        '    """\n'
        "    if not torch.is_tensor(condition):  # a condition on parameters\n"
        "        condition = torch.tensor(condition, device=(a if torch.is_tensor(a) else b).device)\n"
        "    bits = _BITS.get(a.dtype) if torch.is_tensor(a) else None\n"
        "    if out is None:  # a new tensor: the bits' integer temporary would be a second one\n"
        "        return torch.where(condition, a, b)\n"
        "    if (bits is None or not torch.is_tensor(b) or b.dtype != a.dtype or not a.shape == b.shape == condition.shape\n"
        "            or condition.device.type != \"cpu\" or out.dtype != a.dtype or out.shape != a.shape):\n"
        "        return torch.where(condition, a, b, out=out)\n"
        "    if condition.numel():\n"
        "        lowest, highest = torch.aminmax(condition.view(torch.uint8))\n"
        "        if lowest == highest:  # one branch everywhere\n"
        "            whole = a if lowest else b\n"
        "            return out if out is whole else out.copy_(whole)\n"
        "    if out is a:  # keep a, take b where the condition fails\n"
        "        other, taken = b, condition.to(bits).sub_(1)\n"
        "    else:  # keep b (in out: a copy), take a where the condition holds\n"
        "        other, taken = a, condition.to(bits).neg_()\n"
        "        out = out if out is b else out.copy_(b)\n"
        "    result, other = out.view(bits), other.view(bits)\n"
        "    result ^= other\n"
        "    taken &= result\n"
        "    result ^= taken\n"
        "    result ^= other\n"
        "    return out\n"
    ),
    "_mask": (
        "def _mask(x, relation, c, out=None):\n"
        '    """[x relation c] as 0.0 and 1.0 in x\'s dtype (or ``out``\'s), for relation "gt", "ge", "lt" or "le" and c\n'
        "    a Python number: the comparison itself (NaN gives 0.0), written into a float tensor. Into a float\n"
        "    tensor a comparison is one pass as fast as a product; its bool result, and a product with one, are\n"
        "    CPU loops 5-10x slower (docs/export.md).\n"
        '    """\n'
        "    if out is None:\n"
        "        if not torch.is_floating_point(x):  # an integer tensor's mask: bool, promoted where used\n"
        "            return getattr(torch, relation)(x, c)\n"
        "        out = torch.empty_like(x)\n"
        "    return getattr(torch, relation)(x, c, out=out)\n"
    ),
    "_same_dtype": (
        "def _same_dtype(into, *values):\n"
        '    """True when every tensor of ``values`` has ``into``\'s dtype (Python floats are weak), so that\n'
        '    their result has it and may be written into ``into``."""\n'
        "    return all(not torch.is_tensor(v) or v.dtype == into.dtype for v in values)\n"
    ),
    "_fits": (
        "def _fits(into, *values):\n"
        '    """True when every tensor of ``values`` has ``into``\'s dtype and broadcasts to its shape (Python\n'
        '    numbers are weak), so that an elementwise result of them may be written into ``into``."""\n'
        "    return all(not torch.is_tensor(v) or v.dtype == into.dtype\n"
        "               and torch.broadcast_shapes(v.shape, into.shape) == into.shape for v in values)\n"
    ),
    "_rsub": (
        "def _rsub(t, s, out=None):\n"
        '    """s - t for a Python scalar s, into ``out`` (which may be ``t``): what ``s - t`` computes."""\n'
        "    # a 0-d CPU tensor is a scalar on every device: no host-to-device copy\n"
        "    return torch.sub(torch.scalar_tensor(s, dtype=t.dtype), t, out=out)\n"
    ),
    "_quotient_at_zero": (
        "def _quotient_at_zero(n, x, limit, slope, out=None):\n"
        '    """n / x, and limit + slope * x where |x| < eps / 8 in x\'s dtype (symdl.functions.quotient_at_zero):\n'
        '    the value and, for a double backward, the derivative at 0. x is replaced by 1 there before\n'
        '    dividing: no 0 / 0, whose NaN the division\'s backward would carry.\n'
        "\n"
        "    Into ``out`` on the CPU (the in-place code, never recorded by autograd), an x with no |x| that small,\n"
        "    the usual case, is only divided: the two selects and the comparison cost five times the division.\n"
        '    """\n'
        "    small = torch.finfo(x.dtype).eps / 8\n"
        "    if out is not None and x.device.type == \"cpu\" and x.numel():\n"
        "        magnitude = torch.abs(x).nan_to_num_(nan=1.0)  # a NaN is not near 0 (and amin would return it)\n"
        "        if not magnitude.amin() < small:\n"
        "            return torch.div(n, x, out=out)\n"
        "    near = torch.abs(x) < small\n"
        "    quotient = torch.div(n, torch.where(near, torch.ones_like(x), x))\n"
        "    return torch.where(near, limit + slope * x, quotient, out=out)\n"
    ),
    "_exp_of_square": exp_of_square_helper(
        module="torch", how="Veltkamp's split", exact="",
        # dtypes as Python values: torch.result_type breaks torch.compile's graph (it returns no tensor)
        widen=("narrow = (u if torch.is_tensor(u) else plus).dtype  # a Python float takes the tensor's\n"
               "    wide = narrow if narrow.itemsize >= 4 else torch.float32  # 16-bit halves of a square overflow\n"
               "    u, plus = (a.to(wide) if torch.is_tensor(a) else a for a in (u, plus))\n"
               "    if divided:  # a 0-d CPU tensor is a scalar on every device\n"
               "        divisor = divisor.to(wide) if torch.is_tensor(divisor) else torch.scalar_tensor(divisor, dtype=wide)"),
        narrow="{}.to(narrow)",
        clamp="torch.clamp(u, min=-bound, max=bound)",
        bits="round(-math.log2(torch.finfo(wide).eps)) + 1",
        split=("        scaled = a * (2.0**half + 1)\n"
               "        high = scaled - (scaled - a)\n"
               "        return high, a - high\n")),
    "_hypot": (
        "def _hypot(a, b):\n"
        '    """sqrt(a^2 + b^2) without forming the squares (torch.hypot), a Python float taken as a tensor\n'
        '    (torch.hypot takes tensors only): a 0-d CPU tensor of the other\'s dtype, a scalar on every device."""\n'
        "    if not torch.is_tensor(a):\n"
        "        a = torch.scalar_tensor(a, dtype=b.dtype)\n"
        "    if not torch.is_tensor(b):\n"
        "        b = torch.scalar_tensor(b, dtype=a.dtype)\n"
        "    return torch.hypot(a, b)\n"
    ),
    "_copy": (
        "def _copy(x):\n"
        '    """A fresh copy of a tensor; a Python float as it is."""\n'
        "    return x.clone() if torch.is_tensor(x) else x\n"
    ),
    **SCALAR_HELPERS,
}

TORCH_NAMES = FrameworkNames(
    module="torch",
    functions={
        "erf": "torch.erf", "erfc": "torch.erfc", "sigmoid": "torch.sigmoid", "softplus": "_softplus",
        "xlogy": "torch.xlogy", "normal_cdf": "_normal_cdf", "clamped_log": "_clamped_log",
        "clamped_log1p": "_clamped_log1p", "asinh": "torch.asinh", "atan": "torch.atan",
        "quotient_at_zero": "_quotient_at_zero", "hypot": "_hypot", "exp_of_square": "_exp_of_square",
    },
    clamp="torch.clamp({x}, min={low}, max={high})",
    reduce_sum="torch.sum({x}, dim={axis}, keepdim=True)",
    reduce_max="torch.amax({x}, dim={axis}, keepdim=True)",
    helpers=TORCH_HELPERS,
)


#: What each function costs PyTorch on the CPU, in passes of one product over the same values (measured with
#: torch 2.13.0+cpu, one thread, 1e6 float32 values: a product 0.1 ms, torch.sigmoid 0.40, torch.exp 0.82,
#: expm1 1.2, log1p 0.94, log 1.3, erf 1.3, erfc 1.8, tanh 2.6; the generated _softplus is six operations with an
#: exp and a log1p, _normal_cdf an erfc and two products). :func:`symdl.export.forms.output_form` prints the cheapest
#: of the proven gradient forms by them.
TORCH_CPU_COSTS: dict[str, float] = {
    "grouped": 0.0, "sigmoid": 4.0, "exp": 8.0, "expm1": 12.0, "log1p": 9.0, "log": 13.0, "erf": 13.0,
    "erfc": 18.0, "normal_cdf": 20.0, "tanh": 26.0, "softplus": 21.0, "hypot": 11.0,
}


class TorchPrinter(FrameworkPrinter):
    """Prints one expression of an exported op as PyTorch code."""

    table = TORCH_NAMES


# --------------------------------------------------------------------------- in place
#: The in-place emitter's names (NumPy's and ``symdl.kernels._runtime``'s) for PyTorch's operations:
#: printed with these, an expression is what :func:`symdl.printing.inplace.emit_inplace` models, and
#: :func:`lower_to_torch` maps its output back to PyTorch. Each pair computes the same function.
TORCH_INPLACE_NAMES = FrameworkNames(
    module="np",
    functions={
        "erf": "_rt.erf", "erfc": "_rt.erfc", "sigmoid": "_rt.sigmoid", "softplus": "_rt.softplus",
        "xlogy": "_rt.xlogy", "normal_cdf": "_rt.normal_cdf", "clamped_log": "_rt.clamped_log",
        "clamped_log1p": "_rt.clamped_log1p", "tan": "torch.tan", "asinh": "torch.asinh", "atan": "torch.atan",
        "quotient_at_zero": "_rt.quotient_at_zero", "hypot": "_rt.hypot", "exp_of_square": "_rt.exp_of_square",
    },
    clamp="np.clip({x}, {low}, {high})",
    reduce_sum="np.sum({x}, axis={axis}, keepdims=True)",
    reduce_max="np.max({x}, axis={axis}, keepdims=True)",
    helpers=TORCH_HELPERS,
)

#: The emitter's calls as PyTorch calls (all take ``out=``, which may be an argument).
_TORCH_CALLS: dict[str, str] = {
    "np.add": "torch.add", "np.subtract": "torch.sub", "np.multiply": "torch.mul", "np.divide": "torch.div",
    "np.power": "torch.pow", "np.negative": "torch.neg", "np.reciprocal": "torch.reciprocal",
    "np.square": "torch.square", "np.sqrt": "torch.sqrt", "np.exp": "torch.exp", "np.log": "torch.log",
    "np.tanh": "torch.tanh", "np.cosh": "torch.cosh", "np.sinh": "torch.sinh", "np.log1p": "torch.log1p",
    "np.expm1": "torch.expm1", "np.abs": "torch.abs", "np.sign": "torch.sign", "np.sin": "torch.sin",
    "np.cos": "torch.cos", "np.maximum": "torch.maximum", "np.minimum": "torch.minimum",
    "np.invert": "torch.bitwise_not", "np.bitwise_and": "torch.bitwise_and", "np.bitwise_or": "torch.bitwise_or",
    "np.logical_not": "torch.logical_not", "np.less": "torch.lt", "np.less_equal": "torch.le",
    "np.greater": "torch.gt", "np.greater_equal": "torch.ge", "np.equal": "torch.eq", "np.not_equal": "torch.ne",
    "np.where": "torch.where", "_rt.sigmoid": "torch.sigmoid", "_rt.erf": "torch.erf", "_rt.erfc": "torch.erfc",
    "_rt.normal_cdf": "_normal_cdf", "_rt.xlogy": "torch.xlogy", "_rt.softplus": "_softplus",
    "_rt.clamped_log": "_clamped_log", "_rt.clamped_log1p": "_clamped_log1p", "_rt.select": "_select",
    "np.copy": "_copy", "_rt.quotient_at_zero": "_quotient_at_zero", "_rt.hypot": "_hypot",
    "_rt.exp_of_square": "_exp_of_square",
}
#: Row reductions: the emitter's name -> PyTorch's (``axis=``/``keepdims=`` become ``dim=``/``keepdim=``).
_TORCH_REDUCTIONS = {"np.sum": "torch.sum", "np.max": "torch.amax"}


class TorchInplacePrinter(FrameworkPrinter):
    """Prints one expression of an exported op in the in-place emitter's names (:data:`TORCH_INPLACE_NAMES`)."""

    table = TORCH_INPLACE_NAMES


def _call(func: str, args: list[ast.expr], keywords: list[ast.keyword]) -> ast.Call:
    return ast.Call(func=ast.parse(func, mode="eval").body, args=args, keywords=keywords)


#: Comparisons of a scalar with a tensor, as the tensor's comparison with the scalar (PyTorch's functions
#: take a tensor first).
_MIRRORED = {"np.less": "torch.gt", "np.less_equal": "torch.ge", "np.greater": "torch.lt",
             "np.greater_equal": "torch.le", "np.equal": "torch.eq", "np.not_equal": "torch.ne"}


def _method(value: ast.expr, name: str, args: list[ast.expr]) -> ast.Call:
    return ast.Call(func=ast.Attribute(value=value, attr=name, ctx=ast.Load()), args=args, keywords=[])


class _ToTorch(ast.NodeTransformer):
    """Rewrites the emitter's NumPy calls as the PyTorch calls computing the same (see :func:`lower_to_torch`).

    Args:
        scalars: the names bound to Python scalars (parameters, scalar temporaries).
    """

    def __init__(self, scalars: set[str], maybe_float: set[str]) -> None:
        self.scalars = scalars
        self.maybe_float = maybe_float  # optional weights: a tensor, or the Python float 1.0
        self.masks: set[str] = set()  # the emitter's boolean temporaries (m0, m1, ...)

    def unmasked(self, left: ast.expr, right: ast.expr) -> tuple[ast.expr, ast.expr]:
        """Operands of a subtraction, a boolean mask as the other operand's dtype (0 and 1, exactly).

        The emitter writes ``-y + mask`` as ``mask - y`` (equal in IEEE arithmetic); PyTorch subtracts
        no bool tensor, so the mask is converted first, to the dtype the result has anyway.
        """
        def is_mask(node: ast.expr) -> bool:
            return isinstance(node, ast.Name) and node.id in self.masks

        if is_mask(left) and not self.is_scalar(right):
            left = _method(left, "to", [ast.Attribute(value=right, attr="dtype", ctx=ast.Load())])
        elif is_mask(right) and not self.is_scalar(left):
            right = _method(right, "to", [ast.Attribute(value=left, attr="dtype", ctx=ast.Load())])
        return left, right

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.generic_visit(node)
        if isinstance(node.op, ast.Sub):
            node.left, node.right = self.unmasked(node.left, node.right)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        node = self.generic_visit(node)
        if isinstance(node.op, ast.Sub):
            _, node.value = self.unmasked(node.target, node.value)
        return node

    def is_scalar(self, node: ast.expr) -> bool:
        """No tensor in ``node``: only scalar names, constants and ``math`` (a Python number)."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and not dotted_name(sub.func).startswith("math."):
                return False
            if isinstance(sub, ast.Name) and sub.id not in self.scalars and sub.id != "math":
                return False
        return True

    def scalar_first(self, func: str, args: list[ast.expr], keywords: list[ast.keyword]) -> ast.AST | None:
        """A binary operation with a Python scalar first, as PyTorch's Python operators compute it.

        ``s + t`` and ``s * t`` commute exactly; ``s - t`` is :data:`TORCH_HELPERS` ``_rsub`` (one pass);
        ``s / t`` is ``t.reciprocal() * s``, which is what ``Tensor.__rtruediv__`` computes (times 1 is
        exact, so ``1 / t`` is the reciprocal); a comparison is mirrored.
        """
        second = args[1] if len(args) == 2 else None
        if second is None or self.is_scalar(second) or isinstance(second, ast.Name) and second.id in self.maybe_float:
            return None
        scalar, tensor = args
        if isinstance(scalar, ast.Name) and scalar.id in self.maybe_float and func in ("np.add", "np.multiply"):
            return _call(_TORCH_CALLS[func], [tensor, scalar], keywords)  # commutes exactly, whatever it is
        if not self.is_scalar(scalar):
            return None
        if func in ("np.add", "np.multiply"):
            return _call(_TORCH_CALLS[func], [tensor, scalar], keywords)
        if func in _MIRRORED:
            return _call(_MIRRORED[func], [tensor, scalar], keywords)
        if func == "np.subtract":
            return _call("_rsub", [tensor, scalar], keywords)
        if func == "np.divide":
            inverse = _call("torch.reciprocal", [tensor], keywords)
            one = isinstance(scalar, ast.Constant) and scalar.value == 1
            return inverse if one else _method(inverse, "mul_", [scalar])
        return None

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        # np.result_type(a, b) == t.dtype (may the result go into t?) -> _same_dtype(t, a, b): every tensor
        # has t's dtype, a sufficient condition under PyTorch's promotion.
        left = node.left
        if (isinstance(left, ast.Call) and dotted_name(left.func) == "np.result_type" and len(node.ops) == 1
                and isinstance(node.ops[0], ast.Eq) and isinstance(node.comparators[0], ast.Attribute)
                and node.comparators[0].attr == "dtype"):
            return _call("_same_dtype", [node.comparators[0].value, *left.args], [])
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        node = self.generic_visit(node)
        func = dotted_name(node.func)
        keywords = list(node.keywords)
        if func == "np.asarray":  # NumPy's 0-d results are scalars; PyTorch's are 0-d tensors already
            return node.args[0]
        if isinstance(node.func, ast.Attribute) and node.func.attr == "copy" and not node.args:
            node.func.attr = "clone"
            return node
        args = list(node.args)
        if func == "np.subtract" and len(args) == 2:
            args = list(self.unmasked(*args))
        dtype = [k for k in keywords if k.arg == "dtype"]
        if dtype:  # np.multiply(mask, k, dtype=x.dtype): the mask as x's dtype (exact), then the product
            keywords.remove(dtype[0])
            args[0] = ast.Call(func=ast.Attribute(value=args[0], attr="to", ctx=ast.Load()), args=[dtype[0].value],
                               keywords=[])
        if func == "np.clip":
            bounds = [ast.keyword(arg="min", value=args[1]), ast.keyword(arg="max", value=args[2])]
            return _call("torch.clamp", args[:1], bounds + keywords)
        if func in _TORCH_REDUCTIONS:
            renamed = {"axis": "dim", "keepdims": "keepdim"}
            keywords = [ast.keyword(arg=renamed.get(k.arg, k.arg), value=k.value) for k in keywords]
            return _call(_TORCH_REDUCTIONS[func], args, keywords)
        mirrored = self.scalar_first(func, args, keywords)
        if mirrored is not None:
            return mirrored
        if func in _TORCH_CALLS:
            return _call(_TORCH_CALLS[func], args, keywords)
        if func.startswith(("np.", "_rt.")):
            raise NotImplementedError(f"no PyTorch translation of the in-place emitter's {func}")
        node.args, node.keywords = args, keywords
        return node


def lower_to_torch(lines: Iterable[str], scalars: Iterable[str] = (),
                   maybe_float: Iterable[str] = ()) -> tuple[list[str], set[str]]:
    """The in-place emitter's lines (:func:`symdl.printing.inplace.emit_inplace`) as PyTorch code.

    Every NumPy call becomes the PyTorch call computing the same elementwise function with the same
    ``out=`` (``np.multiply(a, b, out=t)`` -> ``torch.mul(a, b, out=t)``); augmented assignments
    (``t0 *= t1``) are PyTorch's in-place operators; the emitter's run-time dtype test becomes
    :data:`TORCH_HELPERS` ``_same_dtype``. Comments (each assignment's plain form) are translated too.

    Args:
        lines: the emitter's output.
        scalars: the names of Python-scalar parameters (the emitter's scalar temporaries are found here).
        maybe_float: the names of optional weights, tensors or the Python float 1.0.

    Returns:
        The lines and the helpers (:data:`TORCH_HELPERS`) they call.
    """
    lines = list(lines)
    translator = _ToTorch(set(scalars) | {"num_classes"}, set(maybe_float))
    code = [ast.parse(line) for line in lines if not line.startswith("# ")]
    for tree in code:
        statement = tree.body[0] if tree.body else None
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name) and translator.is_scalar(statement.value)):
            translator.scalars.add(statement.targets[0].id)  # a scalar temporary (s0 = 1 / delta)
        # a boolean temporary of the emitter: m0 = x > 0, or np.greater(x, 0, out=m0)
        targets = [t for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets]
        targets += [k.value for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords if k.arg == "out"]
        translator.masks |= {t.id for t in targets if is_mask(t)}
    statements = [tree.body[0] for tree in code if tree.body]
    masks = float_masks(statements, translator.is_scalar)
    floats = FloatMaskStatements(masks, translator.is_scalar)
    buffers = masks | own_temporaries(statements)  # dead ones may take a fresh result (torch_buffers)
    read_after: list[set[str]] = [set()]  # read_after[k]: the names statements k, k + 1, ... read
    for statement in reversed(statements):
        read_after.insert(0, read_after[0] | {n.id for n in ast.walk(statement) if isinstance(n, ast.Name)})
    result, position = [], 0
    for line in lines:
        comment = line.startswith("# ")
        tree = ast.parse(line[2:] if comment else line)
        if not comment and tree.body:
            position += 1
            statement = floats.rewrite(tree.body[0])
            tree.body[0] = into_dead_operand(statement, buffers, read_after[position])
        tree = translator.visit(tree)
        translated = ast.unparse(ast.fix_missing_locations(tree))
        result.append(f"# {translated}" if comment else translated)
    called = {n.id for line in result for n in ast.walk(ast.parse(line.removeprefix("# ")))
              if isinstance(n, ast.Name)}
    return result, {name for name in TORCH_HELPERS if name in called}
