"""Handout: backpropagation on a staged computation graph and in matrix form for a 2-layer network."""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

from symdl.handouts import references as ref
from symdl.handouts import verified
from symdl.handouts.builder import Builder

TITLE = "Backpropagation"
SUMMARY = ("The chain rule run backwards through a computation graph, node by node with numbers, then in matrix "
           "form for a two-layer network, every gradient checked against finite differences.")

w, x, bias, t = sp.symbols("w x b t", real=True)
sigma = sp.Function("sigma")
MEANING = {sigma: sp.Lambda(x, 1 / (1 + sp.exp(-x)))}


def _graph(b: Builder) -> None:
    b.section("A computation graph, forward and backward")
    b.prose("One sigmoid neuron with a squared error: L = (σ(w x + b) − t)². Written as stages u = w x, v = u + b, "
            "a = σ(v), e = a − t, L = e², the forward pass computes each stage from the one before. The backward "
            "pass starts from dL/dL = 1 and multiplies by each stage's local derivative on the way back: that is "
            "the chain rule, and it gives every gradient for the cost of one more pass.")
    neuron = (sigma(w * x + bias) - t) ** 2
    a = sigma(w * x + bias)
    b.equation(verified.chain("backprop.neuron_w", sp.Derivative(neuron, w), ("=", 2 * (a - t) * a * (1 - a) * x),
                              meaning=MEANING, domain={w: (-2.0, 2.0), x: (-2.0, 2.0), bias: (-1.0, 1.0),
                                                       t: (0.0, 1.0)}),
               "With σ' = σ(1 − σ), the chain rule gives the weight's gradient:")
    b.equation(verified.chain("backprop.neuron_b", sp.Derivative(neuron, bias), ("=", 2 * (a - t) * a * (1 - a)),
                              meaning=MEANING, domain={w: (-2.0, 2.0), x: (-2.0, 2.0), bias: (-1.0, 1.0),
                                                       t: (0.0, 1.0)}), "and the bias's:")
    b.run('''
        w, x, b, t = 0.8, 1.5, -0.4, 1.0
        # forward: each stage from the one before
        u = w * x
        v = u + b
        a = float(K.sigmoid(np.array(v)))
        e = a - t
        L = e ** 2
        # backward: each adjoint is the next one times the local derivative
        dL = 1.0
        de = 2 * e * dL
        da = de
        dv = float(K.sigmoid_vjp(np.array(da), np.array(v))[0])
        du, db = dv, dv
        dw, dx = du * x, du * w
        stages = [("u = w x", u, du), ("v = u + b", v, dv), ("a = sigmoid(v)", a, da), ("e = a - t", e, de),
                  ("L = e^2", L, dL)]
        for name, value, adjoint in stages:
            print(f"{name:15s} value {value: .6f}   dL/d(node) {adjoint: .6f}")
        print(f"dL/dw = {dw:.6f}, dL/db = {db:.6f}")


        def loss(params):
            w_, b_ = params
            return (K.sigmoid(np.array(w_ * x + b_)) - t) ** 2


        fd_check(loss, np.array([w, b]), lambda p: np.array([dw, db]))
    ''', "Forward values and backward gradients")
    b.table(("node", "forward value", "gradient dL/d(node)"),
            [(name, f"{value:.6f}", f"{adjoint:.6f}") for name, value, adjoint in b.value("stages")],
            "The neuron's graph at w = 0.8, x = 1.5, b = -0.4, t = 1.")
    b.plot('''
        fig, ax = plt.subplots(figsize=(11, 2.8))
        places = {"w": (0, 1), "x": (0, 0), "u": (1.5, 0.5), "b": (1.5, -0.6), "v": (3, 0.3), "a": (4.5, 0.3),
                  "t": (4.5, -0.6), "e": (6, 0.3), "L": (7.5, 0.3)}
        values = {"w": (w, dw), "x": (x, dx), "u": (u, du), "b": (b, db), "v": (v, dv), "a": (a, da), "t": (t, None),
                  "e": (e, de), "L": (L, dL)}
        for start, end in [("w", "u"), ("x", "u"), ("u", "v"), ("b", "v"), ("v", "a"), ("a", "e"), ("t", "e"),
                           ("e", "L")]:
            ax.annotate("", xy=places[end], xytext=places[start],
                        arrowprops={"arrowstyle": "->", "color": "0.5", "shrinkA": 18, "shrinkB": 18})
        for node, (px, py) in places.items():
            value, grad = values[node]
            ax.text(px, py, node, ha="center", va="center", fontsize=12,
                    bbox={"boxstyle": "circle", "facecolor": "white", "edgecolor": "0.3"})
            ax.text(px, py + 0.42, f"{value:.3f}", ha="center", fontsize=9)
            if grad is not None:
                ax.text(px, py - 0.45, f"{grad:.3f}", ha="center", fontsize=9, color="crimson")
        ax.set_xlim(-0.7, 8.2)
        ax.set_ylim(-1.3, 1.6)
        ax.axis("off")
    ''', "The neuron's computation graph: forward values above each node, gradients dL/d(node) below in red.")


def _matrix(b: Builder) -> None:
    b.section("The matrix form of a two-layer network")
    b.prose("A batch X of N rows goes through A = X W1⊤ + b1, H = relu(A), Z = H W2⊤ + b2 and the cross-entropy "
            "of the logits Z against the labels. Every layer's backward pass takes the upstream gradient of its "
            "output and returns those of its input and parameters. The catalog's linear layer, with ȳ the "
            "upstream gradient:")
    b.equation(verified.layer("linear", 0))
    b.equation(verified.layer("linear", 1))
    b.prose("relu passes the gradient where its input was positive (an elementwise product with that mask):")
    b.equation(verified.op_gradient("relu"))
    b.prose("Cross-entropy against one-hot (or probability) targets t: its gradient with respect to the logits is "
            "g (softmax(x) Σt − t), which is softmax(x) − t because the targets sum to one (g = 1/N for the mean "
            "over the batch):")
    b.equation(verified.op_definition("cross_entropy", weight=1, label_smoothing=0))
    b.equation(verified.op_gradient("cross_entropy", weight=1, label_smoothing=0))
    b.prose("Chaining them from the loss back gives the whole backward pass: writing dZ for the gradient of the "
            "loss with respect to Z (and so on), dZ = (softmax(Z) − T)/N, dW2 = dZ⊤H, db2 = Σ rows of dZ, dH = dZ W2, "
            "dA = dH ⊙ [A > 0], dW1 = dA⊤X, db1 = Σ rows of dA. The example computes "
            "it with the kernels on eight digits, compares it with symdl.nn's backward pass and checks dW1 "
            "against finite differences.")
    b.run('''
        import symdl.nn as nn
        from sklearn.datasets import load_digits

        digits = load_digits()
        X, labels = digits.data[:8] / 16.0, digits.target[:8]
        generator = np.random.default_rng(0)
        model = nn.Sequential(nn.Linear(64, 16, generator=generator, dtype=np.float64), nn.ReLU(),
                              nn.Linear(16, 10, generator=generator, dtype=np.float64))
        W1, b1 = model[0].params["weight"], model[0].params["bias"]
        W2, b2 = model[2].params["weight"], model[2].params["bias"]

        # forward
        A = K.linear(X, W1, b1)
        H = K.relu(A)
        Z = K.linear(H, W2, b2)
        loss = K.cross_entropy(Z, labels)
        # backward, layer by layer
        (dZ, _) = K.cross_entropy_vjp(np.ones(()), Z, labels)
        T = np.eye(10)[labels]
        assert np.allclose(dZ, (K.softmax(Z, dim=1) - T) / len(labels))  # the formula above
        dH, dW2, db2 = K.linear_vjp(dZ, H, W2, b2)
        (dA,) = K.relu_vjp(dH, A)
        _, dW1, db1 = K.linear_vjp(dA, X, W1, b1)
        assert np.allclose(dW1, dA.T @ X) and np.allclose(dW2, dZ.T @ H)  # the matrix forms

        # symdl.nn runs the same kernels
        criterion = nn.CrossEntropyLoss()
        criterion(model(X), labels)
        model.backward(criterion.backward())
        assert np.allclose(model[0].grads["weight"], dW1) and np.allclose(model[2].grads["weight"], dW2)
        print(f"loss {float(loss):.6f}; |dW1| = {np.linalg.norm(dW1):.6f}, |dW2| = {np.linalg.norm(dW2):.6f}")


        def loss_of_W1(W):
            return K.cross_entropy(K.linear(K.relu(K.linear(X, W, b1)), W2, b2), labels)


        fd_check(loss_of_W1, W1.copy(), lambda W: dW1)
    ''', "The two-layer backward pass, by hand and by symdl.nn")


def _exercises(b: Builder) -> None:
    import symdl.kernels as K

    b.section("Exercises")
    w0, x0, b0, t0 = ref.draw(b.rng, -2, 2), ref.draw(b.rng, -2, 2), ref.draw(b.rng, -1, 1), ref.draw(b.rng, 0, 1)
    v = np.array(w0 * x0 + b0)
    a = float(K.sigmoid(v))
    grad_w = float(K.sigmoid_vjp(np.array(2 * (a - t0)), v)[0]) * x0

    def reference() -> mpmath.mpf:
        return mpmath.diff(lambda ww: (ref.sigmoid(ww * mpmath.mpf(x0) + mpmath.mpf(b0)) - mpmath.mpf(t0)) ** 2,
                           mpmath.mpf(w0))

    b.exercise(f"For the neuron L = (sigmoid(w x + b) − t)² at w = {w0}, x = {x0}, b = {b0}, t = {t0}, run the "
               "forward pass and the backward pass by hand. What is dL/dw?", grad_w, lambda: ref.value(reference),
               how="mpmath.diff of the composed function at 50 digits")
    n_in, n_hidden, n_out, batch = (int(v) for v in b.rng.integers(2, 9, size=4))
    import symdl.nn as nn

    model = nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_out))
    b.exercise(f"A network maps {n_in} inputs to {n_hidden} hidden units to {n_out} outputs (weights and biases), "
               f"on a batch of {batch}. The gradients dW1 and dW2 have the shapes of W1 and W2. How many numbers "
               "does the backward pass return for the parameters in all?",
               n_hidden * n_in + n_hidden + n_out * n_hidden + n_out,
               sum(p.size for p in model.parameters()), digits=6,
               how="counted on the parameters of the same network built with symdl.nn")


def build(b: Builder) -> None:
    """Add the backpropagation handout's content to ``b``."""
    b.goal("Run the forward and backward pass of a computation graph by hand, node by node.",
           "Apply the chain rule to get every parameter's gradient in one backward pass.",
           "Write a two-layer network's backward pass in matrix form and check it numerically.")
    _graph(b)
    _matrix(b)
    _exercises(b)
