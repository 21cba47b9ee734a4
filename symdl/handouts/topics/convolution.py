"""Handout: convolution: the index definition, output sizes, pooling, the backward pass, a worked image example."""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from symdl.handouts import verified
from symdl.handouts.builder import Builder

TITLE = "Convolution"
SUMMARY = ("The convolution layer by its indices, its output size with stride, padding and dilation, pooling, "
           "its backward pass as a transposed convolution, and a feature map computed on a digit.")

n, k, s, p, d = sp.symbols("n k s p d", integer=True, positive=True)
#: Output length of a convolution or pooling window along one axis (PyTorch's formula, floor mode).
OUTPUT_SIZE = sp.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1


def output_size_check() -> tuple[bool, str]:
    """OUTPUT_SIZE against the conv2d kernel's output width and a count of window positions, on a grid."""
    import symdl.kernels as K

    size = sp.lambdify((n, k, s, p, d), OUTPUT_SIZE)
    cases = 0
    for length, width, stride, pad, dil in itertools.product(range(1, 11), range(1, 5), range(1, 4), range(0, 3),
                                                              range(1, 4)):
        if length + 2 * pad < dil * (width - 1) + 1:
            continue  # no window fits: PyTorch refuses these shapes
        out = K.conv2d(np.zeros((1, 1, 1, length)), np.zeros((1, 1, 1, width)), stride=(1, stride),
                       padding=(0, pad), dilation=(1, dil)).shape[-1]
        starts = [t for t in range(0, length + 2 * pad, stride) if t + dil * (width - 1) <= length + 2 * pad - 1]
        if not out == len(starts) == size(length, width, stride, pad, dil):
            return False, f"fails at n={length}, k={width}, s={stride}, p={pad}, d={dil}"
        cases += 1
    return True, f"exhaustive on {cases} shapes: equals the conv2d kernel's output width and a count of window starts"


def transposed_check() -> tuple[bool, str]:
    """The 1-D backward formula against SymPy's derivative on explicit instances (strides 1, 2, 3)."""
    for length, width, stride in ((7, 3, 1), (9, 3, 2), (8, 2, 3)):
        outputs = (length - width) // stride + 1
        x, w, g = (sp.symbols(f"{c}0:{m}") for c, m in (("x", length), ("w", width), ("g", outputs)))
        loss = sum(g[i] * sum(w[t] * x[stride * i + t] for t in range(width)) for i in range(outputs))
        for j in range(length):
            claimed = sum(g[i] * w[j - stride * i] for i in range(outputs) if 0 <= j - stride * i < width)
            if sp.expand(sp.diff(loss, x[j]) - claimed) != 0:
                return False, f"fails at x_{j} (n={length}, k={width}, s={stride})"
    return True, "symbolic (expand) on 1-D instances n=7,k=3,s=1; n=9,k=3,s=2; n=8,k=2,s=3"


def _definition(b: Builder) -> None:
    b.section("The index definition")
    b.prose("A 2-D convolution layer (a cross-correlation, as in PyTorch) slides a small kernel w over the input "
            "x. Output channel o at position p sums, over the input channels c of its group and the kernel "
            "offsets k, the input at s p + d k − pad times the weight: s is the stride, d the dilation, pad the "
            "padding. The formula is printed from symdl's layer catalog, whose kernel is proven against SymPy's "
            "derivative of exactly this index-level definition.")
    b.equation(verified.layer("conv2d", 0))
    b.equation(verified.layer("conv2d", 3), "The bias gradient sums the upstream gradient:")


def _sizes(b: Builder) -> None:
    b.section("Output size: stride, padding and dilation")
    b.prose("Along one axis of length n, a kernel of size k with dilation d spans d (k − 1) + 1 inputs. Window "
            "starts are 0, s, 2s, ... and the last must leave room for the span inside the padded length n + 2p, "
            "so counting the starts gives:")
    o = sp.Symbol("o")
    b.equation(verified.computed("conv.output_size", o, OUTPUT_SIZE, output_size_check))
    b.run('''
        def output_width(n, k, s=1, p=0, d=1):
            x = np.zeros((1, 1, 1, n))
            w = np.zeros((1, 1, 1, k))
            return K.conv2d(x, w, stride=(1, s), padding=(0, p), dilation=(1, d)).shape[-1]


        settings = [(28, 3, 1, 0, 1), (28, 3, 1, 1, 1), (28, 3, 2, 1, 1), (28, 5, 2, 2, 1), (28, 3, 1, 2, 2),
                    (32, 7, 2, 3, 1), (8, 2, 2, 0, 1)]
        size_rows = []
        for n, k, s, p, d in settings:
            formula = (n + 2 * p - d * (k - 1) - 1) // s + 1
            measured = output_width(n, k, s, p, d)
            assert formula == measured
            size_rows.append((n, k, s, p, d, measured))
        print("formula and kernel agree on", len(size_rows), "settings")
    ''', "The formula against the kernel")
    b.table(("n", "k", "stride", "padding", "dilation", "output"),
            [tuple(str(v) for v in row) for row in b.value("size_rows")],
            "Output widths measured on symdl's conv2d kernel (they equal the formula).")


def _pooling(b: Builder) -> None:
    b.section("Pooling")
    b.prose("Max pooling keeps the largest value of each window; its gradient goes to that one input (to the first "
            "maximum on ties, as in PyTorch). Average pooling divides the window's sum by its size, and so "
            "spreads the gradient evenly. Both use the same output-size formula.")
    b.equation(verified.layer("max_pool2d", 0))
    b.equation(verified.layer("max_pool2d", 1))
    b.equation(verified.layer("avg_pool2d", 0))


def _backward(b: Builder) -> None:
    b.section("The backward pass is a transposed convolution")
    b.prose("In one dimension y_i = Σ_t w_t x_{s i + t}. The input x_j appears in output i with weight w_{j − s i}, "
            "so the gradient of the loss with respect to x_j collects the upstream gradient ȳ_i through the same "
            "weights, read backwards (w taken as zero outside its range):")
    i, j = sp.symbols("i j", integer=True)
    ybar, w = sp.IndexedBase(r"\bar{y}"), sp.IndexedBase("w")
    xbar = sp.IndexedBase(r"\bar{x}")
    m = sp.Symbol("m", integer=True, positive=True)
    b.equation(verified.computed("conv.backward_1d", xbar[j], sp.Sum(ybar[i] * w[j - s * i], (i, 0, m - 1)),
                                 transposed_check))
    b.prose("That sum is a convolution of ȳ, spread out by the stride, with the flipped kernel: a transposed "
            "convolution. In two dimensions, with channels and groups, the catalog states it as:")
    b.equation(verified.layer("conv2d", 1))
    b.equation(verified.layer("conv2d", 2), "and the weight gradient correlates the input with the upstream gradient:")
    b.run('''
        generator = np.random.default_rng(0)
        x = generator.normal(size=(2, 3, 9, 9))
        w = generator.normal(size=(4, 3, 3, 3))
        for stride, padding in ((1, 0), (2, 1)):
            y = K.conv2d(x, w, stride=stride, padding=padding)
            upstream = generator.normal(size=y.shape)
            dx, dw, _ = K.conv2d_vjp(upstream, x, w, stride=stride, padding=padding)
            missing = x.shape[-1] - ((y.shape[-1] - 1) * stride - 2 * padding + 3)  # rows the stride skipped
            transposed = K.conv_transpose2d(upstream, w, stride=stride, padding=padding, output_padding=missing)
            assert np.allclose(dx, transposed, rtol=1e-12, atol=1e-12)
            print(f"stride {stride}, padding {padding}: input gradient == conv_transpose2d(upstream, w)")
            fd_check(lambda x, w: K.conv2d(x, w, stride=stride, padding=padding), [x[:1, :, :6, :6], w],
                     lambda g, x, w: K.conv2d_vjp(g, x, w, stride=stride, padding=padding)[:2])
    ''', "The input gradient is a transposed convolution")


def _image(b: Builder) -> None:
    b.section("A worked example on a digit")
    b.prose("A vertical-edge kernel (Sobel's) applied to an 8 × 8 digit from scikit-learn's bundled data set, with "
            "padding 1 so that the feature map keeps the image's size, then 2 × 2 max pooling.")
    b.run('''
        from sklearn.datasets import load_digits

        image = load_digits().images[0] / 16.0  # a zero, scaled to [0, 1]
        sobel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        feature = K.conv2d(image[None, None], sobel[None, None], padding=1)[0, 0]
        pooled = K.max_pool2d(feature[None, None], kernel_size=2)[0, 0]
        padded = np.pad(image, 1)
        by_hand = sum(sobel[a, c] * padded[3 + a, 2 + c] for a in range(3) for c in range(3))
        assert np.isclose(feature[3, 2], by_hand)
        print("feature map row 3:", feature[3])
        print("feature[3, 2] =", round(float(feature[3, 2]), 4), "= the sum of kernel times window, by hand")
        print("after 2 x 2 max pooling:", pooled.shape)
    ''', "Feature map of a digit")
    b.plot('''
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
        panels = [(image, "input (8 x 8)", "gray_r"), (sobel, "kernel", "coolwarm"),
                  (feature, "feature map (8 x 8)", "coolwarm"), (pooled, "max pooled (4 x 4)", "coolwarm")]
        for ax, (values, title, cmap) in zip(axes, panels):
            shown = ax.imshow(values, cmap=cmap)
            ax.set_title(title)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(shown, ax=ax, fraction=0.046)
        fig.tight_layout()
    ''', "A digit, Sobel's vertical-edge kernel, the feature map conv2d computes, and its 2 x 2 max pooling.")


def _exercises(b: Builder) -> None:
    import symdl.kernels as K

    b.section("Exercises")
    for _ in range(2):
        length, width = int(b.rng.integers(10, 40)), int(b.rng.integers(2, 6))
        stride, pad, dil = int(b.rng.integers(1, 4)), int(b.rng.integers(0, 3)), int(b.rng.integers(1, 3))
        measured = K.conv2d(np.zeros((1, 1, 1, length)), np.zeros((1, 1, 1, width)), stride=(1, stride),
                            padding=(0, pad), dilation=(1, dil)).shape[-1]
        starts = [t for t in range(0, length + 2 * pad, stride) if t + dil * (width - 1) <= length + 2 * pad - 1]
        b.exercise(f"A convolution with kernel size {width}, stride {stride}, padding {pad} and dilation {dil} runs "
                   f"along an axis of length {length}. How long is the output?", measured, len(starts),
                   how="counting the window starts one by one", digits=6)
    image = b.rng.integers(0, 5, size=(3, 3))
    kernel = b.rng.integers(-2, 3, size=(2, 2))
    out = K.conv2d(image[None, None].astype(float), kernel[None, None].astype(float))[0, 0]
    by_hand = int(sum(int(kernel[a, c]) * int(image[1 + a, 0 + c]) for a in range(2) for c in range(2)))
    b.exercise(f"Convolve (PyTorch's cross-correlation, no padding, stride 1) the image {image.tolist()} with the "
               f"kernel {kernel.tolist()}. What is the output at row 1, column 0 (counting from 0)?",
               float(out[1, 0]), by_hand, how="the sum of kernel times window in integer arithmetic", digits=6)


def build(b: Builder) -> None:
    """Add the convolution handout's content to ``b``."""
    b.goal("Write a convolution layer's output by its indices, with stride, padding, dilation and groups.",
           "Derive and use the output-size formula.",
           "Explain max and average pooling and where their gradients go.",
           "Show that a convolution's input gradient is a transposed convolution.")
    _definition(b)
    _sizes(b)
    _pooling(b)
    _backward(b)
    _image(b)
    _exercises(b)
