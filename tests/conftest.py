"""Shared test configuration: hypothesis profiles and catalog parametrisation.

Profiles: ``quick`` (default, local runs) and ``ci`` (more examples,
derandomised so CI is reproducible), chosen by ``SYMDL_HYPOTHESIS_PROFILE``;
CI sets it in ``.ci/run``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from symdl.catalog import ACTIVATIONS_AND_LOSSES

settings.register_profile("quick", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("SYMDL_HYPOTHESIS_PROFILE", "quick"))

#: Every (op, variant) of the catalog, as pytest parameters with readable ids.
OP_VARIANTS = [
    pytest.param(op, str(variant), id=f"{op.name}-{variant}" if variant else op.name)
    for op in ACTIVATIONS_AND_LOSSES.values()
    for variant in op.formulas
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``jax`` run last, in their order. XLA starts its thread pool at JAX's first computation,
    and other tests fork (the CLI fuzz, process pools, notebook kernels): a process forked while those
    threads exist could deadlock on a lock one of them held (JAX warns of it)."""
    items.sort(key=lambda item: item.get_closest_marker("jax") is not None)
