"""Optimizer update rules, each defined once as SymPy assignments.

An :class:`UpdateRule` is one optimizer step for one parameter tensor, written
as straight-line assignments in the order ``torch.optim``'s single-tensor path
performs them: ``(target, expression)`` pairs where a state symbol on the right
of an assignment means its latest value (``state_{t-1}`` before the state's own
assignment, ``state_t`` after it). Hyper-parameters keep PyTorch's names and
defaults; flags (``maximize``, ``nesterov``, ``amsgrad``, ...) are SymPy
symbols used as conditions, and every branch on them is a ``Piecewise`` whose
conditions hold only scalars, so the generated kernel turns it into a Python
``if``. Branches such as ``Piecewise((d + wd p, wd != 0), (d, True))`` are
mathematically redundant; they say where PyTorch skips work, so the kernel skips
it too.

Everything downstream reads these entries: :mod:`symdl.codegen.optimizers` prints
the in-place kernels and the optimizer classes, :mod:`symdl.verify.optimizers` and
the tests evaluate the assignments directly, and :mod:`symdl.catalog.facts`
derives the textbook facts from them.

Symbols: :data:`PARAM` (the parameter ``theta``), :data:`GRAD` (its gradient
``g``), :data:`STEP` (the step count ``t``, 1 on the first step), state arrays
named as in PyTorch's ``optimizer.state[p]``, and intermediates (``d``, the
gradient after ``maximize`` and weight decay).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import sympy as sp

HyperKind = Literal["real", "bool", "pair"]

PARAM = sp.Symbol("param", real=True)
GRAD = sp.Symbol("grad", real=True)
STEP = sp.Symbol("step", positive=True, integer=True)
D = sp.Symbol("d", real=True)  # the gradient the rule uses (after maximize, weight decay, momentum)

LR = sp.Symbol("lr", real=True)
WEIGHT_DECAY = sp.Symbol("weight_decay", real=True)
EPS = sp.Symbol("eps", real=True)
BETA1 = sp.Symbol("beta1", real=True)
BETA2 = sp.Symbol("beta2", real=True)
MAXIMIZE = sp.Symbol("maximize")
DECOUPLED = sp.Symbol("decoupled_weight_decay")
AMSGRAD = sp.Symbol("amsgrad")
NESTEROV = sp.Symbol("nesterov")
CENTERED = sp.Symbol("centered")
MOMENTUM = sp.Symbol("momentum", real=True)
DAMPENING = sp.Symbol("dampening", real=True)
LR_DECAY = sp.Symbol("lr_decay", real=True)
INITIAL_ACC = sp.Symbol("initial_accumulator_value", real=True)
ALPHA = sp.Symbol("alpha", real=True)
RHO = sp.Symbol("rho", real=True)
MOMENTUM_DECAY = sp.Symbol("momentum_decay", real=True)

# State and intermediates (names are PyTorch's state keys where PyTorch has one).
EXP_AVG = sp.Symbol("exp_avg", real=True)
EXP_AVG_SQ = sp.Symbol("exp_avg_sq", real=True)
MAX_EXP_AVG_SQ = sp.Symbol("max_exp_avg_sq", real=True)
VHAT = sp.Symbol("vhat", real=True)
EXP_INF = sp.Symbol("exp_inf", real=True)
MOMENTUM_BUFFER = sp.Symbol("momentum_buffer", real=True)
SUM = sp.Symbol("sum", real=True)
SQUARE_AVG = sp.Symbol("square_avg", real=True)
GRAD_AVG = sp.Symbol("grad_avg", real=True)
AVG = sp.Symbol("avg", real=True)
ACC_DELTA = sp.Symbol("acc_delta", real=True)
DELTA = sp.Symbol("delta", real=True)
MU_PRODUCT = sp.Symbol("mu_product", real=True)
MU = sp.Symbol("mu", real=True)
MU_NEXT = sp.Symbol("mu_next", real=True)
DENOM = sp.Symbol("denom", real=True)
RHO_INF = sp.Symbol("rho_inf", real=True)
RHO_T = sp.Symbol("rho_t", real=True)
C = sp.Symbol("c", real=True)

#: How symbols print in LaTeX (the textbook letters; code keeps PyTorch's names).
LATEX_NAMES: dict[sp.Symbol, str] = {
    PARAM: r"\theta", GRAD: "g", STEP: "t", D: "d", LR: r"\eta", WEIGHT_DECAY: r"\lambda", EPS: r"\epsilon",
    BETA1: r"\beta_1", BETA2: r"\beta_2", MAXIMIZE: r"\mathrm{maximize}", DECOUPLED: r"\mathrm{decoupled}",
    AMSGRAD: r"\mathrm{amsgrad}", NESTEROV: r"\mathrm{nesterov}", CENTERED: r"\mathrm{centered}",
    MOMENTUM: r"\mu", DAMPENING: r"\tau", LR_DECAY: r"\gamma_{\mathrm{decay}}", INITIAL_ACC: "G_0",
    ALPHA: r"\alpha", RHO: r"\rho", MOMENTUM_DECAY: r"\psi", EXP_AVG: "m", EXP_AVG_SQ: "v",
    MAX_EXP_AVG_SQ: r"v^{\max}", VHAT: r"\hat v", EXP_INF: "u", MOMENTUM_BUFFER: "b", SUM: "G",
    SQUARE_AVG: "v", GRAD_AVG: r"\bar g", AVG: r"\sigma", ACC_DELTA: r"\Delta", DELTA: r"\delta",
    MU_PRODUCT: r"\Pi_\mu", MU: r"\mu_t", MU_NEXT: r"\mu_{t+1}", DENOM: r"\sigma",
    RHO_INF: r"\rho_\infty", RHO_T: r"\rho_t", C: "c",
}


@dataclass(frozen=True)
class Hyper:
    """A constructor argument with PyTorch's name and default.

    ``symbols`` are the SymPy symbols standing for it (two for ``betas``).
    ``sample`` is the range tests draw it from (per component; None: always
    the default, or both values for a flag). ``keyword_only`` follows the
    ``*`` in PyTorch's signature (or ours, where PyTorch's is after an argument
    we do not support, such as ``foreach``).
    """

    name: str
    default: object
    symbols: tuple[sp.Symbol, ...]
    kind: HyperKind = "real"
    keyword_only: bool = False
    sample: tuple[float, float] | None = None
    doc: str = ""


@dataclass(frozen=True)
class StateVar:
    """Per-parameter optimizer state, created on the first step.

    ``init`` is its value before the first step (may use hyper-parameters);
    ``scalar`` states are one number per parameter (NAdam's ``mu_product``),
    others are arrays shaped like the parameter; ``when`` is the condition on
    hyper-parameters under which PyTorch keeps it at all.
    """

    name: str
    symbol: sp.Symbol
    init: sp.Expr = sp.S.Zero
    scalar: bool = False
    when: sp.Basic = sp.true


@dataclass(frozen=True)
class Constraint:
    """A condition on the hyper-parameters; ``rule`` says it in words for the error."""

    holds: sp.Basic
    rule: str


@dataclass(frozen=True, eq=False)  # identity semantics: entries are singletons
class UpdateRule:
    """One optimizer: its hyper-parameters, state and update assignments.

    Attributes:
        name: snake_case name (``adam``), used for kernels and verify rows.
        class_name: the ``torch.optim`` class name (``Adam``), used for
            ``symdl.optim.<class_name>``.
        in_torch: whether ``torch.optim`` has it (Lion does not).
        summary: one line.
        hypers: constructor arguments in PyTorch's order.
        states: per-parameter state.
        assignments: the step, in order (see the module docstring).
        constraints: conditions checked before any parameter is modified.
        fixed: hyper-parameters PyTorch fixes for this class (AdamW is Adam
            with ``decoupled_weight_decay=True``); substituted into the
            assignments.
        cases: named hyper-parameter settings that select each branch of the
            rule, one verify row each (``{"amsgrad": True}``).
        notes: deliberate differences from PyTorch and other remarks.
        reference: the paper.
        one_pass: hyper-parameter values for which the step is the single pass
            ``param <- param - lr * grad`` with every state left as it is (proven in
            tests/test_optim.py). The optimizer then updates a large parameter in one
            call instead of cache-sized blocks: blocks let a kernel's later passes read
            cache, and with one pass their calls are pure cost (SGD on 1e6 float64:
            15-28% slower blocked).
    """

    name: str
    class_name: str
    in_torch: bool
    summary: str
    hypers: tuple[Hyper, ...]
    states: tuple[StateVar, ...]
    assignments: tuple[tuple[sp.Symbol, sp.Expr], ...]
    constraints: tuple[Constraint, ...] = ()
    fixed: dict[sp.Symbol, object] = field(default_factory=dict)
    cases: dict[str, dict[str, object]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    reference: str = ""
    one_pass: sp.Basic = sp.false

    @property
    def defaults(self) -> dict[str, object]:
        """Hyper-parameter defaults by name."""
        return {h.name: h.default for h in self.hypers}

    def hyper(self, name: str) -> Hyper:
        """The hyper-parameter called ``name``."""
        return next(h for h in self.hypers if h.name == name)

    @property
    def hyper_symbols(self) -> tuple[sp.Symbol, ...]:
        """Every hyper-parameter symbol, in signature order (``betas`` gives two)."""
        return tuple(s for h in self.hypers for s in h.symbols) + tuple(self.fixed)

    def symbol_values(self, hypers: dict[str, object]) -> dict[sp.Symbol, object]:
        """Values for the hyper-parameter symbols from constructor arguments (defaults filled in)."""
        values: dict[sp.Symbol, object] = dict(self.fixed)
        for h in self.hypers:
            value = hypers.get(h.name, h.default)
            values.update(zip(h.symbols, value if h.kind == "pair" else (value,)))
        return values

    @property
    def steps(self) -> tuple[tuple[sp.Symbol, sp.Expr], ...]:
        """The assignments with :attr:`fixed` substituted."""
        fixed = {k: sp.sympify(v) for k, v in self.fixed.items()}
        return tuple((target, expr.xreplace(fixed)) for target, expr in self.assignments)


# --------------------------------------------------------------------------- shared pieces
def _lr(default: float) -> Hyper:
    return Hyper("lr", default, (LR,), sample=(1e-4, 0.5), doc="learning rate")


def _betas(default: tuple[float, float] = (0.9, 0.999)) -> Hyper:
    return Hyper("betas", default, (BETA1, BETA2), kind="pair", sample=(0.0, 0.999),
                 doc="decay rates of the first and second moment averages")


def _eps(default: float) -> Hyper:
    return Hyper("eps", default, (EPS,), sample=(1e-10, 1e-2), doc="added to the denominator for stability")


WD = Hyper("weight_decay", 0.0, (WEIGHT_DECAY,), sample=(0.0, 0.1), doc="L2 penalty")
MAX = Hyper("maximize", False, (MAXIMIZE,), kind="bool", keyword_only=True,
            doc="maximize the objective (step along +g)")


def _decoupled(keyword_only: bool) -> Hyper:
    return Hyper("decoupled_weight_decay", False, (DECOUPLED,), kind="bool", keyword_only=keyword_only,
                 doc="decay the parameter directly (AdamW) instead of adding wd * param to the gradient")


LR_RULE = Constraint(LR >= 0, "lr must be >= 0")
WD_RULE = Constraint(WEIGHT_DECAY >= 0, "weight_decay must be >= 0")
EPS_RULE = Constraint(EPS > 0, "eps must be > 0")
BETA_RULES = (Constraint(sp.And(BETA1 >= 0, BETA1 < 1), "betas[0] must be in [0, 1)"),
              Constraint(sp.And(BETA2 >= 0, BETA2 < 1), "betas[1] must be in [0, 1)"))


def _signed_grad() -> tuple[sp.Symbol, sp.Expr]:
    """``d = -g`` when maximizing (PyTorch negates the gradient first)."""
    return D, sp.Piecewise((-GRAD, MAXIMIZE), (GRAD, True))


def _l2(when: sp.Basic = sp.true) -> tuple[sp.Symbol, sp.Expr]:
    """L2 weight decay added to the gradient: ``d = d + wd * param`` (skipped when wd = 0)."""
    return D, sp.Piecewise((D + WEIGHT_DECAY * PARAM, sp.And(sp.Ne(WEIGHT_DECAY, 0), when)), (D, True))


def _decay_param() -> tuple[sp.Symbol, sp.Expr]:
    """Decoupled weight decay: ``param = param (1 - lr wd)`` before the update (AdamW)."""
    return PARAM, sp.Piecewise((PARAM * (1 - LR * WEIGHT_DECAY), sp.And(DECOUPLED, sp.Ne(WEIGHT_DECAY, 0))),
                               (PARAM, True))


def _lerp(state: sp.Symbol, target: sp.Expr, weight: sp.Expr) -> sp.Expr:
    """``torch.lerp(state, target, weight)`` = state + weight (target - state) (PyTorch's form for weight < 1/2)."""
    return state + weight * (target - state)


def _ema_square(state: sp.Symbol, decay: sp.Symbol) -> sp.Expr:
    """``state.mul_(decay).addcmul_(d, d, value=1 - decay)``."""
    return decay * state + (1 - decay) * D**2


def _moments() -> tuple[tuple[sp.Symbol, sp.Expr], ...]:
    """Adam's first and second moment averages."""
    return ((EXP_AVG, _lerp(EXP_AVG, D, 1 - BETA1)), (EXP_AVG_SQ, _ema_square(EXP_AVG_SQ, BETA2)))


def _weight_decay_steps() -> tuple[tuple[sp.Symbol, sp.Expr], ...]:
    """maximize, then decoupled or L2 weight decay (Adam, NAdam, RAdam)."""
    return (_signed_grad(), _decay_param(), _l2(sp.Not(DECOUPLED)))


BC1 = 1 - BETA1**STEP  # bias corrections
BC2 = 1 - BETA2**STEP

ADAM_STATES = (StateVar("exp_avg", EXP_AVG), StateVar("exp_avg_sq", EXP_AVG_SQ))

# --------------------------------------------------------------------------- rules
SGD = UpdateRule(
    name="sgd", class_name="SGD", in_torch=True,
    summary="stochastic gradient descent with heavy-ball or Nesterov momentum",
    hypers=(_lr(1e-3), Hyper("momentum", 0.0, (MOMENTUM,), sample=(0.0, 0.99), doc="momentum factor"),
            Hyper("dampening", 0.0, (DAMPENING,), doc="dampening of the gradient added to the momentum buffer"),
            WD, Hyper("nesterov", False, (NESTEROV,), kind="bool", doc="Nesterov momentum"), MAX),
    states=(StateVar("momentum_buffer", MOMENTUM_BUFFER, when=sp.Ne(MOMENTUM, 0)),),
    assignments=(
        _signed_grad(),
        _l2(),
        # PyTorch starts the buffer at the first gradient, undampened.
        (MOMENTUM_BUFFER, sp.Piecewise((MOMENTUM_BUFFER, sp.Eq(MOMENTUM, 0)), (D, sp.Eq(STEP, 1)),
                                       (MOMENTUM * MOMENTUM_BUFFER + D, sp.Eq(DAMPENING, 0)),
                                       (MOMENTUM * MOMENTUM_BUFFER + (1 - DAMPENING) * D, True))),
        (D, sp.Piecewise((D, sp.Eq(MOMENTUM, 0)), (D + MOMENTUM * MOMENTUM_BUFFER, NESTEROV),
                         (MOMENTUM_BUFFER, True))),
        (PARAM, PARAM - LR * D),
    ),
    constraints=(LR_RULE, Constraint(MOMENTUM >= 0, "momentum must be >= 0"), WD_RULE,
                 Constraint(sp.Or(sp.Not(NESTEROV), sp.And(MOMENTUM > 0, sp.Eq(DAMPENING, 0))),
                            "nesterov requires momentum > 0 and dampening = 0")),
    cases={"plain": {}, "momentum": {"momentum": 0.9}, "dampening": {"momentum": 0.9, "dampening": 0.1},
           "nesterov": {"momentum": 0.9, "nesterov": True}, "weight_decay": {"weight_decay": 0.01},
           "maximize": {"maximize": True, "momentum": 0.5}},
    notes=("The momentum buffer starts at the first gradient when step = 1 (PyTorch: when the buffer is "
           "None); a momentum switched from 0 to non-zero mid-run starts from a zero buffer instead.",),
    one_pass=sp.And(sp.Eq(MOMENTUM, 0), sp.Eq(WEIGHT_DECAY, 0), sp.Not(MAXIMIZE)),
)

ADAGRAD = UpdateRule(
    name="adagrad", class_name="Adagrad", in_torch=True,
    summary="per-coordinate learning rates from the sum of squared gradients",
    hypers=(_lr(1e-2), Hyper("lr_decay", 0.0, (LR_DECAY,), sample=(0.0, 0.1), doc="learning-rate decay"), WD,
            Hyper("initial_accumulator_value", 0.0, (INITIAL_ACC,), sample=(0.0, 1.0),
                  doc="initial value of the sum of squares"),
            _eps(1e-10), MAX),
    states=(StateVar("sum", SUM, init=INITIAL_ACC),),
    assignments=(
        _signed_grad(),
        _l2(),
        (SUM, SUM + D**2),
        (PARAM, PARAM - LR / (1 + (STEP - 1) * LR_DECAY) * D / (sp.sqrt(SUM) + EPS)),
    ),
    constraints=(LR_RULE, Constraint(LR_DECAY >= 0, "lr_decay must be >= 0"), WD_RULE,
                 Constraint(INITIAL_ACC >= 0, "initial_accumulator_value must be >= 0"), EPS_RULE),
    cases={"plain": {}, "lr_decay": {"lr_decay": 0.01, "initial_accumulator_value": 0.1},
           "weight_decay": {"weight_decay": 0.01, "maximize": True}},
    reference="Duchi, Hazan and Singer, 2011",
)

RMSPROP = UpdateRule(
    name="rmsprop", class_name="RMSprop", in_torch=True,
    summary="gradient divided by a running root mean square",
    hypers=(_lr(1e-2), Hyper("alpha", 0.99, (ALPHA,), sample=(0.0, 0.999), doc="smoothing constant"),
            _eps(1e-8), WD, Hyper("momentum", 0.0, (MOMENTUM,), sample=(0.0, 0.99), doc="momentum factor"),
            Hyper("centered", False, (CENTERED,), kind="bool", doc="divide by the estimated variance"),
            Hyper("maximize", False, (MAXIMIZE,), kind="bool", keyword_only=True, doc=MAX.doc)),
    states=(StateVar("square_avg", SQUARE_AVG), StateVar("momentum_buffer", MOMENTUM_BUFFER, when=MOMENTUM > 0),
            StateVar("grad_avg", GRAD_AVG, when=CENTERED)),
    assignments=(
        _signed_grad(),
        _l2(),
        (SQUARE_AVG, _ema_square(SQUARE_AVG, ALPHA)),
        (GRAD_AVG, sp.Piecewise((_lerp(GRAD_AVG, D, 1 - ALPHA), CENTERED), (GRAD_AVG, True))),
        # v - gbar^2 >= 0 exactly (Cauchy-Schwarz on the averages' weights) but may round below 0 when the
        # variance is ~0: clamped at 0 where PyTorch's sqrt gives NaN.
        (AVG, sp.Piecewise((sp.sqrt(sp.Max(SQUARE_AVG - GRAD_AVG**2, 0)) + EPS, CENTERED),
                           (sp.sqrt(SQUARE_AVG) + EPS, True))),
        (MOMENTUM_BUFFER, sp.Piecewise((MOMENTUM * MOMENTUM_BUFFER + D / AVG, MOMENTUM > 0), (MOMENTUM_BUFFER, True))),
        (PARAM, sp.Piecewise((PARAM - LR * MOMENTUM_BUFFER, MOMENTUM > 0), (PARAM - LR * D / AVG, True))),
    ),
    constraints=(LR_RULE, Constraint(ALPHA >= 0, "alpha must be >= 0"), EPS_RULE, WD_RULE,
                 Constraint(MOMENTUM >= 0, "momentum must be >= 0")),
    cases={"plain": {}, "centered": {"centered": True}, "momentum": {"momentum": 0.9},
           "centered_momentum": {"centered": True, "momentum": 0.5, "weight_decay": 0.01, "maximize": True}},
    notes=("centered: the variance v - gbar^2 is clamped at 0 before the square root (PyTorch returns NaN "
           "when rounding makes it negative).",
           "maximize is keyword-only here (PyTorch takes it positionally after capturable and foreach, "
           "which symdl does not have).",),
    reference="Hinton, Coursera lecture 6e, 2012",
)

ADADELTA = UpdateRule(
    name="adadelta", class_name="Adadelta", in_torch=True,
    summary="step sizes from running averages of squared gradients and squared updates",
    hypers=(_lr(1.0), Hyper("rho", 0.9, (RHO,), sample=(0.0, 0.999), doc="decay rate of the averages"),
            _eps(1e-6), WD, MAX),
    states=(StateVar("square_avg", SQUARE_AVG), StateVar("acc_delta", ACC_DELTA)),
    assignments=(
        _signed_grad(),
        _l2(),
        (SQUARE_AVG, _ema_square(SQUARE_AVG, RHO)),
        # torch: sqrt(acc + eps) / sqrt(v + eps) * d. One square root of the ratio is a pass fewer and
        # at least as accurate (2 roundings before the product instead of 3); it differs by rounding only.
        (DELTA, sp.sqrt((ACC_DELTA + EPS) / (SQUARE_AVG + EPS)) * D),
        (ACC_DELTA, RHO * ACC_DELTA + (1 - RHO) * DELTA**2),
        (PARAM, PARAM - LR * DELTA),
    ),
    constraints=(LR_RULE, Constraint(sp.And(RHO >= 0, RHO <= 1), "rho must be in [0, 1]"), EPS_RULE, WD_RULE),
    cases={"plain": {}, "weight_decay": {"weight_decay": 0.01, "maximize": True}},
    reference="Zeiler, 2012",
)

_ADAM_ASSIGNMENTS = (
    *_weight_decay_steps(),
    *_moments(),
    (MAX_EXP_AVG_SQ, sp.Piecewise((sp.Max(MAX_EXP_AVG_SQ, EXP_AVG_SQ), AMSGRAD), (MAX_EXP_AVG_SQ, True))),
    (VHAT, sp.Piecewise((MAX_EXP_AVG_SQ, AMSGRAD), (EXP_AVG_SQ, True))),
    # PyTorch: denom = sqrt(v) / sqrt(bc2) + eps; param -= (lr / bc1) * m / denom.
    (PARAM, PARAM - LR / BC1 * EXP_AVG / (sp.sqrt(VHAT) / sp.sqrt(BC2) + EPS)),
)
_ADAM_STATES = (*ADAM_STATES, StateVar("max_exp_avg_sq", MAX_EXP_AVG_SQ, when=AMSGRAD))
_ADAM_CONSTRAINTS = (LR_RULE, EPS_RULE, *BETA_RULES, WD_RULE)
_AMSGRAD = Hyper("amsgrad", False, (AMSGRAD,), kind="bool", doc="use the maximum of past second moments")

ADAM = UpdateRule(
    name="adam", class_name="Adam", in_torch=True,
    summary="adaptive moment estimation with bias correction",
    hypers=(_lr(1e-3), _betas(), _eps(1e-8), WD, _AMSGRAD, MAX, _decoupled(keyword_only=True)),
    states=_ADAM_STATES,
    assignments=_ADAM_ASSIGNMENTS,
    constraints=_ADAM_CONSTRAINTS,
    cases={"plain": {}, "amsgrad": {"amsgrad": True}, "weight_decay": {"weight_decay": 0.01},
           "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True},
           "maximize": {"maximize": True, "amsgrad": True}},
    reference="Kingma and Ba, 2015; AMSGrad: Reddi, Kale and Kumar, 2018",
)

ADAMW = UpdateRule(
    name="adamw", class_name="AdamW", in_torch=True,
    summary="Adam with decoupled weight decay",
    hypers=(_lr(1e-3), _betas(), _eps(1e-8), Hyper("weight_decay", 1e-2, (WEIGHT_DECAY,), sample=(0.0, 0.1),
                                                      doc="decoupled weight decay"), _AMSGRAD, MAX),
    states=_ADAM_STATES,
    assignments=_ADAM_ASSIGNMENTS,
    constraints=_ADAM_CONSTRAINTS,
    fixed={DECOUPLED: True},
    cases={"plain": {}, "amsgrad": {"amsgrad": True, "maximize": True}},
    reference="Loshchilov and Hutter, 2019",
)

ADAMAX = UpdateRule(
    name="adamax", class_name="Adamax", in_torch=True,
    summary="Adam with the infinity norm in place of the second moment",
    hypers=(_lr(2e-3), _betas(), _eps(1e-8), WD, MAX),
    states=(StateVar("exp_avg", EXP_AVG), StateVar("exp_inf", EXP_INF)),
    assignments=(
        _signed_grad(),
        _l2(),
        (EXP_AVG, _lerp(EXP_AVG, D, 1 - BETA1)),
        (EXP_INF, sp.Max(BETA2 * EXP_INF, sp.Abs(D) + EPS)),
        (PARAM, PARAM - LR / BC1 * EXP_AVG / EXP_INF),
    ),
    constraints=_ADAM_CONSTRAINTS,
    cases={"plain": {}, "weight_decay": {"weight_decay": 0.01, "maximize": True}},
    reference="Kingma and Ba, 2015, section 7",
)

_MU = {
    MU: BETA1 * (1 - sp.Rational(1, 2) * sp.Rational(96, 100) ** (STEP * MOMENTUM_DECAY)),
    MU_NEXT: BETA1 * (1 - sp.Rational(1, 2) * sp.Rational(96, 100) ** ((STEP + 1) * MOMENTUM_DECAY)),
}

NADAM = UpdateRule(
    name="nadam", class_name="NAdam", in_torch=True,
    summary="Adam with Nesterov momentum and a momentum schedule",
    hypers=(_lr(2e-3), _betas(), _eps(1e-8), WD,
            Hyper("momentum_decay", 4e-3, (MOMENTUM_DECAY,), sample=(0.0, 0.01), doc="momentum schedule decay"),
            _decoupled(keyword_only=False), MAX),
    states=(*ADAM_STATES, StateVar("mu_product", MU_PRODUCT, init=sp.S.One, scalar=True)),
    assignments=(
        *_weight_decay_steps(),
        (MU, _MU[MU]),
        (MU_NEXT, _MU[MU_NEXT]),
        (MU_PRODUCT, MU_PRODUCT * MU),
        *_moments(),
        (DENOM, sp.sqrt(EXP_AVG_SQ / BC2) + EPS),
        (PARAM, PARAM - LR * (1 - MU) / (1 - MU_PRODUCT) * D / DENOM
         - LR * MU_NEXT / (1 - MU_PRODUCT * MU_NEXT) * EXP_AVG / DENOM),
    ),
    constraints=(*_ADAM_CONSTRAINTS, Constraint(MOMENTUM_DECAY >= 0, "momentum_decay must be >= 0")),
    cases={"plain": {}, "weight_decay": {"weight_decay": 0.01},
           "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True, "maximize": True}},
    notes=("mu_product is kept as a Python float (float64); PyTorch keeps it in its default dtype "
           "(float32 unless torch.set_default_dtype(torch.float64)).",),
    reference="Dozat, 2016",
)

RADAM = UpdateRule(
    name="radam", class_name="RAdam", in_torch=True,
    summary="Adam with the variance of the adaptive learning rate rectified",
    hypers=(_lr(1e-3), _betas(), _eps(1e-8), WD, _decoupled(keyword_only=False), MAX),
    states=ADAM_STATES,
    assignments=(
        *_weight_decay_steps(),
        *_moments(),
        (RHO_INF, 2 / (1 - BETA2) - 1),
        (RHO_T, RHO_INF - 2 * STEP * BETA2**STEP / BC2),
        # The rectified adaptive step once the variance is tractable (rho_t > 5), plain momentum before.
        (PARAM, sp.Piecewise(
            (PARAM - LR / BC1 * sp.sqrt((RHO_T - 4) * (RHO_T - 2) * RHO_INF / ((RHO_INF - 4) * (RHO_INF - 2) * RHO_T))
             * sp.sqrt(BC2) * EXP_AVG / (sp.sqrt(EXP_AVG_SQ) + EPS), RHO_T > 5),
            (PARAM - LR / BC1 * EXP_AVG, True))),
    ),
    constraints=_ADAM_CONSTRAINTS,
    cases={"plain": {}, "weight_decay": {"weight_decay": 0.01},
           "decoupled": {"weight_decay": 0.01, "decoupled_weight_decay": True, "maximize": True}},
    reference="Liu et al., 2020",
)

LION = UpdateRule(
    name="lion", class_name="Lion", in_torch=False,
    summary="evolved sign momentum (not in torch.optim)",
    hypers=(_lr(1e-4), _betas((0.9, 0.99)), Hyper("weight_decay", 0.0, (WEIGHT_DECAY,), sample=(0.0, 0.1),
                                                 doc="decoupled weight decay")),
    states=(StateVar("exp_avg", EXP_AVG),),
    assignments=(
        # p - lr (sign(c) + wd p) = p (1 - lr wd) - lr sign(c): the decay first, as in the paper's code.
        (PARAM, sp.Piecewise((PARAM * (1 - LR * WEIGHT_DECAY), sp.Ne(WEIGHT_DECAY, 0)), (PARAM, True))),
        (C, BETA1 * EXP_AVG + (1 - BETA1) * GRAD),
        (PARAM, PARAM - LR * sp.sign(C)),
        (EXP_AVG, BETA2 * EXP_AVG + (1 - BETA2) * GRAD),
    ),
    constraints=(LR_RULE, *BETA_RULES, WD_RULE),
    cases={"plain": {}, "weight_decay": {"weight_decay": 0.1}},
    notes=("Not in torch.optim; checked against its SymPy rule only. sign(0) = 0.",),
    reference="Chen et al., 2023, Algorithm 2",
)

#: Every update rule, by name.
OPTIMIZERS: dict[str, UpdateRule] = {r.name: r for r in (SGD, ADAGRAD, RMSPROP, ADADELTA, ADAM, ADAMW, ADAMAX, NADAM,
                                                         RADAM, LION)}
