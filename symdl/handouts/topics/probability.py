"""Handout: probability and statistics: random variables, maximum likelihood, Bayes' theorem, cross-entropy as
negative log-likelihood, KL divergence between Gaussians, the uncertainty of an estimator."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp

from symdl.handouts import references as ref
from symdl.handouts import verified
from symdl.handouts.builder import Builder

TITLE = "Probability and statistics"
SUMMARY = ("Random variables and densities, maximum likelihood for a Gaussian (derived and fitted), Bayes' "
           "theorem, cross-entropy as a negative log-likelihood, the KL divergence between Gaussians, and the "
           "variance of an estimator.")

x = sp.Symbol("x", real=True)
mu, mu1, mu2 = sp.symbols("mu mu_1 mu_2", real=True)
sd, sd1, sd2 = sp.symbols("sigma sigma_1 sigma_2", positive=True)
variance = sp.Symbol(r"\sigma^{2}", positive=True)  # the Gaussian's variance as one parameter, printed σ²
n = sp.Symbol("n", integer=True, positive=True)
i = sp.Symbol("i", integer=True)
xs = sp.IndexedBase("x")


def _normal(mean: sp.Expr, deviation: sp.Expr) -> sp.Expr:
    return sp.exp(-(x - mean) ** 2 / (2 * deviation ** 2)) / (deviation * sp.sqrt(2 * sp.pi))


def mle_check() -> tuple[bool, str]:
    """The Gaussian log-likelihood's stationary point is the sample mean and the mean squared deviation."""
    var = sp.Symbol("v", positive=True)
    for size in (3, 4, 5):
        data = sp.symbols(f"x0:{size}", real=True)
        loglik = sum(-sp.log(2 * sp.pi * var) / 2 - (d - mu) ** 2 / (2 * var) for d in data)
        mean = sum(data) / size
        if sp.solve(sp.diff(loglik, mu), mu) != [sp.expand(mean)] and \
                sp.simplify(sp.solve(sp.diff(loglik, mu), mu)[0] - mean) != 0:
            return False, f"the mean fails with {size} points"
        spread = sp.expand(sum((d - mean) ** 2 for d in data) / size)
        solved = sp.solve(sp.diff(loglik.subs(mu, mean), var), var)
        if len(solved) != 1 or sp.simplify(solved[0] - spread) != 0:
            return False, f"the variance fails with {size} points"
    return True, "symbolic (SymPy solve of the zero-gradient equations) on instances with 3, 4 and 5 points"


def loglikelihood_check(rhs: sp.Expr, wrt: sp.Symbol | None) -> Callable[[], tuple[bool, str]]:
    """A check that ``rhs`` (a sum over i = 1..n of the data x_i) is the Gaussian log-likelihood (``wrt`` None)
    or its partial derivative with respect to ``wrt``, against SymPy's log of the product of the normal
    densities, and its derivative, written out for n = 1..5 points."""

    def check() -> tuple[bool, str]:
        from symdl.proofs.proof import SIMPLIFY_SECONDS, ProofTimeout, time_limit

        for size in range(1, 6):
            data = sp.symbols(f"x1:{size + 1}", real=True)
            explicit = sum(sp.log(_normal(mu, sp.sqrt(variance)).subs(x, d)) for d in data)
            want = explicit if wrt is None else sp.diff(explicit, wrt)
            got = rhs.subs(n, size).doit().xreplace({xs[k + 1]: d for k, d in enumerate(data)})
            try:
                with time_limit(SIMPLIFY_SECONDS):
                    gap = sp.simplify(sp.expand_log(want - got, force=True))
            except ProofTimeout:
                return False, f"not proven within {SIMPLIFY_SECONDS} s with {size} points"
            if gap != 0:
                return False, f"fails with {size} points"
        return True, "symbolic (SymPy) against the log of the product of the normal densities, n = 1..5"

    return check


def variance_of_mean_check() -> tuple[bool, str]:
    """Var(mean of n iid) = sigma^2 / n from the moments E x_i = mu, E x_i^2 = mu^2 + sigma^2 and independence."""
    for size in range(1, 7):
        data = sp.symbols(f"x0:{size}", real=True)
        square = sp.Poly(sp.expand((sum(data) / size) ** 2), *data)
        expectation = sp.S.Zero
        for powers, coefficient in square.terms():  # E of a monomial: independent factors, their moments
            term = coefficient
            for power in powers:
                term *= {0: 1, 1: mu, 2: mu ** 2 + sd ** 2}[power]
            expectation += term
        if sp.simplify(expectation - mu ** 2 - sd ** 2 / size) != 0:
            return False, f"fails at n = {size}"
    return True, ("symbolic on n = 1..6 from the moments E[x_i] = mu, E[x_i^2] = mu^2 + sigma^2 and "
                  "independence")


def bayes_check() -> tuple[bool, str]:
    """Bayes' rule against counting in finite populations with exact fractions."""
    for prior, hit, false_alarm in ((Fraction(1, 100), Fraction(95, 100), Fraction(5, 100)),
                                    (Fraction(3, 10), Fraction(7, 10), Fraction(1, 5)),
                                    (Fraction(1, 2), Fraction(1, 4), Fraction(3, 4))):
        people = 10_000
        sick = int(people * prior)
        positives_sick = int(sick * hit)
        positives_well = int((people - sick) * false_alarm)
        counted = Fraction(positives_sick, positives_sick + positives_well)
        formula = hit * prior / (hit * prior + false_alarm * (1 - prior))
        if counted != formula:
            return False, f"counting disagrees at prior {prior}"
    return True, "exact: equals the fraction counted in populations of 10000 people (3 settings, Fractions)"


def _random_variables(b: Builder) -> None:
    b.section("Random variables and densities")
    b.prose("A random variable takes values with given probabilities: a Bernoulli variable is 1 with probability "
            "p and 0 otherwise; a continuous variable has a density whose integral over a set is the probability "
            "of landing in it. The normal density with mean μ and standard deviation σ integrates to one (checked "
            "by quadrature and symbolically):")
    b.equation(verified.integral("normal.normalised", _normal(mu, sd), (x, -sp.oo, sp.oo), sp.S.One,
                                 {mu: (-2.0, 2.0), sd: (0.5, 2.0)}))
    b.equation(verified.integral("normal.mean", x * _normal(mu, sd), (x, -sp.oo, sp.oo), mu,
                                 {mu: (-2.0, 2.0), sd: (0.5, 2.0)}), "Its mean is μ:")


def _mle(b: Builder) -> None:
    b.section("Likelihood and maximum likelihood")
    b.prose("The likelihood of parameters is the probability (density) of the observed data under them; for "
            "independent points it is a product, so its logarithm is a sum. For n points x_i and a Gaussian "
            "with mean μ and variance σ²:")
    ell = sp.Function(r"\ell")(mu, variance)
    loglik = sp.Sum(-sp.log(2 * sp.pi * variance) / 2 - (xs[i] - mu) ** 2 / (2 * variance), (i, 1, n))
    b.equation(verified.computed("mle.loglikelihood", ell, loglik, loglikelihood_check(loglik, None)))
    b.prose("Its partial derivatives with respect to μ and to σ²:")
    for key, wrt, gradient in (
            ("mle.gradient_mean", mu, sp.Sum(xs[i] - mu, (i, 1, n)) / variance),
            ("mle.gradient_variance", variance,
             -n / (2 * variance) + sp.Sum((xs[i] - mu) ** 2, (i, 1, n)) / (2 * variance ** 2))):
        b.equation(verified.computed(key, sp.Derivative(ell, wrt), gradient, loglikelihood_check(gradient, wrt)))
    b.prose("Setting the first to zero gives the sample mean; setting the second to zero at that mean gives the "
            "mean squared deviation. These are the maximum-likelihood estimates:")
    mu_hat, var_hat = sp.Symbol(r"\hat{\mu}"), sp.Symbol(r"\hat{\sigma}^{2}")
    b.equation(verified.computed("mle.mean", mu_hat, sp.Sum(xs[i], (i, 1, n)) / n, mle_check))
    b.equation(verified.computed("mle.variance", var_hat, sp.Sum((xs[i] - mu_hat) ** 2, (i, 1, n)) / n, mle_check))
    b.prose("Fitted to data: the average ink of each of the 1797 bundled digit images (pixel values 0 to 16).")
    b.run('''
        from sklearn.datasets import load_digits

        ink = load_digits().data.mean(axis=1)
        mu_hat = ink.mean()
        var_hat = np.mean((ink - mu_hat) ** 2)


        def log_likelihood(params):
            m, v = params
            return np.sum(-0.5 * np.log(2 * np.pi * v) - (ink - m) ** 2 / (2 * v))


        def log_likelihood_grad(params):
            m, v = params
            return np.array([np.sum(ink - m) / v, np.sum(-0.5 / v + (ink - m) ** 2 / (2 * v ** 2))])


        fd_check(log_likelihood, np.array([4.0, 2.0]), log_likelihood_grad)
        assert np.allclose(log_likelihood_grad(np.array([mu_hat, var_hat])), 0, atol=1e-8)
        print(f"mu_hat = {mu_hat:.4f}, sigma_hat^2 = {var_hat:.4f}; the gradient vanishes there")
    ''', "A Gaussian fitted by maximum likelihood")
    b.plot('''
        fig, ax = plt.subplots(figsize=(7, 3.4))
        ax.hist(ink, bins=40, density=True, alpha=0.5, label="average ink per digit image")
        grid = np.linspace(ink.min(), ink.max(), 300)
        ax.plot(grid, np.exp(-(grid - mu_hat) ** 2 / (2 * var_hat)) / np.sqrt(2 * np.pi * var_hat), color="crimson",
                label="maximum-likelihood Gaussian")
        ax.set_xlabel("average pixel value")
        ax.legend()
    ''', "The digits' average ink with the Gaussian of maximum likelihood.")


def _bayes(b: Builder) -> None:
    b.section("Bayes' theorem")
    b.prose("Bayes' theorem turns the probability of evidence given a hypothesis into the probability of the "
            "hypothesis given the evidence. With prior P(A) = a, P(B | A) = h and P(B | not A) = f, the law of "
            "total probability gives P(B) and:")
    a, h, f = sp.symbols("a h f", positive=True)
    posterior = sp.Symbol("P(A | B)")
    b.equation(verified.computed("bayes", posterior, h * a / (h * a + f * (1 - a)), bayes_check))
    b.run('''
        prior, sensitivity, false_positive = 0.01, 0.95, 0.05
        posterior = sensitivity * prior / (sensitivity * prior + false_positive * (1 - prior))
        people = 1_000_000
        generator = np.random.default_rng(0)
        sick = generator.random(people) < prior
        positive = np.where(sick, generator.random(people) < sensitivity, generator.random(people) < false_positive)
        simulated = sick[positive].mean()
        print(f"P(sick | positive) = {posterior:.4f}; simulated on a million people: {simulated:.4f}")
        assert abs(simulated - posterior) < 0.01
    ''', "A test for a rare condition")


def _cross_entropy(b: Builder) -> None:
    b.section("Cross-entropy is a negative log-likelihood")
    b.prose("A classifier outputs probabilities p = softmax(z) over classes. The likelihood of the observed class "
            "y is p_y, so the negative log-likelihood of a data set is the sum of −log p_y: exactly the "
            "cross-entropy loss with one-hot targets t (catalog definition, weights 1, no smoothing). For two "
            "classes it is the binary cross-entropy of a Bernoulli variable (PyTorch clamps the logarithm at −100):")
    b.equation(verified.op_definition("cross_entropy", weight=1, label_smoothing=0))
    b.equation(verified.op_definition("binary_cross_entropy", weight=1))
    q, t = sp.symbols("q t", positive=True)
    b.equation(verified.chain("bernoulli.nll", -sp.log(q ** t * (1 - q) ** (1 - t)),
                              ("=", -(t * sp.log(q) + (1 - t) * sp.log(1 - q))),
                              domain={q: (0.05, 0.95), t: (0.0, 1.0)}),
               "The Bernoulli likelihood q^t (1 − q)^(1 − t) turns into it under −log:")
    b.run('''
        generator = np.random.default_rng(0)
        logits = generator.normal(size=(6, 10))
        labels = generator.integers(0, 10, size=6)
        nll = -np.mean(np.log(K.softmax(logits, dim=1)[np.arange(6), labels]))
        loss = float(K.cross_entropy(logits, labels))
        print(f"cross_entropy = {loss:.10f}, mean -log p_y = {nll:.10f}")
        assert np.isclose(loss, nll, rtol=1e-12)
        fd_check(lambda z: K.cross_entropy(z, labels), logits, lambda g, z: K.cross_entropy_vjp(g, z, labels)[:1])
    ''', "The loss and the negative log-likelihood agree")


def _kl(b: Builder) -> None:
    b.section("KL divergence between Gaussians")
    b.prose("The Kullback-Leibler divergence KL(p ‖ q) = ∫ p log(p / q) measures how badly q describes data drawn "
            "from p; it is zero only when p = q and it is not symmetric. Between two Gaussians p = N(μ1, σ1²) and "
            "q = N(μ2, σ2²) the integral has a closed form (used, for example, in the loss of a variational "
            "autoencoder), derived in three steps. First, the logarithm of the ratio of the densities is a "
            "quadratic in x:")
    p, q = _normal(mu1, sd1), _normal(mu2, sd2)
    density_p, density_q = sp.Function("p"), sp.Function("q")
    b.equation(verified.equation("kl.log_ratio", sp.log(density_p(x) / density_q(x)),
                                 sp.log(sd2 / sd1) - (x - mu1) ** 2 / (2 * sd1 ** 2) + (x - mu2) ** 2 / (2 * sd2 ** 2),
                                 meaning={density_p: sp.Lambda(x, p), density_q: sp.Lambda(x, q)},
                                 domain={x: (-3.0, 3.0), mu1: (-1.0, 1.0), mu2: (-1.0, 1.0)}))
    b.prose("Second, its expectation under p needs only p's total mass (one, section 1) and the second moment of "
            "x about any point m, the variance plus the squared distance of m from the mean:")
    m = sp.Symbol("m", real=True)
    b.equation(verified.integral("kl.second_moment", (x - m) ** 2 * p, (x, -sp.oo, sp.oo), sd1 ** 2 + (mu1 - m) ** 2,
                                 {mu1: (-1.0, 1.0), m: (-1.0, 1.0), sd1: (0.5, 2.0)}))
    b.prose("Third, integrating the quadratic term by term against p, with that moment at m = μ1 (it is σ1²) and "
            "at m = μ2, gives the closed form; the whole integral is also checked against it by quadrature:")
    closed = sp.log(sd2 / sd1) + (sd1 ** 2 + (mu1 - mu2) ** 2) / (2 * sd2 ** 2) - sp.Rational(1, 2)
    b.equation(verified.integral("kl.gaussians", p * sp.expand_log(sp.log(p / q), force=True), (x, -sp.oo, sp.oo),
                                 closed, {mu1: (-1.0, 1.0), mu2: (-1.0, 1.0), sd1: (0.5, 2.0), sd2: (0.5, 2.0)},
                                 symbolic=False))
    b.run('''
        def kl_gauss(m1, s1, m2, s2):
            return np.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5


        generator = np.random.default_rng(1)
        draws = generator.normal(0.3, 1.2, size=400_000)
        log_p = -0.5 * ((draws - 0.3) / 1.2) ** 2 - np.log(1.2)
        log_q = -0.5 * ((draws + 0.5) / 0.8) ** 2 - np.log(0.8)
        estimate, error = np.mean(log_p - log_q), np.std(log_p - log_q) / np.sqrt(len(draws))
        exact = kl_gauss(0.3, 1.2, -0.5, 0.8)
        print(f"KL(N(0.3, 1.2^2) || N(-0.5, 0.8^2)) = {exact:.5f}; Monte Carlo {estimate:.5f} +- {error:.5f}")
        print(f"reversed: KL(q || p) = {kl_gauss(-0.5, 0.8, 0.3, 1.2):.5f} (not symmetric)")
        assert abs(estimate - exact) < 4 * error
    ''', "The closed form against sampling")
    b.plot('''
        fig, ax = plt.subplots(figsize=(7, 3.4))
        shifts = np.linspace(-3, 3, 200)
        for s2 in (0.5, 1.0, 2.0):
            ax.plot(shifts, kl_gauss(0.0, 1.0, shifts, s2), label=f"q = N(m, {s2}²)")
        ax.set_xlabel("mean m of q")
        ax.set_ylabel("KL(N(0, 1) || q)")
        ax.legend()
        ax.grid(alpha=0.3)
    ''', "KL(N(0, 1) || N(m, s²)) as the mean m moves, for three widths s.")


def _uncertainty(b: Builder) -> None:
    b.section("Uncertainty of an estimator")
    b.prose("An estimate computed from a sample is itself random. The mean of n independent draws with variance "
            "σ² has variance σ²/n, so its standard error shrinks like 1/√n:")
    mean_symbol = sp.Symbol(r"\operatorname{Var}(\bar{x})")
    b.equation(verified.computed("estimator.variance", mean_symbol, sd ** 2 / n, variance_of_mean_check))
    b.run('''
        generator = np.random.default_rng(2)
        sizes = np.array([1, 2, 5, 10, 20, 50, 100, 200])
        measured = [generator.normal(0.0, 2.0, size=(4000, m)).mean(axis=1).var() for m in sizes]
        ratios = np.array(measured) * sizes / 4.0
        print("measured Var(mean) x n / sigma^2:", np.round(ratios, 3))
        assert np.all(np.abs(ratios - 1) < 0.1)
    ''', "Simulating the estimator")
    b.plot('''
        fig, ax = plt.subplots(figsize=(7, 3.4))
        ax.loglog(sizes, measured, "o", label="simulated (4000 samples of each size)")
        ax.loglog(sizes, 4.0 / sizes, "--", label="sigma² / n")
        ax.set_xlabel("sample size n")
        ax.set_ylabel("variance of the sample mean")
        ax.legend()
        ax.grid(alpha=0.3, which="both")
    ''', "The variance of the mean of n draws from N(0, 2²): simulation against sigma²/n.")


def _exercises(b: Builder) -> None:
    b.section("Exercises")
    prior = round(float(b.rng.choice([0.001, 0.005, 0.01, 0.02, 0.05])), 3)
    hit, alarm = ref.draw(b.rng, 0.8, 0.99), ref.draw(b.rng, 0.01, 0.1)
    exact = Fraction(str(hit)) * Fraction(str(prior)) / (Fraction(str(hit)) * Fraction(str(prior))
                                                        + Fraction(str(alarm)) * (1 - Fraction(str(prior))))
    b.exercise(f"A condition affects {prior:.1%} of people. A test detects it with probability {hit} and gives "
               f"a false positive with probability {alarm}. What is the probability of the condition after a "
               "positive test?", hit * prior / (hit * prior + alarm * (1 - prior)), float(exact),
               how="exact fractions")
    data = [int(v) for v in b.rng.integers(0, 10, size=5)]
    spread = float(np.mean((np.array(data) - np.mean(data)) ** 2))
    b.exercise(f"Fit a Gaussian by maximum likelihood to the data {data}. What is mu_hat?", float(np.mean(data)),
               float(Fraction(sum(data), 5)), how="exact fractions")
    b.exercise("For the same data, what is sigma_hat²? (Maximum likelihood divides by n, not n - 1.)", spread,
               float(Fraction(sum((5 * d - sum(data)) ** 2 for d in data), 125)), how="exact fractions")
    m1, s1, m2, s2 = ref.draw(b.rng, -1, 1), ref.draw(b.rng, 0.5, 2), ref.draw(b.rng, -1, 1), ref.draw(b.rng, 0.5, 2)

    def kl_reference() -> mpmath.mpf:
        def integrand(v: mpmath.mpf) -> mpmath.mpf:
            lp = -((v - m1) / mpmath.mpf(s1)) ** 2 / 2 - mpmath.log(s1)
            lq = -((v - m2) / mpmath.mpf(s2)) ** 2 / 2 - mpmath.log(s2)
            return mpmath.exp(lp) / mpmath.sqrt(2 * mpmath.pi) * (lp - lq)

        return mpmath.quad(integrand, [-mpmath.inf, mpmath.inf])

    b.exercise(f"Compute KL(N({m1}, {s1}²) ‖ N({m2}, {s2}²)).",
               float(np.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5),
               lambda: ref.value(kl_reference), how="50-digit quadrature of p log(p/q)")


def build(b: Builder) -> None:
    """Add the probability handout's content to ``b``."""
    b.goal("Work with densities: normalisation and expectations.",
           "Derive the maximum-likelihood estimates of a Gaussian and fit one to data.",
           "Apply Bayes' theorem, and read cross-entropy as a negative log-likelihood.",
           "Compute the KL divergence between Gaussians and the uncertainty of a sample mean.")
    _random_variables(b)
    _mle(b)
    _bayes(b)
    _cross_entropy(b)
    _kl(b)
    _uncertainty(b)
    _exercises(b)
