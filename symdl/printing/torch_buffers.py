"""Which fresh results of the in-place emitter the PyTorch lowering writes into a dead operand instead.

The in-place emitter (:mod:`symdl.printing.inplace`) writes a result into one of its temporaries only
where it can prove, from the array specs, that the result has the temporary's shape and dtype. Where it
cannot (a pointwise loss's inputs broadcast against each other and against the upstream gradient, which
for a reduced loss is one 0-d value; a product with a float mask), it takes a fresh tensor. A fresh
tensor costs more than the operation (per 1e6 float32 values a product into a new 4 MB tensor 0.38 ms,
into one just written 0.12 ms: docs/export.md), so the lowering writes ``t = a op b`` into the buffer of an
operand that is the function's own temporary and that no later statement reads, when ``_fits`` confirms
at run time that the result has that buffer's dtype and shape. Where it does not, the result gets a
tensor of its own, as before.

A temporary is the function's own only if nothing else can see its buffer: no name is assigned from it
(``out = t0`` makes it the output), it is not the ``out=`` of a call whose result is assigned (the
result is the same tensor), and it is never indexed or read through an attribute other than ``dtype``
(a view shares its buffer).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

from symdl.printing.torch_masks import emitter_call

#: Operators whose result the lowering may write into an operand, and the emitter's call computing it.
_INTO_OPERAND: dict[type[ast.operator], str] = {
    ast.Mult: "np.multiply", ast.Add: "np.add", ast.Sub: "np.subtract", ast.Div: "np.divide",
}
_TEMPORARY = re.compile(r"t\d+")


def own_temporaries(statements: Iterable[ast.stmt]) -> set[str]:
    """The emitter's temporaries (``t0``, ``t1``, ...) no other name can reach (see the module docstring)."""
    seen, shared = set(), set()
    for statement in statements:
        parents = {child: node for node in ast.walk(statement) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(statement):
            if isinstance(node, ast.Name) and _TEMPORARY.fullmatch(node.id):
                seen.add(node.id)
                parent = parents.get(node)
                if (isinstance(parent, ast.Subscript) and parent.value is node
                        or isinstance(parent, ast.Attribute) and parent.attr != "dtype"):
                    shared.add(node.id)
        if isinstance(statement, ast.Assign):
            value = statement.value
            if isinstance(value, ast.Name):  # an alias: out = t0
                shared.add(value.id)
            if isinstance(value, ast.Call):  # t1 = f(..., out=t0): t1 is t0
                outs = [k.value for k in value.keywords if k.arg == "out" and isinstance(k.value, ast.Name)]
                if outs:
                    shared |= {o.id for o in outs} | {t.id for t in statement.targets if isinstance(t, ast.Name)}
    return seen - shared


def into_dead_operand(statement: ast.stmt, buffers: set[str], read_later: set[str]) -> ast.stmt:
    """``t = a op b`` (``*``, ``+``, ``-``, ``/``) written into the buffer of ``a`` or ``b`` when it is one
    of ``buffers`` and no later statement reads it: the first that ``_fits`` the result at run time (its
    dtype and shape), else a fresh tensor."""
    if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
            and isinstance(statement.value, ast.BinOp) and type(statement.value.op) in _INTO_OPERAND):
        return statement
    left, right = statement.value.left, statement.value.right
    out: ast.expr = ast.Constant(None)
    for into, other in ((right, left), (left, right)):  # built inside out: the left operand is tried first
        if isinstance(into, ast.Name) and into.id in buffers and into.id not in read_later:
            fits = ast.Call(func=ast.Name(id="_fits", ctx=ast.Load()), args=[into, other], keywords=[])
            out = ast.IfExp(test=fits, body=ast.Name(id=into.id, ctx=ast.Load()), orelse=out)
    if isinstance(out, ast.Constant):
        return statement
    return ast.Assign(targets=statement.targets,
                      value=emitter_call(_INTO_OPERAND[type(statement.value.op)], [left, right], out=out))
