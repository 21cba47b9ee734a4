"""Which boolean masks of the in-place emitter PyTorch computes as 0.0 and 1.0 floats, and how.

The in-place emitter (:mod:`symdl.printing.inplace`) writes a kink's indicator as a boolean mask
(``m0 = x > 0``) and multiplies by it. In the PyTorch CPU build this project pins, a comparison
with a bool result and a product with a bool operand are loops several times slower than float
arithmetic. Measured with torch 2.13.0+cpu, one thread, 1e6 float32 values: ``x > 0`` 0.43-0.66 ms,
``g * m`` for a bool ``m`` 0.73 ms, ``g * (x > 0)`` 1.24 ms; the same comparison written into a float
tensor, ``torch.gt(x, 0, out=f)``, 0.09 ms, and a float product 0.15 ms (PyTorch's own
``threshold_backward`` is 0.17 ms).

So the PyTorch lowering computes a mask as floats (the generated module's ``_mask``: the comparison
itself into a float tensor, 1.0 and 0.0, NaN giving 0.0 as False:
:data:`symdl.printing.torch_printer.TORCH_HELPERS`) when

* every statement writing it compares a tensor with a Python scalar by ``<``, ``<=``, ``>`` or
  ``>=``, or combines such masks by ``&``, ``|`` and ``~``, and
* every use of it is arithmetic (``*``, ``+``, ``-``, ``maximum``, ``minimum``), where a bool mask
  is promoted to exactly 0.0 and 1.0 anyway: the results are the same numbers.

Any other mask, a select's condition above all (``torch.where`` needs a bool), stays bool, and so
does every mask combined with it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable

from symdl.printing.inplace import dotted_name

#: Comparisons with a scalar that ``_mask`` computes, by the emitter's operator and function.
RELATIONS: dict[type[ast.cmpop] | str, str] = {
    ast.Gt: "gt", ast.GtE: "ge", ast.Lt: "lt", ast.LtE: "le",
    "np.greater": "gt", "np.greater_equal": "ge", "np.less": "lt", "np.less_equal": "le",
}
#: A relation read from the other side (``3 < x`` is ``x > 3``).
MIRRORED = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}

#: Where a float mask gives the same numbers as a bool one: arithmetic operators and calls.
_ARITHMETIC_OPERATORS = (ast.Add, ast.Sub, ast.Mult)
_ARITHMETIC_CALLS = frozenset({"np.multiply", "np.add", "np.subtract", "np.maximum", "np.minimum"})
#: Mask algebra and its float form: the function computing it on 0.0/1.0 floats.
_ALGEBRA_CALLS = {"np.bitwise_and": "np.multiply", "np.logical_and": "np.multiply",
                  "np.bitwise_or": "np.maximum", "np.logical_or": "np.maximum"}
_NEGATIONS = frozenset({"np.invert", "np.logical_not"})

_MASK = re.compile(r"m\d+")


def is_mask(node: ast.AST) -> bool:
    """A name of the emitter's boolean temporaries (``m0``, ``m1``, ...)."""
    return isinstance(node, ast.Name) and _MASK.fullmatch(node.id) is not None


def _unwrapped(value: ast.expr) -> ast.expr:
    """``value`` without the emitter's ``np.asarray(...)`` (NumPy's 0-d results are scalars)."""
    if isinstance(value, ast.Call) and dotted_name(value.func) == "np.asarray" and len(value.args) == 1:
        return value.args[0]
    return value


def _out(call: ast.Call) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == "out"), None)


def comparison(statement: ast.stmt, is_scalar: Callable[[ast.expr], bool]) -> tuple[str, ast.expr, ast.expr, ast.expr] | None:
    """A statement writing a tensor's comparison with a scalar into a mask: (relation, tensor, scalar,
    mask); None for any other statement."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and is_mask(statement.targets[0]):
        value, target = _unwrapped(statement.value), statement.targets[0]
        if not (isinstance(value, ast.Compare) and len(value.ops) == 1 and type(value.ops[0]) in RELATIONS):
            return None
        relation, left, right = RELATIONS[type(value.ops[0])], value.left, value.comparators[0]
    elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
        call = statement.value
        relation = RELATIONS.get(dotted_name(call.func))
        target = _out(call)
        if relation is None or target is None or not is_mask(target) or len(call.args) != 2:
            return None
        left, right = call.args
    else:
        return None
    if is_scalar(left) and not is_scalar(right):
        relation, left, right = MIRRORED[relation], right, left
    if not is_scalar(right) or is_scalar(left) or any(is_mask(n) for n in ast.walk(left)):
        return None
    return relation, left, right, target


def _algebra(statement: ast.stmt) -> bool:
    """A statement combining masks only (``m0 &= m1``, ``m0 = ~m1``, ``np.invert(m0, out=m0)``)."""
    if isinstance(statement, ast.AugAssign):
        return (is_mask(statement.target) and isinstance(statement.op, (ast.BitAnd, ast.BitOr))
                and is_mask(statement.value))
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and is_mask(statement.targets[0]):
        value = _unwrapped(statement.value)
        if isinstance(value, ast.BinOp) and isinstance(value.op, (ast.BitAnd, ast.BitOr)):
            return is_mask(value.left) and is_mask(value.right)
        if isinstance(value, ast.UnaryOp) and isinstance(value.op, (ast.Invert, ast.Not)):
            return is_mask(value.operand)
        return is_mask(value)
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
        call = statement.value
        func = dotted_name(call.func)
        out = _out(call)
        return ((func in _ALGEBRA_CALLS or func in _NEGATIONS) and out is not None and is_mask(out)
                and all(is_mask(a) for a in call.args) and len(call.keywords) == 1)
    return False


def _arithmetic_uses(statement: ast.stmt) -> set[str]:
    """The masks this statement reads only as operands of arithmetic."""
    parents = {child: node for node in ast.walk(statement) for child in ast.iter_child_nodes(node)}
    fine, other = set(), set()
    for node in ast.walk(statement):
        if not is_mask(node):
            continue
        parent = parents.get(node)
        arithmetic = (
            isinstance(parent, ast.BinOp) and isinstance(parent.op, _ARITHMETIC_OPERATORS)
            or isinstance(parent, ast.AugAssign) and parent.value is node and isinstance(parent.op, _ARITHMETIC_OPERATORS)
            and not is_mask(parent.target)
            or isinstance(parent, ast.Call) and dotted_name(parent.func) in _ARITHMETIC_CALLS and node in parent.args
        )
        (fine if arithmetic else other).add(node.id)
    return fine - other


def float_masks(statements: Iterable[ast.stmt], is_scalar: Callable[[ast.expr], bool]) -> set[str]:
    """The masks the PyTorch lowering may compute as 0.0/1.0 floats (see the module docstring)."""
    group: dict[str, str] = {}  # union-find over masks combined by mask algebra

    def root(name: str) -> str:
        while group.setdefault(name, name) != name:
            name = group[name]
        return name

    names, kept_bool = set(), set()
    for statement in statements:
        masks = {n.id for n in ast.walk(statement) if is_mask(n)}
        names |= masks
        if comparison(statement, is_scalar) is not None:
            continue
        if _algebra(statement):
            first, *rest = sorted(masks)
            for name in rest:
                group[root(name)] = root(first)
            continue
        kept_bool |= masks - _arithmetic_uses(statement)
    bool_roots = {root(name) for name in kept_bool}
    return {name for name in names if root(name) not in bool_roots}


class FloatMaskStatements(ast.NodeTransformer):
    """Rewrites the statements writing float masks (:func:`float_masks`) as float operations.

    A comparison becomes ``_mask(tensor, relation, scalar[, out=mask])``; ``&`` a product, ``|`` a
    maximum and ``~`` ``1 - m``, in the emitter's NumPy names, which the PyTorch lowering then
    translates as any other call.
    """

    def __init__(self, masks: set[str], is_scalar: Callable[[ast.expr], bool]) -> None:
        self.masks = masks
        self.is_scalar = is_scalar

    def rewrite(self, statement: ast.stmt) -> ast.stmt:
        """``statement`` with a float mask's comparison or algebra as float operations; others as they are."""
        written = {n.id for n in ast.walk(statement) if is_mask(n)}
        if not written or not written <= self.masks:
            return statement
        compared = comparison(statement, self.is_scalar)
        if compared is not None:
            relation, tensor, scalar, mask = compared
            call = ast.Call(func=ast.Name(id="_mask", ctx=ast.Load()),
                            args=[tensor, ast.Constant(relation), scalar], keywords=[])
            if isinstance(statement, ast.Assign):
                return ast.Assign(targets=statement.targets, value=call)
            call.keywords = [ast.keyword(arg="out", value=mask)]
            return ast.Expr(value=call)
        if _algebra(statement):
            return self.visit(statement)
        return statement

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        if isinstance(node.op, ast.BitAnd):
            return ast.AugAssign(target=node.target, op=ast.Mult(), value=node.value)
        target = ast.Name(id=node.target.id, ctx=ast.Load())
        return ast.Expr(value=emitter_call("np.maximum", [target, node.value], out=target))

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        return emitter_call("np.multiply" if isinstance(node.op, ast.BitAnd) else "np.maximum", [node.left, node.right])

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        return emitter_call("np.subtract", [ast.Constant(1), node.operand])

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = dotted_name(node.func)
        if func in _NEGATIONS:
            return emitter_call("np.subtract", [ast.Constant(1), *node.args], out=_out(node))
        return emitter_call(_ALGEBRA_CALLS[func], node.args, out=_out(node))


def emitter_call(func: str, args: list[ast.expr], out: ast.expr | None = None) -> ast.Call:
    """The emitter's call ``func(*args[, out=out])``."""
    keywords = [] if out is None else [ast.keyword(arg="out", value=out)]
    return ast.Call(func=ast.parse(func, mode="eval").body, args=args, keywords=keywords)
