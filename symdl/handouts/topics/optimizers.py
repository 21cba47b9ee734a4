"""Handout: optimizers (SGD, momentum, Adagrad, RMSProp, Adam), learning-rate schedules, a digits training run."""

from __future__ import annotations

import mpmath
import numpy as np

from symdl.handouts import references as ref
from symdl.handouts import verified
from symdl.handouts.builder import Builder

TITLE = "Optimizers and learning rates"
SUMMARY = ("SGD, momentum, Adagrad, RMSProp and Adam from symdl's catalog: their update rules, bias correction "
           "and steady states, their paths on one test function, learning-rate schedules and a real training run.")

#: (catalog rule, hyper-parameters shown, what to say about it)
RULES = (
    ("sgd", {}, "SGD with heavy-ball momentum μ keeps a buffer b of past gradients (μ = 0 is plain gradient "
                "descent)."),
    ("adagrad", {}, "Adagrad divides by the root of the running sum of squared gradients: coordinates with large "
                    "past gradients take smaller steps, and every step size shrinks over time."),
    ("rmsprop", {"momentum": 0}, "RMSProp replaces Adagrad's sum by an exponential moving average (decay α), so "
                                 "step sizes stop shrinking."),
    ("adam", {}, "Adam keeps moving averages of the gradient (m) and of its square (v), corrects their bias "
                 "towards zero, and divides one by the root of the other."),
)


def _rules(b: Builder) -> None:
    b.section("Update rules from the catalog")
    b.prose("Each rule below is printed from symdl's optimizer catalog, the same SymPy assignments from which "
            "symdl.optim's classes are generated (and tested against torch.optim). Options that are off by "
            "default (weight decay, maximize, Nesterov, AMSGrad) are substituted away; g is the gradient, θ the "
            "parameter, η the learning rate, t the step count.")
    for name, values, text in RULES:
        b.prose(text)
        b.equation(verified.update_rule(name, **values))


def _facts(b: Builder) -> None:
    b.section("Bias correction and steady states")
    b.prose("Adam starts its averages at zero, so early averages are biased towards zero. With a constant gradient "
            "g, m_t = (1 − β1^t) g exactly, and dividing by 1 − β1^t removes the bias:")
    b.equation(verified.fact("adam_bias_correction"))
    b.prose("Momentum's buffer settles where b = μb + g: with a constant gradient SGD with momentum moves "
            "1/(1 − μ) times faster than without it (ten times for μ = 0.9).")
    b.equation(verified.fact("momentum_steady_state"))
    b.prose("Momentum also widens the stable range of learning rates on a quadratic:")
    b.equation(verified.fact("heavy_ball_region"))
    b.prose("Adagrad's effective per-coordinate learning rate, and a bound on Adam's step that does not depend on "
            "the gradient's scale:")
    b.equation(verified.fact("adagrad_effective_lr"))
    b.equation(verified.fact("adam_step_bound"))
    b.run('''
        from symdl.optim import SGD, Adagrad, Adam, RMSprop

        g = np.array([0.5])
        theta = np.zeros(1)
        adam = Adam([theta], lr=0.01)
        for _ in range(3):
            adam.step([g])
        state = adam.state_dict()["state"][0]
        t = 3
        m_hat = state["exp_avg"] / (1 - 0.9 ** t)
        v_hat = state["exp_avg_sq"] / (1 - 0.999 ** t)
        print(f"after {t} steps with g = 0.5: m_hat = {m_hat[0]:.12f}, v_hat = {v_hat[0]:.12f}")
        assert np.allclose(m_hat, g, rtol=1e-12) and np.allclose(v_hat, g ** 2, rtol=1e-12)

        theta = np.zeros(1)
        momentum = SGD([theta], lr=0.1, momentum=0.9)
        for _ in range(300):
            before = theta.copy()
            momentum.step([g])
        step = before[0] - theta[0]
        print(f"momentum 0.9: step after 300 iterations {step:.6f}, lr g / (1 - mu) = {0.1 * 0.5 / 0.1:.6f}")
        assert np.isclose(before[0] - theta[0], 0.1 * 0.5 / (1 - 0.9), rtol=1e-9)
    ''', "The facts, checked on symdl.optim")


def _trajectories(b: Builder) -> None:
    b.section("Paths on one test function")
    b.prose("All five optimizers start from the same point on Rosenbrock's function f(x, y) = (1 − x)² + "
            "10 (y − x²)², a curved valley whose minimum is at (1, 1). Its gradient is checked against finite "
            "differences first. Each optimizer gets 300 steps at a learning rate that suits it.")
    b.run('''
        def rosenbrock(p):
            x, y = p
            return (1 - x) ** 2 + 10 * (y - x ** 2) ** 2


        def rosenbrock_grad(p):
            x, y = p
            return np.array([-2 * (1 - x) - 40 * x * (y - x ** 2), 20 * (y - x ** 2)])


        fd_check(rosenbrock, np.array([-0.8, 1.3]), rosenbrock_grad)

        settings = {
            "SGD": (SGD, {"lr": 0.01}),
            "SGD momentum 0.9": (SGD, {"lr": 0.002, "momentum": 0.9}),
            "Adagrad": (Adagrad, {"lr": 0.4}),
            "RMSProp": (RMSprop, {"lr": 0.01}),
            "Adam": (Adam, {"lr": 0.05}),
        }
        paths = {}
        for label, (cls, options) in settings.items():
            p = np.array([-1.2, 1.0])
            optimizer = cls([p], **options)
            path = [p.copy()]
            for _ in range(300):
                optimizer.step([rosenbrock_grad(p)])
                path.append(p.copy())
            paths[label] = np.array(path)
            print(f"{label:17s} ends at ({p[0]: .3f}, {p[1]: .3f}), f = {rosenbrock(p):.2e}")
    ''', "Five optimizers, 300 steps each")
    b.plot('''
        fig, axes = plt.subplots(1, 5, figsize=(15, 3.3), sharey=True)
        u, v = np.meshgrid(np.linspace(-1.6, 1.6, 200), np.linspace(-0.6, 2.0, 200))
        for ax, (label, path) in zip(axes, paths.items()):
            ax.contour(u, v, (1 - u) ** 2 + 10 * (v - u ** 2) ** 2, levels=np.logspace(-1, 2, 10), colors="0.75",
                       linewidths=0.6)
            ax.plot(path[:, 0], path[:, 1], "-", lw=1.2, color="tab:red")
            ax.plot([1], [1], "*", color="k", ms=8)
            ax.set_title(label, fontsize=10)
        fig.tight_layout()
    ''', "Paths of SGD, SGD with momentum, Adagrad, RMSProp and Adam on Rosenbrock's function (star: the minimum).")


def _schedules(b: Builder) -> None:
    b.section("Learning-rate schedules")
    b.prose("A schedule changes the learning rate over epochs. symdl.optim.lr_scheduler follows torch's chainable "
            "updates; the closed forms below come from the catalog, and the example checks the scheduler against "
            "them epoch by epoch.")
    for name in ("StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR"):
        b.equation(verified.schedule(name))
    b.run('''
        import sympy as sp
        from symdl.catalog import SCHEDULES
        from symdl.catalog import schedules as S
        from symdl.optim import lr_scheduler

        epochs = 40
        made = {
            "StepLR": (lambda o: lr_scheduler.StepLR(o, step_size=10, gamma=0.5),
                       {S.STEP_SIZE: 10, S.GAMMA: 0.5}),
            "ExponentialLR": (lambda o: lr_scheduler.ExponentialLR(o, gamma=0.93), {S.GAMMA: 0.93}),
            "CosineAnnealingLR": (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=epochs, eta_min=0.01),
                                  {S.T_MAX: epochs, S.ETA_MIN: 0.01}),
            "LinearLR": (lambda o: lr_scheduler.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10),
                         {S.START: 0.1, S.END: 1.0, S.TOTAL: 10}),
        }
        rates = {}
        for name, (make, values) in made.items():
            optimizer = SGD([np.zeros(1)], lr=0.1)
            scheduler = make(optimizer)
            seen = []
            for _ in range(epochs):
                seen.append(optimizer.param_groups[0]["lr"])
                scheduler.step()
            closed = sp.lambdify(S.EPOCH, SCHEDULES[name].closed.subs({S.BASE: 0.1, **values}))
            expected = [float(closed(t)) for t in range(epochs)]
            assert np.allclose(seen, expected, rtol=1e-12), name
            rates[name] = seen
        print("every scheduler matches its closed form for", epochs, "epochs")
    ''', "Schedulers against their closed forms")
    b.plot('''
        fig, ax = plt.subplots(figsize=(8, 3.4))
        for name, seen in rates.items():
            ax.plot(seen, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.legend()
        ax.grid(alpha=0.3)
    ''', "Learning rate over 40 epochs for four schedules (base rate 0.1).")


def _training(b: Builder) -> None:
    b.section("A real run: digits with symdl's trainer")
    b.prose("The trainer behind `symdl train` fits a small multilayer perceptron to scikit-learn's bundled digits "
            "(8 × 8 images, ten classes), every forward and backward step a generated kernel. Two short runs, "
            "SGD and Adam, five epochs each, record the loss and accuracy per epoch.")
    b.run('''
        import tempfile
        from pathlib import Path
        from symdl.train import TrainConfig, Trainer

        histories = {}
        for optimizer, lr in (("sgd", 0.05), ("adam", 0.001)):
            with tempfile.TemporaryDirectory() as folder:
                config = TrainConfig(model="mlp", dataset="digits", optimizer=optimizer, lr=lr, epochs=5, seed=0)
                trainer = Trainer(config, Path(folder))
                trainer.fit()
            histories[optimizer] = trainer.history
            last = trainer.history[-1]
            print(f"{optimizer:5s} lr={lr}: test accuracy {last['test_accuracy']:.3f}, "
                  f"test loss {last['test_loss']:.3f}")
    ''', "Training on digits")
    b.plot('''
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
        for name, history in histories.items():
            epochs_run = [row["epoch"] for row in history]
            left.plot(epochs_run, [row["train_loss"] for row in history], "o-", label=f"{name} train")
            left.plot(epochs_run, [row["test_loss"] for row in history], "s--", label=f"{name} test")
            right.plot(epochs_run, [row["test_accuracy"] for row in history], "o-", label=name)
        left.set_xlabel("epoch")
        left.set_ylabel("cross-entropy")
        left.legend(fontsize=8)
        right.set_xlabel("epoch")
        right.set_ylabel("test accuracy")
        right.legend()
        fig.tight_layout()
    ''', "Learning curves of an MLP on the digits: SGD against Adam, five epochs each.")


def _exercises(b: Builder) -> None:
    from symdl.optim import Adam

    b.section("Exercises")
    mu = round(float(b.rng.choice([0.5, 0.8, 0.9, 0.95, 0.99])), 2)
    lr, grad = ref.draw(b.rng, 0.01, 0.2), ref.draw(b.rng, 0.1, 2.0)
    b.exercise(f"SGD with momentum {mu} and learning rate {lr} sees the same gradient {grad} at every step. "
               "How far does the parameter move per step once the buffer has settled?",
               lr * grad / (1 - mu),
               lambda: ref.value(lambda: mpmath.mpf(lr) * mpmath.mpf(grad) / (1 - mpmath.mpf(mu))),
               how="the fact momentum_steady_state, lr g / (1 - mu) in mpmath")
    steps, g = int(b.rng.integers(1, 6)), ref.draw(b.rng, -3, 3)
    theta = np.zeros(1)
    adam = Adam([theta], lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(steps):
        adam.step([np.array([g])])
    m = adam.state_dict()["state"][0]["exp_avg"][0]
    b.exercise(f"Adam (beta1 = 0.9) sees the gradient {g} at each of its first {steps} steps. What is its first "
               "moment m (before bias correction)?", float(m),
               lambda: ref.value(lambda: (1 - mpmath.mpf("0.9") ** steps) * mpmath.mpf(g)),
               how="m_t = (1 - beta1^t) g (fact adam_bias_correction) in mpmath", rtol=1e-12)
    base, gamma, size, epoch = ref.draw(b.rng, 0.05, 0.5), round(float(b.rng.choice([0.1, 0.5, 0.8])), 1), \
        int(b.rng.integers(3, 10)), int(b.rng.integers(10, 40))
    from symdl.optim import SGD, lr_scheduler

    optimizer = SGD([np.zeros(1)], lr=base)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=size, gamma=gamma)
    for _ in range(epoch):
        scheduler.step()
    b.exercise(f"StepLR with base learning rate {base}, step_size {size} and gamma {gamma}: what is the learning "
               f"rate at epoch {epoch}?", float(optimizer.param_groups[0]["lr"]),
               lambda: ref.value(lambda: mpmath.mpf(base) * mpmath.mpf(gamma) ** (epoch // size)),
               how="eta_0 gamma^floor(t / step_size) in mpmath", rtol=1e-12)


def build(b: Builder) -> None:
    """Add the optimizers handout's content to ``b``."""
    b.goal("Read the update rules of SGD with momentum, Adagrad, RMSProp and Adam.",
           "Derive Adam's bias correction and momentum's steady-state step.",
           "Compare optimizers' paths on one function and read learning-rate schedules.",
           "Run a short training job and read its learning curves.")
    _rules(b)
    _facts(b)
    _trajectories(b)
    _schedules(b)
    _training(b)
    _exercises(b)
