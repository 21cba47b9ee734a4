"""A VJP computes the gradient of its forward only if it uses the same parameters: every default must agree.

Over the whole catalog (ops and layers): each keyword parameter the catalog
declares has, in the forward kernel and in its VJP, the catalog's default
(PyTorch's), and every keyword the two share has one default. A default that
drifted (``layer_norm_vjp``'s ``eps`` set to 1.00001e-05) changes the gradient
by only ~5e-6 relative, and only where a row's variance is comparable to
``eps``: the behavioural test below uses such rows and compares each norm
layer's VJP, called with its defaults, with central differences of the forward
called with its defaults.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import symdl.kernels as kernels
from symdl.catalog import ACTIVATIONS_AND_LOSSES, LAYERS

ENTRIES = [*ACTIVATIONS_AND_LOSSES.values(), *LAYERS]


def _defaults(function: object) -> dict[str, object]:
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not p.empty}


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and (a == b or (a != a and b != b))  # exact: 1e-05 != 1.00001e-05


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_forward_and_vjp_defaults_are_the_catalogs(entry: object) -> None:
    forward, vjp = _defaults(getattr(kernels, entry.name)), _defaults(getattr(kernels, f"{entry.name}_vjp"))
    for name in forward.keys() & vjp.keys():
        assert _same(forward[name], vjp[name]), f"{entry.name}: {name}={forward[name]!r}, vjp {vjp[name]!r}"
    for param in entry.params:
        for label, defaults in (("forward", forward), ("vjp", vjp)):
            if param.name in defaults:  # absent: a required keyword (normalized_shape), no default to drift
                assert _same(defaults[param.name], param.default), \
                    f"{entry.name} {label}: {param.name}={defaults[param.name]!r}, catalog {param.default!r}"
        # Not vacuous: the parameter is a keyword of the kernels it belongs to (layers say which: `where`).
        where = getattr(param, "where", "both")
        for label, function in (("forward", entry.name), ("backward", f"{entry.name}_vjp")):
            if where in ("both", label):
                assert param.name in inspect.signature(getattr(kernels, function)).parameters, (function, param.name)


def _small_variance_rows(shape: tuple[int, ...]) -> np.ndarray:
    """Values 1e-3 apart around 0.5: a variance of ~1e-6 per row, a tenth of the default eps (1e-5)."""
    return 0.5 + 1e-3 * np.random.default_rng(7).standard_normal(shape)


#: (layer, input shape, required keywords, extra positional arrays after the input)
NORMS = [
    ("layer_norm", (3, 8), {"normalized_shape": 8}, ()),
    ("group_norm", (3, 4, 5), {"num_groups": 2}, ()),
    ("batch_norm", (6, 3), {"training": True}, (None, None)),
]


def _central_differences(f: object, x: np.ndarray, w: np.ndarray, h: float) -> np.ndarray:
    """d/dx of sum(w * f(x)), entry by entry (float64; the step is far below the rows' spread of 1e-3)."""
    out = np.empty_like(x)
    for j in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        out[j] = (np.sum(w * f(up)) - np.sum(w * f(down))) / (up[j] - down[j])
    return out


@pytest.mark.parametrize(("name", "shape", "keywords", "extra"), NORMS, ids=[n[0] for n in NORMS])
def test_norm_vjp_with_defaults_matches_forward_on_rows_of_small_variance(name: str, shape: tuple[int, ...],
                                                                          keywords: dict, extra: tuple) -> None:
    x = _small_variance_rows(shape)
    w = np.random.default_rng(8).standard_normal(shape)
    forward = getattr(kernels, name)
    vjp = getattr(kernels, f"{name}_vjp")
    numeric = _central_differences(lambda v: forward(v, *extra, **keywords), x, w, 1e-7)
    analytic = vjp(w, x, *extra, **keywords)[0]
    # Truncation (h^2 f''' ~ 1e-14 * 3e7) and rounding (1e-16 * 10 / 1e-7) are both ~1e-8 against entries ~300.
    scale = np.max(np.abs(numeric))
    assert np.max(np.abs(analytic - numeric)) <= 1e-8 * scale
    # The test has teeth: the planted default (eps 1.00001e-05) moves the gradient past that bound.
    drifted = vjp(w, x, *extra, **keywords, eps=1.00001e-05)[0]
    assert np.max(np.abs(drifted - numeric)) > 1e-7 * scale
