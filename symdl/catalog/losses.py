"""Catalog entries: loss functions (``torch.nn.functional`` names and defaults).

Pointwise losses are written per element; the kernel template applies the
optional ``weight`` (a symbol that is 1 when the caller passes None) and the
``reduction``, whose adjoint spreads the upstream gradient back (divided by
the element count for ``mean``). Inputs PyTorch differentiates get a gradient;
label-like inputs (``sign``/``class_index`` roles) get None.
"""

from __future__ import annotations

import sympy as sp

from symdl.catalog.spec import Domain, Formula, Input, Kink, Op, Param, Rule, Tolerance
from symdl.functions import (NUM_CLASSES, Grouped, clamped_log, clamped_log1p, grouped, indicator, log1p, rowmax,
                             rowsum, sigmoid, softplus, stable_log_cosh, xlogy)

x = sp.Symbol("x", real=True)
y = sp.Symbol("y", real=True)
x2 = sp.Symbol("x2", real=True)
v = sp.Symbol("v", positive=True)
w = sp.Symbol("weight", real=True)
pos_weight = sp.Symbol("pos_weight", real=True)
beta = sp.Symbol("beta", positive=True)
delta = sp.Symbol("delta", positive=True)
margin = sp.Symbol("margin", real=True)
eps = sp.Symbol("eps", positive=True)
full = sp.Symbol("full", nonnegative=True)
alpha = sp.Symbol("alpha", nonnegative=True)
gamma = sp.Symbol("gamma", nonnegative=True)

REAL = Domain(-5.0, 5.0, extremes=(-1000.0, -1.0, 0.0, 1.0, 1000.0))
# Exactly 0 and 1 are checked against PyTorch's clamped gradient in the tests.
PROBABILITY = Domain(0.01, 0.99, extremes=(1e-10, 0.5, 1.0 - 1e-10))
UNIT = Domain(0.0, 1.0)
LOGITS = Domain(-8.0, 8.0, extremes=(-1000.0, -30.0, 0.0, 30.0, 1000.0))


def _reduction(*choices: str, default: str = "mean") -> Param:
    return Param("reduction", default, Rule("choice", choices or ("none", "mean", "sum")),
                 doc="'none' | 'mean' | 'sum' over all elements")


REDUCTION = _reduction()
WEIGHT = Param("weight", None, Rule("array"), w, doc="rescales each element's loss; broadcasts against input")
d = x - y
_abs_d = grouped(sp.Abs(d))


def _quadratic_then_linear(width: sp.Expr, factor: sp.Expr = sp.S.One) -> sp.Expr:
    """m (|d| - m / 2) with m = min(|d|, width): d^2 / 2 inside, width (|d| - width / 2) outside; one
    formula for both branches, no division by |d|, |d| computed once. As (2 h factor) (|d| - h), h = m / 2:
    nothing (2 |d|, say) overflows before the true value does. ``factor`` scales h first: for
    smooth_l1 (factor 1 / beta) the first product is at most 1, so h (|d| - h) (an intermediate up to
    beta / 2 |d|, past the float range at |d| = max for beta > 2) is never formed."""
    half = grouped(sp.Min(_abs_d, width) / 2)
    scale = 2 * factor
    return grouped(half * (scale if scale.is_number else grouped(scale))) * (_abs_d - half)

#: x - y is rounded before it is squared or clamped: errors are relative to the size of x and y.
DIFFERENCE = Tolerance(forward_scale=sp.Abs(d) * (sp.Abs(x) + sp.Abs(y)), grad_scale=sp.Abs(x) + sp.Abs(y))
# PyTorch clamps BCE's logs at -100; log(1 - x) is log1p(-x), accurate for small x.
_log_x = clamped_log(x, -100)
_log_1mx = clamped_log1p(-x, -100)

POINTWISE_LOSSES: tuple[Op, ...] = (
    Op(
        name="mse_loss",
        family="loss",
        kind="pointwise_loss",
        summary="Mean squared error (x - y)^2",
        inputs=(Input("input", x, REAL), Input("target", y, REAL)),
        params=(REDUCTION,),
        # grouped: SymPy would distribute 2 (x - y) into 2x - 2y, one pass more.
        formulas={"": Formula(definition=d**2, grads={"input": 2 * grouped(d), "target": -2 * grouped(d)})},
        torch="torch.nn.functional.mse_loss",
        tolerance=DIFFERENCE,
    ),
    Op(
        name="l1_loss",
        family="loss",
        kind="pointwise_loss",
        summary="Mean absolute error |x - y|",
        inputs=(Input("input", x, REAL), Input("target", y, REAL)),
        params=(REDUCTION,),
        formulas={"": Formula(
            definition=sp.Abs(d),
            kinks=(Kink(y, sp.S.Zero, "sign(0) = 0, as l1_loss's backward"),),
        )},
        torch="torch.nn.functional.l1_loss",
    ),
    Op(
        name="smooth_l1_loss",
        family="loss",
        kind="pointwise_loss",
        summary="Quadratic within beta of the target, linear beyond (Huber / beta)",
        inputs=(Input("input", x, REAL), Input("target", y, REAL)),
        params=(REDUCTION, Param("beta", 1.0, Rule("positive"), beta, Domain(0.2, 3.0))),
        formulas={"": Formula(
            definition=sp.Piecewise((d**2 / (2 * beta), sp.Abs(d) < beta), (sp.Abs(d) - beta / 2, True)),
            stable=_quadratic_then_linear(beta, 1 / beta),
            grads={"input": sp.Max(sp.Min(d, beta), -beta) / beta,
                   "target": -sp.Max(sp.Min(d, beta), -beta) / beta},
        )},
        torch="torch.nn.functional.smooth_l1_loss",
        tolerance=DIFFERENCE,
        notes=("beta must be > 0; PyTorch's beta = 0 is l1_loss.",),
    ),
    Op(
        name="huber_loss",
        family="loss",
        kind="pointwise_loss",
        summary="Huber loss: quadratic within delta of the target, linear beyond",
        inputs=(Input("input", x, REAL), Input("target", y, REAL)),
        params=(REDUCTION, Param("delta", 1.0, Rule("positive"), delta, Domain(0.2, 3.0))),
        formulas={"": Formula(
            definition=sp.Piecewise((d**2 / 2, sp.Abs(d) < delta), (delta * (sp.Abs(d) - delta / 2), True)),
            stable=_quadratic_then_linear(delta),
            grads={"input": sp.Max(sp.Min(d, delta), -delta), "target": -sp.Max(sp.Min(d, delta), -delta)},
        )},
        torch="torch.nn.functional.huber_loss",
        tolerance=DIFFERENCE,
    ),
    Op(
        name="binary_cross_entropy",
        family="loss",
        kind="pointwise_loss",
        summary="Binary cross-entropy of probabilities, logs clamped at -100",
        inputs=(Input("input", x, PROBABILITY), Input("target", y, UNIT)),
        params=(WEIGHT, REDUCTION),
        formulas={"": Formula(
            definition=-w * (y * sp.Piecewise((sp.log(x), x > sp.exp(-100)), (-100, True))
                             + (1 - y) * sp.Piecewise((sp.log(1 - x), 1 - x > sp.exp(-100)), (-100, True))),
            # Both terms are <= 0, so their sum does not cancel (y (log x - log(1 - x)) + log(1 - x),
            # one product fewer, does: 20 float32 ulp where the loss is small).
            stable=-w * (y * _log_x + (1 - y) * _log_1mx),
            grads={"input": w * (x - y) / sp.Max((1 - x) * x, sp.Float("1e-12")),
                   "target": -w * (_log_x - _log_1mx)},
        )},
        torch="torch.nn.functional.binary_cross_entropy",
        fast_paths=({"weight": None},),
        # x - y cancels in the input gradient; the target gradient subtracts two logs.
        tolerance=Tolerance(grad_scale=(sp.Abs(x) + sp.Abs(y)) / (x * (1 - x)) + sp.Abs(sp.log(x)) + sp.Abs(sp.log(1 - x))),
        notes=("As PyTorch: logs are clamped at -100, and the input gradient is "
               "(x - y) / max(x (1 - x), 1e-12) (finite at x = 0 and 1).",),
    ),
    Op(
        name="binary_cross_entropy_with_logits",
        family="loss",
        kind="pointwise_loss",
        summary="Binary cross-entropy of sigmoid(x), computed from the logits",
        inputs=(Input("input", x, LOGITS), Input("target", y, UNIT)),
        params=(WEIGHT, REDUCTION,
                Param("pos_weight", None, Rule("array"), pos_weight, doc="weight of positive examples, per class")),
        formulas={"": Formula(
            definition=-w * (pos_weight * y * sp.log(1 / (1 + sp.exp(-x)))
                             + (1 - y) * sp.log(1 - 1 / (1 + sp.exp(-x)))),
            # log sigma(x) = -softplus(-x) and log(1 - sigma(x)) = -x - softplus(-x), and
            # (1 - y) x + softplus(-x) = x ([x > 0] - y) + log1p(e^{-|x|}): no max(-x, 0) pass, and
            # |[x > 0] - y| <= 1 keeps the product finite.
            stable=w * (x * (indicator(x > 0) - y) + log1p(sp.exp(-sp.Abs(x)))
                        + (pos_weight - 1) * y * softplus(-x)),
            # Without pos_weight these are w (sigmoid(x) - y) and -w x.
            grads={"input": w * ((1 + (pos_weight - 1) * y) * sigmoid(x) - pos_weight * y),
                   "target": w * ((pos_weight - 1) * softplus(-x) - x)},
        )},
        torch="torch.nn.functional.binary_cross_entropy_with_logits",
        fast_paths=({"weight": None, "pos_weight": None},),
        # (1 - y) x and softplus(-x) have opposite signs for x < 0, and the gradient sigmoid(x) - y
        # cancels where the prediction matches the target.
        tolerance=Tolerance(forward_scale=sp.Abs((1 - y) * x) + sp.Abs(1 + (pos_weight - 1) * y) * softplus(-x),
                            grad_scale=1 + sp.Abs(x) + (sp.Abs(pos_weight) + 1) * softplus(-x)),
    ),
    Op(
        name="kl_div",
        family="loss",
        kind="pointwise_loss",
        summary="Kullback-Leibler divergence with log-probability input",
        inputs=(Input("input", x, Domain(-5.0, 0.0, extremes=(-1000.0, -1e-12, 0.0))), Input("target", y, Domain(0.01, 1.0))),
        params=(_reduction("none", "mean", "sum", "batchmean"),
                Param("log_target", False, Rule("bool"), doc="target given as log-probabilities")),
        formulas={
            # y (log y - x) with the log clamped far below any finite log (y = 0 gives 0, as xlogy):
            # one product, and no separate pass for the 0 log 0 case.
            "False": Formula(definition=xlogy(y, y) - y * x, stable=y * (clamped_log(y, -1000) - x),
                             grads={"input": -y, "target": sp.log(y) + 1 - x},
                             tolerance=Tolerance(forward_scale=sp.Abs(y * sp.log(y)) + sp.Abs(y * x),
                                                 grad_scale=sp.Abs(sp.log(y)) + 1 + sp.Abs(x))),
            "True": Formula(definition=sp.exp(y) * (y - x),
                            tolerance=Tolerance(forward_scale=sp.exp(y) * (sp.Abs(y) + sp.Abs(x)),
                                                grad_scale=sp.exp(y) * (sp.Abs(y) + sp.Abs(x) + 1))),
        },
        variant_param="log_target",
        torch="torch.nn.functional.kl_div",
        notes=("reduction='mean' averages over all elements, as PyTorch (which warns); "
               "'batchmean' divides by the batch size and is the true KL divergence.",),
    ),
    Op(
        name="soft_margin_loss",
        family="loss",
        kind="pointwise_loss",
        summary="Two-class logistic loss log(1 + exp(-y x)) for labels y = +-1",
        inputs=(Input("input", x, LOGITS), Input("target", y, Domain(-1.0, 1.0), role="sign", differentiable=False)),
        params=(REDUCTION,),
        formulas={"": Formula(definition=sp.log(1 + sp.exp(-y * x)), stable=softplus(-y * x))},
        torch="torch.nn.functional.soft_margin_loss",
    ),
    Op(
        name="poisson_nll_loss",
        family="loss",
        kind="pointwise_loss",
        summary="Negative log-likelihood of a Poisson target",
        inputs=(Input("input", x, Domain(0.05, 3.0, extremes=(1e-8, 30.0))), Input("target", y, Domain(0.0, 5.0))),
        params=(Param("log_input", True, Rule("bool"), doc="input is log(rate) (True) or the rate (False)"),
                Param("full", False, Rule("bool"), full, doc="add Stirling's approximation of log(y!)"),
                Param("eps", 1e-8, Rule("positive"), eps, doc="added to the rate before the log when log_input=False"),
                REDUCTION),
        formulas={
            "True": Formula(
                definition=sp.exp(x) - y * x + full * sp.Piecewise(
                    (y * sp.log(y) - y + sp.log(2 * sp.pi * y) / 2, y > 1), (0, True)),
                stable=sp.exp(x) - y * x + full * sp.Piecewise(
                    (y * sp.log(sp.Max(y, 1)) - y + sp.log(2 * sp.pi * sp.Max(y, 1)) / 2, y > 1), (0, True)),
                grads={"target": -x + full * sp.Piecewise((sp.log(sp.Max(y, 1)) + 1 / (2 * sp.Max(y, 1)), y > 1),
                                                          (0, True))},
            ),
            "False": Formula(
                definition=x - y * sp.log(x + eps) + full * sp.Piecewise(
                    (y * sp.log(y) - y + sp.log(2 * sp.pi * y) / 2, y > 1), (0, True)),
                stable=x - y * sp.log(x + eps) + full * sp.Piecewise(
                    (y * sp.log(sp.Max(y, 1)) - y + sp.log(2 * sp.pi * sp.Max(y, 1)) / 2, y > 1), (0, True)),
                grads={"target": -sp.log(x + eps) + full * sp.Piecewise(
                    (sp.log(sp.Max(y, 1)) + 1 / (2 * sp.Max(y, 1)), y > 1), (0, True))},
            ),
        },
        variant_param="log_input",
        torch="torch.nn.functional.poisson_nll_loss",
        # exp(x) - y x and x - y log(x + eps) cancel near their minimum; the Stirling term adds more.
        tolerance=Tolerance(forward_scale=sp.exp(x) + x + sp.Abs(y * x) + sp.Abs(y * sp.log(x + eps))
                            + full * (sp.Abs(y * sp.log(y + 1)) + y + 1),
                            grad_scale=sp.exp(x) + 1 + y / (x + eps) + sp.Abs(x) + sp.Abs(sp.log(x + eps))),
        notes=("The Stirling term is added only where target > 1, as PyTorch.",),
    ),
    Op(
        name="gaussian_nll_loss",
        family="loss",
        kind="pointwise_loss",
        summary="Negative log-likelihood of a Gaussian with predicted mean and variance",
        inputs=(Input("input", x, REAL), Input("target", y, REAL),
                Input("var", v, Domain(0.1, 3.0, extremes=(1e-12, 1e6)), role="positive", broadcast=True)),
        params=(Param("full", False, Rule("bool"), full, doc="add the constant log(2 pi) / 2"),
                Param("eps", 1e-6, Rule("positive"), eps, doc="var is clamped to at least eps"),
                REDUCTION),
        formulas={"": Formula(
            definition=(sp.log(v) + d**2 / v) / 2 + full * sp.log(2 * sp.pi) / 2,
            stable=(sp.log(sp.Max(v, eps)) + d**2 / sp.Max(v, eps)) / 2 + full * sp.log(2 * sp.pi) / 2,
            grads={"input": d / sp.Max(v, eps), "target": -d / sp.Max(v, eps),
                   "var": (1 / sp.Max(v, eps) - (d / sp.Max(v, eps)) ** 2) / 2},
        )},
        torch="torch.nn.functional.gaussian_nll_loss",
        tolerance=Tolerance(forward_scale=sp.Abs(sp.log(v)) + (sp.Abs(x) + sp.Abs(y)) ** 2 / v + 1,
                            grad_scale=(sp.Abs(x) + sp.Abs(y)) / v + 1 / v + (sp.Abs(x) + sp.Abs(y)) ** 2 / v**2),
        notes=("var is clamped to eps without blocking its gradient, as PyTorch (clamp under no_grad).",
               "var may have one dimension fewer than input, or size 1 in the last one (homoscedastic).",),
    ),
    Op(
        name="hinge_embedding_loss",
        family="loss",
        kind="pointwise_loss",
        summary="x where y = 1, max(0, margin - x) where y = -1",
        inputs=(Input("input", x, REAL), Input("target", y, Domain(-1.0, 1.0), role="sign", differentiable=False)),
        params=(Param("margin", 1.0, Rule("real"), margin, Domain(0.0, 2.0)), REDUCTION),
        formulas={"": Formula(
            definition=(1 + y) / 2 * x + (1 - y) / 2 * sp.Piecewise((margin - x, x <= margin), (0, True)),
            kinks=(Kink(margin, (1 + y) / 2 - (1 - y) / 2, "clamp_min passes the gradient at the boundary"),),
        )},
        torch="torch.nn.functional.hinge_embedding_loss",
    ),
    Op(
        name="margin_ranking_loss",
        family="loss",
        kind="pointwise_loss",
        summary="max(0, -y (x1 - x2) + margin) for labels y = +-1",
        inputs=(Input("input1", x, REAL), Input("input2", x2, REAL),
                Input("target", y, Domain(-1.0, 1.0), role="sign", differentiable=False)),
        params=(Param("margin", 0.0, Rule("real"), margin, Domain(0.0, 2.0)), REDUCTION),
        formulas={"": Formula(
            definition=sp.Piecewise((margin - y * (x - x2), margin - y * (x - x2) >= 0), (0, True)),
            kinks=(Kink(x2 + margin * y, -y, "clamp_min passes the gradient at the boundary"),),
        )},
        torch="torch.nn.functional.margin_ranking_loss",
        tolerance=Tolerance(forward_scale=sp.Abs(margin) + sp.Abs(x) + sp.Abs(x2)),
    ),
    Op(
        name="sigmoid_focal_loss",
        family="loss",
        kind="pointwise_loss",
        summary="Focal loss (torchvision): cross-entropy down-weighted on easy examples",
        inputs=(Input("inputs", x, LOGITS), Input("targets", y, UNIT)),
        params=(Param("alpha", 0.25, Rule("interval", (0.0, 1.0)), alpha, Domain(0.0, 1.0)),
                Param("gamma", 2.0, Rule("nonnegative"), gamma, Domain(1.0, 4.0)),
                _reduction(default="none")),
        formulas={"": Formula(
            definition=(alpha * y + (1 - alpha) * (1 - y))
            * ((1 - y) * x + sp.log(1 + sp.exp(-x)))
            * (1 - (y / (1 + sp.exp(-x)) + (1 - y) * (1 - 1 / (1 + sp.exp(-x))))) ** gamma,
            # 1 - p_t = y sigma(-x) + (1 - y) sigma(x): no cancellation when p_t -> 1.
            stable=(alpha * y + (1 - alpha) * (1 - y)) * ((1 - y) * x + softplus(-x))
            * (y * sigmoid(-x) + (1 - y) * sigmoid(x)) ** gamma,
        )},
        torch=None,
        # The gradient adds two terms of opposite sign, each a product of rounded factors. The forward raises
        # 1 - p_t, itself two rounded sigmoids, to the power gamma, which multiplies its relative error by gamma
        # (8 ulp of the value at gamma = 4, x = -1.2e-5, y = 0.69: a random hypothesis draw found it).
        tolerance=Tolerance(
            forward_scale=(sp.Abs(x) + 1 + gamma) * ((1 - y) * sp.Abs(x) + softplus(-x))
            * (y * sigmoid(-x) + (1 - y) * sigmoid(x)) ** gamma,
            grad_scale=(sp.Abs(x) + 1) * (1 + gamma * (sp.Abs(x) + softplus(-x)))
            * (y * sigmoid(-x) + (1 - y) * sigmoid(x)) ** (gamma - 1)),
        notes=("torchvision.ops.sigmoid_focal_loss with alpha in [0, 1] (torchvision also accepts alpha < 0 "
               "to disable the class weighting) and default reduction 'none'.",
               "For gamma < 1 the gradient at saturated logits involves 0 ** (gamma - 1): use gamma >= 1.",),
    ),
    Op(
        name="log_cosh",
        family="loss",
        kind="pointwise_loss",
        summary="log(cosh(x - y)): quadratic near the target, linear far from it",
        inputs=(Input("input", x, REAL), Input("target", y, REAL)),
        params=(REDUCTION,),
        formulas={"": Formula(
            definition=sp.log(sp.cosh(d)),
            stable=stable_log_cosh(d),  # cosh never overflows; u^2/2 keeps its digits near 0
            grads={"input": sp.tanh(d), "target": -sp.tanh(d)},
        )},
        torch=None,
        notes=("Not in PyTorch.",),
    ),
)

LOSSES: tuple[Op, ...] = POINTWISE_LOSSES

# --------------------------------------------------------------------------- class losses
# Vector formulas along the class axis: x is a row of logits (or log-probabilities), t the target
# distribution (a one-hot row for class indices), weight the per-class weights, g the upstream
# gradient of the row's loss. The kernel template turns class indices into one-hot rows, applies
# ignore_index, and divides 'mean' by the summed weight of the targets where PyTorch does.
t = sp.Symbol("t", real=True)
g = sp.Symbol("g", real=True)
label_smoothing = sp.Symbol("label_smoothing", nonnegative=True)
p_norm = sp.Symbol("p", positive=True, integer=True)

_shift = x - rowmax(x)
_log_softmax = _shift - sp.log(rowsum(sp.exp(_shift)))
_softmax = sp.exp(_shift) / rowsum(sp.exp(_shift))
_smoothed = (1 - label_smoothing) * t + label_smoothing / NUM_CLASSES
_IGNORE = Param("ignore_index", -100, Rule("integer"), doc="target value whose rows are skipped")
_CLASS_WEIGHT = Param("weight", None, Rule("array"), w, doc="per-class weight, shape (C,)")
CLASS_LOGITS = Domain(-8.0, 8.0, extremes=(-1e4, -1000.0, 1000.0, 1e4))

_margin_h = margin - rowsum(t * x) + x
_margin_a = (1 - t) * rowsum(t * w) * sp.Piecewise((p_norm * _margin_h ** (p_norm - 1), _margin_h > 0), (0, True)) / NUM_CLASSES

_eps_cos = sp.Float("1e-12")  # PyTorch's EPSILON in cosine_embedding_loss
_m1, _m2 = rowsum(x * x) + _eps_cos, rowsum(x2 * x2) + _eps_cos
_cos = rowsum(x * x2) / sp.sqrt(_m1 * _m2)
# Stable form: each row scaled by s = max(max |x|, 1) first, so |x|^2 (inf from |x| ~ 1e154 on) is
# never formed: cos = u.v / sqrt((|u|^2 + eps/s1^2)(|v|^2 + eps/s2^2)) with u = x/s1, v = x2/s2,
# |u|, |v| <= 1; s >= 1 keeps eps/s^2 <= eps, and a row of huge values has |u|^2 >= 1. Grouped keeps
# u whole (SymPy would print u^2 as x^2 / s^2, the overflow again) and real, for the Piecewise.
_s1, _s2 = sp.Max(rowmax(sp.Abs(x)), 1), sp.Max(rowmax(sp.Abs(x2)), 1)
_u, _v = Grouped(x / _s1), Grouped(x2 / _s2)
_n1, _n2 = rowsum(_u * _u) + _eps_cos / _s1**2, rowsum(_v * _v) + _eps_cos / _s2**2
_cos_scaled = rowsum(_u * _v) / sp.sqrt(_n1 * _n2)
_cos_slope = -(1 + y) / 2 + (1 - y) / 2 * sp.Piecewise((1, _cos_scaled - margin >= 0), (0, True))

CLASS_LOSSES: tuple[Op, ...] = (
    Op(
        name="cross_entropy",
        family="loss",
        kind="class_loss",
        summary="Cross-entropy of softmax(input) against class indices or probabilities",
        inputs=(Input("input", x, CLASS_LOGITS), Input("target", t, UNIT, role="class_index")),
        params=(_CLASS_WEIGHT, _IGNORE, REDUCTION,
                Param("label_smoothing", 0.0, Rule("interval", (0.0, 1.0)), label_smoothing, Domain(0.0, 0.3))),
        formulas={"": Formula(
            definition=-rowsum(w * _smoothed * sp.log(sp.exp(x) / rowsum(sp.exp(x)))),
            stable=-rowsum(w * _smoothed * _log_softmax),
            # exp(x - max) times a per-row factor: a row-sized division instead of a full pass.
            grads={"input": sp.exp(_shift) * grouped(g * rowsum(w * _smoothed) / rowsum(sp.exp(_shift)))
                   - g * w * _smoothed,
                   "target": -g * (1 - label_smoothing) * w * _log_softmax},
            assumptions=((rowsum(t), sp.S.One),),
            facts=(("d/dz = softmax(z) - y (no weight, no smoothing, sum(y) = 1)",
                    (_softmax * rowsum(w * _smoothed) - w * _smoothed).xreplace({w: 1, label_smoothing: 0}),
                    _softmax - t),),
        )},
        torch="torch.nn.functional.cross_entropy",
        # x - max x is rounded before exp, and the gradient subtracts w q from softmax * sum(w q).
        tolerance=Tolerance(forward_scale=rowsum(_smoothed * (1 + sp.Abs(_log_softmax))),
                            grad_scale=_softmax * (1 + sp.Abs(_shift)) * rowsum(_smoothed) + _smoothed),
        row_symbols=(x, t, w),
        upstream=g,
        weighted_mean=True,
        fast_paths=({"label_smoothing": 0.0, "weight": None}, {"label_smoothing": 0.0}),
        notes=("Integer targets are class indices (mean divides by the summed weight of the non-ignored "
               "targets); float targets are probabilities along dim 1 (mean divides by the number of rows).",
               "Label smoothing mixes the target with the uniform distribution: (1 - e) y + e / C.",),
    ),
    Op(
        name="nll_loss",
        family="loss",
        kind="class_loss",
        summary="Negative log-likelihood of log-probabilities at the target classes",
        inputs=(Input("input", x, Domain(-8.0, 0.0, extremes=(-1e4, -1000.0, 0.0))),
                Input("target", t, UNIT, role="class_index", differentiable=False)),
        params=(_CLASS_WEIGHT, _IGNORE, REDUCTION),
        formulas={"": Formula(definition=-rowsum(w * t * x), grads={"input": -g * w * t})},
        torch="torch.nn.functional.nll_loss",
        row_symbols=(x, t, w),
        upstream=g,
        weighted_mean=True,
    ),
    Op(
        name="multilabel_soft_margin_loss",
        family="loss",
        kind="class_loss",
        summary="Per-class logistic loss averaged over the classes, for multi-hot targets",
        inputs=(Input("input", x, CLASS_LOGITS), Input("target", t, UNIT)),
        params=(_CLASS_WEIGHT, REDUCTION),
        formulas={"": Formula(
            definition=-rowsum(w * (t * sp.log(1 / (1 + sp.exp(-x))) + (1 - t) * sp.log(1 - 1 / (1 + sp.exp(-x)))))
            / NUM_CLASSES,
            stable=rowsum(w * (t * softplus(-x) + (1 - t) * softplus(x))) / NUM_CLASSES,
            grads={"input": g * w * (sigmoid(x) - t) / NUM_CLASSES, "target": -g * w * x / NUM_CLASSES},
        )},
        torch="torch.nn.functional.multilabel_soft_margin_loss",
        row_symbols=(x, t, w),
        upstream=g,
        tolerance=Tolerance(grad_scale=1 + sp.Abs(x)),
    ),
    Op(
        name="multi_margin_loss",
        family="loss",
        kind="class_loss",
        summary="Multi-class hinge loss: sum over wrong classes of max(0, margin - x_y + x_j)^p / C",
        inputs=(Input("input", x, CLASS_LOGITS), Input("target", t, UNIT, role="class_index", differentiable=False)),
        params=(Param("p", 1, Rule("choice", (1, 2)), p_norm), Param("margin", 1.0, Rule("real"), margin, Domain(0.0, 2.0)),
                _CLASS_WEIGHT, REDUCTION),
        formulas={"": Formula(
            definition=rowsum((1 - t) * rowsum(t * w) * sp.Piecewise((_margin_h**p_norm, _margin_h > 0), (0, True)))
            / NUM_CLASSES,
            grads={"input": g * (_margin_a - t * rowsum(_margin_a))},
        )},
        torch="torch.nn.functional.multi_margin_loss",
        row_symbols=(x, t, w),
        upstream=g,
        tolerance=Tolerance(forward_scale=(1 + sp.Abs(x) + margin) ** 2, grad_scale=1 + sp.Abs(x) + margin),
    ),
    Op(
        name="cosine_embedding_loss",
        family="loss",
        kind="class_loss",
        summary="1 - cos(x1, x2) for y = 1, max(0, cos(x1, x2) - margin) for y = -1",
        inputs=(Input("input1", x, REAL), Input("input2", x2, REAL),
                Input("target", y, Domain(-1.0, 1.0), role="sign", differentiable=False)),
        params=(Param("margin", 0.0, Rule("interval", (-1.0, 1.0)), margin, Domain(-0.5, 0.5)), REDUCTION),
        formulas={"": Formula(
            definition=(1 + y) / 2 * (1 - _cos) + (1 - y) / 2 * sp.Piecewise((_cos - margin, _cos - margin >= 0), (0, True)),
            stable=(1 + y) / 2 * (1 - _cos_scaled)
            + (1 - y) / 2 * sp.Piecewise((_cos_scaled - margin, _cos_scaled - margin >= 0), (0, True)),
            # d cos / dx1 = x2 / sqrt(m1 m2) - cos x1 / m1, in the scaled terms (divided by s1 last)
            grads={"input1": g * _cos_slope * (_v / sp.sqrt(_n1 * _n2) - _cos_scaled * _u / _n1) / _s1,
                   "input2": g * _cos_slope * (_u / sp.sqrt(_n1 * _n2) - _cos_scaled * _v / _n2) / _s2},
        )},
        torch="torch.nn.functional.cosine_embedding_loss",
        row_symbols=(x, x2),
        upstream=g,
        # The gradient cancels as x2 becomes parallel to x1: its error is relative to 1/|x1| + 1/|x2|.
        tolerance=Tolerance(forward_scale=sp.S.One,
                            grad_scale=(1 / sp.sqrt(_m1) + 1 / sp.sqrt(_m2)) * (1 + sp.Abs(x) + sp.Abs(x2))),
        notes=("Rows are along dim 1 of (N, D) inputs (or the only axis of 1-D inputs); "
               "PyTorch adds 1e-12 to each squared norm.",),
    ),
)

LOSSES += CLASS_LOSSES
