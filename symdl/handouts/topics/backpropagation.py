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


#: The two-layer network in matrix form, examples as columns: Z = W2 relu(W1 X + b1 1^T) + b2 1^T. Its scalar
#: "sum(dZ * Z)" has, for every parameter, exactly the gradient the backward pass returns for the upstream dZ.
NETWORK = "sum(dZ * (W2 @ relu(W1 @ X + outer(b1, ones(n))) + outer(b2, ones(n))))"
NETWORK_SHAPES = {"dZ": "c,n", "W1": "h,d", "b1": "h", "W2": "c,h", "b2": "c", "X": "d,n"}


def _matrix(b: Builder) -> None:
    b.section("The matrix form of a two-layer network")
    b.prose("In matrix form the N examples are the columns of X (d × N). A linear layer computes D = W X; its "
            "backward pass receives dD, the gradient of the loss with respect to D (same shape as D), and returns "
            "dW = dD X⊤ and dX = W⊤ dD. Both are the gradients of the scalar f = sum(dD ⊙ W X): to first order "
            "the loss changes as f does when W or X moves. symdl's matrix-calculus engine derives them in reverse "
            "mode, one named identity per node (u are the intermediate values, a bar marks their gradients), and "
            "checks every step by finite differences at random sizes:")
    b.equation(verified.matrix_derivation("backprop.linear_matrix", "sum(dD * (W @ X))", ["W", "X"],
                                          {"dD": "m,n", "W": "m,k", "X": "k,n"}))
    b.prose("The whole network, Z = W2 relu(W1 X + b1 1⊤) + b2 1⊤ with dZ the upstream gradient of the logits: "
            "relu passes the gradient where its input was positive (the indicator of a positive input, PyTorch's "
            "relu'(0) = 0), and a bias added to every column collects the row sums of its gradient (the product "
            "with 1):")
    b.equation(verified.matrix_derivation("backprop.network_matrix", NETWORK, ["W1", "b1", "W2", "b2"],
                                          NETWORK_SHAPES))
    b.prose("Cross-entropy of one column of logits z against a target y: L = logsumexp(z) − y⊤z. Its gradient is "
            "softmax(z) − y once the targets sum to one (the assumption is stated, and the result checked "
            "under it); averaged over the batch, dZ = (softmax(Z) − T)/N column by column:")
    b.equation(verified.matrix_derivation("backprop.cross_entropy_matrix", "logsumexp(z) - y @ z", ["z"],
                                          {"z": "c", "y": "c"}, assume=["sum(y) = 1"]))
    b.prose("The example below computes the backward pass with symdl's kernels on eight digits (the kernels keep "
            "examples as rows, so their A is the transpose of W1 X + b1 1⊤), evaluates the engine's formulas "
            "above at the same numbers, compares both with symdl.nn's backward pass and checks dW1 and dX "
            "against finite differences.")
    b.run('''
        import symdl.nn as nn
        from sklearn.datasets import load_digits
        from symdl.steps.matrix import derive_matrix, evaluate

        NETWORK = ...
        SHAPES = ...

        digits = load_digits()
        X, labels = digits.data[:8] / 16.0, digits.target[:8]
        generator = np.random.default_rng(0)
        model = nn.Sequential(nn.Linear(64, 16, generator=generator, dtype=np.float64), nn.ReLU(),
                              nn.Linear(16, 10, generator=generator, dtype=np.float64))
        W1, b1 = model[0].params["weight"], model[0].params["bias"]
        W2, b2 = model[2].params["weight"], model[2].params["bias"]

        # forward (rows are examples)
        A = K.linear(X, W1, b1)
        H = K.relu(A)
        Z = K.linear(H, W2, b2)
        loss = K.cross_entropy(Z, labels)
        # backward, layer by layer
        (dZ, _) = K.cross_entropy_vjp(np.ones(()), Z, labels)
        T = np.eye(10)[labels]
        assert np.allclose(dZ, (K.softmax(Z, dim=1) - T) / len(labels))  # dZ = (softmax(Z) - T)/N
        dH, dW2, db2 = K.linear_vjp(dZ, H, W2, b2)
        (dA,) = K.relu_vjp(dH, A)
        dX, dW1, db1 = K.linear_vjp(dA, X, W1, b1)
        # D = W X with examples as columns: dW = dD X^T and dX = W^T dD
        assert np.allclose(dW1, dA.T @ X) and np.allclose(dX.T, W1.T @ dA.T) and np.allclose(dW2, dZ.T @ H)

        # the matrix-calculus engine's formulas, evaluated at the same numbers (columns are examples)
        network = derive_matrix(NETWORK, ["W1", "b1", "W2", "b2", "X"], SHAPES)
        values = {"X": X.T, "W1": W1, "b1": b1, "W2": W2, "b2": b2, "dZ": dZ.T}
        engine = {name: evaluate(r.result, values) for name, r in network.results.items()}
        for name, kernel in [("W1", dW1), ("b1", db1), ("W2", dW2), ("b2", db2), ("X", dX.T)]:
            assert np.allclose(engine[name], kernel, rtol=1e-12, atol=1e-14), name
        print("the engine's dW1, db1, dW2, db2, dX agree with the kernels")

        # symdl.nn runs the same kernels
        criterion = nn.CrossEntropyLoss()
        criterion(model(X), labels)
        model.backward(criterion.backward())
        assert np.allclose(model[0].grads["weight"], dW1) and np.allclose(model[2].grads["weight"], dW2)
        print(f"loss {float(loss):.6f}; |dW1| = {np.linalg.norm(dW1):.6f}, |dW2| = {np.linalg.norm(dW2):.6f}")


        def loss_of_W1(W):
            return K.cross_entropy(K.linear(K.relu(K.linear(X, W, b1)), W2, b2), labels)


        def loss_of_X(inputs):
            return K.cross_entropy(K.linear(K.relu(K.linear(inputs, W1, b1)), W2, b2), labels)


        fd_check(loss_of_W1, W1.copy(), lambda W: dW1)
        fd_check(loss_of_X, X.copy(), lambda inputs: dX)
    '''.replace("NETWORK = ...", f"NETWORK = {NETWORK!r}").replace("SHAPES = ...", f"SHAPES = {NETWORK_SHAPES!r}"),
          "The two-layer backward pass: kernels, the engine's formulas and symdl.nn")


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
