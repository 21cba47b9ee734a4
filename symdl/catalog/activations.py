"""Catalog entries: activation functions (``torch.nn.functional`` names).

Piecewise definitions put the equality on the side PyTorch's backward uses,
so the derivative SymPy takes *is* PyTorch's subgradient at the kink
(``relu'(0) = 0`` because the definition says ``0 if x <= 0``).

Where a branch of a piecewise formula would overflow when evaluated outside
its own region (NumPy evaluates every branch), the stable form clamps that
branch's argument to its region; the clamp is the identity where the branch
is used, so the stable form equals the definition.
"""

from __future__ import annotations

import sympy as sp

from symdl.catalog.spec import (DERIVATIVE, RESULT, Case, Domain, Formula, Input, Kink, Op, OutputForm, Param, Rule,
                                 Tolerance)
from symdl.functions import (expm1, grouped, indicator, normal_cdf, quotient_at_zero, rowmax, rowsum, sigmoid,
                             softplus, x_normal_cdf)

x = sp.Symbol("x", real=True)
g = sp.Symbol("g", real=True)

#: Activations are sampled on a moderate range and pinned at extremes that
#: overflow naive formulas in float32 and float64.
ACTIVATION_DOMAIN = Domain(-6.0, 6.0, extremes=(-1e30, -1000.0, -100.0, -30.0, 30.0, 100.0, 1000.0, 1e30))
INPUT = (Input("input", x, ACTIVATION_DOMAIN),)

alpha = sp.Symbol("alpha", positive=True)
beta = sp.Symbol("beta", positive=True)
threshold = sp.Symbol("threshold", real=True)
lambd = sp.Symbol("lambd", nonnegative=True)
negative_slope = sp.Symbol("negative_slope", real=True)
min_val = sp.Symbol("min_val", real=True)
max_val = sp.Symbol("max_val", real=True)

# SELU's constants (Klambauer et al., 2017), to the digits PyTorch uses.
SELU_ALPHA = sp.Rational("1.6732632423543772848170429916717")
SELU_SCALE = sp.Rational("1.0507009873554804934193349852946")


def _clamp(e: sp.Expr, low: sp.Expr, high: sp.Expr) -> sp.Expr:
    return sp.Max(sp.Min(e, high), low)


def _elu_formula(scale: sp.Expr, a: sp.Expr, input_scale: sp.Expr) -> Formula:
    """ELU family: ``scale * (a (exp(input_scale x) - 1) if x <= 0 else x)``.

    PyTorch's ``elu_backward`` takes the ``x <= 0`` branch at 0. Where
    ``a * input_scale <= 1`` the negative branch lies above x (it is convex with
    slope ``a * input_scale`` at 0), so the forward is one maximum; where it
    equals 1 the negative branch's derivative is exactly 1 at x >= 0, so the
    gradient needs no branch at all. celu has ``a * input_scale = 1`` for every
    alpha; elu has it at alpha = 1 (its default) and gets those forms as cases.
    """
    # min(x, 0), clamped where exp has long underflowed (input_scale x = -1000): x / alpha would
    # overflow for alpha < 1 at -max.
    negative = sp.Max(sp.Min(x, 0), -1000 / input_scale)
    slope = a * input_scale
    one_max = scale * sp.Max(x, a * expm1(input_scale * negative))
    branch_free = scale * slope * sp.exp(input_scale * negative)
    definition = scale * sp.Piecewise((a * (sp.exp(input_scale * x) - 1), x <= 0), (x, True))
    kinks = (Kink(sp.S.Zero, scale * slope, "elu_backward uses the x <= 0 branch at 0"),)
    from_output = _elu_from_output(scale, a, input_scale)
    # At a = 1 (every default) neither x nor expm1 is scaled: two passes fewer.
    unit = ((a, 1),) if isinstance(a, sp.Symbol) else ()
    if sp.simplify(slope - 1) == 0:
        cases = (Case(sp.Eq(a, 1), one_max.subs(unit), {"input": branch_free.subs(unit)},
                      "alpha = 1: x and expm1 unscaled"),) if unit else ()
        return Formula(definition=definition, stable=one_max, grads={"input": branch_free}, kinks=kinks, cases=cases,
                       from_output=from_output)
    cases = ()
    if slope.free_symbols:
        cases = (
            Case(sp.Eq(slope, 1), one_max.subs(unit), {"input": branch_free.subs(unit)},
                 "one maximum, and exp(min(x, 0)) = 1 for x >= 0",
                 from_output={"input": (input_scale * sp.Min(RESULT, 0) + scale).subs(unit)}),
            Case(slope <= 1, one_max, why="the negative branch lies above x"),
        )
    return Formula(
        definition=definition,
        stable=scale * (sp.Max(x, 0) + a * expm1(input_scale * negative)),
        # Each branch masked, exactly: the negative one zeroed where x > 0, then 1 added there (no
        # 1 - slope e^... temporary). (A mask multiplies an array: a Python float times a boolean
        # mask would be float64.)
        grads={"input": grouped(scale * (grouped(slope * sp.exp(input_scale * negative)) * indicator(x <= 0)
                                         + indicator(x > 0)))},
        kinks=kinks,
        cases=cases,
        from_output=from_output,
    )


def _elu_from_output(scale: sp.Expr, a: sp.Expr, input_scale: sp.Expr) -> OutputForm:
    """ELU family from its output y: ``input_scale (y + scale a)`` for x <= 0 (y <= 0 there), else ``scale``.

    ``y + scale a = scale a e^{input_scale x}``: PyTorch's ``elu_backward(is_result=True)``. Where
    ``a * input_scale = 1`` both branches meet in ``input_scale min(y, 0) + scale`` (no mask).
    """
    slope = a * input_scale
    low = sp.Min(RESULT, 0)
    if sp.simplify(slope - 1) == 0:  # celu: both branches are input_scale min(y, 0) + scale
        grad = input_scale * low + scale
    else:  # the mask multiplies an array (a Python float times a boolean mask would be float64)
        grad = grouped(input_scale * low + scale * (slope - 1)) * indicator(RESULT <= 0) + scale
    return OutputForm(
        grads={"input": grad}, scale=scale * slope, grad_ulp=4.0,
        accuracy="for x << 0 the output is near -scale * alpha and y + scale * alpha cancels: the error is up to "
                 "a few units in the last place of the gradient's largest value (scale * alpha * input scale), "
                 "not of e^x itself (as PyTorch's elu_backward with is_result=True).")


_SQRT_2_OVER_PI = sp.sqrt(2 / sp.pi)
_GELU_C = sp.Rational(44715, 1000000)
# 1 + tanh(v) = 2 sigmoid(2 v) avoids the cancellation of 1 + tanh(v) for x < 0. Beyond |x| = 30,
# sigmoid(2 v) is exactly 0 or 1 in float64 and float32, so clamping there changes no bit.
_gelu_u = _clamp(x, -30, 30)
_gelu_v = _SQRT_2_OVER_PI * (_gelu_u + _GELU_C * _gelu_u**3)
_gelu_s = sigmoid(2 * _gelu_v)
_gelu_e = sp.exp(-sp.Abs(2 * _gelu_v))
_gelu_r = 1 / (1 + _gelu_e)
# exp(-800) is already 0; the clamp keeps x^2 finite (no overflow warning), in one pass (np.clip) where
# min(|x|, 40) took two
_gelu_phi = sp.exp(-(_clamp(x, -40, 40) ** 2) / 2) / sp.sqrt(2 * sp.pi)


# Mish with one exp: tanh(softplus x) = n / (n + 2), n = w (w + 2), w = e^x. Beyond x = 20 the
# ratio is 1 in float32 and float64 and x sigmoid(x) (1 - t^2) < ulp(1), so w and the x in that
# term are clamped there (no overflow of w^2); below -1000, w = 0 exactly, and the clamp keeps
# 4 u finite (4 * -max overflows, and inf * 0 is NaN).
_mish_u = _clamp(x, -1000, 20)
_mish_w = sp.exp(_mish_u)
_mish_n = _mish_w * (_mish_w + 2)


_softplus_bound = sp.Max(1000, 2 * sp.Abs(threshold)) / beta
_softplus_z = beta * _clamp(x, -_softplus_bound, _softplus_bound)
_tanh_e = grouped(sp.exp(-sp.Abs(x))) ** 2  # exp(-2|x|)


def _logistic_slope(z: sp.Expr) -> sp.Expr:
    """sigma'(z) = e / (1 + e)^2 with e = exp(-|z|): one exp, accurate in both tails."""
    e = sp.exp(-sp.Abs(z))
    return e * (1 / (1 + e)) ** 2


ACTIVATIONS: tuple[Op, ...] = (
    Op(
        name="relu",
        family="activation",
        kind="elementwise",
        summary="Rectified linear unit max(0, x)",
        inputs=INPUT,
        params=(),
        formulas={"": Formula(
            definition=sp.Piecewise((0, x <= 0), (x, True)),
            stable=sp.Max(x, 0),
            grads={"input": sp.Piecewise((0, x <= 0), (1, True))},
            kinks=(Kink(sp.S.Zero, sp.S.Zero, "threshold_backward passes the gradient only where x > 0"),),
            from_output=OutputForm({"input": sp.Piecewise((0, RESULT <= 0), (1, True))}, grad_ulp=0.0),
        )},
        torch="torch.nn.functional.relu",
    ),
    Op(
        name="relu6",
        family="activation",
        kind="elementwise",
        summary="ReLU capped at 6: min(max(0, x), 6)",
        inputs=INPUT,
        params=(),
        formulas={"": Formula(
            definition=sp.Piecewise((0, x <= 0), (6, x >= 6), (x, True)),
            stable=_clamp(x, 0, 6),
            grads={"input": sp.Piecewise((0, x <= 0), (0, x >= 6), (1, True))},
            # the open interval 0 < y < 6 as one mask (two compares and an and)
            from_output=OutputForm({"input": sp.Piecewise((1, (RESULT > 0) & (RESULT < 6)), (0, True))}, grad_ulp=0.0),
            kinks=(
                Kink(sp.S.Zero, sp.S.Zero, "hardtanh_backward: zero where x <= min_val"),
                Kink(sp.Integer(6), sp.S.Zero, "hardtanh_backward: zero where x >= max_val"),
            ),
        )},
        torch="torch.nn.functional.relu6",
    ),
    Op(
        name="leaky_relu",
        family="activation",
        kind="elementwise",
        summary="Leaky ReLU: x if x > 0 else negative_slope * x",
        inputs=INPUT,
        # Sampled on both sides of |slope| = 1, where the kernel switches forms.
        params=(Param("negative_slope", 0.01, Rule("real"), negative_slope, Domain(-0.5, 2.0)),),
        formulas={"": Formula(
            definition=sp.Piecewise((negative_slope * x, x <= 0), (x, True)),
            stable=sp.Max(x, 0) + negative_slope * sp.Min(x, 0),
            # 0 < |slope| <= 1: x > 0 gives x >= slope x, x <= 0 gives slope x >= x; slope x cannot overflow.
            # Not at slope 0, where slope x is 0 * inf = NaN at x = inf (PyTorch, and the formula, give inf).
            cases=(Case(sp.And(sp.Abs(negative_slope) <= 1, sp.Ne(negative_slope, 0)), sp.Max(x, negative_slope * x),
                        why="max(x, slope x), exact"),),
            grads={"input": sp.Piecewise((negative_slope, x <= 0), (1, True))},
            kinks=(Kink(sp.S.Zero, negative_slope, "leaky_relu_backward uses the slope where x <= 0"),),
        )},
        torch="torch.nn.functional.leaky_relu",
    ),
    Op(
        name="elu",
        family="activation",
        kind="elementwise",
        summary="Exponential linear unit",
        inputs=INPUT,
        params=(Param("alpha", 1.0, Rule("positive"), alpha, Domain(0.1, 3.0)),),
        formulas={"": _elu_formula(sp.S.One, alpha, sp.S.One)},
        torch="torch.nn.functional.elu",
        notes=("alpha must be > 0 (PyTorch also accepts negative alpha, which is rarely meant).",),
    ),
    Op(
        name="selu",
        family="activation",
        kind="elementwise",
        summary="Scaled ELU with the self-normalising constants",
        inputs=INPUT,
        params=(),
        formulas={"": _elu_formula(SELU_SCALE, SELU_ALPHA, sp.S.One)},
        torch="torch.nn.functional.selu",
    ),
    Op(
        name="celu",
        family="activation",
        kind="elementwise",
        summary="Continuously differentiable ELU",
        inputs=INPUT,
        params=(Param("alpha", 1.0, Rule("positive"), alpha, Domain(0.1, 3.0)),),
        formulas={"": _elu_formula(sp.S.One, alpha, 1 / alpha)},
        torch="torch.nn.functional.celu",
        tolerance=Tolerance(forward_ulp=4.0, grad_ulp=4.0, grad_scale=sp.exp(sp.Min(x, 0) / alpha) * (1 + sp.Abs(x / alpha))),
        notes=("x / alpha is rounded before exp, whose condition number is |x / alpha|; the gradient's error is "
               "measured relative to that.",
               "PyTorch's celu backward rounds 1/alpha to float32 (about 1e-8 relative); symdl uses the exact value.",),
    ),
    Op(
        name="gelu",
        family="activation",
        kind="elementwise",
        summary="Gaussian error linear unit x * Phi(x) (or its tanh approximation)",
        inputs=INPUT,
        params=(Param("approximate", "none", Rule("choice", ("none", "tanh")), doc="'none': exact erf form; 'tanh': Hendrycks-Gimpel approximation"),),
        formulas={
            "none": Formula(
                definition=x / 2 * (1 + sp.erf(x / sp.sqrt(2))),
                # one primitive, so that the NumPy kernel fuses x Phi(x) (float32: max(x, 0) - |x| Q(|x|) in one pass
                # over cache-sized blocks); the exports print the product x * ndtr(x)
                stable=x_normal_cdf(x),
                # the density as one unit, then times x: one temporary for x * phi instead of two
                grads={"input": normal_cdf(x) + x * grouped(_gelu_phi)},
                # Phi's condition number grows like x**2 in the left tail, and x / sqrt(2) is
                # rounded before erfc: the error is relative to value * (1 + x**2).
                tolerance=Tolerance(forward_scale=x * normal_cdf(x) * (1 + x**2),
                                    grad_scale=(normal_cdf(x) + sp.Abs(x) * _gelu_phi) * (1 + x**2)),
                # From the saved output y = x Phi(x) (PyTorch saves only the input and recomputes erf, the
                # forward's whole cost): Phi + x phi = (y + x^2 phi) / x, computed in the density's one
                # buffer (Phi = y / x and x phi would need two fresh arrays, and a fresh array costs more
                # than several passes). y + x^2 phi cancels only where the gradient itself does (x near
                # -0.75). For |x| < eps/8 the kernel takes the quotient's value and slope at 0 instead,
                # Phi(0) = 1/2 and 2 phi(0) = sqrt(2/pi) (no 0/0 at x = 0, no subnormal y; O(x^2) apart).
                # The tanh variant has none: it costs one exp, and from y its sigmoid slope s (1 - s) with
                # s = y / x cancels as s nears 1 (float32: 17-29 ulp for 2 < x < 6, against 1-2 from x).
                from_output=OutputForm({"input": quotient_at_zero(RESULT + x * grouped(x * grouped(_gelu_phi)), x,
                                                                  sp.Rational(1, 2), _SQRT_2_OVER_PI)}),
            ),
            "tanh": Formula(
                definition=x / 2 * (1 + sp.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x**3))),
                stable=x * _gelu_s,
                # sigma(2 v) and its slope share e = exp(-|2 v|): sigma = max(e, [x >= 0]) / (1 + e) (v has x's sign).
                # v'(x) first, in u's buffer (u is not needed after it): no extra temporary.
                grads={"input": _gelu_r * (sp.Max(_gelu_e, indicator(x >= 0))
                                           + grouped(2 * _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * _gelu_u**2))
                                           * x * _gelu_e * _gelu_r)},
                # v(x) is rounded before the sigmoid, whose condition number is |2 v| in the left tail.
                tolerance=Tolerance(
                    forward_scale=x * _gelu_s * (1 + sp.Abs(2 * _gelu_v)),
                    grad_scale=(_gelu_s + 2 * sp.Abs(x) * _logistic_slope(2 * _gelu_v)
                                * (1 + 3 * _GELU_C * _gelu_u**2)) * (1 + sp.Abs(2 * _gelu_v)) ** 2),
            ),
        },
        variant_param="approximate",
        torch="torch.nn.functional.gelu",
        notes=("Where the gradient of the exact form is subnormal (float32: x < -13.34; float64: x < -37.71) it is "
               "computed through subnormal intermediates (e^{-x^2/2} underflows first): its error is below 4e-6 "
               "(float32) and 7e-4 (float64) of the smallest normal number, the unit subnormal results are "
               "counted in (as every bound here), but up to about 31 units of the smallest subnormal number in "
               "float32 (1e-3 relative near x = -13.85).",),
    ),
    Op(
        name="silu",
        family="activation",
        kind="elementwise",
        summary="Sigmoid linear unit (swish) x * sigmoid(x)",
        inputs=INPUT,
        params=(),
        formulas={"": Formula(
            definition=x / (1 + sp.exp(-x)),
            stable=x * sigmoid(x),
            grads={"input": sigmoid(x) * (1 + x * (1 - sigmoid(x)))},
        )},
        torch="torch.nn.functional.silu",
        tolerance=Tolerance(grad_scale=sigmoid(x) * (1 + sp.Abs(x))),
        notes=("The gradient has a root near x = -1.28; errors there are relative to the size of its terms.",),
    ),
    Op(
        name="mish",
        family="activation",
        kind="elementwise",
        summary="Mish x * tanh(softplus(x))",
        inputs=INPUT,
        params=(),
        formulas={"": Formula(
            definition=x * sp.tanh(sp.log(1 + sp.exp(x))),
            stable=x * grouped(_mish_n / (_mish_n + 2)),
            # One division: w ((w + 2) D + 4 u (w + 1)) / D^2 with D = n + 2; at the clamp w = e^20,
            # D^2 ~ w^4 ~ 5e34 still fits float32.
            grads={"input": grouped(_mish_w * ((grouped(_mish_w + 1) + 1) * (_mish_n + 2)
                                               + 4 * _mish_u * grouped(_mish_w + 1)))
                   / grouped((_mish_n + 2) ** 2)},
            facts=(("mish' = tanh(softplus x) + x sigmoid(x) (1 - tanh^2(softplus x))", DERIVATIVE,
                    sp.tanh(softplus(x)) + x * sigmoid(x) * (1 - sp.tanh(softplus(x)) ** 2)),),
        )},
        torch="torch.nn.functional.mish",
        tolerance=Tolerance(grad_scale=1 + sp.Abs(x) * sigmoid(x)),
        notes=("The gradient has a root near x = -1.19; errors there are relative to the size of its terms.",),
    ),
    Op(
        name="softplus",
        family="activation",
        kind="elementwise",
        summary="Softplus log(1 + exp(beta x)) / beta, linear above the threshold",
        inputs=INPUT,
        params=(
            Param("beta", 1.0, Rule("positive"), beta, Domain(0.5, 3.0)),
            Param("threshold", 20.0, Rule("real"), threshold, Domain(5.0, 30.0)),
        ),
        formulas={"": Formula(
            definition=sp.Piecewise((x, beta * x > threshold), (sp.log(1 + sp.exp(beta * x)) / beta, True)),
            # beta x of x clamped at +-max(1000, 2|threshold|) / beta: the same branch and, below, the
            # same value (exp(-1000) = 0), and beta x cannot overflow for beta > 1.
            stable=sp.Piecewise((x, _softplus_z > threshold), (softplus(_softplus_z) / beta, True)),
            grads={"input": sp.Piecewise((1, _softplus_z > threshold), (sigmoid(_softplus_z), True))},
            # sigma(beta x) = 1 - e^{-beta y}: one expm1 of the output instead of the sigmoid's exp and division.
            # grouped: the minus sign negates expm1's own temporary, not a copy of the upstream gradient.
            from_output=OutputForm({"input": sp.Piecewise((1, _softplus_z > threshold),
                                                          (grouped(-expm1(-beta * RESULT)), True))}),
            kinks=(Kink(threshold / beta, sigmoid(threshold),
                        "a jump of about exp(-threshold): softplus_backward uses the sigmoid at beta x = threshold"),),
            # beta * x is rounded before exp, whose condition number is |beta x|.
            tolerance=Tolerance(forward_scale=softplus(beta * x) / beta * (1 + sp.Abs(beta * x)),
                                grad_scale=sigmoid(beta * x) * (1 + sp.Abs(beta * x))),
        )},
        torch="torch.nn.functional.softplus",
        notes=("Reverts to the identity where beta * x > threshold, as PyTorch does.",),
    ),
    Op(
        name="softsign",
        family="activation",
        kind="elementwise",
        summary="Softsign x / (1 + |x|)",
        inputs=INPUT,
        params=(),
        formulas={"": Formula(
            definition=x / (1 + sp.Abs(x)),
            grads={"input": (1 / (1 + sp.Abs(x))) ** 2},
        )},
        torch="torch.nn.functional.softsign",
    ),
    Op(
        name="sigmoid",
        family="activation",
        kind="elementwise",
        summary="Logistic sigmoid 1 / (1 + exp(-x))",
        inputs=INPUT,
        params=(),
        formulas={"": Formula(
            definition=1 / (1 + sp.exp(-x)),
            stable=sigmoid(x),
            grads={"input": _logistic_slope(x)},
            facts=(("sigma' = sigma (1 - sigma)", DERIVATIVE, sigmoid(x) * (1 - sigmoid(x))),),
            from_output=OutputForm(
                {"input": grouped(RESULT * (1 - RESULT))}, scale=sigmoid(x),  # grouped: one temporary, then g
                accuracy="1 - y cancels where y is near 1: the absolute error is about one unit in the last place "
                         "of y, so the relative error grows like e^x for x > 0 and the gradient is 0 once y rounds "
                         "to 1 (x > 17 in float32, x > 37 in float64), as in PyTorch."),
            # sigma' = sigma(x) sigma(-x): both factors accurate in both tails. A second exp for NumPy, but for
            # PyTorch one sigmoid call, cheaper than the exp and the division of the form from x.
            more_from_output=(OutputForm({"input": grouped(RESULT * sigmoid(-x))}),),
        )},
        torch="torch.sigmoid",
    ),
    Op(
        name="logsigmoid",
        family="activation",
        kind="elementwise",
        summary="Log of the sigmoid, -softplus(-x)",
        inputs=INPUT,
        params=(),
        formulas={"": Formula(
            definition=sp.log(1 / (1 + sp.exp(-x))),
            stable=-softplus(-x),
            grads={"input": sigmoid(-x)},
            # sigma(-x) = 1 - e^y: one expm1 of the output, accurate in both tails.
            from_output=OutputForm({"input": grouped(-expm1(RESULT))}),  # negating expm1's temporary, not g
        )},
        torch="torch.nn.functional.logsigmoid",
    ),
    Op(
        name="tanh",
        family="activation",
        kind="elementwise",
        summary="Hyperbolic tangent",
        inputs=INPUT,
        params=(),
        formulas={"": Formula(
            definition=sp.tanh(x),
            # e = exp(-|x|)^2, not exp(-2|x|): -2|x| overflows for |x| > max / 2 (exp(-inf) = 0 is
            # right, but the flag is raised); a square costs what the product by -2 did.
            grads={"input": 4 * _tanh_e * (1 / (1 + _tanh_e)) ** 2},
            facts=(("tanh' = 1 - tanh^2", DERIVATIVE, 1 - sp.tanh(x) ** 2),),
            from_output=OutputForm(
                {"input": 1 - RESULT**2}, scale=sp.S.One,
                accuracy="1 - y^2 cancels where |y| is near 1: the absolute error is about one unit in the last "
                         "place of 1, so the relative error grows like e^{2|x|} and the gradient is 0 once y rounds "
                         "to +-1 (|x| > 9 in float32, |x| > 19 in float64), as in PyTorch."),
            # 1 + |y| = 2 sigma(2|x|) and 1 - |y| = 2 sigma(-2|x|): tanh' = 2 (1 + |y|) sigma(-2|x|), both factors
            # accurate in both tails. For PyTorch one sigmoid call, cheaper than the exp and the division from x.
            more_from_output=(OutputForm({"input": grouped(2 * grouped(1 + sp.Abs(RESULT)) * sigmoid(-2 * sp.Abs(x)))}),),
        )},
        torch="torch.tanh",
    ),
    Op(
        name="hardtanh",
        family="activation",
        kind="elementwise",
        summary="Clamp to [min_val, max_val]",
        inputs=INPUT,
        params=(
            Param("min_val", -1.0, Rule("real"), min_val, Domain(-2.0, -0.5)),
            Param("max_val", 1.0, Rule("at_least", ("min_val",)), max_val, Domain(0.5, 2.0)),
        ),
        formulas={"": Formula(
            definition=sp.Piecewise((min_val, x <= min_val), (max_val, x >= max_val), (x, True)),
            stable=_clamp(x, min_val, max_val),
            grads={"input": sp.Piecewise((0, x <= min_val), (0, x >= max_val), (1, True))},
            from_output=OutputForm({"input": sp.Piecewise((1, (RESULT > min_val) & (RESULT < max_val)), (0, True))},
                                   grad_ulp=0.0),
            kinks=(
                Kink(min_val, sp.S.Zero, "hardtanh_backward: zero where x <= min_val"),
                Kink(max_val, sp.S.Zero, "hardtanh_backward: zero where x >= max_val"),
            ),
        )},
        torch="torch.nn.functional.hardtanh",
    ),
    Op(
        name="hardsigmoid",
        family="activation",
        kind="elementwise",
        summary="Piecewise-linear sigmoid relu6(x + 3) / 6",
        inputs=INPUT,
        params=(),
        formulas={"": Formula(
            definition=sp.Piecewise((0, x <= -3), (1, x >= 3), (x / 6 + sp.Rational(1, 2), True)),
            # (x + 3) is exact near the root at -3 (Sterbenz); x/6 + 1/2 would cancel there.
            stable=_clamp(x + 3, 0, 6) / 6,
            grads={"input": sp.Piecewise((0, x <= -3), (0, x >= 3), (sp.Rational(1, 6), True))},
            kinks=(
                Kink(sp.Integer(-3), sp.S.Zero, "hardsigmoid_backward: zero unless -3 < x < 3"),
                Kink(sp.Integer(3), sp.S.Zero, "hardsigmoid_backward: zero unless -3 < x < 3"),
            ),
        )},
        torch="torch.nn.functional.hardsigmoid",
    ),
    Op(
        name="hardswish",
        family="activation",
        kind="elementwise",
        summary="x * relu6(x + 3) / 6",
        inputs=INPUT,
        params=(),
        formulas={"": Formula(
            definition=sp.Piecewise((0, x <= -3), (x, x >= 3), (x * (x + 3) / 6, True)),
            # x + 3 and 2x + 3 are exact near the roots at -3 and -3/2 (Sterbenz), where x/6 + 1/2
            # and x/3 + 1/2 would cancel; the Mul is kept unevaluated so SymPy does not distribute it.
            # The clamp is divided by 6 before the product with x (x * 6 could overflow), and then
            # the product reuses its buffer.
            stable=x * grouped(_clamp(x + 3, 0, 6) / 6),
            # 2x + 3 of the clamped x: 2x overflows at |x| > max / 2, and inf * 0 would be NaN.
            grads={"input": grouped(2 * _clamp(x, -3, 3) + 3) / 6 * indicator(sp.Abs(x) < 3) + indicator(x >= 3)},
            kinks=(
                Kink(sp.Integer(-3), sp.S.Zero, "hardswish_backward: x/3 + 1/2 only for -3 < x < 3"),
                Kink(sp.Integer(3), sp.S.One, "hardswish_backward: x/3 + 1/2 only for -3 < x < 3"),
            ),
        )},
        torch="torch.nn.functional.hardswish",
    ),
    Op(
        name="tanhshrink",
        family="activation",
        kind="elementwise",
        summary="x - tanh(x)",
        inputs=INPUT,
        params=(),
        formulas={"": Formula(
            definition=x - sp.tanh(x),
            grads={"input": sp.tanh(x) ** 2},
        )},
        torch="torch.nn.functional.tanhshrink",
        tolerance=Tolerance(forward_scale=sp.Abs(x)),
        notes=("x - tanh(x) cancels near 0; as in PyTorch the error there is relative to |x|.",),
    ),
    Op(
        name="softshrink",
        family="activation",
        kind="elementwise",
        summary="Soft thresholding: shrink towards 0 by lambd",
        inputs=INPUT,
        params=(Param("lambd", 0.5, Rule("nonnegative"), lambd, Domain(0.0, 2.0)),),
        formulas={"": Formula(
            definition=sp.Piecewise((x - lambd, x > lambd), (x + lambd, x < -lambd), (0, True)),
            stable=x - _clamp(x, -lambd, lambd),
            grads={"input": sp.Piecewise((1, sp.Abs(x) > lambd), (0, True))},  # one compare, no -x buffer
            kinks=(
                Kink(lambd, sp.S.Zero, "softshrink_backward: zero where |x| <= lambd"),
                Kink(-lambd, sp.S.Zero, "softshrink_backward: zero where |x| <= lambd"),
            ),
        )},
        torch="torch.nn.functional.softshrink",
    ),
    Op(
        name="hardshrink",
        family="activation",
        kind="elementwise",
        summary="Hard thresholding: zero where |x| <= lambd",
        inputs=INPUT,
        params=(Param("lambd", 0.5, Rule("nonnegative"), lambd, Domain(0.0, 2.0)),),
        formulas={"": Formula(
            definition=sp.Piecewise((x, x > lambd), (x, x < -lambd), (0, True)),
            stable=sp.Piecewise((x, sp.Abs(x) > lambd), (0, True)),
            grads={"input": sp.Piecewise((1, sp.Abs(x) > lambd), (0, True))},
            kinks=(
                Kink(lambd, sp.S.Zero, "hardshrink_backward: zero where |x| <= lambd"),
                Kink(-lambd, sp.S.Zero, "hardshrink_backward: zero where |x| <= lambd"),
            ),
        )},
        torch="torch.nn.functional.hardshrink",
    ),
)

# Softmax family: vector formulas along ``dim`` (see symdl.functions.rowsum).
_shifted_exp = sp.exp(x - rowmax(x))
_softmax = _shifted_exp / rowsum(_shifted_exp)
_softmin = sp.exp(-x - rowmax(-x)) / rowsum(sp.exp(-x - rowmax(-x)))
_DIM = Param("dim", None, Rule("integer"), doc="axis to normalise over; None uses PyTorch's legacy implicit choice")
ROW_DOMAIN = Domain(-8.0, 8.0, extremes=(-1e4, 1e4))

ACTIVATIONS += (
    Op(
        name="softmax",
        family="activation",
        kind="row",
        summary="Normalised exponentials along dim",
        inputs=(Input("input", x, ROW_DOMAIN),),
        params=(_DIM,),
        formulas={"": Formula(
            definition=sp.exp(x) / rowsum(sp.exp(x)),
            stable=_softmax,
            grads={"input": _softmax * (g - rowsum(g * _softmax))},
            from_output=OutputForm({"input": RESULT * (g - rowsum(g * RESULT))}),
        )},
        torch="torch.nn.functional.softmax",
        # x - max(x) is rounded before exp (condition number |x - max x|); the VJP subtracts terms.
        tolerance=Tolerance(forward_scale=_softmax * (1 + sp.Abs(x - rowmax(x))),
                            grad_scale=_softmax * (1 + sp.Abs(x - rowmax(x)))
                            * (sp.Abs(g) + rowsum(sp.Abs(g) * _softmax))),
        row_symbols=(x, g),
        upstream=g,
    ),
    Op(
        name="log_softmax",
        family="activation",
        kind="row",
        summary="Logarithm of softmax along dim",
        inputs=(Input("input", x, ROW_DOMAIN),),
        params=(_DIM,),
        formulas={"": Formula(
            definition=sp.log(sp.exp(x) / rowsum(sp.exp(x))),
            stable=x - rowmax(x) - sp.log(rowsum(sp.exp(x - rowmax(x)))),
            # exp(x - max) times one per-row factor: a row-sized division instead of a full pass.
            grads={"input": g - _shifted_exp * grouped(rowsum(g) / rowsum(_shifted_exp))},
            # softmax = e^y: y carries the log's rounding (about ulp(1 + lse)), which exp turns into relative error.
            from_output=OutputForm({"input": g - sp.exp(RESULT) * rowsum(g)},
                                   scale=(sp.Abs(g) + _softmax * rowsum(sp.Abs(g)))
                                   * (1 + sp.log(rowsum(sp.exp(x - rowmax(x)))))),
        )},
        torch="torch.nn.functional.log_softmax",
        # The shifted sum is >= 1 and rounded to ulp(1) before the log: the error is relative to 1 + lse.
        tolerance=Tolerance(forward_scale=1 + sp.log(rowsum(sp.exp(x - rowmax(x)))),
                            grad_scale=sp.Abs(g) + _softmax * rowsum(sp.Abs(g))),
        row_symbols=(x, g),
        upstream=g,
    ),
    Op(
        name="softmin",
        family="activation",
        kind="row",
        summary="Softmax of -x along dim",
        inputs=(Input("input", x, ROW_DOMAIN),),
        params=(_DIM,),
        formulas={"": Formula(
            definition=sp.exp(-x) / rowsum(sp.exp(-x)),
            stable=_softmin,
            grads={"input": -_softmin * (g - rowsum(g * _softmin))},
            from_output=OutputForm({"input": -RESULT * (g - rowsum(g * RESULT))}),
        )},
        torch="torch.nn.functional.softmin",
        tolerance=Tolerance(forward_scale=_softmin * (1 + sp.Abs(x + rowmax(-x))),
                            grad_scale=_softmin * (1 + sp.Abs(x + rowmax(-x)))
                            * (sp.Abs(g) + rowsum(sp.Abs(g) * _softmin))),
        row_symbols=(x, g),
        upstream=g,
    ),
)
