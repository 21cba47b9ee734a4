r"""Backpropagation on a computational graph, CS231n style: forward values, upstream times local gradients.

An expression (``(x + y) * z``, parsed from its syntax tree through the whitelist of
:func:`symdl.check.syntax.validate`, never ``eval``) or a Python function written as assignments
(``FILE.py:f``; the file is parsed, not run) is decomposed into named nodes, one per operation: the
function's own names for its assignments, ``q1``, ``q2``, ... for inner operations, ``f`` for the output.
Identical subexpressions are one node.

* **Forward**: each node's value at the point (``--at x=-2,y=5,z=-4``), at 30 significant digits.
* **Backward**: from :math:`\partial f / \partial f = 1`, in reverse order, each node's upstream gradient
  times the local derivative of the node with respect to each operand gives that operand's contribution.
  Each local derivative is a derivation of the step engine (:func:`symdl.steps.api.derive_expression`),
  every step verified; its root rule (``product``, ``exp``, ``chain``, ...) is shown per row;
  where a value feeds several nodes (a fork) its contributions add. Gates are named as CS231n names them:
  an add gate distributes the upstream gradient, a multiply gate swaps its inputs, a max gate routes it to
  the larger input.
* **Checks**: each input's gradient is the product-sum of symbolic local derivatives; it is proven equal to
  SymPy's derivative of the whole expression (:func:`symdl.steps.verify.verify_claim`: expand, bounded
  simplify or 50-digit numeric identity) and compared with a central finite difference at the point.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp

from symdl.check.errors import ExpressionError
from symdl.check.syntax import CONSTANTS, validate
from symdl.errors import SymdlError
from symdl.steps import budget
from symdl.steps.exprtext import reading_text
from symdl.steps.tree import Derivation

__all__ = ["GraphError", "GraphNode", "BackwardRow", "GraphDerivation", "derive_graph", "parse_point", "GATES"]

DIGITS = 30
MAX_NODES = 200
FD_STEP = sp.Float("1e-12", DIGITS)
FD_TOLERANCE = 1e-8


class GraphError(SymdlError, ValueError):
    """A graph request is malformed: the expression, the function file or the point (named)."""


#: CS231n's gate patterns, by operation: what the gate does to the upstream gradient.
GATES: dict[str, str] = {
    "add": "add gate: distributes the upstream gradient unchanged to every input",
    "sub": "add gate: distributes the upstream gradient (negated for the subtracted input)",
    "mul": "multiply gate: swaps: each input gets the upstream gradient times the other input",
    "max": "max gate: routes the upstream gradient to the larger input (the others get 0)",
    "min": "min gate: routes the upstream gradient to the smaller input (the others get 0)",
}

_OPS: dict[type, tuple[str, str]] = {ast.Add: ("add", "+"), ast.Sub: ("sub", "-"), ast.Mult: ("mul", "*"),
                                     ast.Div: ("div", "/"), ast.Pow: ("pow", "**")}


@dataclass(frozen=True)
class GraphNode:
    """A node: an input or one operation on earlier nodes and numbers.

    Attributes:
        name: the node's name.
        op: ``input``, ``add``, ``sub``, ``mul``, ``div``, ``pow``, ``neg`` or a function name (``exp``, ``max``).
        operands: the operand nodes' names, in position order (numbers are in ``local``).
        local: the operation as a SymPy expression of the positional symbols ``_a0``, ``_a1``, ...
        definition: the operation as text, with the operands' names.
    """

    name: str
    op: str
    operands: tuple[str, ...]
    local: sp.Expr
    definition: str
    slots: tuple[int, ...] = ()


@dataclass(frozen=True)
class BackwardRow:
    """One edge of the backward pass: ``node`` sends ``contribution = local * upstream`` to ``operand``."""

    node: str
    operand: str
    local: str
    local_value: float
    upstream: float
    contribution: float
    gate: str
    #: The step engine's rule at the root of the local derivation (``product``, ``exp``, ``chain``, ...).
    rule: str = ""
    #: The local derivative as a verified step-by-step derivation (:class:`symdl.steps.tree.Derivation`).
    derivation: Derivation | None = None

    @property
    def rule_words(self) -> str:
        """The rule as a reader names it: ``product rule``, ``sigmoid rule``."""
        return f"{self.rule.replace('_', ' ')} rule" if self.rule else ""

    @property
    def verified(self) -> bool:
        """The step engine verified every step of the local derivative."""
        return self.derivation is not None and self.derivation.verified

    @property
    def method(self) -> str:
        """How the root step was verified (``expand``, ``numeric``, ...)."""
        if self.derivation is None or self.derivation.parts[0].tree is None:
            return "?"
        check = self.derivation.check(self.derivation.parts[0].tree)
        return check.method if check is not None else "unchecked"


@dataclass
class GraphDerivation:
    """A computational graph with its forward and backward passes and checks."""

    text: str
    inputs: tuple[str, ...]
    point: dict[str, float]
    nodes: list[GraphNode]
    values: dict[str, float]
    rows: list[BackwardRow]
    grads: dict[str, float]
    forks: dict[str, list[float]]
    symbolic: dict[str, sp.Expr]
    proofs: dict[str, object]
    finite_differences: dict[str, tuple[float, bool]]
    expression: sp.Expr
    notes: list[str] = field(default_factory=list)
    #: Inputs at a kink: their one-sided derivatives (left, right); the gradient must lie between them.
    kinks: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.nodes[-1].name

    @property
    def value(self) -> float:
        return self.values[self.output]

    @property
    def gradients(self) -> dict[str, float]:
        """d f / d input for every input."""
        return {name: self.grads.get(name, 0.0) for name in self.inputs}

    @property
    def verified(self) -> bool:
        """Every local derivative verified by the step engine, every gradient proven and finite-difference checked."""
        return all(getattr(p, "ok", False) for p in self.proofs.values()) and \
            all(ok for _, ok in self.finite_differences.values()) and all(r.verified for r in self.rows)

    def render(self, fmt: str = "text", picture: str | None = None) -> str:
        """The derivation in ``fmt`` (text, latex, markdown, html, json); ``picture``: a file LaTeX includes."""
        from symdl.steps.graph_printers import render

        return render(self, fmt, picture)

    def _repr_html_(self) -> str:  # Jupyter: the tables and the picture (the page's body)
        page = self.render("html")
        return page[page.index("<body>") + 6:page.index("</body>")]


# ----------------------------------------------------------------------------------------------- building
class _Builder:
    """Turns whitelisted syntax trees into nodes; identical subexpressions become one node."""

    def __init__(self, inputs: list[str] | None) -> None:
        from symdl.expr import functions

        self.table = functions()
        self.inputs: list[str] = list(inputs or [])
        self.fixed_inputs = inputs is not None
        self.nodes: dict[str, GraphNode] = {}
        self.by_key: dict[str, str] = {}
        self.counter = 0

    def _fresh(self) -> str:
        while True:
            self.counter += 1
            name = f"q{self.counter}"
            if name not in self.nodes and name not in self.inputs:
                return name

    def operand(self, node: ast.AST) -> str | sp.Expr:
        """A node name, or a number (constants stay inside their user's local expression)."""
        if isinstance(node, ast.Constant):
            return sp.Integer(node.value) if isinstance(node.value, int) else sp.Float(node.value)
        if isinstance(node, ast.Name):
            if node.id in self.nodes or node.id in self.inputs:
                return node.id
            if node.id in CONSTANTS:
                return {"pi": sp.pi, "e": sp.E}[node.id]
            if node.id in self.table:
                raise GraphError(f"{node.id!r} is a function; call it, as {node.id}(...)")
            if self.fixed_inputs:
                raise GraphError(f"unknown name {node.id!r} (inputs: {', '.join(self.inputs)})")
            self.inputs.append(node.id)
            return node.id
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            value = self.operand(node.operand)
            return -value  # type: ignore[operator]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return self.operand(node.operand)
        return self.add(node)

    def add(self, node: ast.AST, name: str | None = None) -> str:
        """The node computing ``node`` (created unless an identical one exists); ``name``: its given name."""
        key = ast.dump(node)
        if key in self.by_key and name is None:
            return self.by_key[key]
        op, parts, local, shown = self._operation(node)
        if name is None:
            name = self._fresh()
        if name in self.nodes or name in self.inputs:
            raise GraphError(f"{name!r} is assigned twice; each name is one node of the graph")
        operands = tuple(p for p in parts if isinstance(p, str))
        slots = tuple(i for i, p in enumerate(parts) if isinstance(p, str))
        self.nodes[name] = GraphNode(name, op, operands, local, shown, slots)
        self.by_key.setdefault(key, name)
        if len(self.nodes) > MAX_NODES:
            raise GraphError(f"the graph has more than {MAX_NODES} nodes")
        return name

    def _operation(self, node: ast.AST) -> tuple[str, list[str | sp.Expr], sp.Expr, str]:
        parts: list[str | sp.Expr]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            op, symbol = _OPS[type(node.op)]
            parts = [self.operand(node.left), self.operand(node.right)]
            a, b = self._symbols(parts)
            local = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b, "pow": a**b}[op]
            return op, parts, local, f"{_show(parts[0])} {symbol} {_show(parts[1])}"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            parts = [self.operand(node.operand)]
            return "neg", parts, -self._symbols(parts)[0], f"-{_show(parts[0])}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.table:
            function, arity = self.table[node.func.id]
            parts = [self.operand(a) for a in node.args]
            if (arity is None and not parts) or (arity is not None and len(parts) != arity):
                raise GraphError(f"{node.func.id} takes {arity or 'one or more'} argument(s), got {len(parts)}")
            if node.func.id == "where":
                raise GraphError("where(...) is not supported in a graph; use max/min")
            op = {"Max": "max", "Min": "min"}.get(node.func.id, node.func.id)
            return op, parts, function(*self._symbols(parts)), f"{node.func.id}({', '.join(map(_show, parts))})"
        if isinstance(node, ast.Name | ast.Constant):
            raise GraphError("the output is a bare name or number; write an operation")
        column = getattr(node, "col_offset", 0) + 1
        raise GraphError(f"{type(node).__name__} is not supported in a graph (column {column})"
                         "; use + - * / **, unary -, and calls")

    @staticmethod
    def _symbols(parts: list[str | sp.Expr]) -> list[sp.Expr]:
        return [sp.Symbol(f"_a{i}", real=True) if isinstance(p, str) else p for i, p in enumerate(parts)]


def _show(part: str | sp.Expr) -> str:
    return part if isinstance(part, str) else str(part)


def _from_text(text: str) -> _Builder:
    from symdl.expr import functions

    try:
        tree = validate(text, functions())
    except ExpressionError as error:
        raise GraphError(str(error)) from None
    builder = _Builder(None)
    name = builder.add(tree.body, "f") if not isinstance(tree.body, ast.Name | ast.Constant) else None
    if name is None:
        raise GraphError("the expression is a bare name or number; write an operation, e.g. (x + y) * z")
    return builder


def _from_function(spec: str) -> tuple[_Builder, str]:
    """``FILE.py:f``: the function ``f`` of the file, written as assignments and a return (parsed, never run)."""
    path_text, _, function = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise GraphError(f"{path_text}: no such file")
    if path.stat().st_size > 100_000:
        raise GraphError(f"{path_text}: larger than 100 kB")
    try:
        module = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError) as error:
        raise GraphError(f"{path_text}: not valid Python ({error})") from None
    found = [d for d in module.body if isinstance(d, ast.FunctionDef) and d.name == function]
    if not found:
        raise GraphError(f"{path_text}: no function {function!r} at top level")
    fn = found[0]
    if fn.args.vararg or fn.args.kwarg or fn.args.kwonlyargs or fn.args.defaults or fn.args.posonlyargs:
        raise GraphError(f"{function}: only plain positional parameters are supported")
    builder = _Builder([a.arg for a in fn.args.args])
    body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    for i, statement in enumerate(body):
        last = i == len(body) - 1
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and \
                isinstance(statement.targets[0], ast.Name) and not last:
            _check(statement.value, builder)
            target = statement.targets[0].id
            value = statement.value
            if isinstance(value, ast.Name | ast.Constant):
                raise GraphError(f"line {statement.lineno}: {target} = {ast.unparse(value)} is an alias; "
                                 f"compute something")
            builder.add(value, target)
        elif isinstance(statement, ast.Return) and last and statement.value is not None:
            _check(statement.value, builder)
            if isinstance(statement.value, ast.Name):
                if list(builder.nodes)[-1:] != [statement.value.id]:
                    raise GraphError(f"line {statement.lineno}: return the last assignment or an expression")
            else:
                builder.add(statement.value, "f" if "f" not in builder.nodes and "f" not in builder.inputs
                            else builder._fresh())
        else:
            raise GraphError(f"line {statement.lineno}: only assignments to a name and a final return are "
                             f"supported, got {type(statement).__name__}")
    return builder, function


def _check(node: ast.AST, builder: _Builder) -> None:
    """The right-hand side through the expression whitelist (no attributes, subscripts, lambdas, ...)."""
    try:
        validate(ast.unparse(node), builder.table)
    except ExpressionError as error:
        raise GraphError(str(error)) from None


# ----------------------------------------------------------------------------------------------- passes
def parse_point(text: str | Mapping[str, float]) -> dict[str, float]:
    """``"x=-2,y=5"`` -> ``{"x": -2.0, "y": 5.0}``."""
    if isinstance(text, Mapping):
        return {str(k): float(v) for k, v in text.items()}
    point: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip().isidentifier():
                raise ValueError
            number = float(value)
        except ValueError:
            raise GraphError(f"--at: {item!r} is not NAME=NUMBER") from None
        if number != number or abs(number) == float("inf"):
            raise GraphError(f"--at: {name.strip()} must be finite")
        if name.strip() in point:
            raise GraphError(f"--at: {name.strip()} is given twice")
        point[name.strip()] = number
    return point


def _value(expr: sp.Expr, at: Mapping[sp.Symbol, sp.Float] | None = None) -> float:
    """``expr`` (at the point ``at``: substituting a number evaluates it) as a float, at :data:`DIGITS` digits."""
    try:
        value = sp.N(expr if at is None else expr.xreplace(at), DIGITS)
    except (MemoryError, OverflowError, RecursionError):  # exp(exp(exp(...))): too large to evaluate
        raise GraphError("a value of the graph is too large to evaluate at the point") from None
    if not value.is_real or not value.is_finite:
        raise GraphError(f"the expression is not a finite real number at the point ({value})")
    if not math.isfinite(float(value)):  # finite for mpmath, past float64: exp of it ran into the 20 s timeout
        raise GraphError(f"a value of the graph is too large to evaluate at the point ({sp.N(value, 6)})")
    return float(value)


def derive_graph(source: str, at: str | Mapping[str, float]) -> GraphDerivation:
    """Decompose ``source`` (an expression, or ``FILE.py:f``) and run both passes at the point ``at``.

    Raises:
        GraphError: bad expression or file, a missing or unknown input in ``at``, a non-finite value.
    """
    is_file = ":" in source and source.rpartition(":")[0].endswith(".py")
    builder = _from_function(source)[0] if is_file else _from_text(source)
    point = parse_point(at)
    missing = [x for x in builder.inputs if x not in point]
    extra = [x for x in point if x not in builder.inputs]
    if missing:
        raise GraphError(f"--at gives no value for {', '.join(missing)} (inputs: {', '.join(builder.inputs)})")
    if extra:
        raise GraphError(f"--at names {', '.join(extra)}, not an input (inputs: {', '.join(builder.inputs)})")
    nodes = list(builder.nodes.values())
    symbols = {x: sp.Symbol(x, real=True) for x in builder.inputs}
    full: dict[str, sp.Expr] = dict(symbols)
    exact = {symbols[x]: sp.Float(repr(point[x]), DIGITS) for x in builder.inputs}
    values = {x: point[x] for x in builder.inputs}
    for node in nodes:  # forward
        budget.check()
        full[node.name] = node.local.xreplace(_positions(node, full))
        values[node.name] = _value(full[node.name], exact)
    rows, adjoint, symbolic_adjoint, forks = _backward(nodes, full, exact, values)
    output = full[nodes[-1].name]
    proofs, fds, kinks = {}, {}, {}
    from symdl.steps.verify import verify_claim

    for x in builder.inputs:
        budget.check()
        left = budget.remaining()
        proofs[x] = verify_claim(sp.diff(output, symbols[x]), symbolic_adjoint.get(x, sp.S.Zero),
                                 2.0 if left is None else min(2.0, left))
        try:
            estimate, ok, sides = _finite_difference(output, symbols[x], exact, adjoint.get(x, 0.0))
        except (MemoryError, OverflowError, RecursionError):
            raise GraphError("a value of the graph is too large to evaluate near the point") from None
        fds[x] = (estimate, ok)
        if sides is not None:
            kinks[x] = sides
    derivation = GraphDerivation(source, tuple(builder.inputs), point, nodes, values, rows, adjoint, forks,
                                 {x: symbolic_adjoint.get(x, sp.S.Zero) for x in builder.inputs}, proofs, fds, output,
                                 kinks=kinks)
    if any(r.gate.startswith(("max", "min")) and r.local_value == 0.5 for r in rows):
        derivation.notes.append("A max/min gate with tied inputs splits the gradient equally (as torch.maximum).")
    return derivation


def _positions(node: GraphNode, values: Mapping[str, sp.Expr]) -> dict[sp.Symbol, sp.Expr]:
    return {sp.Symbol(f"_a{i}", real=True): values[name] for i, name in _operand_positions(node)}


def _operand_positions(node: GraphNode) -> list[tuple[int, str]]:
    """(position, operand name) for the node's operand slots that hold nodes."""
    return list(zip(node.slots, node.operands, strict=True))


def _local_symbols(node: GraphNode, slot: int) -> dict[sp.Symbol, sp.Symbol]:
    """The node's slot symbols ``_a0, _a1, ...`` -> symbols named after the operands, for the step engine.

    The slot differentiated is the real symbol of its operand's name. An operand used in two slots of one
    node (``x * x``) is two inputs of the gate: its other slots get a symbol printed alike but distinct
    (no ``real`` assumption), so the local derivative is per slot (``x``, the other input: the multiply gate
    swaps), and the fork adds the two contributions.
    """
    table = {}
    for j, name in _operand_positions(node):
        same = name == node.operands[node.slots.index(slot)] and j != slot
        table[sp.Symbol(f"_a{j}", real=True)] = sp.Symbol(name) if same else sp.Symbol(name, real=True)
    return table


def _local_derivation(node: GraphNode, slot: int, cache: dict[tuple[str, str], Derivation]) -> Derivation:
    """The step engine's verified derivation of the node's operation with respect to one operand slot."""
    from symdl.steps.api import DEFAULT_TIMEOUT, DeriveError, derive_expression

    names = _local_symbols(node, slot)
    expr = node.local.xreplace(names)
    var = names[sp.Symbol(f"_a{slot}", real=True)]
    key = (sp.srepr(expr), sp.srepr(var))
    if key not in cache:
        budget.check()
        left = budget.remaining()
        try:
            cache[key] = derive_expression(expr, var, title=node.definition,
                                           timeout=DEFAULT_TIMEOUT if left is None else max(left, 0.01))
        except DeriveError as error:
            raise GraphError(f"node {node.name} = {node.definition}: {error}") from None
    return cache[key]


def _backward(nodes: list[GraphNode], full: dict[str, sp.Expr], exact: dict[sp.Symbol, sp.Float],
              values: dict[str, float]) -> tuple[list[BackwardRow], dict[str, float], dict[str, sp.Expr],
                                                 dict[str, list[float]]]:
    """Reverse pass: each local derivative is a verified derivation of the step engine (:mod:`symdl.steps.api`)."""
    contributions: dict[str, list[float]] = {nodes[-1].name: [1.0]}
    symbolic: dict[str, list[sp.Expr]] = {nodes[-1].name: [sp.S.One]}
    rows: list[BackwardRow] = []
    adjoint: dict[str, float] = {}
    symbolic_adjoint: dict[str, sp.Expr] = {}
    cache: dict[tuple[str, str], Derivation] = {}
    for node in reversed(nodes):
        upstream = sum(contributions.get(node.name, [0.0]))
        adjoint[node.name] = upstream
        g_symbolic = sp.Add(*symbolic.get(node.name, [sp.S.Zero]))
        for i, operand in _operand_positions(node):
            derivation = _local_derivation(node, i, cache)
            local = next(iter(derivation.result.values()))
            back = {symbol: full[symbol.name] for symbol in _local_symbols(node, i).values()}
            local_full = local.xreplace(back)
            local_value = _value(local_full, exact)
            contribution = local_value * upstream
            contributions.setdefault(operand, []).append(contribution)
            symbolic.setdefault(operand, []).append(local_full * g_symbolic)
            shown = reading_text(local)
            tree = derivation.parts[0].tree
            rows.append(BackwardRow(node.name, operand, shown, local_value, upstream, contribution,
                                    GATES.get(node.op, f"{node.op} gate: local derivative {shown}"),
                                    tree.rule_name() if tree is not None else "", derivation))
    for name, parts in symbolic.items():
        symbolic_adjoint[name] = sp.Add(*parts)
    for name, parts in contributions.items():
        adjoint[name] = sum(parts)
    forks = {name: parts for name, parts in contributions.items() if len(parts) > 1}
    return rows, adjoint, symbolic_adjoint, forks


def _finite_difference(output: sp.Expr, x: sp.Symbol, exact: dict[sp.Symbol, sp.Float],
                       derived: float) -> tuple[float, bool, tuple[float, float] | None]:
    """A central difference at 30 digits with step 1e-12 (error ~1e-24 f''' for smooth f).

    Returns ``(estimate, agrees, kink)``. When the one-sided differences disagree the point is a kink
    (relu at 0, max at a tie): there the derived value must lie between them (a subgradient, chosen by
    PyTorch's convention), and ``kink`` holds them.
    """
    def at(offset: sp.Expr) -> sp.Expr:
        return sp.N(output.xreplace({**exact, x: exact[x] + offset}), DIGITS)

    centre, plus, minus = at(sp.S.Zero), at(FD_STEP), at(-FD_STEP)
    estimate = float((plus - minus) / (2 * FD_STEP))
    left, right = float((centre - minus) / FD_STEP), float((plus - centre) / FD_STEP)
    scale = FD_TOLERANCE * max(1.0, abs(left), abs(right))
    if abs(left - right) > 1e3 * scale:
        return estimate, min(left, right) - scale <= derived <= max(left, right) + scale, (left, right)
    return estimate, abs(estimate - derived) <= FD_TOLERANCE * max(1.0, abs(estimate)), None
