"""Lower printed expressions to in-place NumPy code: the one in-place emitter.

It serves the op kernels and their exports
(:func:`symdl.printing.numpy_printer.print_assignments`, :mod:`symdl.export`)
and the optimizer steps (:mod:`symdl.codegen.optimizers`), which only print
their expressions and call :func:`emit_program`.

A caller prints every assignment as one Python expression (the *plain* form),
in which each operator allocates a fresh array. This module compiles those
expressions into straight-line code, one NumPy operation per line, that writes
into dead temporaries (``t0 *= t1``, ``np.exp(t0, out=t0)``) and computes
exactly what the plain form computes, bit for bit:

* every operation is the call Python makes for the plain expression
  (``a * b`` is ``np.multiply(a, b)``, ``a ** 2`` is ``np.square(a)``), on
  the same operands in the same association; operands are swapped only in
  commutative operations (``+``, ``*``, ``&``, ``|``), which IEEE arithmetic
  evaluates identically either way. Identical operations are computed once,
  and ``(-a) * b`` reuses ``a * b`` when that exists (negation is exact);
* operations are ordered, within each assignment, to need few buffers
  (Sethi-Ullman: the operand that needs more buffers first); they are pure,
  so the order changes no value;
* a result goes into a buffer only if the buffer has the result's exact
  shape and dtype: values are typed statically (:class:`Type`). A buffer of
  the right shape from another dtype group (``g * t0``, t0 computed from
  ``x``) is used behind a run-time test, ``out=t0 if g.dtype == t0.dtype else
  None``;
* inputs (``x``, ``g``, parameters: any name not computed here) are never
  written, nor is any array an unknown call has seen (it may be a view);
  outputs are fresh arrays that alias no input and no other output;
* Python-scalar sub-expressions (parameters, constants, ``math.*``) keep
  their plain text, so they stay Python floats: weak scalars under NumPy 2,
  so float32 stays float32;
* calls this module does not model (anything but the NumPy ufuncs, row
  reductions, ``np.clip``, ``np.where`` and the ``_rt`` primitives) are
  computed as printed and their results never written into.

``np.where(c, a, b)`` has no ``out=`` and stays as it is (every branch-free
exact alternative measured here, ``np.copyto(b, a, where=c)`` included, is as
slow on random masks), except when both branches share a factor:
``np.where(c, g * k1, g * k2)`` is ``g * (c * k1 + ~c * k2)`` for Python
scalars k1, k2 (k = 1 when a branch is g itself): each product with the 0/1
mask is exact and adding a zero to a finite k gives k.

Types
    Each array value has a kind (``f`` float, ``b`` bool, ``o`` unknown), a
    *shape*: the set of atoms whose broadcast it is (an input's shape group,
    a row reduction of a shape, an array declared to broadcast within a
    group), and for floats a *dtype*: the set of input dtype groups it was
    computed from. Equal sets give equal shapes and dtypes at run time,
    whatever the inputs, since broadcasting and float promotion (Python
    scalars weak, bool arrays neutral) are associative, commutative and
    idempotent.

0-d inputs
    NumPy returns scalars, not 0-d arrays, from operations on 0-d arrays, and
    a scalar cannot be an ``out=``: a buffer later written through ``out=`` is
    created through ``np.asarray`` (free for arrays).

Writable inputs (``writable=``: an optimizer's parameter and state arrays)
    Each assignment to one leaves its value in that input's own array
    (``exp_avg *= beta2``), so the caller sees the update. The array is
    written only once the value it holds is dead: read by no operation that
    can still run (its last read, or ``out=`` on the operation making that
    read). An assignment whose value cannot go there directly ends with
    ``np.copyto``; one whose old value is still read later (through an alias)
    is refused with ValueError rather than written early. Only the
    assignments to an input write into it, so its value is never overwritten
    by an unrelated temporary.

Scratch buffers (``scratch_like=``)
    Results of exactly one input's shape and dtype go into preallocated
    buffers ``s0, s1, ...`` (``np.multiply(a, b, out=s0)``) instead of fresh
    arrays; :class:`Emitted` reports how many the code uses and how many
    operations still allocate (a caller that allows none checks that it is 0).
    The allocator reuses a dead buffer before taking a new one, so the count
    is the most values of that type alive at once.

One-pass updates (``axpy=``)
    ``x + c * a`` and ``x - c * a`` (``c`` a Python scalar) into a dying ``x``
    are one call ``axpy(c, a, x)`` (``axpy(-c, ...)``: negation is exact),
    when the product ``c * a`` is read nowhere else: one pass over memory
    instead of two. BLAS may fuse the multiply-add (one rounding instead of
    two), as PyTorch's ``add_(alpha=)`` may; the kernels never pass ``axpy``.

Branches (:class:`Branch`)
    A value chosen by Python-scalar conditions (``maximize``, ``step == 1``)
    is an ``if``/``elif``/``else`` whose arms each compute one expression and
    bind it: into the input's array for a writable input, else to a Python
    name (``d = s0`` / ``d = grad``), never written afterwards since it may
    name an input. Arms never run together, so a value's reads on a later arm
    do not keep it alive on an earlier one (``param *= 1 - lr * wd`` on one
    arm, ``param`` kept on the other); each arm starts from the buffers free
    before the branch plus the scratch buffers only earlier arms used, and a
    buffer is free after the branch only if it is free at the end of every
    arm. A fresh array made on an arm exists only when that arm ran, so it is
    never written after the branch. A branch between Python scalars is one
    conditional expression.

Measured (1e6 elements, this machine): ``np.sign(a, out=a)`` is 4x slower than
into another array, so sign is never computed in place; ``np.power(a, k,
out=b)`` misses NumPy's fast paths (``a ** 2`` is ``np.square``), so powers
are only written ``a ** k`` or ``a **= k``.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sympy as sp

    from symdl.catalog.spec import Op as CatalogOp

__all__ = ["ArraySpec", "Branch", "Emitted", "Type", "emit_inplace", "emit_program", "kernel_arrays"]


# --------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class ArraySpec:
    """What the emitter may assume about an input array.

    Attributes:
        shape: shape group; inputs with the same group have the same shape.
        dtype: dtype group for a floating-point input (inputs with the same
            group have the same dtype), or None when the dtype is unknown
            (integer class indices): nothing computed from it is written into.
        within: a shape group this array broadcasts to without enlarging it
            (a per-class weight against the logits); its own shape is then
            absorbed wherever that group takes part.
        maybe_float: may be the Python float 1.0 (an optional weight left
            out): never copied or asked for its dtype.
        vector: at least 1-d, so NumPy returns arrays, not scalars, from it.
    """

    shape: str
    dtype: str | None
    within: str | None = None
    maybe_float: bool = False
    vector: bool = False

    @property
    def atom(self) -> object:
        return self.shape if self.within is None else ("within", self.shape, self.within)


def kernel_arrays(op: CatalogOp) -> dict[sp.Symbol, ArraySpec]:
    """What each kernel template guarantees about the arrays its printed code reads.

    * every input is a floating-point array (``float_array``, the one-hot or
      probability rows of ``class_targets``, ``row_target``), each of its own
      dtype;
    * elementwise and row ops: the upstream gradient ``g`` has the input's
      shape (``grad_like``), not necessarily its dtype;
    * pointwise losses: inputs share the first input's shape (``same_shape``),
      or broadcast to it (``broadcast_input``); ``g`` has its dtype and
      broadcasts to its shape (0-d for a reduced loss: ``reduce_vjp(...,
      spread=False)``); array parameters (weights) have its dtype, a shape of
      their own, and may be the Python float 1.0 (``optional_array``);
    * class losses: probability or one-hot targets have the input's shape;
      ``g`` (input dtype), per-row targets and per-class weights (input
      dtype, or 1.0) broadcast to it (``reduce_vjp`` and ``expand_dims``,
      ``row_target``, ``class_weight``).

    The kind is read through its traits (:class:`symdl.catalog.spec.KindTraits`):
    ``over_rows`` makes every array at least 1-d, ``loss`` makes ``g`` broadcast
    to the input, ``broadcast_targets``/``class_targets`` say which inputs share
    the input's shape.
    """
    first = op.inputs[0].symbol.name
    traits = op.traits
    vector = traits.over_rows  # a 0-d input is rejected (no reduction axis)
    specs: dict[sp.Symbol, ArraySpec] = {}
    for item in op.inputs:
        name = item.symbol.name
        if name == first or not traits.loss or (traits.broadcast_targets and not item.broadcast) or (
                traits.class_targets and item.role != "sign"):
            specs[item.symbol] = ArraySpec(first, name, vector=vector)
        else:  # a loss's broadcasting target or per-class weight
            specs[item.symbol] = ArraySpec(name, name, within=first, vector=vector)
    # The upstream gradient: the input's shape for a map, broadcasting to it (0-d for a reduced loss) for a loss.
    specs[op.upstream] = (ArraySpec("g", first, within=first, vector=vector) if traits.loss
                          else ArraySpec(first, "g", vector=vector))
    for p in op.params:
        if p.rule.kind == "array" and p.symbol is not None:
            within = first if traits.class_targets else None
            dtype = first if traits.loss else p.name
            specs[p.symbol] = ArraySpec(p.name, dtype, within=within, maybe_float=True)
    return specs


@dataclass(frozen=True)
class Type:
    """Static type of an array value (see the module docstring)."""

    kind: str  # "f" float, "b" bool, "o" unknown
    shape: frozenset
    dtype: frozenset = frozenset()
    #: Computed only from optional weights (maybe the Python float 1.0) and scalars: it may
    #: itself be a Python float, which promotes weakly; a 0-d buffer (np.asarray) would not.
    weak: bool = False

    @property
    def reusable(self) -> bool:
        return self.kind in "fb" and not self.weak


def _join_shapes(*shapes: frozenset) -> frozenset:
    """The shape atoms of a broadcast.

    An atom that broadcasts to others without enlarging them is absorbed by
    them: a row reduction of S (keepdims) by S, an array declared ``within``
    a group by that group.
    """
    atoms = frozenset().union(*shapes)

    def absorbed(a: object) -> bool:
        if isinstance(a, tuple) and a[0] == "row":
            return a[2] <= atoms - {a}
        if isinstance(a, tuple) and a[0] == "within":
            return a[2] in atoms
        return False

    return frozenset(a for a in atoms if not absorbed(a))


# --------------------------------------------------------------------------- values
@dataclass(frozen=True)
class Scalar:
    """A Python-scalar expression, kept as its plain text."""

    text: str

    def negated(self) -> Scalar:
        """``-text`` (exact: IEEE negation only flips the sign)."""
        node = ast.parse(self.text, mode="eval").body
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return Scalar(ast.unparse(node.operand))
        return Scalar(f"-{self.operand(power_base=True)}")

    def operand(self, power_base: bool = False) -> str:
        """The text as an operand of a binary operator (parenthesized where needed)."""
        node = ast.parse(self.text, mode="eval").body
        if isinstance(node, (ast.Name, ast.Attribute, ast.Constant)):
            return self.text
        if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant) and not power_base:
            return self.text
        return f"({self.text})"


@dataclass(eq=False)
class Value:
    """An array value: an input, or the result of one operation."""

    type: Type
    leaf: str | None = None  # the input's name (or the Python name a joined value is bound to)
    op: Op | None = None  # the operation computing it
    vector: bool = False  # at least 1-d: NumPy returns an array for it, never a scalar
    #: The writable input whose array holds it: the input itself, or the value an assignment to it leaves.
    home: str | None = None
    #: A joined value (a branch's result, or what an in-place assignment leaves): the value of each arm.
    sources: tuple[Operand, ...] = ()


Operand = Value | Scalar
#: Keyword argument values: text, or a value whose dtype is meant (``dtype=t0.dtype``).
Keyword = tuple[str, "str | Value"]


@dataclass(eq=False)
class Op:
    """One NumPy operation: ``result = func(*args, **kwargs)``."""

    func: str  # "np.multiply", "np.exp", "np.sum", "np.where", "_rt.sigmoid", or OPAQUE
    args: tuple[Operand, ...]
    kwargs: tuple[Keyword, ...] = ()
    operator: str | None = None  # "*" etc. for ops Python spells as an operator
    commutative: bool = False
    out: bool = True  # accepts out=
    text: str = ""  # OPAQUE: the plain text, operands as \0i\0 placeholders
    block: int = -1  # the assignment (or branch arm) it belongs to
    arm: tuple[int, int] | None = None  # (branch, arm) when it runs only on one arm of a branch
    result: Value = field(init=False)


OPAQUE = "<opaque>"
#: ``result = args[0]`` at the end of an assignment to a joined value: the writable input's array
#: receives it (a copy unless it is already there), or a Python name is bound to it.
BIND = "<bind>"
#: ``args[0] += args[2] * args[1]`` in one pass (the ``axpy=`` function), written into ``args[0]``'s buffer.
AXPY = "<axpy>"


@dataclass(frozen=True)
class Branch:
    """An assignment chosen by Python-scalar conditions: ``if c0: v0 elif c1: v1 ... else: vn``.

    Attributes:
        arms: ``(condition, plain expression)`` pairs in order; a last
            condition ``"True"`` is the ``else``. Each arm is one expression;
            arms never see each other's values.
    """

    arms: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Emitted:
    """What :func:`emit_program` wrote.

    Attributes:
        lines: source lines (branch bodies indented by four spaces).
        scratch: how many preallocated scratch buffers the lines use (``s0, s1, ...``).
        fresh: how many operations allocate a fresh array each time the lines run.
    """

    lines: list[str]
    scratch: int
    fresh: int

# --------------------------------------------------------------------------- operation tables
_BINARY = {
    ast.Add: ("np.add", "+", True),
    ast.Sub: ("np.subtract", "-", False),
    ast.Mult: ("np.multiply", "*", True),
    ast.Div: ("np.divide", "/", False),
    ast.Pow: ("np.power", "**", False),
    ast.BitAnd: ("np.bitwise_and", "&", True),
    ast.BitOr: ("np.bitwise_or", "|", True),
}
_COMPARE = {
    ast.Lt: ("np.less", "<"),
    ast.LtE: ("np.less_equal", "<="),
    ast.Gt: ("np.greater", ">"),
    ast.GtE: ("np.greater_equal", ">="),
    ast.Eq: ("np.equal", "=="),
    ast.NotEq: ("np.not_equal", "!="),
}
_COMPARE_FUNCS = frozenset(f for f, _ in _COMPARE.values())
#: Operators with an augmented assignment (``t0 *= t1``).
_AUGMENTED = frozenset({"+", "-", "*", "/", "**", "&", "|"})
#: Float -> float ufuncs of one argument (same dtype and shape out).
_FLOAT_UNARY = frozenset({
    "np.exp", "np.log", "np.tanh", "np.cosh", "np.sinh", "np.log1p", "np.expm1", "np.abs", "np.sign",
    "np.sqrt", "np.square", "np.negative", "np.reciprocal", "np.sin", "np.cos", "np.arctan", "np.arcsinh",
})
#: Float ufuncs of two arrays: name -> commutative.
_FLOAT_BINARY = {"np.maximum": True, "np.minimum": True}
#: Row reductions (the printer always passes axis= and keepdims=True).
_REDUCTIONS = frozenset({"np.sum", "np.max", "np.min", "_rt.rowsum", "_rt.rowmax"})
#: Runtime primitives: float arrays in, a fresh float array of the promoted dtype out.
PRIMITIVES = frozenset({"_rt.sigmoid", "_rt.softplus", "_rt.normal_cdf", "_rt.x_normal_cdf", "_rt.quotient_at_zero", "_rt.hypot",
                        "_rt.exp_of_square",
                        "_rt.erf", "_rt.erfc", "_rt.xlogy", "_rt.clamped_log", "_rt.clamped_log1p", "_rt.select"})
#: Primitives that take ``out=`` (and allow it to be their argument).
PRIMITIVES_WITH_OUT = frozenset({"_rt.sigmoid", "_rt.softplus", "_rt.clamped_log", "_rt.clamped_log1p",
                                 "_rt.select", "_rt.quotient_at_zero"})
_ARITHMETIC = frozenset({"np.add", "np.subtract", "np.multiply", "np.divide", "np.power", *_FLOAT_BINARY})
#: Ufuncs whose loop is much slower when the output is the input (np.sign: 4x, measured).
_NOT_IN_PLACE = frozenset({"np.sign"})
#: Names that are modules or builtins, not variables.
_MODULES = frozenset({"np", "math", "_rt", "abs", "max", "min"})


def dotted_name(node: ast.expr) -> str:
    """``np.exp`` for the node of ``np.exp`` (a name or attributes of one), else ``""``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted_name(node.value)}.{node.attr}"
    return ""


def _result_type(func: str, args: Sequence[Operand], kwargs: Sequence[Keyword]) -> Type:
    """The static type of ``func(*args)`` (kind "o" when it is not modelled)."""
    arrays = [a for a in args if isinstance(a, Value)]
    shape = _join_shapes(*(a.type.shape for a in arrays))
    kinds = {a.type.kind for a in arrays}
    floats = frozenset().union(*(a.type.dtype for a in arrays if a.type.kind == "f"))
    unknown = Type("o", shape)
    if func in _COMPARE_FUNCS:
        return Type("b", shape)
    if "o" in kinds:
        return unknown
    if func in ("np.invert", "np.logical_not", "np.bitwise_and", "np.bitwise_or"):
        return Type("b", shape) if kinds == {"b"} and len(arrays) == len(args) else unknown
    if func in _REDUCTIONS:
        (value,) = arrays
        if value.type.kind != "f":
            return unknown
        axis = str(dict(kwargs).get("axis", "None"))
        return Type("f", frozenset({("row", axis, value.type.shape)}), value.type.dtype)
    if func == "np.where":
        branches = [a for a in args[1:] if isinstance(a, Value)]
        if not branches or any(b.type.kind != "f" for b in branches):
            return unknown
        return Type("f", shape, frozenset().union(*(b.type.dtype for b in branches)))
    if func in _FLOAT_UNARY or func in _ARITHMETIC or func == "np.clip" or func in PRIMITIVES:
        weak = all(a.type.weak for a in arrays)
        return Type("f", shape, floats, weak) if floats else unknown
    return unknown


# --------------------------------------------------------------------------- lowering
class _Lowering:
    """Parses plain expressions into :class:`Op` lists, sharing identical operations."""

    def __init__(self, scalars: Iterable[str], arrays: Mapping[str, ArraySpec], writable: Iterable[str] = ()) -> None:
        self.scalars = set(scalars) - set(arrays)
        self.writable = frozenset(writable)
        self.maybe_float = {name for name, spec in arrays.items() if spec.maybe_float}
        self.leaves: dict[str, Value] = {}
        for name, spec in arrays.items():
            kind = "o" if spec.dtype is None else "f"
            dtype = frozenset() if spec.dtype is None else frozenset({spec.dtype})
            self.leaves[name] = Value(Type(kind, frozenset({spec.atom}), dtype, spec.maybe_float), leaf=name,
                                      vector=spec.vector, home=name if name in self.writable else None)
        self.bound: dict[str, Operand] = {}  # assignment names computed so far
        self.ops: list[Op] = []
        self.numbering: dict[tuple, Value] = {}
        self.block = 0
        self.opaque_count = itertools.count()
        self.arm: tuple[int, int] | None = None  # the branch arm being lowered
        self.branch_count = itertools.count()
        self.block_home: dict[int, str] = {}  # block -> the writable input it assigns
        self.fresh_name: Callable[[str], str] = lambda name: name

    # -- assignments ---------------------------------------------------------------------
    def assign(self, name: str, value: Operand) -> Operand:
        """Bind ``name``; an assignment to a writable input joins into its array (a one-arm join)."""
        if name in self.writable:
            value = self.join(name, [self.bind_op(value)])
        self.bound[name] = value
        return value

    def branch(self, name: str, arms: Sequence[tuple[str, str]],
               block: Callable[[], int]) -> list[tuple[str, ast.expr, Operand, int]]:
        """Lower each arm of a :class:`Branch` in a block of its own and bind ``name`` to their join.

        Returns ``(condition text, node, arm value, block)`` per arm. Operations of one arm are shared
        with no other arm and with nothing after the branch (they may not have run).
        """
        index = next(self.branch_count)
        saved = dict(self.numbering)
        lowered, binds = [], []
        for k, (condition, text) in enumerate(arms):
            self.numbering = dict(saved)
            self.block, self.arm = block(), (index, k)
            if name in self.writable:
                self.block_home[self.block] = name
            test = ast.parse(condition, mode="eval").body
            if not self.is_scalar(test):
                raise ValueError(f"{name}: branch condition {condition!r} is not a Python scalar")
            node = ast.parse(text, mode="eval").body
            value = self.lower(node)
            lowered.append((self.scalar_text(test), node, value, self.block))
            binds.append(self.bind_op(value))
        self.numbering, self.arm = saved, None
        values = [value for _, _, value, _ in lowered]
        if all(isinstance(v, Scalar) for v in values) and name not in self.writable:
            text = values[-1].text
            for (condition, _, value, _) in reversed(lowered[:-1]):
                text = f"({value.text} if {condition} else {text})"
            self.bound[name] = Scalar(text)
            self.ops = [op for op in self.ops if op not in binds]
            return lowered
        self.bound[name] = self.join(name, binds)
        return lowered

    def bind_op(self, value: Operand) -> Op:
        """The :data:`BIND` operation that ends the current block (its result is set by :meth:`join`)."""
        op = Op(BIND, (value,), out=False, block=self.block, arm=self.arm)
        self.ops.append(op)
        return op

    def join(self, name: str, binds: Sequence[Op]) -> Value:
        """The value ``name`` holds after ``binds`` (one per arm): in its array if writable, else a Python name."""
        values = [op.args[0] for op in binds]
        if any(not isinstance(v, Value) for v in values):
            raise ValueError(f"{name}: an arm is a Python scalar where another is an array")
        types = {v.type for v in values}
        home = name if name in self.writable else None
        ty = types.pop() if len(types) == 1 else Type("o", _join_shapes(*(v.type.shape for v in values)))
        if home is not None and ty != self.leaves[home].type:
            raise ValueError(f"{name} is updated in place with a value of another shape or dtype")
        previous = self.bound.get(name)
        aliased = isinstance(previous, Value) and any(k != name and v is previous for k, v in self.bound.items())
        leaf = home or (self.fresh_name(name) if aliased or name in self.leaves else name)
        value = Value(ty, leaf=leaf, vector=all(v.vector for v in values), home=home, sources=tuple(values))
        for op in binds:
            op.result = value
        return value

    # -- names -------------------------------------------------------------------------
    def name(self, ident: str) -> Operand:
        if ident in self.bound:
            return self.bound[ident]
        if ident in self.leaves:
            return self.leaves[ident]
        if ident in self.scalars:
            return Scalar(ident)
        # Undeclared: an input of unknown shape and dtype, read and never written.
        value = Value(Type("o", frozenset({("input", ident)})), leaf=ident)
        self.leaves[ident] = value
        return value

    def is_scalar(self, node: ast.AST) -> bool:
        """No array names and no NumPy or runtime calls (those return strong NumPy scalars)."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and dotted_name(sub.func).startswith(("np.", "_rt.")):
                return False
            if isinstance(sub, ast.Name) and sub.id not in _MODULES and not isinstance(self.name(sub.id), Scalar):
                return False
        return True

    def scalar_text(self, node: ast.expr) -> str:
        """The text of a scalar expression, scalar temporaries under their new names."""
        bound = self.bound

        class Rename(ast.NodeTransformer):
            def visit_Name(self, sub: ast.Name) -> ast.AST:  # noqa: N802
                value = bound.get(sub.id)
                return ast.Name(id=value.text, ctx=ast.Load()) if isinstance(value, Scalar) else sub

        return ast.unparse(Rename().visit(ast.parse(ast.unparse(node), mode="eval")).body)

    # -- expressions -------------------------------------------------------------------
    def lower(self, node: ast.expr) -> Operand:
        if self.is_scalar(node):
            return Scalar(self.scalar_text(node))
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            # -a + b is b - a exactly (negation is exact): one subtraction instead of a negated copy
            for negated, other in ((node.left, node.right), (node.right, node.left)):
                if (isinstance(negated, ast.UnaryOp) and isinstance(negated.op, ast.USub)
                        and not self.is_scalar(negated)):
                    return self.emit("np.subtract", (self.lower(other), self.lower(negated.operand)), operator="-",
                                     commutative=False)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            func, operator, commutative = _BINARY[type(node.op)]
            left, right = self.lower(node.left), self.lower(node.right)
            if func == "np.multiply" and isinstance(right, Scalar) and right.text in ("1", "1.0"):
                return left  # "x * 1 / y", as a product with a grouped divisor prints: no pass for "* 1"
            if func == "np.power" and isinstance(right, Scalar) and right.text == "2":
                return self.emit("np.square", (left,))  # what ndarray.__pow__ calls for ** 2
            if func == "np.multiply" and (scaled := self.scaled_mask(left, right)) is not None:
                return scaled
            return self.emit(func, (left, right), operator=operator, commutative=commutative)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return self.emit("np.negative", (self.lower(node.operand),), operator="-")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            return self.emit("np.invert", (self.lower(node.operand),), operator="~")
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            func, operator = _COMPARE[type(node.ops[0])]
            return self.emit(func, (self.lower(node.left), self.lower(node.comparators[0])), operator=operator)
        if isinstance(node, ast.Call) and not any(isinstance(a, ast.Starred) for a in node.args):
            return self.call(node)
        return self.opaque(node)

    def call(self, node: ast.Call) -> Operand:
        func = dotted_name(node.func)
        if any(k.arg is None for k in node.keywords):
            return self.opaque(node)
        kwargs = tuple((k.arg, ast.unparse(k.value)) for k in node.keywords)
        if func in _REDUCTIONS and len(node.args) == 1 and dict(kwargs).get("keepdims") == "True":
            return self.emit(func, (self.lower(node.args[0]),), kwargs=kwargs, out=False)
        if kwargs:
            return self.opaque(node)
        args = tuple(self.lower(a) for a in node.args)
        if func in _FLOAT_UNARY and len(args) == 1:
            return self.emit(func, args)
        if func == "np.logical_not" and len(args) == 1 and isinstance(args[0], Value):
            return self.emit(func, args)
        if func in _FLOAT_BINARY and len(args) == 2:
            return self.emit(func, args, commutative=_FLOAT_BINARY[func])
        if func == "np.clip" and len(args) == 3 and all(isinstance(a, Scalar) for a in args[1:]):
            return self.emit(func, args)
        if func == "np.where" and len(args) == 3:
            return self.where(*args)
        if func in PRIMITIVES:
            return self.emit(func, args, out=func in PRIMITIVES_WITH_OUT)
        return self.opaque(node)

    def where(self, cond: Operand, a: Operand, b: Operand) -> Operand:
        """``np.where(cond, a, b)``; ``X * where(cond, k1, k2)`` when a = X k1 and b = X k2.

        Exact: multiplication commutes, X * 1 is X, and the select between the
        Python scalars k1, k2 is computed exactly (:meth:`select_scalars`).
        """
        split_a, split_b = self._factor(a), self._factor(b)
        if (split_a and split_b and split_a[0] is split_b[0] and isinstance(cond, Value)
                and cond.type.kind == "b" and split_a[0].type.kind == "f"
                and split_a[0].leaf not in self.maybe_float):  # its .dtype is used
            common = split_a[0]
            factor = self.select_scalars(cond, split_a[1], split_b[1], like=common)
            return self.emit("np.multiply", (common, factor), operator="*", commutative=True)
        if any(isinstance(branch, Value) and branch.type.kind == "f" for branch in (a, b)):
            # np.where into a dead branch buffer, copying only where the condition holds
            return self.emit("_rt.select", (cond, a, b), type_=_result_type("np.where", (cond, a, b), ()))
        return self.emit("np.where", (cond, a, b), out=False)

    @staticmethod
    def _factor(operand: Operand) -> tuple[Value, Scalar] | None:
        """``operand`` as ``X * k`` with k a Python scalar: (X, k); otherwise (operand, 1)."""
        if not isinstance(operand, Value):
            return None
        op = operand.op
        if op is not None and op.func == "np.multiply" and not op.kwargs:
            left, right = op.args
            if isinstance(left, Value) and isinstance(right, Scalar):
                return left, right
            if isinstance(right, Value) and isinstance(left, Scalar):
                return right, left
        return operand, Scalar("1")

    def scaled_mask(self, left: Operand, right: Operand) -> Value | None:
        """``k * mask`` (a Python scalar times a boolean mask) in the kernel's float dtype, None for any other
        product: NumPy computes it in float64 whatever the inputs' dtype (a bool array has no float kind to
        keep), so a user op's ``a [x > 0] + [x <= 0]`` made float32 gradients float64."""
        mask, k = (left, right) if isinstance(right, Scalar) else (right, left)
        if not (isinstance(mask, Value) and isinstance(k, Scalar) and mask.type.kind == "b"):
            return None
        like = next((v for name, v in self.leaves.items() if v.type.kind == "f" and name not in self.maybe_float),
                    None)
        if like is None:
            return None
        ty = Type("f", mask.type.shape, like.type.dtype)
        return self.emit("np.multiply", (mask, k), kwargs=(("dtype", like),), type_=ty)

    def select_scalars(self, cond: Value, k1: Scalar, k2: Scalar, like: Value) -> Value:
        """``np.where(cond, k1, k2)`` in ``like``'s dtype, as ``cond * k1 + ~cond * k2``.

        Each product is k or a zero (cond is 0 or 1), and adding a zero to a
        finite k gives k: exact, since parameters are checked finite and
        constants are. (Only the sign of a zero k can differ.)
        """
        ty = Type("f", cond.type.shape, like.type.dtype)
        dtype: tuple[Keyword, ...] = (("dtype", like),)
        first = self.emit("np.multiply", (cond, k1), kwargs=dtype, type_=ty)
        inverse = self.emit("np.invert", (cond,), operator="~")
        if k2.text in ("1", "1.0"):
            second: Value = inverse
        else:
            second = self.emit("np.multiply", (inverse, k2), kwargs=dtype, type_=ty)
        return self.emit("np.add", (first, second), operator="+", commutative=True)

    def opaque(self, node: ast.expr) -> Value:
        """An expression this module does not model: computed as printed, never written into."""
        operands: list[Operand] = []
        lowering = self

        class Collect(ast.NodeTransformer):
            def visit_Name(self, sub: ast.Name) -> ast.AST:  # noqa: N802
                if sub.id in _MODULES:
                    return sub
                operands.append(lowering.name(sub.id))
                return ast.Name(id=f"\0{len(operands) - 1}\0", ctx=ast.Load())

        template = ast.unparse(Collect().visit(ast.parse(ast.unparse(node), mode="eval")).body)
        op = Op(OPAQUE, tuple(operands), out=False, text=template)
        return self._append(op, Type("o", frozenset({("opaque", next(self.opaque_count))})))

    # -- emission ------------------------------------------------------------------------
    def emit(self, func: str, args: tuple[Operand, ...], *, kwargs: tuple[Keyword, ...] = (),
             operator: str | None = None, commutative: bool = False, out: bool = True,
             type_: Type | None = None) -> Value:
        def key(item: object) -> object:
            return ("v", id(item)) if isinstance(item, Value) else ("s", getattr(item, "text", item))

        numbered = (func, tuple((k, key(v)) for k, v in kwargs), tuple(key(a) for a in args))
        if numbered in self.numbering:
            return self.numbering[numbered]
        shared = self._negated_product(func, args, kwargs, key)
        if shared is not None:
            return shared
        op = Op(func, args, kwargs, operator, commutative, out)
        value = self._append(op, type_ or _result_type(func, args, kwargs))
        self.numbering[numbered] = value
        return value

    def _negated_product(self, func: str, args: tuple[Operand, ...], kwargs: tuple[Keyword, ...],
                         key: Callable[[object], object]) -> Value | None:
        """``(-a) * b`` as ``-(a * b)`` when ``a * b`` is already computed (also for ``/``).

        Exact: IEEE products and quotients round the magnitude alone, so negating
        an operand negates the result (``grad_target = -g * d`` after ``g * d``).
        """
        if func not in ("np.multiply", "np.divide") or kwargs or len(args) != 2:
            return None
        for i, a in enumerate(args):
            if isinstance(a, Value) and a.op is not None and a.op.func == "np.negative":
                plain = list(args)
                plain[i] = a.op.args[0]
                orders = [plain, plain[::-1]] if func == "np.multiply" else [plain]
                for order in orders:
                    existing = self.numbering.get((func, (), tuple(key(b) for b in order)))
                    if existing is not None:
                        return self.emit("np.negative", (existing,), operator="-")
        return None

    def _append(self, op: Op, ty: Type) -> Value:
        op.block, op.arm = self.block, self.arm
        # Broadcasting keeps at least one dimension; a keepdims reduction keeps its operand's.
        vector = op.func in _REDUCTIONS or any(isinstance(a, Value) and a.vector for a in op.args)
        op.result = Value(ty, op=op, vector=vector and op.func != OPAQUE)
        self.ops.append(op)
        return op.result


def _live_ops(ops: list[Op], live_out: Iterable[Value]) -> list[Op]:
    """``ops`` without those whose result nothing uses (factored-out where branches)."""
    needed = {id(v) for v in live_out}
    kept: list[Op] = []
    for op in reversed(ops):
        if id(op.result) in needed:
            kept.append(op)
            needed |= {id(a) for a in (*op.args, *(v for _, v in op.kwargs)) if isinstance(a, Value)}
    return kept[::-1]


def _schedule(ops: list[Op], live_out: Iterable[Value]) -> list[Op]:
    """Each assignment's operations reordered to need fewer buffers (Sethi-Ullman).

    Within an assignment, an operation's operands are computed in decreasing
    order of the buffers their own computation needs, so that a cheap operand
    (``-y`` in ``-y - f(...)``) is not held while an expensive one is computed.
    Operations are pure, so any order that computes operands first gives the
    same values; each operation itself keeps its operand order.
    """
    deps: dict[int, list[Op]] = {}
    for op in ops:
        operands = (*op.args, *(v for _, v in op.kwargs))
        deps[id(op)] = [a.op for a in operands if isinstance(a, Value) and a.op is not None and a.op.block == op.block]
    need: dict[int, int] = {}
    for op in ops:
        below = sorted((need[id(d)] for d in deps[id(op)]), reverse=True)
        need[id(op)] = max([1, *(n + i for i, n in enumerate(below))])
    used_inside = {id(d) for op in ops for d in deps[id(op)]}
    outside = {id(v.op) for v in live_out if v.op is not None}
    for op in ops:
        for a in (*op.args, *(v for _, v in op.kwargs)):
            if isinstance(a, Value) and a.op is not None and a.op.block != op.block:
                outside.add(id(a.op))
    order: list[Op] = []
    seen: set[int] = set()

    def visit(op: Op) -> None:
        if id(op) in seen:
            return
        seen.add(id(op))
        for d in sorted(deps[id(op)], key=lambda d: -need[id(d)]):  # stable: ties keep operand order
            visit(d)
        order.append(op)

    blocks: dict[int, list[Op]] = {}
    for op in ops:
        blocks.setdefault(op.block, []).append(op)
    for members in blocks.values():
        for op in members:
            if id(op) in outside or id(op) not in used_inside:
                visit(op)
        for op in members:
            visit(op)
    return order


# --------------------------------------------------------------------------- liveness
def _operands(op: Op) -> tuple[Operand | str, ...]:
    return (*op.args, *(v for _, v in op.kwargs))


class _Liveness:
    """Where each value is read, and whether it can still be read after a given operation.

    Operations on different arms of one branch never both run: a read on a
    later arm does not keep a value alive on an earlier one. A joined value
    without a writable home is a Python name for its arms' values, so they
    are read wherever it is.
    """

    def __init__(self, ops: Sequence[Op], live_out: Iterable[Value]) -> None:
        self.arms = [op.arm for op in ops]
        self.uses: dict[int, list[int]] = {}
        for index, op in enumerate(ops):
            for a in _operands(op):
                if isinstance(a, Value):
                    self.uses.setdefault(id(a), []).append(index)
        for v in live_out:
            self.uses.setdefault(id(v), []).append(len(ops))
        joins = list({id(op.result): op.result for op in ops if op.func == BIND and op.result.home is None}.values())
        for join in reversed(joins):  # a later join may hold an earlier one
            for source in join.sources:
                self.uses.setdefault(id(source), []).extend(self.uses.get(id(join), ()))

    def _reachable(self, index: int, use: int) -> bool:
        """Whether the read at ``use`` can run after the operation at ``index``."""
        here = self.arms[index] if index < len(self.arms) else None
        there = self.arms[use] if use < len(self.arms) else None
        return use > index and not (here and there and here[0] == there[0] and here[1] != there[1])

    def dies(self, value: object, index: int) -> bool:
        """Read by the operation at ``index`` and by nothing that can run after it."""
        uses = self.uses.get(id(value), ())
        return index in uses and not any(self._reachable(index, u) for u in uses)

    def dead_after(self, value: object, index: int) -> bool:
        """Read by nothing that can run after the operation at ``index``."""
        return not any(self._reachable(index, u) for u in self.uses.get(id(value), ()))

    def read_after(self, value: object, index: int) -> bool:
        """Read by an operation after ``index`` on any path (the join of a branch ending at ``index``)."""
        return any(u > index for u in self.uses.get(id(value), ()))


def _home_results(ops: Sequence[Op]) -> dict[int, str]:
    """Results of the operation that ends an assignment to a writable input: written into its array where possible."""
    return {id(op.args[0]): op.result.home for op in ops
            if op.func == BIND and op.result.home and isinstance(op.args[0], Value)
            and op.args[0].op is not None and op.args[0].op.block == op.block}


def _owned(value: object, block: int, block_home: Mapping[int, str], home_results: Mapping[int, str]) -> bool:
    """May be overwritten by an operation of ``block`` once dead: allocated by the generated code, or a
    writable input's array when ``block`` assigns that input."""
    if not isinstance(value, Value):
        return False
    if value.home is not None:
        return block_home.get(block) == value.home
    if id(value) in home_results and value.op is not None and value.op.block != block:
        return False  # it may be in its home, which belongs to the value joined from it
    return value.op is not None and value.type.reusable


def _fuse_axpy(ops: list[Op], live_out: Sequence[Value], block_home: Mapping[int, str]) -> list[Op]:
    """``x + c * a`` and ``x - c * a`` as one :data:`AXPY` pass into ``x``'s buffer.

    Only where ``x`` dies there and may be written by that assignment, ``c * a``
    (``c`` a Python scalar, ``a`` of the result's type) is read nowhere else, and
    the product is of the same assignment. The product is then never formed.
    """
    liveness = _Liveness(ops, live_out)
    home_results = _home_results(ops)
    replaced: dict[int, Op] = {}
    dropped: set[int] = set()
    for index, op in enumerate(ops):
        if op.func not in ("np.add", "np.subtract") or op.kwargs or op.result.type.kind != "f":
            continue
        # x is the first operand, or (commutative) the second, except in an assignment's in-place result:
        # there the first operand is the one that reads the array (x + c * a, not c * x + a into a buffer)
        swaps = 2 if op.commutative and id(op.result) not in home_results else 1
        for x, product in ((op.args[0], op.args[1]), (op.args[1], op.args[0]))[:swaps]:
            scaled = _scaled(product, op)
            if (scaled is None or not isinstance(x, Value) or x.type != op.result.type
                    or liveness.uses.get(id(product)) != [index] or not liveness.dies(x, index)
                    or not _owned(x, op.block, block_home, home_results)):
                continue
            array, coefficient = scaled
            if op.func == "np.subtract":
                coefficient = coefficient.negated()
            fused = Op(AXPY, (x, array, coefficient), block=op.block, arm=op.arm)
            fused.result = op.result
            op.result.op = fused
            replaced[id(op)] = fused
            dropped.add(id(product.op))
            break
    return [replaced.get(id(op), op) for op in ops if id(op) not in dropped]


def _scaled(product: Operand, user: Op) -> tuple[Value, Scalar] | None:
    """``(a, c)`` when ``product`` is ``a * c`` (or ``c * a``) of ``user``'s assignment, ``a`` of its type."""
    if not isinstance(product, Value) or product.op is None:
        return None
    op = product.op
    if op.func != "np.multiply" or op.kwargs or op.block != user.block:
        return None
    for array, scalar in (op.args, op.args[::-1]):
        if isinstance(array, Value) and isinstance(scalar, Scalar) and array.type == user.result.type:
            return array, scalar
    return None


# --------------------------------------------------------------------------- allocation
@dataclass
class _Step:
    op: Op
    target: str  # buffer written
    # form: "new" (a fresh array), "aug" (augmented assignment), "out" (out= argument), "axpy", or
    # "maybe": a new name for the result, written into `into` if the result has its dtype at run time;
    # BIND: "keep" (already in its home), "copy" (np.copyto into its home), "bind" (a Python name)
    form: str
    swapped: bool = False  # aug on the second operand of a commutative op
    into: str = ""
    dtypes: tuple[Value, ...] = ()  # "maybe": the operands besides `into` that decide the result's dtype


class _Allocator:
    """Assigns each operation a buffer: a dying operand of its type, a dead buffer, or a new one.

    A writable input's array (its *home*) receives only the values of the
    assignments to it, once the value it holds is dead; the result of such an
    assignment goes there directly where it can. New buffers of the scratch
    type are preallocated scratch buffers. Across a branch, each arm starts
    from the buffers free before it (plus those only earlier arms used), and
    after it a buffer is free if it is free at the end of every arm.
    """

    def __init__(self, ops: list[Op], live_out: Iterable[Value], reserved: set[str], prefix: str, *,
                 homes: Mapping[str, Value] | None = None, block_home: Mapping[int, str] | None = None,
                 scratch: Type | None = None, scratch_prefix: str = "s") -> None:
        self.ops = ops
        self.liveness = _Liveness(ops, live_out)
        self.reserved = reserved
        self.letters = {"f": prefix, "b": "m", "o": "v", "s": scratch_prefix}
        self.counters = {kind: itertools.count() for kind in self.letters}
        self.buffer: dict[int, str] = {}  # value id -> buffer name
        self.type_of: dict[str, Type] = {}
        self.free: list[str] = []  # dead buffers, in order of death
        self.consumed: set[str] = set()  # buffers a "maybe" step may have handed on
        self.held: dict[str, list[Value]] = {}  # buffer -> the values placed in it
        self.scratch = scratch
        self.scratch_names: list[str] = []
        self.block_home = dict(block_home or {})
        self.occupant: dict[str, Value] = dict(homes or {})  # home -> the value its array holds
        for name, leaf in self.occupant.items():
            self.buffer[id(leaf)] = name
        self.home_of = _home_results(ops)
        self.arm: tuple[int, int] | None = None
        self.before: tuple[list[str], dict[str, Value], set[str]] = ([], {}, set())
        self.ends: list[tuple[list[str], set[str]]] = []

    def new_name(self, kind: str) -> str:
        while True:
            name = f"{self.letters[kind]}{next(self.counters[kind])}"
            if name not in self.reserved:
                return name

    def owned(self, value: object, block: int) -> bool:
        return _owned(value, block, self.block_home, self.home_of)

    def run(self) -> list[_Step]:
        steps = []
        for index, op in enumerate(self.ops):
            self.enter(op.arm, index)
            steps.append(self.place(op, index))
            self.release(op, index)
        self.enter(None, len(self.ops))
        return steps

    # -- branches ----------------------------------------------------------------------
    def enter(self, arm: tuple[int, int] | None, index: int) -> None:
        """Switch the free buffers and homes' values when the next operation is on another arm."""
        if arm == self.arm:
            return
        if self.arm is not None:
            self.ends.append((list(self.free), set(self.type_of)))
            if arm is None or arm[0] != self.arm[0]:
                self.join(index - 1)
        if arm is not None:
            if self.arm is None or arm[0] != self.arm[0]:
                self.before, self.ends = (list(self.free), dict(self.occupant), set(self.type_of)), []
            free, occupant, known = self.before
            # an earlier arm did not run: its scratch buffers are free (its fresh arrays do not exist)
            created = [n for n in self.scratch_names if n not in known and n not in self.consumed]
            self.free = free + [n for n in created if n not in free]
            self.occupant = dict(occupant)
        self.arm = arm

    def join(self, last: int) -> None:
        """The free buffers after a branch whose last operation is at ``last``."""
        final, _ = self.ends[-1]
        # a fresh array made on an arm exists only if that arm ran: never written after the branch
        self.consumed |= {n for n in self.type_of if n not in self.before[2] and n not in self.scratch_names}
        free = [n for n in final if all(n in f or n not in known for f, known in self.ends[:-1])
                and n not in self.consumed]
        for name in self.type_of:
            if name not in free and name not in self.consumed and not any(
                    self.liveness.read_after(v, last) for v in self.held.get(name, ())):
                free.append(name)
        self.free = free

    # -- placement -------------------------------------------------------------------------
    def place(self, op: Op, index: int) -> _Step:
        if op.func == BIND:
            return self.place_bind(op, index)
        if op.func == AXPY:
            return self.bind(op, self.buffer[id(op.args[0])], "axpy")
        ty = op.result.type
        home = self.home_for(op, index)
        if op.func == "np.power":
            # Only as Python spells it (a ** k, a **= k): NumPy's fast paths (k = 2: np.square) apply
            # there and not to np.power(a, k, out=b); a general float power is 100x slower.
            first = op.args[0]
            if self.owned(first, op.block) and self.liveness.dies(first, index) and first.type == ty:
                return self.bind(op, self.buffer[id(first)], "aug")
            return self.fresh(op)
        if op.out and ty.reusable:
            augmentable = op.operator in _AUGMENTED and len(op.args) == 2 and not op.kwargs
            if home is not None:
                return self.into(op, home, augmentable)
            dying = [a for a in op.args
                     if self.owned(a, op.block) and self.liveness.dies(a, index) and a.type == ty]
            if op.func in _NOT_IN_PLACE:
                dying = []
            if dying:
                first = op.args[0]
                if any(first is d for d in dying):
                    return self.bind(op, self.buffer[id(first)], "aug" if augmentable else "out")
                if op.commutative and augmentable:
                    return self.bind(op, self.buffer[id(op.args[1])], "aug", swapped=True)
                return self.bind(op, self.buffer[id(dying[0])], "out")
            for name in self.free:
                if self.type_of[name] == ty:
                    self.free.remove(name)
                    return self.bind(op, name, "out")
            step = self.maybe_in_place(op, index)
            if step is not None:
                return step
        return self.fresh(op)

    def fresh(self, op: Op) -> _Step:
        """A new buffer: a scratch buffer (written through ``out=``) if the result has the scratch type."""
        ty = op.result.type
        if self.scratch is not None and ty == self.scratch and (op.out or op.func == "np.power"):
            name = self.new_name("s")
            self.scratch_names.append(name)
            self.type_of[name] = ty
            return self.bind(op, name, "out")
        name = self.new_name(ty.kind if ty.reusable else "o")
        self.type_of[name] = ty
        return self.bind(op, name, "new")

    def home_for(self, op: Op, index: int) -> str | None:
        """The home ``op``'s result is the assignment's value for, when the value the home holds is dead."""
        home = self.home_of.get(id(op.result))
        if home is None or op.result.type != self.occupant[home].type or op.func in _NOT_IN_PLACE:
            return None
        return home if self.liveness.dead_after(self.occupant[home], index) else None

    def into(self, op: Op, home: str, augmentable: bool) -> _Step:
        """``op`` written into ``home`` (augmented when an operand is the home's dying value)."""
        first = op.args[0]
        if augmentable and isinstance(first, Value) and self.buffer.get(id(first)) == home:
            return self.bind(op, home, "aug")
        second = op.args[-1]
        if augmentable and op.commutative and isinstance(second, Value) and self.buffer.get(id(second)) == home:
            return self.bind(op, home, "aug", swapped=True)
        return self.bind(op, home, "out")

    def place_bind(self, op: Op, index: int) -> _Step:
        source, value = op.args[0], op.result
        if value.home is None:
            self.buffer[id(value)] = value.leaf
            return _Step(op, value.leaf, "bind")
        home = value.home
        if isinstance(source, Value) and self.buffer.get(id(source)) == home:
            form = "keep"
        elif self.liveness.dead_after(self.occupant[home], index):
            form = "copy"
        else:
            raise ValueError(f"{home} is updated in place while its old value is still read")
        self.occupant[home] = value
        self.buffer[id(value)] = home
        return _Step(op, home, form)

    def maybe_in_place(self, op: Op, index: int) -> _Step | None:
        """A buffer of the right shape but another dtype group, used when the dtypes agree at run time.

        ``g * t0`` (t0 computed from x) into t0, or ``-y`` into a dead buffer
        computed from x: the usual case, since inputs rarely differ in dtype.
        Otherwise the operation allocates, and the buffer is not used again.
        """
        ty = op.result.type
        arrays = [a for a in op.args if isinstance(a, Value)]
        if ty.kind != "f" or op.kwargs or not arrays or op.func in _NOT_IN_PLACE:
            return None

        def fits(t: Type) -> bool:
            return t.kind == "f" and t.shape == ty.shape

        dying = [a for a in arrays if self.owned(a, op.block) and self.liveness.dies(a, index) and fits(a.type)]
        free = [n for n in self.free if fits(self.type_of[n])]
        if not dying and not free:
            return None
        into = self.buffer[id(dying[0])] if dying else free[0]
        others = tuple(a for a in arrays if a.type.kind == "f" and not (a.op is not None and self.buffer[id(a)] == into))
        if not others:  # cannot happen: the result's dtype would be the buffer's
            return None
        if not dying:
            self.free.remove(into)
        name = self.new_name("f")
        self.type_of[name] = ty
        self.consumed.add(into)
        step = self.bind(op, name, "maybe")
        step.into, step.dtypes = into, others
        return step

    def bind(self, op: Op, name: str, form: str, swapped: bool = False) -> _Step:
        self.buffer[id(op.result)] = name
        self.held.setdefault(name, []).append(op.result)
        if name in self.occupant:
            self.occupant[name] = op.result
        return _Step(op, name, form, swapped)

    def release(self, op: Op, index: int) -> None:
        target = self.buffer[id(op.result)]
        operands = _operands(op)
        if op.func == OPAQUE:  # its result may be a view of an operand (np.squeeze): keep them intact
            self.consumed |= {self.buffer[id(a)] for a in operands if self.owned(a, op.block)}
        for a in {id(a): a for a in operands if isinstance(a, Value)}.values():
            if not self.liveness.dies(a, index):
                continue
            for held in _holders(a):
                name = self.buffer.get(id(held))
                if (held.op is not None and held.type.reusable and name in self.type_of and name != target
                        and name not in self.free and name not in self.consumed
                        and self.liveness.dead_after(held, index)):
                    self.free.append(name)


def _holders(value: Value) -> Iterator[Value]:
    """``value`` and, for a Python name joined from arms, the values it may name."""
    yield value
    if value.home is None:
        for source in value.sources:
            if isinstance(source, Value):
                yield from _holders(source)


# --------------------------------------------------------------------------- rendering
class _Renderer:
    def __init__(self, steps: list[_Step], buffer: Mapping[int, str], maybe_float: Iterable[str],
                 axpy: str | None = None) -> None:
        self.buffer = buffer
        self.maybe_float = frozenset(maybe_float)
        self.axpy = axpy
        # A buffer written through out= must be an ndarray, not a NumPy scalar (0-d inputs).
        self.needs_array = {s.target for s in steps if s.form == "out"} | {s.into for s in steps if s.form == "maybe"}

    def text(self, operand: Operand) -> str:
        if isinstance(operand, Scalar):
            return operand.text
        if operand.leaf is not None:
            return operand.leaf
        return self.buffer[id(operand)]

    def operand(self, operand: Operand, power_base: bool = False) -> str:
        if isinstance(operand, Scalar):
            return operand.operand(power_base)
        return self.text(operand)

    def line(self, step: _Step) -> str | None:
        """The statement for ``step`` (None when it needs none: a value already where it must be)."""
        op = step.op
        args = [self.text(a) for a in op.args]
        kwargs = [f"{k}={self.text(v)}.dtype" if isinstance(v, Value) else f"{k}={v}" for k, v in op.kwargs]
        if op.func == BIND:
            if step.form == "copy":
                return f"np.copyto({step.target}, {args[0]})"
            return f"{step.target} = {args[0]}" if step.form == "bind" and args[0] != step.target else None
        if op.func == AXPY:
            return f"{self.axpy}({op.args[2].text}, {args[1]}, {step.target})"
        if op.func == OPAQUE:
            expr = op.text
            for i, a in enumerate(args):
                expr = expr.replace(f"\0{i}\0", a)
            return f"{step.target} = {expr}"
        if step.form == "aug":
            return f"{step.target} {op.operator}= {args[0] if step.swapped else args[1]}"
        if step.form == "out":
            return f"{op.func}({', '.join([*args, *kwargs, f'out={step.target}'])})"
        if step.form == "maybe":
            names = list(dict.fromkeys(self.text(v) for v in step.dtypes))
            if len(names) == 1 and names[0] not in self.maybe_float:
                same = f"{names[0]}.dtype == {step.into}.dtype"
            else:
                same = f"np.result_type({', '.join(names)}) == {step.into}.dtype"
            expr = f"{op.func}({', '.join(args)}, out={step.into} if {same} else None)"
            if step.target in self.needs_array and not op.result.vector:
                expr = f"np.asarray({expr})"  # a fresh result of 0-d operands is a scalar
            return f"{step.target} = {expr}"
        if op.operator and not kwargs and len(op.args) == 1:
            expr = f"{op.operator}{self.operand(op.args[0], power_base=True)}"
        elif op.operator and not kwargs:
            left = self.operand(op.args[0], power_base=op.operator == "**")
            expr = f"{left} {op.operator} {self.operand(op.args[1])}"
        else:
            expr = f"{op.func}({', '.join(args + kwargs)})"
        if step.target in self.needs_array and not op.result.vector and op.func != "np.where":
            expr = f"np.asarray({expr})"
        return f"{step.target} = {expr}"


# --------------------------------------------------------------------------- entry point
Assignment = tuple[str, "str | Branch"]


def emit_inplace(assignments: Sequence[Assignment], outputs: Sequence[str], **options: Any) -> list[str]:
    """:func:`emit_program`'s lines (same arguments; the kernels pass no writable inputs and no scratch)."""
    return emit_program(assignments, outputs, **options).lines


@dataclass
class _Statement:
    """One assignment: its arms (one, with condition None, for a plain assignment) and its value."""

    name: str
    arms: list[tuple[str | None, ast.expr, Operand, int]]
    value: Operand
    branch: bool = False


def emit_program(
    assignments: Sequence[Assignment],
    outputs: Sequence[str],
    *,
    scalars: Iterable[str] = (),
    arrays: Mapping[str, ArraySpec] | None = None,
    prefix: str = "t",
    comments: bool = True,
    writable: Iterable[str] = (),
    scratch_like: str | None = None,
    scratch_prefix: str = "s",
    axpy: str | None = None,
) -> Emitted:
    """In-place code for plain assignments.

    Args:
        assignments: ``(name, plain expression)`` in order, or ``(name,
            Branch)`` for a value chosen by Python-scalar conditions; later
            expressions may use earlier names. Names not in ``outputs`` (nor
            ``writable``) are temporaries and do not survive (they are renamed).
        outputs: names the code must leave bound, each to a fresh array that
            aliases no input and no other output (or to a Python scalar).
        scalars: names that are Python scalars (parameters).
        arrays: input arrays the emitter may type (see :class:`ArraySpec`);
            any other name is an input of unknown type, never written.
        prefix: first letter of float buffers (bool masks are ``m0, m1, ...``,
            scalar temporaries ``s0, s1, ...``).
        comments: precede each assignment that takes several lines by its
            plain form (temporaries renamed).
        writable: inputs (of ``arrays``, with a dtype) updated in place: after
            each assignment to one, its array holds the assigned value, and the
            array receives intermediate values of those assignments once the
            value it holds is dead. They need not be in ``outputs``.
        scratch_like: an input whose shape and dtype the preallocated scratch
            buffers have: results of that type go into them (``scratch_prefix``
            and a number) instead of fresh arrays.
        axpy: the name of a function ``axpy(c, a, y)`` computing ``y += c * a``
            in one pass; when given, ``x + c * a`` into a dying ``x`` uses it.

    Returns:
        The source lines, one statement each (deterministic in the arguments),
        and how many scratch buffers and fresh allocations they use.
    """
    arrays = dict(arrays or {})
    writable = tuple(writable)
    for name in writable:
        if name not in arrays or arrays[name].dtype is None or arrays[name].maybe_float:
            raise ValueError(f"writable input {name!r} must be a float array declared in arrays")
    lowering = _Lowering(scalars, arrays, writable)
    taken = set(outputs) | set(scalars) | set(arrays)
    for _, text in assignments:
        for piece in ([text] if isinstance(text, str) else [t for arm in text.arms for t in arm]):
            taken |= {n.id for n in ast.walk(ast.parse(piece, mode="eval")) if isinstance(n, ast.Name)}
    temporaries = {name for name, _ in assignments if name not in outputs and name not in writable}

    def fresh_name(name: str) -> str:
        alias = next(f"{name}_{i}" for i in itertools.count() if f"{name}_{i}" not in taken)
        taken.add(alias)
        return alias

    lowering.fresh_name = fresh_name
    blocks = itertools.count()
    scalar_names = (f"s{i}" for i in itertools.count())
    statements: list[_Statement] = []
    for name, text in assignments:
        if isinstance(text, Branch):
            arms = lowering.branch(name, text.arms, lambda: next(blocks))
            value = lowering.bound[name]
            if not isinstance(value, Scalar):
                statements.append(_Statement(name, list(arms), value, branch=True))
                continue
            node = ast.parse(value.text, mode="eval").body  # between Python scalars: one conditional expression
        else:
            lowering.block = next(blocks)
            if name in writable:
                lowering.block_home[lowering.block] = name
            node = ast.parse(text, mode="eval").body
            value = lowering.lower(node)
        if isinstance(value, Scalar):
            if name in writable:
                raise ValueError(f"{name} is a writable array; {text!r} is a Python scalar")
            if name not in outputs:
                alias = next(n for n in scalar_names if n not in taken)
                taken.add(alias)
                lowering.scalars.add(alias)
                lowering.bound[name] = Scalar(alias)
                statements.append(_Statement(alias, [(None, node, value, lowering.block)], value))
                continue
            lowering.bound[name] = Scalar(name)  # later expressions read the name, not the text again
            statements.append(_Statement(name, [(None, node, value, lowering.block)], value))
            continue
        statements.append(_Statement(name, [(None, node, value, lowering.block)], lowering.assign(name, value)))

    homes = {name: lowering.leaves[name] for name in writable}
    live_out = [lowering.bound[n] for n in outputs if isinstance(lowering.bound[n], Value)]
    live_out += [lowering.bound[n] for n in writable if n in lowering.bound and n not in outputs]
    ops = _schedule(_live_ops(lowering.ops, live_out), live_out)
    if axpy is not None:
        ops = _fuse_axpy(ops, live_out, lowering.block_home)
    reserved = taken - temporaries
    scratch = None if scratch_like is None else lowering.leaves[scratch_like].type
    allocator = _Allocator(ops, live_out, reserved, prefix, homes=homes, block_home=lowering.block_home,
                           scratch=scratch, scratch_prefix=scratch_prefix)
    steps = allocator.run()
    renderer = _Renderer(steps, allocator.buffer, (n for n, spec in arrays.items() if spec.maybe_float), axpy)
    plain = {name: text for name, text in assignments if isinstance(text, str)}
    lines = _render(statements, steps, renderer, lowering, plain, outputs, writable, comments)
    return Emitted(lines, len(allocator.scratch_names), sum(1 for s in steps if s.form in ("new", "maybe")))


def _render(statements: Sequence[_Statement], steps: Sequence[_Step], renderer: _Renderer, lowering: _Lowering,
            plain: Mapping[str, str], outputs: Sequence[str], writable: Sequence[str], comments: bool) -> list[str]:
    """Each statement's lines: its steps (in branches, per arm), then its output's binding."""
    by_block: dict[int, list[_Step]] = {}
    for step in steps:
        by_block.setdefault(step.op.block, []).append(step)
    lines: list[str] = []
    bound: set[str] = set()
    for statement in statements:
        name, value = statement.name, statement.value
        if isinstance(value, Scalar):
            lines.append(f"{name} = {value.text}")
            continue
        bodies = []
        for _, node, arm_value, block in statement.arms:
            mine = by_block.get(block, [])
            body = [line for line in (renderer.line(step) for step in mine) if line is not None]
            if comments and len(body) >= 2:
                where = name if name in outputs or name in writable else renderer.text(arm_value)
                body.insert(0, f"# {where} = {_comment(node, lowering, renderer, block, plain)}")
            bodies.append(body)
        if not statement.branch:
            lines.extend(bodies[0])
        else:
            lines.extend(_branch_lines([c for c, _, _, _ in statement.arms], bodies))
        if name in outputs and name not in writable:
            lines.append(f"{name} = {_output(value, renderer, bound)}")
    return lines


def _branch_lines(conditions: Sequence[str], bodies: Sequence[list[str]]) -> list[str]:
    """``if``/``elif``/``else`` around the arms' lines; a trailing empty ``else`` and an all-empty branch dropped."""
    arms = list(zip(conditions, bodies, strict=True))
    if arms and arms[-1][0] == "True" and not arms[-1][1]:
        arms.pop()
    if not any(body for _, body in arms):
        return []
    lines = []
    for k, (condition, body) in enumerate(arms):
        if condition == "True" and k == len(arms) - 1 and k > 0:
            lines.append("else:")
        else:
            lines.append(f"{'if' if k == 0 else 'elif'} {condition}:")
        lines.extend(f"    {line}" for line in body or ["pass"])
    return lines


def _output(value: Operand, renderer: _Renderer, bound: set[str]) -> str:
    """What an output is bound to: its buffer, or a copy where that would alias."""
    if isinstance(value, Scalar):
        return value.text
    text = renderer.text(value)
    if value.type.kind == "o":
        return text  # not modelled: as the plain form has it
    aliases = value.op is None or text in bound
    bound.add(text)
    if not aliases:
        return text
    return f"np.copy({text})" if value.leaf in renderer.maybe_float else f"{text}.copy()"


def _comment(node: ast.expr, lowering: _Lowering, renderer: _Renderer, block: int,
             plain: Mapping[str, str]) -> str:
    """The plain expression, each earlier assignment renamed to where its value is now.

    An earlier value that has no buffer was never computed on its own (every use was rewritten, as
    ``t3 * (-t4)`` into ``-(t3 * t4)``): its own plain expression stands in for its name.
    """

    class Rename(ast.NodeTransformer):
        def visit_Name(self, sub: ast.Name) -> ast.AST:  # noqa: N802
            operand = lowering.bound.get(sub.id)
            if isinstance(operand, Scalar):
                return ast.Name(id=operand.text, ctx=ast.Load())
            if isinstance(operand, Value) and operand.op is not None and operand.op.block < block:
                if id(operand) not in renderer.buffer:
                    return self.visit(ast.parse(plain[sub.id], mode="eval").body)
                return ast.Name(id=renderer.text(operand), ctx=ast.Load())
            return sub

    return ast.unparse(Rename().visit(ast.parse(ast.unparse(node), mode="eval")).body)
