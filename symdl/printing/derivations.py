"""The catalog's math as documents (printed, not written: :mod:`symdl.codegen.derivations` writes
``derivations/``; ``symdl show`` prints one entry).

Every name the catalog defines (an activation or loss, a layer, an optimizer's update rule, a
learning-rate schedule, a derived fact) becomes one :class:`Entry`: a title, captioned blocks of
LaTeX equations, and notes. The entries are built from the catalog alone (no proof is run here;
``symdl verify`` proves each closed form, and the documents say so), then rendered as Markdown
with ``math`` fences (GitHub renders them; the LaTeX inside is plain, to paste into a paper or
slides) for ``derivations/``, or as reStructuredText math blocks for ``symdl show``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sympy as sp

from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.catalog.layer_spec import Layer
from symdl.catalog.layers import LAYERS
from symdl.catalog.optimizers import OPTIMIZERS, UpdateRule
from symdl.catalog.schedules import EPOCH, PREVIOUS, SCHEDULES, Schedule
from symdl.catalog.spec import DERIVATIVE, Formula, Op
from symdl.catalog.facts import FACTS, Fact
from symdl.printing.latex import derivative_latex, equation_latex, gradient_latex, latex, rule_latex

@dataclass(frozen=True)
class Block:
    """Equations under a caption; ``variant`` is the value of the entry's ``variant_param`` whose
    formula they belong to (None: every formula's)."""

    caption: str
    equations: tuple[str, ...]
    variant: str | None = None


@dataclass(frozen=True)
class Entry:
    """One catalog name's math."""

    name: str
    family: str
    title: str
    blocks: tuple[Block, ...]
    notes: tuple[str, ...] = ()
    variant_param: str | None = None  # the parameter choosing between formulas (gelu's approximate)

    @property
    def variants(self) -> tuple[str, ...]:
        """The formula variants the blocks are split into (empty: one formula)."""
        return tuple(dict.fromkeys(b.variant for b in self.blocks if b.variant is not None))

    def variant_label(self, variant: str) -> str:
        """``approximate='tanh'``: how a variant is chosen."""
        return f"{self.variant_param}={variant!r}"


# --------------------------------------------------------------------------- entries, one builder per family
def _formula_blocks(op: Op, formula: Formula, variant: str | None) -> list[Block]:
    """Definition, stable form, gradients, subgradients at kinks and identities of one formula."""
    what = "Vector-Jacobian product" if op.traits.over_rows else "Gradient"
    blocks = [Block("Definition", (equation_latex(op, formula.definition),), variant)]
    if formula.stable is not None:
        blocks.append(Block("Stable form (what the kernel computes; proven equal)", (equation_latex(op, formula.stable),),
                            variant))
    blocks.append(Block(f"{what} (closed form; proven equal to SymPy's derivative)",
                        tuple(gradient_latex(op, formula, i.name) for i in op.differentiable_inputs), variant))
    if formula.kinks:
        symbol = latex(op.inputs[0].symbol)
        blocks.append(Block("Subgradient at the kinks (PyTorch's)", tuple(
            rf"\left.{derivative_latex(op, symbol)}\right|_{{{symbol} = {latex(k.at)}}} = {latex(k.subgradient)}"
            for k in formula.kinks), variant))
    if formula.facts:
        # the identities' placeholder for the derivative prints as the derivative itself (not \mathrm{DERIVATIVE})
        names = {DERIVATIVE: derivative_latex(op, latex(op.inputs[0].symbol))}
        blocks.append(Block("Identities (proven)", tuple(f"{latex(lhs, symbol_names=names)} = {latex(rhs)}"
                                                         for _, lhs, rhs in formula.facts), variant))
    if formula.assumptions:
        blocks.append(Block("Assuming", tuple(f"{latex(lhs)} = {latex(rhs)}" for lhs, rhs in formula.assumptions),
                            variant))
    return blocks


#: A parameter without a default (layer_norm's normalized_shape, the pools' kernel_size).
REQUIRED = object()


def _parameters(pairs: Iterator[tuple[str, object]]) -> str:
    text = ", ".join(f"`{name}` (required)" if default is REQUIRED else f"`{name}={default!r}`"
                     for name, default in pairs)
    return f"Parameters and defaults: {text}." if text else ""


def op_entry(op: Op) -> Entry:
    """An activation or a loss."""
    blocks = [block for variant, formula in op.formulas.items()
              for block in _formula_blocks(op, formula, str(variant) if op.variant_param else None)]
    kinks = [f"At {sp.sstr(op.inputs[0].symbol)} = {sp.sstr(k.at)}: {k.why}." for f in op.formulas.values()
             for k in f.kinks if k.why]
    notes = [_parameters((p.name, p.default) for p in op.params), *kinks, *op.notes]
    if op.torch:
        notes.append(f"PyTorch: `{op.torch}`.")
    return Entry(op.name, op.family, op.summary, tuple(blocks), tuple(n for n in notes if n), op.variant_param)


def layer_entry(layer: Layer) -> Entry:
    """A layer: its index-level definition and the closed forms of its vector-Jacobian product."""
    blocks = (Block("Definition (index level)", layer.math[:1]),
              Block("Vector-Jacobian product (closed forms; proven equal to SymPy's derivative of the definition)",
                    layer.math[1:]))
    proof = ("exactly at integer points" if layer.proof == "points" else "symbolically")
    notes = (_parameters((p.name, REQUIRED if p.required else p.default) for p in layer.params),
             f"`symdl verify` proves the closed forms {proof} on {len(layer.instances)} instances "
             f"({' x '.join(layer.grid_axes) or 'shapes'}).", *layer.notes)
    return Entry(layer.name, "layer", layer.summary, blocks, tuple(n for n in notes if n))


def rule_entry(rule: UpdateRule) -> Entry:
    """An optimizer's update rule, one assignment per line, in order."""
    source = f"`torch.optim.{rule.class_name}`" if rule.in_torch else "no `torch.optim` counterpart"
    notes = (f"`symdl.optim.{rule.class_name}` ({source}).", _parameters((h.name, h.default) for h in rule.hypers),
             *rule.notes, *([f"Reference: {rule.reference}."] if rule.reference else []))
    return Entry(rule.name, "optimizer", rule.summary,
                 (Block("Each step, for every parameter (in order)", tuple(rule_latex(rule))),), tuple(n for n in notes if n))


#: The previous epoch's learning rate, as the recursive updates are read.
_PREVIOUS_LR = sp.Symbol(r"\eta_{t-1}")


def schedule_entry(schedule: Schedule) -> Entry:
    """A learning-rate schedule: its closed form and, where PyTorch updates recursively, that update."""
    blocks = [Block("Closed form", (rf"\eta_{{{latex(EPOCH)}}} = {latex(schedule.closed)}",))]
    if schedule.chain is not None:
        blocks.append(Block("PyTorch's recursive update, on the epochs where it changes the lr",
                            (rf"\eta_{{{latex(EPOCH)}}} = {latex(schedule.chain.subs(PREVIOUS, _PREVIOUS_LR))}",)))
    return Entry(schedule.name, "schedule", schedule.summary, tuple(blocks),
                 (f"`symdl.optim.lr_scheduler.{schedule.name}` (`torch.optim.lr_scheduler.{schedule.name}`).",))


def fact_entry(fact: Fact) -> Entry:
    """A fact derived from the update rules."""
    return Entry(fact.name, "fact", fact.statement, (Block("Claim (proven by `symdl verify`)", (fact.latex,)),))


#: The families in document order: (file stem, heading, the catalog items, the entry builder).
#: Every item has a ``name``; items are listed without building their LaTeX.
FAMILIES: tuple[tuple[str, str, Callable[[], list[Any]], Callable[[Any], Entry]], ...] = (
    ("activations", "Activations", lambda: [op for op in ACTIVATIONS_AND_LOSSES.values() if op.family == "activation"], op_entry),
    ("losses", "Losses", lambda: [op for op in ACTIVATIONS_AND_LOSSES.values() if op.family == "loss"], op_entry),
    ("layers", "Layers", lambda: list(LAYERS), layer_entry),
    ("optimizers", "Optimizer update rules", lambda: list(OPTIMIZERS.values()), rule_entry),
    ("schedules", "Learning-rate schedules", lambda: list(SCHEDULES.values()), schedule_entry),
    ("facts", "Facts derived from the update rules", lambda: list(FACTS.values()), fact_entry),
)


def names() -> list[str]:
    """Every catalog name, in document order."""
    return [item.name for _, _, items, _ in FAMILIES for item in items()]


def entry(name: str) -> Entry | None:
    """The entry of one catalog name (None: no such name); builds only that one."""
    return next((build(item) for _, _, items, build in FAMILIES for item in items() if item.name == name), None)


def entries() -> dict[str, Entry]:
    """Every entry by name, in document order."""
    return {item.name: build(item) for _, _, items, build in FAMILIES for item in items()}


# --------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class Style:
    """How one output format prints an entry's title, a variant's heading, a block and the notes."""

    title: Callable[[Entry], list[str]]
    variant: Callable[[str], list[str]]
    block: Callable[[Block], list[str]]
    notes: Callable[[tuple[str, ...]], list[str]]


def _sentence(text: str) -> str:
    text = text.rstrip(".")
    return f"{text[:1].upper()}{text[1:]}."


def _rst_block(block: Block) -> list[str]:
    lines = [f"{block.caption}:", "", ".. math::", ""]
    for equation in block.equations:  # a blank line between equations: separate displays
        lines += [f"    {equation}", ""]
    return lines


def _markdown_block(block: Block) -> list[str]:
    """A caption and a ``math`` fence; several equations aligned one per line."""
    equations = block.equations
    math = ([equations[0]] if len(equations) == 1 else
            [r"\begin{aligned}", *(rf"& {eq} \\" for eq in equations), r"\end{aligned}"])
    return [f"{block.caption}:", "", "```math", *math, "```", ""]


def _latex_block(block: Block) -> list[str]:
    """A ``gather*`` environment (one centred equation per line), captioned by a comment."""
    return [f"% {block.caption}", r"\begin{gather*}", " \\\\\n".join(block.equations), r"\end{gather*}"]


#: The output formats of ``symdl show --format`` (``markdown`` is also derivations/'s).
STYLES: dict[str, Style] = {
    "rst": Style(title=lambda e: [f"{e.name}: {e.title}", ""], variant=lambda label: [label, ""], block=_rst_block,
                 notes=list),
    "markdown": Style(title=lambda e: [f"## {e.name}", "", _sentence(e.title), ""],
                      variant=lambda label: [f"### `{label}`", ""], block=_markdown_block,
                      notes=lambda notes: [*(f"* {note}" for note in notes), ""] if notes else []),
    "latex": Style(title=lambda e: [f"% {e.name}: {_sentence(e.title)}"], variant=lambda label: [f"% {label}"],
                   block=_latex_block, notes=lambda notes: [f"% {note}" for note in notes]),
}


def format_entry(entry: Entry, style: str = "rst", variant: str | None = None) -> list[str]:
    """An entry's lines in one of :data:`STYLES`; ``variant``: only that formula's blocks."""
    printer = STYLES[style]
    lines = printer.title(entry)
    shown = None
    for block in entry.blocks:
        if variant is not None and block.variant not in (None, variant):
            continue
        if block.variant is not None and block.variant != shown:
            lines += printer.variant(entry.variant_label(block.variant))
            shown = block.variant
        lines += printer.block(block)
    return lines + printer.notes(entry.notes)


__all__ = ["Block", "Entry", "FAMILIES", "names", "entry", "entries", "op_entry", "layer_entry", "rule_entry", "schedule_entry", "fact_entry", "STYLES",
           "format_entry"]

