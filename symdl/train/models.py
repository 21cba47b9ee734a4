"""The trainer's models, by name: each a short :class:`symdl.nn.Sequential`.

``mlp``: Flatten - Linear(in, 128) - ReLU - Linear(128, classes).
``cnn``: Conv 3x3 16 (padding 1) - ReLU - MaxPool 2 - Conv 3x3 32 (padding 1) -
ReLU - MaxPool 2 - Flatten - Linear(32 * H/4 * W/4, classes). For inputs one
row high (MNIST-1D is (1, 1, 40)) the kernels become 1x3 and the pools 1x2,
i.e. the same network in 1-D.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any

import numpy as np

from symdl import nn
from symdl.errors import SymdlError

class ModelInputError(SymdlError, ValueError):
    """The data's example shape does not suit the model."""


Builder = Callable[[tuple[int, ...], int, Any, np.random.Generator], nn.Sequential]


def mlp(input_shape: tuple[int, ...], num_classes: int, dtype: Any, generator: np.random.Generator) -> nn.Sequential:
    """A one-hidden-layer perceptron with 128 ReLU units."""
    return nn.Sequential(nn.Flatten(),
                         nn.Linear(prod(input_shape), 128, dtype=dtype, generator=generator),
                         nn.ReLU(),
                         nn.Linear(128, num_classes, dtype=dtype, generator=generator))


def cnn(input_shape: tuple[int, ...], num_classes: int, dtype: Any, generator: np.random.Generator) -> nn.Sequential:
    """Two 3x3 convolution blocks (16 and 32 channels, ReLU, 2x2 max pooling) and a linear classifier."""
    if len(input_shape) != 3:
        raise ModelInputError(f"cnn: needs inputs shaped (N, C, H, W), got examples of shape {input_shape}")
    channels, height, width = input_shape
    kernel = tuple(3 if size > 1 else 1 for size in (height, width))  # a 1-pixel axis gets no window
    padding = tuple(k // 2 for k in kernel)
    pool = tuple(2 if size > 1 else 1 for size in (height, width))
    features = 32 * (height // pool[0] // pool[0]) * (width // pool[1] // pool[1])
    return nn.Sequential(nn.Conv2d(channels, 16, kernel, padding=padding, dtype=dtype, generator=generator),
                         nn.ReLU(),
                         nn.MaxPool2d(pool),
                         nn.Conv2d(16, 32, kernel, padding=padding, dtype=dtype, generator=generator),
                         nn.ReLU(),
                         nn.MaxPool2d(pool),
                         nn.Flatten(),
                         nn.Linear(features, num_classes, dtype=dtype, generator=generator))


MODELS: dict[str, Builder] = {"mlp": mlp, "cnn": cnn}
